"""The Binance Spot front-end: Binance's REST API, WebSocket API, market streams and user data
streams over the sandbox's exchange engine, installed into the server's aiohttp application.

Paths are Binance's own (``/api/v3/...``, ``/ws-api/v3``, ``/ws/<stream>``, ``/stream?streams=``),
all on the sandbox's one host and port, so a client needs only its base URLs changed.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from marketlink.core.errors import ConfigError
from marketlink.sandbox.context import SandboxContext
from marketlink.sandbox.venues.binance.auth import Verifier
from marketlink.sandbox.venues.binance.config import BinanceSpotConfig
from marketlink.sandbox.venues.binance.endpoints import Operations
from marketlink.sandbox.venues.binance.limits import RateLimiter
from marketlink.sandbox.venues.binance.rest import RestApi
from marketlink.sandbox.venues.binance.streams import MarketStreams
from marketlink.sandbox.venues.binance.userdata import UserStreams
from marketlink.sandbox.venues.binance.views import Formats
from marketlink.sandbox.venues.binance.wsapi import WsApi


class BinanceSpotFrontend:
    name = "binance"

    def __init__(self, ctx: SandboxContext, config: BinanceSpotConfig | None = None) -> None:
        if config is None:
            raw = ctx.options.get(self.name, {})
            if not isinstance(raw, Mapping):
                raise ConfigError(f"sandbox options[{self.name!r}] must be a mapping")
            config = BinanceSpotConfig.from_options(raw)
        self.ctx = ctx
        self.config = config
        now = ctx.clock.now_ms
        self.limiter = RateLimiter(config.rate_limits, config.violations_before_ban, config.ban_ms)
        self.verifier = Verifier(ctx.credential)
        exchange = ctx.exchange
        formats = {s: Formats(exchange.market(s)) for s in exchange.symbols}
        self.user_streams = UserStreams(exchange, ctx.faults, formats.__getitem__, config.listen_key_ttl_ms)
        self.ops = Operations(exchange, config, self.limiter, self.user_streams)
        self.rest = RestApi(self.ops, self.limiter, self.verifier, ctx.faults, now, config)
        self.streams = MarketStreams(exchange, ctx.faults, now, config, self.ops.formats, self.user_streams)
        self.wsapi = WsApi(self.ops, self.limiter, self.verifier, ctx.faults, now, config, self.user_streams)

    def install(self, app: web.Application) -> None:
        self.rest.install(app)
        self.streams.install(app)
        self.wsapi.install(app)

    async def on_tick(self, now_ms: int) -> None:
        self.streams.publish_tick(now_ms)
        self.user_streams.on_tick(now_ms)
        await self.streams.tick_sockets(now_ms)
        await self.wsapi.tick_sockets(now_ms)

    async def close(self) -> None:
        await self.streams.close()
        await self.wsapi.close()
