"""The scheduler: binds each unscheduled pod to a node.

Decisions are pure (`filter_node`, `pick_node`, `unschedulable_message`):
- Filter: the node is Ready, not `spec.unschedulable`, has no NoSchedule/NoExecute taint the
  pod does not tolerate, and matches the pod's nodeSelector.
- Score: fewest pods of the same owner (replicas of one ReplicaSet spread across nodes), then
  fewest pods overall, then name (deterministic).
- Nothing fits: the pod stays Pending with PodScheduled=False (reason Unschedulable) and a
  FailedScheduling event in the scheduler's words ("0/3 nodes are available: ...").

Binding writes spec.nodeName with the pod's cached resourceVersion (a Conflict means the pod
changed: it is retried from the cache). Like kube-scheduler's cache, a pod is "assumed" on its
node from the moment it is chosen until the informer shows it bound, so several workers can
place pods concurrently without counting each other's choices twice or not at all: the
choice and the assumption happen without an `await` in between.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Callable, Iterable

from google.protobuf.message import Message

from kubemu import errors, objects
from kubemu.informer import Informer

from kubemu.controllers.base import Controller, controller_ref, copy, pod_condition, pod_terminal
from kubemu.timefmt import rfc3339

log = logging.getLogger("kubemu.controllers.scheduler")

SCHEDULER_NAME = "default-scheduler"
UNSCHEDULED = ""


# ------------------------------------------------------------------ pure decisions

def node_ready(node: Message) -> bool:
    for c in node.status.conditions:
        if c.type == "Ready":
            return c.status == "True"
    return False


def tolerates(toleration: Message, taint: Message) -> bool:
    """v1.Toleration.ToleratesTaint."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    op = toleration.operator or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return toleration.value == taint.value
    return False


def untolerated_taint(pod: Message, node: Message, effects=("NoSchedule", "NoExecute")):
    for taint in node.spec.taints:
        if taint.effect not in effects:
            continue
        if not any(tolerates(t, taint) for t in pod.spec.tolerations):
            return taint
    return None


def filter_node(pod: Message, node: Message) -> str | None:
    """None if the pod fits the node, else the reason in kube-scheduler's words."""
    if node.spec.unschedulable:
        return "node(s) were unschedulable"
    taint = untolerated_taint(pod, node)
    if taint is not None:
        return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"
    if not node_ready(node):
        return "node(s) were not ready"
    for k, v in pod.spec.nodeSelector.items():
        if node.metadata.labels.get(k) != v:
            return "node(s) didn't match Pod's node affinity/selector"
    return None


def unschedulable_message(total: int, reasons: Iterable[str]) -> str:
    if total == 0:
        return "no nodes available to schedule pods"
    counts = collections.Counter(reasons)
    parts = sorted(f"{n} {r}" for r, n in counts.items())
    return (f"0/{total} nodes are available: {', '.join(parts)}. preemption: 0/{total} nodes are "
            f"available: {total} Preemption is not helpful for scheduling.")


def pick_node(pod: Message, nodes: Iterable[Message], load: Callable[[str], int],
              owner_load: Callable[[str], int]) -> tuple[str | None, str]:
    """The node for `pod` and "" , or None and the unschedulable message."""
    nodes = list(nodes)
    reasons = []
    fits = []
    for node in nodes:
        r = filter_node(pod, node)
        if r is None:
            fits.append(node.metadata.name)
        else:
            reasons.append(r)
    if not fits:
        return None, unschedulable_message(len(nodes), reasons)
    best = min(fits, key=lambda n: (owner_load(n), load(n), n))
    return best, ""


# ------------------------------------------------------------------ the controller

def _index_node(pod: Message):
    if pod_terminal(pod):
        return ()
    return (pod.spec.nodeName,)


def _index_owner_node(pod: Message):
    ref = controller_ref(pod)
    if ref is None or not pod.spec.nodeName or pod_terminal(pod):
        return ()
    return (f"{ref.uid}|{pod.spec.nodeName}",)


def responsible_for(pod: Message) -> bool:
    return pod.spec.schedulerName in ("", SCHEDULER_NAME)


def needs_scheduling(pod: Message) -> bool:
    return (not pod.spec.nodeName and not pod.metadata.HasField("deletionTimestamp")
            and not pod_terminal(pod) and responsible_for(pod))


class Scheduler(Controller):
    name = "scheduler"
    workers = 4
    resync_period = 30.0

    def __init__(self, client, *, pods: Informer, nodes: Informer, recorder,
                 clock: Callable[[], float] = time.time):
        super().__init__()
        self.client = client
        self.pods = pods
        self.nodes = nodes
        self.recorder = recorder.for_component(SCHEDULER_NAME) if recorder is not None else None
        self.clock = clock
        # pod key -> (node, owner uid) chosen but not yet seen bound in the cache
        self.assumed: dict[str, tuple[str, str]] = {}
        self._attempts: dict[str, int] = {}
        pods.add_index("sched-node", _index_node)
        pods.add_index("sched-owner-node", _index_owner_node)
        pods.add_handler(self._on_pod)
        nodes.add_handler(self._on_node)

    def all_keys(self):
        return [objects.key(p) for p in self.pods.by_index("sched-node", UNSCHEDULED) if needs_scheduling(p)]

    def _on_pod(self, event: str, pod: Message, old: Message | None) -> None:
        if event != "DELETED" and needs_scheduling(pod):
            self.enqueue(objects.key(pod))

    def _on_node(self, event: str, node: Message, old: Message | None) -> None:
        if event == "MODIFIED" and old is not None and (
                node.spec == old.spec and node.metadata.labels == old.metadata.labels
                and node_ready(node) == node_ready(old)):
            return
        if event == "DELETED":
            return
        # A node appeared or changed: pods waiting for one get another chance.
        for key in self.all_keys():
            self.enqueue(key)

    # ------------------------------------------------------------ load, with assumed pods

    def _prune_assumed(self) -> None:
        for key, (node, _) in list(self.assumed.items()):
            pod = self.pods.get(key)
            if pod is None or pod.spec.nodeName:
                del self.assumed[key]

    def _load(self, node: str) -> int:
        return len(self.pods.by_index("sched-node", node)) + sum(
            1 for n, _ in self.assumed.values() if n == node)

    def _owner_load(self, uid: str, node: str) -> int:
        if not uid:
            return 0
        return len(self.pods.by_index("sched-owner-node", f"{uid}|{node}")) + sum(
            1 for n, u in self.assumed.values() if n == node and u == uid)

    # ------------------------------------------------------------ sync

    async def sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or not needs_scheduling(pod) or key in self.assumed:
            self._attempts.pop(key, None)
            return
        self._prune_assumed()
        ref = controller_ref(pod)
        uid = ref.uid if ref is not None else ""
        node, message = pick_node(pod, self.nodes.list(), self._load,
                                  lambda n: self._owner_load(uid, n))
        if node is None:
            await self._unschedulable(pod, message)
            # Backoff as kube-scheduler's (1s doubling to 10s); node changes retry sooner.
            n = self._attempts.get(key, 0)
            self._attempts[key] = n + 1
            self.queue.add_after(key, min(1.0 * 2 ** n, 10.0))
            return
        self._attempts.pop(key, None)
        self.assumed[key] = (node, uid)
        try:
            bound = copy(pod)
            bound.spec.nodeName = node
            bound = await self.client.update(bound)
        except errors.NotFound:
            self.assumed.pop(key, None)
            return
        except BaseException:
            self.assumed.pop(key, None)
            raise
        if self.recorder is not None:
            self.recorder.normal(bound, "Scheduled",
                                 f"Successfully assigned {pod.metadata.namespace}/{pod.metadata.name} to {node}")
        await self._set_scheduled(bound)

    async def _set_scheduled(self, pod: Message) -> None:
        """PodScheduled=True, as the binding subresource sets it."""
        cond = pod_condition(pod, "PodScheduled")
        if cond is not None and cond.status == "True":
            return
        new = copy(pod)
        _set_condition(new, "PodScheduled", "True", "", "", self.clock())
        try:
            await self.client.update_status(new)
        except (errors.Conflict, errors.NotFound):
            pass  # the kubelet already wrote status (including PodScheduled) or the pod is gone

    async def _unschedulable(self, pod: Message, message: str) -> None:
        cond = pod_condition(pod, "PodScheduled")
        if not (cond is not None and cond.status == "False" and cond.reason == "Unschedulable"
                and cond.message == message):
            new = copy(pod)
            _set_condition(new, "PodScheduled", "False", "Unschedulable", message, self.clock())
            if not new.status.phase:
                new.status.phase = "Pending"
            await self.client.update_status(new)
        if self.recorder is not None:
            self.recorder.warning(pod, "FailedScheduling", message)


def _set_condition(pod: Message, type_: str, status: str, reason: str, message: str, now: float) -> None:
    for c in pod.status.conditions:
        if c.type == type_:
            if c.status != status:
                c.lastTransitionTime = rfc3339(now)
            c.status = status
            c.reason, c.message = reason, message
            if not reason:
                c.ClearField("reason")
            if not message:
                c.ClearField("message")
            return
    c = pod.status.conditions.add(type=type_, status=status, lastTransitionTime=rfc3339(now))
    if reason:
        c.reason = reason
    if message:
        c.message = message
