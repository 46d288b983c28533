"""Default markets of the sandbox: Binance-like filters and starting prices for any ``BASE-QUOTE``.

A user should be able to say ``--markets BTC-USDT,DOGE-EUR,FOO-BAR`` and get sensible markets
without writing a filter by hand, and a cold-start benchmark needs fifty of them. So there is a
small table of real-looking markets (the filters Binance publishes for its majors, rounded), and
a generator for everything else that derives tick, step and notional from the prices of the two
assets when it knows them, and from a stable hash of the pair when it does not (CRC-32, never
Python's salted ``hash``, so the same name gives the same market in every process).

Everything here is exact: prices and sizes are built from digits and powers of ten, never floats.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from decimal import ROUND_CEILING, Context, Decimal

from marketlink.core.pairs import TradingPair
from marketlink.sandbox.exchange import MarketSpec

DEFAULT_PAIRS: tuple[str, ...] = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "BNB-USDT", "XRP-USDT", "ETH-BTC")

# Stablecoins count as one US dollar; a notional minimum of 5 of them is Binance's usual rule.
USD_LIKE = frozenset({"USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "USD"})
USD_MIN_NOTIONAL = Decimal(5)

# Rough dollar prices of well-known assets: only used to scale starting prices, steps and
# balances, so a generated SOL-BTC market starts near 150 / 60000 and trades in sensible lots.
USD_PRICES: dict[str, Decimal] = {
    "BTC": Decimal(60000),
    "ETH": Decimal(3000),
    "BNB": Decimal(600),
    "SOL": Decimal(150),
    "LTC": Decimal(80),
    "AVAX": Decimal(30),
    "LINK": Decimal(15),
    "DOT": Decimal(6),
    "ADA": Decimal("0.45"),
    "XRP": Decimal("0.5"),
    "DOGE": Decimal("0.15"),
    "TRX": Decimal("0.12"),
    "EUR": Decimal("1.08"),
}

# Significant digits of a generated price; the tick is its last digit's unit. Five digits keep
# the flow's one-tick moves visible in a demo while leaving room for fine quoting.
_PRICE_DIGITS = 5
_DIV = Context(prec=28)


@dataclass(frozen=True, slots=True)
class MarketSetup:
    """One configured market: its trading pair, the engine's spec, and where its price starts."""

    pair: str
    spec: MarketSpec
    initial_price: Decimal

    @property
    def symbol(self) -> str:
        return self.spec.symbol


def _spec(pair: TradingPair, **filters: str) -> MarketSpec:
    raw: dict[str, object] = {"symbol": venue_symbol(pair), "base": pair.base, "quote": pair.quote}
    raw.update(filters)
    return MarketSpec.from_config(raw)


# pair, starting price, tick, step, max price, max qty, max MARKET qty, min notional: Binance's
# published filters for the majors (as of 2026, rounded where they vary). Min price and min qty
# equal the tick and the step, as on Binance; max notional is 9,000,000.
_TABLE_ROWS: tuple[tuple[str, str, str, str, str, str, str, str], ...] = (
    ("BTC-USDT", "60000.00", "0.01", "0.00001", "1000000", "9000", "120", "5"),
    ("ETH-USDT", "3000.00", "0.01", "0.0001", "1000000", "9000", "3000", "5"),
    ("SOL-USDT", "150.00", "0.01", "0.001", "10000", "90000", "30000", "5"),
    ("BNB-USDT", "600.00", "0.01", "0.001", "100000", "90000", "8000", "5"),
    ("XRP-USDT", "0.5000", "0.0001", "0.1", "10000", "9222449", "5000000", "5"),
    ("ETH-BTC", "0.05000", "0.00001", "0.0001", "922327", "100000", "2000", "0.0001"),
)


def _table() -> dict[str, tuple[dict[str, str], Decimal]]:
    table: dict[str, tuple[dict[str, str], Decimal]] = {}
    for pair, price, tick, step, max_price, max_qty, market_max_qty, min_notional in _TABLE_ROWS:
        filters = {
            "tick_size": tick, "min_price": tick, "max_price": max_price,
            "step_size": step, "min_qty": step, "max_qty": max_qty, "market_max_qty": market_max_qty,
            "min_notional": min_notional, "max_notional": "9000000",
        }
        table[pair] = (filters, Decimal(price))
    return table


_TABLE = _table()


def venue_symbol(pair: TradingPair) -> str:
    """The exchange's symbol for a pair: Binance's and Bybit's concatenation, ``BTCUSDT``."""
    return f"{pair.base}{pair.quote}"


def market_setup(name: str) -> MarketSetup:
    """The market for ``name`` (``BASE-QUOTE``): from the table, else generated.

    Raises ``InvalidTradingPair`` for a malformed name and ``ConfigError`` if the derived
    filters are out of the engine's range (an absurdly priced pair).
    """
    pair = TradingPair.parse(name)
    key = str(pair)
    if key in _TABLE:
        filters, price = _TABLE[key]
        return MarketSetup(key, _spec(pair, **filters), price)
    price = _initial_price(pair)
    tick = _unit(price.adjusted() - _PRICE_DIGITS + 1)
    base_usd = _usd(pair.base)
    # One step is worth between 0.1 and 1 dollar when the base's price is known, else between
    # 0.1 and 1 quote unit: fine enough for small orders, coarse enough to keep books readable.
    step = _unit(-(base_usd.adjusted() if base_usd is not None else price.adjusted()) - 1)
    filters = {
        "tick_size": str(tick),
        "min_price": str(tick),
        "max_price": str(_unit(price.adjusted() + 4)),
        "step_size": str(step),
        "min_qty": str(step),
        "max_qty": str(_unit(9 + step.adjusted())),
        "min_notional": str(_min_notional(pair.quote)),
    }
    return MarketSetup(key, _spec(pair, **filters), price)


def demo_balance(asset: str) -> Decimal:
    """How much of ``asset`` the demo account starts with: 1,000,000 of a stablecoin or an
    unknown asset, else the power of ten just above five million dollars' worth (100 BTC)."""
    usd = _usd(asset)
    if usd is None or asset in USD_LIKE:
        return Decimal(1_000_000)
    worth = _DIV.divide(Decimal(5_000_000), usd)
    exponent = worth.adjusted()
    return _unit(exponent if worth == _unit(exponent) else exponent + 1)


def _usd(asset: str) -> Decimal | None:
    return Decimal(1) if asset in USD_LIKE else USD_PRICES.get(asset)


def _initial_price(pair: TradingPair) -> Decimal:
    """The ratio of the assets' dollar prices to five digits when both are known, else a price
    between 0.01 and 9999.9 picked by the pair's CRC-32."""
    base, quote = _usd(pair.base), _usd(pair.quote)
    if base is not None and quote is not None:
        ratio = _DIV.divide(base, quote)
        return ratio.quantize(_unit(ratio.adjusted() - _PRICE_DIGITS + 1), rounding=ROUND_CEILING)
    h = zlib.crc32(str(pair).encode())
    mantissa = 10_000 + h % 90_000  # five significant digits, 1.0000 to 9.9999
    exponent = -2 + (h // 90_000) % 6  # 0.01 ... 9999.9
    return Decimal(mantissa).scaleb(exponent - _PRICE_DIGITS + 1)


def _min_notional(quote: str) -> Decimal:
    """Five dollars in ``quote``, rounded up to one significant digit; 0 (no minimum) when the
    quote's value is unknown."""
    usd = _usd(quote)
    if usd is None:
        return Decimal(0)
    if quote in USD_LIKE:
        return USD_MIN_NOTIONAL
    value = _DIV.divide(USD_MIN_NOTIONAL, usd)
    return value.quantize(_unit(value.adjusted()), rounding=ROUND_CEILING)


def _unit(exponent: int) -> Decimal:
    """10 ** exponent as an exact Decimal in plain notation (0.001, 1, 1000), never ``1E+3``,
    because these values end up in venue payloads that clients parse."""
    return Decimal(10**exponent) if exponent >= 0 else Decimal(1).scaleb(exponent)
