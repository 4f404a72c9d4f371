"""What every controller of the controller manager shares.

Rules of this package (STYLE.md, as Kubernetes' controllers):
- Informer handlers only enqueue keys (`namespace/name`); they never call the API.
- A worker runs `sync(key)`, which re-reads the current state from the informer caches and
  is level-triggered and idempotent: "not found" means clean up and return, and a sync that
  finds nothing to change writes nothing.
- Writes carry the cached resourceVersion, so a decision taken on a stale cache fails with a
  Conflict; the worker re-queues the key with backoff and the next sync starts from the
  (by then fresher) cache.
- Creates carry no resourceVersion, so they are fenced differently: after writing, a
  controller records the revision its write produced (`Expectations`) and does not sync that
  key again until the informers it reads have caught up to that revision. This is what keeps
  a ReplicaSet from creating its pods twice when it is synced again before the first pods
  reached the cache (client-go's "expectations", done with the global revision).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Iterable

from google.protobuf.message import Message

from kubemu import errors
from kubemu.informer import Informer
from kubemu.workqueue import WorkQueue, run_worker

log = logging.getLogger("kubemu.controllers")

POD_READY = "Ready"


# ------------------------------------------------------------------ small pure helpers

def copy(msg: Message) -> Message:
    """A private copy of a cached object: cache entries are shared and never mutated."""
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def controller_ref(obj: Message):
    """The ownerReference with controller=true, or None (an orphan)."""
    for ref in obj.metadata.ownerReferences:
        if ref.controller:
            return ref
    return None


def owner_ref(owner: Message) -> Message:
    """A controller reference to `owner`, as metav1.NewControllerRef builds it."""
    from kubemu.v1 import objects_pb2 as pb
    return pb.OwnerReference(apiVersion=owner.apiVersion, kind=owner.kind, name=owner.metadata.name,
                             uid=owner.metadata.uid, controller=True, blockOwnerDeletion=True)


def pod_condition(pod: Message, type_: str):
    for c in pod.status.conditions:
        if c.type == type_:
            return c
    return None


def pod_ready(pod: Message) -> bool:
    c = pod_condition(pod, POD_READY)
    return c is not None and c.status == "True"


def pod_terminal(pod: Message) -> bool:
    return pod.status.phase in ("Succeeded", "Failed")


def pod_active(pod: Message) -> bool:
    """Counts towards its owner's replicas: not finished and not being deleted."""
    return not pod_terminal(pod) and not pod.metadata.HasField("deletionTimestamp")


async def can_adopt(client, owner: Message) -> bool:
    """Kubernetes' RecheckDeletionTimestamp: before adopting orphans, read the owner from the API
    server, not the cache. A cached owner may already be deleted with `--cascade=orphan`, whose
    dependents lost their reference in the same write; adopting them back would point them at a
    deleted owner, and the garbage collector would delete what was meant to live on."""
    try:
        fresh = await client.get(owner.kind, owner.metadata.name, owner.metadata.namespace)
    except errors.NotFound:
        return False
    return fresh.metadata.uid == owner.metadata.uid and not fresh.metadata.HasField("deletionTimestamp")


# ------------------------------------------------------------------ index functions

def index_controller_uid(obj: Message) -> Iterable[str]:
    ref = controller_ref(obj)
    return (ref.uid,) if ref is not None else ()


def index_owner_uids(obj: Message) -> Iterable[str]:
    return tuple(ref.uid for ref in obj.metadata.ownerReferences)


def index_namespace(obj: Message) -> Iterable[str]:
    return (obj.metadata.namespace,)


def index_node_name(pod: Message) -> Iterable[str]:
    return (pod.spec.nodeName,)


# ------------------------------------------------------------------ expectations

class Expectations:
    """Per key, the revisions the informers must reach before the key is synced again.

    `informer.resource_version` is the last revision the informer applied. Our own write of
    an object of the informer's kind produced revision R, so once the informer reached R its
    cache shows that write and everything before it.
    """

    def __init__(self) -> None:
        self._want: dict[str, dict[int, tuple[Informer, int]]] = {}

    def wrote(self, key: str, informer: Informer, obj_or_rev: Message | int) -> None:
        rev = obj_or_rev if isinstance(obj_or_rev, int) else int(obj_or_rev.metadata.resourceVersion or 0)
        per = self._want.setdefault(key, {})
        cur = per.get(id(informer))
        if cur is None or cur[1] < rev:
            per[id(informer)] = (informer, rev)

    def satisfied(self, key: str) -> bool:
        per = self._want.get(key)
        if not per:
            return True
        for ident, (informer, rev) in list(per.items()):
            if informer.resource_version >= rev:
                del per[ident]
        if not per:
            del self._want[key]
            return True
        return False

    def forget(self, key: str) -> None:
        self._want.pop(key, None)


# ------------------------------------------------------------------ the controller shell

class Controller:
    """A work queue of keys, `workers` workers running `sync`, and an optional full resync."""

    name = "controller"
    workers = 1
    resync_period: float | None = None

    def __init__(self) -> None:
        self.queue = WorkQueue()
        self.expectations = Expectations()

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def all_keys(self) -> Iterable[str]:
        """Every key this controller manages, for the periodic resync."""
        return ()

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def _sync_one(self, key: str) -> None:
        """A Conflict means our cache was behind: retry soon from the (fresher) cache. It is
        expected under concurrent writers and not worth a warning or a growing backoff."""
        try:
            await self.sync(key)
        except errors.Conflict as e:
            log.debug("%s: %s: %s; retrying from the cache", self.name, key, e)
            self.queue.retry(key)

    async def _resync_loop(self) -> None:
        """Re-enqueue every key once per period, spread evenly over the period.

        Adding all keys at once would put a real change behind a thousand no-op syncs (the
        queue is FIFO): a latency spike every period. Trickled, the safety net costs nothing
        anyone can see.
        """
        assert self.resync_period
        while True:
            keys = list(self.all_keys())
            if not keys:
                await asyncio.sleep(self.resync_period)
                continue
            step = self.resync_period / len(keys)
            for key in keys:
                await asyncio.sleep(step)
                self.queue.add(key)

    async def run(self) -> None:
        """Run the workers until cancelled."""
        tasks = [asyncio.create_task(run_worker(self.queue, self._sync_one, name=self.name),
                                     name=f"{self.name}-{i}") for i in range(self.workers)]
        if self.resync_period:
            tasks.append(asyncio.create_task(self._resync_loop(), name=f"{self.name}-resync"))
        for key in list(self.all_keys()):
            self.queue.add(key)
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
