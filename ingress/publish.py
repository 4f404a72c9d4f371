"""What the controller publishes about itself, so traffic and users can find it.

- the IngressClass `kubemu` (controller `kubemu.io/ingress-controller`), the cluster's default
  class, created when missing and otherwise left as the user keeps it;
- the Service `kube-system/ingress-kubemu`, type LoadBalancer, ports 80 (http) and 443 (https),
  selector-less: the cloud-lb gives it an external IP and forwards to the nodes' NodePorts;
- its EndpointSlice, pointing at the controller's own listeners, so every node agent forwards
  the NodePorts (and the ClusterIP) to the proxy: client -> LB -> NodePort -> proxy -> ClusterIP
  -> pod, the path of an ingress controller behind a cloud load balancer;
- `status.loadBalancer` of every Ingress of ours, copied from that Service's status (the address
  `kubemu get ingress` shows), as ingress-nginx's --publish-service does.

`desired_*` and `ingress_status` are pure. `Publisher.sync` is level-triggered: it reads the
current objects, writes only differences, and runs on every change of them and periodically.
"""
from __future__ import annotations

import asyncio
import logging

from kubemu import errors, objects
from kubemu.client import Client
from kubemu.ingress.routing import CLASS_NAME, CONTROLLER, DEFAULT_CLASS_ANNOTATION
from kubemu.v1 import objects_pb2 as pb

log = logging.getLogger("kubemu.ingress.publish")

NAMESPACE = "kube-system"
NAME = "ingress-kubemu"
SLICE_NAME = "ingress-kubemu-controller"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGER = "ingress-controller.kubemu.io"  # a label value: no "/"
LABELS = {"app.kubernetes.io/name": "ingress-kubemu", "app.kubernetes.io/component": "controller"}
PORTS = (("http", 80), ("https", 443))


def desired_ingress_class() -> pb.IngressClass:
    c = objects.new("IngressClass", CLASS_NAME)
    c.metadata.labels.update(LABELS)
    c.metadata.annotations[DEFAULT_CLASS_ANNOTATION] = "true"
    c.spec.controller = CONTROLLER
    return c


def desired_service(http_port: int, https_port: int) -> pb.Service:
    """targetPort says where the proxy listens; for a selector-less Service it is informative
    (data planes pair Service and EndpointSlice ports by name), but `describe` shows the truth."""
    svc = objects.new("Service", NAME, NAMESPACE)
    svc.metadata.labels.update(LABELS)
    svc.spec.type = "LoadBalancer"
    for (name, port), target in zip(PORTS, (http_port, https_port)):
        p = svc.spec.ports.add()
        p.name, p.protocol, p.port = name, "TCP", port
        p.appProtocol = name
        p.targetPort.CopyFrom(objects.int_or_string(target))
    return svc


def desired_slice(svc: pb.Service, listen_ip: str, http_port: int, https_port: int) -> pb.EndpointSlice:
    sl = objects.new("EndpointSlice", SLICE_NAME, NAMESPACE)
    sl.metadata.labels[SERVICE_NAME_LABEL] = NAME
    sl.metadata.labels[MANAGED_BY_LABEL] = MANAGER
    sl.metadata.labels.update(LABELS)
    ref = sl.metadata.ownerReferences.add()  # garbage-collected with the Service
    ref.apiVersion, ref.kind, ref.name, ref.uid = "v1", "Service", NAME, svc.metadata.uid
    ref.controller, ref.blockOwnerDeletion = True, True
    sl.addressType = "IPv6" if ":" in listen_ip else "IPv4"
    ep = sl.endpoints.add()
    ep.addresses.append(listen_ip)
    ep.conditions.ready = True
    ep.conditions.serving = True
    ep.conditions.terminating = False
    for (name, _), port in zip(PORTS, (http_port, https_port)):
        p = sl.ports.add()
        p.name, p.protocol, p.port, p.appProtocol = name, "TCP", port, name
    return sl


def _port_view(ports) -> list[tuple]:
    return [(p.name, p.protocol or "TCP", p.port, objects.ios_value(p.targetPort)) for p in ports]


def service_needs_update(current: pb.Service, want: pb.Service) -> bool:
    """Ports, type and the absence of a selector are ours; everything else (node ports,
    externalTrafficPolicy, annotations for the cloud-lb) is left as users and allocators set it."""
    return (_port_view(current.spec.ports) != _port_view(want.spec.ports)
            or current.spec.type != want.spec.type or bool(current.spec.selector))


def update_service(current: pb.Service, want: pb.Service) -> pb.Service:
    """`current` with our ports and type, keeping the node ports already allocated."""
    node_ports = {p.name: p.nodePort for p in current.spec.ports if p.nodePort}
    del current.spec.ports[:]
    for p in want.spec.ports:
        q = current.spec.ports.add()
        q.CopyFrom(p)
        if p.name in node_ports:
            q.nodePort = node_ports[p.name]
    current.spec.type = want.spec.type
    current.spec.selector.clear()
    return current


def slice_needs_update(current: pb.EndpointSlice, want: pb.EndpointSlice) -> bool:
    return (list(current.endpoints) != list(want.endpoints) or list(current.ports) != list(want.ports)
            or current.addressType != want.addressType
            or list(current.metadata.ownerReferences) != list(want.metadata.ownerReferences)
            or any(current.metadata.labels.get(k) != v for k, v in want.metadata.labels.items()))


def ingress_status(svc: pb.Service | None) -> pb.IngressLoadBalancerStatus:
    """The status of our Ingresses: the addresses the cloud-lb gave our Service."""
    out = pb.IngressLoadBalancerStatus()
    if svc is not None:
        for lb in svc.status.loadBalancer.ingress:
            i = out.ingress.add()
            if lb.ip:
                i.ip = lb.ip
            if lb.hostname:
                i.hostname = lb.hostname
    return out


def status_update(ing: pb.Ingress, want: pb.IngressLoadBalancerStatus | None,
                  ours_now: pb.IngressLoadBalancerStatus) -> pb.Ingress | None:
    """The Ingress to write back, or None when its status is right.

    `want` is None for an Ingress that is not ours: its status is cleared only when it still
    shows our address (it moved to another class), never when another controller wrote it.
    """
    current = ing.status.loadBalancer
    if want is None:
        if not current.ingress or list(current.ingress) != list(ours_now.ingress):
            return None
        want = pb.IngressLoadBalancerStatus()
    if list(current.ingress) == list(want.ingress):
        return None
    out = pb.Ingress()
    out.CopyFrom(ing)
    out.status.loadBalancer.CopyFrom(want)
    if not want.ingress:
        out.status.ClearField("loadBalancer")
    return out


class Publisher:
    """Keeps the IngressClass, the Service and its EndpointSlice as desired_* say."""

    def __init__(self, client: Client, *, listen_ip: str, http_port: int, https_port: int):
        self.client = client
        self.listen_ip = listen_ip
        self.http_port = http_port
        self.https_port = https_port
        self._kick = asyncio.Event()
        self.synced = asyncio.Event()

    def kick(self) -> None:
        self._kick.set()

    async def run(self, resync: float = 30.0) -> None:
        backoff = 0.1
        while True:
            self._kick.clear()
            try:
                await self.sync()
                self.synced.set()
                backoff, wait = 0.1, resync
            except errors.ApiError as e:
                log.warning("publishing %s/%s: %s; retrying in %.1fs", NAMESPACE, NAME, e, backoff)
                wait, backoff = backoff, min(backoff * 2, 5.0)
            try:
                await asyncio.wait_for(self._kick.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def sync(self) -> None:
        c = self.client
        try:
            await c.get("IngressClass", CLASS_NAME)
        except errors.NotFound:
            try:
                await c.create(desired_ingress_class())
                log.info("created IngressClass %s (default class, controller %s)", CLASS_NAME, CONTROLLER)
            except errors.AlreadyExists:
                pass
        want_svc = desired_service(self.http_port, self.https_port)
        try:
            svc = await c.get("Service", NAME, NAMESPACE)
        except errors.NotFound:
            try:
                svc = await c.create(want_svc)
                log.info("created Service %s/%s (LoadBalancer, ports 80 and 443)", NAMESPACE, NAME)
            except errors.AlreadyExists:
                svc = await c.get("Service", NAME, NAMESPACE)
        if service_needs_update(svc, want_svc):
            svc = await c.update(update_service(svc, want_svc))
            log.info("updated Service %s/%s", NAMESPACE, NAME)
        want = desired_slice(svc, self.listen_ip, self.http_port, self.https_port)
        try:
            sl = await c.get("EndpointSlice", SLICE_NAME, NAMESPACE)
        except errors.NotFound:
            try:
                await c.create(want)
                log.info("created EndpointSlice %s/%s -> %s (http %d, https %d)", NAMESPACE, SLICE_NAME,
                         self.listen_ip, self.http_port, self.https_port)
            except errors.AlreadyExists:
                pass
            return
        if slice_needs_update(sl, want):
            del sl.endpoints[:]
            sl.endpoints.extend(want.endpoints)
            del sl.ports[:]
            sl.ports.extend(want.ports)
            sl.addressType = want.addressType
            sl.metadata.labels.update(want.metadata.labels)
            del sl.metadata.ownerReferences[:]
            sl.metadata.ownerReferences.extend(want.metadata.ownerReferences)
            await c.update(sl)
