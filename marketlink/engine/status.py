"""The connector's readiness, part by part, with the reason each part is not ready.

``ready`` is true only when every part is; a user (or a strategy) sees which part is missing and
why ("user_stream: reconnecting (attempt 3)") instead of a bare False. Every change of the
overall picture is published as a ``ConnectorStatusChanged`` event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from marketlink.core.events import ConnectorStatusChanged


@dataclass(frozen=True, slots=True)
class PartStatus:
    ready: bool
    detail: str


class StatusBoard:
    def __init__(
        self,
        connector: str,
        parts: Iterable[str],
        publish: Callable[[ConnectorStatusChanged], None],
        now: Callable[[], float],
    ) -> None:
        self._connector = connector
        self._parts: dict[str, PartStatus] = {p: PartStatus(False, "not started") for p in parts}
        self._publish = publish
        self._now = now
        self._last: tuple[bool, tuple[tuple[str, str], ...]] | None = None

    def set(self, part: str, ready: bool, detail: str = "") -> None:
        """Record one part's state; unknown parts are added (a later component may bring one)."""
        new = PartStatus(ready, detail or ("ok" if ready else "not ready"))
        if self._parts.get(part) == new:
            return
        self._parts[part] = new
        self._announce()

    def ok(self, part: str, detail: str = "ok") -> None:
        self.set(part, True, detail)

    def fail(self, part: str, detail: str) -> None:
        self.set(part, False, detail)

    @property
    def ready(self) -> bool:
        return all(p.ready for p in self._parts.values())

    def not_ready(self) -> tuple[tuple[str, str], ...]:
        return tuple((name, p.detail) for name, p in self._parts.items() if not p.ready)

    def snapshot(self) -> dict[str, PartStatus]:
        return dict(self._parts)

    def _announce(self) -> None:
        state = (self.ready, self.not_ready())
        if state == self._last:
            return
        self._last = state
        self._publish(
            ConnectorStatusChanged(
                timestamp=self._now(), connector=self._connector, ready=state[0], not_ready=state[1]
            )
        )
