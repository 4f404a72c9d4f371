"""The data path in-process, on real loopback sockets: relay, half-close, retries, replay, source
addresses, UDP flows, back-pressure. Each test runs its own event loop with a deadline."""
from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
import time

import pytest

from kubemu import relayio
from kubemu.cloudlb import forward
from kubemu.cloudlb.forward import Backends, TcpListener, UdpListener
from kubemu.cloudlb.planner import Probe, Target
from kubemu.testing import procs


@pytest.fixture(scope="module")
def slot():
    s = procs.claim_slot()
    yield s
    s.release()


class Addrs:
    """Fresh addresses in the slot: 127.S.250.N for load balancers, 127.S.251.N for targets."""

    def __init__(self, slot):
        self.slot = slot
        self.n = 0

    def lb(self) -> str:
        self.n += 1
        return f"127.{self.slot.index}.250.{self.n}"

    def backend(self) -> str:
        self.n += 1
        return f"127.{self.slot.index}.251.{self.n}"


@pytest.fixture
def addrs(slot):
    return Addrs(slot)


LOOP = "asyncio"


@pytest.fixture(params=["asyncio", "uvloop"], autouse=True)
def loop_kind(request):
    """Every test on both loops: the process runs on uvloop, whose transports differ in detail."""
    global LOOP
    LOOP = request.param
    if LOOP == "uvloop":
        pytest.importorskip("uvloop")


def run(coro):
    if LOOP == "uvloop":
        import uvloop
        return uvloop.run(asyncio.wait_for(coro, 20))
    return asyncio.run(asyncio.wait_for(coro, 20))


def target(ip, port) -> Target:
    return Target(ip, port, Probe("tcp", ip, port))


async def listener(ip, targets, *, preserve=False, proto="tcp"):
    failures: list[Target] = []
    b = Backends(source_ip=ip, report_failure=failures.append)
    b.update(tuple(targets), lambda t: True, preserve_client_ip=preserve)
    port = procs.free_port(ip)
    lst = (TcpListener if proto == "tcp" else UdpListener)(ip, port, b)
    await lst.start()
    return lst, failures


async def serve(ip, handler):
    """A TCP server on ip:free port running `handler(reader, writer)` (Streams are fine in tests)."""
    server = await asyncio.start_server(handler, ip, 0)
    return server, server.sockets[0].getsockname()[1]


async def request(ip, port, data: bytes, *, source: str | None = None, shut: bool = True) -> bytes:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    if source:
        sock.bind((source, 0))
    await loop.sock_connect(sock, (ip, port))
    r, w = await asyncio.open_connection(sock=sock)
    w.write(data)
    if shut:
        w.write_eof()
    out = await r.read()
    w.close()
    return out


def reset(w) -> None:
    """Close with a TCP RST (what closing with unread data, or SO_LINGER 0, sends)."""
    sock = w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()


def dead_port(ip) -> int:
    return procs.free_port(ip)  # nothing listens there: connect is refused


def test_relay_with_half_close_and_client_address(addrs):
    async def go():
        seen = []

        async def echo(r, w):
            seen.append(w.get_extra_info("peername")[0])
            data = await r.read()          # until the client's EOF came through
            w.write(b"echo:" + data)
            await w.drain()
            w.close()

        bip = addrs.backend()
        server, port = await serve(bip, echo)
        lb_ip = addrs.lb()
        lst, _ = await listener(lb_ip, [target(bip, port)])
        # what it accepts does not pace its sends (see kubemu.relayio.unpaced)
        assert relayio.congestion(lst.sock) in relayio.LOOPBACK_CONGESTION
        assert await request(lb_ip, lst.port, b"hello") == b"echo:hello"
        # Cluster policy: the target sees the load balancer's own address
        assert seen == [lb_ip]
        lst.close()
        server.close()
    run(go())


def test_local_policy_preserves_the_client_address(addrs):
    async def go():
        seen = []

        async def hello(r, w):
            seen.append(w.get_extra_info("peername")[0])
            await r.read()
            w.write(b"hi")
            w.close()

        bip = addrs.backend()
        server, port = await serve(bip, hello)
        lb_ip, client_ip = addrs.lb(), addrs.lb()
        lst, _ = await listener(lb_ip, [target(bip, port)], preserve=True)
        assert await request(lb_ip, lst.port, b"x", source=client_ip) == b"hi"
        assert seen == [client_ip]
        lst.close()
        server.close()
    run(go())


def test_refused_target_is_reported_and_the_next_one_tried(addrs):
    async def go():
        async def hello(r, w):
            w.write(b"alive")
            w.close()

        bip = addrs.backend()
        server, port = await serve(bip, hello)
        dead = target(bip, dead_port(bip))
        lb_ip = addrs.lb()
        lst, failures = await listener(lb_ip, [dead, target(bip, port)])
        for _ in range(4):   # round robin starts on the dead one half of the time
            assert await request(lb_ip, lst.port, b"") == b"alive"
        assert failures and set(failures) == {dead}
        lst.close()
        server.close()
    run(go())


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_request_replayed_when_a_target_closes_before_answering(addrs, how):
    async def go():
        got = []

        async def dies(r, w):       # a node killed with the request in flight
            got.append(await r.read(100))
            if how == "rst":
                reset(w)
            else:
                w.transport.abort()

        async def answers(r, w):
            data = await r.read(100)
            w.write(b"answer to " + data)
            w.close()

        bip = addrs.backend()
        s1, p1 = await serve(bip, dies)
        s2, p2 = await serve(bip, answers)
        lb_ip = addrs.lb()
        bad = target(bip, p1)
        lst, failures = await listener(lb_ip, [bad, target(bip, p2)])
        lst.backends._next = 0      # start on the one that dies
        assert await request(lb_ip, lst.port, b"GET /", shut=False) == b"answer to GET /"
        assert got == [b"GET /"] and failures == [bad]
        lst.close()
        s1.close()
        s2.close()
    run(go())


def test_transient_resets_on_every_target_are_retried_in_rounds(addrs):
    """While a node dies, every node may reset a request for a moment: take the list again."""
    async def go():
        seen = []

        async def flaky(r, w):
            seen.append(await r.read(100))
            if len(seen) <= 2:
                reset(w)
            else:
                w.write(b"third time lucky")
                w.close()

        bip = addrs.backend()
        server, port = await serve(bip, flaky)
        lb_ip = addrs.lb()
        lst, failures = await listener(lb_ip, [target(bip, port)])
        assert await request(lb_ip, lst.port, b"GET /", shut=False) == b"third time lucky"
        assert seen == [b"GET /"] * 3 and len(failures) == 2
        lst.close()
        server.close()
    run(go())


def test_no_replay_once_the_target_answered(addrs):
    async def go():
        async def half_then_reset(r, w):
            await r.read(100)
            w.write(b"partial")
            await w.drain()
            await asyncio.sleep(0.05)
            reset(w)

        calls = []

        async def other(r, w):
            calls.append(1)
            w.write(b"other")
            w.close()

        bip = addrs.backend()
        s1, p1 = await serve(bip, half_then_reset)
        s2, p2 = await serve(bip, other)
        lb_ip = addrs.lb()
        lst, _ = await listener(lb_ip, [target(bip, p1), target(bip, p2)])
        lst.backends._next = 0
        loop = asyncio.get_running_loop()
        sock = socket.create_connection((lb_ip, lst.port))
        sock.setblocking(False)
        await loop.sock_sendall(sock, b"req")
        data = b""
        with pytest.raises(ConnectionResetError):
            while True:
                chunk = await loop.sock_recv(sock, 100)
                if not chunk:
                    break
                data += chunk
        sock.close()
        assert data == b"partial" and calls == []
        lst.close()
        s1.close()
        s2.close()
    run(go())


def test_no_reachable_target_resets_the_client(addrs):
    async def go():
        bip = addrs.backend()
        lb_ip = addrs.lb()
        dead = [target(bip, dead_port(bip)), target(bip, dead_port(bip))]
        lst, failures = await listener(lb_ip, dead)
        t0 = time.monotonic()
        with pytest.raises(ConnectionResetError):
            await request(lb_ip, lst.port, b"x")
        # every target, in rounds a little apart, until MAX_ATTEMPTS connects were refused
        assert len(failures) == forward.MAX_ATTEMPTS and set(failures) == set(dead) and lst.failed == 1
        assert time.monotonic() - t0 >= sum(forward.ROUND_BACKOFF)
        lst.close()
        empty, _ = await listener(addrs.lb(), [])
        with pytest.raises(ConnectionResetError):
            await request(empty.ip, empty.port, b"x")
        empty.close()
    run(go())


def test_bulk_transfer_both_ways_with_back_pressure(addrs):
    async def go():
        payload = os.urandom(8 << 20)

        async def sink_and_source(r, w):
            h = hashlib.sha256()
            while chunk := await r.read(1 << 16):
                h.update(chunk)
            w.write(h.digest())
            for i in range(0, len(payload), 1 << 20):
                w.write(payload[i:i + (1 << 20)])
                await w.drain()
            w.close()

        bip = addrs.backend()
        server, port = await serve(bip, sink_and_source)
        lb_ip = addrs.lb()
        lst, _ = await listener(lb_ip, [target(bip, port)])
        r, w = await asyncio.open_connection(lb_ip, lst.port)
        for i in range(0, len(payload), 1 << 20):
            w.write(payload[i:i + (1 << 20)])
            await w.drain()
        w.write_eof()
        digest = await r.readexactly(32)
        back = await r.read()
        assert digest == hashlib.sha256(payload).digest()
        assert len(back) == len(payload) and back == payload
        w.close()
        for _ in range(200):   # both directions moved to splice(2): their pipes come back to the pool
            if not lst.connections:
                break
            await asyncio.sleep(0.01)
        assert not lst.connections and (len(forward._pipes) >= 2 or not forward.SPLICE)
        lst.close()
        server.close()
    run(go())


def test_a_target_that_does_not_answer_the_handshake_times_out(addrs, monkeypatch):
    """A full accept queue drops SYNs: the connect stays in progress until CONNECT_TIMEOUT."""
    monkeypatch.setattr(forward, "CONNECT_TIMEOUT", 0.3)

    async def go():
        bip = addrs.backend()
        stuck = socket.socket()
        stuck.bind((bip, 0))
        stuck.listen(0)          # never accepts: the queue fills after a connection or two
        fillers = []
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(stuck.getsockname())
            fillers.append(f)

        async def hello(r, w):
            await r.read()
            w.write(b"hi")
            w.close()

        server, port = await serve(bip, hello)
        lb_ip = addrs.lb()
        dead = target(bip, stuck.getsockname()[1])
        lst, failures = await listener(lb_ip, [dead, target(bip, port)])
        lst.backends._next = 0
        t0 = time.monotonic()
        assert await request(lb_ip, lst.port, b"x") == b"hi"
        assert failures == [dead] and 0.25 < time.monotonic() - t0 < 2
        lst.close()
        server.close()
        stuck.close()
        for f in fillers:
            f.close()
    run(go())


def test_closing_the_listener_resets_open_connections(addrs):
    async def go():
        async def hold(r, w):
            await r.read()

        bip = addrs.backend()
        server, port = await serve(bip, hold)
        lb_ip = addrs.lb()
        lst, _ = await listener(lb_ip, [target(bip, port)])
        r, w = await asyncio.open_connection(lb_ip, lst.port)
        w.write(b"x")
        await w.drain()
        for _ in range(100):
            if lst.connections:
                break
            await asyncio.sleep(0.01)
        lst.close()
        with pytest.raises(ConnectionResetError):
            await r.read()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(lb_ip, lst.port)
        server.close()
    run(go())


class _UdpAnswer(asyncio.DatagramProtocol):
    def __init__(self, name):
        self.name = name

    def connection_made(self, t):
        self.t = t

    def datagram_received(self, data, addr):
        self.t.sendto(b"%s:%s:%s" % (self.name, addr[0].encode(), data), addr)


def test_udp_flows_and_moving_a_flow_off_a_dead_target(addrs):
    async def go():
        loop = asyncio.get_running_loop()
        bip = addrs.backend()
        t2, _ = await loop.create_datagram_endpoint(lambda: _UdpAnswer(b"b2"), local_addr=(bip, 0))
        p2 = t2.get_extra_info("sockname")[1]
        dead = Target(bip, dead_port(bip), None)
        lb_ip, client_ip = addrs.lb(), addrs.lb()
        lst, failures = await listener(lb_ip, [dead, Target(bip, p2, None)], preserve=True, proto="udp")
        lst.backends._next = 0
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind((client_ip, 0))
        c.setblocking(False)
        c.connect((lb_ip, lst.port))
        c.send(b"one")        # goes to the dead target: ICMP refusal moves the flow and re-sends
        async with asyncio.timeout(5):
            assert await loop.sock_recv(c, 100) == b"b2:%s:one" % client_ip.encode()
        c.send(b"two")
        async with asyncio.timeout(5):
            assert await loop.sock_recv(c, 100) == b"b2:%s:two" % client_ip.encode()
        assert failures == [dead] and len(lst.flows) == 1
        c.close()
        lst.close()
        t2.close()
    run(go())
