"""Publishing the DNS server as the `kube-system/kube-dns` Service (with `--service-ip`).

The Service is selector-less with a fixed cluster IP and ports `dns` 53/UDP and `dns-tcp`
53/TCP; its EndpointSlice (managed by kubemu-dns, so the EndpointSlice controller leaves it
alone) points at the server's own listener, so every node agent's data plane forwards the VIP
to it. `desired_*` are pure; the sync and its loop are kubemu.publish's.
"""
from __future__ import annotations

import logging

from google.protobuf.message import Message

from kubemu import objects
from kubemu.client import Client
from kubemu.publish import Publisher as _Publisher
from kubemu.publish import (ensure, own_slice, service_differs, slice_differs, update_service,
                            update_slice)

log = logging.getLogger("kubemu.dns.publish")

NAMESPACE = "kube-system"
NAME = "kube-dns"
SLICE_NAME = "kube-dns-kubemu"
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


def desired_slice(svc: Message, listen_host: str, listen_port: int) -> Message:
    """The slice, owned by the Service (so garbage collection removes it with the Service)."""
    return own_slice(svc, name=SLICE_NAME, manager=MANAGER, address=listen_host,
                     ports=[("dns", "UDP", listen_port, ""), ("dns-tcp", "TCP", listen_port, "")])


class Publisher(_Publisher):
    def __init__(self, client: Client, *, service_ip: str, listen_host: str, listen_port: int):
        super().__init__(f"{NAMESPACE}/{NAME}", self.sync)
        self.client = client
        self.want_service = desired_service(service_ip)
        self.service_ip = service_ip
        self.listen_host, self.listen_port = listen_host, listen_port
        self._warned_ip = False

    async def sync(self) -> None:
        svc = await ensure(self.client, self.want_service, differs=service_differs, update=update_service)
        if svc.spec.clusterIP != self.service_ip and not self._warned_ip:
            self._warned_ip = True
            log.warning("Service %s/%s exists with cluster IP %s, not %s; leaving it as it is",
                        NAMESPACE, NAME, svc.spec.clusterIP, self.service_ip)
        await ensure(self.client, desired_slice(svc, self.listen_host, self.listen_port),
                     differs=slice_differs, update=update_slice)
