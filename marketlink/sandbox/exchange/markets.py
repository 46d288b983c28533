"""Market definitions and Binance-style order filters, as plain data and pure checks.

A market is configuration: symbol, assets, the filter values a venue publishes in its exchange
info, fees and the self-trade-prevention policy. The checks follow Binance's ``filters.md``: a
bound of 0 disables that bound, the tick and step tests are exact remainders, and a failure
names the filter so a front-end can answer ``Filter failure: <NAME>``.

Binance's symbols default to ``EXPIRE_MAKER`` (``defaultSelfTradePreventionMode`` in live
exchange info since STP launched in January 2023), so that is our default too; each market can
choose another default and restrict the allowed set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from marketlink.core.errors import ConfigError
from marketlink.sandbox.exchange import money
from marketlink.sandbox.exchange.errors import FilterType, filter_failure

_ZERO = money.ZERO


class StpMode(StrEnum):
    NONE = "NONE"
    EXPIRE_TAKER = "EXPIRE_TAKER"
    EXPIRE_MAKER = "EXPIRE_MAKER"
    EXPIRE_BOTH = "EXPIRE_BOTH"


BINANCE_DEFAULT_STP = StpMode.EXPIRE_MAKER
ALL_STP_MODES = frozenset(StpMode)

_DECIMAL_FIELDS = (
    "tick_size", "step_size", "min_price", "max_price", "min_qty", "max_qty", "market_min_qty",
    "market_max_qty", "market_step_size", "min_notional", "max_notional", "maker_fee", "taker_fee",
)


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One market's rules. Zero bounds mean "no limit", as in Binance's filters."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_price: Decimal = _ZERO
    max_price: Decimal = _ZERO
    min_qty: Decimal = _ZERO
    max_qty: Decimal = _ZERO
    market_min_qty: Decimal = _ZERO
    market_max_qty: Decimal = _ZERO
    market_step_size: Decimal = _ZERO
    min_notional: Decimal = _ZERO
    max_notional: Decimal = _ZERO
    apply_min_to_market: bool = True
    apply_max_to_market: bool = False
    max_num_orders: int = 200
    maker_fee: Decimal = Decimal("0.001")
    taker_fee: Decimal = Decimal("0.001")
    default_stp: StpMode = BINANCE_DEFAULT_STP
    allowed_stp: frozenset[StpMode] = field(default=ALL_STP_MODES)
    base_precision: int = 8
    quote_precision: int = 8
    notional_filter: FilterType = FilterType.NOTIONAL  # MIN_NOTIONAL for a legacy-style market

    def __post_init__(self) -> None:
        where = f"market {self.symbol!r}"
        if not self.symbol or not self.base or not self.quote or self.base == self.quote:
            raise ConfigError(f"{where}: symbol, base and quote must be set and base != quote")
        for name in _DECIMAL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not money.in_range(value) or value < 0:
                raise ConfigError(f"{where}: {name} must be a non-negative Decimal, got {value!r}")
        if self.tick_size <= 0 or self.step_size <= 0:
            raise ConfigError(f"{where}: tick_size and step_size must be positive")
        if self.maker_fee >= 1 or self.taker_fee >= 1:
            raise ConfigError(f"{where}: fees are rates and must be below 1")
        if self.max_price and self.max_price < self.min_price:
            raise ConfigError(f"{where}: max_price below min_price")
        if self.max_qty and self.max_qty < self.min_qty:
            raise ConfigError(f"{where}: max_qty below min_qty")
        if self.default_stp not in self.allowed_stp:
            raise ConfigError(f"{where}: default STP mode {self.default_stp} is not allowed")
        if self.notional_filter not in (FilterType.NOTIONAL, FilterType.MIN_NOTIONAL):
            raise ConfigError(f"{where}: notional_filter must be NOTIONAL or MIN_NOTIONAL")
        precisions = (self.base_precision, self.quote_precision)
        if self.max_num_orders < 0 or not all(0 <= p <= 18 for p in precisions):
            raise ConfigError(f"{where}: max_num_orders and precisions must be sensible")

    @classmethod
    def from_config(cls, raw: Mapping[str, object]) -> MarketSpec:
        """Build from configuration text: numbers as strings (or ints), never floats."""
        kwargs: dict[str, object] = dict(raw)
        symbol = str(kwargs.get("symbol", ""))
        for name in _DECIMAL_FIELDS:
            if name in kwargs:
                kwargs[name] = _config_decimal(symbol, name, kwargs[name])
        try:
            if "default_stp" in kwargs:
                kwargs["default_stp"] = StpMode(str(kwargs["default_stp"]))
            if "allowed_stp" in kwargs:
                allowed = kwargs["allowed_stp"]
                if isinstance(allowed, str) or not isinstance(allowed, list | tuple | set | frozenset):
                    raise ConfigError(f"market {symbol!r}: allowed_stp must be a list of modes")
                kwargs["allowed_stp"] = frozenset(StpMode(str(m)) for m in allowed)
            if "notional_filter" in kwargs:
                kwargs["notional_filter"] = FilterType(str(kwargs["notional_filter"]))
            return cls(**kwargs)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"market {symbol!r}: {exc}") from exc

    # -- helpers the engine uses ---------------------------------------------------------------

    @property
    def market_step(self) -> Decimal:
        """The quantity step for MARKET orders: MARKET_LOT_SIZE's if set, else LOT_SIZE's."""
        return self.market_step_size or self.step_size

    def max_market_qty(self) -> Decimal | None:
        """The tightest quantity cap a MARKET order must respect, or ``None``."""
        caps = [c for c in (self.max_qty, self.market_max_qty) if c > 0]
        return min(caps) if caps else None

    def commission_places(self, asset: str) -> int:
        return self.base_precision if asset == self.base else self.quote_precision


def _config_decimal(symbol: str, name: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ConfigError(f"market {symbol!r}: {name} must be a string or int, got {value!r}")
    try:
        return Decimal(value) if not isinstance(value, str) else Decimal(value.strip())
    except InvalidOperation:
        raise ConfigError(f"market {symbol!r}: {name} is not a number: {value!r}") from None


# -- filters (pure; each raises ExchangeRejection naming the filter) ------------------------------


def check_price(spec: MarketSpec, price: Decimal) -> None:
    if price <= 0:
        raise filter_failure(FilterType.PRICE_FILTER, f"{spec.symbol}: price {price} must be positive")
    if spec.min_price and price < spec.min_price:
        raise filter_failure(FilterType.PRICE_FILTER, f"{spec.symbol}: price {price} < {spec.min_price}")
    if spec.max_price and price > spec.max_price:
        raise filter_failure(FilterType.PRICE_FILTER, f"{spec.symbol}: price {price} > {spec.max_price}")
    if not money.is_multiple(price, spec.tick_size):
        raise filter_failure(
            FilterType.PRICE_FILTER, f"{spec.symbol}: price {price} not a multiple of {spec.tick_size}"
        )


def check_lot(spec: MarketSpec, qty: Decimal) -> None:
    _check_qty(spec.symbol, FilterType.LOT_SIZE, qty, spec.min_qty, spec.max_qty, spec.step_size)


def check_market_lot(spec: MarketSpec, qty: Decimal) -> None:
    """Binance applies LOT_SIZE to every order and MARKET_LOT_SIZE on top to MARKET orders."""
    check_lot(spec, qty)
    _check_qty(
        spec.symbol, FilterType.MARKET_LOT_SIZE, qty,
        spec.market_min_qty, spec.market_max_qty, spec.market_step_size,
    )


def _check_qty(
    symbol: str, name: FilterType, qty: Decimal, lo: Decimal, hi: Decimal, step: Decimal
) -> None:
    if qty <= 0:
        raise filter_failure(name, f"{symbol}: quantity {qty} must be positive")
    if qty < lo:
        raise filter_failure(name, f"{symbol}: quantity {qty} < {lo}")
    if hi and qty > hi:
        raise filter_failure(name, f"{symbol}: quantity {qty} > {hi}")
    if step and not money.is_multiple(qty, step):
        raise filter_failure(name, f"{symbol}: quantity {qty} not a multiple of {step}")


def check_notional(spec: MarketSpec, notional: Decimal, *, is_market: bool) -> None:
    if spec.min_notional and (not is_market or spec.apply_min_to_market) and notional < spec.min_notional:
        raise filter_failure(
            spec.notional_filter, f"{spec.symbol}: notional {notional} < {spec.min_notional}"
        )
    if spec.max_notional and (not is_market or spec.apply_max_to_market) and notional > spec.max_notional:
        raise filter_failure(
            spec.notional_filter, f"{spec.symbol}: notional {notional} > {spec.max_notional}"
        )
