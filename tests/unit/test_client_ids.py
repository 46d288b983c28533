"""Client order ids: unique across instances, within the venue's length and alphabet, owns() exact."""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable

import pytest

from marketlink.core import client_ids
from marketlink.core.client_ids import (
    ALNUM,
    ALNUM_DASH_UNDERSCORE,
    COUNTER_CHARS,
    MIN_INSTANCE_CHARS,
    ClientOrderIdFactory,
    ForkedFactoryError,
)
from marketlink.core.enums import Side
from marketlink.core.errors import ConfigError, InvalidTradingPair, MarketlinkError

T0 = 1_750_000_000.0  # a fixed wall-clock second in 2025
USDM_ALPHABET = ALNUM + ".:/_-"  # Binance USD-M: ^[\.A-Z\:/a-z0-9_-]{1,36}$
UPPER_ONLY = string.ascii_uppercase + string.digits


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def fixed_clock(t: float = T0) -> Callable[[], float]:
    return lambda: t


def factory(prefix: str = "ml", max_length: int = 36, alphabet: str = ALNUM_DASH_UNDERSCORE,
            seed: int = 1, **kw: object) -> ClientOrderIdFactory:
    return ClientOrderIdFactory(prefix, max_length, alphabet, clock=fixed_clock(), entropy=seeded(seed),
                                **kw)  # type: ignore[arg-type]


def test_two_processes_on_one_account_never_collide_and_own_only_their_ids() -> None:
    a = factory("x-MG43PCSN", seed=11)
    b = factory("x-MG43PCSN", seed=22)  # same prefix, another "process"
    assert a.instance_id != b.instance_id
    pairs = ["BTC-USDT", "ETH-BTC", "1000SHIB-USDT"]
    ids_a = [a.new(Side.BUY if i % 2 else Side.SELL, pairs[i % 3]) for i in range(100_000)]
    ids_b = [b.new(Side.BUY if i % 2 else Side.SELL, pairs[i % 3]) for i in range(100_000)]
    set_a, set_b = set(ids_a), set(ids_b)
    assert len(set_a) == len(set_b) == 100_000
    assert not set_a & set_b
    assert all(a.owns(i) and not b.owns(i) for i in ids_a)
    assert all(b.owns(i) and not a.owns(i) for i in ids_b)
    assert max(map(len, ids_a + ids_b)) <= 36


@pytest.mark.parametrize("max_length", [24, 32, 36])
@pytest.mark.parametrize(
    ("alphabet", "pattern"),
    [
        (ALNUM_DASH_UNDERSCORE, r"[A-Za-z0-9_-]"),
        (ALNUM, r"[A-Za-z0-9]"),
        (USDM_ALPHABET, r"[\.A-Z\:/a-z0-9_-]"),
        (UPPER_ONLY, r"[A-Z0-9]"),
    ],
)
@pytest.mark.parametrize("prefix", ["", "ml", "x-MG43PCSN"])
def test_ids_respect_length_and_alphabet(max_length: int, alphabet: str, pattern: str, prefix: str) -> None:
    if set(prefix) - set(alphabet) or len(prefix) > max_length - MIN_INSTANCE_CHARS - COUNTER_CHARS:
        with pytest.raises(ConfigError):
            factory(prefix, max_length, alphabet)
        return
    f = factory(prefix, max_length, alphabet)
    rx = re.compile(rf"{pattern}{{1,{max_length}}}")
    for side in Side:
        for pair in ["BTC-USDT", "1000SHIB-USDT", "BTC.D-USD_T", "A-B"]:
            cid = f.new(side, pair)
            assert rx.fullmatch(cid), cid
            assert cid.startswith(prefix) and f.owns(cid)


def test_layout_prefix_readable_instance_counter() -> None:
    f = factory("ml", 36, instance_id="abcdefgh")
    cid = f.new(Side.BUY, "btc-usdt")
    counter = int(T0 * 1000) - 1_704_067_200_000
    assert cid.startswith("mlBBTCUSDTabcdefgh") and len(cid) == 2 + 8 + 8 + COUNTER_CHARS
    assert f.counter_of(cid) == counter == f.last_counter
    assert f.new(Side.SELL, "ETH-BTC").startswith("mlSETHBTCabcdefgh")


def test_uppercase_only_venue_gets_uppercase_digits_and_side() -> None:
    f = factory("ML", 32, UPPER_ONLY)
    cid = f.new(Side.SELL, "eth-btc")
    assert cid == cid.upper() and cid.startswith("MLSETHBTC") and f.owns(cid)
    assert not f.owns(cid.lower())


def test_lowercase_only_venue_gets_lowercase_readable_part() -> None:
    f = factory("ml", 32, string.ascii_lowercase + string.digits)
    assert f.new(Side.BUY, "ETH-BTC").startswith("mlbethbtc")


def test_readable_part_shrinks_first_then_the_instance_down_to_its_floor() -> None:
    pre = "x-MG43PCSN"  # 10 characters
    full = factory(pre, 36).new(Side.BUY, "1000SHIB-USDT")
    assert full[10:20] == "B1000SUSDT" and len(full) == 36  # 10 readable chars left: pair cut
    assert factory(pre, 28).new(Side.BUY, "BTC-USDT")[10:12] == "BB"  # 2 chars: side + 1
    assert factory(pre, 27).new(Side.BUY, "BTC-USDT")[10:11] == "B"  # side only
    no_readable = factory(pre, 26)
    cid = no_readable.new(Side.BUY, "BTC-USDT")
    assert len(no_readable.instance_id) == 8 and len(cid) == 26 and cid[10:18] == no_readable.instance_id
    shorter = factory(pre, 25)  # the instance gives up one character, never more
    assert len(shorter.instance_id) == MIN_INSTANCE_CHARS and len(shorter.new(Side.SELL, "A-B")) == 25
    with pytest.raises(ConfigError, match="too long"):
        factory(pre, 24)


def test_counter_strictly_increases_even_when_the_wall_clock_steps_back() -> None:
    times = iter([T0, T0, T0 - 3600, T0 - 7200, T0 + 0.5, float("nan"), T0 + 10])
    f = ClientOrderIdFactory("ml", 36, clock=lambda: next(times), entropy=seeded(3))
    ids = [f.new(Side.BUY, "BTC-USDT") for _ in range(7)]
    counters = [f.counter_of(i) for i in ids]
    assert all(c is not None for c in counters)
    assert counters == sorted(set(counters))  # strictly increasing
    base = int(T0 * 1000) - 1_704_067_200_000
    assert counters == [base, base + 1, base + 2, base + 3, base + 500, base + 501, base + 10_000]
    tails = [i[-COUNTER_CHARS:] for i in ids]
    assert tails == sorted(tails)  # fixed width, ascending digits: ids sort in issue order


def test_restarted_instance_continues_above_its_journaled_counter() -> None:
    first = factory(instance_id="k3j9a0bq")
    old = [first.new(Side.BUY, "BTC-USDT") for _ in range(1000)]  # runs ahead of the fixed clock
    # restart with the clock one hour *behind*: the journaled counter keeps ids fresh
    again = ClientOrderIdFactory(
        "ml", 36, instance_id=first.instance_id, last_counter=first.last_counter,
        clock=fixed_clock(T0 - 3600),
    )
    new = again.new(Side.BUY, "BTC-USDT")
    assert new not in old and again.owns(old[0]) and again.owns(new)
    assert again.counter_of(new) == first.last_counter + 1


def test_owns_is_exact() -> None:
    f = factory("ml", 36, instance_id="abcdefgh")
    mine = f.new(Side.BUY, "BTC-USDT")
    counter = mine[-COUNTER_CHARS:]
    other_instance = factory("ml", 36, instance_id="abcdefgj").new(Side.BUY, "BTC-USDT")
    longer_prefix = factory("mlx", 36, instance_id="abcdefgj").new(Side.BUY, "BTC-USDT")
    # an adversarial prefix that extends ours still does not match: the instance is read from the end
    extended = factory("mlBBTC", 36, instance_id="bcdefghj").new(Side.BUY, "X-Y")
    not_mine = [
        other_instance, longer_prefix, extended, None, "", "ml", mine + "0", "x" + mine[1:],
        mine[:-1] + "u",  # 'u' is not a Crockford digit
        mine[:-COUNTER_CHARS - 1] + "!" + counter,  # broken instance part
        "mlXBTCUSDTabcdefgh" + counter,  # X is no side
        "mlB-TCUSDTabcdefgh" + counter,  # '-' never appears in a readable part
        "mlBBTCUSDTUSDTUSDTUSDTabcdefgh" + counter,  # longer than the venue allows
    ]
    assert f.owns(mine)
    assert f.owns("mlabcdefgh" + counter)  # the readable part may be empty
    assert f.owns("mlSabcdefgh" + counter)
    for cid in not_mine:
        assert not f.owns(cid), cid
        assert f.counter_of(cid) is None


def test_explicit_instance_id_is_kept_and_validated() -> None:
    assert factory(instance_id="0123456789abcdef").instance_id == "0123456789abcdef"
    for bad in ["abc", "0123456789abcdefg", "ABCDEFGH", "abcdefgi", "abc-defg"]:
        with pytest.raises(ConfigError):
            factory(instance_id=bad)
    with pytest.raises(ConfigError):  # fits the rule but not the length
        factory("x-MG43PCSN", 30, instance_id="0123456789abcdef")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prefix": "ml!"},  # '!' is not in the alphabet
        {"max_length": 0},
        {"max_length": True},
        {"alphabet": string.ascii_letters},  # no digits
        {"alphabet": string.digits + "abcdef"},  # not a full case of letters
        {"last_counter": -1},
        {"last_counter": 1.5},
    ],
)
def test_configuration_errors(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"prefix": "ml", "max_length": 36, "alphabet": ALNUM_DASH_UNDERSCORE}
    args.update(kwargs)
    with pytest.raises(ConfigError):
        factory(**args)  # type: ignore[arg-type]


def test_short_entropy_source_is_refused() -> None:
    with pytest.raises(ConfigError, match="entropy"):
        ClientOrderIdFactory("ml", 36, entropy=lambda n: b"\x00")


def test_default_instances_are_random_and_well_formed() -> None:
    a, b = ClientOrderIdFactory("ml", 36), ClientOrderIdFactory("ml", 36)
    assert a.instance_id != b.instance_id  # 40 random bits each
    assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{8}", a.instance_id)


def test_bad_pair_is_a_typed_error() -> None:
    with pytest.raises(InvalidTradingPair):
        factory().new(Side.BUY, "BTCUSDT")


def test_use_after_fork_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    f = factory()
    real_pid = client_ids.os.getpid()
    monkeypatch.setattr(client_ids.os, "getpid", lambda: real_pid + 1)
    with pytest.raises(ForkedFactoryError):
        f.new(Side.BUY, "BTC-USDT")


def test_counter_exhaustion_is_an_error_not_a_wrap() -> None:
    f = ClientOrderIdFactory("ml", 36, clock=fixed_clock(4_000_000_000.0), entropy=seeded(1))  # year 2096
    with pytest.raises(MarketlinkError, match="exhausted"):
        f.new(Side.BUY, "BTC-USDT")


def test_many_distinct_pairs_keep_ids_right_and_memory_bounded() -> None:
    f = factory()
    pairs = [f"T{i}-USDT" for i in range(1100)]
    ids = [f.new(Side.BUY, p) for p in pairs]
    assert len(set(ids)) == 1100 and all(f.owns(i) for i in ids)
    assert ids[5].startswith("mlBT5USDT")
    assert len(f._readable_cache) <= 1024
