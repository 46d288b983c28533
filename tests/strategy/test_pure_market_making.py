"""Pure market making against a fake connector, driven tick by tick on a VirtualClock: events
reach the strategy synchronously (a bus callback), so every step is exact."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from strategy_fakes import PAIR, FakeConnector

from marketlink.core.enums import OrderType, Side
from marketlink.engine.bus import EventsDropped
from marketlink.net.clock import VirtualClock
from marketlink.strategy.api import StrategyContext
from marketlink.strategy.pmm_proposal import PriceSource
from marketlink.strategy.pure_market_making import PureMarketMaking, PureMarketMakingConfig

D = Decimal
BASE = PureMarketMakingConfig(
    connector="m", trading_pair=PAIR, bid_spread=D("1"), ask_spread=D("1"), order_amount=D("0.5"),
    order_refresh_time=10.0,
)


class Harness:
    def __init__(self, config: PureMarketMakingConfig = BASE, **fake: object) -> None:
        self.clock = VirtualClock()
        self.conn = FakeConnector("m", **fake)  # type: ignore[arg-type]
        self.ctx = StrategyContext({"m": self.conn}, self.clock)
        self.ctx.attach()
        self.pmm = PureMarketMaking(config)
        self.conn.bus.subscribe_callback(lambda e: self.pmm.on_event(self.ctx, "m", e))

    def tick(self, advance: float = 0.0) -> None:
        self.clock.advance(advance)
        self.pmm.on_tick(self.ctx)

    def quotes(self) -> list[tuple[Side, Decimal, Decimal]]:
        return sorted((o.side, o.price, o.amount) for o in self.conn.orders.values() if o.price is not None)


def test_first_tick_quotes_both_sides_at_the_spreads_as_limit_maker() -> None:
    h = Harness()
    h.tick()
    # mid 100.5; bid 1 % under (99.495 -> 99.49, rounded down), ask 1 % over (101.505 -> 101.51, up)
    assert h.quotes() == [(Side.BUY, D("99.49"), D("0.5")), (Side.SELL, D("101.51"), D("0.5"))]
    assert {p.order_type for p in h.conn.placed} == {OrderType.LIMIT_MAKER}
    assert h.pmm.status(h.ctx)["quotes"] == "2"
    h.tick(1.0)
    assert len(h.conn.placed) == 2  # live quotes are not duplicated


def test_levels_step_out_and_inner_levels_win_a_short_budget() -> None:
    cfg = replace(BASE, order_levels=3, order_level_spread=D("1"), order_level_amount=D("0.5"))
    h = Harness(cfg, balances={"BTC": D("10"), "USDT": D("120")})
    h.tick()
    bids = [(p.price, p.amount) for p in h.conn.placed if p.side is Side.BUY]
    asks = [(p.price, p.amount) for p in h.conn.placed if p.side is Side.SELL]
    # 120 USDT: level 0 (0.5 at 99.49 = 49.745) fits whole; level 1 (1.0 at 98.49) shrinks to the
    # 70.255 left (0.7133 at the 0.0001 step); level 2 has nothing left and is dropped.
    assert bids == [(D("99.49"), D("0.5000")), (D("98.49"), D("0.7133"))]
    assert h.ctx.budget_drops == 1
    assert asks == [(D("101.51"), D("0.5")), (D("102.51"), D("1.0")), (D("103.52"), D("1.5"))]


def test_refresh_cancels_after_refresh_time_and_requotes_once_cancels_are_confirmed() -> None:
    h = Harness()
    h.tick()
    h.conn.ack_all()
    first = set(h.conn.orders)
    h.conn.bid, h.conn.ask = D("110"), D("111")
    h.tick(9.0)
    assert h.conn.cancels == []  # not yet time
    h.tick(1.0)
    assert set(h.conn.cancels) == first
    h.tick(1.0)
    assert len(h.conn.placed) == 2  # waits for the cancels to be confirmed
    h.conn.confirm_cancels()
    h.tick(1.0)
    assert h.quotes() == [(Side.BUY, D("109.39"), D("0.5")), (Side.SELL, D("111.61"), D("0.5"))]


def test_quotes_within_tolerance_are_kept_and_their_timer_restarts() -> None:
    h = Harness(replace(BASE, order_refresh_tolerance_pct=D("0.5")))
    h.tick()
    h.conn.bid, h.conn.ask = D("100.2"), D("101.2")  # 0.2 % move
    h.tick(10.0)
    assert h.conn.cancels == [] and h.pmm.refreshes_kept == 1
    h.conn.bid, h.conn.ask = D("102"), D("103")  # 1.5 % move
    h.tick(5.0)
    assert h.conn.cancels == []  # the timer restarted at t=10
    h.tick(5.0)
    assert len(h.conn.cancels) == 2


def test_negative_tolerance_refreshes_every_time() -> None:
    h = Harness(replace(BASE, order_refresh_tolerance_pct=D("-1")))
    h.tick()
    h.tick(10.0)
    assert len(h.conn.cancels) == 2


def test_a_fill_leaves_the_other_side_hanging_through_refreshes_until_it_drifts_too_far() -> None:
    h = Harness(replace(BASE, hanging_orders_enabled=True, hanging_orders_cancel_pct=D("5"),
                        order_refresh_tolerance_pct=D("-1")))
    h.tick()
    h.conn.ack_all()
    bid = h.conn.open_ids(Side.BUY)[0]
    (ask,) = h.conn.open_ids(Side.SELL)
    h.conn.fill(bid)
    assert h.pmm.status(h.ctx)["hanging"] == "1"
    h.tick(1.0)  # no live quotes: a new ladder, the hanging ask stays
    assert len(h.conn.placed) == 4 and ask in h.conn.orders
    h.conn.ack_all()
    h.tick(10.0)  # refresh: the new quotes go, the hanging one stays
    assert ask not in h.conn.cancels and len(h.conn.cancels) == 2
    h.conn.confirm_cancels()
    h.tick(1.0)
    assert len(h.conn.placed) == 6
    assert sum(1 for p in h.conn.placed if p.cid == ask) == 1  # never placed again
    h.conn.bid, h.conn.ask = D("90"), D("91")  # the hanging ask at 101.51 is now > 5 % away
    h.tick(1.0)
    assert ask in h.conn.cancels
    h.conn.confirm_cancels()
    assert h.pmm.status(h.ctx)["hanging"] == "0"


def test_unchanged_prices_are_kept_at_zero_tolerance() -> None:
    h = Harness()
    h.tick()
    h.tick(10.0)
    assert h.conn.cancels == [] and h.pmm.refreshes_kept == 1


def test_without_hanging_orders_a_fill_changes_nothing_until_refresh() -> None:
    h = Harness()
    h.tick()
    bid = h.conn.open_ids(Side.BUY)[0]
    h.conn.fill(bid)
    h.tick(1.0)
    assert len(h.conn.placed) == 2 and h.pmm.status(h.ctx)["hanging"] == "0"


def test_minimum_spread_cancels_quotes_the_market_came_too_close_to() -> None:
    h = Harness(replace(BASE, minimum_spread=D("0.5")))
    h.tick()
    h.conn.bid, h.conn.ask = D("99.6"), D("100")  # mid 99.8: the bid at 99.49 is 0.31 % away
    h.tick(1.0)
    bid = next(p.cid for p in h.conn.placed if p.side is Side.BUY)
    assert h.conn.cancels == [bid]
    h.tick(1.0)
    assert h.conn.cancels == [bid]  # asked once


def test_inventory_skew_scales_amounts_toward_the_target() -> None:
    # 4 BTC at 100.5 + 201 USDT: 603 in all, the 50 % target is 3 BTC; one too many over a range
    # of 2 (1 BTC quoted a side, times 2): r = -0.5, so bids x 0.5 and asks x 1.5.
    cfg = replace(BASE, inventory_skew_enabled=True, order_amount=D("1"), inventory_range_multiplier=D("2"))
    h = Harness(cfg, balances={"BTC": D("4"), "USDT": D("201")})
    h.tick()
    assert h.quotes() == [(Side.BUY, D("99.49"), D("0.5")), (Side.SELL, D("101.51"), D("1.5"))]


def test_limit_orders_where_the_venue_has_no_maker_only_type_and_quotes_never_cross() -> None:
    cfg = replace(BASE, bid_spread=D("0"), ask_spread=D("0"), price_source=PriceSource.BEST)
    h = Harness(cfg, order_types=frozenset({OrderType.LIMIT, OrderType.MARKET}))
    h.tick()
    assert {p.order_type for p in h.conn.placed} == {OrderType.LIMIT}
    assert h.quotes() == [(Side.BUY, D("100"), D("0.5")), (Side.SELL, D("101"), D("0.5"))]
    h2 = Harness(replace(BASE, bid_spread=D("0"), ask_spread=D("0"), price_source=PriceSource.LAST))
    h2.conn.last = D("105")  # a last trade above the ask: a bid there would take
    h2.tick()
    assert h2.quotes() == [(Side.BUY, D("100.99"), D("0.5")), (Side.SELL, D("105"), D("0.5"))]


def test_no_quotes_without_a_price_or_while_not_ready() -> None:
    h = Harness(replace(BASE, price_source=PriceSource.LAST))
    h.tick()
    assert h.conn.placed == []
    h2 = Harness()
    h2.conn.is_ready = False
    h2.tick()
    assert h2.conn.placed == []


def test_an_unconfirmed_cancel_is_asked_again_after_a_refresh_period() -> None:
    h = Harness(replace(BASE, order_refresh_tolerance_pct=D("-1")))
    h.tick()
    h.tick(10.0)
    assert len(h.conn.cancels) == 2
    h.tick(10.0)
    assert len(h.conn.cancels) == 4 and len(h.conn.placed) == 2


def test_after_dropped_events_only_orders_still_live_are_kept() -> None:
    h = Harness()
    h.tick()
    h.conn.ack_all()
    gone = h.conn.open_ids(Side.BUY)[0]
    h.ctx._own.pop(gone)  # the context saw it end; the strategy missed the event
    h.pmm.on_event(h.ctx, "m", EventsDropped("s", 1, 1, 1, 0.0, 0.0, 1))
    assert h.pmm.status(h.ctx)["quotes"] == "1"
    h.pmm.on_event(h.ctx, "other", EventsDropped("s", 1, 1, 1, 0.0, 0.0, 1))  # another connector: ignored


def test_config_problems_name_the_field() -> None:
    assert BASE.problems() == []
    bad = replace(BASE, bid_spread=D("-1"), order_amount=D("0"), order_levels=0, order_refresh_time=0.0,
                  inventory_target_base_pct=D("101"), inventory_range_multiplier=D("0"))
    fields = {f for f, _ in bad.problems()}
    assert fields == {"bid_spread", "order_amount", "order_levels", "order_refresh_time",
                      "inventory_target_base_pct", "inventory_range_multiplier"}
    assert [f for f, _ in replace(BASE, order_levels=3, order_level_amount=D("-0.3")).problems()] == [
        "order_level_amount"
    ]
    assert [f for f, _ in replace(BASE, ask_spread=D("100")).problems()] == ["bid_spread"]
    assert BASE.markets() == [("m", PAIR)]
