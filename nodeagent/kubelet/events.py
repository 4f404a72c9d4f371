"""Events about pods, as the kubelet records them (source component `kubelet`, host = node).

Only what a user needs to see in `describe pod` is recorded: probe failures (Unhealthy),
restarts forced by a probe (Killing), CrashLoopBackOff (BackOff), and containers that cannot
start (Failed, FailedCreatePodSandBox). Routine starts and stops are not, so a node running
thousands of pods does not double its API writes. `emit()` never blocks: a background task
writes, repeats of one (pod, reason, message) become one Event whose `count` grows, and when
too many are waiting (the API server is away) new ones are dropped rather than queued forever.
"""
from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import time

from kubemu import errors, objects
from kubemu.v1 import objects_pb2 as pb

log = logging.getLogger("kubemu.nodeagent.kubelet.events")

NORMAL, WARNING = "Normal", "Warning"


def _ts(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, client, node_name: str, *, max_pending: int = 1000, remember: int = 4096):
        self.client = client
        self.node_name = node_name
        self.max_pending = max_pending
        self.remember = remember
        self._pending: collections.OrderedDict[tuple, list] = collections.OrderedDict()  # key -> [pod, count]
        self._written: collections.OrderedDict[tuple, tuple[str, str, int]] = collections.OrderedDict()
        self._wakeup = asyncio.Event()
        self.dropped = 0

    def emit(self, pod: pb.Pod, type_: str, reason: str, message: str) -> None:
        key = (pod.metadata.namespace, pod.metadata.name, pod.metadata.uid, type_, reason, message)
        p = self._pending.get(key)
        if p is not None:
            p[1] += 1
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        self._pending[key] = [pod, 1]
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            key, (pod, count) = self._pending.popitem(last=False)
            try:
                await self._write(key, pod, count)
            except errors.Unavailable:
                if key not in self._pending:
                    self._pending[key] = [pod, count]
                    self._pending.move_to_end(key, last=False)
                await asyncio.sleep(1.0)
            except errors.ApiError as e:
                log.debug("event %s not recorded: %s", key[4], e)

    async def _write(self, key: tuple, pod: pb.Pod, count: int) -> None:
        now = time.time()
        seen = self._written.get(key)
        if seen is not None:
            ns, name, total = seen
            try:
                await self.client.patch("Event", name, {"count": total + count, "lastTimestamp": _ts(now)},
                                        namespace=ns)
                self._note(key, ns, name, total + count)
                return
            except errors.NotFound:
                pass
        ev = objects.new("Event")
        ev.metadata.name = f"{pod.metadata.name}.{int(now * 1e9):x}"
        ev.metadata.namespace = pod.metadata.namespace
        ref = ev.involvedObject
        ref.kind, ref.apiVersion = "Pod", "v1"
        ref.namespace, ref.name, ref.uid = pod.metadata.namespace, pod.metadata.name, pod.metadata.uid
        ev.type, ev.reason, ev.message = key[3], key[4], key[5]
        ev.source.component, ev.source.host = "kubelet", self.node_name
        ev.reportingComponent, ev.reportingInstance = "kubelet", self.node_name
        ev.firstTimestamp = ev.lastTimestamp = _ts(now)
        ev.count = count
        created = await self.client.create(ev)
        self._note(key, created.metadata.namespace, created.metadata.name, count)

    def _note(self, key: tuple, ns: str, name: str, total: int) -> None:
        self._written[key] = (ns, name, total)
        self._written.move_to_end(key)
        while len(self._written) > self.remember:
            self._written.popitem(last=False)
