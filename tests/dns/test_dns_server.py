"""The transport in-process: answer cache, snapshot swaps, TCP, forwarding, hostile input."""
from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from kubemu.dns import snapshot
from kubemu.dns import testing as t
from kubemu.dns.forward import Forwarder
from kubemu.dns.server import DnsServer
from kubemu.testing.procs import run

ZONE = "cluster.local"


def snap_with(ip: str = "10.96.0.20", **kw) -> snapshot.Snapshot:
    return snapshot.build(ZONE, services=[
        t.service("web", cluster_ip=ip),
        t.service("ext", type="ExternalName", external_name="example.test"),
        t.service("hl", headless=True)],
        slices=[t.endpoint_slice("hl-a", "hl", endpoints=[f"10.244.1.{i}" for i in range(1, 101)])],
        namespaces=["default"], **kw)


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self):
        self.replies: asyncio.Queue = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.replies.put_nowait(data)


async def udp_client(addr):
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(UdpClient, remote_addr=addr)
    return transport, proto


async def ask_udp(addr, name, qtype="A", *, msg_id=None, timeout=3.0) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    if msg_id is not None:
        q.header.id = msg_id
    transport, proto = await udp_client(addr)
    try:
        transport.sendto(bytes(q.pack()))
        reply = DNSRecord.parse(await asyncio.wait_for(proto.replies.get(), timeout))
    finally:
        transport.close()
    assert reply.header.id == q.header.id
    return reply


async def ask_tcp(addr, *names_types, timeout=3.0) -> list[DNSRecord]:
    """Several queries pipelined on one connection."""
    reader, writer = await asyncio.open_connection(*addr)
    qs = [DNSRecord.question(n, ty) for n, ty in names_types]
    for q in qs:
        b = bytes(q.pack())
        writer.write(struct.pack("!H", len(b)) + b)
    await writer.drain()
    out = []
    for q in qs:
        n = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), timeout))[0]
        r = DNSRecord.parse(await asyncio.wait_for(reader.readexactly(n), timeout))
        assert r.header.id == q.header.id
        out.append(r)
    writer.close()
    return out


def ips(r: DNSRecord) -> list[str]:
    return sorted(str(x.rdata) for x in r.rr if x.rtype == QTYPE.A)


def test_cache_hits_patch_the_message_id():
    async def body():
        server = DnsServer(snap_with())
        addr = await server.start("127.0.0.1", 0)
        try:
            r1 = await ask_udp(addr, "web.default.svc.cluster.local", msg_id=1)
            misses = server.misses
            r2 = await ask_udp(addr, "web.default.svc.cluster.local", msg_id=2)
            assert server.misses == misses   # served from the cache
            assert ips(r1) == ips(r2) == ["10.96.0.20"]
            assert r1.header.id == 1 and r2.header.id == 2
            # another spelling is another entry, and echoes its own case
            r3 = await ask_udp(addr, "WEB.default.svc.cluster.local")
            assert str(r3.rr[0].rname) == "WEB.default.svc.cluster.local."
        finally:
            await server.stop()
    run(body())


@pytest.mark.parametrize("udp_mode", ["reader", "protocol"])
def test_swap_never_serves_a_stale_answer(udp_mode):
    async def body():
        server = DnsServer(snap_with("10.96.0.20"), udp_mode=udp_mode)
        addr = await server.start("127.0.0.1", 0)
        try:
            for i in range(30):
                ip = f"10.96.1.{i}"
                server.swap(snap_with(ip))
                for _ in range(3):   # the first is a miss, the others hits: all new
                    assert ips(await ask_udp(addr, "web.default.svc.cluster.local")) == [ip]
        finally:
            await server.stop()
    run(body())


def test_multi_address_answers_rotate_across_cache_hits():
    async def body():
        server = DnsServer(snap_with())
        addr = await server.start("127.0.0.1", 0)
        try:
            firsts = set()
            for _ in range(8):
                q = DNSRecord.question("hl.default.svc.cluster.local", "A")
                q.add_ar(__import__("dnslib").EDNS0(udp_len=4096))
                transport, proto = await udp_client(addr)
                transport.sendto(bytes(q.pack()))
                r = DNSRecord.parse(await asyncio.wait_for(proto.replies.get(), 3))
                transport.close()
                assert len(r.rr) == 100
                firsts.add(str(r.rr[0].rdata))
            assert len(firsts) == 8
        finally:
            await server.stop()
    run(body())


def test_tcp_pipelined_and_complete_where_udp_truncates():
    async def body():
        server = DnsServer(snap_with())
        addr = await server.start("127.0.0.1", 0)
        try:
            udp = await ask_udp(addr, "hl.default.svc.cluster.local")
            assert udp.header.tc == 1 and len(udp.rr) < 100
            a, b, c = await ask_tcp(addr, ("hl.default.svc.cluster.local", "A"),
                                    ("web.default.svc.cluster.local", "A"),
                                    ("nope.default.svc.cluster.local", "A"))
            assert len(a.rr) == 100 and a.header.tc == 0
            assert ips(b) == ["10.96.0.20"]
            assert c.header.rcode == RCODE.NXDOMAIN
        finally:
            await server.stop()
    run(body())


def test_forwarding_over_udp_and_tcp_and_servfail_when_upstream_is_silent():
    async def body(up):
        fw = Forwarder([("127.0.0.1", up.port)], timeout=0.5, attempt_timeout=0.5)
        server = DnsServer(snap_with(), forwarder=fw)
        addr = await server.start("127.0.0.1", 0)
        try:
            r = await ask_udp(addr, "example.test")
            assert ips(r) == ["192.0.2.10"] and r.header.aa == 0
            (r,) = await ask_tcp(addr, ("example.test", "A"))
            assert ips(r) == ["192.0.2.10"]
            r = await ask_udp(addr, "missing.test")
            assert r.header.rcode == RCODE.NXDOMAIN
            t0 = time.monotonic()
            r = await ask_udp(addr, "slow.test")
            assert r.header.rcode == RCODE.SERVFAIL and time.monotonic() - t0 < 2
            # an out-of-zone ExternalName is chased through the upstream
            r = await ask_udp(addr, "ext.default.svc.cluster.local")
            assert [QTYPE.get(x.rtype) for x in r.rr] == ["CNAME", "A"] and r.header.aa == 1
            assert ips(r) == ["192.0.2.10"]
        finally:
            await server.stop()
    with t.FakeUpstream({"example.test": [("A", "192.0.2.10")]}, slow=["slow.test"]) as up:
        run(body(up))


def test_hostile_input_does_not_stop_the_server():
    async def body():
        server = DnsServer(snap_with(), tcp_idle_timeout=0.5)
        addr = await server.start("127.0.0.1", 0)
        try:
            loop = asyncio.get_running_loop()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for pkt in (b"", b"\x00", b"\xff" * 12, b"\x00\x01\x80" + b"\x00" * 9,
                        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
                        bytes(range(256)) * 4):
                s.sendto(pkt, addr)
            s.close()
            # TCP: a length that never arrives, a zero length, a half message, then a close
            for payload in (b"\x10\x00", b"\x00\x00", b"\x00\x20\x12\x34", b"\x00"):
                r, w = await asyncio.open_connection(*addr)
                w.write(payload)
                await w.drain()
                w.close()
            idle_r, idle_w = await asyncio.open_connection(*addr)   # slowloris: cut off when idle
            assert await asyncio.wait_for(idle_r.read(), 3) == b""
            idle_w.close()
            await asyncio.sleep(0)
            assert ips(await ask_udp(addr, "web.default.svc.cluster.local")) == ["10.96.0.20"]
            (r,) = await ask_tcp(addr, ("web.default.svc.cluster.local", "A"))
            assert ips(r) == ["10.96.0.20"]
            del loop
        finally:
            await server.stop()
    run(body())
