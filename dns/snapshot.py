"""What the DNS server knows: an immutable snapshot of the cluster, built incrementally.

Rules of this module: no I/O, no asyncio. A `Snapshot` is never changed once built, so the
server can swap it in with one assignment and a reply computed from it is consistent. The
`SnapshotBuilder` turns Kubernetes objects (Services, EndpointSlices, Pods, Namespaces) into
the small records the resolver needs, one object at a time, and hands its tables to each new
snapshot copy-on-write: a change touches only the records of the object that changed, and
building a snapshot costs a few dict copies, not a pass over the cluster. That is what keeps
DNS programming latency flat as the cluster grows.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import Iterable, Mapping

from google.protobuf.message import Message

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_TTL = 5


@dataclasses.dataclass(frozen=True, slots=True)
class Port:
    name: str       # lowercase; "" for an unnamed port
    protocol: str   # lowercase: "tcp", "udp", "sctp"
    port: int


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """A ready address of a Service, named as the spec says: its hostname, else the dashed IP."""

    hostname: str
    ip: str
    ports: tuple[Port, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceRecord:
    namespace: str
    name: str
    kind: str                      # "ClusterIP" (any type with a VIP), "Headless", "ExternalName"
    ips: tuple[str, ...] = ()      # cluster IPs
    ports: tuple[Port, ...] = ()   # Service ports
    external_name: str = ""        # lowercase, no trailing dot
    endpoints: tuple[Endpoint, ...] = ()

    def fqdn(self, zone: str) -> str:
        return f"{self.name}.{self.namespace}.svc.{zone}."

    def ptr_entries(self, zone: str) -> set[tuple[str, str]]:
        """(ip, name) pairs for reverse lookups: the cluster IPs, and every endpoint IP."""
        out: set[tuple[str, str]] = set()
        if self.kind == "ExternalName":
            return out
        base = self.fqdn(zone)
        for ip in self.ips:
            out.add((ip, base))
        for ep in self.endpoints:
            out.add((ep.ip, f"{ep.hostname}.{base}"))
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a reply depends on. Treat every mapping as read-only.

    `synced` is False until every informer has listed once: until then the resolver answers
    SERVFAIL for the zone rather than a wrong NXDOMAIN. `generation` increases with every
    snapshot; the server's answer cache belongs to exactly one generation.
    """

    zone: str                                      # "cluster.local", lowercase, no trailing dot
    ttl: int = DEFAULT_TTL
    synced: bool = False
    generation: int = 0
    serial: int = 1
    nameservers: tuple[str, ...] = ()              # addresses for ns.dns.<zone>
    services: Mapping[tuple[str, str], ServiceRecord] = dataclasses.field(default_factory=dict)
    namespaces: Mapping[str, int] = dataclasses.field(default_factory=dict)
    ptr: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    pod_ips: Mapping[tuple[str, str], int] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------ objects -> records


def dashed(ip: str) -> str:
    """`127.244.1.5` -> `127-244-1-5` (IPv6: `fd00::1` -> `fd00--1`), as CoreDNS names endpoints."""
    return ip.replace(".", "-") if "." in ip else ip.replace(":", "-")


def _canonical_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _ports(ports: Iterable[Message], port_field: str = "port") -> tuple[Port, ...]:
    return tuple(Port(p.name.lower(), (p.protocol or "TCP").lower(), getattr(p, port_field))
                 for p in ports)


def service_record(svc: Message, slices: Iterable[Message]) -> ServiceRecord | None:
    """The DNS view of one Service and its EndpointSlices; None if it gets no records.

    Endpoints: the ready ones (an unset `ready` means ready, as in Kubernetes), or all of them
    when the Service publishes not-ready addresses; FQDN-type slices are ignored; an address
    listed by two slices (during a hand-over between slices) is listed once.
    """
    spec = svc.spec
    ns, name = svc.metadata.namespace, svc.metadata.name
    if spec.type == "ExternalName":
        target = spec.externalName.strip().rstrip(".").lower()
        if not target or _canonical_ip(target) is not None:
            return None  # CoreDNS ignores an ExternalName that is an IP address
        return ServiceRecord(ns, name, "ExternalName", external_name=target)
    headless = spec.clusterIP == "None"
    ips: list[str] = []
    if not headless:
        for ip in (list(spec.clusterIPs) or [spec.clusterIP]):
            c = _canonical_ip(ip)
            if c is not None and c not in ips:
                ips.append(c)
    seen: dict[tuple[str, str], Endpoint] = {}
    publish_all = spec.publishNotReadyAddresses
    for sl in sorted(slices, key=lambda s: s.metadata.name):
        if sl.addressType not in ("IPv4", "IPv6", ""):
            continue
        ports = _ports(sl.ports)
        for ep in sl.endpoints:
            cond = ep.conditions
            ready = (not cond.HasField("ready")) or cond.ready
            if not (ready or publish_all):
                continue
            for addr in ep.addresses:
                ip = _canonical_ip(addr)
                if ip is None:
                    continue
                host = ep.hostname.lower() or dashed(ip)
                if (host, ip) not in seen:
                    seen[(host, ip)] = Endpoint(host, ip, ports)
    endpoints = tuple(sorted(seen.values(), key=lambda e: (e.hostname, e.ip)))
    return ServiceRecord(ns, name, "Headless" if headless else "ClusterIP", ips=tuple(ips),
                         ports=_ports(spec.ports), endpoints=endpoints)


def pod_ips(pod: Message) -> tuple[str, ...]:
    """A pod's IPs for `a-b-c-d.<ns>.pod.<zone>` (verified mode); none once it has finished."""
    if pod.status.phase in ("Succeeded", "Failed"):
        return ()
    out = []
    for ip in [pod.status.podIP, *(p.ip for p in pod.status.podIPs)]:
        c = _canonical_ip(ip) if ip else None
        if c is not None and c not in out:
            out.append(c)
    return tuple(out)


# ------------------------------------------------------------------ incremental building


class SnapshotBuilder:
    """Keeps the records of the cluster and builds snapshots of them.

    Each `set_*` returns whether anything a reply depends on changed, so the caller can skip
    swapping in a snapshot equal to the current one (a pod's status changing from one probe
    result to the next does not flush the answer cache).
    """

    def __init__(self, zone: str, *, ttl: int = DEFAULT_TTL, nameservers: Iterable[str] = ()):
        self.zone = zone.strip(".").lower()
        self.ttl = ttl
        self.nameservers = tuple(nameservers)
        self._services: dict[tuple[str, str], ServiceRecord] = {}
        self._ns: dict[str, int] = {}          # namespace -> references (object, Services, pods)
        self._ptr: dict[str, tuple[str, ...]] = {}
        self._pods: dict[tuple[str, str], int] = {}
        self._pod_keys: dict[str, tuple[str, tuple[str, ...]]] = {}   # pod key -> (ns, ips)
        self._ns_objects: set[str] = set()
        self._shared: set[str] = set()   # tables handed to the last snapshot
        self.generation = 0
        self.serial = 0

    def _own(self, table: str) -> dict:
        """Copy-on-write: the first change after a build copies the table the snapshot holds."""
        if table in self._shared:
            self._shared.discard(table)
            setattr(self, table, dict(getattr(self, table)))
        return getattr(self, table)

    def _ns_ref(self, ns: str, delta: int) -> None:
        table = self._own("_ns")
        n = table.get(ns, 0) + delta
        if n > 0:
            table[ns] = n
        else:
            table.pop(ns, None)

    # -------------------------------------------------------------- changes

    def set_service(self, namespace: str, name: str, svc: Message | None,
                    slices: Iterable[Message] = ()) -> bool:
        key = (namespace.lower(), name.lower())
        new = service_record(svc, slices) if svc is not None else None
        old = self._services.get(key)
        if new == old:
            return False
        services = self._own("_services")
        if new is None:
            del services[key]
        else:
            services[key] = new
        if old is None:
            self._ns_ref(key[0], +1)
        if new is None:
            self._ns_ref(key[0], -1)
        old_ptr = old.ptr_entries(self.zone) if old else set()
        new_ptr = new.ptr_entries(self.zone) if new else set()
        if old_ptr != new_ptr:
            ptr = self._own("_ptr")
            for ip, fqdn in old_ptr - new_ptr:
                names = tuple(n for n in ptr.get(ip, ()) if n != fqdn)
                if names:
                    ptr[ip] = names
                else:
                    ptr.pop(ip, None)
            for ip, fqdn in new_ptr - old_ptr:
                ptr[ip] = tuple(sorted({*ptr.get(ip, ()), fqdn}))
        return True

    def set_pod(self, key: str, pod: Message | None) -> bool:
        new = (pod.metadata.namespace.lower(), pod_ips(pod)) if pod is not None else None
        old = self._pod_keys.get(key)
        if new == old:
            return False
        keys = self._pod_keys
        if new is None:
            del keys[key]
        else:
            keys[key] = new
        pods = self._own("_pods")
        if old is not None:
            self._ns_ref(old[0], -1)
            for ip in old[1]:
                n = pods.get((old[0], ip), 0) - 1
                if n > 0:
                    pods[(old[0], ip)] = n
                else:
                    pods.pop((old[0], ip), None)
        if new is not None:
            self._ns_ref(new[0], +1)
            for ip in new[1]:
                pods[(new[0], ip)] = pods.get((new[0], ip), 0) + 1
        return True

    def set_namespace(self, name: str, exists: bool) -> bool:
        name = name.lower()
        if exists == (name in self._ns_objects):
            return False
        if exists:
            self._ns_objects.add(name)
            self._ns_ref(name, +1)
        else:
            self._ns_objects.discard(name)
            self._ns_ref(name, -1)
        return True

    # -------------------------------------------------------------- snapshots

    def build(self, *, synced: bool = True, serial: int | None = None) -> Snapshot:
        """A new snapshot of the current records; its generation is one more than the last."""
        self.generation += 1
        self.serial = max(self.serial, serial if serial is not None else self.generation)
        self._shared = {"_services", "_ns", "_ptr", "_pods"}
        return Snapshot(zone=self.zone, ttl=self.ttl, synced=synced, generation=self.generation,
                        serial=self.serial & 0xFFFFFFFF, nameservers=self.nameservers,
                        services=self._services, namespaces=self._ns, ptr=self._ptr,
                        pod_ips=self._pods)


def build(zone: str, *, services: Iterable[Message] = (), slices: Iterable[Message] = (),
          pods: Iterable[Message] = (), namespaces: Iterable[Message | str] = (),
          ttl: int = DEFAULT_TTL, nameservers: Iterable[str] = (), serial: int = 1) -> Snapshot:
    """A synced snapshot from lists of objects, in one go (tests, tools)."""
    b = SnapshotBuilder(zone, ttl=ttl, nameservers=nameservers)
    by_service: dict[tuple[str, str], list[Message]] = {}
    for sl in slices:
        svc_name = sl.metadata.labels.get(SERVICE_NAME_LABEL, "")
        by_service.setdefault((sl.metadata.namespace, svc_name), []).append(sl)
    for svc in services:
        b.set_service(svc.metadata.namespace, svc.metadata.name, svc,
                      by_service.get((svc.metadata.namespace, svc.metadata.name), ()))
    for pod in pods:
        b.set_pod(f"{pod.metadata.namespace}/{pod.metadata.name}", pod)
    for ns in namespaces:
        b.set_namespace(ns if isinstance(ns, str) else ns.metadata.name, True)
    return b.build(synced=True, serial=serial)
