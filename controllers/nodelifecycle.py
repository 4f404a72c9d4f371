"""The node lifecycle controller: notices dead nodes, fences their pods, evicts them.

A node agent renews its Lease (`kube-node-lease/<node>`) every second and keeps its Ready
condition's lastHeartbeatTime fresh. This controller remembers, per node, *when it last saw
either of them change* (local time, as Kubernetes' nodeHealthMap does, so clock skew between
hosts does not matter). When that is older than the grace period:
1. the node's Ready condition becomes Unknown ("Kubelet stopped posting node status.");
2. the node gets the `node.kubernetes.io/unreachable` taints (NoSchedule, so nothing new is
   scheduled there, and NoExecute, which starts the eviction clock at its timeAdded);
3. every pod on it is set Ready=False at once, so its endpoints stop receiving traffic;
4. after the eviction timeout (or a pod's own toleration of the taint) the pods are deleted
   with grace 0: the kubelet is gone and cannot finish a graceful deletion, and their owners
   replace them on healthy nodes.
A node whose agent reports Ready=True again loses the taints. A node reporting Ready=False
gets the `not-ready` taints instead. Pods bound to a Node that no longer exists are deleted
(the pod garbage collector's job in Kubernetes).

If every node looks dead at once, nothing is evicted (Kubernetes' "full disruption" rule):
that is far more likely to be this controller's own view being cut off than the whole
cluster failing, and evicting everything would only make it worse. The same goes for the
time the lease informer is disconnected: silence we could not have heard is not death, so
the grace period counts from the end of the disconnection (an API server restart does not
make every node Unknown).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Callable

from google.protobuf.message import Message

from kubemu import errors
from kubemu.informer import Informer
from kubemu.v1 import objects_pb2 as pb

from kubemu.controllers.base import Controller, copy, index_node_name, pod_ready
from kubemu.timefmt import parse_time, rfc3339

log = logging.getLogger("kubemu.controllers.nodelifecycle")

COMPONENT = "node-controller"
EVICTION_COMPONENT = "taint-eviction-controller"
LEASE_NAMESPACE = "kube-node-lease"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
OUR_TAINTS = (TAINT_UNREACHABLE, TAINT_NOT_READY)


# ------------------------------------------------------------------ pure decisions

def ready_condition(node: Message):
    for c in node.status.conditions:
        if c.type == "Ready":
            return c
    return None


def ready_status(node: Message) -> str:
    """True, False or Unknown; "" for a node that never posted a Ready condition."""
    c = ready_condition(node)
    return c.status if c is not None else ""


def heartbeat(node: Message, lease: Message | None) -> tuple[str, str]:
    """What changes when the node agent is alive."""
    c = ready_condition(node)
    return (lease.spec.renewTime if lease is not None else "", c.lastHeartbeatTime if c is not None else "")


def mark_unknown(node: Message, now: float) -> Message:
    """The node with its conditions Unknown (lastHeartbeatTime kept), as tryUpdateNodeHealth."""
    new = copy(node)
    if ready_condition(node) is None:
        new.status.conditions.add(type="Ready", status="Unknown", reason="NodeStatusNeverUpdated",
                                  message="Kubelet never posted node status.",
                                  lastHeartbeatTime=node.metadata.creationTimestamp,
                                  lastTransitionTime=rfc3339(now))
        return new
    for c in new.status.conditions:
        if c.status != "Unknown":
            c.lastTransitionTime = rfc3339(now)
        c.status = "Unknown"
        c.reason = "NodeStatusUnknown"
        c.message = "Kubelet stopped posting node status."
    return new


def desired_taints(node: Message, now: float) -> list[Message]:
    """The node's taints with ours matching its Ready condition (keeping timeAdded)."""
    status = ready_status(node)
    want_key = {"True": None, "": None, "False": TAINT_NOT_READY}.get(status, TAINT_UNREACHABLE)
    out = [t for t in node.spec.taints if t.key not in OUR_TAINTS or t.key == want_key]
    if want_key is not None:
        for effect in ("NoSchedule", "NoExecute"):
            if not any(t.key == want_key and t.effect == effect for t in out):
                t = pb.Taint(key=want_key, effect=effect)
                if effect == "NoExecute":
                    t.timeAdded = rfc3339(now)
                out.append(t)
    return out


def noexecute_taint(node: Message):
    for t in node.spec.taints:
        if t.key in OUR_TAINTS and t.effect == "NoExecute":
            return t
    return None


def eviction_delay(pod: Message, taint: Message, default: float) -> float | None:
    """Seconds after the taint's timeAdded at which the pod is evicted; None: never.

    Kubernetes adds a default toleration of 300 s for these taints to every pod (admission);
    here `default` (--pod-eviction-timeout) plays that role. A pod's own toleration wins.
    """
    for t in pod.spec.tolerations:
        if t.effect and t.effect != taint.effect:
            continue
        if t.key and t.key != taint.key:
            continue
        if (t.operator or "Equal") == "Equal" and t.key and t.value != taint.value:
            continue
        if t.HasField("tolerationSeconds"):
            return max(0.0, float(t.tolerationSeconds))
        return None
    return default


def not_ready_pod(pod: Message, now: float) -> Message:
    """MarkPodsNotReady: the pod with Ready=False."""
    new = copy(pod)
    for c in new.status.conditions:
        if c.type == "Ready":
            c.status = "False"
            c.lastTransitionTime = rfc3339(now)
            break
    return new


@dataclasses.dataclass
class Health:
    heartbeat: tuple[str, str]
    probe: float  # local time we last saw the heartbeat change


# ------------------------------------------------------------------ the controller

class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    workers = 2
    resync_period = 5.0

    def __init__(self, client, *, nodes: Informer, leases: Informer, pods: Informer, recorder,
                 grace_period: float = 3.0, eviction_timeout: float = 10.0,
                 clock: Callable[[], float] = time.time):
        super().__init__()
        self.client = client
        self.nodes = nodes
        self.leases = leases
        self.pods = pods
        self.recorder = recorder.for_component(COMPONENT) if recorder is not None else None
        self.eviction_recorder = recorder.for_component(EVICTION_COMPONENT) if recorder is not None else None
        self.grace = grace_period
        self.eviction_timeout = eviction_timeout
        self.clock = clock
        self.health: dict[str, Health] = {}
        self._last_blind = 0.0  # the last time the lease informer was seen disconnected
        self._seen_ready: dict[str, str] = {}
        pods.add_index("node", index_node_name)
        nodes.add_handler(self._on_node)
        leases.add_handler(self._on_lease)
        pods.add_handler(self._on_pod)

    def all_keys(self):
        return list(self.nodes.cache.keys())

    def _on_node(self, event: str, node: Message, old: Message | None) -> None:
        self.enqueue(node.metadata.name)

    def _on_lease(self, event: str, lease: Message, old: Message | None) -> None:
        if lease.metadata.namespace == LEASE_NAMESPACE:
            self.enqueue(lease.metadata.name)

    def _on_pod(self, event: str, pod: Message, old: Message | None) -> None:
        name = pod.spec.nodeName
        if not name or event == "DELETED":
            return
        node = self.nodes.get(name)
        if node is None or ready_status(node) in ("False", "Unknown"):
            self.enqueue(name)

    # ------------------------------------------------------------ health bookkeeping

    def _observe(self, name: str, node: Message) -> Health:
        now = self.clock()
        hb = heartbeat(node, self.leases.get(f"{LEASE_NAMESPACE}/{name}"))
        h = self.health.get(name)
        if h is None or h.heartbeat != hb:
            h = self.health[name] = Health(hb, now)
        if not self.leases.connected:
            self._last_blind = now
        return h

    def _stale(self, h: Health) -> bool:
        """No heartbeat seen for the grace period, counting only time we could have heard one."""
        if not self.leases.connected:
            return False
        return self.clock() - max(h.probe, self._last_blind) > self.grace

    async def _watch_connection(self) -> None:
        """Note when the Lease informer is cut off from the API server (an API server restart,
        a partition): renewals made meanwhile reach us late, and the grace period of every
        node starts afresh once we hear again."""
        while True:
            if not self.leases.connected:
                self._last_blind = self.clock()
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        watchdog = asyncio.create_task(self._watch_connection(), name=f"{self.name}-connection")
        try:
            await super().run()
        finally:
            watchdog.cancel()

    def _fully_disrupted(self) -> bool:
        return not any(ready_status(n) == "True" for n in self.nodes.cache.values())

    # ------------------------------------------------------------ sync

    async def sync(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            self.health.pop(name, None)
            self._seen_ready.pop(name, None)
            await self._delete_orphaned_pods(name)
            return
        if name not in self._seen_ready and self.recorder is not None:
            self.recorder.normal(node, "RegisteredNode", f"Node {name} event: Registered Node {name} in Controller")
        h = self._observe(name, node)
        now = self.clock()

        cond = ready_condition(node)
        if self._stale(h) and (cond is None or cond.status != "Unknown"):
            node = await self.client.update_status(mark_unknown(node, now))

        status = ready_status(node)
        previous = self._seen_ready.get(name)
        self._seen_ready[name] = status
        if previous is not None and previous != status and self.recorder is not None:
            self.recorder.normal(node, "NodeNotReady" if status != "True" else "NodeReady",
                                 f"Node {name} status is now: {'NodeReady' if status == 'True' else 'NodeNotReady'}")

        taints = desired_taints(node, now)
        if list(node.spec.taints) != taints:
            new = copy(node)
            del new.spec.taints[:]
            new.spec.taints.extend(taints)
            node = await self.client.update(new)

        if status in ("False", "Unknown"):
            await self._fence_pods(node, now)
        if not self._stale(h):
            # Look again right after the grace period would run out.
            self.queue.add_after(name, max(0.05, h.probe + self.grace - now + 0.05))

    async def _fence_pods(self, node: Message, now: float) -> None:
        name = node.metadata.name
        pods = self.pods.by_index("node", name)
        ready = [p for p in pods if pod_ready(p)]
        if ready:
            results = await asyncio.gather(*(self._mark_not_ready(p, now) for p in ready), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, errors.NotFound):
                    raise r
        taint = noexecute_taint(node)
        if taint is None or not pods:
            return
        if self._fully_disrupted():
            log.warning("no node is ready: not evicting pods from %s (full disruption)", name)
            self.queue.add_after(name, 1.0)
            return
        added = parse_time(taint.timeAdded) or now
        due, wait = [], None
        for p in pods:
            delay = eviction_delay(p, taint, self.eviction_timeout)
            if delay is None:
                continue
            remaining = added + delay - now
            if remaining <= 0:
                due.append(p)
            else:
                wait = remaining if wait is None else min(wait, remaining)
        if due:
            results = await asyncio.gather(*(self._evict(p) for p in due), return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, errors.NotFound):
                    raise r
        if wait is not None:
            self.queue.add_after(name, wait + 0.05)

    async def _mark_not_ready(self, pod: Message, now: float) -> None:
        await self.client.update_status(not_ready_pod(pod, now))
        if self.recorder is not None:
            self.recorder.warning(pod, "NodeNotReady", "Node is not ready")

    async def _evict(self, pod: Message) -> None:
        await self.client.delete("Pod", pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                                 precondition_uid=pod.metadata.uid)
        if self.eviction_recorder is not None:
            self.eviction_recorder.normal(pod, "TaintManagerEviction",
                                          f"Marking for deletion Pod {pod.metadata.namespace}/{pod.metadata.name}")

    async def _delete_orphaned_pods(self, name: str) -> None:
        pods = self.pods.by_index("node", name) if name else []
        if not pods:
            return
        try:
            await self.client.get("Node", name)
            return  # the cache is behind: the node exists
        except errors.NotFound:
            pass
        for p in pods:
            try:
                await self.client.delete("Pod", p.metadata.name, p.metadata.namespace, grace_period_seconds=0,
                                         precondition_uid=p.metadata.uid)
            except errors.NotFound:
                pass

