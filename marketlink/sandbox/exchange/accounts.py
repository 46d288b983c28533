"""Accounts: free and locked balance per asset, commission collected, and what changed.

Money only moves between named places (an account's free, its locked, the fee pot, or in and
out through ``deposit``), so the sum of every asset over all accounts plus fees always equals
what was deposited: the conservation law the tests check under random order sequences. A
movement that would drive any place negative is an engine bug and raises instead of
happening; a client asking for more than it has gets ``INSUFFICIENT_BALANCE`` before anything
moves.

The ledger remembers which (account, asset) pairs changed during an operation, so the engine
can emit one balance event per account per operation, as Binance's account position does.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from marketlink.sandbox.exchange import money
from marketlink.sandbox.exchange.errors import ExchangeRejection, Reason
from marketlink.sandbox.exchange.events import AssetBalance
from marketlink.sandbox.exchange.markets import MarketSpec


@dataclass(slots=True)
class _Balance:
    free: Decimal = money.ZERO
    locked: Decimal = money.ZERO


class LedgerInvariantError(AssertionError):
    """A movement would make a balance negative: a bug in the engine, never a client error."""


@dataclass(frozen=True, slots=True)
class FeeOverride:
    maker: Decimal | None = None
    taker: Decimal | None = None


class Ledger:
    def __init__(self) -> None:
        self._accounts: dict[str, dict[str, _Balance]] = {}
        self._fees: dict[str, FeeOverride] = {}
        self._changed: dict[str, dict[str, None]] = {}  # ordered sets, for deterministic events
        self.fees_collected: dict[str, Decimal] = {}
        self.deposited: dict[str, Decimal] = {}

    # -- accounts -------------------------------------------------------------------------------

    def open(self, account: str, fees: FeeOverride | None = None) -> None:
        """Create ``account`` (or change its fee override if it exists)."""
        if not account:
            raise ExchangeRejection(Reason.INVALID_PARAMETER, "account name must not be empty")
        self._accounts.setdefault(account, {})
        if fees is not None:
            for rate in (fees.maker, fees.taker):
                if rate is not None and (not rate.is_finite() or not 0 <= rate < 1):
                    raise ExchangeRejection(Reason.INVALID_PARAMETER, f"fee rate {rate} not in [0, 1)")
            self._fees[account] = fees

    def exists(self, account: str) -> bool:
        return account in self._accounts

    def require(self, account: str) -> None:
        if account not in self._accounts:
            raise ExchangeRejection(Reason.UNKNOWN_ACCOUNT, f"unknown account {account!r}")

    def accounts(self) -> list[str]:
        return list(self._accounts)

    def fee_rates(self, account: str, spec: MarketSpec) -> tuple[Decimal, Decimal]:
        """(maker, taker) rates for ``account`` on ``spec``'s market."""
        o = self._fees.get(account)
        if o is None:
            return spec.maker_fee, spec.taker_fee
        return (
            spec.maker_fee if o.maker is None else o.maker,
            spec.taker_fee if o.taker is None else o.taker,
        )

    # -- reading --------------------------------------------------------------------------------

    def balance(self, account: str, asset: str) -> AssetBalance:
        b = self._accounts.get(account, {}).get(asset)
        return AssetBalance(asset, b.free, b.locked) if b else AssetBalance(asset, money.ZERO, money.ZERO)

    def balances(self, account: str) -> tuple[AssetBalance, ...]:
        return tuple(AssetBalance(a, b.free, b.locked) for a, b in self._accounts.get(account, {}).items())

    def free(self, account: str, asset: str) -> Decimal:
        return self.balance(account, asset).free

    def total(self, asset: str) -> Decimal:
        """Everything of ``asset`` in every account, plus the commission collected."""
        out = self.fees_collected.get(asset, money.ZERO)
        for balances in self._accounts.values():
            b = balances.get(asset)
            if b is not None:
                out = money.add(out, money.add(b.free, b.locked))
        return out

    def assets(self) -> list[str]:
        seen: dict[str, None] = dict.fromkeys(self.fees_collected)
        for balances in self._accounts.values():
            seen.update(dict.fromkeys(balances))
        return list(seen)

    # -- movements ------------------------------------------------------------------------------

    def deposit(self, account: str, asset: str, amount: Decimal) -> None:
        """Bring ``amount`` in from outside (negative: take it out, from free only)."""
        self.require(account)
        if money.add(self.free(account, asset), amount) < 0:
            raise ExchangeRejection(
                Reason.INSUFFICIENT_BALANCE, f"{account}: cannot withdraw {-amount} {asset}"
            )
        b = self._slot(account, asset)
        b.free = money.add(b.free, amount)
        self.deposited[asset] = money.add(self.deposited.get(asset, money.ZERO), amount)

    def lock(self, account: str, asset: str, amount: Decimal) -> None:
        have = self.free(account, asset)
        if have < amount:
            raise ExchangeRejection(
                Reason.INSUFFICIENT_BALANCE, f"{account}: needs {amount} {asset}, has {have} free"
            )
        if not amount:
            return
        b = self._slot(account, asset)
        b.free = money.sub(b.free, amount)
        b.locked = money.add(b.locked, amount)

    def unlock(self, account: str, asset: str, amount: Decimal) -> None:
        if not amount:
            return
        b = self._slot(account, asset)
        b.locked = self._minus(b.locked, amount, account, asset)
        b.free = money.add(b.free, amount)

    def spend_locked(self, account: str, asset: str, amount: Decimal) -> None:
        if not amount:
            return
        b = self._slot(account, asset)
        b.locked = self._minus(b.locked, amount, account, asset)

    def credit(self, account: str, asset: str, amount: Decimal) -> None:
        if not amount:
            return
        b = self._slot(account, asset)
        b.free = money.add(b.free, amount)

    def collect_fee(self, asset: str, amount: Decimal) -> None:
        self.fees_collected[asset] = money.add(self.fees_collected.get(asset, money.ZERO), amount)

    def take_changes(self) -> list[tuple[str, tuple[AssetBalance, ...]]]:
        """Balances changed since the last call, per account, in the order they changed."""
        out = [
            (account, tuple(self.balance(account, asset) for asset in assets))
            for account, assets in self._changed.items()
        ]
        self._changed = {}
        return out

    def _slot(self, account: str, asset: str) -> _Balance:
        balances = self._accounts[account]
        b = balances.get(asset)
        if b is None:
            b = balances[asset] = _Balance()
        self._changed.setdefault(account, {})[asset] = None
        return b

    @staticmethod
    def _minus(have: Decimal, amount: Decimal, account: str, asset: str) -> Decimal:
        left = money.sub(have, amount)
        if amount < 0 or left < 0:
            raise LedgerInvariantError(f"{account}: locked {asset} {have} cannot give {amount}")
        return left
