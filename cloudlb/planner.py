"""What a load balancer should look like: a pure function of a Service, the Nodes and its slices.

Rules of this module: no I/O, no clock; every value it returns is frozen and compares by value,
so the controller can tell a no-op change (same plan) from a real one.

The semantics are a cloud provider's (Kubernetes' service controller plus a network load
balancer such as AWS NLB or GCE's target pools):
- A Service is ours when it is of type LoadBalancer and has no `loadBalancerClass`, or ours.
  It keeps needing cleanup while it carries the finalizer and no longer wants a load balancer
  (deleted, or its type changed).
- Every Service port is one listener on `EXTERNAL_IP:port`. Its targets are the NodePorts of
  the nodes that are Ready, have an InternalIP and are not labelled
  `node.kubernetes.io/exclude-from-external-load-balancers` (the service controller's node
  predicates).
- Each target carries the health probe that decides whether it gets traffic:
  externalTrafficPolicy Cluster: a TCP connect to `NODE_IP:nodePort` (for a UDP port, which
  cannot be probed with a connect, the node agent's own `/healthz` on its kubelet port, as GCE
  probes kube-proxy's healthz for UDP);
  externalTrafficPolicy Local: `GET NODE_IP:healthCheckNodePort/healthz` answering 200, which
  the node agent gives only while it has local endpoints.
- `allocateLoadBalancerNodePorts: false` leaves ports without a nodePort: those go straight to
  the ready endpoints of the Service's EndpointSlices (container-native load balancing), each
  probed with a TCP connect.
- With Local the backend must see the client's address, so the load balancer binds its
  outgoing socket to it; with Cluster it uses its own external IP (the node masquerades anyway).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from google.protobuf.message import Message

LOAD_BALANCER = "LoadBalancer"
FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
ANNOTATION_IP = "kubemu.io/load-balancer-ip"
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
IP_MODE = "Proxy"  # this load balancer is a proxy: traffic arrives with the LB IP as destination
PROTOCOLS = ("TCP", "UDP")

TCP_PROBE, HTTP_PROBE = "tcp", "http"


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Probe:
    """One health check; several targets (and load balancers) may share it."""

    kind: str  # "tcp" or "http"
    ip: str
    port: int
    path: str = ""

    def __str__(self) -> str:
        return f"{self.kind}://{self.ip}:{self.port}{self.path}"


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Target:
    ip: str
    port: int
    probe: Probe | None  # None: always eligible (its readiness is already in the plan)
    name: str = ""       # node name, or pod name for direct endpoints

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclasses.dataclass(frozen=True, slots=True)
class ListenerPlan:
    protocol: str
    port: int
    targets: tuple[Target, ...]
    preserve_client_ip: bool
    via_node_ports: bool

    @property
    def key(self) -> tuple[str, int]:
        return self.protocol, self.port


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    listeners: tuple[ListenerPlan, ...]
    skipped: tuple[str, ...] = ()  # ports that cannot be served, with why (for an Event)

    def probes(self) -> set[Probe]:
        return {t.probe for lp in self.listeners for t in lp.targets if t.probe is not None}


# ------------------------------------------------------------------ which Services


def is_ours(svc: Message, lb_class: str | None) -> bool:
    """The class part only: no class means the default implementation, which we are."""
    if not svc.spec.HasField("loadBalancerClass"):
        return True
    return lb_class is not None and svc.spec.loadBalancerClass == lb_class


def wants_load_balancer(svc: Message, lb_class: str | None) -> bool:
    return (svc.spec.type == LOAD_BALANCER and is_ours(svc, lb_class)
            and not svc.metadata.HasField("deletionTimestamp"))


def has_finalizer(svc: Message) -> bool:
    return FINALIZER in svc.metadata.finalizers


def requested_ip(svc: Message) -> str | None:
    return svc.spec.loadBalancerIP or svc.metadata.annotations.get(ANNOTATION_IP) or None


def ingress_ips(svc: Message) -> list[str]:
    return [i.ip for i in svc.status.loadBalancer.ingress if i.ip]


def status_patch(ip: str | None) -> dict:
    """The merge patch (status subresource) that publishes `ip`, or clears the status."""
    if ip is None:
        return {"status": {"loadBalancer": None}}
    return {"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": IP_MODE}]}}}


def status_matches(svc: Message, ip: str | None) -> bool:
    ingress = svc.status.loadBalancer.ingress
    if ip is None:
        return len(ingress) == 0
    return len(ingress) == 1 and ingress[0].ip == ip and ingress[0].ipMode == IP_MODE \
        and not ingress[0].hostname and not ingress[0].ports


# ------------------------------------------------------------------ nodes


def node_ip(node: Message) -> str | None:
    for a in node.status.addresses:
        if a.type == "InternalIP" and a.address:
            return a.address
    return None


def node_ready(node: Message) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def kubelet_port(node: Message) -> int:
    return node.status.daemonEndpoints.kubeletEndpoint.Port


def eligible_nodes(nodes: Iterable[Message]) -> tuple[tuple[str, str, int], ...]:
    """(name, ip, kubelet port) of the nodes a load balancer sends to, sorted by name."""
    out = []
    for n in nodes:
        ip = node_ip(n)
        if (ip is None or not node_ready(n) or EXCLUDE_LABEL in n.metadata.labels
                or n.metadata.HasField("deletionTimestamp")):
            continue
        out.append((n.metadata.name, ip, kubelet_port(n)))
    return tuple(sorted(out))


# ------------------------------------------------------------------ endpoints


def ready_endpoints(slices: Iterable[Message], port_name: str, protocol: str) -> tuple[Target, ...]:
    """Ready endpoints of one Service port, as (ip, resolved port), sorted and de-duplicated.

    An unset `ready` condition means ready, as the EndpointSlice API says.
    """
    found: dict[tuple[str, int], Target] = {}
    for sl in slices:
        if sl.addressType and sl.addressType != "IPv4":
            continue
        port = next((p.port for p in sl.ports
                     if p.name == port_name and (p.protocol or "TCP") == protocol and p.HasField("port")), None)
        if port is None:
            continue
        for e in sl.endpoints:
            c = e.conditions
            if c.HasField("ready") and not c.ready:
                continue
            if not e.addresses:
                continue
            ip = e.addresses[0]
            probe = Probe(TCP_PROBE, ip, port) if protocol == "TCP" else None
            found[(ip, port)] = Target(ip, port, probe, e.targetRef.name if e.HasField("targetRef") else "")
    return tuple(sorted(found.values()))


# ------------------------------------------------------------------ the plan


def plan(svc: Message, nodes: Iterable[Message], slices: Iterable[Message]) -> Plan:
    spec = svc.spec
    local = spec.externalTrafficPolicy == "Local"
    node_list = eligible_nodes(nodes)
    listeners: list[ListenerPlan] = []
    skipped: list[str] = []
    seen: set[tuple[str, int]] = set()
    for p in spec.ports:
        protocol = p.protocol or "TCP"
        if protocol not in PROTOCOLS:
            skipped.append(f"port {p.port}/{protocol}: protocol {protocol} is not supported by this load balancer")
            continue
        if (protocol, p.port) in seen:
            continue
        seen.add((protocol, p.port))
        if p.nodePort:
            targets = []
            for name, ip, kport in node_list:
                if local and spec.healthCheckNodePort:
                    probe = Probe(HTTP_PROBE, ip, spec.healthCheckNodePort, "/healthz")
                elif protocol == "TCP":
                    probe = Probe(TCP_PROBE, ip, p.nodePort)
                elif kport:
                    probe = Probe(HTTP_PROBE, ip, kport, "/healthz")
                else:
                    probe = None
                targets.append(Target(ip, p.nodePort, probe, name))
            listeners.append(ListenerPlan(protocol, p.port, tuple(targets), local, True))
        else:
            listeners.append(ListenerPlan(protocol, p.port, ready_endpoints(slices, p.name, protocol),
                                          local, False))
    return Plan(tuple(listeners), tuple(skipped))
