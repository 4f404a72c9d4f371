"""The ReplicaSet controller: keeps `spec.replicas` active pods from the template.

Pure parts: `pods_to_delete` (Kubernetes' ranking of which pods go first on scale-down:
unscheduled, pending, not ready, doubled-up on a node, most recently ready, most restarted,
newest), `calculate_status`, `new_pod`. The controller:
- owns the pods whose controller reference is the ReplicaSet; adopts orphans that match its
  selector and releases owned pods that stopped matching (as ControllerRefManager does);
- creates missing pods in slow-start batches (1, 2, 4, ...: a template that cannot be created
  fails fast instead of 500 times) and deletes surplus ones gracefully;
- writes status only when it changed;
- never syncs a ReplicaSet again before the pod cache shows its previous creates/deletes
  (expectations), so a quick second sync cannot create the same pods twice.
Failed pods are not active: they are replaced (and left for inspection, as in Kubernetes).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable

from google.protobuf.message import Message

from kubemu import errors, labels, objects
from kubemu.informer import Informer
from kubemu.v1 import objects_pb2 as pb

from kubemu.controllers.base import (Controller, can_adopt, controller_ref, copy, index_controller_uid, index_namespace,
                                     owner_ref, pod_active, pod_condition, pod_ready)
from kubemu.timefmt import parse_time

log = logging.getLogger("kubemu.controllers.replicaset")

COMPONENT = "replicaset-controller"
BURST = 500


# ------------------------------------------------------------------ pure decisions

def selector_of(rs: Message):
    """The ReplicaSet's selector; an unset one selects nothing (as Kubernetes)."""
    if not rs.spec.HasField("selector"):
        return None
    return labels.from_label_selector(rs.spec.selector)


def replicas_of(obj: Message) -> int:
    return obj.spec.replicas if obj.spec.HasField("replicas") else 1


def ready_since(pod: Message) -> float | None:
    c = pod_condition(pod, "Ready")
    if c is None or c.status != "True":
        return None
    return parse_time(c.lastTransitionTime) or 0.0


def pod_available(pod: Message, min_ready_seconds: int, now: float) -> bool:
    since = ready_since(pod)
    if since is None:
        return False
    return min_ready_seconds <= 0 or since + min_ready_seconds <= now


def _phase_rank(pod: Message) -> int:
    return {"Pending": 0, "Unknown": 1, "Running": 2}.get(pod.status.phase, 0)


def _restarts(pod: Message) -> int:
    return max((c.restartCount for c in pod.status.containerStatuses), default=0)


def pods_to_delete(pods: list[Message], n: int, related: Iterable[Message] = ()) -> list[Message]:
    """The `n` pods to remove first (controller.ActivePodsWithRanks)."""
    per_node: dict[str, int] = {}
    for p in list(related) or pods:
        if p.spec.nodeName and pod_active(p):
            per_node[p.spec.nodeName] = per_node.get(p.spec.nodeName, 0) + 1

    def rank(p: Message):
        ready = pod_ready(p)
        since = ready_since(p) if ready else None
        created = parse_time(p.metadata.creationTimestamp) or 0.0
        return (
            1 if p.spec.nodeName else 0,                 # unassigned first
            _phase_rank(p),                              # Pending < Unknown < Running
            1 if ready else 0,                           # not ready first
            -per_node.get(p.spec.nodeName, 0) if p.spec.nodeName else 0,  # doubled-up first
            -(since or 0.0),                             # ready more recently first
            -_restarts(p),                               # more restarts first
            -created,                                    # newer first
            p.metadata.name,
        )
    return sorted(pods, key=rank)[:max(n, 0)]


def calculate_status(rs: Message, pods: list[Message], now: float) -> pb.ReplicaSetStatus:
    """Status from the active pods owned by the ReplicaSet (keeps existing conditions)."""
    template_labels = rs.spec.template.metadata.labels
    st = pb.ReplicaSetStatus()
    st.CopyFrom(rs.status)
    st.replicas = len(pods)
    st.fullyLabeledReplicas = sum(1 for p in pods if all(p.metadata.labels.get(k) == v
                                                          for k, v in template_labels.items()))
    st.readyReplicas = sum(1 for p in pods if pod_ready(p))
    st.availableReplicas = sum(1 for p in pods if pod_available(p, rs.spec.minReadySeconds, now))
    st.observedGeneration = rs.metadata.generation
    return st


def new_pod(rs: Message) -> pb.Pod:
    """A pod from the template: generated name `<rs>-<5 chars>`, controller reference."""
    pod = objects.new("Pod", namespace=rs.metadata.namespace)
    t = rs.spec.template
    pod.metadata.generateName = f"{rs.metadata.name}-"
    pod.metadata.labels.update(t.metadata.labels)
    pod.metadata.annotations.update(t.metadata.annotations)
    pod.metadata.finalizers.extend(t.metadata.finalizers)
    pod.metadata.ownerReferences.append(owner_ref(rs))
    pod.spec.CopyFrom(t.spec)
    return pod


def next_requeue(rs: Message, pods: list[Message], now: float) -> float | None:
    """Seconds until a ready pod becomes available (minReadySeconds), if any is waiting."""
    m = rs.spec.minReadySeconds
    if m <= 0:
        return None
    waits = [since + m - now for p in pods if (since := ready_since(p)) is not None and since + m > now]
    return min(waits) if waits else None


# ------------------------------------------------------------------ the controller

class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 4
    resync_period = 60.0

    def __init__(self, client, *, replicasets: Informer, pods: Informer, recorder,
                 clock: Callable[[], float] = time.time):
        super().__init__()
        self.client = client
        self.replicasets = replicasets
        self.pods = pods
        self.recorder = recorder.for_component(COMPONENT) if recorder is not None else None
        self.clock = clock
        pods.add_index("controller", index_controller_uid)
        pods.add_index("namespace", index_namespace)
        replicasets.add_index("namespace", index_namespace)
        replicasets.add_handler(self._on_rs)
        pods.add_handler(self._on_pod)

    def all_keys(self):
        return list(self.replicasets.cache.keys())

    def _on_rs(self, event: str, rs: Message, old: Message | None) -> None:
        self.enqueue(objects.key(rs))

    def _on_pod(self, event: str, pod: Message, old: Message | None) -> None:
        for p in (pod, old) if old is not None else (pod,):
            ref = controller_ref(p)
            if ref is not None:
                if ref.kind == "ReplicaSet":
                    self.enqueue(f"{p.metadata.namespace}/{ref.name}")
            elif event != "DELETED":
                # An orphan: a ReplicaSet whose selector matches may adopt it.
                for rs in self.replicasets.by_index("namespace", p.metadata.namespace):
                    sel = selector_of(rs)
                    if sel and labels.matches(sel, p.metadata.labels):
                        self.enqueue(objects.key(rs))

    # ------------------------------------------------------------ sync

    def _claim(self, rs: Message) -> tuple[list[Message], list[Message], list[Message]]:
        """(owned pods still matching, orphans to adopt, owned pods to release)."""
        sel = selector_of(rs)
        uid = rs.metadata.uid
        owned, adopt, release = [], [], []
        for p in self.pods.by_index("controller", uid):
            if sel and labels.matches(sel, p.metadata.labels):
                owned.append(p)
            else:
                release.append(p)
        if sel and not rs.metadata.HasField("deletionTimestamp"):
            for p in self.pods.by_index("namespace", rs.metadata.namespace):
                if controller_ref(p) is None and pod_active(p) and labels.matches(sel, p.metadata.labels):
                    adopt.append(p)
        return owned, adopt, release

    async def sync(self, key: str) -> None:
        if not self.expectations.satisfied(key):
            return  # the pod events of our own writes will enqueue this key again
        rs = self.replicasets.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        owned, adopt, release = self._claim(rs)
        if adopt and not await can_adopt(self.client, rs):
            adopt = []
        for p in adopt:
            new = copy(p)
            new.metadata.ownerReferences.append(owner_ref(rs))
            try:
                adopted = await self.client.update(new)
            except errors.NotFound:
                continue
            self.expectations.wrote(key, self.pods, adopted)
            owned.append(adopted)
        for p in release:
            new = copy(p)
            refs = [r for r in new.metadata.ownerReferences if r.uid != rs.metadata.uid]
            del new.metadata.ownerReferences[:]
            new.metadata.ownerReferences.extend(refs)
            try:
                self.expectations.wrote(key, self.pods, await self.client.update(new))
            except errors.NotFound:
                pass
        active = [p for p in owned if pod_active(p)]
        error = None
        if not rs.metadata.HasField("deletionTimestamp"):
            try:
                await self._manage(key, rs, active)
            except errors.ApiError as e:
                error = e
        now = self.clock()
        status = calculate_status(rs, active, now)
        if status != rs.status:
            new = copy(rs)
            new.status.CopyFrom(status)
            try:
                await self.client.update_status(new)
            except errors.NotFound:
                return
        if error is not None:
            raise error
        wait = next_requeue(rs, active, now)
        if wait is not None:
            self.queue.add_after(key, wait + 0.05)

    async def _manage(self, key: str, rs: Message, active: list[Message]) -> None:
        diff = len(active) - replicas_of(rs)
        if diff < 0:
            await self._create(key, rs, min(-diff, BURST))
        elif diff > 0:
            doomed = pods_to_delete(active, min(diff, BURST))
            results = await asyncio.gather(*(self._delete(key, rs, p) for p in doomed),
                                           return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    async def _create(self, key: str, rs: Message, n: int) -> None:
        """Slow start: batches of 1, 2, 4, ... stop at the first failure."""
        batch, done = 1, 0
        while done < n:
            size = min(batch, n - done)
            results = await asyncio.gather(*(self.client.create(new_pod(rs)) for _ in range(size)),
                                           return_exceptions=True)
            failure = None
            for r in results:
                if isinstance(r, BaseException):
                    failure = failure or r
                else:
                    self.expectations.wrote(key, self.pods, r)
                    if self.recorder is not None:
                        self.recorder.normal(rs, "SuccessfulCreate", f"Created pod: {r.metadata.name}")
            if failure is not None:
                if self.recorder is not None and isinstance(failure, errors.ApiError) \
                        and not isinstance(failure, errors.Unavailable):
                    self.recorder.warning(rs, "FailedCreate", f"Error creating: {failure}")
                raise failure
            done += size
            batch *= 2

    async def _delete(self, key: str, rs: Message, pod: Message) -> None:
        try:
            deleted = await self.client.delete("Pod", pod.metadata.name, pod.metadata.namespace,
                                               precondition_uid=pod.metadata.uid)
        except errors.NotFound:
            return
        self.expectations.wrote(key, self.pods, deleted)
        if self.recorder is not None:
            self.recorder.normal(rs, "SuccessfulDelete", f"Deleted pod: {pod.metadata.name}")
