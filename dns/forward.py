"""Relaying queries for names outside the cluster domain to upstream servers.

Each relayed query leaves from a fresh socket (a random source port) with a fresh random
message ID, and only a reply from the upstream's address carrying that ID and the same question
is accepted: the usual defence against spoofed answers. Upstreams are tried in order, as a
stub resolver reads /etc/resolv.conf, within one overall deadline; when none answers, the
caller sends SERVFAIL. The number of queries in flight is bounded, so a flood of
out-of-zone names cannot exhaust sockets.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import struct

log = logging.getLogger("kubemu.dns.forward")

Upstream = tuple[str, int]


def parse_upstream(value: str) -> Upstream:
    """`1.1.1.1`, `1.1.1.1:5353`, `[fd00::1]:53`, `fd00::1` -> (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif value.count(":") == 1:
        host, _, p = value.partition(":")
        port = int(p)
    else:
        host, port = value, 53
    ipaddress.ip_address(host)   # ValueError for a name: upstreams are addresses
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {value!r}")
    return host, port


def resolv_conf_upstreams(path: str = "/etc/resolv.conf") -> list[Upstream]:
    out: list[Upstream] = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        out.append(parse_upstream(parts[1].split("%")[0]))
                    except ValueError:
                        continue
    except OSError:
        pass
    return out


def question_end(data: bytes) -> int:
    """Offset just past the first question, or 0 if it cannot be walked without pointers."""
    i = 12
    n = len(data)
    while i < n:
        length = data[i]
        if length == 0:
            return i + 5 if i + 5 <= n else 0
        if length & 0xC0:
            return 0
        i += 1 + length
    return 0


class _OneShot(asyncio.DatagramProtocol):
    def __init__(self, want_id: bytes, question: bytes):
        self.want_id = want_id
        self.question = question
        self.future: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if (not self.future.done() and len(data) >= 12 and data[:2] == self.want_id
                and data[2] & 0x80 and data[12:12 + len(self.question)] == self.question):
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)

    def connection_lost(self, exc) -> None:
        if not self.future.done():
            self.future.set_exception(exc or ConnectionError("closed"))


class Forwarder:
    def __init__(self, upstreams: list[Upstream], *, timeout: float = 2.0,
                 attempt_timeout: float = 1.0, max_in_flight: int = 1000):
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.failures = 0

    async def query(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        """The upstream's reply to `data`, carrying `data`'s message ID; None on failure."""
        if self.in_flight >= self.max_in_flight or len(data) < 12:
            return None
        self.in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout
            qend = question_end(data)
            question = data[12:qend] if qend else b""
            for host, port in self.upstreams:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                msg_id = struct.pack("!H", random.getrandbits(16))
                out = msg_id + data[2:]
                try:
                    attempt = self._tcp(host, port, out, msg_id, question) if tcp else \
                        self._udp(host, port, out, msg_id, question)
                    reply = await asyncio.wait_for(attempt, min(remaining, self.attempt_timeout))
                    return data[:2] + reply[2:]
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                    log.debug("upstream %s:%d failed: %r", host, port, e)
            self.failures += 1
            return None
        finally:
            self.in_flight -= 1

    async def _udp(self, host: str, port: int, out: bytes, msg_id: bytes, question: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            lambda: _OneShot(msg_id, question), remote_addr=(host, port))
        try:
            transport.sendto(out)
            return await proto.future
        finally:
            transport.close()

    async def _tcp(self, host: str, port: int, out: bytes, msg_id: bytes, question: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
            while True:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                reply = await reader.readexactly(n)
                if len(reply) >= 12 and reply[:2] == msg_id and reply[12:12 + len(question)] == question:
                    return reply
        finally:
            writer.close()
