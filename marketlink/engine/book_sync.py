"""One book's synchronisation with its venue: the pure state machine behind ``MarketData``.

A local book is only worth trading on if it equals the venue's. The venue's recipe (Binance's
"how to manage a local order book correctly", the same shape for every venue we speak) is:
subscribe first, buffer diffs, fetch a snapshot, drop the buffered diffs it already contains,
apply the rest, then apply live diffs, and start over at the first hole. Hummingbot replays its
buffer without checking it against the snapshot and relies on an hourly refresh; here every
step is checked by the venue's ``SequenceRule``, and any doubt (a gap, a crossed book, bad data,
a stale or dropped stream) puts the book out of sync *at once* and asks for a new snapshot.

The machine does no I/O and reads no clock: the engine feeds it diffs and snapshots and acts on
the ``Step`` it answers (fetch a snapshot, retry one, announce a recovery). So each rule is
tested by feeding messages and asserting steps and book states.

Two phases. ``WAITING``: the book is out of sync; diffs are buffered (checked against each
other, so the buffer is always a contiguous run the next snapshot may bridge). ``LIVE``: the
book is in sync and diffs go straight to it. A snapshot request is tagged with the
``generation`` current when it was sent; a resync since then makes its answer ``OUTDATED``
(the engine asks again), so a snapshot taken before a reconnect never seeds the new stream.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import Final

from marketlink.core.book import DiffResult, OrderBook
from marketlink.core.market import DepthSnapshot, DepthUpdate
from marketlink.core.sequence import Verdict

__all__ = ["BookSync", "Phase", "Step"]

#: Diffs kept while waiting for a snapshot. Dropping the oldest is safe: the snapshot must then
#: simply be newer (if it is not, it is refetched), so a slow snapshot never grows memory.
DEFAULT_MAX_BUFFER: Final = 10_000

#: What a malformed diff or snapshot can raise inside the book or the sequence rule
#: (``BookDataError`` and ``MissingSequenceField`` are ``ValueError``s; a wrong type is a TypeError).
_BAD_DATA: Final = (ValueError, TypeError)


class Phase(StrEnum):
    WAITING = "waiting"  # out of sync: buffering diffs until a snapshot bridges them
    LIVE = "live"  # in sync: diffs apply as they arrive


class Step(StrEnum):
    """What happened to one input, and so what the engine must do next."""

    APPLIED = "applied"  # a live diff was applied
    STALE = "stale"  # already contained in the book or the buffer (a duplicate); dropped
    BUFFERED = "buffered"  # held until a snapshot arrives
    SYNCED = "synced"  # a snapshot was installed and the buffer replayed: in sync (see take_recovery)
    LOST = "lost"  # sync was lost (gap, crossed book): fetch a snapshot
    MALFORMED = "malformed"  # bad data was dropped; out of sync: fetch a snapshot (again)
    RETRY = "retry"  # the snapshot cannot be used (older than the buffer, crossed): fetch again later
    OUTDATED = "outdated"  # the snapshot was requested before the latest resync: fetch again now


# Hot-path constants: one global read each instead of a global and an attribute.
_LIVE: Final = Phase.LIVE
_APPLIED: Final = DiffResult.APPLIED
_STEP_APPLIED: Final = Step.APPLIED


class BookSync:
    """Keeps ``book`` in step with one venue depth stream. One owner; not thread-safe."""

    __slots__ = (
        "_buffer", "_lost", "_max_buffer", "_rule", "book", "generation", "losses", "phase", "reason",
        "snapshot_depth",
    )

    def __init__(
        self, book: OrderBook, *, max_buffer: int = DEFAULT_MAX_BUFFER, snapshot_depth: int | None = None
    ) -> None:
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
        self.book = book
        #: Levels per side a snapshot is asked for: one that comes back that deep was cut, and
        #: the book must not answer past its last level (``OrderBook.apply_snapshot``).
        self.snapshot_depth = snapshot_depth
        self._rule = book.sequence
        self._max_buffer = max_buffer
        self._buffer: deque[DepthUpdate] = deque()
        self.phase = Phase.WAITING
        #: Why the book is not in sync, for the status board ("" while it is).
        self.reason = "waiting for the first snapshot"
        #: Bumped by every loss of sync; a snapshot requested under an older one is outdated.
        self.generation = 0
        self._lost: str | None = None  # why a book that had been in sync lost it (None at start)
        #: How many times a book in sync lost it (each starts one recovery).
        self.losses = 0
        if book.in_sync:
            book.mark_out_of_sync(self.reason)

    @property
    def pair(self) -> str:
        return self.book.trading_pair

    @property
    def in_sync(self) -> bool:
        return self.phase is Phase.LIVE

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def first_buffered(self) -> DepthUpdate | None:
        return self._buffer[0] if self._buffer else None

    # -- inputs ---------------------------------------------------------------------------------

    def on_diff(self, update: DepthUpdate) -> Step:
        """A message from the depth stream: a diff, or a full book the venue pushed."""
        if update.is_snapshot:
            return self._install_pushed(update)
        if self.phase is not _LIVE:
            return self._buffer_diff(update)
        book = self.book
        try:
            result = book.apply_diff(
                update.bids, update.asks, update.first_id, update.final_id, update.prev_final_id,
                update.checked,
            )
        except _BAD_DATA as exc:
            self.lose(f"bad diff u={update.final_id}: {exc}")
            return Step.MALFORMED
        if result is _APPLIED or result is DiffResult.RESET:
            return _STEP_APPLIED
        if result is DiffResult.STALE:
            return Step.STALE
        if result is DiffResult.GAP:
            self.lose(f"gap: {book.out_of_sync_reason}")
            self._buffer.append(update)  # the first diff after the hole: the new snapshot must bridge it
            return Step.LOST
        # CROSSED, or NOT_SYNCED because someone else marked the book out of sync.
        self.lose(book.out_of_sync_reason or "book out of sync")
        return Step.LOST

    def on_snapshot(self, snapshot: DepthSnapshot, generation: int) -> Step:
        """A snapshot requested under ``generation``: install it if it bridges the buffer."""
        if generation != self.generation or self.phase is Phase.LIVE:
            return Step.OUTDATED
        book = self.book
        sid = snapshot.update_id
        try:
            installed = book.apply_snapshot(snapshot.bids, snapshot.asks, sid, self.snapshot_depth)
            if installed is DiffResult.CROSSED:
                self.reason = f"{book.out_of_sync_reason}; refetching"
                return Step.RETRY
        except _BAD_DATA as exc:
            self.reason = f"bad snapshot {sid}: {exc}; refetching"
            return Step.MALFORMED
        buffer = self._buffer
        for index, diff in enumerate(buffer):
            try:
                result = book.apply_diff(
                    diff.bids, diff.asks, diff.first_id, diff.final_id, diff.prev_final_id, diff.checked
                )
            except _BAD_DATA as exc:
                # A bad diff is a hole in the buffer: only diffs after it can ever be bridged.
                for _ in range(index + 1):
                    buffer.popleft()
                self.reason = f"bad buffered diff u={diff.final_id}: {exc}; refetching"
                return Step.MALFORMED
            if result is DiffResult.GAP:
                # The buffer is contiguous, so the snapshot is older than the first diff it lacks.
                book.mark_out_of_sync(f"snapshot {sid} is older than the buffered diffs")
                self.reason = (
                    f"snapshot {sid} does not reach the buffered diffs (first U={diff.first_id}, "
                    f"u={diff.final_id}); refetching"
                )
                return Step.RETRY
            if result is DiffResult.CROSSED or result is DiffResult.HORIZON:
                self.reason = f"{book.out_of_sync_reason}; refetching"
                return Step.RETRY
        buffer.clear()
        self._go_live()
        return Step.SYNCED

    def lose(self, reason: str) -> bool:
        """Out of sync now, for ``reason`` (a gap, a stale or dropped stream, bad data...).

        The buffer is emptied (the stream it came from can no longer be trusted to be whole)
        and the generation bumped, so a snapshot already requested is refetched. Returns True if
        the book had been in sync, i.e. this starts a new recovery.
        """
        self.book.mark_out_of_sync(reason)
        self._buffer.clear()
        self.generation += 1
        self.reason = reason
        if self.phase is Phase.LIVE:
            self.phase = Phase.WAITING
            self._lost = reason
            self.losses += 1
            return True
        return False

    def take_recovery(self) -> str | None:
        """After ``SYNCED``: why the book had been lost, once per recovery (None for the first
        sync, or when already taken). The engine turns it into one ``BookResynced`` event."""
        lost, self._lost = self._lost, None
        return lost if self.phase is Phase.LIVE else None

    # -- internals ------------------------------------------------------------------------------

    def _buffer_diff(self, update: DepthUpdate) -> Step:
        buffer = self._buffer
        if buffer:
            last = buffer[-1]
            try:
                check = self._rule.check(
                    last.final_id, False, update.first_id, update.final_id, update.prev_final_id
                )
            except _BAD_DATA as exc:  # e.g. a diff without the id the rule needs
                buffer.clear()
                self.reason = f"bad diff u={update.final_id}: {exc}"
                return Step.MALFORMED
            verdict = check.verdict
            if verdict is Verdict.STALE:
                return Step.STALE
            if verdict is not Verdict.APPLY:
                buffer.clear()  # a hole: no snapshot can bridge the diffs before it
        buffer.append(update)
        if len(buffer) > self._max_buffer:
            buffer.popleft()
        return Step.BUFFERED

    def _install_pushed(self, update: DepthUpdate) -> Step:
        book = self.book
        try:
            result = book.apply_snapshot(update.bids, update.asks, update.final_id)
        except _BAD_DATA as exc:
            self.lose(f"bad pushed snapshot u={update.final_id}: {exc}")
            return Step.MALFORMED
        if result is DiffResult.CROSSED:
            self.lose(book.out_of_sync_reason)
            return Step.LOST
        self._buffer.clear()  # everything buffered is older than a book pushed after it
        self._go_live()
        return Step.SYNCED

    def _go_live(self) -> None:
        self.phase = Phase.LIVE
        self.reason = ""

    def __repr__(self) -> str:
        if self.phase is Phase.LIVE:
            state = "live"
        else:
            state = f"waiting ({self.reason}; {len(self._buffer)} buffered)"
        return f"<BookSync {self.pair or '?'} gen={self.generation} {state}>"

