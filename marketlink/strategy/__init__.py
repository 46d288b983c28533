"""Strategies: the API a strategy is written against, the runner that drives it, YAML
configuration, and the built-in strategies (docs/strategies.md)."""

from marketlink.strategy.api import MarketConnector, PairPnL, Strategy, StrategyContext, StrategyEvent
from marketlink.strategy.config import (
    StrategyConfig,
    StrategyConfigError,
    build_runner,
    load_config,
    parse_config,
)
from marketlink.strategy.pmm_proposal import PriceSource
from marketlink.strategy.pure_market_making import PureMarketMaking, PureMarketMakingConfig
from marketlink.strategy.registry import REGISTRY, StrategyRegistry
from marketlink.strategy.runner import RunnerState, RunnerStatus, StrategyRunner
from marketlink.strategy.taker import PeriodicTaker, PeriodicTakerConfig

__all__ = [
    "REGISTRY",
    "MarketConnector",
    "PairPnL",
    "PeriodicTaker",
    "PeriodicTakerConfig",
    "PriceSource",
    "PureMarketMaking",
    "PureMarketMakingConfig",
    "RunnerState",
    "RunnerStatus",
    "Strategy",
    "StrategyConfig",
    "StrategyConfigError",
    "StrategyContext",
    "StrategyEvent",
    "StrategyRegistry",
    "StrategyRunner",
    "build_runner",
    "load_config",
    "parse_config",
]
