"""Sequence rules as tables: (book id, fresh, U, u, pu) in, verdict out, one row per clause."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from marketlink.core.errors import ConfigError
from marketlink.core.sequence import (
    APPLY,
    SEQUENCE_RULES,
    STALE,
    BinanceSpotRule,
    BinanceUsdmRule,
    BybitRule,
    Link,
    MissingSequenceField,
    SequenceRule,
    Verdict,
    get_rule,
)

A, S, G, R = Verdict.APPLY, Verdict.STALE, Verdict.GAP, Verdict.RESET
Row = tuple[int, bool, int, int, int | None, Verdict]

# (book_id, fresh, first U, final u, pu, expected)
SPOT: list[Row] = [
    (100, True, 90, 100, None, S),  # u == id: already in the snapshot
    (100, True, 90, 99, None, S),
    (100, True, 95, 105, None, A),  # straddles the snapshot
    (100, True, 101, 105, None, A),  # starts right after it: continues it just as well
    (100, True, 101, 101, None, A),
    (100, True, 102, 105, None, G),  # a hole between snapshot and first diff
    (100, False, 101, 110, None, A),  # U == prev_u + 1
    (100, False, 90, 100, None, S),  # a duplicate of the last diff
    (100, False, 102, 110, None, G),  # missed update 101
    (100, False, 99, 110, None, G),  # overlap after the first diff: we misread the stream
]

USDM: list[Row] = [
    (100, True, 90, 99, 80, S),  # u < id
    (100, True, 90, 100, 80, A),  # u == id is kept on futures (strictly-less rule)
    (100, True, 95, 105, 80, A),
    (100, True, 100, 105, 80, A),
    (100, True, 101, 105, 100, G),  # must straddle: U <= id
    (100, False, 101, 120, 100, A),  # pu == prev u
    (100, False, 150, 160, 100, A),  # ids are not consecutive on futures; only pu chains
    (100, False, 90, 100, 80, S),  # a replay of the last applied diff
    (100, False, 101, 120, 99, G),
]

BYBIT: list[Row] = [
    (100, True, 101, 101, None, A),
    (100, False, 105, 105, None, A),  # u not documented as consecutive on depth topics
    (100, False, 100, 100, None, S),
    (100, False, 50, 50, None, S),
    (100, False, 1, 1, None, R),  # service restart: this message is the whole book
    (0, False, 1, 1, None, R),
]

BYBIT_FULL: list[Row] = [
    (100, False, 101, 101, None, A),
    (100, False, 102, 102, None, G),  # documented +1: a hole
    (100, False, 100, 100, None, S),
    (100, False, 1, 1, None, G),  # restart: resync from REST, the message may be empty
    (1, True, 1, 1, None, S),  # the delta matching a u=1 REST snapshot
    (1, True, 2, 2, None, A),
]


def _cases(rule: SequenceRule, rows: Sequence[Row]) -> list[Any]:
    return [pytest.param(rule, *row, id=f"{rule.name}-{i}") for i, row in enumerate(rows)]


@pytest.mark.parametrize(
    ("rule", "book_id", "fresh", "first", "final", "pu", "expected"),
    _cases(BinanceSpotRule(), SPOT)
    + _cases(BinanceUsdmRule(), USDM)
    + _cases(BybitRule(), BYBIT)
    + _cases(BybitRule(contiguous=True, name="bybit_full"), BYBIT_FULL),
)
def test_rule_table(
    rule: SequenceRule, book_id: int, fresh: bool, first: int, final: int, pu: int | None, expected: Verdict
) -> None:
    check = rule.check(book_id, fresh, first, final, pu)
    assert check.verdict is expected
    # A gap explains itself; the common answers are the shared, allocation-free instances.
    assert bool(check.reason) == (expected is G)
    if expected is A:
        assert check is APPLY
    if expected is S:
        assert check is STALE


def test_gap_reasons_name_the_ids() -> None:
    assert "U=102" in BinanceSpotRule().check(100, False, 102, 110, None).reason
    assert "pu=99" in BinanceUsdmRule().check(100, False, 101, 120, 99).reason
    assert "u=1" in SEQUENCE_RULES["bybit_full"].check(100, False, 1, 1, None).reason


def test_usdm_without_pu_is_a_codec_bug_not_a_gap() -> None:
    with pytest.raises(MissingSequenceField) as info:
        BinanceUsdmRule().check(100, False, 101, 120, None)
    assert isinstance(info.value, ValueError)
    # Right after a snapshot pu is not consulted, so its absence is fine there.
    assert BinanceUsdmRule().check(100, True, 95, 105, None) is APPLY


def test_registry_names_every_rule_by_its_own_name() -> None:
    assert set(SEQUENCE_RULES) == {"binance_spot", "binance_usdm", "bybit", "bybit_full"}
    for name, rule in SEQUENCE_RULES.items():
        assert rule.name == name
        assert get_rule(name) is rule


def test_unknown_rule_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="binance_spot"):
        get_rule("kraken")


@pytest.mark.parametrize("name", sorted(SEQUENCE_RULES))
def test_a_rules_link_agrees_with_its_check(name: str) -> None:
    # The book decides the linked case without calling the rule: it must be exactly what the
    # rule would answer, and no other case may be taken for it.
    rule = SEQUENCE_RULES[name]
    link = rule.link
    linked = 0
    for book_id in range(3, 7):
        for first in range(0, 10):
            for final in range(first - 1, 11):
                for pu in (None, *range(0, 10)):
                    chained = (
                        (link is Link.NEXT_FIRST and first == book_id + 1)
                        or (link is Link.PREV_FINAL and pu == book_id)
                    ) and final > book_id
                    if chained:
                        linked += 1
                        assert rule.check(book_id, False, first, final, pu) is APPLY
    assert linked > 0 if link is not None else linked == 0
