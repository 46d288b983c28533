"""Q1 connect an API key, Q2 balances, Q3 markets."""

from __future__ import annotations

import secrets

import pytest
from harness import DEMO, PAIR, WAIT, D, World
from qa_support import QALab

from marketlink.client.verify import describe_failure, verify_keys
from marketlink.core.credentials import Credentials
from marketlink.core.enums import OrderType
from marketlink.core.errors import ConfigError
from marketlink.core.events import OrderCancelled, OrderFailed
from marketlink.net.errors import AuthError
from marketlink.sandbox.context import ApiCredential

PAIRS = ("BTC-USDT", "ETH-USDT", "ETH-BTC")


async def test_q01_valid_keys_connect_and_are_verified(world: World) -> None:
    assert world.conn.ready and world.conn.status()["balances"].ready
    creds = world.sb.demo_credentials
    keys = Credentials(creds.api_key, creds.api_secret)
    check = await verify_keys(world.venue.name, keys, world.venue.endpoints(world.sb.base_url))
    assert check.can_trade is True and check.assets > 0 and check.clock_warning is None


async def test_q01_a_wrong_key_or_secret_is_refused_naming_the_cause(lab: QALab) -> None:
    sb = await lab.sandbox()
    creds = sb.demo_credentials
    for bad in (Credentials(secrets.token_hex(32), creds.api_secret),  # unknown key
                Credentials(creds.api_key, secrets.token_hex(32))):  # wrong secret
        conn = lab.keyed_connector(sb, bad)
        with pytest.raises(AuthError) as refused:
            await conn.start(timeout=WAIT)
        assert not conn.ready and not conn.status()["balances"].ready
        message = describe_failure(lab.venue.name, refused.value)
        assert "refused the key" in message
        assert bad.api_key not in message and str(bad.api_secret) not in message
        with pytest.raises(AuthError):
            await verify_keys(lab.venue.name, bad, lab.venue.endpoints(sb.base_url))


async def test_q01_a_key_that_expires_while_the_bot_runs_is_refused_naming_expiry(lab: QALab) -> None:
    sb = await lab.sandbox()
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    sb.context.credentials[key] = ApiCredential(key, DEMO, secret=secret)
    conn = lab.keyed_connector(sb, Credentials(key, secret))
    await conn.start(timeout=WAIT)
    world = World(lab.venue, sb, conn)
    # The key reaches its expiry date (or is revoked) at the venue while the bot runs.
    sb.context.credentials[key] = ApiCredential(key, DEMO, secret=secret, expires_at_ms=0)
    with pytest.raises(AuthError) as refused:
        await conn.refresh_balances()
    message = describe_failure(lab.venue.name, refused.value)
    assert "refused the key" in message and "expired" in message and key not in message
    cid = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("40000"))
    failed = await world.ended(cid)
    assert isinstance(failed, OrderFailed) and world.venue_orders(cid) == []
    with pytest.raises(AuthError):
        await verify_keys(lab.venue.name, Credentials(key, secret), lab.venue.endpoints(sb.base_url))
    # A key that expired before the bot started stops the start with the same error.
    late = lab.keyed_connector(sb, Credentials(key, secret))
    with pytest.raises(AuthError):
        await late.start(timeout=WAIT)
    assert not late.ready


async def test_q01_a_key_without_trading_permission_reads_but_its_orders_fail_clearly(lab: QALab) -> None:
    sb = await lab.sandbox()
    # A second key of the same account, read-only (as a user may create one by mistake).
    key, secret = secrets.token_hex(32), secrets.token_hex(32)
    sb.context.credentials[key] = ApiCredential(key, DEMO, secret=secret, can_trade=False)
    check = await verify_keys(lab.venue.name, Credentials(key, secret), lab.venue.endpoints(sb.base_url))
    assert check.can_trade is False
    conn = lab.keyed_connector(sb, Credentials(key, secret))
    await conn.start(timeout=WAIT)
    world = World(lab.venue, sb, conn)
    cid = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("40000"))
    failed = await world.ended(cid)
    assert isinstance(failed, OrderFailed) and failed.reason
    assert "permission" in failed.reason.lower() or "api-key" in failed.reason.lower()
    assert world.venue_orders(cid) == []


async def test_q02_balances_match_and_available_follows_an_order(world: World) -> None:
    conn = world.conn
    await world.rec.until(world.balances_match)
    total, available = conn.total_balance("USDT"), conn.available_balance("USDT")
    assert total == available > 0
    cid = conn.buy(PAIR, D("0.02"), OrderType.LIMIT, D("45000"))
    await world.created(cid)
    await world.rec.until(lambda: conn.available_balance("USDT") == available - D("900"))
    assert conn.total_balance("USDT") == total
    await world.rec.until(world.balances_match)
    conn.cancel(PAIR, cid)
    assert isinstance(await world.ended(cid), OrderCancelled)
    await world.rec.until(lambda: conn.available_balance("USDT") == available)
    assert conn.total_balance("USDT") == total
    await world.rec.until(world.balances_match)


async def test_q03_every_active_market_is_listed_and_startable_others_refused(lab: QALab) -> None:
    sb = await lab.sandbox(PAIRS)
    lab.venue.halt_market(sb, "ETH-BTC")
    world = await lab.world(sb, ("BTC-USDT",))
    listed = set(world.conn.ctx.markets.rules)
    assert listed == {"BTC-USDT", "ETH-USDT"}  # every trading market, the halted one left out
    everything = await lab.world(sb, tuple(sorted(listed)))
    assert everything.conn.ready and set(everything.conn.trading_pairs) == listed
    for pair in ("ETH-BTC", "DOGE-USDT"):
        refused = lab.connector(sb, ("BTC-USDT", pair))
        with pytest.raises(ConfigError, match=pair):
            await refused.start(timeout=WAIT)
        assert not refused.ready and pair in refused.status()["symbols"].detail
