"""What a connector knows of the venue before any order: order types, markets and their rules,
last prices, reachability, and the status map it reports while starting."""

from __future__ import annotations

import logging
import re

import pytest
from harness import DEMO, PAIR, TAKER, Corruption, D, Lab, World

from marketlink.core.enums import OrderType
from marketlink.core.errors import ConfigError, UnknownSymbol
from marketlink.core.events import ConnectorStatusChanged, OrderCompleted
from marketlink.core.orders import OrderState
from marketlink.engine.context import STATUS_PARTS

PAIRS = ("BTC-USDT", "ETH-USDT", "ETH-BTC")


async def test_supported_order_types_are_the_venues_and_each_is_accepted(world: World) -> None:
    conn = world.conn
    supported = conn.supported_order_types()
    assert supported == world.venue.make_venue(None).spec.order_types
    assert {OrderType.LIMIT, OrderType.LIMIT_MAKER, OrderType.MARKET} <= supported
    maker = conn.buy(PAIR, D("0.01"), OrderType.LIMIT_MAKER, D("40000"))
    await world.created(maker)
    assert world.venue_order(maker).order_type.value == "LIMIT_MAKER"
    assert conn.in_flight_orders()[maker].state is OrderState.OPEN
    world.maker("SELL", "0.02", "60000")
    await world.book_caught_up()  # a market order is judged at the book's prices
    market = conn.buy(PAIR, D("0.02"), OrderType.MARKET)
    await world.rec.until(lambda: bool(world.rec.of(OrderCompleted, market)))
    assert world.rec.kinds(market) == ["OrderCreated", "OrderFilled", "OrderCompleted"]
    venue_order = world.venue_order(market)
    assert venue_order.order_type.value == "MARKET" and venue_order.executed_qty == D("0.02")


async def test_rules_are_loaded_for_every_trading_market_and_others_are_skipped(lab: Lab) -> None:
    sb = await lab.sandbox(PAIRS)
    lab.venue.halt_market(sb, "ETH-BTC")
    world = await lab.world(sb, ("BTC-USDT", "ETH-USDT"))
    for pair in ("BTC-USDT", "ETH-USDT"):
        rule = world.conn.trading_rule(pair)
        spec = sb.exchange.market(lab.venue.symbol(pair))
        assert (rule.tick_size, rule.step_size) == (spec.tick_size, spec.step_size)
        assert (rule.min_order_size, rule.min_notional) == (spec.min_qty, spec.min_notional)
        assert rule.max_order_size == spec.max_qty
    with pytest.raises(UnknownSymbol):
        world.conn.trading_rule("ETH-BTC")  # listed by the venue, but not trading
    halted = lab.connector(sb, ("BTC-USDT", "ETH-BTC"))
    with pytest.raises(ConfigError, match="ETH-BTC"):
        await halted.start(timeout=5)
    assert not halted.status()["symbols"].ready


async def test_markets_the_venue_lists_unreadably_are_skipped_and_named(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    corrupted = {
        "ETH-USDT": Corruption.NO_FILTERS,
        "SOL-USDT": Corruption.BAD_TICK_SIZE,
        "ETH-BTC": Corruption.NO_STATUS,
    }
    sb = await lab.sandbox((PAIR, *corrupted))
    for pair, how in corrupted.items():
        lab.venue.corrupt_market(sb, pair, how)
    with caplog.at_level(logging.INFO, logger="marketlink.engine"):
        world = await lab.world(sb, (PAIR,))
    assert world.conn.ready
    for pair in corrupted:
        with pytest.raises(UnknownSymbol):
            world.conn.trading_rule(pair)
    # The connector says which markets it skipped (in its log), and only those.
    found = (re.search(r"\bmarket (\S+) skipped\b", r.getMessage()) for r in caplog.records)
    skipped = {m.group(1) for m in found if m is not None}
    assert skipped == {lab.venue.symbol(pair) for pair in corrupted}
    # ... and in its API, each with the reason, and in the status detail.
    assert set(world.conn.skipped_markets()) == skipped
    assert all(why for why in world.conn.skipped_markets().values())
    assert f"{len(skipped)} skipped" in world.conn.status()["symbols"].detail
    # The good market trades.
    cid = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("50000"))
    await world.created(cid)
    world.taker("SELL", "0.01", "50000")
    assert isinstance(await world.ended(cid), OrderCompleted)
    # Asked for an unreadable market (or one the venue does not list), the start fails naming it.
    for pairs, named in (((PAIR, "ETH-BTC"), "ETH-BTC"), ((PAIR, "NOPE-USDT"), "NOPE-USDT")):
        refused = lab.connector(sb, pairs)
        with pytest.raises(ConfigError, match=named):
            await refused.start(timeout=5)
        assert not refused.status()["symbols"].ready


async def test_last_prices_are_the_venues_last_trades(lab: Lab) -> None:
    sb = await lab.sandbox(PAIRS)
    world = await lab.world(sb, PAIRS)
    for pair, price in (("BTC-USDT", "61000.5"), ("ETH-BTC", "0.05123")):
        symbol = lab.venue.symbol(pair)
        sb.exchange.place_order(TAKER, symbol, "SELL", "LIMIT", quantity="0.1", price=price,
                                time_in_force="GTC", now_ms=world.now_ms())
        sb.exchange.place_order(DEMO, symbol, "BUY", "LIMIT", quantity="0.1", price=price,
                                time_in_force="IOC", now_ms=world.now_ms())
    prices = await world.conn.last_prices()
    assert prices == {"BTC-USDT": D("61000.5"), "ETH-BTC": D("0.05123")}  # ETH-USDT never traded
    assert await world.conn.last_prices(["eth-btc"]) == {"ETH-BTC": D("0.05123")}


async def test_network_check_answers_up_and_down(lab: Lab) -> None:
    sb = await lab.sandbox()
    conn = lab.connector(sb, keys=False)  # reachability needs neither keys nor a start
    assert await conn.check_network() is True
    sb.faults.fail_requests(3, path_prefix=lab.venue.ping_path)  # every attempt of one check
    assert await conn.check_network() is False
    assert sb.faults.fired.get("rest_error") == 3
    assert await conn.check_network() is True
    await sb.stop()
    assert await conn.check_network() is False


async def test_status_map_names_every_part_until_the_start_makes_each_ready(lab: Lab) -> None:
    sb = await lab.sandbox()
    conn = lab.connector(sb)
    changes: list[ConnectorStatusChanged] = []
    conn.bus.subscribe_callback(
        lambda e: changes.append(e) if isinstance(e, ConnectorStatusChanged) else None
    )
    before = conn.status()
    assert set(before) == set(STATUS_PARTS)
    assert all(not part.ready and part.detail == "not started" for part in before.values())
    ready_before = conn.ready
    await conn.start(timeout=10)
    after = conn.status()
    assert set(STATUS_PARTS) <= set(after) and all(p.ready for p in after.values())
    assert (ready_before, conn.ready) == (False, True)
    assert changes[0].ready is False and changes[-1].ready is True
    assert {name for name, _ in changes[0].not_ready} <= set(after)
