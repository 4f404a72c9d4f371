"""Wire handling without sockets: EDNS0, truncation by whole records, malformed queries."""
from __future__ import annotations

import struct

from dnslib import EDNS0, QTYPE, RCODE, DNSHeader, DNSQuestion, DNSRecord

from kubemu.dns import message, snapshot
from kubemu.dns import testing as t

ZONE = "cluster.local"


def big_world(n: int = 100) -> snapshot.Snapshot:
    svc = t.service("big", headless=True, ports=[("http", 80, "TCP")])
    sl = t.endpoint_slice("big-a", "big", endpoints=[f"10.244.{i // 250}.{i % 250 + 1}" for i in range(n)])
    web = t.service("web", cluster_ip="10.96.0.20")
    return snapshot.build(ZONE, services=[svc, web], slices=[sl], namespaces=["default"])


SNAP = big_world()


def run(q: DNSRecord, *, tcp: bool = False, snap=SNAP) -> tuple[bytes, DNSRecord]:
    out = message.process(bytes(q.pack()), snap, tcp=tcp)
    assert isinstance(out, message.Reply)
    return out.wire, DNSRecord.parse(out.wire)


def question(name="big.default.svc.cluster.local", qtype="A", edns: int | None = None, **edns_kw):
    q = DNSRecord.question(name, qtype)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns, **edns_kw))
    return q


def test_without_edns_udp_answers_fit_512_bytes_truncated_by_whole_records():
    wire, r = run(question())
    assert len(wire) <= 512
    assert r.header.tc == 1
    assert 0 < len(r.rr) < 100
    assert all(x.rtype == QTYPE.A for x in r.rr)   # parsed cleanly: whole records only
    assert not r.ar   # no OPT without EDNS in the query


def test_edns_size_is_honoured_and_opt_echoed():
    wire, r = run(question(edns=1232))
    assert len(wire) <= 1232 and r.header.tc == 1
    assert [x.rtype for x in r.ar] == [QTYPE.OPT]
    assert r.ar[0].edns_len == message.EDNS_ADVERTISED
    n1232 = len(r.rr)
    wire, r = run(question(edns=4096))
    assert r.header.tc == 0 and len(r.rr) == 100 and len(r.rr) > n1232


def test_edns_size_below_512_counts_as_512():
    wire, r = run(question(edns=100))
    assert 100 < len(wire) <= 512 and r.header.tc == 1


def test_tcp_returns_everything():
    wire, r = run(question(), tcp=True)
    assert r.header.tc == 0 and len(r.rr) == 100


def test_additional_records_are_dropped_before_answers_without_tc():
    # 60 endpoints: the SRV answer fits 4096 bytes only without its 60 additional A records
    snap = big_world(60)
    q = question("_http._tcp.big.default.svc.cluster.local", "SRV", edns=4096)
    full, r = run(q, tcp=True, snap=snap)
    assert len(full) > 4096 and len([x for x in r.ar if x.rtype == QTYPE.A]) == 60
    wire, r = run(q, snap=snap)
    assert len(wire) <= 4096
    assert len(r.rr) == 60 and r.header.tc == 0
    assert [x.rtype for x in r.ar] == [QTYPE.OPT]


def test_do_bit_is_copied():
    _, r = run(question("web.default.svc.cluster.local", edns=1232, flags="do"))
    assert r.ar[0].ttl & (1 << 15)


def test_unknown_edns_version_is_badvers():
    _, r = run(question("web.default.svc.cluster.local", edns=1232, version=1))
    assert r.header.rcode == 0 and not r.rr
    opt = r.ar[0]
    assert opt.rtype == QTYPE.OPT and (opt.ttl >> 24) == 1   # extended RCODE 16 = BADVERS


def test_two_opt_records_is_formerr():
    q = question("web.default.svc.cluster.local", edns=1232)
    q.add_ar(EDNS0(udp_len=512))
    _, r = run(q)
    assert r.header.rcode == RCODE.FORMERR


def test_question_count_other_than_one_is_formerr():
    q = DNSRecord(DNSHeader(id=7), questions=[DNSQuestion("a.cluster.local"), DNSQuestion("b.cluster.local")])
    _, r = run(q)
    assert r.header.rcode == RCODE.FORMERR and r.header.id == 7
    q = DNSRecord(DNSHeader(id=8))
    _, r = run(q)
    assert r.header.rcode == RCODE.FORMERR


def test_other_opcodes_are_notimp():
    q = question("web.default.svc.cluster.local")
    q.header.opcode = 2   # STATUS
    _, r = run(q)
    assert r.header.rcode == RCODE.NOTIMP


def test_garbage_gets_formerr_and_responses_or_runts_are_dropped():
    wire = message.process(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab", SNAP)
    r = DNSRecord.parse(wire.wire)
    assert r.header.id == 0x1234 and r.header.rcode == RCODE.FORMERR and r.header.rd == 1
    assert message.process(b"\x00\x01", SNAP) is None
    response = bytes(question().reply().pack())
    assert message.process(response, SNAP) is None


def test_label_with_reserved_length_bits_is_formerr_not_a_crash():
    # 0x40..0xBF are the obsolete extended label types: a parser may accept them as long labels
    pkt = struct.pack("!HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\x41" + b"a" * 65 + b"\x00\x00\x01\x00\x01"
    out = message.process(pkt, SNAP)
    assert out is None or DNSRecord.parse(out.wire).header.rcode in (RCODE.FORMERR, RCODE.SERVFAIL)


def test_multi_address_answers_come_in_rotations():
    svc = t.service("hl", headless=True)
    sl = t.endpoint_slice("hl-a", "hl", endpoints=["10.244.3.1", "10.244.3.2", "10.244.3.3"])
    snap = snapshot.build(ZONE, services=[svc], slices=[sl], namespaces=["default"])
    out = message.process(bytes(question("hl.default.svc.cluster.local").pack()), snap)
    firsts = [str(DNSRecord.parse(v).rr[0].rdata) for v in out.variants]
    assert sorted(firsts) == ["10.244.3.1", "10.244.3.2", "10.244.3.3"]
    assert all(sorted(str(x.rdata) for x in DNSRecord.parse(v).rr) == sorted(firsts) for v in out.variants)
