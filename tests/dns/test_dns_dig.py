"""The DNS specification case by case, through the real `dig` against the real server.

In the spirit of CoreDNS' kubernetes plugin tests (plugin/kubernetes/handler_test.go): one
cluster of Services, EndpointSlices and Pods written through the API server, then a table of
questions, each asked over UDP and over TCP. `{s}` in a case stands for the test slot's second
octet (the cluster's addresses are 127.{s}.x.y).
"""
from __future__ import annotations

import dataclasses

import pytest

from kubemu.client import Client
from kubemu.dns import testing as t
from kubemu.testing import procs



def objects_for(s: int) -> list:
    svc, pod, big = f"127.{s}.96", f"127.{s}.128", f"127.{s}.129"
    return [
        t.namespace("other"),
        t.service("web", cluster_ip=f"{svc}.20", ports=[("http", 80, "TCP"), ("dns", 53, "UDP")]),
        t.service("empty", cluster_ip=f"{svc}.21"),
        t.service("plain", cluster_ip=f"{svc}.22", ports=[("", 8080, "TCP")]),
        t.service("web", "other", cluster_ip=f"{svc}.30"),
        t.service("db", headless=True, ports=[("pg", 5432, "TCP")]),
        t.service("db-alt", headless=True, ports=[("pg", 5432, "TCP")]),
        t.service("nohosts", headless=True),
        t.service("big", headless=True),
        t.service("ext", type="ExternalName", external_name="example.test"),
        t.service("alias", type="ExternalName", external_name="web.default.svc.cluster.local"),
        t.endpoint_slice("db-a", "db", endpoints=[(f"{pod}.5", "db-0", True), f"{pod}.6",
                                                  (f"{pod}.7", None, False)], ports=[("pg", 5432, "TCP")]),
        t.endpoint_slice("db-alt-a", "db-alt", endpoints=[f"{pod}.5"], ports=[("pg", 5432, "TCP")]),
        t.endpoint_slice("big-a", "big", endpoints=[f"{big}.{i}" for i in range(1, 101)]),
        t.pod("p1", "default", f"{pod}.5"),
        t.pod("p9", "other", f"{pod}.9"),
    ]


async def create_all(api: str, objs: list) -> None:
    async with Client(api) as c:
        for obj in objs:
            status = obj.status if obj.kind == "Pod" else None
            created = await c.create(obj)
            if status is not None and status.podIP:
                created.status.CopyFrom(status)
                await c.update_status(created)


@pytest.fixture(scope="module")
def world(dns_cluster):
    s = dns_cluster.slot.index
    procs.run(create_all(dns_cluster.api, objects_for(s)))
    # the last object of each kind is visible (each kind has a watch of its own)
    h, p = dns_cluster.host, dns_cluster.port
    procs.wait_for(lambda: t.query(h, p, "alias.default.svc.cluster.local").rr
                   and len(t.query(h, p, "big.default.svc.cluster.local", tcp=True).rr) == 100
                   and t.query(h, p, f"127-{s}-128-9.other.pod.cluster.local").rr,
                   10, message="the DNS server to see the test objects")
    return dns_cluster


@dataclasses.dataclass
class Case:
    id: str
    name: str
    qtype: str = "A"
    status: str = "NOERROR"
    answer: list[str] | None = None        # exact, any order ("name ttl IN TYPE rdata")
    authority: list[str] | None = None     # "owner TYPE" of each record
    additional: list[str] | None = None    # exact, any order
    flags: set[str] = dataclasses.field(default_factory=lambda: {"qr", "aa"})
    no_flags: set[str] = dataclasses.field(default_factory=set)
    args: tuple[str, ...] = ()


SOA = ["cluster.local. SOA"]
D = "default.svc.cluster.local."

CASES = [
    # ClusterIP Services
    Case("clusterip-a", "web.default.svc.cluster.local", answer=[f"web.{D} 5 IN A 127.{{s}}.96.20"]),
    Case("clusterip-no-endpoints", "empty.default.svc.cluster.local", answer=[f"empty.{D} 5 IN A 127.{{s}}.96.21"]),
    Case("case-insensitive-echoed", "WeB.DeFault.SVC.cluster.LOCAL",
         answer=["WeB.DeFault.SVC.cluster.LOCAL. 5 IN A 127.{s}.96.20"]),
    Case("aaaa-is-nodata", "web.default.svc.cluster.local", "AAAA", answer=[], authority=SOA),
    Case("txt-is-nodata", "web.default.svc.cluster.local", "TXT", answer=[], authority=SOA),
    Case("soa-below-apex-is-nodata", "web.default.svc.cluster.local", "SOA", answer=[], authority=SOA),
    Case("other-namespace", "web.other.svc.cluster.local", answer=["web.other.svc.cluster.local. 5 IN A 127.{s}.96.30"]),
    Case("missing-service", "nope.default.svc.cluster.local", status="NXDOMAIN", answer=[], authority=SOA),
    Case("missing-namespace", "web.nons.svc.cluster.local", status="NXDOMAIN", answer=[], authority=SOA),
    Case("too-deep", "a.b.c.web.default.svc.cluster.local", status="NXDOMAIN", authority=SOA),
    Case("endpoint-of-clusterip", "bogus.web.default.svc.cluster.local", status="NXDOMAIN", authority=SOA),
    Case("any", "web.default.svc.cluster.local", "ANY",
         answer=[f"web.{D} 5 IN A 127.{{s}}.96.20", f"web.{D} 5 IN SRV 0 50 80 web.{D}",
                 f"web.{D} 5 IN SRV 0 50 53 web.{D}"]),
    # SRV
    Case("srv-named-port", "_http._tcp.web.default.svc.cluster.local", "SRV",
         answer=[f"_http._tcp.web.{D} 5 IN SRV 0 100 80 web.{D}"],
         additional=[f"web.{D} 5 IN A 127.{{s}}.96.20"]),
    Case("srv-udp-port", "_dns._udp.web.default.svc.cluster.local", "SRV",
         answer=[f"_dns._udp.web.{D} 5 IN SRV 0 100 53 web.{D}"]),
    Case("srv-wrong-protocol", "_http._udp.web.default.svc.cluster.local", "SRV", status="NXDOMAIN", authority=SOA),
    Case("srv-unknown-port", "_nope._tcp.web.default.svc.cluster.local", "SRV", status="NXDOMAIN", authority=SOA),
    Case("srv-parent-is-nodata", "_tcp.web.default.svc.cluster.local", "SRV", answer=[], authority=SOA),
    Case("srv-bare-name-all-ports", "web.default.svc.cluster.local", "SRV",
         answer=[f"web.{D} 5 IN SRV 0 50 80 web.{D}", f"web.{D} 5 IN SRV 0 50 53 web.{D}"],
         additional=[f"web.{D} 5 IN A 127.{{s}}.96.20"]),
    Case("srv-unnamed-port", "plain.default.svc.cluster.local", "SRV",
         answer=[f"plain.{D} 5 IN SRV 0 100 8080 plain.{D}"]),
    Case("srv-a-query-is-nodata", "_http._tcp.web.default.svc.cluster.local", "A", answer=[], authority=SOA),
    # headless
    Case("headless-ready-endpoints", "db.default.svc.cluster.local",
         answer=[f"db.{D} 5 IN A 127.{{s}}.128.5", f"db.{D} 5 IN A 127.{{s}}.128.6"]),
    Case("headless-no-endpoints", "nohosts.default.svc.cluster.local", status="NXDOMAIN", authority=SOA),
    Case("endpoint-hostname", "db-0.db.default.svc.cluster.local", answer=[f"db-0.db.{D} 5 IN A 127.{{s}}.128.5"]),
    Case("endpoint-dashed-ip", "127-{s}-128-6.db.default.svc.cluster.local",
         answer=[f"127-{{s}}-128-6.db.{D} 5 IN A 127.{{s}}.128.6"]),
    Case("endpoint-not-ready", "127-{s}-128-7.db.default.svc.cluster.local", status="NXDOMAIN", authority=SOA),
    Case("endpoint-unknown", "bogus.db.default.svc.cluster.local", status="NXDOMAIN", authority=SOA),
    Case("headless-srv", "_pg._tcp.db.default.svc.cluster.local", "SRV",
         answer=[f"_pg._tcp.db.{D} 5 IN SRV 0 50 5432 db-0.db.{D}",
                 f"_pg._tcp.db.{D} 5 IN SRV 0 50 5432 127-{{s}}-128-6.db.{D}"],
         additional=[f"db-0.db.{D} 5 IN A 127.{{s}}.128.5", f"127-{{s}}-128-6.db.{D} 5 IN A 127.{{s}}.128.6"]),
    Case("headless-endpoint-aaaa-nodata", "db-0.db.default.svc.cluster.local", "AAAA", answer=[], authority=SOA),
    # ExternalName
    Case("externalname-cname", "ext.default.svc.cluster.local", "CNAME", answer=[f"ext.{D} 5 IN CNAME example.test."]),
    Case("externalname-chased-upstream", "ext.default.svc.cluster.local",
         answer=[f"ext.{D} 5 IN CNAME example.test.", "example.test. 60 IN A 192.0.2.10"]),
    Case("externalname-in-cluster", "alias.default.svc.cluster.local",
         answer=[f"alias.{D} 5 IN CNAME web.{D}", f"web.{D} 5 IN A 127.{{s}}.96.20"]),
    Case("below-externalname", "x.ext.default.svc.cluster.local", status="NXDOMAIN", authority=SOA),
    # zone structure
    Case("namespace-is-nodata", "default.svc.cluster.local", answer=[], authority=SOA),
    Case("svc-is-nodata", "svc.cluster.local", answer=[], authority=SOA),
    Case("pod-is-nodata", "pod.cluster.local", answer=[], authority=SOA),
    Case("unknown-namespace-is-nxdomain", "nons.svc.cluster.local", status="NXDOMAIN", authority=SOA),
    Case("unknown-below-zone", "foo.cluster.local", status="NXDOMAIN", authority=SOA),
    Case("apex-soa", "cluster.local", "SOA", authority=[]),
    Case("apex-ns", "cluster.local", "NS", answer=["cluster.local. 5 IN NS ns.dns.cluster.local."],
         additional=["ns.dns.cluster.local. 5 IN A 127.0.0.1"]),
    Case("apex-a-is-nodata", "cluster.local", "A", answer=[], authority=SOA),
    Case("ns-address", "ns.dns.cluster.local", answer=["ns.dns.cluster.local. 5 IN A 127.0.0.1"]),
    Case("dns-version", "dns-version.cluster.local", "TXT", answer=['dns-version.cluster.local. 28800 IN TXT "1.1.0"']),
    Case("soa-owner-echoes-case", "nope.default.svc.CLUSTER.local", status="NXDOMAIN", authority=["CLUSTER.local. SOA"]),
    # pods (verified)
    Case("pod-a", "127-{s}-128-5.default.pod.cluster.local",
         answer=["127-{s}-128-5.default.pod.cluster.local. 5 IN A 127.{s}.128.5"]),
    Case("pod-wrong-namespace", "127-{s}-128-9.default.pod.cluster.local", status="NXDOMAIN", authority=SOA),
    Case("pod-other-namespace", "127-{s}-128-9.other.pod.cluster.local",
         answer=["127-{s}-128-9.other.pod.cluster.local. 5 IN A 127.{s}.128.9"]),
    Case("pod-unknown-ip", "127-{s}-128-99.default.pod.cluster.local", status="NXDOMAIN", authority=SOA),
    Case("pod-not-an-ip", "not-an-ip.default.pod.cluster.local", status="NXDOMAIN", authority=SOA),
    # reverse
    Case("ptr-cluster-ip", "20.96.{s}.127.in-addr.arpa", "PTR",
         answer=[f"20.96.{{s}}.127.in-addr.arpa. 5 IN PTR web.{D}"]),
    Case("ptr-endpoint-in-two-services", "5.128.{s}.127.in-addr.arpa", "PTR",
         answer=[f"5.128.{{s}}.127.in-addr.arpa. 5 IN PTR db-0.db.{D}",
                 f"5.128.{{s}}.127.in-addr.arpa. 5 IN PTR 127-{{s}}-128-5.db-alt.{D}"]),
    Case("ptr-dashed-endpoint", "6.128.{s}.127.in-addr.arpa", "PTR",
         answer=[f"6.128.{{s}}.127.in-addr.arpa. 5 IN PTR 127-{{s}}-128-6.db.{D}"]),
    Case("ptr-unknown-forwarded", "77.77.{s}.127.in-addr.arpa", "PTR", status="NXDOMAIN",
         flags={"qr", "ra"}, no_flags={"aa"}),
    # outside the zone: forwarded
    Case("forwarded", "example.test", answer=["example.test. 60 IN A 192.0.2.10"],
         flags={"qr", "rd", "ra"}, no_flags={"aa"}),
    Case("forwarded-nxdomain", "missing.test", status="NXDOMAIN", flags={"qr", "ra"}, no_flags={"aa"}),
    Case("forward-timeout-servfail", "slow.test", status="SERVFAIL", no_flags={"aa"}, flags={"qr"}),
    Case("chaos-class-refused", "web.default.svc.cluster.local", "TXT", status="REFUSED", flags={"qr"},
         args=("-c", "CH")),
    Case("recursion-desired-copied", "web.default.svc.cluster.local", flags={"qr", "aa", "rd", "ra"},
         answer=[f"web.{D} 5 IN A 127.{{s}}.96.20"]),
    Case("no-rd", "web.default.svc.cluster.local", flags={"qr", "aa"}, no_flags={"rd"}, args=("+norecurse",),
         answer=[f"web.{D} 5 IN A 127.{{s}}.96.20"]),
]


def _fmt(lines, s):
    return None if lines is None else sorted(" ".join(x.format(s=s).split()) for x in lines)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_dig(world, case: Case, transport: str):
    s = world.slot.index
    d = t.dig(world.host, world.port, case.name.format(s=s), case.qtype, *case.args, tcp=transport == "tcp")
    assert d.status == case.status, d.text
    assert case.flags <= d.flags and not (case.no_flags & d.flags), d.text
    if case.answer is not None:
        assert sorted(d.answer) == _fmt(case.answer, s), d.text
    if case.authority is not None:
        got = sorted(" ".join(r.split()[i] for i in (0, 3)) for r in d.authority)
        assert got == sorted(case.authority), d.text
    if case.additional is not None:
        assert sorted(d.additional) == _fmt(case.additional, s), d.text
    if case.qtype == "SOA" and case.name == "cluster.local":
        (soa,) = d.records("answer", "SOA")
        mname, rname, serial, refresh, retry, expire, minimum = soa[4].split()
        assert (mname, rname, refresh, retry, expire, minimum) == (
            "ns.dns.cluster.local.", "hostmaster.cluster.local.", "7200", "1800", "86400", "5")


def test_cases_cover_the_table():
    assert len(CASES) >= 40


def test_large_answer_truncated_over_udp_complete_over_tcp(world):
    h, p = world.host, world.port
    small = t.dig(h, p, "big.default.svc.cluster.local", "A", "+noedns", "+ignore")
    assert "tc" in small.flags and 0 < len(small.answer) < 100 and not small.edns
    edns = t.dig(h, p, "big.default.svc.cluster.local", "A", "+bufsize=1232", "+ignore")
    assert "tc" in edns.flags and len(small.answer) < len(edns.answer) < 100 and edns.edns
    full = t.dig(h, p, "big.default.svc.cluster.local", "A", "+bufsize=4096", "+ignore")
    assert "tc" not in full.flags and len(full.answer) == 100
    tcp = t.dig(h, p, "big.default.svc.cluster.local", "A", tcp=True)
    assert "tc" not in tcp.flags and len(tcp.answer) == 100
    assert sorted(r.split()[4] for r in tcp.answer) == sorted(
        f"127.{world.slot.index}.129.{i}" for i in range(1, 101))
    # dig's default: retry over TCP on TC, and get everything
    auto = t.dig(h, p, "big.default.svc.cluster.local", "A", "+noedns")
    assert len(auto.answer) == 100


def test_edns_version_and_absence(world):
    h, p = world.host, world.port
    bad = t.dig(h, p, "web.default.svc.cluster.local", "A", "+edns=1", "+noednsneg")
    assert bad.status == "BADVERS" and not bad.answer
    plain = t.dig(h, p, "web.default.svc.cluster.local", "A", "+noedns")
    assert plain.status == "NOERROR" and not plain.edns
    assert "udp: 1232" in t.dig(h, p, "web.default.svc.cluster.local", "A").text
