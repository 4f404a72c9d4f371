"""Publishing the DNS server as the `kube-system/kube-dns` Service (with `--service-ip`).

The Service is selector-less with a fixed cluster IP and ports `dns` 53/UDP and `dns-tcp`
53/TCP; its EndpointSlice (managed by kubemu-dns, so the EndpointSlice controller leaves it
alone) points at the server's own listener, so every node agent's data plane forwards the VIP
to it. `desired_*` are pure; `Publisher.sync` is level-triggered and idempotent: it compares
what exists with what should, writes only the difference, and runs again whenever either object
changes and on a periodic resync.
"""
from __future__ import annotations

import asyncio
import logging

from google.protobuf.message import Message

from kubemu import errors, objects
from kubemu.client import Client
from kubemu.dns.snapshot import SERVICE_NAME_LABEL

log = logging.getLogger("kubemu.dns.publish")

NAMESPACE = "kube-system"
NAME = "kube-dns"
SLICE_NAME = "kube-dns-kubemu"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGER = "kubemu-dns"
LABELS = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}


def desired_service(service_ip: str) -> Message:
    svc = objects.new("Service", NAME, NAMESPACE)
    svc.metadata.labels.update(LABELS)
    svc.spec.type = "ClusterIP"
    svc.spec.clusterIP = service_ip
    svc.spec.clusterIPs.append(service_ip)
    for name, proto in (("dns", "UDP"), ("dns-tcp", "TCP")):
        p = svc.spec.ports.add()
        p.name, p.protocol, p.port = name, proto, 53
        p.targetPort.CopyFrom(objects.int_or_string(53))
    return svc


def desired_slice(listen_host: str, listen_port: int) -> Message:
    sl = objects.new("EndpointSlice", SLICE_NAME, NAMESPACE)
    sl.metadata.labels[SERVICE_NAME_LABEL] = NAME
    sl.metadata.labels[MANAGED_BY_LABEL] = MANAGER
    sl.addressType = "IPv6" if ":" in listen_host else "IPv4"
    ep = sl.endpoints.add()
    ep.addresses.append(listen_host)
    ep.conditions.ready = True
    ep.conditions.serving = True
    ep.conditions.terminating = False
    for name, proto in (("dns", "UDP"), ("dns-tcp", "TCP")):
        p = sl.ports.add()
        p.name, p.protocol, p.port = name, proto, listen_port
    return sl


def desired_slice_for(base: Message, svc: Message) -> Message:
    """The slice, owned by the Service (so garbage collection removes it with the Service)."""
    sl = type(base)()
    sl.CopyFrom(base)
    ref = sl.metadata.ownerReferences.add()
    ref.apiVersion, ref.kind, ref.name, ref.uid = "v1", "Service", NAME, svc.metadata.uid
    ref.controller, ref.blockOwnerDeletion = True, True
    return sl


def service_needs_update(current: Message, want: Message) -> bool:
    """Ports and selector are ours to keep; the cluster IP is immutable, so never rewritten."""
    return (list(current.spec.ports) != list(want.spec.ports) or bool(current.spec.selector)
            or current.spec.type != want.spec.type)


def slice_needs_update(current: Message, want: Message) -> bool:
    return (list(current.endpoints) != list(want.endpoints) or list(current.ports) != list(want.ports)
            or current.addressType != want.addressType
            or list(current.metadata.ownerReferences) != list(want.metadata.ownerReferences)
            or any(current.metadata.labels.get(k) != v for k, v in want.metadata.labels.items()))


class Publisher:
    def __init__(self, client: Client, *, service_ip: str, listen_host: str, listen_port: int):
        self.client = client
        self.want_service = desired_service(service_ip)
        self.want_slice = desired_slice(listen_host, listen_port)
        self.service_ip = service_ip
        self._kick = asyncio.Event()
        self._warned_ip = False

    def kick(self) -> None:
        """Ask for a sync soon (from an informer handler)."""
        self._kick.set()

    async def run(self, resync: float = 30.0) -> None:
        backoff = 0.1
        while True:
            self._kick.clear()
            try:
                await self.sync()
                backoff = 0.1
                wait = resync
            except errors.ApiError as e:
                # Unavailable is expected while the API server starts alongside us
                level = logging.DEBUG if isinstance(e, errors.Unavailable) else logging.WARNING
                log.log(level, "publishing %s/%s: %s; retrying in %.1fs", NAMESPACE, NAME, e, backoff)
                wait, backoff = backoff, min(backoff * 2, 5.0)
            try:
                await asyncio.wait_for(self._kick.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def sync(self) -> None:
        c = self.client
        try:
            svc = await c.get("Service", NAME, NAMESPACE)
        except errors.NotFound:
            svc = None
        if svc is None:
            try:
                svc = await c.create(self.want_service)
                log.info("created Service %s/%s with cluster IP %s", NAMESPACE, NAME, self.service_ip)
            except errors.AlreadyExists:
                svc = await c.get("Service", NAME, NAMESPACE)
        else:
            if svc.spec.clusterIP != self.service_ip and not self._warned_ip:
                self._warned_ip = True
                log.warning("Service %s/%s exists with cluster IP %s, not %s; leaving it as it is",
                            NAMESPACE, NAME, svc.spec.clusterIP, self.service_ip)
            if service_needs_update(svc, self.want_service):
                del svc.spec.ports[:]
                svc.spec.ports.extend(self.want_service.spec.ports)
                svc.spec.selector.clear()
                svc.spec.type = self.want_service.spec.type
                svc = await c.update(svc)
        want = desired_slice_for(self.want_slice, svc)
        try:
            sl = await c.get("EndpointSlice", SLICE_NAME, NAMESPACE)
        except errors.NotFound:
            sl = None
        if sl is None:
            try:
                await c.create(want)
                log.info("created EndpointSlice %s/%s -> %s", NAMESPACE, SLICE_NAME,
                         want.endpoints[0].addresses[0])
            except errors.AlreadyExists:
                pass
        elif slice_needs_update(sl, want):
            del sl.endpoints[:]
            sl.endpoints.extend(want.endpoints)
            del sl.ports[:]
            sl.ports.extend(want.ports)
            sl.addressType = want.addressType
            sl.metadata.labels.update(want.metadata.labels)
            del sl.metadata.ownerReferences[:]
            sl.metadata.ownerReferences.extend(want.metadata.ownerReferences)
            await c.update(sl)
