"""The shared vocabulary: enums as strings, and errors that carry data and survive pickling."""

from __future__ import annotations

import pickle
from decimal import Decimal as D

import pytest

from marketlink.core import errors as core_errors
from marketlink.core.enums import (
    OrderType,
    PositionAction,
    PositionMode,
    PositionSide,
    PriceType,
    Side,
    TimeInForce,
)
from marketlink.core.errors import (
    ConfigError,
    InvalidTradingPair,
    MarketlinkError,
    RuleViolation,
    UnknownSymbol,
)
from marketlink.net import errors as net_errors
from marketlink.net.errors import (
    AuthError,
    ClockSkew,
    ConnectionFailed,
    DuplicateOrder,
    FilterRejected,
    InsufficientFunds,
    IpBanned,
    MalformedMessage,
    OrderNotFound,
    RateLimited,
    Rejected,
    RequestTimeout,
    ServerError,
    Transient,
    VenueError,
)

# -- enums -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "enum", [OrderType, Side, TimeInForce, PositionAction, PositionSide, PositionMode, PriceType]
)
def test_enum_values_are_their_names_and_plain_strings(enum: type) -> None:
    for member in enum:  # type: ignore[attr-defined]
        assert member.value == member.name and str(member) == member.name and member == member.name
        assert enum(member.name) is member
    with pytest.raises(ValueError):
        enum("nonsense")


def test_order_type_is_limit() -> None:
    assert [t for t in OrderType if t.is_limit] == [OrderType.LIMIT, OrderType.LIMIT_MAKER]


def test_side_opposite() -> None:
    assert Side.BUY.opposite is Side.SELL and Side.SELL.opposite is Side.BUY
    assert all(s.opposite.opposite is s for s in Side)


# -- core errors -----------------------------------------------------------------------------------


def test_core_error_hierarchy() -> None:
    assert issubclass(ConfigError, MarketlinkError) and issubclass(ConfigError, ValueError)
    assert issubclass(InvalidTradingPair, MarketlinkError) and issubclass(InvalidTradingPair, ValueError)
    assert issubclass(UnknownSymbol, MarketlinkError) and issubclass(UnknownSymbol, KeyError)
    assert issubclass(RuleViolation, MarketlinkError)


def test_unknown_symbol_message_is_not_quoted_twice() -> None:
    err = UnknownSymbol("bybit", "FOOUSDT")
    assert str(err) == "bybit: unknown symbol 'FOOUSDT'"
    assert (err.venue, err.symbol) == ("bybit", "FOOUSDT")


def test_rule_violation_carries_the_numbers() -> None:
    err = RuleViolation("min_notional", D("4.99"), D("5"), "notional 4.99 < minimum 5")
    assert (err.rule, err.value, err.limit) == ("min_notional", D("4.99"), D("5"))
    assert str(err) == "notional 4.99 < minimum 5"


@pytest.mark.parametrize(
    "err",
    [
        ConfigError("bad config"),
        InvalidTradingPair("bad pair"),
        UnknownSymbol("binance", "XYZ"),
        RuleViolation("tick_size", D("1.001"), D("0.01"), "not a multiple"),
        RuleViolation("order_type", None, None, "market orders not supported"),
    ],
)
def test_core_errors_survive_pickling(err: MarketlinkError) -> None:
    # errors cross process boundaries (executors, multiprocessing): fields must come back intact
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err) and vars(back) == vars(err)


# -- venue errors ------------------------------------------------------------------------------------


def test_venue_error_string_names_venue_code_and_status() -> None:
    err = Rejected("Order would immediately match", code=-2010, status=400, venue="binance")
    assert str(err) == "binance Rejected [-2010] (HTTP 400): Order would immediately match"
    assert err.reason == "Order would immediately match"
    assert str(OrderNotFound()) == "OrderNotFound: " and OrderNotFound().args == ("OrderNotFound",)


def test_transient_family_means_outcome_unknown() -> None:
    for cls in (RequestTimeout, ConnectionFailed, ServerError):
        assert issubclass(cls, Transient)
    for cls in (RateLimited, IpBanned, ClockSkew, AuthError, OrderNotFound, InsufficientFunds,
                DuplicateOrder, Rejected, MalformedMessage):
        assert not issubclass(cls, Transient)
    assert issubclass(FilterRejected, Rejected)
    assert all(issubclass(getattr(net_errors, n), MarketlinkError) for n in net_errors.__all__)
    assert net_errors.RuleViolation is core_errors.RuleViolation  # re-exported, one class


def test_errors_carry_retry_and_ban_data() -> None:
    rl = RateLimited("too many", retry_after=2.5, code=-1003, status=429, venue="binance")
    assert (rl.retry_after, rl.code, rl.status, rl.venue) == (2.5, -1003, 429, "binance")
    ban = IpBanned("banned", retry_after=60.0, until=1_700_000_060.0, local=True, status=418)
    assert (ban.retry_after, ban.until, ban.local, ban.status) == (60.0, 1_700_000_060.0, True, 418)
    fr = FilterRejected("Filter failure: LOT_SIZE", rule="step_size", code=-1013)
    assert (fr.rule, fr.reason, fr.code) == ("step_size", "Filter failure: LOT_SIZE", -1013)


@pytest.mark.parametrize(
    "err",
    [
        VenueError("x", code="10001", status=200, venue="bybit"),
        RateLimited("slow down", retry_after=1.0, status=429),
        IpBanned("", until=5.0, local=True),
        FilterRejected("LOT_SIZE", rule="step_size", venue="binance"),
        Transient(),
    ],
)
def test_venue_errors_survive_pickling(err: VenueError) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err) and vars(back) == vars(err)
