"""Two bots in two processes share one journal file; a writer killed mid-transaction leaves
no fill without its order update."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

from marketlink.journal import Journal

ROOT = Path(__file__).resolve().parents[2]

_WRITER = textwrap.dedent("""
    import sys
    from decimal import Decimal
    from marketlink.core.enums import OrderType, Side
    from marketlink.core.fees import FeeKind, TradeFee
    from marketlink.core.orders import InFlightOrder, OrderState, OrderUpdate, TradeUpdate
    from marketlink.journal import Journal
    from marketlink.journal.records import FillRow, OrderRow, fees_json

    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    j = Journal.open(path)
    bot = j.bot(name, "binance").bot_id
    fee = TradeFee.reported("USDT", Decimal("0.01"), FeeKind.DEDUCTED_FROM_RETURNS)
    for i in range(count):
        cid = f"{name}-{i}"
        o = InFlightOrder(cid, "BTC-USDT", OrderType.LIMIT, Side.BUY, Decimal("1"), Decimal("100"), i)
        o.apply_update(OrderUpdate("BTC-USDT", i, OrderState.OPEN, cid, f"x{cid}"))
        t = TradeUpdate("t", cid, f"x{cid}", "BTC-USDT", i, Decimal("100"), Decimal("1"), fee, True)
        o.apply_trade(t)
        j.write([
            FillRow(bot, "binance", cid, "t", o.exchange_order_id, "BTC-USDT", "BUY", "100", "1", "100",
                    fees_json(o.fee_amounts(t)), True, False, float(i)),
            OrderRow.of(bot, "binance", o),
        ])
    print("retries", j.stats.lock_retries)
""")

_KILLED = textwrap.dedent("""
    import sys
    from marketlink.journal import Journal
    from marketlink.journal.records import FillRow
    from marketlink.journal.store import run_write, write_rows

    j = Journal.open(sys.argv[1])
    bot = j.bot("victim", "binance").bot_id
    fill = FillRow(bot, "binance", "c1", "t1", "x1", "BTC-USDT", "BUY", "100", "1", "100", "[]",
                   True, False, 1.0)

    def work(conn):
        write_rows(conn, [fill])  # the fill is in, the order update not yet ...
        print("inside", flush=True)
        sys.stdin.readline()  # ... and here the process is killed

    run_write(j._conn, work)
""")


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def test_two_processes_writing_fills_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    Journal.open(path).close()
    procs = [_spawn(_WRITER, str(path), name, "150") for name in ("alpha", "beta")]
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.startswith("retries ")
    with Journal.open(path) as j:
        for name in ("alpha", "beta"):
            bot = j.bot(name, "binance").bot_id
            fills = j.fills(bot)
            assert len(fills) == 150 and {f.client_order_id.split("-")[0] for f in fills} == {name}
            orders = j.orders(bot)
            assert len(orders) == 150 and all(o.state == "FILLED" for o in orders)
            assert j.summary(bot).pairs["BTC-USDT"].volume_base == Decimal(150)


def test_a_writer_killed_mid_transaction_leaves_no_half_recorded_fill(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    Journal.open(path).close()
    proc = _spawn(_KILLED, str(path))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "inside"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    with Journal.open(path) as j:
        bot = j.bot("victim", "binance").bot_id
        assert j.fills(bot) == [] and j.orders(bot) == []
        j.bot("after", "binance")  # the file is writable again: the dead writer's lock is gone
