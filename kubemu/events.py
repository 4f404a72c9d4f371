"""Recording Events (core/v1 Event) about objects, as client-go's EventRecorder does.

Every component records through this one recorder.

`record()` never blocks and never fails the caller: events are written by a background task,
because a controller must not slow down or fail a sync over a message meant for humans.
Repeats of the same (object, type, reason, message, source) are aggregated into one Event
whose `count` and `lastTimestamp` grow, as Kubernetes' event correlator does, so a pod that
stays unschedulable shows one FailedScheduling event with count 12, not 12 events. Repeats
that arrive while a write is still queued are folded into that write. When more than
`max_pending` distinct events are waiting, new ones are dropped (and logged): losing events
is better than growing without bound while the API server is away.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Callable

from google.protobuf.message import Message

from kubemu import errors, objects
from kubemu.timefmt import rfc3339
from kubemu.v1 import objects_pb2 as pb

log = logging.getLogger("kubemu.events")

NORMAL = "Normal"
WARNING = "Warning"

_Key = tuple[str, str, str, str, str, str, str]


def event_key(obj: Message, type_: str, reason: str, message: str, component: str) -> _Key:
    """What makes two events "the same" for aggregation (client-go's getEventKey)."""
    return (obj.DESCRIPTOR.name, obj.metadata.namespace, obj.metadata.name, obj.metadata.uid,
            type_, reason, message + "\x00" + component)


def involved_object(obj: Message) -> pb.ObjectReference:
    k = objects.kind_of(obj)
    return pb.ObjectReference(kind=k.kind, namespace=obj.metadata.namespace, name=obj.metadata.name,
                              uid=obj.metadata.uid, apiVersion=k.api_version,
                              resourceVersion=obj.metadata.resourceVersion)


def new_event(obj: Message, type_: str, reason: str, message: str, component: str,
              now: float, count: int = 1, host: str = "") -> pb.Event:
    """An Event about `obj`, named `<object>.<nanoseconds hex>` as client-go names them.

    Events about cluster-scoped objects (Nodes) live in the `default` namespace, as in
    Kubernetes.
    """
    ev = objects.new("Event")
    ev.metadata.name = f"{obj.metadata.name}.{int(now * 1e9):x}"
    ev.metadata.namespace = obj.metadata.namespace or "default"
    ev.involvedObject.CopyFrom(involved_object(obj))
    ev.reason, ev.message, ev.type = reason, message, type_
    ev.source.component = component
    ev.firstTimestamp = ev.lastTimestamp = rfc3339(now)
    ev.count = count
    ev.reportingComponent = component
    if host:
        ev.source.host = ev.reportingInstance = host
    return ev


class _Pending:
    __slots__ = ("obj", "type", "reason", "message", "component", "host", "count")

    def __init__(self, obj, type_, reason, message, component, host):
        self.obj, self.type, self.reason, self.message = obj, type_, reason, message
        self.component, self.host = component, host
        self.count = 1


class EventRecorder:
    def __init__(self, client, *, clock: Callable[[], float] = time.time, max_pending: int = 2000,
                 cache_size: int = 4096):
        self.client = client
        self.clock = clock
        self.max_pending = max_pending
        self.cache_size = cache_size
        self._pending: dict[_Key, _Pending] = {}
        self._order: collections.deque[_Key] = collections.deque()
        self._wakeup = asyncio.Event()
        # key -> (namespace, name, count, firstTimestamp) of the Event already written
        self._written: collections.OrderedDict[_Key, tuple[str, str, int, str]] = collections.OrderedDict()
        self.dropped = 0

    def for_component(self, component: str, host: str = "") -> "ComponentRecorder":
        return ComponentRecorder(self, component, host)

    def record(self, obj: Message, type_: str, reason: str, message: str, component: str,
               host: str = "") -> None:
        key = event_key(obj, type_, reason, message, component)
        p = self._pending.get(key)
        if p is not None:
            p.count += 1
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            if self.dropped % 100 == 1:
                log.warning("event queue full; dropped %d events so far (latest: %s %s)",
                            self.dropped, reason, message)
            return
        self._pending[key] = _Pending(obj, type_, reason, message, component, host)
        self._order.append(key)
        self._wakeup.set()

    async def flush(self) -> None:
        """Write everything pending now (tests, shutdown)."""
        while self._order:
            key = self._order.popleft()
            p = self._pending.pop(key, None)
            if p is not None:
                await self._write(key, p)

    async def run(self) -> None:
        while True:
            if not self._order:
                self._wakeup.clear()
                await self._wakeup.wait()
            key = self._order.popleft()
            p = self._pending.pop(key, None)
            if p is None:
                continue
            try:
                await self._write(key, p)
            except errors.Unavailable:
                # The API server is away: keep the event and try again a little later.
                if key not in self._pending:
                    self._pending[key] = p
                    self._order.appendleft(key)
                await asyncio.sleep(1.0)
            except errors.ApiError as e:
                log.info("could not record event %s %s: %s", p.reason, p.message, e)
            except Exception:  # a bug here must not silence every later event
                log.exception("could not record event %s %s", p.reason, p.message)

    async def _write(self, key: _Key, p: _Pending) -> None:
        now = self.clock()
        seen = self._written.get(key)
        if seen is not None:
            ns, name, count, first = seen
            try:
                await self.client.patch("Event", name, {"count": count + p.count, "lastTimestamp": rfc3339(now)},
                                         namespace=ns)
                self._remember(key, ns, name, count + p.count, first)
                return
            except errors.NotFound:
                pass  # someone deleted it: start a new one
        ev = new_event(p.obj, p.type, p.reason, p.message, p.component, now, p.count, p.host)
        created = await self.client.create(ev)
        self._remember(key, created.metadata.namespace, created.metadata.name, p.count, ev.firstTimestamp)

    def _remember(self, key: _Key, ns: str, name: str, count: int, first: str) -> None:
        self._written[key] = (ns, name, count, first)
        self._written.move_to_end(key)
        while len(self._written) > self.cache_size:
            self._written.popitem(last=False)


class ComponentRecorder:
    """A recorder bound to one `source.component` (default-scheduler, kubelet, ...) and host."""

    def __init__(self, recorder: EventRecorder, component: str, host: str = ""):
        self.recorder = recorder
        self.component = component
        self.host = host

    def event(self, obj: Message, type_: str, reason: str, message: str) -> None:
        self.recorder.record(obj, type_, reason, message, self.component, self.host)

    def normal(self, obj: Message, reason: str, message: str) -> None:
        self.event(obj, NORMAL, reason, message)

    def warning(self, obj: Message, reason: str, message: str) -> None:
        self.event(obj, WARNING, reason, message)
