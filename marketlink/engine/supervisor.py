"""Owned background tasks: every loop the engine runs is named, kept, and restarted with backoff.

Hummingbot fires tasks and forgets them, so a crashed loop (missing trading rules, a parser bug)
silently stops polling while the bot keeps trading. Here each task is owned by the supervisor: an
exception is logged, counted, reported to the status board, and the task is started again after
an exponential backoff; ``stop()`` cancels and awaits every one of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from marketlink.net.clock import Clock

log = logging.getLogger(__name__)


@dataclass
class TaskRecord:
    name: str
    restarts: int = 0
    last_error: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    def __init__(
        self,
        clock: Clock,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        on_crash: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self._clock = clock
        self._base = backoff_base
        self._max = backoff_max
        self._on_crash = on_crash
        self._records: dict[str, TaskRecord] = {}
        self._stopping = False

    @property
    def records(self) -> dict[str, TaskRecord]:
        return dict(self._records)

    def spawn(self, name: str, factory: Callable[[], Awaitable[None]], *, restart: bool = True) -> None:
        """Run ``factory()`` as task ``name``; if it raises, run it again after a backoff.

        A task that returns normally is done (not restarted). Names are unique."""
        if name in self._records and self._records[name].task is not None:
            task = self._records[name].task
            if task is not None and not task.done():
                raise RuntimeError(f"task {name!r} is already running")
        record = self._records.setdefault(name, TaskRecord(name))
        record.task = asyncio.get_running_loop().create_task(self._run(record, factory, restart), name=name)

    async def _run(self, record: TaskRecord, factory: Callable[[], Awaitable[None]], restart: bool) -> None:
        failures = 0
        while not self._stopping:
            started = self._clock.time()
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a supervisor catches everything: its whole job
                record.restarts += 1
                record.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("task %s crashed (restart %d)", record.name, record.restarts)
                if self._on_crash is not None:
                    self._on_crash(record.name, exc)
                if not restart:
                    return
                # A task that ran a good while before failing starts its backoff afresh.
                failures = 1 if self._clock.time() - started > self._max else failures + 1
                await self._clock.sleep(min(self._max, self._base * 2 ** (failures - 1)))

    async def cancel(self, name: str) -> None:
        record = self._records.get(name)
        if record is None or record.task is None:
            return
        record.task.cancel()
        await asyncio.gather(record.task, return_exceptions=True)
        record.task = None

    async def stop(self) -> None:
        self._stopping = True
        tasks = [r.task for r in self._records.values() if r.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for r in self._records.values():
            r.task = None
