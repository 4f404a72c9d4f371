"""Events about Services, written in the background so a sync never waits on (or fails over) them.

Repeats of the same (Service, type, reason, message) become one Event whose `count` and
`lastTimestamp` grow, as client-go's event correlator does: a Service that stays pending while
the pool is exhausted shows one AllocationFailed event with a count, not a pile of them. A
"series" event (the running cost) keeps one Event per Service whose message is replaced each
time. When the API server is away, writes are retried a few times and then dropped: an Event
is for humans, losing one is better than growing without bound.

(The controller manager has a recorder of its own; components do not import one another, so
this is the cloud-lb's small copy.)
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Callable

from google.protobuf.message import Message

from kubemu import errors, objects
from kubemu.cloudlb.cost import rfc3339

log = logging.getLogger("kubemu.cloudlb.events")

NORMAL, WARNING = "Normal", "Warning"
COMPONENT = "cloud-lb"
MAX_PENDING = 1000


class _Pending:
    __slots__ = ("obj", "type", "reason", "message", "series", "count")

    def __init__(self, obj, type_, reason, message, series):
        self.obj, self.type, self.reason, self.message, self.series = obj, type_, reason, message, series
        self.count = 1


class EventRecorder:
    def __init__(self, client, *, component: str = COMPONENT, clock: Callable[[], float] = time.time):
        self.client = client
        self.component = component
        self.clock = clock
        self._pending: dict[tuple, _Pending] = {}
        self._order: collections.deque[tuple] = collections.deque()
        self._wakeup = asyncio.Event()
        self._written: collections.OrderedDict[tuple, tuple[str, str, int, str]] = collections.OrderedDict()

    def record(self, obj: Message, type_: str, reason: str, message: str, *, series: str = "") -> None:
        """Queue an Event about `obj`; with `series`, the Event of that series is updated instead."""
        m = obj.metadata
        key = (m.namespace, m.name, m.uid, "series", series) if series else \
            (m.namespace, m.name, m.uid, type_, reason, message)
        p = self._pending.get(key)
        if p is not None:
            p.count += 1
            p.obj, p.message, p.type, p.reason = obj, message, type_, reason
            return
        if len(self._pending) >= MAX_PENDING:
            log.warning("event queue full; dropped %s %s", reason, message)
            return
        self._pending[key] = _Pending(obj, type_, reason, message, series)
        self._order.append(key)
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            if not self._order:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            key = self._order.popleft()
            p = self._pending.pop(key, None)
            if p is None:
                continue
            for attempt in range(3):
                try:
                    await self._write(key, p)
                    break
                except errors.ApiError as e:
                    log.debug("writing event %s failed (%s)", p.reason, e)
                    await asyncio.sleep(0.2 * (attempt + 1))

    async def flush(self) -> None:
        while self._order:
            key = self._order.popleft()
            p = self._pending.pop(key, None)
            if p is not None:
                try:
                    await self._write(key, p)
                except errors.ApiError:
                    pass

    async def _write(self, key: tuple, p: _Pending) -> None:
        now = rfc3339(self.clock())
        obj = p.obj
        known = self._written.get(key)
        if known is not None:
            ns, name, count, first = known
            try:
                ev = await self.client.get("Event", name, ns)
            except errors.NotFound:
                ev = None
            if ev is not None:
                ev.count = (ev.count or count) + p.count
                ev.lastTimestamp = now
                ev.message, ev.type, ev.reason = p.message, p.type, p.reason
                ev = await self.client.update(ev)
                self._remember(key, (ns, name, ev.count, first))
                return
        ev = objects.new("Event")
        suffix = f"lb-{p.series}" if p.series else f"{int(self.clock() * 1e9):x}"
        ev.metadata.name = f"{obj.metadata.name}.{suffix}"
        ev.metadata.namespace = obj.metadata.namespace or "default"
        ref = ev.involvedObject
        ref.kind, ref.namespace, ref.name = obj.kind or "Service", obj.metadata.namespace, obj.metadata.name
        ref.uid, ref.apiVersion = obj.metadata.uid, obj.apiVersion or "v1"
        ev.reason, ev.message, ev.type = p.reason, p.message, p.type
        ev.source.component = self.component
        ev.reportingComponent = self.component
        ev.firstTimestamp = ev.lastTimestamp = now
        ev.count = p.count
        try:
            ev = await self.client.create(ev)
        except errors.AlreadyExists:
            # A series event from a previous run: take it over.
            old = await self.client.get("Event", ev.metadata.name, ev.metadata.namespace)
            old.message, old.type, old.reason, old.lastTimestamp = p.message, p.type, p.reason, now
            old.count = (old.count or 0) + p.count
            old.involvedObject.CopyFrom(ev.involvedObject)
            ev = await self.client.update(old)
        self._remember(key, (ev.metadata.namespace, ev.metadata.name, ev.count, ev.firstTimestamp))

    def _remember(self, key: tuple, value: tuple[str, str, int, str]) -> None:
        self._written[key] = value
        self._written.move_to_end(key)
        while len(self._written) > 4096:
            self._written.popitem(last=False)
