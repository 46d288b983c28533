"""Helpers for the sandbox engine tests: one BTCUSDT-like market, funded accounts, recorders."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from marketlink.sandbox.exchange import Exchange, MarketSpec, OrderResult, PrivateEvent, PublicEvent

D = Decimal
SYMBOL = "BTCUSDT"


def make_spec(**overrides: object) -> MarketSpec:
    raw: dict[str, object] = {
        "symbol": SYMBOL,
        "base": "BTC",
        "quote": "USDT",
        "tick_size": "0.01",
        "step_size": "0.001",
        "min_qty": "0.001",
        "max_qty": "1000",
        "min_price": "0.01",
        "max_price": "1000000",
        "min_notional": "5",
        "maker_fee": "0.001",
        "taker_fee": "0.002",
    }
    raw.update(overrides)
    return MarketSpec.from_config(raw)


def make_exchange(*specs: MarketSpec, accounts: tuple[str, ...] = ("alice", "bob", "carol")) -> Exchange:
    ex = Exchange(specs or (make_spec(),))
    for name in accounts:
        ex.open_account(name, balances={"BTC": "100", "USDT": "1000000"})
    return ex


class Recorder:
    """Collects private and public events in arrival order."""

    def __init__(self) -> None:
        self.private: list[PrivateEvent] = []
        self.public: list[PublicEvent] = []

    def on_private(self) -> Callable[[PrivateEvent], None]:
        return self.private.append

    def on_public(self) -> Callable[[PublicEvent], None]:
        return self.public.append


def limit(
    ex: Exchange, account: str, side: str, qty: str, price: str, *, now_ms: int = 1_000, **kw: object
) -> OrderResult:
    return ex.place_order(account, SYMBOL, side, "LIMIT", quantity=qty, price=price, now_ms=now_ms, **kw)  # type: ignore[arg-type]


def market(ex: Exchange, account: str, side: str, *, now_ms: int = 1_000, **kw: object) -> OrderResult:
    return ex.place_order(account, SYMBOL, side, "MARKET", now_ms=now_ms, **kw)  # type: ignore[arg-type]


def free(ex: Exchange, account: str, asset: str) -> Decimal:
    return ex.balance(account, asset).free


def locked(ex: Exchange, account: str, asset: str) -> Decimal:
    return ex.balance(account, asset).locked
