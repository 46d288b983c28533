"""Live views shared by ``run``, ``ticker``, ``book`` and ``status``: Rich on a terminal, plain
lines in a pipe.

A view is three cheap functions of the current state: a *fingerprint* (any comparable value that
changes when what is shown changes), a Rich renderable and a one-line text. ``follow`` polls the
fingerprint and redraws only when it moved, so nothing is redrawn while nothing changes (no
flicker, no CPU) and a book moving 100 times a second is drawn at most ``max_fps`` times. Rich's
own refresh thread is off (``auto_refresh=False``): it would repaint on a timer whether or not
anything changed. In a pipe (a log file, a test, ``| grep``) there is no cursor to move, so each
change becomes one line, at most one per ``plain_every`` seconds, which is what a reader of a log
wants and what scripts can parse.

The renderers below take plain values (and the status snapshot's JSON dict), never a connector,
so they are tested without a network and ``status`` can draw a snapshot another process wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = [
    "LiveDisplay",
    "RedrawGate",
    "View",
    "book_line",
    "book_table",
    "follow",
    "status_line",
    "status_view",
    "ticker_line",
]

Rows = Sequence[tuple[Decimal, Decimal]]


class RedrawGate:
    """Decides when a view is drawn: on a change of fingerprint, no sooner than ``min_interval``
    after the previous draw. Pure (time is passed in), so the throttling is tested exactly."""

    def __init__(self, min_interval: float) -> None:
        self.min_interval = min_interval
        self._last_print: Hashable = object()
        self._last_time: float | None = None

    def due(self, fingerprint: Hashable, now: float) -> bool:
        if fingerprint == self._last_print:
            return False
        if self._last_time is not None and now - self._last_time < self.min_interval:
            return False
        self._last_print = fingerprint
        self._last_time = now
        return True


@dataclass(frozen=True, slots=True)
class View:
    fingerprint: Callable[[], Hashable]
    render: Callable[[], RenderableType]
    line: Callable[[], str]


class LiveDisplay:
    """A Rich ``Live`` region on a terminal, plain lines otherwise; ``offer`` draws if due."""

    def __init__(
        self, console: Console, *, max_fps: float = 10.0, plain_every: float = 1.0, tty: bool | None = None
    ) -> None:
        self.console = console
        self.tty = console.is_terminal if tty is None else tty
        self.gate = RedrawGate(1.0 / max_fps if self.tty else plain_every)
        self.draws = 0
        self._live: Live | None = None

    def __enter__(self) -> LiveDisplay:
        if self.tty:
            self._live = Live(console=self.console, auto_refresh=False, transient=False,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def offer(self, view: View, now: float | None = None) -> bool:
        """Draw ``view`` if its fingerprint changed and the rate cap allows; True if drawn."""
        if not self.gate.due(view.fingerprint(), time.monotonic() if now is None else now):
            return False
        self.draws += 1
        if self._live is not None:
            self._live.update(view.render(), refresh=True)
        else:
            self.console.print(view.line(), markup=False, highlight=False, soft_wrap=True)
        return True


async def follow(display: LiveDisplay, view: View, stop: asyncio.Event, *, poll: float = 0.1) -> None:
    """Offer ``view`` to ``display`` every ``poll`` seconds until ``stop`` is set."""
    while not stop.is_set():
        display.offer(view)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)


# -- books and tickers ----------------------------------------------------------------------------


def book_table(pair: str, bids: Rows, asks: Rows, *, title: str | None = None) -> Table:
    table = Table(title=title or pair, title_justify="left")
    for col in ("bid size", "bid", "ask", "ask size"):
        table.add_column(col, justify="right")
    for i in range(max(len(bids), len(asks))):
        bp, bq = bids[i] if i < len(bids) else ("", "")
        ap, aq = asks[i] if i < len(asks) else ("", "")
        table.add_row(str(bq), Text(str(bp), style="green"), Text(str(ap), style="red"), str(aq))
    return table


def book_line(pair: str, bids: Rows, asks: Rows) -> str:
    def side(rows: Rows) -> str:
        return " ".join(f"{p}x{q}" for p, q in rows) or "-"

    return f"{pair} bids {side(bids)} | asks {side(asks)}"


def ticker_line(pair: str, bid: Decimal | None, ask: Decimal | None, last: Decimal | None) -> str:
    mid = (bid + ask) / 2 if bid is not None and ask is not None else None
    spread = ask - bid if bid is not None and ask is not None else None
    like = bid if bid is not None else ask
    if last is not None and like is not None:
        last = _same_scale(last, like)
    return f"{pair} bid={_s(bid)} ask={_s(ask)} mid={_s(mid)} spread={_s(spread)} last={_s(last)}"


def _same_scale(value: Decimal, like: Decimal) -> Decimal:
    """``value`` written with ``like``'s decimals when that loses nothing: a trade price as the
    venue spelled it ("59999.98000000") next to book prices at the tick ("59999.98")."""
    exp = like.as_tuple().exponent
    if not isinstance(exp, int):
        return value
    try:
        scaled = value.quantize(Decimal(1).scaleb(exp))
    except ArithmeticError:
        return value
    return scaled if scaled == value else value


def _s(value: object) -> str:
    return "-" if value is None else str(value)


# -- the status snapshot (a JSON dict: see cli/status_cmd.py) -------------------------------------


def status_line(snap: Mapping[str, Any]) -> str:
    """One line per change, for pipes and logs: what a reader grepping a log needs."""
    books = snap.get("books", {})
    quotes = " ".join(f"{p} {b.get('bid')}/{b.get('ask')}" for p, b in books.items())
    return (
        f"t={float(snap.get('elapsed', 0.0)):6.1f}s {quotes} orders={len(snap.get('orders', ()))} "
        f"placed={snap.get('orders_placed', 0)} fills={snap.get('fills', 0)} "
        f"pnl={_pnl_text(snap)} state={snap.get('state', '?')}{_journal_text(snap)}"
    )


def _journal_text(snap: Mapping[str, Any]) -> str:
    """Said only when a journal write is failing (its rows are kept and retried meanwhile)."""
    journal = snap.get("journal") or {}
    if not journal.get("failing"):
        return ""
    return f" JOURNAL-FAILING rows_pending={journal.get('rows_pending', '?')} ({journal.get('last_error')})"


def _pnl_text(snap: Mapping[str, Any]) -> str:
    values = [p.get("value") for p in snap.get("pnl", ())]
    known = [Decimal(v) for v in values if v is not None]
    if not known:
        return "-"
    return str(sum(known, Decimal(0)))


def status_view(snap: Mapping[str, Any]) -> Group:
    head = Text.assemble(
        (f"{snap.get('bot', '?')}", "bold"), f" · {snap.get('strategy', '?')} · {snap.get('state', '?')}",
        f" · {snap.get('where', '')} · {float(snap.get('elapsed', 0.0)):.0f}s",
    )
    parts: list[RenderableType] = [head]
    orders = Table(title="open orders", title_justify="left")
    for col in ("id", "pair", "side", "price", "amount", "filled", "state"):
        orders.add_column(col)
    for o in snap.get("orders", ()):
        style = "green" if o.get("side") == "BUY" else "red"
        orders.add_row(o.get("id", ""), o.get("pair", ""), Text(str(o.get("side", "")), style=style),
                       _s(o.get("price")), _s(o.get("amount")), _s(o.get("executed")), o.get("state", ""))
    parts.append(orders)
    bal = Table(title="balances", title_justify="left")
    for col in ("connector", "asset", "total", "available"):
        bal.add_column(col, justify="right" if col in ("total", "available") else "left")
    for conn, assets in snap.get("balances", {}).items():
        for asset, b in assets.items():
            bal.add_row(conn, asset, _s(b.get("total")), _s(b.get("available")))
    parts.append(bal)
    pnl = Table(title="PnL", title_justify="left")
    for col in ("market", "fills", "base Δ", "quote Δ", "value at mid"):
        pnl.add_column(col, justify="right" if col != "market" else "left")
    for p in snap.get("pnl", ()):
        pnl.add_row(f"{p.get('connector')} {p.get('pair')}", str(p.get("fills", 0)), _s(p.get("base_delta")),
                    _s(p.get("quote_delta")), _s(p.get("value")))
    parts.append(pnl)
    tail = (f"orders placed {snap.get('orders_placed', 0)} · failed {snap.get('orders_failed', 0)} · "
            f"fills {snap.get('fills', 0)} · errors {snap.get('errors', 0)}")
    if snap.get("last_error"):
        tail += f" · last error: {snap['last_error']}"
    parts.append(Text(tail))
    journal = snap.get("journal") or {}
    if journal.get("failing"):
        parts.append(Text(f"journal writes failing ({journal.get('write_failures')} attempts, "
                          f"{journal.get('rows_pending')} rows kept and retried): "
                          f"{journal.get('last_error')}", style="bold red"))
    for key, value in snap.get("strategy_status", {}).items():
        parts.append(Text(f"{key}: {value}", style="dim"))
    return Group(*parts)
