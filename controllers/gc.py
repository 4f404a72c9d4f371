"""The garbage collector: dependents whose owners are all gone are deleted (background).

An object's ownerReferences name its owners by kind, name and uid. When none of them exists
any more (same uid), the dependent is deleted with background propagation, so its own
dependents follow in turn (Deployment -> ReplicaSets -> pods, Service -> EndpointSlices).
References to owners that are gone while others live are removed instead. `--cascade=orphan`
needs nothing here: the API server drops the references to the deleted owner itself.

Absence is only believed when it is certain: an owner missing from the cache may simply not
have reached it yet (it was created just before its dependent), so the verdict is confirmed
with a GET against the API server, as Kubernetes' collector does; owners seen deleted (DELETED
events) are remembered by uid, which spares that GET in the common case. The dependent itself
is re-read from the API server before it is touched, and deletes carry uid and
resourceVersion preconditions: a dependent that changed meanwhile (orphaned, re-created under
the same name) is judged again, never hit by a stale verdict.

Keys are `Kind/namespace/name` (`Kind//name` for cluster-scoped objects).
"""
from __future__ import annotations

import collections
import logging

from google.protobuf.message import Message

from kubemu import errors, objects
from kubemu.informer import Informer

from kubemu.controllers.base import Controller, copy, index_owner_uids

log = logging.getLogger("kubemu.controllers.gc")


class GarbageCollector(Controller):
    name = "garbagecollector"
    workers = 2
    resync_period = 60.0

    def __init__(self, client, *, informers: dict[str, Informer], deleted_memory: int = 100_000):
        """`informers`: kind -> informer of every kind that can be an owner or a dependent."""
        super().__init__()
        self.client = client
        self.informers = informers
        self.deleted_uids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.deleted_memory = deleted_memory
        for kind, inf in informers.items():
            inf.add_index("owner-uid", index_owner_uids)
            inf.add_handler(self._handler(kind))

    def all_keys(self):
        for kind, inf in self.informers.items():
            for obj in inf.cache.values():
                if obj.metadata.ownerReferences:
                    yield gc_key_of(kind, obj)

    def _handler(self, kind: str):
        def handle(event: str, obj: Message, old: Message | None) -> None:
            if event == "DELETED":
                self._remember_deleted(obj.metadata.uid)
                for inf in self.informers.values():
                    for dep in inf.by_index("owner-uid", obj.metadata.uid):
                        self.enqueue(gc_key_of(inf.kind, dep))
                return
            if not obj.metadata.ownerReferences:
                return
            if event == "MODIFIED" and old is not None and \
                    list(old.metadata.ownerReferences) == list(obj.metadata.ownerReferences):
                return
            self.enqueue(gc_key_of(kind, obj))
        return handle

    def _remember_deleted(self, uid: str) -> None:
        self.deleted_uids[uid] = None
        while len(self.deleted_uids) > self.deleted_memory:
            self.deleted_uids.popitem(last=False)

    async def _owner_exists(self, ref: Message, namespace: str) -> bool:
        k = objects.KINDS.get(ref.kind)
        if k is None:
            return True  # a kind we do not serve: never collect on its account
        ns = namespace if k.namespaced else ""
        inf = self.informers.get(ref.kind)
        if inf is not None:
            owner = inf.get(f"{ns}/{ref.name}" if ns else ref.name)
            if owner is not None:
                return owner.metadata.uid == ref.uid
        if ref.uid in self.deleted_uids:
            return False
        try:
            owner = await self.client.get(ref.kind, ref.name, ns)
        except errors.NotFound:
            self._remember_deleted(ref.uid)
            return False
        return owner.metadata.uid == ref.uid

    async def _classify(self, obj: Message, ns: str) -> tuple[list, list]:
        alive, dangling = [], []
        for ref in obj.metadata.ownerReferences:
            (alive if await self._owner_exists(ref, ns) else dangling).append(ref)
        return alive, dangling

    async def sync(self, key: str) -> None:
        kind, ns, name = key.split("/", 2)
        inf = self.informers.get(kind)
        if inf is None:
            return
        obj = inf.get(f"{ns}/{name}" if ns else name)
        if obj is None or not obj.metadata.ownerReferences or obj.metadata.HasField("deletionTimestamp"):
            return
        alive, dangling = await self._classify(obj, ns)
        if not dangling:
            return
        # Our cache of the dependent may be behind its owner's: `--cascade=orphan` removes the
        # reference in the same transaction that deletes the owner, and the owner's DELETED
        # event can reach us before the dependent's MODIFIED one. So the verdict is taken
        # again on the dependent as the API server has it now (attemptToDeleteItem does this).
        try:
            live = await self.client.get(kind, name, ns)
        except errors.NotFound:
            return
        if live.metadata.uid != obj.metadata.uid or live.metadata.HasField("deletionTimestamp"):
            return
        alive, dangling = await self._classify(live, ns)
        if not dangling:
            return
        if not alive:
            log.info("deleting %s %s: its owners are gone", kind, key.split("/", 1)[1])
            try:
                await self.client.delete(kind, name, ns, propagation_policy="Background",
                                         precondition_uid=live.metadata.uid,
                                         precondition_resource_version=live.metadata.resourceVersion)
            except errors.NotFound:
                pass
            return
        obj = live
        new = copy(obj)
        del new.metadata.ownerReferences[:]
        new.metadata.ownerReferences.extend(alive)
        try:
            await self.client.update(new)
        except errors.NotFound:
            pass


def gc_key_of(kind: str, obj: Message) -> str:
    return f"{kind}/{obj.metadata.namespace}/{obj.metadata.name}"
