"""Configuration of one sandbox process: where it listens, which markets, who may trade.

All of it is checked when the config is built, so a typo in an accounts file or a market name
fails at start with a message naming the field, never minutes later inside a request handler.
Money (balances, fee rates) is exact: files are decoded with every fractional number read as a
Decimal from its own digits, and a Python float handed to the API is refused with a hint to
quote it (it may already have lost digits).

Secrets (the demo API secret, HMAC secrets in accounts, the admin token) never appear in a
``repr``; the ``marketlink sandbox`` command prints the demo secret once, on purpose.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from marketlink.core.errors import ConfigError, InvalidTradingPair
from marketlink.core.pairs import TradingPair
from marketlink.sandbox.context import ApiCredential
from marketlink.sandbox.exchange import MarketSpec, money
from marketlink.sandbox.markets_default import DEFAULT_PAIRS, MarketSetup, demo_balance, market_setup

FLOW_MAKER = "flow-maker"
FLOW_TAKER = "flow-taker"
RESERVED_ACCOUNTS = frozenset({FLOW_MAKER, FLOW_TAKER})

_ASSET = re.compile(r"^[A-Z0-9][A-Z0-9._]{0,31}\Z")
# Keys travel in an HTTP header (X-MBX-APIKEY) and in WebSocket JSON: printable ASCII, no spaces.
_KEY = re.compile(r"^[\x21-\x7e]{1,256}\Z")
_ACCOUNT_FIELDS = frozenset({"name", "balances", "keys", "maker_fee", "taker_fee"})
_KEY_FIELDS = frozenset({"api_key", "secret", "ed25519_public_key", "can_trade", "expires_at_ms"})
_MIN_ADMIN_TOKEN = 8


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """A funded account with its API keys and optional fee rates (None: the markets' rates)."""

    name: str
    balances: Mapping[str, Decimal] = field(default_factory=dict)
    keys: tuple[ApiCredential, ...] = ()
    maker_fee: Decimal | None = None
    taker_fee: Decimal | None = None


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """How to run one sandbox. ``port=0`` lets the OS pick a free port (tests, the demo).

    ``api_key``/``api_secret`` fix the demo account's HMAC credentials (scripts can then use
    known keys); when both are None the server makes random ones. ``admin_token`` None keeps
    the admin routes off. ``market_overrides`` maps a pair to MarketSpec fields (strings for
    numbers) and/or ``initial_price``; ``venue_options`` is handed to front-ends as-is.
    """

    host: str = "127.0.0.1"
    port: int = 0
    markets: tuple[str, ...] = DEFAULT_PAIRS
    seed: int = 7
    flow: bool = True
    flow_rate: float = 1.0
    tick_seconds: float = 0.1
    api_key: str | None = None
    api_secret: str | None = field(default=None, repr=False)
    demo_account: str = "demo"
    demo_balances: Mapping[str, Decimal | str | int] | None = None
    accounts: tuple[AccountConfig, ...] = ()
    admin_token: str | None = field(default=None, repr=False)
    allow_remote: bool = False
    market_overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    venue_options: Mapping[str, object] = field(default_factory=dict)
    fault_hang_seconds: float = 30.0
    shutdown_timeout: float = 1.0

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host must not be empty")
        if not self.allow_remote and not is_loopback(self.host):
            raise ConfigError(
                f"refusing to listen on {self.host!r}: the sandbox prints its demo keys and its admin route "
                "can move its clock, so anyone who can reach it can trade on it and break it. "
                "Use a loopback address, or allow_remote (--allow-remote) if you really mean it."
            )
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be an int in 0..65535, got {self.port!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an int, got {self.seed!r}")
        _check_seconds("tick_seconds", self.tick_seconds, 60.0)
        _check_seconds("fault_hang_seconds", self.fault_hang_seconds, 3600.0)
        _check_seconds("shutdown_timeout", self.shutdown_timeout, 600.0)
        if not _finite_number(self.flow_rate) or not 0 <= self.flow_rate < 1000:
            raise ConfigError(f"flow_rate must be a number in [0, 1000), got {self.flow_rate!r}")
        object.__setattr__(self, "markets", _canonical_pairs(self.markets))
        if (self.api_key is None) != (self.api_secret is None):
            raise ConfigError("give both api_key and api_secret, or neither (random demo credentials)")
        if self.api_key is not None:
            _check_key(self.api_key, "api_key")
            if not self.api_secret:
                raise ConfigError("api_secret must not be empty")
        if self.admin_token is not None and (
            len(self.admin_token) < _MIN_ADMIN_TOKEN or not _KEY.match(self.admin_token)
        ):
            raise ConfigError(
                f"admin_token must be at least {_MIN_ADMIN_TOKEN} printable characters without spaces"
            )
        self._check_accounts()
        self.market_setups()  # every market and override must build
        self.initial_balances()

    def _check_accounts(self) -> None:
        names = {self.demo_account}
        if not self.demo_account or self.demo_account in RESERVED_ACCOUNTS:
            raise ConfigError(f"demo_account {self.demo_account!r} is empty or reserved for the market flow")
        keys = {self.api_key} if self.api_key else set()
        for acc in self.accounts:
            if not acc.name or acc.name in RESERVED_ACCOUNTS or acc.name in names:
                raise ConfigError(f"account name {acc.name!r} is empty, reserved or used twice")
            names.add(acc.name)
            for key in acc.keys:
                if key.api_key in keys:
                    raise ConfigError(f"account {acc.name!r}: API key {key.api_key!r} is used twice")
                keys.add(key.api_key)

    def market_setups(self) -> list[MarketSetup]:
        """The configured markets, overrides applied, in the order given."""
        setups = [market_setup(name) for name in self.markets]
        by_pair = {s.pair: s for s in setups}
        symbols: dict[str, str] = {}
        for s in setups:
            if s.symbol in symbols:
                raise ConfigError(f"markets {symbols[s.symbol]} and {s.pair} share the symbol {s.symbol}")
            symbols[s.symbol] = s.pair
        for name, override in self.market_overrides.items():
            pair = _canonical_pairs((name,))[0]
            if pair not in by_pair:
                raise ConfigError(f"market_overrides: {name!r} is not one of the configured markets")
            by_pair[pair] = _override(by_pair[pair], override)
        return [by_pair[s.pair] for s in setups]

    def initial_balances(self) -> dict[str, Decimal]:
        """The demo account's starting balances: as configured, else a default for every asset
        of the configured markets."""
        if self.demo_balances is not None:
            return {
                _asset(asset, "demo_balances"): _amount(value, f"demo_balances.{asset}")
                for asset, value in self.demo_balances.items()
            }
        assets: dict[str, None] = {}
        for setup in self.market_setups():
            assets[setup.spec.base] = None
            assets[setup.spec.quote] = None
        return {asset: demo_balance(asset) for asset in assets}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; any other name may resolve elsewhere."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_market_list(text: str) -> tuple[str, ...]:
    """``"BTC-USDT, eth-usdt"`` -> ``("BTC-USDT", "ETH-USDT")``; ConfigError on a bad name."""
    names = tuple(part for part in (p.strip() for p in text.split(",")) if part)
    return _canonical_pairs(names)


# -- accounts files ---------------------------------------------------------------------------------


def load_accounts(path: Path | str) -> tuple[AccountConfig, ...]:
    """Read an accounts file (``.toml`` or ``.json``): a list ``accounts`` of tables with
    ``name``, ``balances`` (asset -> amount string), optional ``maker_fee``/``taker_fee`` and
    ``keys`` (``api_key`` plus either an HMAC ``secret`` or an ``ed25519_public_key`` PEM)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read accounts file {p}: {exc}") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            data: object = tomllib.loads(text, parse_float=_file_number)
        elif suffix == ".json":
            data = json.loads(text, parse_float=_file_number, parse_constant=_file_number)
        else:
            raise ConfigError("use a .toml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"accounts file {p} is not valid {suffix[1:].upper()}: {exc}") from None
    except ConfigError as exc:  # a number the decoder's hook refused
        raise ConfigError(f"accounts file {p}: {exc}") from None
    return parse_accounts(data, str(p))


def parse_accounts(data: object, source: str = "accounts") -> tuple[AccountConfig, ...]:
    """Validate already-decoded accounts data; every error names ``source`` and the field."""
    if not isinstance(data, Mapping) or set(data) != {"accounts"}:
        raise ConfigError(f"{source}: expected exactly one top-level key, 'accounts' (a list of tables)")
    items = data["accounts"]
    if not isinstance(items, list):
        raise ConfigError(f"{source}: 'accounts' must be a list of tables")
    accounts = tuple(_account(item, f"{source}: accounts[{i}]") for i, item in enumerate(items))
    seen: set[str] = set()
    for acc in accounts:
        if acc.name in seen:
            raise ConfigError(f"{source}: account {acc.name!r} is defined twice")
        seen.add(acc.name)
    return accounts


def _account(item: object, where: str) -> AccountConfig:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be a table")
    _no_unknown(item, _ACCOUNT_FIELDS, where)
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name: a non-empty string is required")
    where = f"{where} ({name})"
    if name in RESERVED_ACCOUNTS:
        raise ConfigError(f"{where}.name: {name!r} is reserved for the market flow")
    raw_balances = item.get("balances", {})
    if not isinstance(raw_balances, Mapping):
        raise ConfigError(f"{where}.balances: must be a table of asset = amount")
    balances = {
        _asset(asset, f"{where}.balances"): _amount(value, f"{where}.balances.{asset}")
        for asset, value in raw_balances.items()
    }
    raw_keys = item.get("keys", [])
    if not isinstance(raw_keys, list):
        raise ConfigError(f"{where}.keys: must be a list of tables")
    keys = tuple(_key(k, name, f"{where}.keys[{i}]") for i, k in enumerate(raw_keys))
    fees = [_fee(item.get(f), f"{where}.{f}") for f in ("maker_fee", "taker_fee")]
    return AccountConfig(name, balances, keys, fees[0], fees[1])


def _key(item: object, account: str, where: str) -> ApiCredential:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be a table")
    _no_unknown(item, _KEY_FIELDS, where)
    api_key = item.get("api_key")
    if not isinstance(api_key, str):
        raise ConfigError(f"{where}.api_key: a string is required")
    _check_key(api_key, f"{where}.api_key")
    secret, pem = item.get("secret"), item.get("ed25519_public_key")
    if (secret is None) == (pem is None):
        raise ConfigError(f"{where}: give exactly one of 'secret' (HMAC) and 'ed25519_public_key' (PEM)")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise ConfigError(f"{where}.secret: a non-empty string is required")
    if pem is not None:
        _check_ed25519_pem(pem, f"{where}.ed25519_public_key")
    can_trade = item.get("can_trade", True)
    if not isinstance(can_trade, bool):
        raise ConfigError(f"{where}.can_trade: must be true or false")
    expires = item.get("expires_at_ms")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int) or expires < 0):
        raise ConfigError(f"{where}.expires_at_ms: epoch milliseconds (an int >= 0) or absent")
    return ApiCredential(
        api_key=api_key,
        account=account,
        secret=secret if isinstance(secret, str) else None,
        ed25519_public_key_pem=pem if isinstance(pem, str) else None,
        can_trade=can_trade,
        expires_at_ms=expires,
    )


def _check_ed25519_pem(pem: object, where: str) -> None:
    if not isinstance(pem, str):
        raise ConfigError(f"{where}: a PEM string is required")
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{where}: the PEM holds a {type(key).__name__}, not an Ed25519 public key")


def _fee(value: object, where: str) -> Decimal | None:
    if value is None:
        return None
    rate = _amount(value, where)
    if rate >= 1:
        raise ConfigError(f"{where}: a fee is a rate below 1 (0.001 = 0.1%), got {rate}")
    return rate


def _amount(value: object, where: str) -> Decimal:
    """A non-negative exact amount from a string or an int."""
    if isinstance(value, float):
        raise ConfigError(f"{where}: write amounts as strings (\"{value}\"); a float may have lost digits")
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ConfigError(f"{where}: an amount string is required, got {value!r}")
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise ConfigError(f"{where}: not a number: {value!r}") from None
    if not money.in_range(amount) or amount < 0:
        raise ConfigError(f"{where}: must be a finite, non-negative amount of sane size, got {value!r}")
    return amount


def _asset(asset: object, where: str) -> str:
    if not isinstance(asset, str) or not _ASSET.match(asset):
        raise ConfigError(f"{where}: {asset!r} is not an asset name (upper case, like BTC or USDT)")
    return asset


def _check_key(api_key: str, where: str) -> None:
    if not _KEY.match(api_key):
        raise ConfigError(f"{where}: API keys are 1-256 printable ASCII characters without spaces")


def _no_unknown(item: Mapping[object, object], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in item if k not in allowed)
    if unknown:
        allowed_text = ", ".join(sorted(allowed))
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {allowed_text})")


def _file_number(text: str) -> Decimal:
    """A fractional number in a file keeps its digits as a Decimal; NaN and infinities are refused."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigError(f"not a number: {text}") from None
    if not value.is_finite():
        raise ConfigError(f"not a finite number: {text}")
    return value


# -- markets ------------------------------------------------------------------------------------------


def _canonical_pairs(names: object) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, tuple | list):
        raise ConfigError("markets must be a sequence of BASE-QUOTE names")
    out: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(f"markets: {name!r} is not a BASE-QUOTE name")
        try:
            pair = str(TradingPair.parse(name))
        except InvalidTradingPair as exc:
            raise ConfigError(f"markets: {exc}") from None
        if pair in out:
            raise ConfigError(f"markets: {pair} is listed twice")
        out.append(pair)
    if not out:
        raise ConfigError("markets: at least one market is required")
    return tuple(out)


def _override(setup: MarketSetup, override: Mapping[str, object]) -> MarketSetup:
    raw: dict[str, object] = {f.name: getattr(setup.spec, f.name) for f in fields(setup.spec)}
    price = setup.initial_price
    for key, value in override.items():
        if key == "initial_price":
            price = _amount(value, f"market_overrides.{setup.pair}.initial_price")
            if price <= 0:
                raise ConfigError(f"market_overrides.{setup.pair}.initial_price must be positive")
        elif key in ("symbol", "base", "quote") or key not in raw:
            raise ConfigError(f"market_overrides.{setup.pair}: cannot set {key!r}")
        else:
            raw[key] = value
    return MarketSetup(setup.pair, MarketSpec.from_config(raw), price)


def _finite_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _check_seconds(name: str, value: float, most: float) -> None:
    if not _finite_number(value) or not 0 < value <= most:
        raise ConfigError(f"{name} must be a number of seconds in (0, {most}], got {value!r}")
