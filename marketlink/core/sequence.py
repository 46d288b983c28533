"""Depth-stream sequence rules: may this diff be applied to a book at this update id?

Each venue numbers its depth updates differently, and a book that applies a diff out of turn is
silently wrong from then on. So the decision lives here, once per venue, as a small pure object;
the order book consults it before touching a level, and a venue's spec names its rule
(``SEQUENCE_RULES``) instead of carrying its own gap detection.

A rule answers with a ``Check``: apply, drop as stale, declare a gap (with a reason a human can
act on), or reset (the diff *is* a full book and replaces it). The rule never mutates anything.
Rules return the shared ``APPLY``/``STALE``/``RESET`` instances, which the book recognises by
identity on its hot path (any other ``Check`` is honoured too, only a little slower).
Sources: exchange-protocols.md §2.5 (Binance spot), §3.4 (USD-M), §4.5 and Bybit's
``websocket/public/orderbook.mdx`` / ``full-ob.mdx`` (Bybit v5).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final, Protocol

from marketlink.core.errors import ConfigError, MarketlinkError

__all__ = [
    "APPLY",
    "RESET",
    "SEQUENCE_RULES",
    "STALE",
    "BinanceSpotRule",
    "BinanceUsdmRule",
    "BybitRule",
    "Check",
    "Link",
    "MissingSequenceField",
    "SequenceRule",
    "Verdict",
    "get_rule",
]


class MissingSequenceField(MarketlinkError, ValueError):
    """The codec handed a diff without a field this venue's rule needs (a bug, not market data)."""


class Link(Enum):
    """How a rule chains one diff to the last, once past the first diff after a snapshot: the
    book decides that usual case itself, without calling the rule (its hot path), and asks the
    rule about everything else. ``None`` on a rule: always ask."""

    NEXT_FIRST = "U == last u + 1"  # Binance spot
    PREV_FINAL = "pu == last u"  # Binance USD-M


class Verdict(Enum):
    APPLY = "APPLY"
    STALE = "STALE"
    GAP = "GAP"
    RESET = "RESET"


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    reason: str = ""


# Shared instances: the two common answers allocate nothing on the hot path.
APPLY: Final = Check(Verdict.APPLY)
STALE: Final = Check(Verdict.STALE)
RESET: Final = Check(Verdict.RESET)


class SequenceRule(Protocol):
    """What the book asks before applying a diff.

    ``book_id`` is the book's update id (the snapshot's id, or the last applied diff's final id);
    ``fresh`` is true while no diff has been applied since the snapshot, because Binance's first
    diff after a snapshot obeys a looser rule (it straddles the snapshot) than the ones after it.
    ``first_id``/``final_id``/``prev_final_id`` are the diff's ids in the venue's terms
    (Binance ``U``/``u``/``pu``; Bybit has only ``u``, passed as both first and final).
    """

    @property
    def name(self) -> str: ...

    #: The usual chaining, which must agree with ``check``: for a book in sync and past its first
    #: diff, a diff with ``final_id > book_id`` that chains by this link is APPLY.
    @property
    def link(self) -> Link | None: ...

    def check(
        self, book_id: int, fresh: bool, first_id: int, final_id: int, prev_final_id: int | None
    ) -> Check: ...


def _gap(message: str) -> Check:
    return Check(Verdict.GAP, message)


@dataclass(frozen=True, slots=True)
class BinanceSpotRule:
    """Spot diffs chain by ``U == prev_u + 1``.

    Drop ``u <= book id`` (already contained in the book). The first diff after a snapshot must
    straddle it, ``U <= id + 1 <= u``; Binance's page words it ``U <= lastUpdateId``, but a diff
    starting exactly at ``id + 1`` continues the snapshot just as well and rejecting it would
    force needless resyncs. After that, an overlap is refused like a hole: a healthy stream never
    overlaps, so an overlap means we misread it.
    """

    name: str = "binance_spot"
    link: Link | None = Link.NEXT_FIRST

    def check(
        self, book_id: int, fresh: bool, first_id: int, final_id: int, prev_final_id: int | None
    ) -> Check:
        if final_id <= book_id:
            return STALE
        if fresh:
            if first_id <= book_id + 1:
                return APPLY
            return _gap(f"first diff U={first_id} starts after snapshot id {book_id} + 1")
        if first_id == book_id + 1:
            return APPLY
        return _gap(f"diff U={first_id} does not continue last u={book_id} (expected U={book_id + 1})")


@dataclass(frozen=True, slots=True)
class BinanceUsdmRule:
    """USD-M diffs chain by ``pu == prev_u``; update ids are not consecutive.

    Right after a snapshot, drop ``u < id`` and require ``U <= id <= u``. Later, a diff whose
    ``u`` does not pass the book id is a replay of one already applied (the venue's page only
    speaks of the snapshot; treating the replay as a gap would resync on every duplicate), and
    any other diff must name the book id as its ``pu``.
    """

    name: str = "binance_usdm"
    link: Link | None = Link.PREV_FINAL

    def check(
        self, book_id: int, fresh: bool, first_id: int, final_id: int, prev_final_id: int | None
    ) -> Check:
        if fresh:
            if final_id < book_id:
                return STALE
            if first_id <= book_id:
                return APPLY
            return _gap(f"first diff U={first_id} starts after snapshot id {book_id}")
        if final_id <= book_id:
            return STALE
        if prev_final_id is None:
            raise MissingSequenceField("binance_usdm diff needs pu (prev_final_id)")
        if prev_final_id == book_id:
            return APPLY
        return _gap(f"diff pu={prev_final_id} does not match last u={book_id}")


@dataclass(frozen=True, slots=True)
class BybitRule:
    """Bybit v5 numbers its book messages with ``u`` only.

    ``u == 1`` means the service restarted. On the ``orderbook.{depth}`` topics such a message
    carries the whole book, so it replaces ours (RESET). ``u <= book id`` is a duplicate.
    Whether ``u`` is consecutive there is not documented ("Is a sequence"), so by default any
    larger ``u`` applies. On ``orderbook.full`` (``contiguous=True``) the docs promise ``u + 1``
    and the book is seeded from REST, so a hole is a gap, and ``u == 1`` is a restart whose
    message may be empty: it is a gap too, to be healed by a fresh REST snapshot.
    """

    contiguous: bool = False
    name: str = "bybit"
    link: Link | None = None

    def check(
        self, book_id: int, fresh: bool, first_id: int, final_id: int, prev_final_id: int | None
    ) -> Check:
        if final_id == 1:
            if not self.contiguous:
                return RESET
            if book_id != 1:
                return _gap("venue restarted its book (u=1): resync from a REST snapshot")
        if final_id <= book_id:
            return STALE
        if not self.contiguous or final_id == book_id + 1:
            return APPLY
        return _gap(f"diff u={final_id} does not follow last u={book_id} (expected {book_id + 1})")


SEQUENCE_RULES: Final[dict[str, SequenceRule]] = {
    "binance_spot": BinanceSpotRule(),
    "binance_usdm": BinanceUsdmRule(),
    "bybit": BybitRule(),
    "bybit_full": BybitRule(contiguous=True, name="bybit_full"),
}


def get_rule(name: str) -> SequenceRule:
    """The rule a venue spec names; an unknown name is a configuration mistake."""
    try:
        return SEQUENCE_RULES[name]
    except KeyError:
        known = ", ".join(sorted(SEQUENCE_RULES))
        raise ConfigError(f"unknown sequence rule {name!r} (known: {known})") from None
