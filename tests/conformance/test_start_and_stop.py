"""Starting and stopping: a connector without keys, a start that cannot complete, a connector
that cannot be built, and a stop that cancels what the connector has open."""

from __future__ import annotations

import pytest
from harness import PAIR, D, Lab, VenueHarness, World

from marketlink.core.enums import OrderType
from marketlink.core.errors import ConfigError
from marketlink.core.events import OrderCancelled
from marketlink.engine.connector import SpotConnector


async def test_a_public_only_connector_needs_no_keys(lab: Lab) -> None:
    sb = await lab.sandbox(flow=True, autotick=False)
    world = await lab.world(sb, keys=False)
    conn = world.conn
    assert conn.ready
    assert conn.status()["user_stream"].detail.startswith("public only")
    await world.book_caught_up()
    assert conn.best_ask(PAIR) == sb.exchange.depth(world.symbol, 1).asks[0][0]


async def test_a_start_that_times_out_names_what_is_not_ready(lab: Lab) -> None:
    sb = await lab.sandbox()
    conn = lab.connector(sb)
    # Every book snapshot is held past the start's deadline: the book can never get in sync.
    sb.faults.timeout_requests(50, path_prefix=lab.venue.book_snapshot_path)
    with pytest.raises(TimeoutError, match="order_books"):
        await conn.start(timeout=0.5)
    assert not conn.status()["order_books"].ready
    await conn.stop()
    with pytest.raises(RuntimeError):  # a connector starts once
        await conn.start()


def test_a_connector_needs_pairs_and_a_known_domain(venue: VenueHarness) -> None:
    adapter = venue.make_venue(None)
    with pytest.raises(ConfigError):
        SpotConnector(adapter, [], None, endpoints=venue.endpoints("http://127.0.0.1:1"))
    with pytest.raises(ConfigError):
        SpotConnector(adapter, [PAIR], None, domain="nowhere")


async def test_stop_can_cancel_the_connectors_open_orders(world: World) -> None:
    cid = world.conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("45000"))
    await world.created(cid)
    results = await world.conn.stop(cancel_orders=True, timeout=5.0)
    assert [(r.client_order_id, r.success) for r in results] == [(cid, True)]
    assert world.sb.exchange.open_orders("demo", world.symbol) == []
    assert [e.client_order_id for e in world.rec.of(OrderCancelled)] == [cid]
    assert world.rec.kinds(cid) == ["OrderCreated", "OrderCancelled"]
