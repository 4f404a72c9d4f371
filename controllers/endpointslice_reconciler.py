"""The EndpointSlice reconciler: from a Service, its pods and its current slices to a plan.

Pure: no I/O, no clock. It follows Kubernetes' reconciler (staging/src/k8s.io/endpointslice/
reconciler.go) step for step, because the slices it produces are what users, DNS and the
proxies read, and because its goal is *minimal change*:
- Endpoints are grouped by the set of ports they resolve to (a named targetPort is resolved
  per pod, so pods that map "http" to different numbers land in different slices).
- For each port set: existing slices keep the endpoints that are still wanted (updated in
  place when an endpoint changed) and drop the others; a slice left empty is deleted. New
  endpoints first fill the slices that are being updated anyway, then the unchanged slice
  that fits them most closely, and only then a new slice. So a pod coming or going rewrites
  one slice, never reshuffles the rest.
- A create paired with a delete becomes an update of the slice that would be deleted (fewer
  writes, and a watcher sees one MODIFIED instead of ADDED+DELETED).
- A Service with no endpoints at all keeps one empty "placeholder" slice.
Endpoints are identified by (addresses, hostname, pod namespace/name), as Kubernetes hashes
them; an endpoint whose other fields (conditions, nodeName, zone, targetRef uid) changed is
rewritten in place.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

from google.protobuf.message import Message

from kubemu import objects
from kubemu.v1 import objects_pb2 as pb

from kubemu.controllers.base import copy, owner_ref, pod_ready, pod_terminal

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_ZONE = "topology.kubernetes.io/zone"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
RESERVED_LABELS = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS)
ADDRESS_TYPE = "IPv4"

PortKey = tuple[tuple[str, str, int, str], ...]
EndpointKey = tuple[tuple[str, ...], str, str, str]


@dataclasses.dataclass
class Plan:
    create: list[pb.EndpointSlice] = dataclasses.field(default_factory=list)
    update: list[pb.EndpointSlice] = dataclasses.field(default_factory=list)
    delete: list[pb.EndpointSlice] = dataclasses.field(default_factory=list)
    # pods skipped because their Node is not (yet) in the cache: sync again later
    missing_nodes: list[str] = dataclasses.field(default_factory=list)

    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


# ------------------------------------------------------------------ pods -> endpoints

def should_pod_be_in_endpoints(pod: Message) -> bool:
    """Terminal pods and pods without an IP have no endpoint; terminating ones still do."""
    if pod_terminal(pod):
        return False
    return bool(pod.status.podIP or len(pod.status.podIPs))


def find_port(pod: Message, sp: Message) -> int | None:
    """The pod port a Service port targets (podutil.FindPort): a number, or a named port
    looked up in the pod's containers with the same protocol."""
    proto = sp.protocol or "TCP"
    if sp.HasField("targetPort"):
        tp = sp.targetPort
        if tp.type == 1:
            for c in pod.spec.containers:
                for cp in c.ports:
                    if cp.name == tp.strVal and (cp.protocol or "TCP") == proto:
                        return cp.containerPort
            return None
        if tp.intVal:
            return tp.intVal
    return sp.port


def endpoint_ports(service: Message, pod: Message) -> list[pb.EndpointPort]:
    out = []
    for sp in service.spec.ports:
        num = find_port(pod, sp)
        if num is None:
            continue
        ep = pb.EndpointPort(name=sp.name, protocol=sp.protocol or "TCP", port=num)
        if sp.HasField("appProtocol"):
            ep.appProtocol = sp.appProtocol
        out.append(ep)
    return out


def port_key(ports: Iterable[Message]) -> PortKey:
    return tuple(sorted((p.name, p.protocol or "TCP", p.port, p.appProtocol) for p in ports))


def service_ip_set(service: Message) -> bool:
    return service.spec.clusterIP not in ("", "None")


def should_set_hostname(pod: Message, service: Message) -> bool:
    return (bool(pod.spec.hostname) and pod.spec.subdomain == service.metadata.name
            and pod.metadata.namespace == service.metadata.namespace)


def pod_to_endpoint(pod: Message, node: Message | None, service: Message) -> pb.Endpoint:
    serving = pod_ready(pod)
    terminating = pod.metadata.HasField("deletionTimestamp")
    # "ready" is never true for a terminating pod, unless the Service publishes not-ready ones.
    ready = service.spec.publishNotReadyAddresses or (serving and not terminating)
    ep = pb.Endpoint()
    if pod.status.podIPs:
        ep.addresses.extend(ip.ip for ip in pod.status.podIPs if ":" not in ip.ip)
    elif pod.status.podIP and ":" not in pod.status.podIP:
        ep.addresses.append(pod.status.podIP)
    ep.conditions.ready = ready
    ep.conditions.serving = serving
    ep.conditions.terminating = terminating
    ep.targetRef.kind = "Pod"
    ep.targetRef.namespace = pod.metadata.namespace
    ep.targetRef.name = pod.metadata.name
    ep.targetRef.uid = pod.metadata.uid
    if node is not None and node.metadata.labels.get(LABEL_ZONE):
        ep.zone = node.metadata.labels[LABEL_ZONE]
    if pod.spec.nodeName:
        ep.nodeName = pod.spec.nodeName
    if should_set_hostname(pod, service):
        ep.hostname = pod.spec.hostname
    return ep


def endpoint_key(ep: Message) -> EndpointKey:
    return (tuple(sorted(ep.addresses)), ep.hostname, ep.targetRef.namespace, ep.targetRef.name)


# ------------------------------------------------------------------ slice metadata

def slice_labels(existing: Message | None, service: Message) -> tuple[dict[str, str], bool]:
    """The labels a slice of `service` must carry, and whether `existing`'s differ.

    The Service's own labels are copied (minus the reserved ones), plus service-name,
    managed-by and, for headless Services, the headless label.
    """
    svc_labels = {k: v for k, v in service.metadata.labels.items() if k not in RESERVED_LABELS}
    changed = False
    if existing is not None:
        ep_labels = {k: v for k, v in existing.metadata.labels.items() if k not in RESERVED_LABELS}
        changed = ep_labels != svc_labels
    if not service_ip_set(service):
        svc_labels[LABEL_HEADLESS] = ""
    svc_labels[LABEL_SERVICE_NAME] = service.metadata.name
    svc_labels[LABEL_MANAGED_BY] = CONTROLLER_NAME
    return svc_labels, changed


def new_slice(service: Message, ports: Iterable[Message]) -> pb.EndpointSlice:
    s = objects.new("EndpointSlice", namespace=service.metadata.namespace)
    s.metadata.generateName = f"{service.metadata.name}-"
    s.metadata.ownerReferences.append(owner_ref(service))
    labels, _ = slice_labels(None, service)
    s.metadata.labels.update(labels)
    s.addressType = ADDRESS_TYPE
    s.ports.extend(ports)
    return s


def owned_by(slice_: Message, service: Message) -> bool:
    return any(r.uid == service.metadata.uid for r in slice_.metadata.ownerReferences)


def _is_placeholder_of(slice_: Message, service: Message) -> bool:
    """placeholderSliceCompare: no ports, no endpoints, same namespace, labels and owners."""
    want = new_slice(service, ())
    return (not slice_.ports and not slice_.endpoints and slice_.addressType == ADDRESS_TYPE
            and slice_.metadata.namespace == want.metadata.namespace
            and dict(slice_.metadata.labels) == dict(want.metadata.labels)
            and list(slice_.metadata.ownerReferences) == list(want.metadata.ownerReferences))


# ------------------------------------------------------------------ the reconciler

def reconcile(service: Message, pods: Iterable[Message], existing: Iterable[Message], *,
              get_node: Callable[[str], Message | None], max_endpoints: int = 100) -> Plan:
    """What to create, update and delete so `existing` slices match `service` and `pods`.

    `existing` are the slices labelled with the Service's name and managed by this
    controller; `pods` those matching its selector (in its namespace).
    """
    plan = Plan()
    existing = sorted(existing, key=lambda s: s.metadata.name)
    by_port: dict[PortKey, list[Message]] = {}
    for s in existing:
        if owned_by(s, service):
            by_port.setdefault(port_key(s.ports), []).append(s)
        else:
            plan.delete.append(s)  # left over from an older Service of the same name

    desired: dict[PortKey, dict[EndpointKey, pb.Endpoint]] = {}
    desired_ports: dict[PortKey, list[pb.EndpointPort]] = {}
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        if not should_pod_be_in_endpoints(pod):
            continue
        ports = endpoint_ports(service, pod)
        pk = port_key(ports)
        desired.setdefault(pk, {})
        desired_ports.setdefault(pk, ports)
        node = get_node(pod.spec.nodeName) if pod.spec.nodeName else None
        if node is None and not service.spec.publishNotReadyAddresses:
            plan.missing_nodes.append(pod.spec.nodeName)
            continue
        ep = pod_to_endpoint(pod, node, service)
        if ep.addresses:
            desired[pk][endpoint_key(ep)] = ep

    for pk, want in desired.items():
        c, u, d = _reconcile_port_set(service, by_port.get(pk, []), want, desired_ports[pk], max_endpoints)
        plan.create += c
        plan.update += u
        plan.delete += d
    for pk, slices in by_port.items():
        if pk not in desired:
            plan.delete += slices

    if len(existing) == len(plan.delete) and not plan.create:
        if len(plan.delete) == 1 and _is_placeholder_of(plan.delete[0], service):
            plan.delete = []
        else:
            plan.create.append(new_slice(service, ()))

    # Prefer updating a slice that would be deleted over creating a new one.
    i = 0
    while i < len(plan.delete) and plan.create:
        doomed = plan.delete[i]
        if doomed.addressType == ADDRESS_TYPE and owned_by(doomed, service):
            s = plan.create.pop()
            s.metadata.name = doomed.metadata.name
            s.metadata.ClearField("generateName")
            s.metadata.resourceVersion = doomed.metadata.resourceVersion
            plan.update.append(s)
            del plan.delete[i]
        else:
            i += 1
    return plan


def _reconcile_port_set(service: Message, existing: list[Message], want: dict[EndpointKey, pb.Endpoint],
                        ports: list[pb.EndpointPort], max_endpoints: int):
    by_name: dict[str, Message] = {}
    unchanged: list[str] = []
    to_update: list[str] = []
    to_delete: list[str] = []

    # 1. Keep wanted endpoints (rewritten when they changed), drop the others.
    for s in existing:
        name = s.metadata.name
        by_name[name] = s
        kept: list[pb.Endpoint] = []
        changed = False
        for ep in s.endpoints:
            got = want.pop(endpoint_key(ep), None)
            if got is not None:
                kept.append(got)
                if got != ep:
                    changed = True
        labels, labels_changed = slice_labels(s, service)
        if changed or len(kept) != len(s.endpoints):
            if not kept:
                to_delete.append(name)
            else:
                new = copy(s)
                del new.endpoints[:]
                new.endpoints.extend(kept)
                new.metadata.labels.clear()
                new.metadata.labels.update(labels)
                by_name[name] = new
                to_update.append(name)
        elif labels_changed:
            new = copy(s)
            new.metadata.labels.clear()
            new.metadata.labels.update(labels)
            by_name[name] = new
            to_update.append(name)
        else:
            unchanged.append(name)

    remaining = list(want.values())

    # 2. Fill the slices being updated anyway, fullest first.
    if remaining and to_update:
        for name in sorted(to_update, key=lambda n: -len(by_name[n].endpoints)):
            s = by_name[name]
            while remaining and len(s.endpoints) < max_endpoints:
                s.endpoints.append(remaining.pop(0))

    # 3. Fit the rest into the unchanged slice that fits most closely, else new slices.
    creates: list[pb.EndpointSlice] = []
    while remaining:
        target = None
        if len(remaining) < max_endpoints and unchanged:
            target = _slice_to_fill([by_name[n] for n in unchanged], len(remaining), max_endpoints)
        if target is None:
            target = new_slice(service, ports)
            creates.append(target)
        else:
            target = copy(target)
            by_name[target.metadata.name] = target
            unchanged.remove(target.metadata.name)
            to_update.append(target.metadata.name)
        while remaining and len(target.endpoints) < max_endpoints:
            target.endpoints.append(remaining.pop(0))

    return creates, [by_name[n] for n in to_update], [by_name[n] for n in to_delete]


def _slice_to_fill(slices: list[Message], n: int, max_endpoints: int) -> Message | None:
    """getSliceToFill: the slice with the least room left that still takes all n endpoints."""
    best, best_diff = None, max_endpoints
    for s in slices:
        diff = max_endpoints - (n + len(s.endpoints))
        if 0 <= diff < best_diff:
            best, best_diff = s, diff
            if diff == 0:
                break
    return best
