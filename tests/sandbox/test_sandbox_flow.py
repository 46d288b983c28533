"""Market flow in simulated time: determinism, a moving book, and fills for resting client orders."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sandbox_support import SYMBOL, D, make_exchange, make_spec

from marketlink.core.errors import ConfigError
from marketlink.sandbox.exchange import (
    Exchange,
    ExecutionType,
    FlowConfig,
    FlowMarket,
    MarketFlow,
    OrderEvent,
    OrderStatus,
)

STEP_MS = 100


def flow_exchange(seed: int = 7, **options: object) -> tuple[Exchange, MarketFlow]:
    ex = make_exchange(make_spec(), accounts=("alice",))
    flow = MarketFlow(ex, FlowConfig.for_prices({SYMBOL: "100"}, seed=seed, **options))
    return ex, flow


def run(flow: MarketFlow, start: int, steps: int) -> int:
    now = start
    for _ in range(steps):
        now += STEP_MS
        flow.step(now)
    return now


def trade_tape(ex: Exchange) -> list[tuple[int, Decimal, Decimal, bool]]:
    return [(t.trade_id, t.price, t.qty, t.buyer_is_maker) for t in ex.recent_trades(SYMBOL, 1000)]


def test_same_seed_same_trades_and_book() -> None:
    a_ex, a_flow = flow_exchange(seed=11)
    b_ex, b_flow = flow_exchange(seed=11)
    run(a_flow, 0, 300)
    run(b_flow, 0, 300)
    assert len(trade_tape(a_ex)) > 20
    assert trade_tape(a_ex) == trade_tape(b_ex)
    assert a_ex.depth(SYMBOL, None) == b_ex.depth(SYMBOL, None)
    assert a_flow.fair_price(SYMBOL) == b_flow.fair_price(SYMBOL)

    c_ex, c_flow = flow_exchange(seed=12)
    run(c_flow, 0, 300)
    assert trade_tape(c_ex) != trade_tape(a_ex)


def test_the_book_moves_every_step_and_stays_two_sided() -> None:
    ex, flow = flow_exchange()
    now = run(flow, 0, 10)
    ex.drain_depth_changes(SYMBOL)
    for _ in range(100):
        now = run(flow, now, 1)
        diff = ex.drain_depth_changes(SYMBOL)
        assert diff is not None and (diff.bids or diff.asks)
        top = ex.book_ticker(SYMBOL)
        assert top.bid_price is not None and top.ask_price is not None and top.bid_price < top.ask_price
    assert ex.audit() == []
    assert flow.counters["orders"] > 0 and flow.counters["cancels"] > 0


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_a_resting_order_at_the_top_fills_within_seconds(seed: int, side: str) -> None:
    ex, flow = flow_exchange(seed=seed)
    now = run(flow, 0, 20)
    top = ex.book_ticker(SYMBOL)
    price = top.bid_price if side == "BUY" else top.ask_price
    placed = ex.place_order("alice", SYMBOL, side, "LIMIT", quantity="0.1", price=price, now_ms=now)
    assert placed.order.status is OrderStatus.NEW

    deadline = now + 30_000  # 30 simulated seconds
    while now < deadline:
        now = run(flow, now, 1)
        if ex.get_order("alice", SYMBOL, order_id=placed.order.order_id).status is OrderStatus.FILLED:
            break
    assert ex.get_order("alice", SYMBOL, order_id=placed.order.order_id).status is OrderStatus.FILLED
    assert ex.audit() == []


def test_a_client_order_through_fair_is_taken_at_once() -> None:
    ex, flow = flow_exchange()
    now = run(flow, 0, 5)
    fair = flow.fair_price(SYMBOL)
    # The sell sweeps the maker's bids (all within 10 ticks below fair) and rests the rest at
    # fair - 0.50; on the next step the arbitrageur buys everything offered below fair.
    ask = ex.place_order("alice", SYMBOL, "SELL", "LIMIT", quantity="30", price=fair - D("0.50"), now_ms=now)
    assert ask.order.status is OrderStatus.PARTIALLY_FILLED
    run(flow, now, 1)
    assert ex.get_order("alice", SYMBOL, order_id=ask.order.order_id).status is OrderStatus.FILLED
    assert flow.counters["rejections"] > 0  # maker quotes that would have crossed it were refused


def test_rate_zero_only_quotes_and_disabled_does_nothing() -> None:
    ex, flow = flow_exchange(rate=0.0)
    run(flow, 0, 50)
    assert ex.recent_trades(SYMBOL) == []
    assert ex.depth(SYMBOL).bids and ex.depth(SYMBOL).asks

    off_ex, off = flow_exchange(enabled=False)
    run(off, 0, 10)
    assert off_ex.depth(SYMBOL).bids == () and "flow-maker" not in off_ex.ledger.accounts()


def test_flow_accounts_are_topped_up_and_conserve_money() -> None:
    ex, flow = flow_exchange(funding=Decimal("1000"), rate=3.0)
    run(flow, 0, 200)
    truth = ex.ground_truth()
    for asset in ("BTC", "USDT"):
        held = sum((b[asset].total for b in truth.balances.values() if asset in b), Decimal(0))
        assert held + truth.fees_collected.get(asset, Decimal(0)) == truth.deposited[asset]
    assert ex.ledger.deposited["USDT"] > Decimal("2000") + Decimal("1000000")  # a top-up happened


def test_fair_price_stays_inside_the_price_filter() -> None:
    ex = make_exchange(make_spec(min_price="99", max_price="101"), accounts=())
    flow = MarketFlow(ex, FlowConfig((FlowMarket(SYMBOL, D("100"), max_move_ticks=50),), seed=3))
    for i in range(200):
        flow.step(i * STEP_MS)
        assert D("99") < flow.fair_price(SYMBOL) < D("101")
    assert flow.counters["rejections"] == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: FlowMarket(SYMBOL, D("0")),
        lambda: FlowMarket(SYMBOL, D("100"), levels=0),
        lambda: FlowMarket(SYMBOL, D("100"), min_lots=3, max_lots=2),
        lambda: FlowMarket(SYMBOL, "100"),  # type: ignore[arg-type]
        lambda: FlowMarket(SYMBOL, D("100"), move_probability=1.5),
        lambda: FlowMarket(SYMBOL, D("100"), jitter_ticks=-1),
        lambda: FlowConfig((), sweep_levels=0),
        lambda: FlowConfig((), rate=-1.0),
        lambda: FlowConfig((), maker_account="x", taker_account="x"),
        lambda: FlowConfig((), funding=D("0")),
        lambda: MarketFlow(make_exchange(), FlowConfig.for_prices({"ETHUSDT": "10"})),
    ],
)
def test_bad_flow_config(make: object) -> None:
    with pytest.raises(ConfigError):
        make()  # type: ignore[operator]


def test_bad_initial_prices() -> None:
    for price in (100.0, "abc"):
        with pytest.raises(ConfigError):
            FlowConfig.for_prices({SYMBOL: price})  # type: ignore[dict-item]


def test_a_client_reacting_inside_a_step_cannot_break_the_flow() -> None:
    ex = make_exchange(make_spec(), accounts=("alice",))
    fast = FlowMarket(SYMBOL, D("100"), move_probability=1.0, max_move_ticks=5)  # many stale quotes
    flow = MarketFlow(ex, FlowConfig((fast,), seed=3))
    run(flow, 0, 5)

    def sweep_when_the_maker_cancels(event: object) -> None:
        if isinstance(event, OrderEvent) and event.execution_type is ExecutionType.CANCELED:
            ex.place_order("alice", SYMBOL, "BUY", "MARKET", quantity="2", now_ms=1)
            ex.place_order("alice", SYMBOL, "SELL", "MARKET", quantity="2", now_ms=1)

    ex.subscribe_account("flow-maker", sweep_when_the_maker_cancels)
    run(flow, 1_000, 50)  # the maker's cancels race the client's fills: refused, counted, harmless
    assert flow.counters["rejections"] > 0
    assert ex.audit() == [] and ex.listener_errors == 0
