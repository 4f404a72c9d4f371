"""The EndpointSlice controller: keeps every selector Service's slices equal to its pods.

Wiring only; every decision is in endpointslice_reconciler.reconcile. Keys are Service keys.
- A pod change enqueues the Services whose selector matches the pod (old and new labels), and
  only when something an endpoint shows changed (IP, readiness, termination, node, hostname,
  ports, labels): a heartbeat-style status write costs nothing here.
- A slice change enqueues its Service unless it is the echo of this controller's own write
  (EndpointSliceTracker in Kubernetes): our writes would otherwise double the syncs.
- Before syncing a Service, the slice cache must have caught up with our last write for it,
  or the reconciler would see an old slice set and create duplicates. Kubernetes fails such a
  sync and retries it with backoff; here the key is parked instead, and the echo of our own
  write (which would otherwise be ignored) re-enqueues it the moment the cache has it: no
  backoff to wait out, no spinning.
- Services without a selector get no managed slices: ours are removed if the selector goes
  (Kubernetes leaves them behind; we prefer not to serve stale endpoints). Slices created by
  users (without our managed-by label) are never touched.
"""
from __future__ import annotations

import logging

from google.protobuf.message import Message

from kubemu import errors, objects
from kubemu.informer import Informer

from kubemu.controllers.base import Controller, index_node_name, pod_ready
from kubemu.controllers import endpointslice_reconciler as rec

log = logging.getLogger("kubemu.controllers.endpointslice")

COMPONENT = "endpoint-slice-controller"


def _pod_label_keys(pod: Message):
    ns = pod.metadata.namespace
    return [f"{ns}/{k}={v}" for k, v in pod.metadata.labels.items()]


def _service_selector_keys(svc: Message):
    ns = svc.metadata.namespace
    return [f"{ns}/{k}={v}" for k, v in svc.spec.selector.items()]


def _slice_service(s: Message):
    name = s.metadata.labels.get(rec.LABEL_SERVICE_NAME)
    return (f"{s.metadata.namespace}/{name}",) if name else ()


def selector_matches(selector, pod_labels) -> bool:
    """A Service selector (equality only) against a pod's labels."""
    for k, v in selector.items():
        if pod_labels.get(k) != v:
            return False
    return True


def endpoint_signature(pod: Message) -> tuple:
    """Everything about a pod that an endpoint (or slice membership) depends on."""
    return (pod.status.podIP, tuple(ip.ip for ip in pod.status.podIPs), pod_ready(pod),
            pod.metadata.HasField("deletionTimestamp"), pod.spec.nodeName, pod.spec.hostname,
            pod.spec.subdomain, rec.pod_terminal(pod), pod.metadata.uid,
            tuple((c.name, tuple((p.name, p.protocol, p.containerPort) for p in c.ports))
                  for c in pod.spec.containers))


class EndpointSliceController(Controller):
    name = "endpointslice"
    workers = 4
    resync_period = 60.0

    def __init__(self, client, *, services: Informer, pods: Informer, slices: Informer, nodes: Informer,
                 recorder, max_endpoints_per_slice: int = 100):
        super().__init__()
        self.client = client
        self.services = services
        self.pods = pods
        self.slices = slices
        self.nodes = nodes
        self.recorder = recorder.for_component(COMPONENT) if recorder is not None else None
        self.max_endpoints = max_endpoints_per_slice
        # slice key -> resourceVersion we wrote ("" for a delete): our own echoes
        self._own: dict[str, str] = {}
        # Service keys whose sync waits for the slice cache to catch up with our writes
        self.parked: set[str] = set()
        pods.add_index("labels", _pod_label_keys)
        pods.add_index("node", index_node_name)
        services.add_index("selector", _service_selector_keys)
        slices.add_index("service", _slice_service)
        services.add_handler(self._on_service)
        pods.add_handler(self._on_pod)
        slices.add_handler(self._on_slice)
        nodes.add_handler(self._on_node)

    # ------------------------------------------------------------ handlers (enqueue only)

    def all_keys(self):
        return list(self.services.cache.keys())

    def _on_service(self, event: str, svc: Message, old: Message | None) -> None:
        self.enqueue(objects.key(svc))

    def _services_for(self, pod: Message) -> set[str]:
        out = set()
        seen = set()
        for k in _pod_label_keys(pod):
            for svc in self.services.by_index("selector", k):
                key = objects.key(svc)
                if key in seen:
                    continue
                seen.add(key)
                if selector_matches(svc.spec.selector, pod.metadata.labels):
                    out.add(key)
        return out

    def _on_pod(self, event: str, pod: Message, old: Message | None) -> None:
        if event == "MODIFIED" and old is not None:
            same_labels = pod.metadata.labels == old.metadata.labels
            if same_labels and endpoint_signature(pod) == endpoint_signature(old):
                return
            keys = self._services_for(pod)
            if not same_labels:
                keys |= self._services_for(old)
        else:
            keys = self._services_for(pod)
        for key in keys:
            self.enqueue(key)

    def _on_slice(self, event: str, s: Message, old: Message | None) -> None:
        if s.metadata.labels.get(rec.LABEL_MANAGED_BY) != rec.CONTROLLER_NAME and (
                old is None or old.metadata.labels.get(rec.LABEL_MANAGED_BY) != rec.CONTROLLER_NAME):
            return
        keys = _slice_service(s) or (_slice_service(old) if old is not None else ())
        own = self._own.pop(objects.key(s), None)
        if own is not None and (own == "" if event == "DELETED" else own == s.metadata.resourceVersion):
            keys = [k for k in keys if k in self.parked]
        for key in keys:
            self.parked.discard(key)
            self.enqueue(key)

    def _on_node(self, event: str, node: Message, old: Message | None) -> None:
        if event == "MODIFIED" and old is not None and \
                node.metadata.labels.get(rec.LABEL_ZONE) == old.metadata.labels.get(rec.LABEL_ZONE):
            return
        keys = set()
        for pod in self.pods.by_index("node", node.metadata.name):
            keys |= self._services_for(pod)
        for key in keys:
            self.enqueue(key)

    # ------------------------------------------------------------ sync

    def _managed_slices(self, key: str) -> list[Message]:
        return [s for s in self.slices.by_index("service", key)
                if s.metadata.labels.get(rec.LABEL_MANAGED_BY) == rec.CONTROLLER_NAME]

    def _selected_pods(self, svc: Message) -> list[Message]:
        sel = svc.spec.selector
        ns = svc.metadata.namespace
        # Start from the smallest index bucket, then check the whole selector.
        best = None
        for k, v in sel.items():
            bucket = self.pods.by_index("labels", f"{ns}/{k}={v}")
            if best is None or len(bucket) < len(best):
                best = bucket
                if not best:
                    return []
        return [p for p in best or () if selector_matches(sel, p.metadata.labels)]

    async def sync(self, key: str) -> None:
        if not self.expectations.satisfied(key):
            self.parked.add(key)
            self.queue.add_after(key, 1.0)  # a safety net: the echo should come long before
            return
        self.parked.discard(key)
        svc = self.services.get(key)
        if svc is None:
            # The Service is gone: its slices go with it through their ownerReference (GC).
            self.expectations.forget(key)
            return
        if svc.spec.type == "ExternalName" or not svc.spec.selector:
            plan = rec.Plan(delete=self._managed_slices(key))
        else:
            plan = rec.reconcile(svc, self._selected_pods(svc), self._managed_slices(key),
                                 get_node=self.nodes.get, max_endpoints=self.max_endpoints)
        if not plan.empty():
            await self._apply(key, svc, plan)
        if plan.missing_nodes:
            self.queue.add_after(key, 1.0)

    async def _apply(self, key: str, svc: Message, plan: rec.Plan) -> None:
        ns = svc.metadata.namespace
        try:
            if not svc.metadata.HasField("deletionTimestamp"):
                for s in plan.create:
                    created = await self.client.create(s)
                    self._wrote(created)
            for s in plan.update:
                updated = await self.client.update(s)
                self._wrote(updated)
            for s in plan.delete:
                try:
                    deleted = await self.client.delete("EndpointSlice", s.metadata.name, ns,
                                                       precondition_uid=s.metadata.uid)
                    self._own[objects.key(s)] = ""
                    self.expectations.wrote(key, self.slices, deleted)
                except errors.NotFound:
                    pass
        except errors.Forbidden as e:
            # e.g. the namespace is terminating: creates keep failing; drop the key.
            log.info("endpointslices for %s: %s", key, e)
        except (errors.Conflict, errors.AlreadyExists):
            raise
        except errors.ApiError as e:
            if self.recorder is not None and not isinstance(e, errors.Unavailable):
                self.recorder.warning(svc, "FailedToUpdateEndpointSlices",
                                      f"Error updating Endpoint Slices for Service {key}: {e}")
            raise

    def _wrote(self, s: Message) -> None:
        skey = objects.key(s)
        self._own[skey] = s.metadata.resourceVersion
        svc = s.metadata.labels.get(rec.LABEL_SERVICE_NAME)
        self.expectations.wrote(f"{s.metadata.namespace}/{svc}", self.slices, s)

