"""The answer to one question, as a pure function of (question, snapshot).

Rules of this module: no I/O, no clock, no randomness; the same question and snapshot always
give the same answer, which is what makes the server's answer cache exact. Wire concerns
(parsing, EDNS, truncation, message IDs) live in kubemu.dns.message.

Names follow the Kubernetes DNS-Based Service Discovery specification 1.1.0, with CoreDNS'
kubernetes plugin as the reference where the specification is silent:

    <svc>.<ns>.svc.<zone>                A/AAAA  cluster IPs; headless: ready endpoint IPs
                                         SRV     every port (CoreDNS), target per IP family
    _<port>._<proto>.<svc>.<ns>.svc.<zone>  SRV  named ports
    <hostname>.<svc>.<ns>.svc.<zone>     A/AAAA  endpoint (slice hostname, else dashed IP)
    <a-b-c-d>.<ns>.pod.<zone>            A       pods of that namespace with that IP (verified)
    <svc>.<ns>.svc.<zone> (ExternalName) CNAME   chased when the target is in the zone
    d.c.b.a.in-addr.arpa                 PTR     cluster IPs and endpoint IPs
    dns-version.<zone>                   TXT     "1.1.0"
    <zone>                               SOA, NS (ns.dns.<zone>)

A name that exists without the asked type is NODATA (NOERROR, no answer), a name that does
not exist is NXDOMAIN; both carry the zone's SOA in the authority section. Empty non-terminals
(`svc.<zone>`, `<ns>.svc.<zone>`, `_tcp.<svc>...` when a `_<port>._tcp` name exists) are
NODATA: an NXDOMAIN there would tell an RFC 8020 resolver that nothing below exists.
"""
from __future__ import annotations

import dataclasses
import ipaddress

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSLabel

from kubemu.dns.snapshot import Port, ServiceRecord, Snapshot

SCHEMA_VERSION = "1.1.0"
VERSION_TTL = 28800   # the specification's example, and CoreDNS'
MAX_CHASE = 8         # CNAME hops followed inside the zone

_REVERSE = {("in-addr", "arpa"): 4, ("ip6", "arpa"): 6}
_ADDR_QTYPES = frozenset((QTYPE.A, QTYPE.AAAA, QTYPE.ANY))
_SRV_QTYPES = frozenset((QTYPE.SRV, QTYPE.ANY))


@dataclasses.dataclass
class Answer:
    """Sections of a reply; `forward` means the name is not ours (ask upstream)."""

    rcode: int = RCODE.NOERROR
    authoritative: bool = True
    answer: list[RR] = dataclasses.field(default_factory=list)
    authority: list[RR] = dataclasses.field(default_factory=list)
    additional: list[RR] = dataclasses.field(default_factory=list)
    forward: bool = False
    chase: DNSLabel | None = None   # an out-of-zone CNAME target, for the caller to resolve


@dataclasses.dataclass
class _Node:
    """The records at one name: rtype -> RRs (owner: the name as asked), plus extras."""

    records: dict[int, list[RR]] = dataclasses.field(default_factory=dict)
    additional: dict[int, list[RR]] = dataclasses.field(default_factory=dict)
    cname: str = ""   # target, absolute with trailing dot

    def add(self, rr: RR) -> None:
        self.records.setdefault(rr.rtype, []).append(rr)


def _addr_rr(owner, ip: str, ttl: int) -> RR:
    if ":" in ip:
        return RR(owner, QTYPE.AAAA, ttl=ttl, rdata=AAAA(ip))
    return RR(owner, QTYPE.A, ttl=ttl, rdata=A(ip))


def soa(snap: Snapshot, owner) -> RR:
    """The zone's SOA, as CoreDNS writes it (TTL and minimum = the record TTL, capped at 300)."""
    ttl = min(snap.ttl, 300)
    z = snap.zone
    return RR(owner, QTYPE.SOA, ttl=ttl, rdata=SOA(f"ns.dns.{z}.", f"hostmaster.{z}.",
                                                   (snap.serial, 7200, 1800, 86400, ttl)))


def _decode(labels: tuple[bytes, ...]) -> tuple[str, ...]:
    """Labels folded to lowercase the DNS way: ASCII letters only (RFC 4343)."""
    return tuple(x.lower().decode("latin-1") for x in labels)


# ------------------------------------------------------------------ in-zone names


def _srv_weight(n: int) -> int:
    """CoreDNS splits a weight of 100 evenly over the records of one priority."""
    return max(1, 100 // n) if n else 0


def _service_srv(node: _Node, owner, svc: ServiceRecord, snap: Snapshot,
                 match: tuple[str, str] | None) -> None:
    """SRV records for the ports matching `match` (port name, protocol); None: all ports."""
    zone, ttl = snap.zone, snap.ttl
    base = svc.fqdn(zone)
    targets: list[tuple[int, str, tuple[str, ...]]] = []   # (port, target, ips)
    if svc.kind == "Headless":
        for ep in svc.endpoints:
            for p in ep.ports or (Port("", "", -1),):
                if p.port < 0 or not _port_matches(p, match):
                    continue
                targets.append((p.port, f"{ep.hostname}.{base}", (ep.ip,)))
    else:
        for p in svc.ports:
            if _port_matches(p, match):
                targets.append((p.port, base, svc.ips))
    weight = _srv_weight(len(targets))
    seen: set[str] = set()
    for port, target, ips in targets:
        node.add(RR(owner, QTYPE.SRV, ttl=ttl, rdata=SRV(0, weight, port, target)))
        for ip in ips:
            if (target, ip) in seen:
                continue
            seen.add((target, ip))
            rr = _addr_rr(target, ip, ttl)
            node.additional.setdefault(QTYPE.SRV, []).append(rr)


def _port_matches(p: Port, match: tuple[str, str] | None) -> bool:
    return match is None or (p.name == match[0] and p.protocol == match[1])


def _service_node(snap: Snapshot, owner, svc: ServiceRecord, rel: tuple[str, ...],
                  qtype: int) -> _Node | None:
    """The node at `rel` (labels left of `<svc>.<ns>.svc`, leftmost first) below a Service.

    Only the records `qtype` asks for are built (a node's existence never depends on them):
    an A query for a Service with many ports or endpoints does not pay for its SRV records.
    """
    ttl = snap.ttl
    want_addr = qtype in _ADDR_QTYPES
    want_srv = qtype in _SRV_QTYPES
    if svc.kind == "ExternalName":
        if rel:
            return None   # nothing lives below an ExternalName
        return _Node(cname=svc.external_name + ".")
    if svc.kind == "Headless" and not svc.endpoints:
        return None
    if not rel:
        node = _Node()
        if want_addr:
            ips = svc.ips if svc.kind == "ClusterIP" else tuple(dict.fromkeys(e.ip for e in svc.endpoints))
            for ip in ips:
                node.add(_addr_rr(owner, ip, ttl))
        if want_srv:
            _service_srv(node, owner, svc, snap, None)
        return node
    if len(rel) == 1:
        label = rel[0]
        matching = [ep for ep in svc.endpoints if ep.hostname == label]
        if matching:
            node = _Node()
            if want_addr:
                for ep in matching:
                    node.add(_addr_rr(owner, ep.ip, ttl))
            return node
        if label.startswith("_") and any(
                p.protocol == label[1:] and p.name for p in _all_ports(svc)):
            return _Node()   # `_tcp.<svc>...`: the parent of `_<port>._tcp.<svc>...`
        return None
    if len(rel) == 2:
        port, proto = rel
        if not (port.startswith("_") and proto.startswith("_")) or len(port) < 2:
            return None
        match = (port[1:], proto[1:])
        if not any(p.port >= 0 and _port_matches(p, match) for p in _all_ports(svc)):
            return None
        node = _Node()
        if want_srv:
            _service_srv(node, owner, svc, snap, match)
        return node
    return None


def _all_ports(svc: ServiceRecord):
    if svc.kind == "Headless":
        for ep in svc.endpoints:
            yield from ep.ports
    else:
        yield from svc.ports


def _zone_node(snap: Snapshot, owner, rel: tuple[str, ...], qtype: int) -> _Node | None:
    """The node at `rel` (labels left of the zone, leftmost first); None: NXDOMAIN."""
    ttl = snap.ttl
    zone = snap.zone
    if not rel:
        node = _Node()
        node.add(soa(snap, owner))
        node.add(RR(owner, QTYPE.NS, ttl=ttl, rdata=NS(f"ns.dns.{zone}.")))
        for ip in snap.nameservers:
            node.additional.setdefault(QTYPE.NS, []).append(_addr_rr(f"ns.dns.{zone}.", ip, ttl))
        return node
    top = rel[-1]
    if len(rel) == 1:
        if top == "dns-version":
            node = _Node()
            node.add(RR(owner, QTYPE.TXT, ttl=VERSION_TTL, rdata=TXT(SCHEMA_VERSION)))
            return node
        if top in ("svc", "pod", "dns"):
            return _Node()
        return None
    if top == "dns":
        if rel == ("ns", "dns"):
            node = _Node()
            for ip in snap.nameservers:
                node.add(_addr_rr(owner, ip, ttl))
            return node
        return None
    if top not in ("svc", "pod"):
        return None
    ns = rel[-2]
    if ns not in snap.namespaces:
        return None
    if len(rel) == 2:
        return _Node()
    if top == "svc":
        svc = snap.services.get((ns, rel[-3]))
        if svc is None:
            return None
        return _service_node(snap, owner, svc, rel[:-3], qtype)
    # pods: <dashed-ip>.<ns>.pod.<zone>
    if len(rel) != 3:
        return None
    ip = _undash(rel[0])
    if ip is None or (ns, ip) not in snap.pod_ips:
        return None
    node = _Node()
    node.add(_addr_rr(owner, ip, ttl))
    return node


def _undash(label: str) -> str | None:
    """`127-244-1-5` -> `127.244.1.5`; IPv6 with dashes for colons; None if not an address."""
    text = label.replace("-", ".") if label.count("-") == 3 and "--" not in label else label.replace("-", ":")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


# ------------------------------------------------------------------ reverse names


def reverse_ip(labels: tuple[str, ...]) -> str | None:
    """The address of a full reverse name (`5.0.96.127.in-addr.arpa`), else None."""
    family = _REVERSE.get(tuple(labels[-2:]))
    if family == 4 and len(labels) == 6:
        text = ".".join(reversed(labels[:4]))
    elif family == 6 and len(labels) == 34 and all(len(x) == 1 for x in labels[:32]):
        nibbles = "".join(reversed(labels[:32]))
        text = ":".join(nibbles[i:i + 4] for i in range(0, 32, 4))
    else:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


# ------------------------------------------------------------------ the question


def in_zone(snap: Snapshot, labels: tuple[str, ...]) -> int:
    """How many leading labels are left of the zone, or -1 if the name is outside it."""
    zl = snap.zone.split(".") if snap.zone else []
    n = len(zl)
    if len(labels) < n or (n and list(labels[len(labels) - n:]) != zl):
        return -1
    return len(labels) - n


def resolve(snap: Snapshot, qname: DNSLabel, qtype: int) -> Answer:
    """The answer to (qname, qtype, class IN) from `snap`."""
    labels = _decode(qname.label)
    cut = in_zone(snap, labels)
    if cut < 0:
        ip = reverse_ip(labels)
        if ip is not None and not snap.synced:
            return Answer(rcode=RCODE.SERVFAIL, authoritative=False)
        if ip is not None and ip in snap.ptr:
            ans = Answer()
            if qtype in (QTYPE.PTR, QTYPE.ANY):
                ans.answer = [RR(qname, QTYPE.PTR, ttl=snap.ttl, rdata=PTR(n)) for n in snap.ptr[ip]]
            return ans   # a known address without the asked type: NODATA
        return Answer(forward=True, authoritative=False)
    if not snap.synced:
        return Answer(rcode=RCODE.SERVFAIL, authoritative=False)
    zone_owner = DNSLabel(qname.label[cut:])   # the zone as the question spelled it
    return _answer(snap, qname, labels[:cut], qtype, zone_owner, 0)


def _answer(snap: Snapshot, owner, rel: tuple[str, ...], qtype: int, zone_owner, depth: int) -> Answer:
    node = _zone_node(snap, owner, rel, qtype)
    if node is None:
        return Answer(rcode=RCODE.NXDOMAIN, authority=[soa(snap, zone_owner)])
    ans = Answer()
    if node.cname and qtype != QTYPE.CNAME:
        ans.answer.append(RR(owner, QTYPE.CNAME, ttl=snap.ttl, rdata=CNAME(node.cname)))
        if qtype == QTYPE.ANY:
            return ans
        target = DNSLabel(node.cname)
        tlabels = _decode(target.label)
        cut = in_zone(snap, tlabels)
        if cut < 0:
            ans.chase = target
            return ans
        if depth >= MAX_CHASE:
            return ans
        sub = _answer(snap, target, tlabels[:cut], qtype, zone_owner, depth + 1)
        ans.rcode = sub.rcode
        ans.answer += sub.answer
        ans.authority = sub.authority
        ans.additional = sub.additional
        ans.chase = sub.chase
        return ans
    if node.cname:   # qtype CNAME
        ans.answer.append(RR(owner, QTYPE.CNAME, ttl=snap.ttl, rdata=CNAME(node.cname)))
        return ans
    if qtype == QTYPE.ANY:
        for rtype in sorted(node.records):
            ans.answer += node.records[rtype]
    else:
        ans.answer = list(node.records.get(qtype, ()))
        ans.additional = list(node.additional.get(qtype, ()))
    if not ans.answer:
        ans.authority = [soa(snap, zone_owner)]
    return ans
