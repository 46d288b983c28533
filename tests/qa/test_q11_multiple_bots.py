"""Q11, several bots on one account and one key: each with its own client-id prefix and instance
(from its journal record), each market making; one's cancellations never touch the other's
orders, no client id collides, and each bot's history holds only its own orders and fills."""

from __future__ import annotations

from collections.abc import Callable

from harness import DEMO, D
from qa_support import Bot, QALab, inner_quote, journal_fills, pmm, seed_book, venue_fills

from marketlink.core.events import OrderCancelled, OrderCreated, OrderFilled
from marketlink.journal import Journal
from marketlink.strategy.pure_market_making import PureMarketMaking


def _created(bot: Bot) -> set[str]:
    return {e.client_order_id for e in bot.world.rec.of(OrderCreated)}


def _filled(bot: Bot, cid: str) -> Callable[[], bool]:
    return lambda: bool(bot.world.rec.of(OrderFilled, cid))


async def test_q11_two_bots_on_one_key_keep_to_their_own_orders(lab: QALab, journal: Journal) -> None:
    sb = await lab.sandbox()
    alpha = await lab.bot(sb, journal, "alpha", prefix="mla")
    beta = await lab.bot(sb, journal, "beta", prefix="mlb")
    assert alpha.record.client_id_instance != beta.record.client_id_instance
    await seed_book(alpha.world)
    await beta.world.book_caught_up()
    # Different spreads: alpha holds the best bid, beta the best ask.
    await alpha.run(PureMarketMaking(pmm(bid_spread=D("0.1"), ask_spread=D("0.3"), order_refresh_time=5.0,
                                         order_refresh_tolerance_pct=D("-1"))))
    await beta.run(PureMarketMaking(pmm(bid_spread=D("0.3"), ask_spread=D("0.1"), order_refresh_time=5.0)))
    await alpha.until(lambda: alpha.settled(quotes=2))
    await beta.until(lambda: beta.settled(quotes=2))
    beta_first = {o.client_order_id for o in beta.ctx.open_orders()}

    # Each is filled once, through the same account's private stream that both connectors hear.
    for bot, side, taker_side in ((alpha, "BUY", "SELL"), (beta, "SELL", "BUY")):
        quote = inner_quote(bot.ctx.open_orders(), side)
        bot.world.taker(taker_side, "0.004", str(quote.price))
        await bot.until(_filled(bot, quote.client_order_id))

    # Alpha refreshes (its tolerance says always) twice: it cancels and re-creates only its own.
    for _ in range(2):
        await alpha.advance(5.0)
        await alpha.until(lambda: alpha.settled(quotes=0))
        await alpha.advance(1.0)
        await alpha.until(lambda: alpha.settled(quotes=2))
    assert {o.client_order_id for o in beta.ctx.open_orders()} == beta_first
    # Alpha stops: its orders are cancelled, beta's stay on the venue and in beta's tracking.
    await alpha.stop()
    venue_open = {o.client_order_id for o in sb.exchange.open_orders(DEMO, alpha.world.symbol)}
    assert venue_open == beta_first == {o.client_order_id for o in beta.live()}
    # A connector-wide cancel of alpha's (e.g. at its shutdown) does not see beta's orders either.
    assert await alpha.conn.cancel_all(5.0) == []
    assert {o.client_order_id for o in sb.exchange.open_orders(DEMO, alpha.world.symbol)} == beta_first

    a_ids, b_ids = _created(alpha), _created(beta)
    assert len(a_ids) == 6 and len(b_ids) == 2 and not a_ids & b_ids
    assert all(c.startswith("mla") and alpha.conn.client_ids.owns(c) for c in a_ids)
    assert all(c.startswith("mlb") and beta.conn.client_ids.owns(c) for c in b_ids)
    assert not any(alpha.conn.client_ids.owns(c) for c in b_ids)
    assert not any(beta.conn.client_ids.owns(c) for c in a_ids)
    # Neither connector took the other's orders for its own, though it heard all of them.
    assert not {e.client_order_id for e in alpha.world.rec.events if hasattr(e, "client_order_id")} & b_ids
    assert not {e.client_order_id for e in beta.world.rec.events if hasattr(e, "client_order_id")} & a_ids
    assert {e.client_order_id for e in alpha.world.rec.of(OrderCancelled)} == a_ids

    await beta.stop()
    assert sb.exchange.open_orders(DEMO, beta.world.symbol) == []
    # Each history: exactly its own orders and fills; together, the account's trade history.
    await alpha.recorder.drain()
    assert {o.client_order_id for o in journal.orders(alpha.bot_id)} == a_ids
    assert {o.client_order_id for o in journal.orders(beta.bot_id)} == b_ids
    a_fills = journal_fills(journal.fills(alpha.bot_id))
    b_fills = journal_fills(journal.fills(beta.bot_id))
    assert {f[0] for f in a_fills} <= a_ids and {f[0] for f in b_fills} <= b_ids
    assert len(a_fills) == len(b_fills) == 1
    assert set(a_fills) | set(b_fills) == venue_fills(sb, alpha.world.symbol)
    assert {b.name for b in journal.bots()} == {"alpha", "beta"}
