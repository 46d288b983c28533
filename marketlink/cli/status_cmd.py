"""``marketlink status`` and ``marketlink history``: what a bot is doing, and what it did.

A running bot (``marketlink run``) is another process, so ``status`` cannot ask its runner: the
bot writes a snapshot, a small JSON file in ``MARKETLINK_HOME/status/<bot>.json``, on every
change (throttled), replacing it atomically (write a temporary file, then ``os.replace``) so a
reader never sees half a file. The snapshot names the writer's pid: a snapshot that says
"running" but whose process is gone is a bot that died without cleaning up, and is reported so.

``history`` reads the journal, never the snapshot: the journal has every fill of the bot (and
only that bot's: a journal read is always scoped to one bot id), with exact decimals, after the
bot has ended. ``--csv`` writes those decimals as the journal holds them, never through a float.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import tempfile
import time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from marketlink.journal import Journal, Summary

__all__ = [
    "MAIN_BOT",
    "SnapshotWriter",
    "history",
    "is_running",
    "read_snapshot",
    "status",
    "status_path",
    "summary_lines",
    "write_snapshot",
]

#: The bot name of ``marketlink run`` with no arguments (the main job).
MAIN_BOT = "main"


def status_path(home: Path, bot: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in bot) or "_"
    return home / "status" / f"{safe}.json"


def write_snapshot(path: Path, snapshot: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``snapshot`` atomically (readers see the old or the new file)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(snapshot, f, separators=(",", ":"), default=str)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_snapshot(path: Path) -> dict[str, Any] | None:
    """The snapshot, or None when there is none or it cannot be read (a reader never crashes
    on another process's file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: object) -> bool:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def is_running(snapshot: Mapping[str, Any] | None) -> bool:
    return bool(snapshot) and snapshot is not None and snapshot.get("running") is True and _pid_alive(
        snapshot.get("pid")
    )


class SnapshotWriter:
    """Writes a bot's snapshot when it changed, at most every ``min_interval`` seconds (the
    last one, on stop, always)."""

    def __init__(self, path: Path, min_interval: float = 0.5) -> None:
        self.path = path
        self.min_interval = min_interval
        self.writes = 0
        self.failures = 0
        self._last: str | None = None
        self._last_time = -float("inf")

    def offer(self, snapshot: Mapping[str, Any], *, force: bool = False, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        key = json.dumps({k: v for k, v in snapshot.items() if k not in ("updated", "elapsed")},
                         sort_keys=True, default=str)
        if not force and (key == self._last or now - self._last_time < self.min_interval):
            return False
        try:
            write_snapshot(self.path, snapshot)
        except OSError:
            self.failures += 1  # a full disk must not stop the bot; the status view just lags
            return False
        self._last, self._last_time = key, now
        self.writes += 1
        return True


# -- summaries --------------------------------------------------------------------------------------


def summary_lines(summary: Summary) -> list[str]:
    """The journal's totals of one bot (or one run of it) as plain lines."""
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary.orders_by_state.items())) or "none"
    lines = [f"orders: {summary.order_count} ({states})", f"fills: {summary.fill_count}"]
    for pair, t in sorted(summary.pairs.items()):
        base, quote = pair.split("-", 1)
        lines.append(
            f"{pair}: volume {_d(t.volume_base)} {base} / {_d(t.volume_quote)} {quote}; "
            f"realised PnL {_d(t.realized_pnl)} {quote} (fees included); position {_d(t.position)} {base}"
            + (f" at {_d(t.average_price)}" if t.position else "")
        )
        if t.other_fees:  # no price to value them in the quote asset: never mixed into the PnL
            other = ", ".join(f"{_d(v)} {k}" for k, v in sorted(t.other_fees.items()))
            lines.append(f"{pair}: fees in other assets (not in the PnL): {other}")
    fees = ", ".join(f"{_d(v)} {k}" for k, v in sorted(summary.fees.items())) or "none"
    lines.append(f"fees: {fees}")
    return lines


# -- the commands ---------------------------------------------------------------------------------

_BOT = typer.Option("--bot", help="The bot's name (the main job's is 'main'; run CONFIG's: the file's stem).")
_LIVE = typer.Option("--live", help="Follow the bot until Ctrl-C.")
_VERBOSE = typer.Option("--verbose", "-v", help="List every fill.")
_CSV = typer.Option("--csv", help="Write the fills to this CSV file (exact decimals).")


def _journal(home: Path) -> Journal | None:
    from marketlink.client.home import journal_path
    from marketlink.journal import Journal

    path = journal_path(home)
    return Journal.open(path) if path.exists() else None


def _bot_ids(journal: Journal, name: str) -> list[int]:
    """The bot's journal ids: one per venue, and one per extra connector on a venue
    (``<name>/<connector>``, see ``run_cmd.journal_identities``)."""
    return [b.bot_id for b in journal.bots() if b.name == name or b.name.startswith(f"{name}/")]


def status(bot: Annotated[str, _BOT] = MAIN_BOT, live: Annotated[bool, _LIVE] = False) -> None:
    """Show a running bot: strategy, open orders, balances, PnL (--live follows it)."""
    from rich.console import Console

    from marketlink.cli.live import status_line, status_view
    from marketlink.client.home import marketlink_home

    home = marketlink_home()
    path = status_path(home, bot)
    snap = read_snapshot(path)
    console = Console()
    if not is_running(snap):
        note = "" if snap is None or snap.get("running") is not True else " (its process has gone)"
        typer.echo(f"no bot named {bot!r} is running{note}")
        _last_summary(home, bot)
        return
    assert snap is not None
    if not live:
        if console.is_terminal:
            console.print(status_view(snap))
        else:
            typer.echo(status_line(snap))
        return
    with contextlib.suppress(KeyboardInterrupt):  # where signal handlers are not available
        asyncio.run(_follow_status(path, console))


async def _follow_status(path: Path, console: Any) -> None:
    import signal

    from marketlink.cli.live import LiveDisplay, View, follow, status_line, status_view

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    state: dict[str, Any] = {"snap": read_snapshot(path) or {}}

    def fingerprint() -> str:
        snap = read_snapshot(path)
        if snap is not None:
            state["snap"] = snap
        if not is_running(state["snap"]):
            stop.set()
        return json.dumps(state["snap"], sort_keys=True, default=str)

    view = View(fingerprint, lambda: status_view(state["snap"]), lambda: status_line(state["snap"]))
    try:
        with LiveDisplay(console) as display:
            await follow(display, view, stop, poll=0.25)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    typer.echo("the bot has stopped" if not is_running(state["snap"]) else "stopped following")


def _last_summary(home: Path, bot: str) -> None:
    journal = _journal(home)
    if journal is None:
        typer.echo("the journal is empty: run `marketlink run` first")
        return
    with journal:
        ids = _bot_ids(journal, bot)
        if not ids:
            typer.echo(f"the journal has no bot named {bot!r}")
            return
        typer.echo(f"last recorded totals of {bot!r}:")
        for bot_id in ids:
            for line in summary_lines(journal.summary(bot_id)):
                typer.echo(f"  {line}")


def history(
    bot: Annotated[str, _BOT] = MAIN_BOT,
    verbose: Annotated[bool, _VERBOSE] = False,
    csv_file: Annotated[Path | None, _CSV] = None,
) -> None:
    """A bot's fills, fees, volume and realised PnL, from the journal (only its own orders)."""
    from marketlink.client.home import marketlink_home

    journal = _journal(marketlink_home())
    if journal is None:
        typer.echo("the journal is empty: run `marketlink run` first")
        return
    with journal:
        ids = _bot_ids(journal, bot)
        if not ids:
            known = ", ".join(sorted({b.name for b in journal.bots()})) or "none"
            typer.echo(f"the journal has no bot named {bot!r} (bots: {known})")
            raise typer.Exit(1)
        fills = [f for bot_id in ids for f in journal.fills(bot_id)]
        fills.sort(key=lambda f: f.timestamp)
        if verbose:
            for f in fills:
                fees = " ".join(f"{_d(t.amount)} {t.token}" for t in f.fees) or "0"
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f.timestamp))
                typer.echo(f"{when} {f.venue} {f.trading_pair} {f.side.value:<4} {f.amount} @ {f.price} "
                           f"= {f.quote_amount} fee {fees} {'taker' if f.is_taker else 'maker'} "
                           f"order {f.client_order_id} trade {f.trade_id}")
        for bot_id in ids:
            for line in summary_lines(journal.summary(bot_id)):
                typer.echo(line)
        if csv_file is not None:
            _write_csv(csv_file, fills)
            typer.echo(f"wrote {len(fills)} fills to {csv_file}")


_CSV_COLUMNS = ("timestamp", "venue", "trading_pair", "side", "price", "amount", "quote_amount", "fees",
                "is_taker", "client_order_id", "exchange_order_id", "trade_id")


def _write_csv(path: Path, fills: list[Any]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(_CSV_COLUMNS)
        for r in fills:
            fees = ";".join(f"{_d(t.amount)} {t.token}" for t in r.fees)
            out.writerow([f"{r.timestamp:.6f}", r.venue, r.trading_pair, r.side.value, _d(r.price),
                          _d(r.amount), _d(r.quote_amount), fees, int(r.is_taker), r.client_order_id,
                          r.exchange_order_id or "", r.trade_id])


def _d(value: Decimal) -> str:
    """Exact, and never in exponent notation (``0E-8`` reads as a typo to a user)."""
    return format(value, "f")
