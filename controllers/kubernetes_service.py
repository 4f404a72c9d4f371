"""The `default/kubernetes` Service and its EndpointSlice, pointing at the API server.

In Kubernetes the API server maintains these itself; here the API server is a pure store, so
the controller manager does it, with the same shapes: the Service has the first address of the
service CIDR as its ClusterIP, one port 443 named `https` targeting the API server's port, and
no selector; its EndpointSlice is named `kubernetes`, labelled only with the service name (it
is not managed by the EndpointSlice controller) and lists the API server's address as ready.
Only the fields Kubernetes reconciles are corrected (ports, type, the endpoint); anything else
a user or the API server defaulted is left alone. Resynced every 10 s, as Kubernetes does.
"""
from __future__ import annotations

import ipaddress
import logging
import socket

from google.protobuf.message import Message

from kubemu import errors, objects
from kubemu.informer import Informer
from kubemu.v1 import objects_pb2 as pb

from kubemu.controllers.base import Controller, copy

log = logging.getLogger("kubemu.controllers.kubernetes_service")

NAMESPACE, NAME = "default", "kubernetes"
KEY = f"{NAMESPACE}/{NAME}"


def first_ip(cidr: str) -> str:
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address + 1)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """`host:port` -> (IPv4 address, port); a host name is resolved once."""
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = socket.gethostbyname(host)
    return host, int(port)


def desired_service(cluster_ip: str, api_port: int) -> pb.Service:
    svc = objects.new("Service", NAME, NAMESPACE)
    svc.metadata.labels.update({"component": "apiserver", "provider": "kubernetes"})
    svc.spec.type = "ClusterIP"
    svc.spec.clusterIP = cluster_ip
    svc.spec.clusterIPs.append(cluster_ip)
    svc.spec.sessionAffinity = "None"
    svc.spec.ports.add(name="https", protocol="TCP", port=443, targetPort=objects.int_or_string(api_port))
    return svc


def service_update(existing: Message, want: Message) -> Message | None:
    """The existing Service with the ports and type we own corrected, or None if it is right."""
    if list(existing.spec.ports) == list(want.spec.ports) and existing.spec.type == want.spec.type:
        return None
    new = copy(existing)
    del new.spec.ports[:]
    new.spec.ports.extend(want.spec.ports)
    new.spec.type = want.spec.type
    return new


def desired_slice(ip: str, port: int) -> pb.EndpointSlice:
    s = objects.new("EndpointSlice", NAME, NAMESPACE)
    s.metadata.labels["kubernetes.io/service-name"] = NAME
    s.addressType = "IPv4"
    ep = s.endpoints.add()
    ep.addresses.append(ip)
    ep.conditions.ready = True
    s.ports.add(name="https", protocol="TCP", port=port)
    return s


def slice_update(existing: Message, want: Message) -> Message | None:
    if (list(existing.endpoints) == list(want.endpoints) and list(existing.ports) == list(want.ports)
            and existing.addressType == want.addressType
            and existing.metadata.labels.get("kubernetes.io/service-name") == NAME):
        return None
    new = copy(existing)
    new.addressType = want.addressType
    del new.endpoints[:]
    new.endpoints.extend(want.endpoints)
    del new.ports[:]
    new.ports.extend(want.ports)
    new.metadata.labels["kubernetes.io/service-name"] = NAME
    return new


class KubernetesServiceController(Controller):
    name = "kubernetes-service"
    workers = 1
    resync_period = 10.0

    def __init__(self, client, *, services: Informer, slices: Informer, service_cidr: str,
                 apiserver_endpoint: str):
        super().__init__()
        self.client = client
        self.services = services
        self.slices = slices
        self.cluster_ip = first_ip(service_cidr)
        self.ip, self.port = split_endpoint(apiserver_endpoint)
        services.add_handler(self._on_change)
        slices.add_handler(self._on_change)

    def all_keys(self):
        return [KEY]

    def _on_change(self, event: str, obj: Message, old: Message | None) -> None:
        if obj.metadata.namespace == NAMESPACE and obj.metadata.name == NAME:
            self.enqueue(KEY)

    async def sync(self, key: str) -> None:
        want = desired_service(self.cluster_ip, self.port)
        svc = self.services.get(KEY)
        if svc is None:
            try:
                await self.client.create(want)
                log.info("created Service %s with ClusterIP %s", KEY, self.cluster_ip)
            except errors.AlreadyExists:
                pass  # the cache is behind; the next sync compares
        else:
            upd = service_update(svc, want)
            if upd is not None:
                await self.client.update(upd)
        want_slice = desired_slice(self.ip, self.port)
        s = self.slices.get(KEY)
        if s is None:
            try:
                await self.client.create(want_slice)
            except errors.AlreadyExists:
                pass
        else:
            upd = slice_update(s, want_slice)
            if upd is not None:
                await self.client.update(upd)
