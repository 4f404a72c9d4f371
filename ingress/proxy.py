"""The data plane: an asyncio HTTP/1.1 reverse proxy with keep-alive on both sides.

One task per client connection reads requests one after another (keep-alive; no pipelining
beyond what the client's own ordering gives), asks the current route table (routing.py) for
a backend, and relays the exchange over a pooled connection to the backend's ClusterIP:port.
Bodies stream in both directions with their own framing (Content-Length, chunked, or
until-close), never buffered whole.

Hazards and the answers here:
  - A pooled keep-alive connection may have been closed by the backend just as it is reused
    (or, behind a ClusterIP, its pod was replaced). Such a request failed before any response
    byte, so it is retried on a fresh connection when that is safe: no request body, and an
    idempotent method or a reused connection (the race every HTTP client retries).
  - A fresh connection to a ClusterIP can fail while endpoints change (the node agent
    forwards to a pod that is going away). Those attempts are retried with a short back-off,
    so a rolling replacement costs latency, not errors.
  - `Expect: 100-continue` is answered by the proxy itself before it reads the body (as nginx
    does), so the body relay never waits on the backend's interim response.
  - Everything that can wait has a deadline: connect, response head, idle keep-alive.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Callable

from kubemu.ingress import http1
from kubemu.ingress.http1 import HttpError
from kubemu.ingress.routing import RouteTable

log = logging.getLogger("kubemu.ingress.proxy")

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
COPY_SIZE = 256 * 1024
MAX_DISCARD = 1 << 20
# Waiting for a write buffer below this to drain is a wasted await: the transport sends on its
# own, and flow control only matters for bodies bigger than this.
DRAIN_ABOVE = 64 * 1024
RETRY_DELAYS = (0.0, 0.05, 0.2, 0.5)
DEFAULT_BACKEND_BODY = "default backend - 404\n"


class Deadlines:
    """Timeouts for every connection from one periodic check.

    A timer per read (asyncio.timeout, wait_for) costs a timer set and cancelled per request, a
    measurable share of the proxy's CPU; instead a connection about to wait records its deadline
    (one dict write), and a sweeper aborts the transports whose deadline passed, which ends the
    wait with a closed connection. The price is precision: a timeout fires up to `tick` late.
    """

    def __init__(self, tick: float = 0.25):
        self.tick = tick
        self.entries: dict[object, tuple[float, asyncio.StreamWriter]] = {}
        self._task: asyncio.Task | None = None
        self._time: Callable[[], float] = time.monotonic

    def arm(self, key: object, seconds: float, writer: asyncio.StreamWriter) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._time = loop.time
            self._task = loop.create_task(self._sweep(), name="ingress-deadlines")
        self.entries[key] = (self._time() + seconds, writer)

    def disarm(self, key: object) -> None:
        self.entries.pop(key, None)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            now = self._time()
            for key, (deadline, writer) in list(self.entries.items()):
                if deadline <= now:
                    del self.entries[key]
                    if isinstance(key, UpstreamConnection):
                        key.timed_out = True
                    writer.transport.abort()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.entries.clear()


class UpstreamConnection:
    __slots__ = ("address", "reader", "writer", "idle_since", "timed_out")

    def __init__(self, address: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.address = address
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.timed_out = False

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class UpstreamPool:
    """Idle keep-alive connections per backend address, most recently used first."""

    def __init__(self, *, max_idle: int = 64, idle_timeout: float = 30.0, connect_timeout: float = 5.0,
                 source: str | None = None):
        """`source`: the address to connect from, the controller's own ('pod') IP, so backends
        see the ingress as their client as they would in Kubernetes (not 127.0.0.1)."""
        self.source = source
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.idle: dict[tuple[str, int], collections.deque[UpstreamConnection]] = {}
        self._sweeper: asyncio.Task | None = None

    def take(self, address: tuple[str, int]) -> UpstreamConnection | None:
        """An idle connection to `address` that still looks alive, or None."""
        idle = self.idle.get(address)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def connect(self, address: tuple[str, int]) -> UpstreamConnection:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(), name="ingress-pool-sweeper")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address[0], address[1], limit=http1.MAX_HEAD,
                                    local_addr=(self.source, 0) if self.source else None),
            self.connect_timeout)
        return UpstreamConnection(address, reader, writer)

    def release(self, conn: UpstreamConnection) -> None:
        if not conn.usable():
            conn.close()
            return
        idle = self.idle.setdefault(conn.address, collections.deque())
        if len(idle) >= self.max_idle:
            idle.popleft().close()
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.idle_timeout))
            deadline = time.monotonic() - self.idle_timeout
            for address, idle in list(self.idle.items()):
                while idle and idle[0].idle_since < deadline:
                    idle.popleft().close()
                if not idle:
                    del self.idle[address]

    def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self.idle.values():
            for conn in idle:
                conn.close()
        self.idle.clear()


class ClientGone(Exception):
    """The client closed or broke its connection mid-exchange."""


class UpstreamFailed(Exception):
    """The backend failed before the client got any byte of a response.

    `retryable`: the request may be sent again (nothing suggests the backend acted on it).
    `status`: what to answer the client when it is not retried.
    """

    def __init__(self, message: str, retryable: bool, status: int = 502):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Proxy:
    def __init__(self, table: Callable[[], RouteTable], pool: UpstreamPool, *, scheme: str,
                 public_port: int, idle_timeout: float = 60.0, response_timeout: float = 60.0):
        self.table = table
        self.pool = pool
        self.scheme = scheme
        self.public_port = public_port
        self.idle_timeout = idle_timeout
        self.response_timeout = response_timeout
        self.connections: set[asyncio.Task] = set()  # one task per client connection
        self.busy: set[asyncio.Task] = set()  # those in the middle of an exchange
        self.deadlines = Deadlines()

    # ------------------------------------------------------------ client side

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connections.add(task)
        peer = writer.get_extra_info("peername") or ("", 0)
        client_ip = peer[0]
        try:
            while True:
                self.deadlines.arm(writer, self.idle_timeout, writer)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    writer.write(http1.simple_response(431, "request head too large\n", keep_alive=False))
                    return
                finally:
                    self.deadlines.disarm(writer)
                if task is not None:
                    self.busy.add(task)
                try:
                    req = http1.parse_request_head(head)
                    keep = await self.exchange(req, reader, writer, client_ip)
                except HttpError as e:
                    writer.write(http1.simple_response(e.status, e.message + "\n", keep_alive=False))
                    return
                except ClientGone:
                    return
                finally:
                    if task is not None:
                        self.busy.discard(task)
                if not keep:
                    return
        except Exception:
            log.exception("client connection from %s failed", client_ip)
        finally:
            if task is not None:
                self.connections.discard(task)
                self.busy.discard(task)
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()

    async def shutdown(self, grace: float) -> None:
        """Close idle keep-alive connections now; give exchanges in flight `grace` seconds."""
        for t in self.connections - self.busy:
            t.cancel()
        busy = list(self.busy)
        if busy:
            await asyncio.wait(busy, timeout=grace)
        for t in list(self.connections):
            t.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        self.deadlines.close()

    async def exchange(self, req: http1.Request, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, client_ip: str) -> bool:
        """Serve one request; returns whether the client connection stays open."""
        framing = http1.request_framing(req)
        keep = http1.client_keep_alive(req)
        head_only = req.method == b"HEAD"
        backend = self.table().match(req.host, req.path)
        if backend is None or backend.address is None:
            status, body = (404, DEFAULT_BACKEND_BODY) if backend is None else (503, backend.reason + "\n")
            keep = keep and await self._discard_body(reader, framing)
            writer.write(http1.simple_response(status, body, keep_alive=keep, head_only=head_only))
            await _drain(writer)
            if log.isEnabledFor(logging.DEBUG):
                log.debug('%s "%s %s" %d', client_ip, req.method.decode(), req.path, status)
            return keep

        if b"expect" in req.index and b"100-continue" in req.tokens(b"expect") and req.version == b"HTTP/1.1":
            req.drop(b"expect")
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        upgrade = http1.upgrade_requested(req)
        head = http1.upstream_request_head(req, client_ip=client_ip, scheme=self.scheme,
                                           port=self.public_port, framing=framing, upgrade=upgrade)
        safe = framing[0] == "none"
        for attempt, delay in enumerate(RETRY_DELAYS):
            if delay:
                await asyncio.sleep(delay)
            last = attempt == len(RETRY_DELAYS) - 1
            try:
                return await self._forward(req, head, framing, reader, writer, backend.address, keep,
                                           fresh=attempt > 0, upgrade=upgrade is not None)
            except UpstreamFailed as e:
                if e.retryable and safe and not last:
                    log.debug("retrying %s %s on %s: %s", req.method.decode(), req.path, backend.label, e)
                    continue
                log.warning("backend %s (%s:%d) failed: %s", backend.label, *backend.address, e)
                keep = keep and safe
                writer.write(http1.simple_response(e.status, f"{backend.label}: {e}\n",
                                                   keep_alive=keep, head_only=head_only))
                await _drain(writer)
                return keep
        raise AssertionError("unreachable")

    async def _discard_body(self, reader: asyncio.StreamReader, framing: http1.Framing) -> bool:
        """Read and drop a request body we will not forward; False when it is too big to bother."""
        kind, n = framing
        if kind == "none":
            return True
        if kind == "length":
            if n > MAX_DISCARD:
                return False
            await _read_exactly(reader, n)
            return True
        total = 0
        async for piece in _chunks(reader, dechunk=True, client_side=True):
            total += len(piece)
            if total > MAX_DISCARD:
                return False
        return True

    # ------------------------------------------------------------ backend side

    async def _forward(self, req: http1.Request, head: bytes, framing: http1.Framing,
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       address: tuple[str, int], keep: bool, *, fresh: bool, upgrade: bool) -> bool:
        idempotent = req.method in IDEMPOTENT
        conn = None if fresh else self.pool.take(address)
        reused = conn is not None
        if conn is None:
            try:
                conn = await self.pool.connect(address)
            except (OSError, asyncio.TimeoutError) as e:
                raise UpstreamFailed(f"connect: {e or type(e).__name__}", retryable=True) from None
        done = False
        self.deadlines.arm(conn, self.response_timeout, conn.writer)
        try:
            up_r, up_w = conn.reader, conn.writer
            try:
                up_w.write(head)
                if framing[0] == "length":
                    await _copy_exactly(reader, up_w, framing[1], src_is_client=True)
                elif framing[0] == "chunked":
                    async for piece in _chunks(reader, dechunk=False, client_side=True):
                        up_w.write(piece)
                        await up_w.drain()
                if up_w.transport.get_write_buffer_size() > DRAIN_ABOVE:
                    await up_w.drain()
                while True:
                    try:
                        rhead = await up_r.readuntil(b"\r\n\r\n")
                    except asyncio.LimitOverrunError:
                        raise UpstreamFailed("response head too large", retryable=False) from None
                    resp = http1.parse_response_head(rhead)
                    if resp.status == 101 and upgrade:
                        self.deadlines.disarm(conn)
                        writer.write(http1.switching_protocols_head(resp))
                        await _tunnel(reader, writer, up_r, up_w)
                        return False
                    if resp.status >= 200:
                        break
                    if req.version == b"HTTP/1.1":
                        writer.write(http1.interim_response_head(resp))
                rframing = http1.response_framing(req.method, resp)
                body = None
                if rframing[0] == "length" and rframing[1] <= COPY_SIZE:
                    # the common small response: read it whole, send head and body in one write
                    body = await up_r.readexactly(rframing[1])
            except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
                if conn.timed_out:
                    raise UpstreamFailed("timed out waiting for the response", retryable=False,
                                         status=504) from None
                if isinstance(e, asyncio.IncompleteReadError):
                    raise UpstreamFailed("the backend closed the connection" if not e.partial else
                                         "truncated response", retryable=idempotent or reused) from None
                raise UpstreamFailed(str(e) or type(e).__name__, retryable=idempotent or reused) from None
            finally:
                self.deadlines.disarm(conn)

            dechunk = http1.dechunk_for(req.version, rframing)
            keep = keep and rframing[0] != "close" and not dechunk
            out = http1.client_response_head(resp, keep_alive=keep, framing=rframing, client_version=req.version)
            try:
                if body is not None:
                    writer.write(out + body)
                    if writer.transport.get_write_buffer_size() > DRAIN_ABOVE:
                        await _drain(writer)
                else:
                    await self._relay_body(up_r, writer, out, rframing, dechunk)
            except (asyncio.IncompleteReadError, ConnectionError, OSError, HttpError) as e:
                # the client has part of the response: all that is left is to cut it off
                log.warning("backend %s:%d broke off a response: %s", *address, e or type(e).__name__)
                raise ClientGone() from e
            if http1.upstream_reusable(resp, rframing):
                done = True
                self.pool.release(conn)
            if log.isEnabledFor(logging.DEBUG):
                log.debug('%s "%s %s" %d -> %s:%d', writer.get_extra_info("peername"), req.method.decode(),
                          req.path, resp.status, *address)
            return keep
        finally:
            if not done:
                conn.close()

    async def _relay_body(self, up_r: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                          framing: http1.Framing, dechunk: bool) -> None:
        kind, n = framing
        if kind == "none":
            writer.write(head)
        elif kind == "length":
            writer.write(head)
            await _copy_exactly(up_r, writer, n, src_is_client=False)
        elif kind == "chunked":
            writer.write(head)
            async for piece in _chunks(up_r, dechunk=dechunk, client_side=False):
                writer.write(piece)
                await _drain(writer)
        else:  # until the backend closes
            writer.write(head)
            while True:
                data = await up_r.read(COPY_SIZE)
                if not data:
                    break
                writer.write(data)
                await _drain(writer)
        await _drain(writer)


# ------------------------------------------------------------------ helpers


async def _drain(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
    except (ConnectionError, OSError) as e:
        raise ClientGone() from e


async def _read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    try:
        return await reader.readexactly(n)
    except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
        raise ClientGone() from e


async def _copy_exactly(src: asyncio.StreamReader, dst: asyncio.StreamWriter, n: int, *, src_is_client: bool) -> None:
    while n > 0:
        try:
            data = await src.read(min(n, COPY_SIZE))
        except (ConnectionError, OSError) as e:
            if src_is_client:
                raise ClientGone() from e
            raise
        if not data:
            if src_is_client:
                raise ClientGone()
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(data)
        dst.write(data)
        if src_is_client:
            await dst.drain()
        else:
            await _drain(dst)


async def _chunks(reader: asyncio.StreamReader, *, dechunk: bool, client_side: bool):
    """Yield a chunked body piece by piece: raw framing, or only the data when `dechunk`."""
    try:
        while True:
            line = await reader.readuntil(b"\r\n")
            size = http1.parse_chunk_size(line[:-2])
            if size == 0:
                trailer = b""
                while True:
                    t = await reader.readuntil(b"\r\n")
                    trailer += t
                    if t == b"\r\n":
                        break
                if not dechunk:
                    yield line + trailer
                return
            data = await reader.readexactly(size + 2)
            if data[-2:] != b"\r\n":
                raise HttpError(400 if client_side else 502, "malformed chunk")
            yield data[:-2] if dechunk else line + data
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError) as e:
        if client_side:
            raise ClientGone() from e
        raise asyncio.IncompleteReadError(b"", None) from e


async def _tunnel(c_r: asyncio.StreamReader, c_w: asyncio.StreamWriter,
                  u_r: asyncio.StreamReader, u_w: asyncio.StreamWriter) -> None:
    """After 101 Switching Protocols: bytes both ways until both sides are done."""
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(COPY_SIZE):
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            pass
    await asyncio.gather(pipe(c_r, u_w), pipe(u_r, c_w))
