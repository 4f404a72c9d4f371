"""Which listeners should exist: a pure function of one Service, its EndpointSlices and this node.

Rules of this module: no I/O, no clock, no mutable globals; every value it returns is frozen
and compares by value, so the proxy can tell a no-op change (same plan) from a real one.

The semantics are kube-proxy's (pkg/proxy: service and endpoint-slice change trackers,
CategorizeEndpoints), mapped onto listening sockets:
- a Service is unproxied when it has the `service.kubernetes.io/service-proxy-name` or the
  `service.kubernetes.io/headless` label, no cluster IP (headless), or type ExternalName;
- every TCP/UDP port gets a listener on `clusterIP:port` (shared by all agents), on
  `NODE_IP:nodePort` (this agent only) and on `externalIP:port` (shared);
- a listener exists only while it has endpoints to send traffic to: no endpoints means nobody
  listens, so the client gets "connection refused" (TCP RST / ICMP port unreachable), the
  nearest thing to the REJECT rule kube-proxy installs;
- traffic to the cluster IP is "internal" (internalTrafficPolicy), traffic to a node port or
  an external IP is "external" (externalTrafficPolicy). A Local policy restricts it to
  endpoints on the node the traffic is for; a Cluster external policy hides the client
  address behind the node's IP, as kube-proxy's masquerade does.
"""
from __future__ import annotations

import bisect
import dataclasses
import ipaddress
from typing import Iterable

from google.protobuf.message import Message

PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

PROTOCOLS = ("TCP", "UDP")

# Roles of a listener (which address of the Service it answers on).
CLUSTER_IP = "clusterIP"
NODE_PORT = "nodePort"
EXTERNAL_IP = "externalIP"

# Whose address the backend sees.
SOURCE_CLIENT = "client"
SOURCE_NODE = "node"

DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds; Kubernetes' default for sessionAffinity ClientIP


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int
    node: str = ""
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class PortKey:
    """One port of one Service: kube-proxy's ServicePortName."""

    namespace: str
    name: str
    port: str  # the Service port's name ("" for a single unnamed port)
    protocol: str

    @property
    def service(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port}" if self.port else f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class ListenerKey:
    protocol: str
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}/{self.protocol}"


@dataclasses.dataclass(frozen=True, slots=True)
class Frontend:
    """What a listener does with what it accepts."""

    port_key: PortKey
    role: str     # CLUSTER_IP, NODE_PORT or EXTERNAL_IP
    source: str   # SOURCE_CLIENT or SOURCE_NODE
    local: bool   # only endpoints on the traffic's node (the client's for internal traffic)

    @property
    def external(self) -> bool:
        return self.role != CLUSTER_IP


@dataclasses.dataclass(frozen=True, slots=True)
class PortPlan:
    key: PortKey
    endpoints: tuple[Endpoint, ...]
    affinity_timeout: int | None  # seconds of ClientIP affinity, None without affinity


@dataclasses.dataclass(frozen=True, slots=True)
class HealthCheck:
    """The health-check node port of a LoadBalancer Service with externalTrafficPolicy Local."""

    port: int
    namespace: str
    name: str
    local_endpoints: int


@dataclasses.dataclass(frozen=True, slots=True)
class ServicePlan:
    service: str
    ports: tuple[PortPlan, ...]
    listeners: tuple[tuple[ListenerKey, Frontend], ...]
    health_check: HealthCheck | None


# ---------------------------------------------------------------- endpoint categories

def usable(endpoints: Iterable[Endpoint], node: str | None = None) -> tuple[Endpoint, ...]:
    """The endpoints traffic may go to, as kube-proxy's CategorizeEndpoints decides.

    Ready endpoints; when there is none, the serving-and-terminating ones (so connections
    still land during a rollout's last moments). With `node`, only endpoints on that node,
    with the same fallback computed among them.
    """
    eps = [e for e in endpoints if node is None or e.node == node]
    ready = tuple(e for e in eps if e.ready)
    if ready:
        return ready
    return tuple(e for e in eps if e.serving and e.terminating)


# ---------------------------------------------------------------- Services and slices

def is_proxied(svc: Message) -> bool:
    labels = svc.metadata.labels
    if PROXY_NAME_LABEL in labels or HEADLESS_LABEL in labels:
        return False
    if svc.spec.type == "ExternalName":
        return False
    return _valid_ipv4(svc.spec.clusterIP)


def _valid_ipv4(ip: str) -> bool:
    if not ip or ip == "None":
        return False
    try:
        return ipaddress.ip_address(ip).version == 4
    except ValueError:
        return False


def slice_service_key(eps: Message) -> str | None:
    """`namespace/name` of the Service an EndpointSlice belongs to (its service-name label)."""
    name = eps.metadata.labels.get(SERVICE_NAME_LABEL)
    if not name:
        return None
    return f"{eps.metadata.namespace or 'default'}/{name}"


def slice_endpoints(slices: Iterable[Message]) -> dict[tuple[str, str], tuple[Endpoint, ...]]:
    """(port name, protocol) -> endpoints, merged over the slices, sorted, deduplicated.

    Unset conditions default as kube-proxy reads them: ready and serving true, terminating
    false. An address listed twice (a slice being replaced) counts once,
    ready if any copy says so.
    """
    merged: dict[tuple[str, str], dict[tuple[str, int], Endpoint]] = {}
    for s in slices:
        if s.addressType and s.addressType != "IPv4":
            continue
        if HEADLESS_LABEL in s.metadata.labels:
            continue
        for p in s.ports:
            if not p.HasField("port"):
                continue
            slot = merged.setdefault((p.name, p.protocol or "TCP"), {})
            for ep in s.endpoints:
                if not ep.addresses:
                    continue
                c = ep.conditions
                e = Endpoint(
                    ip=ep.addresses[0], port=p.port, node=ep.nodeName,
                    ready=c.ready if c.HasField("ready") else True,
                    serving=c.serving if c.HasField("serving") else True,
                    terminating=c.terminating if c.HasField("terminating") else False)
                k = (e.ip, e.port)
                old = slot.get(k)
                if old is None or (e.ready and not old.ready):
                    slot[k] = e
    return {k: tuple(sorted(v.values(), key=lambda e: (_ip_sort_key(e.ip), e.port)))
            for k, v in merged.items()}


def _ip_sort_key(ip: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in ip.split("."))
    except ValueError:
        return (999,)


def plan_service(svc: Message, slices: Iterable[Message], *, node_name: str,
                 node_ip: str) -> ServicePlan | None:
    """The listeners, endpoints and health check one Service needs on this node; None if unproxied."""
    if not is_proxied(svc):
        return None
    ns, name = svc.metadata.namespace or "default", svc.metadata.name
    spec = svc.spec
    by_port = slice_endpoints(slices)
    affinity: int | None = None
    if spec.sessionAffinity == "ClientIP":
        affinity = DEFAULT_AFFINITY_TIMEOUT
        cfg = spec.sessionAffinityConfig.clientIP
        if cfg.HasField("timeoutSeconds") and cfg.timeoutSeconds > 0:
            affinity = cfg.timeoutSeconds
    ext_local = spec.externalTrafficPolicy == "Local"
    int_local = spec.internalTrafficPolicy == "Local"
    has_node_ports = spec.type in ("NodePort", "LoadBalancer")
    external_ips = [ip for ip in spec.externalIPs if _valid_ipv4(ip)]

    ports: list[PortPlan] = []
    listeners: dict[ListenerKey, Frontend] = {}
    local_ready: set[str] = set()
    for sp in spec.ports:
        protocol = sp.protocol or "TCP"
        if protocol not in PROTOCOLS or not sp.port:
            continue
        key = PortKey(ns, name, sp.name, protocol)
        eps = by_port.get((sp.name, protocol), ())
        ports.append(PortPlan(key, eps, affinity))
        local_ready.update(e.ip for e in eps if e.ready and e.node == node_name)
        if usable(eps):
            # Internal Local traffic is filtered per connection by the client's node, which
            # only the accepting side knows; the listener exists if any endpoint does.
            listeners[ListenerKey(protocol, spec.clusterIP, sp.port)] = Frontend(
                key, CLUSTER_IP, SOURCE_CLIENT, int_local)
        if usable(eps, node_name if ext_local else None):
            source = SOURCE_CLIENT if ext_local else SOURCE_NODE
            if has_node_ports and sp.nodePort:
                listeners[ListenerKey(protocol, node_ip, sp.nodePort)] = Frontend(
                    key, NODE_PORT, source, ext_local)
            for ip in external_ips:
                listeners.setdefault(ListenerKey(protocol, ip, sp.port), Frontend(
                    key, EXTERNAL_IP, source, ext_local))
    hc = None
    if ext_local and spec.healthCheckNodePort > 0:
        hc = HealthCheck(spec.healthCheckNodePort, ns, name, len(local_ready))
    return ServicePlan(f"{ns}/{name}", tuple(ports), tuple(sorted(listeners.items())), hc)


# ---------------------------------------------------------------- which node an address is on

class NodeAddresses:
    """Maps an address to the node it belongs to: a node's own IPs, or its pod CIDR.

    Internal traffic with `internalTrafficPolicy: Local` must go to endpoints on the client's
    node. All agents share the cluster-IP listener, so the one that accepts a connection need
    not run on the client's node: it finds that node from the client's address instead.
    """

    def __init__(self, nodes: Iterable[Message] = ()):
        self._ips: dict[str, str] = {}
        nets: list[tuple[int, int, str]] = []
        for n in nodes:
            for a in n.status.addresses:
                if a.type in ("InternalIP", "ExternalIP") and a.address:
                    self._ips[a.address] = n.metadata.name
            for cidr in {n.spec.podCIDR, *n.spec.podCIDRs} - {""}:
                try:
                    net = ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    continue
                if net.version == 4:
                    nets.append((int(net.network_address), int(net.broadcast_address), n.metadata.name))
        nets.sort()
        self._starts = [n[0] for n in nets]
        self._nets = nets

    def node_of(self, ip: str) -> str | None:
        node = self._ips.get(ip)
        if node is not None:
            return node
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return None
        i = bisect.bisect_right(self._starts, value) - 1
        if i >= 0 and value <= self._nets[i][1]:
            return self._nets[i][2]
        return None
