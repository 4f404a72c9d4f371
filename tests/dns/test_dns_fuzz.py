"""Fuzzing the packet path: random and mutated packets get FORMERR, a reply, or are dropped.

Runs in CI with bounded example counts (a few seconds); the property is the same for every
input: `process` returns, never raises, and what it returns is a well-formed reply to the
query's message ID that fits the transport's size limit.
"""
from __future__ import annotations

import struct

import pytest
from dnslib import EDNS0, QTYPE, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubemu.dns import message, snapshot
from kubemu.dns import testing as t

ZONE = "cluster.local"
SNAP = snapshot.build(
    ZONE,
    services=[t.service("web", cluster_ip="10.96.0.20"), t.service("db", headless=True),
              t.service("ext", type="ExternalName", external_name="web.default.svc.cluster.local")],
    slices=[t.endpoint_slice("db-a", "db", endpoints=[f"10.244.1.{i}" for i in range(1, 80)])],
    pods=[t.pod("p", ip="10.244.1.1")], namespaces=["default"])

FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))


def _seed(name: str, qtype: str, edns: int | None) -> bytes:
    q = DNSRecord.question(name, qtype)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns))
    return bytes(q.pack())


SEEDS = [_seed(n, ty, e) for n, ty, e in [
    ("web.default.svc.cluster.local", "A", None), ("db.default.svc.cluster.local", "A", 1232),
    ("_http._tcp.db.default.svc.cluster.local", "SRV", 4096), ("cluster.local", "SOA", None),
    ("20.0.96.10.in-addr.arpa", "PTR", 1232), ("ext.default.svc.cluster.local", "A", None),
    ("10-244-1-1.default.pod.cluster.local", "A", 512), ("nope.cluster.local", "TXT", None)]]


def check(data: bytes, tcp: bool) -> None:
    out = message.process(data, SNAP, tcp=tcp, recursion=False)
    if out is None:
        assert len(data) < 12 or data[2] & 0x80
        return
    assert isinstance(out, message.Reply), out   # no recursion: never Forward/Chase
    for wire in out.variants:
        assert wire[:2] == data[:2]              # the query's ID
        assert wire[2] & 0x80                    # QR: a response
        assert len(wire) <= (65535 if tcp else max(512, _advertised(data)))
        reply = DNSRecord.parse(wire)            # well-formed
        assert reply.header.rcode != 2           # SERVFAIL here would mean an exception inside


def _advertised(data: bytes) -> int:
    try:
        r = DNSRecord.parse(data)
    except Exception:
        return 512
    opts = [rr for rr in r.ar if rr.rtype == QTYPE.OPT]
    return opts[0].rclass if len(opts) == 1 else 512


@FUZZ
@given(st.binary(max_size=600), st.booleans())
def test_random_bytes(data, tcp):
    check(data, tcp)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "dup"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0, 1, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFF]))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += data[i:i + draw(st.integers(1, 40))]
    return bytes(data)


@FUZZ
@given(mutated(), st.booleans())
def test_mutated_queries(data, tcp):
    check(data, tcp)


labels = st.one_of(st.sampled_from(["web", "db", "default", "svc", "pod", "cluster", "local", "_http",
                                    "_tcp", "10-244-1-1", "in-addr", "arpa", "dns", "ns", "*"]),
                   st.binary(min_size=1, max_size=63))


@FUZZ
@given(st.lists(labels, min_size=0, max_size=8), st.integers(0, 65535), st.integers(0, 65535),
       st.one_of(st.none(), st.integers(0, 65535)), st.integers(0, 0xFFFF), st.booleans())
def test_structured_questions(names, qtype, qclass, edns, flags, tcp):
    """Arbitrary labels, types, classes, flags and EDNS sizes in a well-formed packet."""
    wire_name = b""
    for label in names:
        raw = label.encode() if isinstance(label, str) else label
        wire_name += bytes([len(raw)]) + raw
    wire_name += b"\x00"
    flags &= ~0x8000   # a query
    body = wire_name + struct.pack("!HH", qtype, qclass)
    ar = 0
    if edns is not None:
        body += b"\x00" + struct.pack("!HHIH", 41, edns, 0, 0)
        ar = 1
    data = struct.pack("!HHHHHH", 0xBEEF, flags, 1, 0, 0, ar) + body
    check(data, tcp)


@pytest.mark.parametrize("n", [0, 1, 11, 12, 13])
def test_runts(n):
    check(SEEDS[0][:n], False)
