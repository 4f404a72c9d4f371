"""The DNS transport: UDP and TCP on one address, an exact answer cache, upstream forwarding.

Rules of this module: sockets and framing only; every answer comes from
kubemu.dns.message.process, a pure function of (query bytes, snapshot, transport).

The answer cache. Because a reply depends on nothing but the query's bytes after the message
ID (name as spelled, type, class, flags, EDNS) and the snapshot, the cache maps exactly those
bytes to the packed reply without its ID, and a hit costs one dict lookup and one
concatenation: the ID of the new query in front of the stored bytes. The cache belongs to one
snapshot generation: `swap` installs a new snapshot together with an empty cache in a single
assignment, so no reply computed from an older snapshot can ever be served after the swap
(the slow path computes and stores a reply without yielding to the event loop in between).
Rotations of multi-address answers are cached side by side and served round robin, as
CoreDNS' loadbalance plugin would shuffle them.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct

from kubemu.dns import message
from kubemu.dns.forward import Forwarder
from kubemu.dns.snapshot import Snapshot

log = logging.getLogger("kubemu.dns.server")

MAX_CACHED_QUERY = 512
UDP_BATCH = 64   # datagrams read per wake-up before yielding to the event loop


class _Rotation:
    __slots__ = ("variants", "next")

    def __init__(self, variants: tuple[bytes, ...]):
        self.variants = variants
        self.next = 0

    def take(self) -> bytes:
        v = self.variants[self.next]
        self.next = (self.next + 1) % len(self.variants)
        return v


class Generation:
    """A snapshot with the answers computed from it (one cache per transport)."""

    __slots__ = ("snapshot", "udp", "tcp")

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        self.udp: dict[bytes, bytes | _Rotation] = {}
        self.tcp: dict[bytes, bytes | _Rotation] = {}


class DnsServer:
    """Serves a snapshot on one address over UDP and TCP.

    `udp_mode="reader"` reads the UDP socket directly in batches from the event loop's reader
    callback; `"protocol"` uses the loop's datagram protocol. Both give the same answers; the
    first spends less per datagram on asyncio's own loop and the same on uvloop
    (docs/perf/dns.md).
    """

    def __init__(self, snapshot: Snapshot, *, forwarder: Forwarder | None = None,
                 cache_size: int = 100_000, tcp_idle_timeout: float = 10.0,
                 max_tcp_connections: int = 1000, udp_mode: str = "reader"):
        self.gen = Generation(snapshot)
        self.forwarder = forwarder if forwarder is not None and forwarder.upstreams else None
        self.cache_size = cache_size
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_tcp_connections = max_tcp_connections
        self.udp_mode = udp_mode
        self.udp_transport: asyncio.DatagramTransport | None = None
        self._udp_sock: socket.socket | None = None
        self.tcp_server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._tcp_conns = 0
        self.misses = 0
        self.forwarded = 0

    @property
    def snapshot(self) -> Snapshot:
        return self.gen.snapshot

    def swap(self, snapshot: Snapshot) -> None:
        """Serve `snapshot` from now on; answers cached from the previous one are dropped."""
        self.gen = Generation(snapshot)

    # -------------------------------------------------------------- lifecycle

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind UDP and TCP on host:port (port 0: one free port for both); returns the address."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(20):
            tcp_sock = socket.socket(family, socket.SOCK_STREAM)
            tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp_sock.bind((host, port))
            bound = tcp_sock.getsockname()[1]
            udp_sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                udp_sock.bind((host, bound))
            except OSError:
                tcp_sock.close()
                udp_sock.close()
                if port:
                    raise
                continue
            break
        else:
            raise OSError(f"no port free for both UDP and TCP on {host}")
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                udp_sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        if self.udp_mode == "reader":
            udp_sock.setblocking(False)
            self._udp_sock = udp_sock
            loop.add_reader(udp_sock.fileno(), self._udp_readable)
        else:
            self.udp_transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=udp_sock)
        self.tcp_server = await asyncio.start_server(self._tcp_client, sock=tcp_sock,
                                                     backlog=1024)
        self.address = (host, bound)
        return self.address

    async def stop(self) -> None:
        if self.udp_transport is not None:
            self.udp_transport.close()
        if self._udp_sock is not None:
            asyncio.get_running_loop().remove_reader(self._udp_sock.fileno())
            self._udp_sock.close()
            self._udp_sock = None
        if self.tcp_server is not None:
            self.tcp_server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.tcp_server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.tcp_server.wait_closed(), 1.0)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -------------------------------------------------------------- answering

    def answer(self, data: bytes, tcp: bool):
        """The cached reply for `data` (ID patched), else message.process' outcome.

        Returns bytes, or a Forward/Chase outcome the caller completes, or None (drop).
        """
        gen = self.gen
        cache = gen.tcp if tcp else gen.udp
        key = data[2:]
        hit = cache.get(key)
        if hit is not None:
            return data[:2] + (hit if hit.__class__ is bytes else hit.take())
        self.misses += 1
        out = message.process(data, gen.snapshot, tcp=tcp, recursion=self.forwarder is not None)
        if out.__class__ is not message.Reply:
            return out
        if out.cacheable and len(data) <= MAX_CACHED_QUERY:
            if len(cache) >= self.cache_size:
                cache.clear()
            variants = tuple(v[2:] for v in out.variants)
            if len(variants) == 1:
                cache[key] = variants[0]
            else:
                rot = _Rotation(variants)
                cache[key] = rot
                return data[:2] + rot.take()
        return out.wire

    async def complete(self, data: bytes, outcome, tcp: bool) -> bytes | None:
        """Finish a Forward or Chase outcome by asking upstream; SERVFAIL if it fails."""
        fw = self.forwarder
        if isinstance(outcome, message.Forward):
            self.forwarded += 1
            reply = await fw.query(data, tcp=tcp) if fw is not None else None
            if reply is None:
                return message.header_only(data, 2)   # SERVFAIL
            return reply
        if isinstance(outcome, message.Chase):
            q = message.chase_query(outcome, 0)
            upstream = await fw.query(q, tcp=tcp) if fw is not None else None
            return message.finish_chase(outcome, upstream)
        return None

    async def _udp_slow(self, data: bytes, outcome, addr) -> None:
        reply = await self.complete(data, outcome, tcp=False)
        if reply is None:
            return
        if self._udp_sock is not None:
            with contextlib.suppress(OSError):
                self._udp_sock.sendto(reply, addr)
        elif self.udp_transport is not None and not self.udp_transport.is_closing():
            self.udp_transport.sendto(reply, addr)

    def _udp_readable(self) -> None:
        """The hot path ("reader" mode): drain the socket, answering cache hits inline.

        Reading the socket directly in a bounded loop skips the per-datagram protocol
        machinery of the event loop; the bound lets TCP and timers run between batches. A
        reply that finds the send buffer full is dropped, as the network may drop any datagram.
        """
        sock = self._udp_sock
        if sock is None:
            return
        recv, send = sock.recvfrom, sock.sendto
        for _ in range(UDP_BATCH):
            try:
                data, addr = recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            hit = self.gen.udp.get(data[2:])
            try:
                if hit is not None:
                    send(data[:2] + (hit if hit.__class__ is bytes else hit.take()), addr)
                    continue
                out = self.answer(data, tcp=False)
                if out is None:
                    continue
                if out.__class__ is bytes:
                    send(out, addr)
                else:
                    self._spawn(self._udp_slow(data, out, addr))
            except OSError:
                pass

    # -------------------------------------------------------------- TCP

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_conns >= self.max_tcp_connections:
            writer.close()
            return
        self._tcp_conns += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle_timeout)
                    (n,) = struct.unpack("!H", head)
                    data = await asyncio.wait_for(reader.readexactly(n), self.tcp_idle_timeout)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                out = self.answer(data, tcp=True)
                if out is not None and out.__class__ is not bytes:
                    out = await self.complete(data, out, tcp=True)
                if out is None:
                    return
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self._tcp_conns -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    """The hot path: a cache hit is answered without leaving datagram_received."""

    def __init__(self, server: DnsServer):
        self.server = server
        self.sendto = None

    def connection_made(self, transport) -> None:
        self.sendto = transport.sendto

    def datagram_received(self, data: bytes, addr) -> None:
        server = self.server
        hit = server.gen.udp.get(data[2:])
        if hit is not None:
            self.sendto(data[:2] + (hit if hit.__class__ is bytes else hit.take()), addr)
            return
        out = server.answer(data, tcp=False)
        if out is None:
            return
        if out.__class__ is bytes:
            self.sendto(out, addr)
        else:
            server._spawn(server._udp_slow(data, out, addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %r", exc)
