"""Synchronous, ordered delivery of engine events to listeners.

Events are queued while an operation runs and delivered after its state is complete, so a
listener never sees a half-matched book and may safely call back into the engine; events that
such a nested call produces join the same queue and keep the global order. A listener that
raises is logged and counted, never allowed to break the engine or starve later listeners.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from marketlink.sandbox.exchange.events import PrivateEvent, PublicEvent

log = logging.getLogger(__name__)

E = TypeVar("E")
AccountListener = Callable[[PrivateEvent], None]
SymbolListener = Callable[[PublicEvent], None]


class _Topic(Generic[E]):
    """Listeners per key, in registration order."""

    def __init__(self) -> None:
        self.listeners: dict[str, list[Callable[[E], None]]] = {}

    def add(self, key: str, listener: Callable[[E], None]) -> Callable[[], None]:
        self.listeners.setdefault(key, []).append(listener)

        def unsubscribe() -> None:
            current = self.listeners.get(key, [])
            if listener in current:
                current.remove(listener)

        return unsubscribe


class EventBus:
    def __init__(self) -> None:
        self._private: _Topic[PrivateEvent] = _Topic()
        self._public: _Topic[PublicEvent] = _Topic()
        self._queue: deque[Callable[[], None]] = deque()
        self._delivering = False
        self.listener_errors = 0

    def subscribe_account(self, account: str, listener: AccountListener) -> Callable[[], None]:
        return self._private.add(account, listener)

    def subscribe_symbol(self, symbol: str, listener: SymbolListener) -> Callable[[], None]:
        return self._public.add(symbol, listener)

    def private(self, event: PrivateEvent) -> None:
        for listener in tuple(self._private.listeners.get(event.account, ())):
            self._queue.append(_bind(listener, event))

    def public(self, symbol: str, event: PublicEvent) -> None:
        for listener in tuple(self._public.listeners.get(symbol, ())):
            self._queue.append(_bind(listener, event))

    def deliver(self) -> None:
        """Run queued deliveries in order; a nested call leaves them to the outermost one."""
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._queue:
                call = self._queue.popleft()
                try:
                    call()
                except Exception:
                    self.listener_errors += 1
                    log.exception("sandbox event listener failed")
        finally:
            self._delivering = False


def _bind(listener: Callable[[E], None], event: E) -> Callable[[], None]:
    return lambda: listener(event)
