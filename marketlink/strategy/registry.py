"""Built-in strategies by name, each with the dataclass its ``parameters`` are validated against.

A strategy's parameters are a frozen dataclass with two methods the config loader relies on:
``markets()`` (the (connector, pair) it trades, checked against the configured connectors) and
``problems()`` ((field, why) for values out of range). The registry is data, so a strategy
outside marketlink registers itself with one call and is then usable from YAML.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from typing import Any, Protocol

from marketlink.core.errors import ConfigError
from marketlink.strategy.api import Strategy
from marketlink.strategy.pure_market_making import PureMarketMaking, PureMarketMakingConfig
from marketlink.strategy.taker import PeriodicTaker, PeriodicTakerConfig

__all__ = ["REGISTRY", "StrategyEntry", "StrategyParams", "StrategyRegistry"]


class StrategyParams(Protocol):
    def markets(self) -> list[tuple[str, str]]: ...

    def problems(self) -> list[tuple[str, str]]: ...


@dataclass(frozen=True, slots=True)
class StrategyEntry:
    name: str
    params: type[Any]  # a dataclass satisfying StrategyParams
    factory: Callable[[Any], Strategy]
    summary: str


class StrategyRegistry:
    def __init__(self) -> None:
        self._entries: dict[str, StrategyEntry] = {}

    def register(
        self, name: str, params: type[Any], factory: Callable[[Any], Strategy], summary: str = ""
    ) -> None:
        if not is_dataclass(params):
            raise ConfigError(f"strategy {name!r}: parameters must be a dataclass, got {params!r}")
        if name in self._entries:
            raise ConfigError(f"strategy {name!r} is registered already")
        self._entries[name] = StrategyEntry(name, params, factory, summary)

    def lookup(self, name: str) -> StrategyEntry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise ConfigError(f"unknown strategy {name!r} (known strategies: {known})") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))


REGISTRY = StrategyRegistry()
REGISTRY.register(
    "pure_market_making", PureMarketMakingConfig, PureMarketMaking,
    "maker quotes on both sides of a reference price, refreshed on a timer",
)
REGISTRY.register(
    "periodic_taker", PeriodicTakerConfig, PeriodicTaker,
    "a market order of a fixed size at a fixed interval",
)
