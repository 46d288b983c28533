"""The sandbox process harness: one exchange, its market flow, venue front-ends, one HTTP server.

``Sandbox`` is what the ``marketlink sandbox`` command, the demo and the end-to-end tests start.
It owns the process-level pieces (the aiohttp server, the flow timer, the clock, credentials and
faults) and hands them to front-ends in one ``SandboxContext``; the exchange and the front-ends
own everything venue- or market-specific.

The timer calls ``MarketFlow.step`` and then every front-end's ``on_tick`` every
``tick_seconds``. A failure in either is logged and counted (see ``health()``), never allowed to
stop the timer: a sandbox that silently froze would make every test after it lie. Tests that
need exact control build it with ``autotick=False`` and call ``await sandbox.tick(now_ms)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web

from marketlink.core.errors import ConfigError
from marketlink.sandbox.admin import install_admin
from marketlink.sandbox.config import FLOW_MAKER, FLOW_TAKER, SandboxConfig
from marketlink.sandbox.context import ApiCredential, Frontend, SandboxClock, SandboxContext
from marketlink.sandbox.exchange import Exchange, FlowConfig, FlowMarket, GroundTruth, MarketFlow
from marketlink.sandbox.faults import Faults
from marketlink.sandbox.markets_default import MarketSetup
from marketlink.sandbox.venues.binance import BinanceSpotFrontend

log = logging.getLogger(__name__)

FrontendFactory = Callable[[SandboxContext], Frontend]


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    """The funded demo account and its HMAC key; ``repr`` hides the secret."""

    account: str
    api_key: str
    api_secret: str = field(repr=False)


def default_frontends() -> list[FrontendFactory]:
    """The venues a sandbox speaks when the caller names none. Each reads its knobs from
    ``SandboxConfig.venue_options[<its name>]``."""
    return [BinanceSpotFrontend]


class Sandbox:
    """A running (or startable) sandbox exchange. Use ``async with Sandbox(...) as sb`` or
    ``await sb.start()`` / ``await sb.stop()``."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        frontends: Sequence[FrontendFactory] | None = None,
        *,
        autotick: bool = True,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self.config = config or SandboxConfig()
        self.autotick = autotick
        self._setups: list[MarketSetup] = self.config.market_setups()
        self._exchange = Exchange([s.spec for s in self._setups])
        self._faults = Faults(seed=self.config.seed, hang_seconds=self.config.fault_hang_seconds)
        self._clock = SandboxClock(self._faults, wall_ms)
        self._demo = DemoCredentials(
            account=self.config.demo_account,
            api_key=self.config.api_key or secrets.token_hex(32),
            api_secret=self.config.api_secret or secrets.token_hex(32),
        )
        self._context = SandboxContext(
            exchange=self._exchange,
            faults=self._faults,
            clock=self._clock,
            credentials=self._open_accounts(),
            options=self.config.venue_options,
        )
        self._flow = MarketFlow(self._exchange, self._flow_config())
        factories = default_frontends() if frontends is None else list(frontends)
        self._frontends: list[Frontend] = [make(self._context) for make in factories]
        self._runner: web.AppRunner | None = None
        self._timer: asyncio.Task[None] | None = None
        self._tick_lock = asyncio.Lock()
        self._port = 0
        self._started_ms: int | None = None
        self._stopped = False
        self.counters: dict[str, int] = {"ticks": 0, "flow_errors": 0, "frontend_errors": 0, "late_ticks": 0}

    def _open_accounts(self) -> dict[str, ApiCredential]:
        now = self._clock.now_ms()
        demo = self._demo
        self._exchange.open_account(demo.account, balances=self.config.initial_balances(), now_ms=now)
        credentials = {demo.api_key: ApiCredential(demo.api_key, demo.account, secret=demo.api_secret)}
        for acc in self.config.accounts:
            self._exchange.open_account(
                acc.name, maker_fee=acc.maker_fee, taker_fee=acc.taker_fee, balances=acc.balances, now_ms=now
            )
            for key in acc.keys:
                if key.api_key in credentials:  # the random demo key can only collide by chance
                    raise ConfigError(f"account {acc.name!r}: API key {key.api_key!r} is used twice")
                credentials[key.api_key] = key
        return credentials

    def _flow_config(self) -> FlowConfig:
        return FlowConfig(
            markets=tuple(FlowMarket(s.symbol, s.initial_price) for s in self._setups),
            seed=self.config.seed,
            enabled=self.config.flow,
            rate=self.config.flow_rate,
            maker_account=FLOW_MAKER,
            taker_account=FLOW_TAKER,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> Sandbox:
        """Bind the server, fill the books with a first flow step, start the timer."""
        if self._runner is not None or self._stopped:
            raise RuntimeError("a Sandbox starts once; make a new one to start again")
        app = web.Application()
        for frontend in self._frontends:
            frontend.install(app)
        if self.config.admin_token is not None:
            install_admin(app, self, self.config.admin_token)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=self.config.shutdown_timeout
        )
        await runner.setup()
        # "localhost" may resolve to two addresses, and port 0 would give each its own port.
        host = "127.0.0.1" if self.config.host.lower() == "localhost" else self.config.host
        try:
            site = web.TCPSite(runner, host, self.config.port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"cannot listen on {host}:{self.config.port}: {exc.strerror or exc}") from None
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._started_ms = self._clock.now_ms()
        await self.tick()
        if self.autotick:
            self._timer = asyncio.create_task(self._run_timer(), name=f"sandbox-timer-{self._port}")
        log.info("sandbox listening on %s (%d markets)", self.base_url, len(self._setups))
        return self

    async def stop(self) -> None:
        """Stop the timer, close every front-end's sockets, shut the server down. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        for frontend in self._frontends:
            try:
                await frontend.close()
            except Exception:
                self.counters["frontend_errors"] += 1
                log.exception("sandbox front-end %s failed to close", frontend.name)
        if self._runner is not None:
            await self._runner.cleanup()
            log.info("sandbox on port %d stopped", self._port)

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- time -----------------------------------------------------------------------------------

    async def tick(self, now_ms: int | None = None) -> int:
        """One market-flow step and one ``on_tick`` per front-end at ``now_ms`` (default: the
        sandbox clock). Returns the time used."""
        async with self._tick_lock:
            now = self._clock.now_ms() if now_ms is None else now_ms
            self.counters["ticks"] += 1
            try:
                self._flow.step(now)
            except Exception:
                self.counters["flow_errors"] += 1
                log.exception("sandbox market flow step failed")
            for frontend in self._frontends:
                try:
                    await frontend.on_tick(now)
                except Exception:
                    self.counters["frontend_errors"] += 1
                    log.exception("sandbox front-end %s failed on tick", frontend.name)
            return now

    async def _run_timer(self) -> None:
        """Tick at a fixed rate. When a tick overruns, the missed ones are skipped rather than
        run in a burst: a burst would move the books faster than the configured rate."""
        loop = asyncio.get_running_loop()
        period = self.config.tick_seconds
        deadline = loop.time() + period
        while True:
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            await self.tick()
            deadline += period
            now = loop.time()
            if deadline < now:
                missed = int((now - deadline) // period) + 1
                self.counters["late_ticks"] += missed
                deadline += missed * period

    # -- views ----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._stopped

    @property
    def port(self) -> int:
        """The bound port (0 before ``start``)."""
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._url_host()}:{self._port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self._url_host()}:{self._port}"

    def _url_host(self) -> str:
        host = self.config.host
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return host
        if ip.is_unspecified:  # bound to every interface; loopback reaches it from here
            return "127.0.0.1" if ip.version == 4 else "[::1]"
        return f"[{ip}]" if ip.version == 6 else str(ip)

    @property
    def exchange(self) -> Exchange:
        return self._exchange

    @property
    def faults(self) -> Faults:
        return self._faults

    @property
    def context(self) -> SandboxContext:
        return self._context

    @property
    def flow(self) -> MarketFlow:
        return self._flow

    @property
    def frontends(self) -> tuple[Frontend, ...]:
        return tuple(self._frontends)

    @property
    def markets(self) -> tuple[MarketSetup, ...]:
        return tuple(self._setups)

    @property
    def demo_credentials(self) -> DemoCredentials:
        return self._demo

    def ground_truth(self) -> GroundTruth:
        """Balances, open orders, books and recent trades as the exchange holds them now."""
        return self._exchange.ground_truth()

    def health(self) -> dict[str, object]:
        """Counters a test or an operator checks to see that nothing failed quietly."""
        now = self._clock.now_ms()
        return {
            "running": self.running,
            "now_ms": now,
            "uptime_ms": now - self._started_ms if self._started_ms is not None else 0,
            "markets": [s.pair for s in self._setups],
            "frontends": [f.name for f in self._frontends],
            "ticks": self.counters["ticks"],
            "late_ticks": self.counters["late_ticks"],
            "errors": {
                "flow": self.counters["flow_errors"],
                "frontend": self.counters["frontend_errors"],
                "listener": self._exchange.listener_errors,
            },
            "flow": {"enabled": self.config.flow, "rate": self.config.flow_rate, **self._flow.counters},
            "faults": {"fired": dict(self._faults.fired), "clock_shift_ms": self._faults.clock_shift_ms},
        }
