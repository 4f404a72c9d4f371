"""The data path: TCP and UDP listeners on EXTERNAL_IP:port that forward to healthy targets.

Rules of this module: raw non-blocking sockets driven by the event loop's add_reader/add_writer
(which uvloop and the selector loop both implement): no asyncio transports or Streams on the
data path, because every layer between recv() and send() is paid per message; no per-byte work
beyond handing a buffer from one socket to the other; no API calls: everything a listener needs
is in its `Backends`, which the controller swaps.

TCP, per connection:
- Targets are tried in round-robin order among the healthy ones; a connect that fails (refused,
  reset, timed out) is reported to the health checker and the next target is tried, so a node
  that just died costs the client nothing but a little latency.
- Bytes the client sends while the upstream connection is being set up are kept (up to
  REPLAY_LIMIT; beyond that the client is not read until the connection is up).
- Retry on an empty response: until the target sent its first byte, the client's bytes are kept
  (up to REPLAY_LIMIT). If the target closes or resets the connection before answering at all -
  what a node agent killed with a request in flight looks like - they are replayed to the next
  target. This is HAProxy's `retry-on conn-failure empty-response`: safe for requests that may
  be repeated, which is why it stops at the first byte of the answer and at REPLAY_LIMIT.
- Relayed both ways with half-close (an EOF is passed on as shutdown(SHUT_WR) once everything
  before it was written; the connection ends when both directions did) and back-pressure (while
  one side cannot take more, the other is not read). A reset on one side is passed on as a reset
  (SO_LINGER 0) on the other.
- When every target failed, the list is taken again after a short pause (25, 50, 100 ms; at
  most MAX_ATTEMPTS connects in all): while a node dies, the other nodes can fail a request for
  a few milliseconds too, because their proxies had relayed it to a pod on the dying node. When
  no target can be reached the client's connection is reset: the closest a proxy that already
  accepted can come to "connection refused".

Cost: the hot path reads into one buffer shared by the whole process (callbacks run one at a
time) and sends straight from it; only what a socket cannot take at once is copied. A direction
whose read fills the whole buffer is moving bulk data and switches to splice(2) (socket -> pipe
-> socket, the bytes never cross into user space; about half the CPU per GiB of recv/send, see
docs/perf/cloudlb.md); request/response traffic never gets there and needs no pipe. The
client-to-target direction switches only once the target answered (the replay needs the bytes).
Connects complete without a task or a poller trip in the common case: on loopback the handshake
is done inside connect(), and a second connect() says so (EISCONN).

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
import time
from typing import Callable

from kubemu import relayio
from kubemu.cloudlb.planner import Target
from kubemu.relayio import PIPE_SIZE, SPLICE, SPLICE_FLAGS

log = logging.getLogger("kubemu.cloudlb.forward")

REPLAY_LIMIT = 64 * 1024
BUFFER_SIZE = 64 * 1024    # one read; a read that fills it marks a bulk direction (-> splice)
CONNECT_TIMEOUT = 2.0
MAX_ATTEMPTS = 8                     # connects per client connection, over all rounds
ROUND_BACKOFF = (0.025, 0.05, 0.1)   # pause before taking the target list again
ACCEPT_BATCH = 64
READ_BATCH = 16            # reads per readiness callback, so one busy connection cannot starve others
UDP_IDLE_TIMEOUT = 30.0
UDP_BATCH = 64
PIPE_POOL = 64             # empty pipes kept for the next bulk connection

# Errors that say "the target is not there" (as opposed to "we could not bind our source").
_TARGET_ERRORS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                  errno.ENETUNREACH, errno.ECONNABORTED}

CLIENT, UPSTREAM = 0, 1

_buffer = bytearray(BUFFER_SIZE)
_view = memoryview(_buffer)
_pipes = relayio.PipePool(PIPE_POOL)


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


# ------------------------------------------------------------------ TCP


class TcpListener:
    def __init__(self, ip: str, port: int, backends: Backends):
        self.ip = ip
        self.port = port
        self.backends = backends
        self.sock: socket.socket | None = None
        self.connections: set[_TcpConn] = set()
        self.accepted = 0
        self.failed = 0

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
            relayio.unpaced(sock)  # and this
            sock.setblocking(False)
            sock.bind((self.ip, self.port))
            sock.listen(4096)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop listening and reset the connections in flight (the load balancer is gone)."""
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for conn in list(self.connections):
            conn.close(reset=True)
        self.connections.clear()

    def _accept(self) -> None:
        lsock = self.sock
        if lsock is None:
            return
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: drop this one, keep listening
                log.warning("accept on %s:%d failed: %s", self.ip, self.port, e)
                return
            sock.setblocking(False)
            self.accepted += 1
            _TcpConn(self, sock, addr[0])


class _TcpConn:
    """One relayed connection: side 0 is the client, side 1 the target.

    Per side: `out` holds what could not be written to it yet, `eof` says it sent its FIN, `shut`
    that we passed a FIN on to it; `pipe`/`inpipe` are the splice pipe of the data read from it.
    Reading a side stops while the other side has anything waiting (`out` or a non-empty pipe).
    """

    __slots__ = ("listener", "loop", "socks", "fds", "out", "eof", "shut", "reading", "writing",
                 "pipe", "inpipe", "candidates", "target", "replay", "replay_size", "answered",
                 "client_ip", "closed", "connecting", "timer", "attempts", "rounds")

    def __init__(self, listener: TcpListener, sock: socket.socket, client_ip: str):
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.socks: list[socket.socket | None] = [sock, None]
        self.fds = [sock.fileno(), -1]
        self.out: list[list[bytes]] = [[], []]
        self.eof = [False, False]
        self.shut = [False, False]
        self.reading = [False, False]
        self.writing = [False, False]
        self.pipe: list[tuple[int, int] | None] = [None, None]
        self.inpipe = [0, 0]
        self.target: Target | None = None
        self.replay: list[bytes] | None = []  # what the client sent before the target answered
        self.replay_size = 0
        self.answered = False
        self.client_ip = client_ip
        self.closed = False
        self.connecting = False  # a connect to self.target is in progress
        self.timer: asyncio.TimerHandle | None = None
        self.attempts = 0  # connects tried
        self.rounds = 0    # times every candidate failed and the list was taken again
        listener.connections.add(self)
        self.candidates = list(listener.backends.order())
        self._set_reading(CLIENT, True)
        self._connect_next()

    # ------------------------------------------------ poller registrations

    def _set_reading(self, side: int, on: bool) -> None:
        if self.reading[side] != on and self.fds[side] >= 0:
            self.reading[side] = on
            if on:
                self.loop.add_reader(self.fds[side], self._readable, side)
            else:
                self.loop.remove_reader(self.fds[side])

    def _set_writing(self, side: int, on: bool) -> None:
        if self.writing[side] != on and self.fds[side] >= 0:
            self.writing[side] = on
            if on:
                self.loop.add_writer(self.fds[side], self._writable, side)
            else:
                self.loop.remove_writer(self.fds[side])

    def _blocked(self, side: int) -> bool:
        """Whether data read from `side` is still waiting to be written to the other side."""
        return bool(self.out[1 - side]) or self.inpipe[side] > 0

    # ------------------------------------------------ connecting

    def _connect_next(self) -> None:
        while self.candidates and not self.closed and self.attempts < MAX_ATTEMPTS:
            target = self.candidates.pop(0)
            self.attempts += 1
            backends = self.listener.backends
            source = self.client_ip if backends.preserve_client_ip else backends.source_ip
            try:
                sock = relayio.bound_socket(socket.SOCK_STREAM, source, nodelay=True)
            except OSError as e:
                log.warning("cannot bind the source address %s for %s: %s", source, target, e)
                continue
            try:
                err = sock.connect_ex((target.ip, target.port))
                if err == errno.EINPROGRESS:
                    # On loopback the handshake usually completed inside the first call.
                    err = sock.connect_ex((target.ip, target.port))
                    if err == errno.EISCONN:
                        err = 0
            except OSError as e:
                err = e.errno or errno.ECONNREFUSED
            self.target = target
            if err == 0:
                self._attach(sock)
                return
            if err in (errno.EINPROGRESS, errno.EALREADY):
                self.socks[UPSTREAM], self.fds[UPSTREAM] = sock, sock.fileno()
                self.connecting = True
                self._set_writing(UPSTREAM, True)
                self.timer = self.loop.call_later(CONNECT_TIMEOUT, self._connect_failed, errno.ETIMEDOUT)
                return
            sock.close()
            self._target_failed(err)
        if self.closed:
            return
        if self.attempts < MAX_ATTEMPTS and self.rounds < len(ROUND_BACKOFF):
            # Every target failed this round. When a node dies, the others can fail a request
            # too for a few milliseconds (their proxies relayed it to a pod on the dying node):
            # try again shortly, among the targets the health checker believes in by then.
            delay = ROUND_BACKOFF[self.rounds]
            self.rounds += 1
            self.timer = self.loop.call_later(delay, self._next_round)
            return
        self.listener.failed += 1
        self.close(reset=True)

    def _next_round(self) -> None:
        self.timer = None
        self.candidates = list(self.listener.backends.order())
        self._connect_next()

    def _target_failed(self, err: int) -> None:
        if err in _TARGET_ERRORS and self.target is not None:
            self.listener.backends.failed(self.target)
        log.debug("connect to %s failed (%s); %d more to try", self.target, os.strerror(err),
                  len(self.candidates))

    def _connect_failed(self, err: int) -> None:
        self._drop_upstream()
        self._target_failed(err)
        self._connect_next()

    def _connect_ready(self) -> None:
        """The in-progress connect finished (the upstream socket turned writable)."""
        self.connecting = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        sock = self.socks[UPSTREAM]
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._connect_failed(err)
            return
        self._set_writing(UPSTREAM, False)
        self.socks[UPSTREAM], self.fds[UPSTREAM] = None, -1
        self._attach(sock)

    def _attach(self, sock: socket.socket) -> None:
        self.socks[UPSTREAM], self.fds[UPSTREAM] = sock, sock.fileno()
        self._set_reading(UPSTREAM, True)
        pending = self.out[UPSTREAM]
        self.out[UPSTREAM] = []
        for data in pending:
            if not self._send(UPSTREAM, data):
                break
        if not self.out[UPSTREAM]:
            if self.eof[CLIENT]:
                self._shutdown(UPSTREAM)
            elif not self.reading[CLIENT] and not self.closed:
                self._set_reading(CLIENT, True)

    def _drop_upstream(self) -> None:
        """Close the upstream socket; what waits in `out[UPSTREAM]` stays for the next one."""
        self.connecting = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        sock = self.socks[UPSTREAM]
        if sock is None:
            return
        self._set_reading(UPSTREAM, False)
        self._set_writing(UPSTREAM, False)
        self.socks[UPSTREAM], self.fds[UPSTREAM] = None, -1
        self.eof[UPSTREAM] = self.shut[UPSTREAM] = False
        sock.close()

    def _retry_elsewhere(self, why: str) -> None:
        """The target closed before answering: send what the client said to the next one."""
        log.info("%s closed the connection before answering (%s): retrying on another target",
                 self.target, why)
        if self.target is not None:
            self.listener.backends.failed(self.target)
        self._drop_upstream()
        self.out[UPSTREAM] = list(self.replay)  # re-sent once the next connect completes
        self._connect_next()

    def _can_replay(self) -> bool:
        return (not self.answered and not self.closed and self.replay is not None
                and self.replay_size > 0 and self.attempts < MAX_ATTEMPTS)

    # ------------------------------------------------ the relay

    def _readable(self, side: int) -> None:
        if self.closed:
            return
        if self.pipe[side] is not None:
            self._splice_in(side)
            return
        sock = self.socks[side]
        other = 1 - side
        for _ in range(READ_BATCH):
            try:
                n = sock.recv_into(_buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._failed(side, e)
                return
            if n == 0:
                self._eof(side)
                return
            data = _view[:n]
            if side == UPSTREAM:
                if not self.answered:
                    self.answered = True
                    self.replay = None
            elif self.replay is not None:
                self.replay_size += n
                if self.replay_size > REPLAY_LIMIT:
                    self.replay = None  # too much to replay; a failure now is the client's to see
                else:
                    self.replay.append(bytes(data))
            if side == CLIENT and (self.connecting or self.socks[UPSTREAM] is None):
                # still connecting: keep it for when the connection is up
                self.out[UPSTREAM].append(bytes(data))
                if sum(map(len, self.out[UPSTREAM])) >= REPLAY_LIMIT:
                    self._set_reading(CLIENT, False)
                return
            if not self._send(other, data):
                return
            if n < BUFFER_SIZE:
                return  # drained, most likely; the poller says so if not
            if SPLICE and (side == UPSTREAM or self.replay is None):
                self._start_splice(side)
                return

    def _send(self, side: int, data) -> bool:
        """Write to `side`; False (and reading of the other side stopped) if not all of it went."""
        if self.out[side]:
            self.out[side].append(bytes(data))
            return False
        try:
            sent = self.socks[side].send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            self._failed(side, e)
            return False
        if sent == len(data):
            return True
        self.out[side].append(bytes(data[sent:]))
        self._set_reading(1 - side, False)
        self._set_writing(side, True)
        return False

    def _writable(self, side: int) -> None:
        if self.closed:
            return
        if side == UPSTREAM and self.connecting:
            self._connect_ready()
            return
        other = 1 - side
        if self.inpipe[other]:
            if not self._splice_out(other):
                return
        out = self.out[side]
        sock = self.socks[side]
        while out:
            data = out[0]
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._failed(side, e)
                return
            if sent < len(data):
                out[0] = data[sent:]
                return
            out.pop(0)
        self._set_writing(side, False)
        if self.eof[other]:
            self._shutdown(side)
        elif not self.closed:
            self._set_reading(other, True)

    def _eof(self, side: int) -> None:
        self._set_reading(side, False)
        if side == UPSTREAM and self._can_replay():
            self._retry_elsewhere("EOF")
            return
        self.eof[side] = True
        other = 1 - side
        if self.socks[other] is not None and not self._blocked(side) and not self.writing[other]:
            self._shutdown(other)

    def _shutdown(self, side: int) -> None:
        """Pass a FIN on to `side`; close the connection once both directions are done."""
        if not self.shut[side]:
            self.shut[side] = True
            try:
                self.socks[side].shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if self.shut[CLIENT] and self.shut[UPSTREAM]:
            self.close()

    def _failed(self, side: int, e: OSError) -> None:
        """A reset (or another error) on `side`: retry if the target had not answered, else pass it on."""
        if side == UPSTREAM and self._can_replay():
            self._retry_elsewhere(os.strerror(e.errno) if e.errno else str(e))
            return
        self.close(reset=True)

    # ------------------------------------------------ splice(2) for bulk directions

    def _start_splice(self, side: int) -> None:
        try:
            self.pipe[side] = _pipes.get()
        except OSError:
            return  # out of descriptors: stay in user space
        self._splice_in(side)

    def _splice_in(self, side: int) -> None:
        if self.inpipe[side] and not self._splice_out(side):
            return
        r, w = self.pipe[side]
        src = self.fds[side]
        for _ in range(READ_BATCH):
            try:
                n = os.splice(src, w, PIPE_SIZE, flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._failed(side, e)
                return
            if n == 0:
                self._eof(side)
                return
            if side == UPSTREAM and not self.answered:
                self.answered = True
                self.replay = None
            self.inpipe[side] = n
            if not self._splice_out(side):
                return

    def _splice_out(self, side: int) -> bool:
        """Move the pipe of `side` to the other side; False (reading stopped) if it is not empty yet."""
        r = self.pipe[side][0]
        other = 1 - side
        dst = self.fds[other]
        while self.inpipe[side]:
            try:
                self.inpipe[side] -= os.splice(r, dst, self.inpipe[side], flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                self._set_reading(side, False)
                self._set_writing(other, True)
                return False
            except OSError as e:
                self._failed(other, e)
                return False
        return True

    # ------------------------------------------------ the end

    def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.listener.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for side in (CLIENT, UPSTREAM):
            sock = self.socks[side]
            if sock is None:
                continue
            self._set_reading(side, False)
            self._set_writing(side, False)
            relayio.close(sock, reset)
            self.socks[side], self.fds[side] = None, -1
            pipe = self.pipe[side]
            if pipe is not None:
                _pipes.put(pipe, self.inpipe[side] == 0)
                self.pipe[side] = None


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
        self.sock = relayio.bound_socket(socket.SOCK_DGRAM, _source_for(listener.backends, client[0]))
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
