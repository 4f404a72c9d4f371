"""A de-duplicating work queue with per-key backoff, as client-go's workqueue.

- A key added several times before a worker takes it is processed once.
- A key added while a worker holds it is queued again after `done`, never handed to two
  workers at once.
- `retry(key)` re-adds after an exponential per-key delay; `forget(key)` resets it.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import Awaitable, Callable, Hashable

log = logging.getLogger("kubemu.workqueue")


class WorkQueue:
    def __init__(self, *, base_delay: float = 0.005, max_delay: float = 30.0):
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: collections.deque[Hashable] = collections.deque()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._nonempty = asyncio.Event()
        self.shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: Hashable) -> None:
        if self.shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._nonempty.set()

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        old = self._timers.pop(key, None)
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if old is not None and old.when() < when:
            self._timers[key] = old  # an earlier wake-up is already set
            return
        if old is not None:
            old.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def retry(self, key: Hashable) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(self.base_delay * (2 ** n), self.max_delay))

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def failures(self, key: Hashable) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> Hashable:
        while not self._queue:
            self._nonempty.clear()
            await self._nonempty.wait()
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._nonempty.set()

    def shutdown(self) -> None:
        self.shutting_down = True
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()


async def run_worker(queue: WorkQueue, sync: Callable[[Hashable], Awaitable[None]], *,
                     name: str = "worker") -> None:
    """Take keys forever; a sync that raises is retried with backoff, one that succeeds is forgotten."""
    while True:
        key = await queue.get()
        try:
            await sync(key)
        except Exception as e:
            n = queue.failures(key)
            (log.debug if n < 3 else log.warning)("%s: sync %s failed (%d): %s", name, key, n + 1, e)
            queue.retry(key)
        else:
            queue.forget(key)
        finally:
            queue.done(key)
