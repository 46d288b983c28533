"""``marketlink run``: a strategy on connectors, live, journalled, and stopped cleanly.

With no argument it is the main job: the embedded sandbox (Binance's protocol on 127.0.0.1, with
market flow), the Binance connector on the sandbox's demo account (its keys are used directly:
nothing is asked), and pure market making on BTC-USDT quoted tightly enough that the simulated
flow fills it within seconds. With ``CONFIG.yml`` it runs that file's strategy on the venues it
names, with keys from the key store (or on the sandbox with ``--sandbox``).

With ``CONFIG.yml --sandbox-url URL`` it runs on a ``marketlink sandbox`` started separately, with
the keys in ``MARKETLINK_API_KEY``/``MARKETLINK_API_SECRET`` (what the sandbox printed): a sandbox
that outlives the bot, so a crash and a restart can be tried offline.

Either way one session does the same things in the same order, because the order is what makes a
stop clean: connectors started (progress shown) with the journal attached before the first order
and the bot's open orders from its last run restored; **those orders cancelled, confirmed,
before the strategy starts** (no strategy manages them: left alone they would rest at an old
run's prices next to the new quotes, locking balance; one that cannot be cancelled stops the
session unless ``runner.start_with_uncancelled_orders`` says otherwise); the runner started; then
the live view until Ctrl-C, SIGTERM, ``--duration`` or the strategy stopping itself (too many
errors in a row: exit code 3); then the runner stopped (it cancels the strategy's orders and
waits for the confirmations), the connectors stopped with a last cancel of anything left, the
journal drained, and a summary printed from the journal itself, so what is printed is exactly
what ``marketlink history`` will show.

Each configured connector is its own bot in the journal (own orders, own client-id instance):
the first connector on a venue is journalled under the bot's name, any other one on the same
venue under ``<bot>/<connector>``, so a config with one connector per venue keeps the identity it
always had. A ``--sandbox-url`` run is journalled apart from live runs (venue ``<venue>@sandbox``):
a sandbox session must never restore, or cancel, a live bot's orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from marketlink.core.credentials import Credentials
    from marketlink.engine.connector import SpotConnector
    from marketlink.journal import Journal, Recorder
    from marketlink.sandbox.server import Sandbox
    from marketlink.strategy import StrategyConfig, StrategyRunner

__all__ = [
    "EXIT_LEFT_OPEN",
    "EXIT_STRATEGY_FAILED",
    "MAIN_PAIR",
    "Session",
    "journal_identities",
    "main_job_parameters",
    "run",
]

log = logging.getLogger(__name__)

MAIN_PAIR = "BTC-USDT"
MAIN_CONNECTOR = "binance"
#: Exit codes besides 0 (clean), 2 (bad config) and 130 (interrupted while starting).
EXIT_LEFT_OPEN = 1  # orders not confirmed cancelled (at the stop, or left by the last run)
EXIT_STRATEGY_FAILED = 3  # the strategy stopped itself after max_consecutive_errors


def main_job_parameters() -> dict[str, Any]:
    """The main job's PMM parameters. Quotes one tick outside the best prices (``price_source:
    best`` with a zero spread, moved off the touch by the strategy's never-cross rule), so the
    sandbox's flow, which trades through the touch about once a second, fills them within
    seconds; re-quoted every 5 s so they follow the market."""
    return {
        "connector": MAIN_CONNECTOR,
        "trading_pair": MAIN_PAIR,
        "bid_spread": Decimal(0),
        "ask_spread": Decimal(0),
        "order_amount": Decimal("0.01"),
        "order_refresh_time": 5.0,
        "price_source": "best",
        "hanging_orders_enabled": False,
    }


_CONFIG = typer.Argument(help="Strategy file (YAML); none: the main job on the embedded sandbox.",
                         show_default=False)
_DURATION = typer.Option("--duration", min=0.0, help="Stop after this many seconds (default: until Ctrl-C).")
_SEED = typer.Option("--seed", help="Seed of the sandbox's market flow.")
_SANDBOX = typer.Option("--sandbox", help="Run CONFIG on the embedded sandbox with its demo keys.")
_BOT = typer.Option("--bot", help="Name in the journal (default: 'main', or CONFIG's file name).")
_SANDBOX_URL = typer.Option(
    "--sandbox-url",
    help="Run CONFIG on a `marketlink sandbox` at this URL, with the keys in MARKETLINK_API_KEY and "
    "MARKETLINK_API_SECRET; journalled apart from live runs.",
)


def run(
    config: Annotated[Path | None, _CONFIG] = None,
    duration: Annotated[float | None, _DURATION] = None,
    seed: Annotated[int, _SEED] = 7,
    sandbox: Annotated[bool, _SANDBOX] = False,
    bot: Annotated[str | None, _BOT] = None,
    sandbox_url: Annotated[str | None, _SANDBOX_URL] = None,
) -> None:
    """Run a strategy live: with no CONFIG, market making on the embedded sandbox (the main job)."""
    from rich.console import Console

    from marketlink.cli.status_cmd import MAIN_BOT
    from marketlink.core.errors import ConfigError, MarketlinkError
    from marketlink.strategy import load_config, parse_config

    console = Console(highlight=False)
    try:
        if sandbox_url is not None and (config is None or sandbox):
            raise ConfigError("--sandbox-url runs a CONFIG file on a sandbox started separately: "
                              "give CONFIG, and not --sandbox (the embedded one)")
        if config is None:
            strategy = parse_config(_main_job_yaml(), source="the main job")
            use_sandbox, name = True, bot or MAIN_BOT
        else:
            strategy = load_config(config)
            use_sandbox, name = sandbox, bot or config.stem
        if sandbox_url is not None:
            credentials = _sandbox_credentials(strategy, sandbox_url)
        else:
            credentials = {} if use_sandbox else _credentials_for(strategy)
        session = Session(strategy, name, console, sandbox=use_sandbox, seed=seed, credentials=credentials,
                          sandbox_url=sandbox_url)
        code = asyncio.run(session.run(duration))
    except MarketlinkError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (TimeoutError, OSError) as exc:  # a venue that never became ready, a port, a disk
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:  # pragma: no cover - only where signal handlers cannot be installed
        code = 130
    raise typer.Exit(code)


def _main_job_yaml() -> str:
    lines = ["strategy: pure_market_making", "connectors:", f"  {MAIN_CONNECTOR}:",
             f"    trading_pairs: [{MAIN_PAIR}]", "runner:", "  tick_interval: 0.5", "  cancel_timeout: 10",
             "parameters:"]
    lines += [f"  {k}: {v}" for k, v in main_job_parameters().items()]
    return "\n".join(lines) + "\n"


def _credentials_for(config: StrategyConfig) -> dict[str, Credentials]:
    """Keys of every venue the config names, from the key store; asks the password once
    (``MARKETLINK_PASSWORD`` for scripts)."""
    from marketlink.client.home import keystore_path, marketlink_home
    from marketlink.client.keystore import KeyStore, password_from_env

    store = KeyStore(keystore_path(marketlink_home()))
    password = password_from_env() or typer.prompt("key store password", hide_input=True)
    return {name: store.get(s.venue, password) for name, s in config.connectors.items()}


def _sandbox_credentials(config: StrategyConfig, url: str) -> dict[str, Credentials]:
    """The sandbox's keys, from the environment (a sandbox prints them; the key store holds the
    live ones, which a sandbox would refuse and must never receive)."""
    from marketlink.cli.connect_cmd import ENV_API_KEY, ENV_API_SECRET
    from marketlink.core.credentials import Credentials
    from marketlink.core.errors import ConfigError

    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--sandbox-url must be an http:// or https:// URL, got {url!r}")
    key, secret = os.environ.get(ENV_API_KEY, ""), os.environ.get(ENV_API_SECRET, "")
    if not key or not secret:
        raise ConfigError(f"--sandbox-url needs the sandbox's demo keys in {ENV_API_KEY} and "
                          f"{ENV_API_SECRET} (marketlink sandbox prints them)")
    return {name: Credentials(key, api_secret=secret) for name in config.connectors}


def journal_identities(
    connectors: Mapping[str, str], bot: str, *, sandbox_url: str | None = None
) -> dict[str, tuple[str, str]]:
    """Connector name -> (bot name, venue key) in the journal, for connectors given as name ->
    venue in the config's order. One bot per connector, so two connectors on one venue never
    restore (or total) each other's orders; the first on a venue keeps the plain bot name, so
    a config with one connector per venue keeps the identity (and the orders) it always had."""
    out: dict[str, tuple[str, str]] = {}
    taken: set[str] = set()
    for name, venue in connectors.items():
        key = venue.lower() if sandbox_url is None else f"{venue.lower()}@sandbox"
        out[name] = (bot if key not in taken else f"{bot}/{name}", key)
        taken.add(key)
    return out


@dataclass
class _Tally:
    """Counts the session shows live; the summary comes from the journal."""

    fills: int = 0
    volume: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)

    def on_event(self, event: object) -> None:
        from marketlink.core.events import OrderFilled

        if isinstance(event, OrderFilled):
            self.fills += 1
            base, quote = self.volume.get(event.trading_pair, (Decimal(0), Decimal(0)))
            self.volume[event.trading_pair] = (base + event.amount, quote + event.quote_amount)


class Session:
    """One run of one strategy: start, live view, clean stop, summary. ``await run(duration)``
    returns the exit status: 0 clean; 1 (``EXIT_LEFT_OPEN``) when orders could not be confirmed
    cancelled, at the stop or, left by the last run, at the start; 3 (``EXIT_STRATEGY_FAILED``)
    when the strategy stopped itself after too many errors; 130 when interrupted while starting."""

    def __init__(
        self,
        config: StrategyConfig,
        bot: str,
        console: Console,
        *,
        sandbox: bool,
        seed: int = 7,
        credentials: Mapping[str, Credentials] | None = None,
        home: Path | None = None,
        start_timeout: float = 60.0,
        sandbox_url: str | None = None,
    ) -> None:
        self.config = config
        self.bot = bot
        self.console = console
        self.use_sandbox = sandbox
        self.seed = seed
        self.credentials = dict(credentials or {})
        self.home = home
        self.start_timeout = start_timeout
        self.stop = asyncio.Event()
        self.reason = "duration reached"
        self.sandbox: Sandbox | None = None
        self.connectors: dict[str, SpotConnector] = {}
        self.recorders: list[Recorder] = []
        self.bot_ids: dict[str, int] = {}
        self.journal: Journal | None = None
        self.runner: StrategyRunner | None = None
        self.tally = _Tally()
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.start_balances: dict[str, dict[str, Decimal]] = {}
        self.sandbox_url = sandbox_url.rstrip("/") if sandbox_url else None
        #: what became of the orders the last run left open: (connector, CancelResult) each
        self.leftovers: list[tuple[str, Any]] = []
        self.leftovers_refused = False  # some could not be cancelled: the strategy was not started

    # -- the whole run ------------------------------------------------------------------------------

    async def run(self, duration: float | None) -> int:
        from marketlink.cli.live import LiveDisplay, View, follow
        from marketlink.cli.status_cmd import SnapshotWriter, status_path
        from marketlink.client.home import marketlink_home

        home = self.home or marketlink_home()
        writer = SnapshotWriter(status_path(home, self.bot))
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._interrupt)
                installed.append(sig)
        timer = loop.call_later(duration, self.stop.set) if duration is not None else None
        left_open: list[str] = []
        watcher: asyncio.Task[None] | None = None
        try:
            if await self._start(home):
                watcher = asyncio.create_task(self._watch_runner())
                view = View(self._fingerprint, self._render, self._line)
                display = LiveDisplay(self.console)

                async def publish() -> None:
                    while not self.stop.is_set():
                        writer.offer(self.snapshot())
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.stop.wait(), 0.25)

                publisher = asyncio.create_task(publish())
                with display:
                    await follow(display, view, self.stop)
                await publisher
                self.console.print(f"stopping ({self.reason}): cancelling orders ...")
                left_open = await self._shutdown()
            elif not self.leftovers_refused:
                return 130 if self.reason == "interrupted" else 1
        finally:
            if timer is not None:
                timer.cancel()
            if watcher is not None:
                watcher.cancel()
            if self.runner is None or self.connectors:
                left_open += await self._shutdown()
            for sig in installed:
                loop.remove_signal_handler(sig)
            snap = self.snapshot()
            snap.update(running=False, state="stopped", stop_reason=self.reason)
            writer.offer(snap, force=True)
        self._print_summary(left_open)
        if self.runner is not None and self.runner.stopped_by_errors:
            return EXIT_STRATEGY_FAILED
        return EXIT_LEFT_OPEN if left_open or self.leftovers_refused else 0

    async def _watch_runner(self) -> None:
        """The strategy may stop on its own (``max_consecutive_errors``): the session ends with
        it, as on a normal stop, rather than keeping connectors and a live view up around a
        strategy that no longer runs."""
        assert self.runner is not None
        await self.runner.wait_stopped()
        if not self.stop.is_set():
            self.reason = f"the strategy stopped: {self.runner.stop_reason}"
            if self.runner.stopped_by_errors:
                log.error("the strategy stopped after too many errors (%s): ending the session",
                          self.runner.stop_reason)
            self.stop.set()

    def _interrupt(self) -> None:
        if not self.stop.is_set():
            self.reason = "interrupted"
            self.stop.set()

    # -- start --------------------------------------------------------------------------------------

    async def _start(self, home: Path) -> bool:
        """Sandbox, journal, connectors (with progress), runner. False when stopped meanwhile."""
        import marketlink
        from marketlink.client.bans import BANS_FILE, ban_until
        from marketlink.client.home import journal_path
        from marketlink.engine.context import ConnectorConfig
        from marketlink.journal import Journal
        from marketlink.sandbox.config import SandboxConfig
        from marketlink.sandbox.server import Sandbox
        from marketlink.strategy import build_runner

        if self.use_sandbox:
            pairs = sorted({p for s in self.config.connectors.values() for p in s.trading_pairs})
            self.sandbox = Sandbox(SandboxConfig(seed=self.seed, markets=tuple(pairs)))
            await self.sandbox.start()
            self.console.print(f"sandbox: Binance protocol at {self.sandbox.base_url} with market flow "
                               f"(seed {self.seed}), demo account")
        self.journal = Journal.open(journal_path(home))
        starts: list[asyncio.Task[None]] = []
        identities = journal_identities({n: s.venue for n, s in self.config.connectors.items()}, self.bot,
                                        sandbox_url=self.sandbox_url)
        for name, settings in self.config.connectors.items():
            bot_name, venue_key = identities[name]
            record = self.journal.bot(bot_name, venue_key)
            self.bot_ids[name] = record.bot_id
            conn_config = ConnectorConfig(client_id_instance=record.client_id_instance)
            creds = self.credentials.get(name)
            endpoints = None
            if self.sandbox_url is not None:
                from marketlink.venues.registry import REGISTRY

                endpoints = REGISTRY.lookup(settings.venue).local_endpoints(self.sandbox_url)
            connecting = marketlink.connect(
                settings.venue, settings.trading_pairs, sandbox=self.sandbox, endpoints=endpoints,
                domain="com" if self.sandbox is not None or endpoints is not None else settings.domain,
                api_key=creds.api_key if creds else None, api_secret=creds.api_secret if creds else None,
                private_key_pem=creds.private_key_pem if creds else None,
                config=conn_config, timeout=self.start_timeout,
            )
            conn = connecting.connector
            self.connectors[name] = conn
            self.recorders.append(self.journal.attach(conn, record.bot_id))
            conn.bus.subscribe_callback(self.tally.on_event)
            if self.sandbox is None:  # a ban is written down the moment it is seen: a kill may follow
                conn.bus.subscribe_callback(functools.partial(self._on_status, conn))
            # A bot on a real venue takes back the orders its last run left open; the embedded
            # sandbox is new every run, so what an old run left there no longer exists.
            restore = [] if self.sandbox is not None else self.journal.restore_orders(record.bot_id,
                                                                                      conn.name)
            # A ban an earlier run of this machine saw still holds: start sends nothing before it.
            banned = None if self.sandbox is not None else ban_until(home, conn.ctx.endpoints.rest)
            if banned is not None:
                self.console.print(
                    f"{name}: IP ban on {conn.ctx.endpoints.rest} until "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(banned))}, recorded in "
                    f"{home / BANS_FILE} by an earlier run: not starting"
                )
            starts.append(asyncio.create_task(
                conn.start(restore=restore, timeout=self.start_timeout, banned_until=banned)
            ))
        if not await self._wait_started(starts):
            return False
        if not await self._cancel_leftovers():
            return False
        self.start_balances = {
            n: {a: b.total for a, b in c.balances().items()} for n, c in self.connectors.items()
        }
        self.runner = build_runner(self.config, self.connectors)
        await self.runner.start()
        if self.sandbox is not None:
            where = "the sandbox"
        elif self.sandbox_url is not None:
            where = f"the sandbox at {self.sandbox_url}"
        else:
            where = ", ".join(f"{s.venue} ({s.domain})" for s in self.config.connectors.values())
        self.console.print(f"running {self.config.strategy} as bot {self.bot!r} on {where}; "
                           "Ctrl-C stops, cancels the orders and prints a summary")
        self.started = time.monotonic()
        return True

    async def _cancel_leftovers(self) -> bool:
        """Cancel every live order the bot's last run left (restored from the journal, or adopted
        from the venue by the reconciler) and wait for the confirmations, within the runner's
        ``cancel_timeout``. Nothing of the strategy runs yet, so every live order of these
        connectors' client-id instances is a leftover. False (the strategy is not started) when
        one cannot be confirmed cancelled, unless ``runner.start_with_uncancelled_orders``."""
        timeout = self.config.runner.cancel_timeout
        results = await asyncio.gather(*(c.cancel_all(timeout) for c in self.connectors.values()))
        failed: list[str] = []
        for name, outcome in zip(self.connectors, results, strict=True):
            for r in outcome:
                self.leftovers.append((name, r))
                what = f"{name}: order {r.client_order_id} ({r.trading_pair}) left by the last run"
                if r.success:
                    log.info("%s: %s", what, r.outcome)
                    self.console.print(f"{what}: {r.outcome}")
                else:
                    failed.append(r.client_order_id)
                    log.error("%s: NOT cancelled: %s (%s)", what, r.outcome, r.reason)
                    self.console.print(f"{what}: NOT cancelled: {r.outcome} ({r.reason})")
        if not failed:
            return True
        if self.config.runner.start_with_uncancelled_orders:
            self.console.print(f"warning: starting beside {len(failed)} uncancelled orders "
                               "(runner.start_with_uncancelled_orders)")
            return True
        self.leftovers_refused = True
        self.reason = "orders left by the last run could not be cancelled"
        typer.echo(f"error: not starting the strategy next to {len(failed)} orders of the last run that "
                   f"could not be cancelled: {', '.join(failed)}; cancel them at the venue, or set "
                   "runner.start_with_uncancelled_orders: true", err=True)
        return False

    async def _wait_started(self, starts: list[asyncio.Task[None]]) -> bool:
        """Wait for every connector's start, showing which parts are not ready yet."""
        from marketlink.cli.live import LiveDisplay, View

        def pending() -> str:
            waiting = [f"{n}: {', '.join(f'{part} ({why})' for part, why in _not_ready(c))}"
                       for n, c in self.connectors.items() if not c.ready]
            return "; ".join(waiting)

        def line() -> str:
            text = pending()
            return f"starting ... waiting for {text}" if text else "starting ... ready"

        def render() -> Any:
            from rich.spinner import Spinner

            return Spinner("dots", line())

        display = LiveDisplay(self.console, plain_every=1.0)
        gathered: asyncio.Future[Any] = asyncio.gather(*starts)
        stopped: asyncio.Future[Any] = asyncio.ensure_future(self.stop.wait())
        try:
            with display:
                while not gathered.done() and not self.stop.is_set():
                    display.offer(View(line, render, line))
                    await asyncio.wait([gathered, stopped], timeout=0.1, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not gathered.done():
            gathered.cancel()
            with contextlib.suppress(BaseException):
                await gathered
            return False
        gathered.result()  # the start's error, if any, goes up
        return True

    # -- stop ---------------------------------------------------------------------------------------

    def _on_status(self, conn: SpotConnector, event: object) -> None:
        """A status change is how a ban shows (the ``trading`` part): record it at once, not at
        shutdown, which a SIGKILL after a grace period may never let finish."""
        from marketlink.core.events import ConnectorStatusChanged

        if isinstance(event, ConnectorStatusChanged) and conn.ip_ban_until() is not None:
            self._record_ban(conn)

    def _record_ban(self, conn: SpotConnector) -> None:
        """Carry an IP ban this run saw to the next run on this machine (add-only: a connector
        that saw none must not erase what another one saw)."""
        from marketlink.client.bans import record_ban
        from marketlink.client.home import marketlink_home

        try:
            record_ban(self.home or marketlink_home(), conn.ctx.endpoints.rest, conn.ip_ban_until())
        except OSError:
            log.warning("could not record the IP ban state of %s", conn.name, exc_info=True)

    async def _shutdown(self) -> list[str]:
        """Runner (cancels its orders), connectors (cancel anything left), journal, sandbox.
        Idempotent; returns the ids not confirmed cancelled."""
        left: list[str] = []
        if self.runner is not None:
            try:
                await self.runner.stop(self.reason)
                left.extend(self.runner.left_open)
            except Exception:
                log.exception("stopping the strategy failed")
        conns, self.connectors = self.connectors, {}
        self._final_balances = {n: {a: b.total for a, b in c.balances().items()} for n, c in conns.items()}
        for name, conn in conns.items():
            try:
                results = await conn.stop(cancel_orders=True, timeout=10)
                left.extend(r.client_order_id for r in results if not r.success)
            except Exception:
                log.exception("stopping connector %s failed", name)
            if self.sandbox is None:  # the embedded sandbox is new every run: nothing to carry
                self._record_ban(conn)
        for rec in self.recorders:
            await rec.aclose()
        self.recorders = []
        if self.sandbox is not None:
            await self.sandbox.stop()
        return sorted(set(left))

    # -- live view and snapshot ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What ``marketlink status`` shows: JSON-ready, decimals as strings."""
        snap: dict[str, Any] = {
            "bot": self.bot, "pid": os.getpid(), "running": True, "updated": time.time(),
            "started": self.started_wall, "elapsed": round(time.monotonic() - self.started, 1),
            "strategy": self.config.strategy, "where": "sandbox" if self.use_sandbox else "live",
            "fills": self.tally.fills,
            "volume": {p: {"base": str(b), "quote": str(q)} for p, (b, q) in self.tally.volume.items()},
            "books": {}, "orders": [], "balances": {}, "pnl": [], "state": "starting",
            "journal": self._journal_health(),
            "leftovers": {"cancelled": sum(r.success for _, r in self.leftovers),
                          "not_cancelled": [r.client_order_id for _, r in self.leftovers if not r.success]},
        }
        for name, conn in self.connectors.items():
            for pair in conn.trading_pairs:
                snap["books"][f"{name}:{pair}" if len(self.connectors) > 1 else pair] = {
                    "bid": _str(conn.best_bid(pair)), "ask": _str(conn.best_ask(pair))}
        if self.runner is None:
            return snap
        st = self.runner.status()
        snap.update(
            state=str(st.state), errors=st.errors, last_error=st.last_error, orders_placed=st.orders_placed,
            orders_failed=st.orders_failed, strategy_status=dict(st.strategy_status),
            orders=[{"id": o.client_order_id, "connector": o.connector, "pair": o.trading_pair,
                     "side": o.side.value, "price": _str(o.price), "amount": str(o.amount),
                     "executed": str(o.executed), "state": o.state} for o in st.open_orders],
            balances={c: {a: {"total": str(t), "available": str(v)} for a, (t, v) in assets.items()}
                      for c, assets in st.balances.items()},
            pnl=[{"connector": p.connector, "pair": p.trading_pair, "fills": p.fills,
                  "base_delta": str(p.base_delta), "quote_delta": str(p.quote_delta),
                  "value": _str(p.value)} for p in st.pnl],
        )
        return snap

    def _journal_health(self) -> dict[str, Any]:
        """The journal writers' state for the status page: a failing write is kept and retried,
        and the user must see that it is failing (and why) while it does."""
        failures = sum(r.stats.write_retries for r in self.recorders)
        pending = sum(r.stats.rows_pending for r in self.recorders)
        errors = [r.stats.last_error for r in self.recorders if r.stats.last_error is not None]
        return {"failing": bool(errors), "write_failures": failures, "rows_pending": pending,
                "last_error": errors[0] if errors else None}

    def _fingerprint(self) -> str:
        snap = self.snapshot()
        snap.pop("updated")
        snap.pop("elapsed")
        return repr(sorted(snap.items()))

    def _render(self) -> Any:
        from rich.console import Group

        from marketlink.cli.live import book_table, status_view
        from marketlink.core.enums import Side

        parts: list[Any] = []
        for name, conn in self.connectors.items():
            for pair in conn.trading_pairs:
                bids, asks = conn.book_rows(pair, Side.BUY, 5), conn.book_rows(pair, Side.SELL, 5)
                parts.append(book_table(pair, bids, asks, title=f"{pair} on {name}"))
        parts.append(status_view(self.snapshot()))
        return Group(*parts)

    def _line(self) -> str:
        from marketlink.cli.live import status_line

        return status_line(self.snapshot())

    # -- summary ----------------------------------------------------------------------------------------

    def _print_summary(self, left_open: list[str]) -> None:
        from marketlink.cli.status_cmd import summary_lines

        out = self.console.print
        out(f"summary of bot {self.bot!r} ({self.reason}, {time.monotonic() - self.started:.1f}s):")
        if self.leftovers:
            done = [r.client_order_id for _, r in self.leftovers if r.success]
            stuck = [f"{r.client_order_id} ({r.outcome})" for _, r in self.leftovers if not r.success]
            out(f"  orders left by the last run: {len(done)} cancelled at the start"
                + (f"; NOT cancelled: {', '.join(stuck)}" if stuck else ""))
        health = self._journal_health()
        if health["write_failures"]:
            out(f"  journal: {health['write_failures']} failed writes (kept and retried); "
                f"{health['rows_pending']} rows still unwritten" + (
                    f", last error: {health['last_error']}" if health["last_error"] else ""))
        if self.journal is not None:
            for name, bot_id in self.bot_ids.items():
                summary = self.journal.summary(bot_id, since=self.started_wall)
                prefix = f"{name}: " if len(self.bot_ids) > 1 else ""
                for line in summary_lines(summary):
                    out(f"  {prefix}{line}")
            self.journal.close()
            self.journal = None
        final = getattr(self, "_final_balances", {})
        for name, before in self.start_balances.items():
            after = final.get(name, {})
            assets = sorted({a for s in self.config.connectors[name].trading_pairs for a in s.split("-")})
            for asset in assets:
                b, a = before.get(asset, Decimal(0)), after.get(asset, Decimal(0))
                out(f"  inventory {asset}: {b} -> {a} ({'+' if a - b >= 0 else ''}{a - b})")
        if self.runner is not None:
            for p in self.runner.status().pnl:
                quote = p.trading_pair.split("-")[1]
                value = "unknown (no price)" if p.value is None else f"{p.value} {quote}"
                out(f"  PnL {p.trading_pair}: {value} at the last mid {p.price} (fees included)")
        if left_open:
            out(f"  WARNING: {len(left_open)} orders not confirmed cancelled: {', '.join(left_open)}")
        else:
            out("  all orders cancelled")
        if self.runner is not None and self.runner.stopped_by_errors:
            out(f"  ERROR: the strategy stopped itself ({self.runner.stop_reason}); "
                f"exit code {EXIT_STRATEGY_FAILED}")
            typer.echo(f"error: the strategy stopped after too many errors: {self.runner.stop_reason}",
                       err=True)


def _not_ready(conn: SpotConnector) -> list[tuple[str, str]]:
    return [(part, s.detail) for part, s in conn.status().items() if not s.ready]


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
