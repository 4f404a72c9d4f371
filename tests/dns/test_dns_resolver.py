"""The answer logic as a pure function of (query, snapshot): no sockets, no processes."""
from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from kubemu.dns import message, resolver, snapshot
from kubemu.dns import testing as t

ZONE = "cluster.local"


def world(**kw) -> snapshot.Snapshot:
    services = [
        t.service("web", cluster_ip="10.96.0.20", ports=[("http", 80, "TCP"), ("dns", 53, "UDP")]),
        t.service("plain", cluster_ip="10.96.0.22", ports=[("", 8080, "TCP")]),
        t.service("empty", cluster_ip="10.96.0.21"),
        t.service("db", headless=True, ports=[("pg", 5432, "TCP")]),
        t.service("db-alt", headless=True, ports=[("pg", 5432, "TCP")]),
        t.service("nohosts", headless=True),
        t.service("ext", type="ExternalName", external_name="example.test."),
        t.service("alias", type="ExternalName", external_name="web.default.svc.cluster.local"),
        t.service("loop", type="ExternalName", external_name="loop.default.svc.cluster.local"),
        t.service("web", "other", cluster_ip="10.96.0.30"),
    ]
    slices = [
        t.endpoint_slice("db-a", "db", endpoints=[("10.244.1.5", "db-0", True), "10.244.1.6",
                                                  ("10.244.1.7", None, False)],
                         ports=[("pg", 5432, "TCP")]),
        t.endpoint_slice("db-alt-a", "db-alt", endpoints=["10.244.1.5"], ports=[("pg", 5432, "TCP")]),
        t.endpoint_slice("web-a", "web", endpoints=["10.244.2.1"], ports=[("http", 8080, "TCP")]),
    ]
    pods = [t.pod("p1", "default", "10.244.1.5"), t.pod("p9", "other", "10.244.1.9")]
    return snapshot.build(ZONE, services=services, slices=slices, pods=pods,
                          namespaces=["default", "other", "kube-system"],
                          nameservers=["10.96.0.10"], serial=42, **kw)


SNAP = world()


def ask(name: str, qtype: str = "A", snap=SNAP, *, recursion: bool = False, edns: int | None = None,
        tcp: bool = False) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    if edns is not None:
        from dnslib import EDNS0
        q.add_ar(EDNS0(udp_len=edns))
    out = message.process(bytes(q.pack()), snap, tcp=tcp, recursion=recursion)
    assert isinstance(out, message.Reply), out
    r = DNSRecord.parse(out.wire)
    assert r.header.id == q.header.id and r.header.qr == 1
    return r


def rdatas(r: DNSRecord, rtype: str, section: str = "rr") -> list[str]:
    return sorted(str(x.rdata) for x in getattr(r, section) if QTYPE.get(x.rtype) == rtype)


def test_cluster_ip_service_answers_its_ip_authoritatively():
    r = ask("web.default.svc.cluster.local")
    assert r.header.rcode == RCODE.NOERROR and r.header.aa == 1
    assert rdatas(r, "A") == ["10.96.0.20"]
    assert r.rr[0].ttl == 5


def test_service_without_endpoints_still_has_its_cluster_ip():
    assert rdatas(ask("empty.default.svc.cluster.local"), "A") == ["10.96.0.21"]


def test_case_is_ignored_and_echoed():
    r = ask("WeB.DEFAULT.svc.Cluster.LOCAL")
    assert rdatas(r, "A") == ["10.96.0.20"]
    assert str(r.rr[0].rname) == "WeB.DEFAULT.svc.Cluster.LOCAL."
    assert str(r.q.qname) == "WeB.DEFAULT.svc.Cluster.LOCAL."


def test_aaaa_on_ipv4_service_is_nodata_with_soa():
    r = ask("web.default.svc.cluster.local", "AAAA")
    assert r.header.rcode == RCODE.NOERROR and not r.rr
    assert [QTYPE.get(x.rtype) for x in r.auth] == ["SOA"]
    soa = r.auth[0].rdata
    assert str(soa.mname) == "ns.dns.cluster.local." and soa.times[0] == 42 and soa.times[4] == 5


@pytest.mark.parametrize("name", ["nope.default.svc.cluster.local", "x.nons.svc.cluster.local",
                                  "foo.cluster.local", "a.b.c.web.default.svc.cluster.local",
                                  "nohosts.default.svc.cluster.local", "below.ext.default.svc.cluster.local",
                                  "nons.svc.cluster.local", "bogus.db.default.svc.cluster.local",
                                  "10-244-1-7.db.default.svc.cluster.local"])
def test_names_that_do_not_exist_are_nxdomain_with_soa(name):
    r = ask(name)
    assert r.header.rcode == RCODE.NXDOMAIN and r.header.aa == 1
    assert [QTYPE.get(x.rtype) for x in r.auth] == ["SOA"]


@pytest.mark.parametrize("name", ["svc.cluster.local", "pod.cluster.local", "default.svc.cluster.local",
                                  "default.pod.cluster.local", "_tcp.web.default.svc.cluster.local",
                                  "dns.cluster.local", "cluster.local"])
def test_empty_non_terminals_and_apex_are_nodata(name):
    r = ask(name)
    assert r.header.rcode == RCODE.NOERROR and not r.rr
    assert [QTYPE.get(x.rtype) for x in r.auth] == ["SOA"]


def test_headless_answers_ready_endpoints_only():
    assert rdatas(ask("db.default.svc.cluster.local"), "A") == ["10.244.1.5", "10.244.1.6"]


def test_endpoint_names_from_hostname_else_dashed_ip():
    assert rdatas(ask("db-0.db.default.svc.cluster.local"), "A") == ["10.244.1.5"]
    assert rdatas(ask("10-244-1-6.db.default.svc.cluster.local"), "A") == ["10.244.1.6"]


def test_srv_for_named_port_of_cluster_ip_service():
    r = ask("_http._tcp.web.default.svc.cluster.local", "SRV")
    assert rdatas(r, "SRV") == ["0 100 80 web.default.svc.cluster.local."]
    assert rdatas(r, "A", "ar") == ["10.96.0.20"]
    assert ask("_http._udp.web.default.svc.cluster.local", "SRV").header.rcode == RCODE.NXDOMAIN
    assert ask("http.tcp.web.default.svc.cluster.local", "SRV").header.rcode == RCODE.NXDOMAIN


def test_bare_srv_answers_every_port_like_coredns():
    r = ask("web.default.svc.cluster.local", "SRV")
    assert rdatas(r, "SRV") == ["0 50 53 web.default.svc.cluster.local.",
                                "0 50 80 web.default.svc.cluster.local."]
    assert rdatas(ask("plain.default.svc.cluster.local", "SRV"), "SRV") == [
        "0 100 8080 plain.default.svc.cluster.local."]


def test_headless_srv_targets_endpoints_with_addresses_in_additional():
    r = ask("_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert rdatas(r, "SRV") == ["0 50 5432 10-244-1-6.db.default.svc.cluster.local.",
                                "0 50 5432 db-0.db.default.svc.cluster.local."]
    assert sorted((str(x.rname), str(x.rdata)) for x in r.ar) == [
        ("10-244-1-6.db.default.svc.cluster.local.", "10.244.1.6"),
        ("db-0.db.default.svc.cluster.local.", "10.244.1.5")]


def test_external_name_is_a_cname_and_in_zone_targets_are_chased():
    r = ask("ext.default.svc.cluster.local", "CNAME")
    assert rdatas(r, "CNAME") == ["example.test."]
    r = ask("alias.default.svc.cluster.local")
    assert [QTYPE.get(x.rtype) for x in r.rr] == ["CNAME", "A"]
    assert str(r.rr[1].rname) == "web.default.svc.cluster.local." and rdatas(r, "A") == ["10.96.0.20"]


def test_cname_loop_stops():
    r = ask("loop.default.svc.cluster.local")
    assert r.header.rcode == RCODE.NOERROR
    assert 1 <= len(r.rr) <= resolver.MAX_CHASE + 1


def test_out_of_zone_cname_is_chased_by_the_caller_only_with_recursion():
    q = DNSRecord.question("ext.default.svc.cluster.local", "A")
    out = message.process(bytes(q.pack()), SNAP, recursion=True)
    assert isinstance(out, message.Chase) and str(out.target) == "example.test."
    up = DNSRecord.question("example.test", "A").reply()
    up.add_answer(*__import__("dnslib").RR.fromZone("example.test. 60 IN A 192.0.2.10"))
    r = DNSRecord.parse(message.finish_chase(out, bytes(up.pack())))
    assert [QTYPE.get(x.rtype) for x in r.rr] == ["CNAME", "A"] and r.header.id == q.header.id
    r = ask("ext.default.svc.cluster.local")   # no upstream: the CNAME alone
    assert rdatas(r, "CNAME") == ["example.test."] and not rdatas(r, "A")


def test_namespaces_are_separate():
    assert rdatas(ask("web.other.svc.cluster.local"), "A") == ["10.96.0.30"]


def test_pods_are_verified_against_their_namespace():
    assert rdatas(ask("10-244-1-5.default.pod.cluster.local"), "A") == ["10.244.1.5"]
    assert ask("10-244-1-9.default.pod.cluster.local").header.rcode == RCODE.NXDOMAIN
    assert rdatas(ask("10-244-1-9.other.pod.cluster.local"), "A") == ["10.244.1.9"]
    assert ask("not-an-ip.default.pod.cluster.local").header.rcode == RCODE.NXDOMAIN


def test_ptr_for_cluster_ips_and_each_service_of_an_endpoint():
    assert rdatas(ask("20.0.96.10.in-addr.arpa", "PTR"), "PTR") == ["web.default.svc.cluster.local."]
    assert rdatas(ask("5.1.244.10.in-addr.arpa", "PTR"), "PTR") == [
        "10-244-1-5.db-alt.default.svc.cluster.local.", "db-0.db.default.svc.cluster.local."]


def test_unknown_names_outside_the_zone_are_forwarded_or_refused():
    q = DNSRecord.question("example.com", "A")
    assert isinstance(message.process(bytes(q.pack()), SNAP, recursion=True), message.Forward)
    q = DNSRecord.question("1.2.3.4.in-addr.arpa", "PTR")
    assert isinstance(message.process(bytes(q.pack()), SNAP, recursion=True), message.Forward)
    r = ask("example.com")
    assert r.header.rcode == RCODE.REFUSED and r.header.aa == 0


def test_apex_soa_ns_and_version():
    r = ask("cluster.local", "SOA")
    assert rdatas(r, "SOA") and not r.auth
    r = ask("cluster.local", "NS")
    assert rdatas(r, "NS") == ["ns.dns.cluster.local."] and rdatas(r, "A", "ar") == ["10.96.0.10"]
    assert rdatas(ask("ns.dns.cluster.local"), "A") == ["10.96.0.10"]
    r = ask("dns-version.cluster.local", "TXT")
    assert rdatas(r, "TXT") == ['"1.1.0"']


def test_soa_owner_keeps_the_question_case():
    r = ask("nope.default.svc.CLUSTER.local")
    assert str(r.auth[0].rname) == "CLUSTER.local."


def test_any_returns_every_record_at_the_name():
    r = ask("web.default.svc.cluster.local", "ANY")
    assert {QTYPE.get(x.rtype) for x in r.rr} == {"A", "SRV"}


def test_before_first_sync_the_zone_is_servfail_not_nxdomain():
    unsynced = snapshot.SnapshotBuilder(ZONE).build(synced=False)
    for name in ("web.default.svc.cluster.local", "nope.default.svc.cluster.local",
                 "20.0.96.10.in-addr.arpa"):
        assert ask(name, snap=unsynced).header.rcode == RCODE.SERVFAIL


def test_other_classes_and_zone_transfers_are_refused():
    q = DNSRecord.question("web.default.svc.cluster.local", "TXT", "CH")
    r = DNSRecord.parse(message.process(bytes(q.pack()), SNAP).wire)
    assert r.header.rcode == RCODE.REFUSED
    assert ask("cluster.local", "AXFR", tcp=True).header.rcode == RCODE.REFUSED


def test_publish_not_ready_addresses_includes_unready_endpoints():
    svc = t.service("hl", headless=True, publish_not_ready=True)
    sl = t.endpoint_slice("hl-a", "hl", endpoints=[("10.244.3.1", None, False)])
    snap = snapshot.build(ZONE, services=[svc], slices=[sl], namespaces=["default"])
    assert rdatas(ask("hl.default.svc.cluster.local", snap=snap), "A") == ["10.244.3.1"]


def test_endpoints_listed_by_two_slices_appear_once():
    svc = t.service("hl", headless=True)
    slices = [t.endpoint_slice("hl-a", "hl", endpoints=["10.244.3.1"]),
              t.endpoint_slice("hl-b", "hl", endpoints=["10.244.3.1", "10.244.3.2"])]
    snap = snapshot.build(ZONE, services=[svc], slices=slices, namespaces=["default"])
    assert rdatas(ask("hl.default.svc.cluster.local", snap=snap), "A") == ["10.244.3.1", "10.244.3.2"]


def test_a_namespace_with_services_exists_even_before_its_namespace_object():
    snap = snapshot.build(ZONE, services=[t.service("s", "late", cluster_ip="10.96.0.99")])
    assert ask("late.svc.cluster.local", snap=snap).header.rcode == RCODE.NOERROR


def test_ipv6_addresses_answer_aaaa():
    svc = t.service("v6", cluster_ip="fd00::20")
    snap = snapshot.build(ZONE, services=[svc], namespaces=["default"])
    assert rdatas(ask("v6.default.svc.cluster.local", "AAAA", snap=snap), "AAAA") == ["fd00::20"]
    assert ask("v6.default.svc.cluster.local", "A", snap=snap).rr == []
    rev = "0.2.0.0." + "0." * 24 + "0.0.d.f.ip6.arpa"
    assert rdatas(ask(rev, "PTR", snap=snap), "PTR") == ["v6.default.svc.cluster.local."]


def test_ttl_is_configurable():
    snap = world(ttl=30)
    assert ask("web.default.svc.cluster.local", snap=snap).rr[0].ttl == 30
