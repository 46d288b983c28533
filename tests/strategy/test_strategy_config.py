"""YAML strategy configs: the example parses; each class of mistake gets its own typed error with
the path of the offending key; numbers are exact Decimals; the runner is built from the config."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from strategy_fakes import FakeConnector

from marketlink.core.enums import Side
from marketlink.core.errors import ConfigError
from marketlink.net.clock import VirtualClock
from marketlink.strategy.api import Strategy
from marketlink.strategy.config import StrategyConfigError, build_runner, load_config, parse_config
from marketlink.strategy.pmm_proposal import PriceSource
from marketlink.strategy.pure_market_making import PureMarketMaking
from marketlink.strategy.registry import REGISTRY, StrategyRegistry
from marketlink.strategy.taker import PeriodicTakerConfig

D = Decimal
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "strategy_example.yml"

GOOD = """
strategy: pure_market_making
connectors:
  binance:
    trading_pairs: [btc-usdt]
parameters:
  connector: binance
  trading_pair: BTC-USDT
  bid_spread: 0.1
  ask_spread: "0.2"
  order_amount: 1
  order_refresh_time: 5
  minimum_spread: null
  price_source: BEST
"""


def test_the_example_file_parses_into_exact_values() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.strategy == "pure_market_making" and cfg.source == str(EXAMPLE)
    p = cfg.parameters
    assert p.bid_spread == D("0.1") and str(p.order_level_amount) == "0.0005"
    assert p.order_levels == 2 and p.hanging_orders_enabled is True and p.price_source is PriceSource.MID
    assert cfg.runner.max_consecutive_errors == 10 and cfg.runner.tick_interval == 1.0
    assert cfg.connectors["binance"].trading_pairs == ("BTC-USDT",)
    assert isinstance(cfg.create_strategy(), PureMarketMaking)


def test_defaults_types_and_canonical_pairs() -> None:
    cfg = parse_config(GOOD)
    assert cfg.connectors["binance"].venue == "binance" and cfg.connectors["binance"].domain == "com"
    assert cfg.connectors["binance"].trading_pairs == ("BTC-USDT",)
    p = cfg.parameters
    assert (p.bid_spread, p.ask_spread, p.order_amount) == (D("0.1"), D("0.2"), D("1"))
    assert isinstance(p.bid_spread, Decimal) and p.order_refresh_time == 5.0
    assert p.minimum_spread is None and p.price_source is PriceSource.BEST
    assert cfg.runner.tick_interval == 1.0


@pytest.mark.parametrize(
    ("text", "kind", "path"),
    [
        (GOOD.replace("bid_spread:", "bid_sprd:"), "unknown_key", "parameters.bid_sprd"),
        (GOOD + "extra: 1\n", "unknown_key", "extra"),
        (GOOD.replace("trading_pairs:", "domain: com\n    pairs:"), "unknown_key",
         "connectors.binance.pairs"),
        (GOOD.replace("order_amount: 1", "order_amount: [1]"), "wrong_type", "parameters.order_amount"),
        (GOOD.replace("order_amount: 1", "order_amount: abc"), "wrong_type", "parameters.order_amount"),
        (GOOD.replace("order_amount: 1", "order_amount: true"), "wrong_type", "parameters.order_amount"),
        (GOOD.replace("order_refresh_time: 5", "order_refresh_time: soon"), "wrong_type",
         "parameters.order_refresh_time"),
        (GOOD + "  order_levels: 2.5\n", "wrong_type", "parameters.order_levels"),
        (GOOD + "  hanging_orders_enabled: 1\n", "wrong_type", "parameters.hanging_orders_enabled"),
        (GOOD.replace("connector: binance", "connector: 7"), "wrong_type", "parameters.connector"),
        (GOOD.replace("[btc-usdt]", "btc-usdt"), "wrong_type", "connectors.binance.trading_pairs"),
        (GOOD + "runner: 3\n", "wrong_type", "runner"),
        (GOOD.replace("strategy: pure_market_making", "strategy: [x]"), "wrong_type", "strategy"),
        (GOOD.replace("  bid_spread: 0.1\n", ""), "missing_key", "parameters.bid_spread"),
        ("strategy: pure_market_making\nconnectors: {a: {trading_pairs: [A-B]}}\n", "missing_key",
         "parameters"),
        (GOOD.replace("connector: binance", "connector: kraken"), "missing_market", "parameters.connector"),
        (GOOD.replace("trading_pair: BTC-USDT", "trading_pair: ETH-USDT"), "missing_market",
         "parameters.trading_pair"),
        (GOOD.replace("order_amount: 1", "order_amount: -1"), "bad_value", "parameters.order_amount"),
        (GOOD.replace("order_amount: 1", "order_amount: .nan"), "bad_value", "parameters.order_amount"),
        (GOOD.replace("price_source: BEST", "price_source: vwap"), "bad_value", "parameters.price_source"),
        (GOOD.replace("[btc-usdt]", "[btcusdt]"), "bad_value", "connectors.binance.trading_pairs[0]"),
        (GOOD.replace("[btc-usdt]", "[]"), "bad_value", "connectors.binance.trading_pairs"),
        (GOOD + "runner: {tick_interval: 0}\n", "bad_value", "runner.tick_interval"),
        (GOOD.replace("strategy: pure_market_making", "strategy: pmm"), "unknown_strategy", "strategy"),
        ("strategy: [unclosed\n", "syntax", ""),
        ("- a list\n", "wrong_type", ""),
        ("strategy: pure_market_making\nconnectors: {}\nparameters: {}\n", "missing_key", "connectors"),
    ],
)
def test_each_mistake_gets_its_kind_and_path(text: str, kind: str, path: str) -> None:
    with pytest.raises(StrategyConfigError) as info:
        parse_config(text)
    assert (info.value.kind, info.value.path) == (kind, path), str(info.value)
    assert isinstance(info.value, ConfigError)


def test_messages_are_helpful() -> None:
    typo = r"parameters.bid_sprd: unknown key \(did you mean 'bid_spread'\?\)"
    with pytest.raises(StrategyConfigError, match=typo):
        parse_config(GOOD.replace("bid_spread:", "bid_sprd:"))
    missing = r"connector 'kraken' is not configured \(connectors: binance\)"
    with pytest.raises(StrategyConfigError, match=missing):
        parse_config(GOOD.replace("connector: binance", "connector: kraken"))
    with pytest.raises(StrategyConfigError, match="known strategies: periodic_taker, pure_market_making"):
        parse_config(GOOD.replace("strategy: pure_market_making", "strategy: pmm"))
    with pytest.raises(StrategyConfigError, match="cannot read"):
        load_config("/nonexistent/strategy.yml")


def test_taker_config_and_enum_by_value() -> None:
    text = """
strategy: periodic_taker
connectors:
  maker: {venue: binance, trading_pairs: [ETH-USDT]}
parameters: {connector: maker, trading_pair: ETH-USDT, side: buy, order_amount: 0.01, interval: 2.5}
"""
    cfg = parse_config(text)
    assert cfg.parameters == PeriodicTakerConfig("maker", "ETH-USDT", Side.BUY, D("0.01"), 2.5, 0)
    assert cfg.connectors["maker"].venue == "binance"


async def test_build_runner_uses_the_runner_settings_and_named_connectors() -> None:
    cfg = parse_config(GOOD + "runner: {tick_interval: 0.5, max_consecutive_errors: 3, cancel_timeout: 2}\n")
    clock = VirtualClock()
    runner = build_runner(cfg, {"binance": FakeConnector("binance")}, clock=clock)
    assert (runner.tick_interval, runner.max_consecutive_errors, runner.cancel_timeout) == (0.5, 3, 2.0)
    assert runner.clock is clock and runner.ctx.connector_names == ("binance",)
    with pytest.raises(ConfigError, match="no connector given for: binance"):
        build_runner(cfg, {})


def test_registry_refuses_duplicates_and_non_dataclasses() -> None:
    reg = StrategyRegistry()
    reg.register("taker", PeriodicTakerConfig, lambda p: Strategy())
    with pytest.raises(ConfigError, match="registered already"):
        reg.register("taker", PeriodicTakerConfig, lambda p: Strategy())
    with pytest.raises(ConfigError, match="must be a dataclass"):
        reg.register("bad", dict, lambda p: Strategy())
    assert reg.names() == ("taker",) and "pure_market_making" in REGISTRY.names()
