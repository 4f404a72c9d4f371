"""The data path: TCP and UDP listeners on EXTERNAL_IP:port that forward to healthy targets.

Rules of this module: asyncio Protocols and raw non-blocking sockets only (Streams cost about
three times the CPU), no per-byte work beyond handing buffers from one transport to the other,
and no API calls: everything a listener needs is in its `Backends`, which the controller swaps.

Cost, measured (docs/perf/cloudlb.md): TCP sides are BufferedProtocols reading into one buffer
shared by the whole process (reads happen one at a time), so bulk data is not copied into a new
bytes object per read (~10% less CPU per GiB than data_received) and an idle connection holds no
buffer. uvloop's write keeps a reference to what it could not send at once instead of copying
it, so a write that leaves data queued hands the buffer over and a fresh one is allocated.
Upstream connects are non-blocking connects of our own: uvloop's sock_connect goes through its
thread pool (~35 us of CPU per connection).

TCP, per connection:
- Targets are tried in round-robin order among the healthy ones; a connect that fails (refused,
  reset, timed out) is reported to the health checker and the next target is tried, so a node
  that just died costs the client nothing but a little latency.
- Bytes the client sends while the upstream connection is being set up are buffered (up to
  REPLAY_LIMIT; beyond that the client is paused).
- Retry on an empty response: until the target sent its first byte, the client's bytes are kept
  (up to REPLAY_LIMIT). If the target closes or resets the connection before answering at all -
  what a node agent killed with a request in flight looks like - they are replayed to the next
  target. This is HAProxy's `retry-on conn-failure empty-response`: safe for requests that may
  be repeated, which is why it stops at the first byte of the answer and at REPLAY_LIMIT.
- Relayed both ways with half-close (an EOF is passed on with write_eof, the connection ends when
  both directions did) and back-pressure (a full write buffer on one side pauses reading on the
  other). A reset on one side is passed on as a reset (abort) on the other.
- When no target can be reached the client's connection is reset: the closest a proxy that
  already accepted can come to "connection refused".

UDP, per client flow (client address): a connected socket to one target, bound to the source
address the backend must see; replies go back from the listener's socket. A flow idle for
UDP_IDLE_TIMEOUT is dropped. An ICMP port-unreachable for a flow (the node's listener is gone)
moves the flow to the next target and re-sends its last datagram.

Source address: with `preserve_client_ip` (externalTrafficPolicy Local) the outgoing socket is
bound to the client's address (any 127.x address is bindable on Linux's loopback), otherwise to
`source_ip` (the load balancer's external IP). IP_BIND_ADDRESS_NO_PORT defers the port choice to
connect(), so binding does not exhaust ephemeral ports per source address.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
import time
from typing import Callable

from kubemu.cloudlb.planner import Target

log = logging.getLogger("kubemu.cloudlb.forward")

REPLAY_LIMIT = 64 * 1024
BUFFER_SIZE = 256 * 1024  # what libuv reads at once for a Protocol, too
CONNECT_TIMEOUT = 2.0
UDP_IDLE_TIMEOUT = 30.0
UDP_BATCH = 64
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_LINGER_RESET = struct.pack("ii", 1, 0)


class _ReadBuffer:
    """The one read buffer of every TCP connection of the process."""

    view = memoryview(bytearray(BUFFER_SIZE))

    @classmethod
    def retained(cls) -> None:
        """A transport kept a slice of the buffer to send later: it is theirs now."""
        cls.view = memoryview(bytearray(BUFFER_SIZE))


# Errors that say "the target is not there" (as opposed to "we could not bind our source").
_TARGET_ERRORS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                  errno.ENETUNREACH, errno.ECONNABORTED}


class Backends:
    """A listener's targets, which of them are healthy, and the round-robin position."""

    __slots__ = ("targets", "healthy", "preserve_client_ip", "source_ip", "report_failure", "_next")

    def __init__(self, targets: tuple[Target, ...] = (), *, preserve_client_ip: bool = False,
                 source_ip: str | None = None,
                 report_failure: Callable[[Target], None] | None = None):
        self.targets = targets
        self.healthy = targets
        self.preserve_client_ip = preserve_client_ip
        self.source_ip = source_ip
        self.report_failure = report_failure
        self._next = 0

    def update(self, targets: tuple[Target, ...], healthy: Callable[[Target], bool], *,
               preserve_client_ip: bool) -> None:
        self.targets = targets
        self.preserve_client_ip = preserve_client_ip
        self.refresh(healthy)

    def refresh(self, healthy: Callable[[Target], bool]) -> None:
        self.healthy = tuple(t for t in self.targets if healthy(t))

    def order(self) -> tuple[Target, ...]:
        """Targets to try for one new connection: the healthy ones from the round-robin position.

        With none healthy it fails open to all targets, as NLB does: while every check fails
        (or none finished yet), trying is better than refusing.
        """
        pool = self.healthy or self.targets
        n = len(pool)
        if n <= 1:
            return pool
        i = self._next % n
        self._next = i + 1
        return pool[i:] + pool[:i]

    def failed(self, target: Target) -> None:
        if self.report_failure is not None:
            self.report_failure(target)


def _is_target_error(e: BaseException) -> bool:
    return isinstance(e, TimeoutError) or (isinstance(e, OSError) and e.errno in _TARGET_ERRORS)


def _source_for(backends: Backends, client_ip: str) -> str | None:
    return client_ip if backends.preserve_client_ip else backends.source_ip


def _bound_socket(kind: int, source: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setblocking(False)
        if source:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _set_done(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


async def _connect_socket(loop: asyncio.AbstractEventLoop, sock: socket.socket, addr: tuple[str, int]) -> None:
    """A non-blocking connect of our own: uvloop's sock_connect resolves the address on its
    thread pool (futex wake-ups; measured ~35 us of CPU per connection), this does not."""
    err = sock.connect_ex(addr)
    if err == errno.EINPROGRESS:
        # On loopback the handshake has usually completed inside the first call: asking again
        # tells (EISCONN) without a trip through the poller.
        err = sock.connect_ex(addr)
        if err == errno.EISCONN:
            return
    if err == 0:
        return
    if err not in (errno.EINPROGRESS, errno.EALREADY):
        raise OSError(err, os.strerror(err))
    fd = sock.fileno()
    fut = loop.create_future()
    loop.add_writer(fd, _set_done, fut)
    try:
        await fut
    finally:
        loop.remove_writer(fd)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


# ------------------------------------------------------------------ TCP


class TcpListener:
    def __init__(self, ip: str, port: int, backends: Backends):
        self.ip = ip
        self.port = port
        self.backends = backends
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[_Relay] = set()
        self.accepted = 0
        self.failed = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Relay(self), self.ip, self.port,
                                               reuse_address=True, backlog=4096)

    def close(self) -> None:
        """Stop listening and reset the connections in flight (the load balancer is gone)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for relay in list(self.connections):
            relay.abort()
        self.connections.clear()


class _Upstream(asyncio.BufferedProtocol):
    __slots__ = ("relay", "transport")

    def __init__(self, relay: "_Relay"):
        self.relay = relay
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.relay._attached(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _ReadBuffer.view

    def buffer_updated(self, nbytes: int) -> None:
        relay = self.relay
        if self is not relay.upstream or relay.done:
            return
        if not relay.answered:
            relay.answered = True
            relay.replay = None
        client = relay.client
        client.write(_ReadBuffer.view[:nbytes])
        if client.get_write_buffer_size():
            _ReadBuffer.retained()

    def eof_received(self) -> bool:
        return self.relay._upstream_eof(self)

    def connection_lost(self, exc) -> None:
        self.relay._upstream_lost(self, exc)

    def pause_writing(self) -> None:
        self.relay._pause_client()

    def resume_writing(self) -> None:
        self.relay._resume_client()


class _Relay(asyncio.BufferedProtocol):
    """The client side of one connection, and the state of its relay."""

    __slots__ = ("listener", "client", "client_ip", "upstream", "candidates", "pending", "pending_size",
                 "replay", "replay_size", "answered", "client_eof", "upstream_eof", "done",
                 "client_paused", "connect_task", "target")

    def __init__(self, listener: TcpListener):
        self.listener = listener
        self.client: asyncio.Transport | None = None
        self.client_ip = ""
        self.upstream: _Upstream | None = None
        self.target: Target | None = None
        self.candidates: list[Target] = []
        self.pending: list[bytes] = []    # received while no upstream is attached
        self.pending_size = 0
        self.replay: list[bytes] | None = []  # sent to the current upstream before it answered
        self.replay_size = 0
        self.answered = False
        self.client_eof = False
        self.upstream_eof = False
        self.done = False
        self.client_paused = False
        self.connect_task: asyncio.Task | None = None

    # ------------------------------------------------ client side

    def connection_made(self, transport) -> None:
        self.client = transport
        lst = self.listener
        if lst.backends.preserve_client_ip:
            peer = transport.get_extra_info("peername")
            self.client_ip = peer[0] if peer else ""
        lst.connections.add(self)
        lst.accepted += 1
        self.candidates = list(lst.backends.order())
        self._connect_next()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _ReadBuffer.view

    def buffer_updated(self, nbytes: int) -> None:
        data = _ReadBuffer.view[:nbytes]
        up = self.upstream
        if up is None:
            self.pending.append(bytes(data))
            self.pending_size += nbytes
            if self.pending_size >= REPLAY_LIMIT:
                self._pause_client()
            return
        t = up.transport
        t.write(data)
        if self.replay is not None:
            self.replay_size += nbytes
            if self.replay_size > REPLAY_LIMIT:
                self.replay = None  # too much to replay; a failure now is the client's to see
            else:
                self.replay.append(bytes(data))
        if t.get_write_buffer_size():
            _ReadBuffer.retained()

    def eof_received(self) -> bool:
        self.client_eof = True
        up = self.upstream
        if up is not None:
            if up.transport.can_write_eof():
                up.transport.write_eof()
            if self.upstream_eof:
                self._finish()
        return True

    def connection_lost(self, exc) -> None:
        self.done = True
        self.listener.connections.discard(self)
        if self.connect_task is not None:
            self.connect_task.cancel()
        up = self.upstream
        if up is not None and up.transport is not None:
            if exc is not None:
                up.transport.abort()
            else:
                up.transport.close()

    def pause_writing(self) -> None:
        up = self.upstream
        if up is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        up = self.upstream
        if up is not None:
            up.transport.resume_reading()

    def _pause_client(self) -> None:
        if not self.client_paused and not self.done:
            self.client_paused = True
            self.client.pause_reading()

    def _resume_client(self) -> None:
        if self.client_paused and not self.done:
            self.client_paused = False
            self.client.resume_reading()

    def abort(self) -> None:
        if self.client is not None and not self.done:
            self._reset_client()

    def _reset_client(self) -> None:
        self.done = True
        sock = self.client.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        self.client.abort()

    def _finish(self) -> None:
        """Both directions saw EOF: close both sides."""
        self.done = True
        self.client.close()
        if self.upstream is not None:
            self.upstream.transport.close()

    # ------------------------------------------------ upstream side

    def _connect_next(self) -> None:
        if not self.candidates:
            self.listener.failed += 1
            self._reset_client()
            return
        target = self.candidates.pop(0)
        self.connect_task = asyncio.get_running_loop().create_task(self._connect(target))

    async def _connect(self, target: Target) -> None:
        loop = asyncio.get_running_loop()
        backends = self.listener.backends
        try:
            sock = _bound_socket(socket.SOCK_STREAM, _source_for(backends, self.client_ip))
        except OSError as e:
            log.warning("cannot bind the source address for %s: %s", target, e)
            self.connect_task = None
            self._connect_next()
            return
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await _connect_socket(loop, sock, (target.ip, target.port))
            self.target = target
            await loop.create_connection(lambda: _Upstream(self), sock=sock)
        except asyncio.CancelledError:
            sock.close()
            raise
        except (OSError, TimeoutError) as e:
            sock.close()
            self.connect_task = None
            if self.done:
                return
            if _is_target_error(e):
                backends.failed(target)
            log.debug("connect to %s failed (%s); %d more to try", target, e, len(self.candidates))
            self._connect_next()
            return
        self.connect_task = None

    def _attached(self, up: _Upstream) -> None:
        if self.done:
            up.transport.abort()
            return
        self.upstream = up
        t = up.transport
        pending, size = self.pending, self.pending_size
        self.pending, self.pending_size = [], 0
        if pending:
            t.writelines(pending)
            if self.replay is not None:
                self.replay.extend(pending)
                self.replay_size += size
        if self.client_eof and t.can_write_eof():
            t.write_eof()
        self._resume_client()

    def _can_replay(self) -> bool:
        return (not self.answered and not self.done and self.replay is not None
                and self.replay_size > 0 and bool(self.candidates))

    def _retry_elsewhere(self, up: _Upstream, why: str) -> None:
        """The target closed before answering: send what the client said to the next one."""
        log.info("%s closed the connection before answering (%s): retrying on another target",
                 self.target, why)
        if self.target is not None:
            self.listener.backends.failed(self.target)
        self.upstream = None
        self.pending, self.pending_size = self.replay, self.replay_size
        self.replay, self.replay_size = [], 0
        up.transport.abort()
        self._connect_next()

    def _upstream_eof(self, up: _Upstream) -> bool:
        if up is not self.upstream:
            return False
        if self._can_replay():
            self._retry_elsewhere(up, "EOF")
            return True
        self.upstream_eof = True
        if not self.done and self.client.can_write_eof():
            self.client.write_eof()
        if self.client_eof:
            self._finish()
        return True

    def _upstream_lost(self, up: _Upstream, exc) -> None:
        if up is not self.upstream or self.done:
            return
        if exc is not None and self._can_replay():
            self._retry_elsewhere(up, str(exc) or type(exc).__name__)
            return
        self.upstream = None
        if exc is not None:
            self._reset_client()
        else:
            self.done = True
            self.client.close()


# ------------------------------------------------------------------ UDP


class UdpListener:
    def __init__(self, ip: str, port: int, backends: Backends, *, idle_timeout: float = UDP_IDLE_TIMEOUT):
        self.ip = ip
        self.port = port
        self.backends = backends
        self.idle_timeout = idle_timeout
        self.sock: socket.socket | None = None
        self.flows: dict[tuple[str, int], _Flow] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.received = 0
        self.dropped = 0

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.ip, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), self._readable)
        self._sweeper = loop.call_later(self.idle_timeout / 2, self._sweep)

    def close(self) -> None:
        if self.sock is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for f in list(self.flows.values()):
            f.close()
        self.flows.clear()

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        for _ in range(UDP_BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self.received += 1
            flow = self.flows.get(addr)
            if flow is None:
                flow = self._new_flow(addr, list(self.backends.order()))
                if flow is None:
                    self.dropped += 1
                    continue
            flow.send(data)

    def _new_flow(self, addr: tuple[str, int], candidates: list[Target]) -> "_Flow | None":
        while candidates:
            target = candidates.pop(0)
            try:
                flow = _Flow(self, addr, target, candidates)
            except OSError as e:
                if _is_target_error(e):
                    self.backends.failed(target)
                log.debug("UDP flow %s -> %s failed: %s", addr, target, e)
                continue
            self.flows[addr] = flow
            return flow
        return None

    def _rehome(self, flow: "_Flow") -> None:
        """The flow's target is gone: move the flow to the next one, re-sending its last datagram."""
        self.backends.failed(flow.target)
        flow.close()
        self.flows.pop(flow.client, None)
        last = flow.last
        new = self._new_flow(flow.client, flow.candidates)
        if new is not None and last is not None:
            new.send(last)

    def _sweep(self) -> None:
        now = time.monotonic()
        for addr, f in list(self.flows.items()):
            if now - f.seen > self.idle_timeout:
                f.close()
                del self.flows[addr]
        self._sweeper = asyncio.get_running_loop().call_later(self.idle_timeout / 2, self._sweep)


class _Flow:
    __slots__ = ("listener", "client", "target", "candidates", "sock", "seen", "last", "closed")

    def __init__(self, listener: UdpListener, client: tuple[str, int], target: Target, candidates: list[Target]):
        self.listener = listener
        self.client = client
        self.target = target
        self.candidates = candidates
        self.sock = _bound_socket(socket.SOCK_DGRAM, _source_for(listener.backends, client[0]))
        try:
            self.sock.connect((target.ip, target.port))
        except BaseException:
            self.sock.close()
            raise
        self.seen = time.monotonic()
        self.last: bytes | None = None
        self.closed = False
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def send(self, data: bytes) -> None:
        self.seen = time.monotonic()
        self.last = data
        try:
            self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            pass  # a full socket buffer drops the datagram, as the network would
        except OSError as e:
            if e.errno == errno.ECONNREFUSED:
                self.listener._rehome(self)

    def _readable(self) -> None:
        out = self.listener.sock
        for _ in range(UDP_BATCH):
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno == errno.ECONNREFUSED and not self.closed:
                    self.listener._rehome(self)
                return
            self.seen = time.monotonic()
            if out is not None:
                try:
                    out.sendto(data, self.client)
                except OSError:
                    pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
