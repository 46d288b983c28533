"""Properties under random order sequences: conservation, invariants, replayable depth diffs."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from sandbox_support import SYMBOL, D, make_spec

from marketlink.sandbox.exchange import DepthDiff, Exchange, ExchangeRejection, OrderStatus

ACCOUNTS = ("a", "b", "c")

limit_op = st.tuples(
    st.just("limit"), st.sampled_from(ACCOUNTS), st.sampled_from(["BUY", "SELL"]),
    st.integers(1, 40),  # quantity in steps of 0.01
    st.integers(98, 102),  # price in whole units
    st.sampled_from(["GTC", "GTC", "IOC", "FOK"]),
    st.sampled_from(["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]),
    st.booleans(),  # LIMIT_MAKER instead of LIMIT
)
market_op = st.tuples(
    st.just("market"), st.sampled_from(ACCOUNTS), st.sampled_from(["BUY", "SELL"]),
    st.integers(1, 60), st.booleans(),  # by quote quantity
    st.sampled_from(["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]),
)
op = st.one_of(
    limit_op, limit_op, limit_op, market_op,
    st.tuples(st.just("cancel"), st.sampled_from(ACCOUNTS), st.integers(0, 50)),
    st.tuples(st.sampled_from(["drain", "drain", "snapshot"])),
)


def new_exchange() -> Exchange:
    ex = Exchange([make_spec(step_size="0.01", min_qty="0.01", min_notional="0.5", maker_fee="0.001",
                             taker_fee="0.00075")])
    for account in ACCOUNTS:
        ex.open_account(account, balances={"BTC": "3", "USDT": "300"})
    return ex


def apply(book: dict[str, dict[Decimal, Decimal]], diff: DepthDiff) -> None:
    for side, levels in (("bids", diff.bids), ("asks", diff.asks)):
        for price, qty in levels:
            if qty == 0:
                book[side].pop(price, None)
            else:
                book[side][price] = qty


def as_book(bids: tuple[tuple[Decimal, Decimal], ...], asks: tuple[tuple[Decimal, Decimal], ...]) -> dict[
    str, dict[Decimal, Decimal]
]:
    return {"bids": dict(bids), "asks": dict(asks)}


def run(ex: Exchange, step: tuple[object, ...], now: int) -> None:
    kind = step[0]
    try:
        if kind == "limit":
            _, account, side, qty, price, tif, stp, maker = step
            ex.place_order(
                str(account), SYMBOL, str(side), "LIMIT_MAKER" if maker else "LIMIT",
                quantity=D(int(qty)) / 100, price=D(int(price)),  # type: ignore[call-overload]
                time_in_force=None if maker else str(tif), stp_mode=str(stp), now_ms=now,
            )
        elif kind == "market":
            _, account, side, amount, by_quote, stp = step
            size = D(int(amount)) if by_quote else D(int(amount)) / 100  # type: ignore[call-overload]
            ex.place_order(
                str(account), SYMBOL, str(side), "MARKET", stp_mode=str(stp), now_ms=now,
                **({"quote_order_qty": size} if by_quote else {"quantity": size}),
            )
        elif kind == "cancel":
            _, account, pick = step
            open_orders = ex.open_orders(str(account), SYMBOL)
            if open_orders:
                target = open_orders[int(pick) % len(open_orders)]  # type: ignore[call-overload]
                ex.cancel_order(str(account), SYMBOL, order_id=target.order_id, now_ms=now)
    except ExchangeRejection:
        pass


@settings(max_examples=150, deadline=None)
@given(st.lists(op, min_size=15, max_size=60))
def test_conservation_invariants_and_replayable_diffs(steps: list[tuple[object, ...]]) -> None:
    ex = new_exchange()
    replica = as_book((), ())
    last_id = 0
    snapshot_book: dict[str, dict[Decimal, Decimal]] | None = None
    snapshot_id = 0
    for now, step in enumerate(steps, start=1):
        if step[0] == "snapshot":
            snap = ex.depth(SYMBOL, None)
            snapshot_book, snapshot_id = as_book(snap.bids, snap.asks), snap.last_update_id
            continue
        if step[0] == "drain":
            diff = ex.drain_depth_changes(SYMBOL)
            if diff is not None:
                assert diff.first_update_id == last_id + 1 and diff.last_update_id >= diff.first_update_id
                last_id = diff.last_update_id
                apply(replica, diff)
                if snapshot_book is not None and diff.last_update_id > snapshot_id:
                    # Binance's rule: the first diff after a snapshot straddles its id
                    assert diff.first_update_id <= snapshot_id + 1
                    apply(snapshot_book, diff)
                    snapshot_id = diff.last_update_id
                full = ex.depth(SYMBOL, None)
                assert replica == as_book(full.bids, full.asks)
                if snapshot_book is not None and snapshot_id == full.last_update_id:
                    assert snapshot_book == replica
            continue
        run(ex, step, now)
        assert ex.audit() == []

    truth = ex.ground_truth()
    for asset in ("BTC", "USDT"):
        held = sum((b[asset].total for b in truth.balances.values() if asset in b), Decimal(0))
        assert held + truth.fees_collected.get(asset, Decimal(0)) == truth.deposited[asset]
    for account, orders in truth.open_orders.items():
        assert all(o.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED) for o in orders), account
    book = truth.books[SYMBOL]
    if book.bids and book.asks:
        assert book.bids[0][0] < book.asks[0][0]  # never crossed at rest
    for trade in truth.recent_trades[SYMBOL]:
        assert trade.quote_qty == trade.price * trade.qty


@settings(max_examples=60, deadline=None)
@given(st.lists(op, min_size=10, max_size=40))
def test_the_same_sequence_gives_the_same_state(steps: list[tuple[object, ...]]) -> None:
    first, second = new_exchange(), new_exchange()
    for now, step in enumerate(steps, start=1):
        run(first, step, now)
        run(second, step, now)
    assert first.ground_truth() == second.ground_truth()
