"""Market data: order books kept exactly in sync, public trades and best bid/ask.

For every pair the engine follows, ``MarketData`` runs the venue's book recipe through a
``BookSync`` (engine/book_sync.py, the pure part): subscribe first, buffer diffs, fetch a REST
snapshot, replay the diffs that bridge it, then apply live diffs. Everything that can make a
local book wrong puts it out of sync *immediately* and starts a resync: a sequence gap, a crossed
book, a malformed message, a stream silent for ``book_stale_after``, a dropped connection. A
recovery is announced once, as ``BookResynced``; the "order_books" status part names each pair
that is not in sync and why. There is no periodic refresh to hide behind.

Silence alone is not staleness, though: a venue sends nothing for a book that does not change
(Binance's diff stream is quiet while an illiquid book rests), and resyncing such a book every
``book_stale_after`` would cost a full snapshot each time and make ``ready`` flap. So a pair
silent that long is judged by its connection: if no frame of any kind (data, ping, pong) came
over it either, the stream is stale and the book resyncs at once; if the connection lives, the
book stays in sync and one cheap snapshot (the spec's ``probe_depth``, for its update id only) verifies
it. A venue that moved past the book means diffs were lost: resync. Otherwise the book is
current, nothing is announced, and the next verification of that still-quiet pair waits twice as
long (up to ``_VERIFY_BACKOFF_CAP`` x ``book_stale_after``), until a diff ends the quiet.

The I/O around the machine:

* Streams: pairs are spread over WebSocket connections (``max_streams_per_connection`` streams
  on each, three per pair), each subscribed with one frame, since venues limit incoming frames
  per second; the WebSocket client re-sends it after every reconnect. One consumer loop per
  connection reads messages and connection events in order, so every diff after a
  ``Connected`` is known to belong to the new connection. Frames are decoded by the codec's
  ``decode_market`` (typed structs for depth diffs: the hot path).
* A connection is *live* only once the venue acknowledged our subscription request, matched
  by its id: any other first frame proves nothing (an error frame is a refusal, and a refused
  stream never sends a diff, so a snapshot "bridged" by its empty buffer would be a frozen book
  reported in sync). A refusal, or no answer within ``book_stale_after``, keeps the stream's
  pairs out of sync with the venue's words as the reason, and the request is sent again with
  a fresh id after an exponential back-off (``resubscribe_base`` doubling to
  ``resubscribe_max``, reset by an acknowledgement), so a venue that keeps refusing is asked
  at a bounded pace, never in a loop. A codec that can match an answer to its request id
  provides ``parse_market_ack(message, request_id) -> True | VenueError | None`` (the shape of
  ``parse_user_stream_ack``); without it, the first acknowledgement or error frame after our
  request counts as its answer, which is exact as long as the engine has one request in flight
  per connection (it never sends another before an answer or a timeout).
* Snapshots are fetched only once a connection is live, so the snapshot is never older than
  the stream it must bridge for want of a subscription. They are fetched concurrently, at most
  ``snapshot_concurrency`` at once, through the HTTP client, which throttles by weight. A
  snapshot that cannot be used (older than the buffered diffs, crossed, malformed, or the
  request failed) is fetched again after an exponential back-off, for a bounded round of
  attempts; then the status says why and the next round starts ``book_stale_after`` later.
* Staleness is watched per pair by one supervised watchdog (not per subscription by the
  WebSocket client): a venue sends a pair's book, trades and ticker on streams whose names only
  the codec knows, while the engine knows each message's pair once parsed, and the depth stream
  is the one whose silence matters. The connection's liveness comes from the WebSocket client
  (``WsClient.last_received_at``), which sees pings the consumer never does.

* Tickers and last trade prices describe the venue *now*, so an outage voids them: when a
  connection drops, its pairs' tickers and last prices are dropped (``ticker()`` and
  ``last_trade_price()`` answer ``None``, "unknown", rather than a pre-outage value that looks
  current). A venue sends a book ticker only when the best bid or ask changes, so the ticker
  stays unknown until then; the book itself answers for the top meanwhile. A trade may not come
  for hours on a quiet market, so once a reconnected stream is live, one REST request (the
  codec's last-prices request: every pair in one call) fetches the venue's last trade price
  for its pairs. A trade streamed on the new connection before that answer is newer and wins;
  an answer that comes after the connection dropped again is discarded. The book's
  ``last_trade`` keeps the last *streamed* trade (with its id, size and side), which a REST
  price cannot replace; it may predate an outage.

Every background loop (consumers, watchdog, one snapshot job per pair while it resyncs, one
verification per quiet pair while it runs, resubscriptions, last-price refreshes) runs under the
context's supervisor, named ``market_data.*``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, Final, TypeVar

from marketlink.core.book import BookDataError, OrderBook, Trade
from marketlink.core.errors import ConfigError, UnknownSymbol
from marketlink.core.events import BookResynced
from marketlink.core.market import BookTicker, DepthSnapshot, DepthUpdate, MarketMessage, PublicTrade
from marketlink.engine.book_sync import DEFAULT_MAX_BUFFER, BookSync, Phase, Step
from marketlink.engine.context import ConnectorContext
from marketlink.net.errors import MalformedMessage, VenueError
from marketlink.net.ws import (
    Closed,
    Connected,
    Disconnected,
    Heartbeat,
    Stale,
    WsClient,
    WsItem,
    WsMessage,
    backoff_delay,
)

__all__ = ["MarketData", "MarketDataStats", "venue_moved"]

log = logging.getLogger(__name__)
_W = TypeVar("_W")

_PART: Final = "order_books"
#: Streams a pair needs at most: its depth diffs, trades and best bid/ask (the three kinds of
#: ``MarketMessage``). Venues count streams per connection, so pairs are spread accordingly.
_STREAMS_PER_PAIR: Final = 3
_APPLIED: Final = Step.APPLIED  # the hot path reads one global, not a global and an attribute
#: How many not-synced pairs the status detail names before it summarises the rest.
_DETAIL_PAIRS: Final = 5
#: A quiet pair verified current is verified again after twice the last interval, at most this
#: many ``book_stale_after`` later.
_VERIFY_BACKOFF_CAP: Final = 10.0


@dataclass(slots=True)
class MarketDataStats:
    """Counters for health reporting; ``resyncs`` counts, per pair, how often sync was lost."""

    messages: int = 0  # data frames read from the streams (control frames included)
    diffs_applied: int = 0
    #: Diffs whose level strings the book had to check itself, because the codec could not vouch
    #: for them (``DepthUpdate.checked``): correct, only slower. A stream that starts counting
    #: here has changed its frame layout or spelling.
    unchecked_diffs: int = 0
    stale_drops: int = 0  # diffs the book or the buffer already held (duplicates, replays)
    buffered: int = 0
    malformed: int = 0  # messages, diffs and snapshots dropped as bad data
    ignored: int = 0  # control frames, and messages for pairs not followed here
    rejected: int = 0  # error frames from the venue (a refused subscription...)
    refusals: int = 0  # subscription requests refused or left unanswered (each one resent later)
    resubscribes: int = 0  # subscription requests sent again after a refusal
    errors: int = 0  # messages whose handling failed unexpectedly (a bug: logged with its traceback)
    trades: int = 0
    tickers: int = 0
    snapshots: int = 0  # snapshot requests sent to (re)sync a book
    snapshot_failures: int = 0  # snapshots that could not be used (see the status for why)
    verifications: int = 0  # snapshot requests sent to verify a quiet book on a live connection
    verified_current: int = 0  # ... that found the book current (no event, next one backed off)
    verified_behind: int = 0  # ... that found the venue past the book (resynced)
    verify_failures: int = 0  # ... that failed or were malformed (tried again later)
    verify_superseded: int = 0  # ... whose answer came after a diff or a loss had settled it
    connects: int = 0
    price_refreshes: int = 0  # last-price requests sent after a reconnect
    price_refresh_failures: int = 0  # ... that failed or were malformed (prices unknown until a trade)
    resyncs: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Quiet:
    """A LIVE pair whose depth has been silent since ``seen`` on a connection that lives."""

    seen: float  # the pair's last depth message when the quiet began: a newer one ends it
    interval: float  # the wait before the next verification once one finds the book current
    next_at: float  # when the next verification is due


@dataclass(eq=False)
class _Stream:
    """One WebSocket connection and the pairs it carries."""

    index: int
    ws: WsClient
    pairs: tuple[str, ...]
    request_id: int = 0  # our subscription request: the one whose acknowledgement makes us live
    connected: bool = False
    live: bool = False  # the venue acknowledged ``request_id`` on this connection
    connection: int = 0  # the WebSocket client's connection number (1 = the first)
    sent_at: float = 0.0  # when ``request_id`` went out on this connection (the ack timeout)
    refusals: int = 0  # refusals (or unanswered requests) in a row: the back-off exponent
    resubscribing: bool = False  # a resubscription waits out its back-off
    refresh_for: int = 0  # the connection whose last prices are still to be fetched (0: none)
    refreshing: bool = False  # the last-price job runs

    @property
    def key(self) -> str:
        return f"market-{self.index}"


class MarketData:
    """Books, trades and tickers of ``ctx.trading_pairs``; see the module docstring."""

    def __init__(
        self,
        ctx: ConnectorContext,
        rng: random.Random | None = None,
        *,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        snapshot_attempts: int = 5,
        retry_base: float = 0.5,
        retry_max: float = 10.0,
        resubscribe_base: float = 1.0,
        resubscribe_max: float = 60.0,
    ) -> None:
        if snapshot_attempts < 1 or not 0 < retry_base <= retry_max:
            raise ConfigError("need snapshot_attempts >= 1 and 0 < retry_base <= retry_max")
        if not 0 < resubscribe_base <= resubscribe_max:
            raise ConfigError("need 0 < resubscribe_base <= resubscribe_max")
        self._ctx = ctx
        self._name = ctx.venue.name
        self._rng = rng if rng is not None else random.Random()
        self._max_buffer = max_buffer
        self._attempts = snapshot_attempts
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._resubscribe_base = resubscribe_base
        self._resubscribe_max = resubscribe_max
        self.stats = MarketDataStats()
        self._syncs: dict[str, BookSync] = {}
        self._streams: list[_Stream] = []
        self._stream_of: dict[str, _Stream] = {}
        self._seen: dict[str, float] = {}  # pair -> clock time of its last depth message
        self._retry_at: dict[str, float] = {}  # pair -> when its next round of snapshot attempts is due
        self._depth_keys: dict[str, str] = {}  # stream key -> pair, learned from depth messages
        self._symbols: Mapping[str, str] = {}
        self._parse: Callable[[Any, Mapping[str, str]], MarketMessage | None] = ctx.codec.parse_market_message
        # Optional in the codec protocol: see the module docstring for what happens without it.
        self._parse_ack: Callable[[Any, int], bool | VenueError | None] | None = getattr(
            ctx.codec, "parse_market_ack", None
        )
        self._traded_on: dict[str, int] = {}  # pair -> the connection its last streamed trade came on
        self._request_ids = itertools.count(1)
        self._semaphore = asyncio.Semaphore(max(1, ctx.config.snapshot_concurrency))
        self._tasks: list[str] = []
        self._fetching: set[str] = set()  # pairs whose snapshot job runs (or backs off)
        self._quiet: dict[str, _Quiet] = {}  # quiet pairs being verified instead of resynced
        self._verifying: set[str] = set()  # pairs whose verification snapshot is in flight
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._trade_waiters: dict[str, list[tuple[str, asyncio.Future[None]]]] = {}
        self._started = False
        self._stopped = False

    # -- public API -----------------------------------------------------------------------------

    def book(self, trading_pair: str) -> OrderBook:
        try:
            return self._syncs[trading_pair].book
        except KeyError:
            raise UnknownSymbol(self._name, trading_pair) from None

    def sync(self, trading_pair: str) -> BookSync:
        """The pair's sync state (phase, reason, generation), for diagnostics and tests."""
        try:
            return self._syncs[trading_pair]
        except KeyError:
            raise UnknownSymbol(self._name, trading_pair) from None

    async def wait_book(self, trading_pair: str, update_id: int = 0) -> OrderBook:
        """Return the pair's book once it is in sync at ``update_id`` or later.

        For tools and tests that must see a known venue state (the CLI, end-to-end checks against
        the sandbox); strategies read the book as it is. Bound it with a timeout.
        """
        sync = self.sync(trading_pair)
        if not (sync.in_sync and sync.book.update_id >= update_id):
            await _wait_for(self._waiters, trading_pair, update_id)
        return sync.book

    async def wait_trade(self, trading_pair: str, trade_id: str) -> Trade:
        """Return the pair's last trade once it is the one with ``trade_id`` (the venue's
        latest, say). For tools and tests, like ``wait_book``; bound it with a timeout."""
        book = self.book(trading_pair)
        last = book.last_trade
        if last is None or str(last.trade_id) != trade_id:
            await _wait_for(self._trade_waiters, trading_pair, trade_id)
        last = book.last_trade
        assert last is not None
        return last

    def _notify(self, pair: str) -> None:
        waiters = self._waiters.get(pair)
        if not waiters:
            return
        sync = self._syncs[pair]
        if not sync.in_sync:
            return
        now_at = sync.book.update_id
        keep = []
        for wanted, fut in waiters:
            if fut.done():
                continue
            if now_at >= wanted:
                fut.set_result(None)
            else:
                keep.append((wanted, fut))
        self._waiters[pair] = keep

    @property
    def in_sync(self) -> bool:
        return bool(self._syncs) and all(s.phase is Phase.LIVE for s in self._syncs.values())

    async def start(self) -> None:
        """Create the books, open and subscribe the streams, start the loops; returns at once
        (readiness is reported through the "order_books" status part)."""
        if self._started:
            raise RuntimeError("market data starts once")
        self._started = True
        self._create_books()
        ctx = self._ctx
        codec, spec = ctx.codec, ctx.spec
        per_connection = max(1, spec.max_streams_per_connection // _STREAMS_PER_PAIR)
        pairs = ctx.trading_pairs
        # A client-ping venue would need its ping frame from the codec; every venue we speak
        # today pings us (Binance), and any traffic counts as alive either way.
        heartbeat = Heartbeat.server_pings(spec.market_heartbeat.timeout)
        url = codec.market_stream_url(ctx.endpoints)
        for index, start in enumerate(range(0, len(pairs), per_connection)):
            chunk = pairs[start : start + per_connection]
            ws = WsClient(
                url,
                heartbeat=heartbeat,
                key_of=codec.market_message_key,
                decode=codec.decode_market,
                rng=self._rng,
                clock=ctx.clock,
                healthy_after=ctx.config.stream_healthy_after,
                name=f"{ctx.venue.name}-market-{index}",
            )
            stream = _Stream(index, ws, chunk)
            self._streams.append(stream)
            for pair in chunk:
                self._stream_of[pair] = stream
            await self._subscribe(stream)
            await ws.start()
            self._spawn(f"market_data.stream-{index}", partial(self._consume, stream))
        self._spawn("market_data.watchdog", self._watch)

    def _create_books(self) -> None:
        ctx = self._ctx
        self._symbols = ctx.pair_map()
        now = ctx.clock.time()
        for pair in ctx.trading_pairs:
            book = OrderBook.for_rule(ctx.markets.rule(pair), ctx.spec.sequence_rule)
            ctx.books[pair] = book
            self._syncs[pair] = BookSync(
                book, max_buffer=self._max_buffer, snapshot_depth=ctx.spec.snapshot_depth
            )
            self._seen[pair] = now
            self.stats.resyncs[pair] = 0
        self._report()

    async def stop(self) -> None:
        """Stop every loop and close the streams. Idempotent; the books keep their last levels
        but are out of sync (nothing keeps them current any more)."""
        if self._stopped:
            return
        self._stopped = True
        supervisor = self._ctx.supervisor
        for name in [n for n in self._tasks if not n.startswith("market_data.stream-")]:
            await supervisor.cancel(name)
        for stream in self._streams:
            await stream.ws.stop()
        for name in self._tasks:
            await supervisor.cancel(name)
        for sync in self._syncs.values():  # nothing keeps them current any more
            sync.lose("market data stopped")

    # -- the streams ----------------------------------------------------------------------------

    async def _consume(self, stream: _Stream) -> None:
        on_message = self._on_message
        async for item in stream.ws.items():
            try:
                if item.__class__ is WsMessage:
                    on_message(stream, item)
                elif isinstance(item, Closed):
                    self._on_closed(stream)
                    return
                else:
                    self._on_event(stream, item)
            except Exception:  # one bad message must never stop a stream: count it and go on
                self.stats.errors += 1
                log.exception("%s: market message failed", self._name)

    def _on_message(self, stream: _Stream, msg: WsMessage) -> None:
        """The hot path: parse, then route to the pair's book, trades or ticker."""
        stats = self.stats
        stats.messages += 1
        if not stream.live and self._parse_ack is not None:
            answer = self._parse_ack(msg.data, stream.request_id)
            if answer is not None:
                self._on_answer(stream, answer)
                return
        try:
            parsed = self._parse(msg.data, self._symbols)
        except MalformedMessage as exc:
            self._on_malformed(msg, exc)
            return
        except VenueError as exc:  # an error frame: while we wait for our answer, it is the answer
            if not stream.live and self._parse_ack is None:
                self._on_answer(stream, exc)
                return
            stats.rejected += 1
            log.error("%s: market stream answered with an error: %s", self._name, exc)
            return
        cls = parsed.__class__
        if cls is DepthUpdate:
            update: DepthUpdate = parsed  # type: ignore[assignment]
            pair = update.trading_pair
            sync = self._syncs.get(pair)
            if sync is None:
                stats.ignored += 1
                return
            self._seen[pair] = msg.received_at
            if msg.key is not None:
                self._depth_keys[msg.key] = pair
            if not update.checked:
                stats.unchecked_diffs += 1
            step = sync.on_diff(update)
            if step is _APPLIED:
                stats.diffs_applied += 1
            else:
                self._after_diff(sync, step)
            if self._waiters:
                self._notify(pair)
        elif cls is PublicTrade:
            self._on_trade(parsed, stream.connection)  # type: ignore[arg-type]
        elif cls is BookTicker:
            self._on_ticker(parsed)  # type: ignore[arg-type]
        elif parsed is None and not stream.live and self._parse_ack is None:
            self._on_answer(stream, True)  # the first acknowledgement after our request
        else:
            stats.ignored += 1  # a control frame (another acknowledgement, a shutdown notice)

    def _after_diff(self, sync: BookSync, step: Step) -> None:
        stats = self.stats
        if step is Step.STALE:
            stats.stale_drops += 1
        elif step is Step.BUFFERED:
            stats.buffered += 1
        elif step is Step.SYNCED:  # a book the venue pushed
            self._on_synced(sync)
        else:  # LOST or MALFORMED
            if step is Step.MALFORMED:
                stats.malformed += 1
                log.warning("%s %s: dropped a bad depth message: %s", self._name, sync.pair, sync.reason)
            else:
                log.info("%s %s: out of sync: %s", self._name, sync.pair, sync.reason)
            self._changed(sync)

    def _on_malformed(self, msg: WsMessage, exc: MalformedMessage) -> None:
        self.stats.malformed += 1
        pair = self._depth_keys.get(msg.key) if msg.key is not None else None
        log.warning("%s: dropped a malformed market message (stream %s): %s", self._name, msg.key, exc)
        if pair is not None:
            self._lose(pair, f"malformed depth message: {exc}")

    def _on_trade(self, trade: PublicTrade, connection: int) -> None:
        pair = trade.trading_pair
        sync = self._syncs.get(pair)
        if sync is None:
            self.stats.ignored += 1
            return
        self._traded_on[pair] = connection
        book = sync.book
        try:
            book.record_trade(trade.price, trade.amount, trade.taker_side, trade.trade_id, trade.timestamp)
        except BookDataError as exc:
            self.stats.malformed += 1
            log.warning("%s %s: dropped a bad trade: %s", self._name, pair, exc)
            return
        self.stats.trades += 1
        last = book.last_trade
        if last is not None:
            self._ctx.last_prices[pair] = last.price
            waiters = self._trade_waiters.get(pair)
            if waiters:
                seen = str(last.trade_id)
                for wanted, fut in waiters:
                    if wanted == seen and not fut.done():
                        fut.set_result(None)

    def _on_ticker(self, ticker: BookTicker) -> None:
        pair = ticker.trading_pair
        if pair not in self._syncs:
            self.stats.ignored += 1
            return
        tickers = self._ctx.tickers
        old = tickers.get(pair)
        # Tickers can arrive out of turn across streams; a numbered one never rolls back.
        new_id, old_id = ticker.update_id, old.update_id if old is not None else None
        if new_id is None or old_id is None or new_id >= old_id:
            tickers[pair] = ticker
        self.stats.tickers += 1

    def _on_event(self, stream: _Stream, event: WsItem) -> None:
        name = self._name
        if isinstance(event, Connected):
            stream.connected, stream.live = True, False
            stream.connection = event.attempt
            self.stats.connects += 1
            now = self._ctx.clock.time()
            stream.sent_at = now  # the client re-sent our subscription before saying Connected
            for pair in stream.pairs:
                self._seen[pair] = now
                self._retry_at.pop(pair, None)  # a new connection deserves a fresh round of attempts
                if event.attempt > 1:  # diffs of the old connection cannot bridge to the new one
                    self._syncs[pair].lose(f"stream reconnected (connection {event.attempt}); resyncing")
                    self._count_loss(self._syncs[pair])
            self._report()
        elif isinstance(event, Disconnected):
            stream.connected = stream.live = False
            self._forget_prices(stream)
            for pair in stream.pairs:
                sync = self._syncs[pair]
                sync.lose(f"stream disconnected ({event.reason}); reconnecting")
                self._count_loss(sync)
            self._report()
        elif isinstance(event, Stale):
            stale_pair = self._depth_keys.get(event.key)
            if stale_pair is not None and self._syncs[stale_pair].phase is Phase.LIVE:
                why = f"stale: stream {event.key} silent for {event.silent_for:.1f}s; resyncing"
                self._lose(stale_pair, why)
        else:
            log.debug("%s market stream %d: %s", name, stream.index, event)

    def _on_closed(self, stream: _Stream) -> None:
        stream.connected = stream.live = False
        if self._stopped:
            return
        self._forget_prices(stream)
        log.error("%s: market stream %d closed unexpectedly", self._name, stream.index)
        for pair in stream.pairs:
            sync = self._syncs[pair]
            sync.lose("market stream closed")
            self._count_loss(sync)
        self._report()

    def _forget_prices(self, stream: _Stream) -> None:
        """Nothing keeps the pairs' tickers and last prices current any more: "unknown" is honest."""
        tickers, prices = self._ctx.tickers, self._ctx.last_prices
        for pair in stream.pairs:
            tickers.pop(pair, None)
            prices.pop(pair, None)

    # -- subscriptions --------------------------------------------------------------------------

    async def _subscribe(self, stream: _Stream) -> None:
        """Send (and have the client remember for reconnects) a subscription with a fresh id."""
        ctx = self._ctx
        stream.request_id = next(self._request_ids)
        stream.sent_at = ctx.clock.time()
        frame = ctx.codec.market_subscribe([ctx.symbol(p) for p in stream.pairs], stream.request_id)
        await stream.ws.subscribe(stream.key, frame)

    def _on_answer(self, stream: _Stream, answer: bool | VenueError) -> None:
        """The venue answered our subscription request on this connection."""
        if answer is True:
            stream.live = True
            stream.refusals = 0
            if stream.connection > 1:  # pre-outage prices were dropped: fetch the venue's
                self._ensure_refresh(stream)
            for pair in stream.pairs:
                if self._syncs[pair].phase is Phase.WAITING:
                    self._ensure_fetch(pair)
            return
        self.stats.rejected += 1
        self._refused(stream, f"subscription refused: {answer}")

    def _refused(self, stream: _Stream, why: str) -> None:
        """Keep the stream's pairs out of sync, saying why, and ask again after a back-off."""
        self.stats.refusals += 1
        stream.refusals += 1
        if stream.resubscribing:  # a resubscription is due already (an answer to an older request)
            delay_note = "resubscription pending"
        else:
            delay = backoff_delay(
                stream.refusals, base=self._resubscribe_base, cap=self._resubscribe_max, jitter=0.25,
                rng=self._rng,
            )
            delay_note = f"resubscribing in {delay:.2f}s (refusal {stream.refusals} in a row)"
            if not self._stopped:
                stream.resubscribing = True
                self._spawn(
                    f"market_data.resubscribe-{stream.index}", partial(self._resubscribe, stream, delay),
                    restart=False,
                )
        reason = f"{why}; {delay_note}"
        log.warning("%s market stream %d: %s", self._name, stream.index, reason)
        for pair in stream.pairs:
            sync = self._syncs[pair]
            sync.lose(reason)
            self._count_loss(sync)
        self._report()

    async def _resubscribe(self, stream: _Stream, delay: float) -> None:
        try:
            await self._ctx.clock.sleep(delay)
            if self._stopped or stream.live:
                return
            self.stats.resubscribes += 1
            await self._subscribe(stream)  # sent now if connected, else by the reconnect
            log.info("%s market stream %d: resubscribed (request %d)", self._name, stream.index,
                     stream.request_id)
        finally:
            stream.resubscribing = False

    # -- last prices after a reconnect ----------------------------------------------------------

    def _ensure_refresh(self, stream: _Stream) -> None:
        """Fetch the venue's last prices for a reconnected stream; one job per stream, which
        serves the newest connection when it is done with an older one."""
        stream.refresh_for = stream.connection
        if stream.refreshing or self._stopped:
            return
        stream.refreshing = True
        self._spawn(f"market_data.last_prices-{stream.index}", partial(self._refresh, stream), restart=False)

    async def _refresh(self, stream: _Stream) -> None:
        try:
            while stream.refresh_for:
                connection, stream.refresh_for = stream.refresh_for, 0
                await self._refresh_once(stream, connection)
        finally:
            stream.refreshing = False

    async def _refresh_once(self, stream: _Stream, connection: int) -> None:
        ctx = self._ctx
        self.stats.price_refreshes += 1
        try:
            payload = await ctx.http.request(ctx.codec.last_prices_request())
            prices = ctx.codec.parse_last_prices(payload, self._symbols)
        except (MalformedMessage, VenueError) as exc:
            self.stats.price_refresh_failures += 1
            if isinstance(exc, MalformedMessage):
                self.stats.malformed += 1
            log.warning("%s market stream %d: last prices not refreshed after the reconnect (unknown "
                        "until a trade streams in): %s", self._name, stream.index, exc)
            return
        if stream.connection != connection or not stream.live:
            return  # dropped again meanwhile: that connection's prices are unknown once more
        last_prices = ctx.last_prices
        for pair in stream.pairs:
            if self._traded_on.get(pair) == connection:
                continue  # a trade streamed on this connection is newer than any REST answer
            price = prices.get(pair)
            if price is None:
                continue
            if not isinstance(price, Decimal) or not price.is_finite() or price < 0:
                self.stats.malformed += 1
                log.warning("%s %s: dropped a bad last price %r", self._name, pair, price)
            elif price > 0:  # zero: the venue's word for "never traded"
                last_prices[pair] = price

    # -- sync transitions -----------------------------------------------------------------------

    def _lose(self, pair: str, reason: str) -> None:
        sync = self._syncs[pair]
        sync.lose(reason)
        log.info("%s %s: out of sync: %s", self._name, pair, reason)
        self._changed(sync)

    def _count_loss(self, sync: BookSync) -> None:
        self.stats.resyncs[sync.pair] = sync.losses

    def _changed(self, sync: BookSync) -> None:
        """After any transition: count, fetch a snapshot if one is needed, report."""
        self._count_loss(sync)
        if sync.phase is Phase.WAITING:
            self._ensure_fetch(sync.pair)
        self._report()

    def _on_synced(self, sync: BookSync) -> None:
        pair = sync.pair
        ctx = self._ctx
        self._seen[pair] = ctx.clock.time()
        self._retry_at.pop(pair, None)
        lost = sync.take_recovery()
        if lost is not None:
            book = sync.book
            log.info("%s %s: resynced at update %d (was: %s)", ctx.venue.name, pair, book.update_id, lost)
            ctx.publish(
                BookResynced(timestamp=ctx.now(), trading_pair=pair, update_id=book.update_id, reason=lost)
            )
        self._report()
        self._notify(pair)

    def _report(self) -> None:
        waiting = [(p, s.reason) for p, s in self._syncs.items() if s.phase is not Phase.LIVE]
        status = self._ctx.status
        if not waiting:
            status.ok(_PART, f"{len(self._syncs)} books in sync")
            return
        shown = "; ".join(f"{p}: {why}" for p, why in waiting[:_DETAIL_PAIRS])
        more = len(waiting) - _DETAIL_PAIRS
        status.fail(_PART, f"{shown}; and {more} more pairs not in sync" if more > 0 else shown)

    # -- snapshots ------------------------------------------------------------------------------

    def _ensure_fetch(self, pair: str) -> None:
        """Start the pair's snapshot job unless one runs (or backs off) already."""
        stream = self._stream_of.get(pair)
        if self._stopped or stream is None or not stream.live or pair in self._retry_at:
            return
        if pair in self._fetching:
            return
        name = f"market_data.snapshot.{pair}"
        record = self._ctx.supervisor.records.get(name)
        if record is not None and record.task is not None and not record.task.done():
            return  # the supervisor restarts a crashed job after its back-off
        self._fetching.add(pair)
        self._spawn(name, partial(self._fetch, pair))

    async def _fetch(self, pair: str) -> None:
        self._fetching.add(pair)  # again, when the supervisor restarts a crashed job
        try:
            await self._fetch_round(pair)
        finally:
            self._fetching.discard(pair)

    async def _fetch_round(self, pair: str) -> None:
        """Fetch snapshots until one bridges the buffer, for at most one round of attempts."""
        sync = self._syncs[pair]
        stream = self._stream_of[pair]
        ctx = self._ctx
        failures = 0
        while sync.phase is Phase.WAITING and stream.live:
            step = await self._snapshot_once(sync)
            if step is Step.SYNCED:
                self._on_synced(sync)
                return
            if step is Step.OUTDATED:
                continue  # a resync happened meanwhile; the next request serves the new generation
            failures += 1
            self.stats.snapshot_failures += 1
            why = sync.reason
            if failures >= self._attempts:
                pause = ctx.config.book_stale_after
                self._retry_at[pair] = ctx.clock.time() + pause
                sync.reason = f"{why} (gave up after {failures} attempts; next round in {pause:g}s)"
                log.warning("%s %s: no usable snapshot: %s", ctx.venue.name, pair, sync.reason)
                self._report()
                return
            delay = backoff_delay(
                failures, base=self._retry_base, cap=self._retry_max, jitter=0.5, rng=self._rng
            )
            sync.reason = f"{why} (attempt {failures}; next in {delay:.2f}s)"
            log.info("%s %s: snapshot not usable: %s", ctx.venue.name, pair, sync.reason)
            self._report()
            await ctx.clock.sleep(delay)

    async def _snapshot_once(self, sync: BookSync) -> Step:
        ctx = self._ctx
        pair = sync.pair
        generation = sync.generation
        request = ctx.codec.depth_snapshot_request(ctx.symbol(pair), ctx.spec.snapshot_depth)
        self.stats.snapshots += 1
        try:
            async with self._semaphore:
                payload = await ctx.http.request(request)
            snapshot: DepthSnapshot = ctx.codec.parse_depth_snapshot(payload, pair)
        except MalformedMessage as exc:
            self.stats.malformed += 1
            sync.reason = f"malformed snapshot: {exc}"
            return Step.MALFORMED
        except VenueError as exc:  # transient, rate limited, banned...: the back-off applies
            sync.reason = f"snapshot request failed: {exc}"
            return Step.RETRY
        step = sync.on_snapshot(snapshot, generation)
        if step is Step.MALFORMED:
            self.stats.malformed += 1
        return step

    # -- staleness ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Judge every live book whose depth went silent (see the module docstring), and start
        the next round of snapshot attempts when due. Sleeps until the next deadline; never polls."""
        ctx = self._ctx
        clock = ctx.clock
        stale_after = ctx.config.book_stale_after
        while True:
            now = clock.time()
            wake = now + stale_after
            for stream in self._streams:
                if stream.connected and not stream.live and not stream.resubscribing:
                    due = stream.sent_at + stale_after
                    if now >= due:
                        self._refused(stream, f"no answer to subscription request {stream.request_id} "
                                              f"for {now - stream.sent_at:.1f}s")
                    else:
                        wake = min(wake, due)
            for pair, sync in self._syncs.items():
                stream = self._stream_of[pair]
                if not stream.live:
                    continue
                if sync.phase is Phase.LIVE:
                    wake = min(wake, self._watch_live(pair, stream, now, stale_after))
                    continue
                at = self._retry_at.get(pair)
                if at is None:
                    self._ensure_fetch(pair)  # a safety net: normally one runs already
                    continue
                if now >= at:
                    del self._retry_at[pair]
                    self._ensure_fetch(pair)
                else:
                    wake = min(wake, at)
            await clock.sleep(wake - now)

    def _watch_live(self, pair: str, stream: _Stream, now: float, stale_after: float) -> float:
        """One live pair: resync it if its stream is stale, verify it if only the pair is quiet;
        returns when it next needs a look."""
        seen = self._seen[pair]
        quiet = self._quiet.get(pair)
        if quiet is not None and quiet.seen != seen:  # a diff (or a resync) ended the quiet
            del self._quiet[pair]
            quiet = None
        due = seen + stale_after
        if now < due:
            return due
        rx = stream.ws.last_received_at
        if rx is None or now - rx >= stale_after:  # the connection is silent too: a stale stream
            self._seen[pair] = now
            self._quiet.pop(pair, None)
            log.info("%s %s: no frame on the connection for %s", self._name, pair,
                     "ever" if rx is None else f"{now - rx:.1f}s")
            self._lose(pair, f"stale: no depth update for {now - seen:.1f}s; resyncing")
            return now + stale_after
        alive_until = rx + stale_after  # if nothing arrives by then, the stream is stale
        if pair in self._verifying:
            return alive_until
        if quiet is None:
            quiet = self._quiet[pair] = _Quiet(seen, stale_after, now)
        if now < quiet.next_at:
            return min(alive_until, quiet.next_at)
        if not self._stopped:
            self._verifying.add(pair)
            # Not restarted if it crashes (logged by the supervisor): the next look verifies again.
            self._spawn(f"market_data.verify.{pair}", partial(self._verify, pair, quiet), restart=False)
        return alive_until

    async def _verify(self, pair: str, quiet: _Quiet) -> None:
        """Ask the venue where a quiet book is, with the cheapest snapshot, and act on the answer:
        past our book means diffs were lost (resync); otherwise the book is current."""
        ctx = self._ctx
        stats = self.stats
        sync = self._syncs[pair]
        generation = sync.generation
        try:
            request = ctx.codec.depth_snapshot_request(
                ctx.symbol(pair), min(ctx.spec.probe_depth, ctx.spec.snapshot_depth)
            )
            stats.verifications += 1
            try:
                async with self._semaphore:
                    payload = await ctx.http.request(request)
                venue_id = ctx.codec.parse_depth_snapshot(payload, pair).update_id
            except (MalformedMessage, VenueError) as exc:
                stats.verify_failures += 1
                if isinstance(exc, MalformedMessage):
                    stats.malformed += 1
                quiet.next_at = ctx.clock.time() + quiet.interval
                log.warning("%s %s: verifying a quiet book failed (again in %gs): %s",
                            self._name, pair, quiet.interval, exc)
                return
            now = ctx.clock.time()
            if (
                self._stopped or sync.generation != generation or sync.phase is not Phase.LIVE
                or self._seen[pair] != quiet.seen or self._quiet.get(pair) is not quiet
            ):
                stats.verify_superseded += 1  # a diff or a loss came first: the answer is moot
                return
            book_id = sync.book.update_id
            if venue_moved(book_id, venue_id):
                stats.verified_behind += 1
                del self._quiet[pair]
                self._seen[pair] = now
                self._lose(pair, f"stale: no depth update for {now - quiet.seen:.1f}s while the venue "
                                 f"moved to update {venue_id} (book at {book_id}); resyncing")
                return
            stats.verified_current += 1
            quiet.interval = min(2.0 * quiet.interval, _VERIFY_BACKOFF_CAP * ctx.config.book_stale_after)
            quiet.next_at = now + quiet.interval
            log.debug("%s %s: quiet book current at update %d (venue %d); next check in %gs",
                      self._name, pair, book_id, venue_id, quiet.interval)
        finally:
            self._verifying.discard(pair)

    def _spawn(self, name: str, factory: Callable[[], Any], *, restart: bool = True) -> None:
        self._ctx.supervisor.spawn(name, factory, restart=restart)
        if name not in self._tasks:
            self._tasks.append(name)


def venue_moved(book_id: int, venue_id: int) -> bool:
    """Whether a snapshot at ``venue_id`` holds changes a book at ``book_id`` lacks.

    Every sequence rule we speak numbers a book's changes increasingly (Binance's ``u``, Bybit's
    ``u``), so a higher snapshot id means diffs we never saw. A lower one is not a move: Binance
    serves REST depth from a cache that may trail the stream by a little, and a Bybit restart
    (``u`` back to 1) comes down the stream itself, where the sequence rule resets the book.
    """
    return venue_id > book_id


async def _wait_for(
    registry: dict[str, list[tuple[_W, asyncio.Future[None]]]], pair: str, wanted: _W
) -> None:
    """Register a waiter for ``wanted`` on ``pair`` and wait until it is resolved; a cancelled or
    timed-out wait leaves nothing behind."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    entry = (wanted, fut)
    registry.setdefault(pair, []).append(entry)
    try:
        await fut
    finally:
        waiters = registry.get(pair, [])
        if entry in waiters:
            waiters.remove(entry)
