"""Q13 fills, Q14 history, Q15 trade fees: what the journal keeps of a bot's trading, checked
against the venue's own order and trade history."""

from __future__ import annotations

from decimal import Decimal

from harness import DEMO, PAIR, D
from qa_support import Bot, QALab, journal_fills, seed_book, venue_fills

from marketlink.core.enums import OrderType
from marketlink.core.events import OrderCancelled, OrderCompleted, OrderFilled
from marketlink.core.fees import TokenAmount
from marketlink.journal import Journal
from marketlink.sandbox.faults import StreamKind


async def _trade(lab: QALab, journal: Journal) -> tuple[Bot, dict[str, str]]:
    """A bot's session: a maker buy filled in two parts (the fills' messages duplicated), a
    maker sell filled in part then cancelled, a market buy (taker), an order that fills while the
    private stream is down (recovered by REST), and a manual order on the same account."""
    sb = await lab.sandbox()
    bot = await lab.bot(sb, journal, "history", reconcile_fast=0.2)
    world, conn, rec = bot.world, bot.conn, bot.world.rec
    await seed_book(world)
    ids: dict[str, str] = {}
    ids["full"] = conn.buy(PAIR, D("0.02"), OrderType.LIMIT, D("50000"))
    ids["partial"] = conn.sell(PAIR, D("0.03"), OrderType.LIMIT, D("50500"))
    for cid in (ids["full"], ids["partial"]):
        await world.created(cid)
    sb.faults.duplicate_messages(20, StreamKind.USER)
    world.taker("SELL", "0.005", "50000")
    world.taker("SELL", "0.015", "49000")
    world.taker("BUY", "0.01", "50500")
    await world.ended(ids["full"])
    await rec.until(lambda: bool(rec.of(OrderFilled, ids["partial"])))
    conn.cancel(PAIR, ids["partial"])
    assert isinstance(await world.ended(ids["partial"]), OrderCancelled)
    await world.book_caught_up()
    ids["taker"] = conn.buy(PAIR, D("0.01"), OrderType.MARKET)
    assert isinstance(await world.ended(ids["taker"]), OrderCompleted)
    # The stream goes down while an order fills: the fill comes by REST.
    ids["recovered"] = conn.buy(PAIR, D("0.01"), OrderType.LIMIT, D("50100"))
    await world.created(ids["recovered"])
    sb.faults.stall_streams(world.now_ms() + 1_500, StreamKind.USER)
    world.taker("SELL", "0.01", "50100")
    sb.faults.drop_streams(StreamKind.USER)
    await world.ended(ids["recovered"])
    # Someone trades by hand on the same account (another client id, not this bot's).
    world.place_for_us("BUY", "0.01", "50200", "manual-order-1")
    world.taker("SELL", "0.01", "50200")
    await rec.until(lambda: conn.ready)
    await rec.until(world.balances_match)
    await bot.recorder.drain()
    return bot, ids


async def test_q13_every_partial_and_full_fill_is_stored_as_the_venue_traded_it(
    lab: QALab, journal: Journal,
) -> None:
    bot, ids = await _trade(lab, journal)
    sb, symbol = bot.world.sb, bot.world.symbol
    stored = journal_fills(journal.fills(bot.bot_id))
    assert len(stored) == len(set(stored)) == 5  # the duplicated messages were kept once
    ours = {f for f in venue_fills(sb, symbol) if f[0] in set(ids.values())}
    assert set(stored) == ours
    by_order = {cid: [f for f in stored if f[0] == cid] for cid in ids.values()}
    assert [len(by_order[ids[k]]) for k in ("full", "partial", "taker", "recovered")] == [2, 1, 1, 1]
    # Each order's stored state and amounts are the venue's.
    venue_orders = sb.exchange.all_orders(DEMO, symbol)
    for record in journal.orders(bot.bot_id):
        [venue_order] = [o for o in venue_orders if o.client_order_id == record.client_order_id]
        assert record.executed_base == venue_order.executed_qty
        assert record.executed_quote == venue_order.cum_quote_qty
        assert record.exchange_order_id == str(venue_order.order_id)


async def test_q14_history_holds_this_bots_orders_once_and_a_right_summary(
    lab: QALab, journal: Journal,
) -> None:
    bot, ids = await _trade(lab, journal)
    sb, symbol = bot.world.sb, bot.world.symbol
    orders = journal.orders(bot.bot_id)
    assert sorted(o.client_order_id for o in orders) == sorted(ids.values())  # once each, manual left out
    states = {o.client_order_id: o.state for o in orders}
    assert states == {
        ids["full"]: "FILLED", ids["partial"]: "CANCELED", ids["taker"]: "FILLED", ids["recovered"]: "FILLED",
    }
    filled = journal.orders(bot.bot_id, states=["FILLED"])
    assert len(filled) == len({o.client_order_id for o in filled}) == 3
    partial = next(o for o in orders if o.client_order_id == ids["partial"])
    assert partial.executed_base == D("0.01")  # the partial fill of a cancelled order is kept
    # The summary adds up the venue's trades of this bot's orders, and only those.
    trades = [t for t in sb.exchange.my_trades(DEMO, symbol)
              if t.order_id in {int(o.exchange_order_id or 0) for o in orders}]
    summary = journal.summary(bot.bot_id)
    assert summary.fill_count == len(trades) == 5
    assert summary.order_count == 4 and summary.orders_by_state == {"FILLED": 3, "CANCELED": 1}
    totals = summary.pairs[PAIR]
    assert totals.volume_base == sum((t.qty for t in trades), Decimal(0))
    assert totals.volume_quote == sum((t.quote_qty for t in trades), Decimal(0))
    # The position is what the account received net of fees paid in the base asset.
    base = PAIR.split("-")[0]
    assert totals.position == sum((t.qty if t.is_buyer else -t.qty for t in trades), Decimal(0)) - sum(
        (t.commission for t in trades if t.commission_asset == base), Decimal(0))
    fees: dict[str, Decimal] = {}
    for t in trades:
        fees[t.commission_asset] = fees.get(t.commission_asset, Decimal(0)) + t.commission
    assert summary.fees == fees


async def test_q15_the_venues_reported_fee_is_what_is_used_and_stored(lab: QALab, journal: Journal) -> None:
    bot, ids = await _trade(lab, journal)
    sb, symbol = bot.world.sb, bot.world.symbol
    venue = {t.trade_id: t for t in sb.exchange.my_trades(DEMO, symbol)}
    fills: list[OrderFilled] = [f for f in bot.world.rec.of(OrderFilled) if f.client_order_id in ids.values()]
    assert len({f.trade_id for f in fills}) == 5
    for fill in fills:
        trade = venue[int(fill.trade_id)]
        reported = (TokenAmount(trade.commission_asset, trade.commission),)
        # The fee is the venue's number (a flat amount), not a percent estimate from our schema.
        assert fill.fee.flat_fees == reported and fill.fee.percent == 0
        assert fill.fee_amounts == reported
        assert fill.is_taker == (not trade.is_maker)
    stored = {f.trade_id: f.fees for f in journal.fills(bot.bot_id)}
    assert stored == {
        str(t.trade_id): (TokenAmount(t.commission_asset, t.commission),)
        for t in venue.values() if str(t.trade_id) in stored
    }
    assert len(stored) == 5
