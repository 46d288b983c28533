"""Binance's error answers: a code, a message, an HTTP status (BSD ``errors.md``).

Every refusal of the front-end is a ``BinanceError`` raised where the problem is found; the REST
and WebSocket API layers render it (``{"code":-1121,"msg":"Invalid symbol."}`` or the WS-API
``error`` object) and never build error text themselves. The engine's venue-neutral refusals are
mapped here by their ``reason``, never by their message.
"""

from __future__ import annotations

from typing import Literal

from marketlink.sandbox.exchange import ExchangeRejection, Reason
from marketlink.sandbox.venues.binance.limits import LimitType, RateLimit

DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
LONG_RANGE = r"^[0-9]{1,20}$"
# Spot's own -1100 text for a client order id (binance-spot-api-docs PR #34; fix-api.md states the
# same rule); the ".:/" alphabet is USD-M futures', not spot's.
CLIENT_ID_RANGE = r"^[a-zA-Z0-9-_]{1,36}$"
SYMBOL_RANGE = r"^[A-Z0-9-_.]{1,20}$"


class BinanceError(Exception):
    def __init__(
        self,
        code: int,
        msg: str,
        *,
        status: int = 400,
        retry_after_s: int | None = None,
        data: dict[str, object] | None = None,
    ) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.retry_after_s = retry_after_s
        self.data = data

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg}


# -- request problems (11xx) -----------------------------------------------------------------------


def illegal_chars(name: str, legal: str) -> BinanceError:
    return BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


def duplicate_param(name: str) -> BinanceError:
    return BinanceError(-1101, f"Duplicate values for a parameter detected: '{name}'.")


def bad_combination() -> BinanceError:
    return BinanceError(-1128, "Combination of optional parameters invalid.")


def mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def one_of(a: str, b: str) -> BinanceError:
    return BinanceError(-1102, f"Param '{a}' or '{b}' must be sent, but both were empty/null!")


def too_large(name: str, limit: int) -> BinanceError:
    return BinanceError(-1102, f"'{name}' contains unexpected value. Cannot be greater than '{limit}'.")


def unread(read: int, sent: int) -> BinanceError:
    return BinanceError(
        -1104, f"Not all sent parameters were read; read '{read}' parameter(s) but was sent '{sent}'."
    )


def not_required(name: str) -> BinanceError:
    return BinanceError(-1106, f"Parameter '{name}' sent when not required.")


def bad_precision(name: str) -> BinanceError:
    return BinanceError(-1111, f"Parameter '{name}' has too much precision.")


def bad_symbol() -> BinanceError:
    return BinanceError(-1121, "Invalid symbol.")


def invalid_listen_key() -> BinanceError:
    return BinanceError(-1125, "This listenKey does not exist.")


def invalid_json(detail: str) -> BinanceError:
    return BinanceError(-1135, f"Invalid JSON request: {detail}")


def internal() -> BinanceError:
    return BinanceError(-1000, "An unknown error occurred while processing the request.", status=500)


def unsupported(what: str) -> BinanceError:
    return BinanceError(-1020, f"This operation is not supported: {what}.")


# -- authentication and timing ---------------------------------------------------------------------


def bad_api_key_format() -> BinanceError:
    return BinanceError(-2014, "API-key format invalid.", status=401)


def rejected_key() -> BinanceError:
    return BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", status=401)


def bad_signature() -> BinanceError:
    return BinanceError(-1022, "Signature for this request is not valid.")


def outside_recv_window() -> BinanceError:
    return BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")


def ahead_of_server(tolerance_ms: int) -> BinanceError:
    return BinanceError(-1021, f"Timestamp for this request was {tolerance_ms}ms ahead of the server's time.")


# -- rate limits -----------------------------------------------------------------------------------


def too_much_weight(limit: RateLimit, retry_after_s: int, server_ms: int) -> BinanceError:
    if limit.kind is LimitType.RAW_REQUESTS:
        msg = f"Too many requests; current limit is {limit.limit} requests per {limit.per}."
    else:
        msg = (
            f"Too much request weight used; current limit is {limit.limit} request weight per {limit.per}. "
            "Please use WebSocket Streams for live updates to avoid polling the API."
        )
    return BinanceError(
        -1003, msg, status=429, retry_after_s=retry_after_s,
        data={"serverTime": server_ms, "retryAfter": server_ms + retry_after_s * 1000},
    )


def banned(until_ms: int, retry_after_s: int, server_ms: int) -> BinanceError:
    return BinanceError(
        -1003,
        f"Way too much request weight used; IP banned until {until_ms}. "
        "Please use WebSocket Streams for live updates to avoid bans.",
        status=418, retry_after_s=retry_after_s, data={"serverTime": server_ms, "retryAfter": until_ms},
    )


def too_many_orders(limit: RateLimit, retry_after_s: int, server_ms: int) -> BinanceError:
    return BinanceError(
        -1015, f"Too many new orders; current limit is {limit.limit} orders per {limit.per}.",
        status=429, retry_after_s=retry_after_s,
        data={"serverTime": server_ms, "retryAfter": server_ms + retry_after_s * 1000},
    )


# -- the engine's refusals -------------------------------------------------------------------------

Action = Literal["place", "cancel", "query"]

_NEW_ORDER_MESSAGES = {
    Reason.INSUFFICIENT_BALANCE: "Account has insufficient balance for requested action.",
    Reason.DUPLICATE_ORDER: "Duplicate order sent.",
    Reason.WOULD_TAKE: "Order would immediately match and take.",
    Reason.STP_MODE_NOT_ALLOWED: "Self-trade prevention mode is not allowed for this symbol.",
}


def from_rejection(exc: ExchangeRejection, action: Action) -> BinanceError:
    """The Binance answer to an engine refusal during ``action``."""
    reason = exc.reason
    if reason is Reason.UNKNOWN_SYMBOL:
        return bad_symbol()
    if reason is Reason.UNKNOWN_ACCOUNT:
        return rejected_key()
    if reason is Reason.FILTER_FAILURE:
        name = exc.filter.value if exc.filter is not None else "UNKNOWN"
        return BinanceError(-1013, f"Filter failure: {name}")
    if reason is Reason.ORDER_NOT_FOUND:
        if action == "cancel":
            return BinanceError(-2011, "Unknown order sent.")
        return BinanceError(-2013, "Order does not exist.")
    message = _NEW_ORDER_MESSAGES.get(reason)
    if message is not None:
        return BinanceError(-2010, message)
    return BinanceError(-1013, exc.message)  # INVALID_PARAMETER: the request never reached matching
