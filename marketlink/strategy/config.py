"""Strategy configuration files: YAML in, a validated ``StrategyConfig`` out, or one clear error.

```yaml
strategy: pure_market_making
connectors:
  binance:                      # the name the strategy uses; the venue defaults to it
    venue: binance
    domain: com
    trading_pairs: [BTC-USDT]
runner:                         # optional
  tick_interval: 1.0
  max_consecutive_errors: 10
  cancel_timeout: 10
  start_with_uncancelled_orders: false
parameters:                     # the strategy's own, checked against its dataclass
  connector: binance
  trading_pair: BTC-USDT
  bid_spread: 0.1
  ...
```

Numbers with a decimal point are read as ``Decimal`` straight from the file's digits (the YAML
loader never builds a float), so ``0.1`` is exactly 0.1. Every error is a ``StrategyConfigError``
whose ``kind`` says which class of mistake it is (``unknown_key``, ``wrong_type``,
``missing_key``, ``bad_value``, ``missing_market``, ``unknown_strategy``, ``syntax``) and whose
``path`` says where (``parameters.bid_spread``); unknown keys suggest the nearest known one.
Keys and secrets never live here: the CLI reads them from the key store.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from marketlink.core.errors import ConfigError, InvalidTradingPair
from marketlink.core.pairs import TradingPair
from marketlink.strategy.api import MarketConnector, Strategy
from marketlink.strategy.registry import REGISTRY, StrategyRegistry
from marketlink.strategy.runner import StrategyRunner

__all__ = [
    "ConnectorSettings",
    "RunnerSettings",
    "StrategyConfig",
    "StrategyConfigError",
    "build_runner",
    "load_config",
    "parse_config",
]


class StrategyConfigError(ConfigError):
    def __init__(self, kind: str, path: str, message: str) -> None:
        self.kind = kind
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class _DecimalLoader(yaml.SafeLoader):
    """Safe YAML, with floats kept as the exact Decimal their digits say."""


def _decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    lowered = text.lower()
    if lowered in (".inf", "+.inf", "-.inf", ".nan"):
        return Decimal(lowered.replace(".", ""))  # non-finite: refused by the value checks
    return Decimal(text)


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _decimal)


@dataclass(frozen=True, slots=True)
class ConnectorSettings:
    venue: str
    trading_pairs: tuple[str, ...]
    domain: str = "com"


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    tick_interval: float = 1.0
    max_consecutive_errors: int = 0
    cancel_timeout: float = 10.0
    #: ``marketlink run`` cancels the orders a bot's last run left open before the strategy
    #: starts; one that cannot be confirmed cancelled stops the session unless this is true.
    start_with_uncancelled_orders: bool = False

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not 0 < self.tick_interval < float("inf"):
            out.append(("tick_interval", "must be > 0 seconds"))
        if self.max_consecutive_errors < 0:
            out.append(("max_consecutive_errors", "must be >= 0 (0: never stop for errors)"))
        if not 0 <= self.cancel_timeout < float("inf"):
            out.append(("cancel_timeout", "must be >= 0 seconds"))
        return out


@dataclass(frozen=True, slots=True)
class StrategyConfig:
    strategy: str
    connectors: Mapping[str, ConnectorSettings]
    parameters: Any  # the strategy's parameter dataclass
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    source: str = "<string>"

    def create_strategy(self, registry: StrategyRegistry = REGISTRY) -> Strategy:
        return registry.lookup(self.strategy).factory(self.parameters)


_TOP_KEYS = ("strategy", "connectors", "runner", "parameters")


def load_config(path: str | Path, registry: StrategyRegistry = REGISTRY) -> StrategyConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise StrategyConfigError("syntax", "", f"cannot read {p}: {exc.strerror or exc}") from None
    return parse_config(text, registry, source=str(p))


def parse_config(
    text: str, registry: StrategyRegistry = REGISTRY, *, source: str = "<string>"
) -> StrategyConfig:
    try:
        doc = yaml.load(text, Loader=_DecimalLoader)
    except (yaml.YAMLError, InvalidOperation) as exc:
        raise StrategyConfigError("syntax", "", f"{source} is not valid YAML: {exc}") from None
    top = _mapping(doc, "")
    _no_unknown(top, _TOP_KEYS, "")
    for key in ("strategy", "connectors", "parameters"):
        if key not in top:
            raise StrategyConfigError("missing_key", key, "missing")
    name = top["strategy"]
    if not isinstance(name, str):
        raise StrategyConfigError("wrong_type", "strategy", f"expected a strategy name, got {_show(name)}")
    try:
        entry = registry.lookup(name)
    except ConfigError as exc:
        raise StrategyConfigError("unknown_strategy", "strategy", str(exc)) from None
    connectors = _connectors(top["connectors"])
    runner = _dataclass(RunnerSettings, top.get("runner") or {}, "runner")
    params = _dataclass(entry.params, top["parameters"], "parameters")
    for conn_name, pair in params.markets():
        settings = connectors.get(conn_name)
        if settings is None:
            raise StrategyConfigError(
                "missing_market", "parameters.connector",
                f"connector {conn_name!r} is not configured (connectors: {', '.join(connectors)})",
            )
        if pair not in settings.trading_pairs:
            raise StrategyConfigError(
                "missing_market", "parameters.trading_pair",
                f"{pair} is not among the trading pairs of connector {conn_name!r} "
                f"({', '.join(settings.trading_pairs)})",
            )
    return StrategyConfig(name, connectors, params, runner, source)


def build_runner(
    config: StrategyConfig,
    connectors: Mapping[str, MarketConnector],
    *,
    registry: StrategyRegistry = REGISTRY,
    **runner_options: Any,
) -> StrategyRunner:
    """The runner for ``config`` over started connectors keyed by the config's connector names
    (``runner_options``, e.g. a clock, are passed on)."""
    missing = [n for n in config.connectors if n not in connectors]
    if missing:
        raise ConfigError(f"no connector given for: {', '.join(missing)}")
    r = config.runner
    return StrategyRunner(
        config.create_strategy(registry), {n: connectors[n] for n in config.connectors},
        tick_interval=r.tick_interval, max_consecutive_errors=r.max_consecutive_errors,
        cancel_timeout=r.cancel_timeout, **runner_options,
    )


# -- validation ------------------------------------------------------------------------------------


def _connectors(raw: object) -> dict[str, ConnectorSettings]:
    table = _mapping(raw, "connectors")
    if not table:
        raise StrategyConfigError("missing_key", "connectors", "at least one connector is needed")
    out: dict[str, ConnectorSettings] = {}
    for name, body in table.items():
        path = f"connectors.{name}"
        if not isinstance(name, str) or not name:
            why = f"a connector name must be a string: {name!r}"
            raise StrategyConfigError("wrong_type", "connectors", why)
        fields = dict(_mapping(body, path))
        fields.setdefault("venue", name)
        settings = _dataclass(ConnectorSettings, fields, path)
        pairs: list[str] = []
        for i, pair in enumerate(settings.trading_pairs):
            try:
                pairs.append(str(TradingPair.parse(pair)))
            except InvalidTradingPair as exc:
                raise StrategyConfigError("bad_value", f"{path}.trading_pairs[{i}]", str(exc)) from None
        if not pairs:
            raise StrategyConfigError("bad_value", f"{path}.trading_pairs", "at least one pair is needed")
        out[name] = dataclasses.replace(settings, trading_pairs=tuple(pairs))
    return out


def _dataclass(cls: type[Any], raw: object, path: str) -> Any:
    values = _mapping(raw, path)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _no_unknown(values, tuple(fields), path)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        where = f"{path}.{name}"
        if name not in values:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise StrategyConfigError("missing_key", where, "missing")
            continue
        kwargs[name] = _convert(values[name], hints[name], where)
    obj = cls(**kwargs)
    problems = getattr(obj, "problems", None)
    if problems is not None:
        for name, why in problems():
            got = _show(getattr(obj, name))
            raise StrategyConfigError("bad_value", f"{path}.{name}", f"{why} (got {got})")
    return obj


def _convert(value: object, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise StrategyConfigError("wrong_type", where, f"expected a list, got {_show(value)}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum(value, hint, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise StrategyConfigError("wrong_type", where, f"expected true or false, got {_show(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise StrategyConfigError("wrong_type", where, f"expected a string, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise StrategyConfigError("wrong_type", where, f"expected a whole number, got {_show(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | Decimal) or not Decimal(value).is_finite():
            why = f"expected a number of seconds, got {_show(value)}"
            raise StrategyConfigError("wrong_type", where, why)
        return float(value)
    if hint is Decimal:
        return _to_decimal(value, where)
    raise StrategyConfigError("wrong_type", where, f"unsupported field type {hint!r}")  # pragma: no cover


def _to_decimal(value: object, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise StrategyConfigError("wrong_type", where, f"expected a decimal number, got {_show(value)}")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        why = f"expected a decimal number, got {_show(value)}"
        raise StrategyConfigError("wrong_type", where, why) from None
    if not number.is_finite():
        raise StrategyConfigError("bad_value", where, f"must be a finite number, got {value}")
    return number


def _enum(value: object, kind: type[Enum], where: str) -> Enum:
    choices = [str(m.value) for m in kind]
    if isinstance(value, str):
        for member in kind:
            if str(member.value).lower() == value.lower() or member.name.lower() == value.lower():
                return member
    raise StrategyConfigError("bad_value", where, f"expected one of {', '.join(choices)}, got {_show(value)}")


def _mapping(value: object, path: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise StrategyConfigError("wrong_type", path, f"expected a mapping of keys, got {_show(value)}")
    return value


def _no_unknown(values: Mapping[Any, Any], known: tuple[str, ...], path: str) -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"
            where = f"{path}.{key}" if path else str(key)
            raise StrategyConfigError("unknown_key", where, f"unknown key{hint}")


def _show(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict | list):
        return f"a {type(value).__name__}"
    return repr(value)
