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

`desired_*` and `ingress_status` are pure; the sync and its loop are kubemu.publish's.
"""
from __future__ import annotations

import logging

from kubemu import objects
from kubemu.client import Client
from kubemu.publish import Publisher as _Publisher
from kubemu.publish import (ensure, own_slice, service_differs, slice_differs, update_service,
                            update_slice)
from kubemu.ingress.routing import CLASS_NAME, CONTROLLER, DEFAULT_CLASS_ANNOTATION
from kubemu.v1 import objects_pb2 as pb

log = logging.getLogger("kubemu.ingress.publish")

NAMESPACE = "kube-system"
NAME = "ingress-kubemu"
SLICE_NAME = "ingress-kubemu-controller"
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
    return own_slice(svc, name=SLICE_NAME, manager=MANAGER, address=listen_ip, labels=LABELS,
                     ports=[(name, "TCP", port, name) for (name, _), port in zip(PORTS, (http_port, https_port))])


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


class Publisher(_Publisher):
    """The IngressClass, the LoadBalancer Service in front of us, and its EndpointSlice."""

    def __init__(self, client: Client, *, listen_ip: str, http_port: int, https_port: int):
        super().__init__(f"{NAMESPACE}/{NAME}", self.sync)
        self.client = client
        self.listen_ip = listen_ip
        self.http_port = http_port
        self.https_port = https_port

    async def sync(self) -> None:
        await ensure(self.client, desired_ingress_class())
        svc = await ensure(self.client, desired_service(self.http_port, self.https_port),
                           differs=service_differs, update=update_service)
        await ensure(self.client, desired_slice(svc, self.listen_ip, self.http_port, self.https_port),
                     differs=slice_differs, update=update_slice)
