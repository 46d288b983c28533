"""Balances against a model venue ledger: snapshots may come late or early, events make up the rest.

The venue is a ledger (total, free per asset) moved at strictly increasing millisecond times by
limit orders (lock), fills (base, quote, fee in the received asset or BNB), cancels and expiries
(unlock the rest) and market orders; each happening yields the engine's events, and snapshots and
pushes carry the ledger stamped with its last change (Binance's ``updateTime``). Delivery
interleaves orders (one order's events stay in order) and holds values back. Whenever the delivered
events are exactly the first happenings and no delivered value is newer, we must show the ledger
as it then was; once all is delivered, the ledger as it is now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal as D
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketlink.core import events as ev
from marketlink.core.enums import OrderType, PositionAction, Side, TimeInForce
from marketlink.core.fees import FeeKind, TradeFee
from marketlink.core.market import Balance, BalanceUpdate
from marketlink.core.pairs import split_pair
from marketlink.engine import balances as balances_module
from marketlink.engine.balances import Balances

ASSETS = ("USDT", "BTC", "BNB")
PRICES = {"BTC-USDT": (9000, 11000), "BNB-USDT": (400, 600)}  # in cents
TYPES = {"limit": OrderType.LIMIT, "maker": OrderType.LIMIT_MAKER, "market": OrderType.MARKET}
T0 = 1_700_000_000_000  # venue ms; events carry float seconds, as the engine does
Ledger = dict[str, tuple[D, D]]  # asset -> (total, free)
Fed = tuple[ev.OrderEvent, D | None, D] | BalanceUpdate  # on_order_event's arguments, or a value
ZERO = D(0)


@dataclass
class Order:
    cid: str
    pair: str
    side: Side
    type: OrderType
    price: D | None
    remaining: D
    done: tuple[D, D] = (ZERO, ZERO)  # executed base, quote


@dataclass
class Venue:
    total: dict[str, D]
    free: dict[str, D] = field(default_factory=dict)
    now: int = T0
    changed: int = T0
    happening: int = 0
    feed: list[tuple[str, int, Fed]] = field(default_factory=list)  # (order id or "", happening, item)
    states: list[tuple[int, Ledger]] = field(default_factory=list)  # [h]: the ledger after happening h
    open: dict[str, Order] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.free = dict(self.total)

    def begin(self, dt: int) -> None:
        self.states.append((self.now, self.view()))
        self.now, self.happening = self.now + dt, self.happening + 1

    def view(self) -> Ledger:
        return {a: (self.total[a], self.free[a]) for a in ASSETS}

    def _move(self, asset: str, d_total: D, d_free: D) -> None:
        if d_total or d_free:
            self.total[asset] += d_total
            self.free[asset] += d_free
            self.changed = self.now
        assert 0 <= self.free[asset] <= self.total[asset], "the model must stay a venue"

    def _emit(self, o: Order, cls: type, **kw: Any) -> None:
        kw.update(timestamp=self.now / 1000, client_order_id=o.cid, exchange_order_id=o.cid,
                  trading_pair=o.pair, side=o.side, order_type=o.type)
        if issubclass(cls, ev.TerminalOrderEvent):
            kw.update(executed_base=o.done[0], executed_quote=o.done[1], average_price=None, fees=(),
                      missing_base=ZERO, reason=None)
        self.feed.append((o.cid, self.happening, (cls(**kw), o.price, o.remaining)))

    def place(self, pair: str, side: Side, otype: OrderType, amount: D, price: D | None) -> Order | None:
        base, quote = split_pair(pair)
        cost = amount * (price if price is not None else D(PRICES[pair][1]) / 100)
        if (self.free[quote] < cost) if side is Side.BUY else (self.free[base] < amount):
            return None  # the venue would refuse it; nothing happens
        o = Order(f"c{len(self.feed)}", pair, side, otype, price, amount)
        if price is not None:
            self.open[o.cid] = o
            self._move(*((quote, ZERO, -cost) if side is Side.BUY else (base, ZERO, -amount)))
        self._emit(o, ev.OrderCreated, amount=amount, price=price, creation_timestamp=self.now / 1000,
                   time_in_force=TimeInForce.GTC, position_action=PositionAction.NIL, leverage=1)
        return o

    def fill(self, o: Order, amount: D, price: D, rate: D, bnb_fee: D) -> None:
        base, quote = split_pair(o.pair)
        notional = amount * price
        if o.side is Side.BUY:  # the lock was at the limit price: a better price frees the difference
            self._move(quote, -notional, (ZERO if o.price is None else amount * o.price) - notional)
            got, got_asset = amount, base
        else:
            self._move(base, -amount, -amount if o.price is None else ZERO)
            got, got_asset = notional, quote
        self._move(got_asset, got, got)
        in_bnb = bnb_fee and self.free["BNB"] >= bnb_fee
        fee_asset, fee = ("BNB", bnb_fee) if in_bnb else (got_asset, got * rate)
        self._move(fee_asset, -fee, -fee)
        o.remaining, o.done = o.remaining - amount, (o.done[0] + amount, o.done[1] + notional)
        reported = TradeFee.reported(fee_asset, fee, FeeKind.DEDUCTED_FROM_RETURNS)
        self._emit(o, ev.OrderFilled, trade_id=f"{o.cid}-{o.done[0]}", price=price, amount=amount,
                   quote_amount=notional, fee=reported, fee_amounts=reported.flat_fees, is_taker=True,
                   position_action=PositionAction.NIL, leverage=1)
        if o.remaining == 0:
            self.open.pop(o.cid, None)
            self._emit(o, ev.OrderCompleted)

    def finish(self, o: Order, cls: type) -> None:
        base, quote = split_pair(o.pair)
        assert o.price is not None
        buy = o.side is Side.BUY
        self._move(quote if buy else base, ZERO, o.remaining * o.price if buy else o.remaining)
        del self.open[o.cid]
        self._emit(o, cls)

    def value(self, assets: tuple[str, ...], complete: bool, omit_zero: bool = False) -> None:
        rows = tuple(Balance(a, *self.view()[a]) for a in assets if not (omit_zero and self.total[a] == 0))
        self.feed.append(("", self.happening, BalanceUpdate(rows, self.changed / 1000, complete)))


def _amount(draw: Any, pair: str) -> D:
    return D(draw(st.integers(1, 400))) / (1000 if pair == "BTC-USDT" else 100)


@st.composite
def scenarios(draw: Any) -> tuple[Venue, list[int]]:
    start = {a: D(draw(st.integers(0, 5000))) / 100 for a in ("BTC", "BNB")}
    v = Venue({"USDT": D(draw(st.integers(0, 5000))), **start})
    v.value(ASSETS, complete=True)  # the start snapshot, stamped before any happening
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["limit", "maker", "fill", "fill", "end", "market", "value", "push"]))
        v.begin(draw(st.integers(1, 3)))
        pair, side = draw(st.sampled_from(sorted(PRICES))), draw(st.sampled_from([Side.BUY, Side.SELL]))
        rate = draw(st.sampled_from([ZERO, D("0.001"), D("0.00075")]))
        bnb = D(draw(st.integers(0, 900))) / 10**6
        if kind in TYPES:
            limit, base = kind != "market", split_pair(pair)[0]
            price = D(draw(st.integers(*PRICES[pair]))) / 100
            everything = side is Side.SELL and v.free[base] and draw(st.integers(0, 3)) == 0
            amount = v.free[base] if everything else _amount(draw, pair)  # sell all we have, at times
            o = v.place(pair, side, TYPES[kind], amount, price if limit else None)
            if o is not None and (not limit or draw(st.booleans())):  # market, or a limit that crosses
                v.fill(o, min(o.remaining, _amount(draw, pair)) if limit else o.remaining, price, rate, bnb)
                if limit and o.remaining and draw(st.booleans()):
                    v.finish(o, ev.OrderExpired)  # an IOC remainder
        elif kind in ("fill", "end") and v.open:
            o = v.open[draw(st.sampled_from(sorted(v.open)))]
            assert o.price is not None
            if kind == "end":
                v.finish(o, draw(st.sampled_from([ev.OrderCancelled, ev.OrderExpired])))
            else:
                better = D(draw(st.integers(0, 50))) / 100 * (-1 if o.side is Side.BUY else 1)
                amount = o.remaining if draw(st.booleans()) else min(o.remaining, _amount(draw, o.pair))
                v.fill(o, amount, o.price + better, rate, bnb)
        elif kind == "value":
            v.value(ASSETS, complete=True, omit_zero=draw(st.booleans()))
        elif kind == "push":
            pushed = draw(st.lists(st.sampled_from(ASSETS), min_size=1, max_size=3, unique=True))
            v.value(tuple(pushed), complete=False)
    v.begin(0)  # records the last state
    # Delivery: each item moves later by a random delay; one order's events never pass each other.
    keyed, last = [], dict[str, int]()
    for i, (who, _, _) in enumerate(v.feed):
        k = i + draw(st.integers(0, len(v.feed) if i == 0 else (8 if who else 12)))
        if who:
            k = last[who] = max(last.get(who, k), k)
        keyed.append((k, i))
    return v, [i for _, i in sorted(keyed)]


def _deliver(b: Balances, item: Fed) -> None:
    if isinstance(item, BalanceUpdate):
        b.apply(item)
    else:
        b.on_order_event(*item)


def _ours(b: Balances) -> Ledger:
    return {a: (b.total(a), b.available(a)) for a in ASSETS}


@pytest.mark.parametrize("kept", [balances_module.PENDING_KEPT, 3])
@settings(max_examples=200, deadline=None, derandomize=True)
@given(sc=scenarios())
def test_balances_follow_the_venue_ledger_whatever_the_delivery_order(
    kept: int, sc: tuple[Venue, list[int]]
) -> None:
    v, order = sc
    published: dict[str, ev.BalanceUpdated] = {}
    b = Balances(lambda e: published.__setitem__(e.asset, e))
    events = [i for i, (who, _, _) in enumerate(v.feed) if who]
    done: set[int] = set()
    newest_value, snapshot_seen = float("-inf"), False
    with mock.patch.object(balances_module, "PENDING_KEPT", kept):
        for i in order:
            item = v.feed[i][2]
            _deliver(b, item)
            if isinstance(item, BalanceUpdate):
                newest_value = max(newest_value, item.timestamp)
                snapshot_seen = snapshot_seen or item.complete
            else:
                done.add(i)
            # Delivered events exactly the first h happenings, no delivered value newer: the ledger then.
            h = min((v.feed[j][1] for j in events if j not in done), default=len(v.states)) - 1
            ms, then = v.states[h]
            if snapshot_seen and newest_value <= ms / 1000 and all(v.feed[j][1] <= h for j in done):
                assert _ours(b) == then or (kept < 100 and b.stale_refused), (h, i)
        assert all(b.all()[a] == Balance(a, e.total, e.available) for a, e in published.items())
        if kept >= 100:  # nothing was ever beyond rebasing
            assert _ours(b) == v.view()
        else:  # a refused value left us on local accounting; the next fresh snapshot settles it
            assert _ours(b) == v.view() or b.stale_refused
            v.value(ASSETS, complete=True, omit_zero=True)  # an asset it leaves out is zero
            _deliver(b, v.feed[-1][2])
            assert _ours(b) == v.view()


def _five_fills() -> Venue:
    """Feed: start snapshot, a 0.5 BTC buy at 100, its first lot at 99, a snapshot, four more lots."""
    v = Venue({"USDT": D("1000"), "BTC": D("1"), "BNB": D("5")})
    v.value(ASSETS, complete=True)
    v.begin(1)
    o = v.place("BTC-USDT", Side.BUY, OrderType.LIMIT, D("0.5"), D("100"))
    assert o is not None
    for n in range(5):  # fees alternate: 0.1 % in BTC, 0.0001 BNB
        v.begin(1)
        v.fill(o, D("0.1"), D("99"), D("0.001"), D("0.0001") if n % 2 else ZERO)
        if n == 0:
            v.value(ASSETS, complete=True)
    assert v.total["BTC"] == D("1.4997") and v.free["USDT"] == D("950.5") and v.total["BNB"] == D("4.9998")
    return v


def test_a_value_beyond_the_rebase_bound_is_refused_and_never_leaves_a_wrong_balance() -> None:
    """The snapshot taken after the first lot reaches us after all five: with two adjustments kept
    it cannot be rebased for USDT and BTC, so it is refused there (counted) and our own accounting,
    still right, stands; BNB moved twice only, so it is rebased. A fresh snapshot is taken as is."""
    v = _five_fills()
    mid = v.feed.pop(3)[2]
    b = Balances(lambda e: None)
    with mock.patch.object(balances_module, "PENDING_KEPT", 2):
        for _, _, item in v.feed:
            _deliver(b, item)
        assert _ours(b) == v.view() and b.stale_refused == 0
        _deliver(b, mid)
        assert b.stale_refused == 2 and b.snapshots == 2
        assert _ours(b) == v.view()  # refused, not applied without what it lacks
        v.value(ASSETS, complete=True)
        _deliver(b, v.feed[-1][2])
        assert _ours(b) == v.view() and b.stale_refused == 2


def test_a_start_snapshot_beyond_the_bound_is_refused_until_a_fresh_one_settles_it() -> None:
    """Events first, the start snapshot last: too late to rebase, so it is refused and we hold
    only what the events moved; the next fresh snapshot (leaving out the BTC now sold to zero)
    puts every asset right."""
    v = _five_fills()
    start, mid = v.feed.pop(0)[2], v.feed.pop(2)[2]
    b = Balances(lambda e: None)
    with mock.patch.object(balances_module, "PENDING_KEPT", 2):
        for item in [*(f[2] for f in v.feed), start, mid]:
            _deliver(b, item)
        assert b.stale_refused == 4 and b.total("BTC") == D("0.4997")  # the start's 1 BTC is missing
        v.begin(1)
        o = v.place("BTC-USDT", Side.SELL, OrderType.MARKET, v.free["BTC"], None)
        assert o is not None
        v.fill(o, o.remaining, D("101"), D("0.001"), ZERO)
        v.value(ASSETS, complete=True, omit_zero=True)
        for _, _, item in v.feed[-4:]:  # created, filled, completed, snapshot
            _deliver(b, item)
        assert v.total["BTC"] == 0 and _ours(b) == v.view()


def test_an_asset_a_complete_snapshot_leaves_out_takes_no_event_the_snapshot_holds() -> None:
    """Binance's snapshot omits zero balances. Taken at start just after we sold all our BNB, it
    reaches us before that sale's fill (say, fetched by the reconciler for a restored order): the
    snapshot already holds the fill, so BNB must stay at zero, not go to -0.03 (found by the
    property test above, against balances.py as committed in 6cdf955)."""
    v = Venue({"USDT": ZERO, "BTC": ZERO, "BNB": D("0.03")})
    v.begin(1)
    o = v.place("BNB-USDT", Side.SELL, OrderType.MARKET, D("0.03"), None)
    assert o is not None
    v.fill(o, o.remaining, D("4"), ZERO, ZERO)
    v.value(ASSETS, complete=True, omit_zero=True)  # USDT 0.12 only
    b = Balances(lambda e: None)
    for item in [v.feed[-1][2], *(f[2] for f in v.feed[:-1])]:
        _deliver(b, item)
    assert b.total("USDT") == D("0.12")  # the fill's USDT is rightly skipped: the snapshot holds it
    assert _ours(b) == v.view()
