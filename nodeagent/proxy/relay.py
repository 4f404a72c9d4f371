"""Relaying one client's traffic to an endpoint: TCP with retries and half-close, UDP per flow.

Rules of this module: `TcpRelay` is sans-IO (events in, commands out, no sockets, no clock) and
decides everything about a connection's life: which endpoint to dial next, when to stop and
resume reading, when to pass a FIN on, when to close and whether with a reset. The shells
(`TcpConnection`, `UdpFlows`) do the I/O on non-blocking sockets registered with the event
loop's add_reader/add_writer, which uvloop and the selector loop both implement; no asyncio
transports or streams on the data path, because every layer between recv() and send() is
paid per message (Streams cost ~3x the CPU of Protocols, and the default datagram transport
allocates a 256 KiB buffer per receive).

Hot path: a readable socket is read into the agent's shared buffer and written straight to the
other socket; only when the other side cannot take everything does the leftover get copied
and the state machine consulted, so a connection that keeps up costs two syscalls per chunk
and no allocation but a memoryview.
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import os
import socket
from typing import Callable, Union

from kubemu import relayio
from kubemu.nodeagent.proxy import mmsg
from kubemu.nodeagent.proxy.state import Endpoint
from kubemu.relayio import PIPE_SIZE, SPLICE, SPLICE_FLAGS

log = logging.getLogger("kubemu.nodeagent.proxy")

CLIENT, BACKEND = 0, 1
SIDES = ("client", "backend")

# kube-proxy's userspace mode dialled with growing timeouts; a connect on loopback either
# succeeds or is refused at once, so a timeout only hits an endpoint whose backlog is full.
DIAL_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)
MAX_ATTEMPTS = 8

# Bulk transfers move to splice(2): socket -> pipe -> socket without copying the bytes through
# user space. A read that fills SPLICE_CHUNK bytes at once is the sign of a bulk direction;
# request/response traffic never gets there and keeps the cheaper path (no pipe per connection).
SPLICE_CHUNK = 64 * 1024
_pipes = relayio.PipePool()


# ---------------------------------------------------------------- events (past tense)

@dataclasses.dataclass(frozen=True, slots=True)
class Connected:
    """The connect to the current endpoint completed."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectFailed:
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class EofReceived:
    side: int


@dataclasses.dataclass(frozen=True, slots=True)
class WriteBlocked:
    """Data toward `side` is waiting: the socket's send buffer is full."""
    side: int


@dataclasses.dataclass(frozen=True, slots=True)
class WriteDrained:
    side: int


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionReset:
    """A read or write on `side` failed (RST, EPIPE, ...)."""
    side: int


Event = Union[Connected, ConnectFailed, EofReceived, WriteBlocked, WriteDrained, ConnectionReset]


# ---------------------------------------------------------------- commands (imperative)

@dataclasses.dataclass(frozen=True, slots=True)
class OpenConnection:
    endpoint: Endpoint
    timeout: float


@dataclasses.dataclass(frozen=True, slots=True)
class MarkFailed:
    """Tell the picker this endpoint refused us, so other connections skip it for a moment."""
    endpoint: Endpoint


@dataclasses.dataclass(frozen=True, slots=True)
class StartReading:
    side: int


@dataclasses.dataclass(frozen=True, slots=True)
class StopReading:
    side: int


@dataclasses.dataclass(frozen=True, slots=True)
class AwaitWritable:
    side: int


@dataclasses.dataclass(frozen=True, slots=True)
class ShutdownWrite:
    """Send a FIN toward `side` (all its pending data is out)."""
    side: int


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """Close both sockets; `reset` aborts with an RST instead of a FIN."""
    reset: bool


Command = Union[OpenConnection, MarkFailed, StartReading, StopReading, AwaitWritable, ShutdownWrite, Close]

CONNECTING, RELAYING, CLOSED = "connecting", "relaying", "closed"


class TcpRelay:
    """Sans-IO life of one proxied TCP connection.

    connecting: dial `choose(tried)` with DIAL_TIMEOUTS; every failure marks the endpoint
      and dials the next one, until `choose` has none left or MAX_ATTEMPTS is reached: then
      the client is reset (it would have been refused with no endpoints at all).
    relaying: both sides are read. A FIN from one side is passed on to the other once the
      data before it is delivered; the connection closes when both directions are finished,
      and is reset on both sides as soon as either side resets.
    """

    def __init__(self, choose: Callable[[tuple[Endpoint, ...]], Endpoint | None], *,
                 max_attempts: int = MAX_ATTEMPTS, timeouts: tuple[float, ...] = DIAL_TIMEOUTS):
        self.choose = choose
        self.max_attempts = max_attempts
        self.timeouts = timeouts
        self.state = CONNECTING
        self.endpoint: Endpoint | None = None
        self.tried: list[Endpoint] = []
        self.eof = [False, False]        # side sent its FIN
        self.shut = [False, False]       # we sent our FIN toward side
        self.blocked = [False, False]    # data toward side is waiting
        self.failure = ""                # why the last connect failed
        self.refused = False             # gave up without reaching an endpoint

    def start(self) -> list[Command]:
        return self._dial()

    def _dial(self) -> list[Command]:
        ep = None
        if len(self.tried) < self.max_attempts:
            ep = self.choose(tuple(self.tried))
        if ep is None:
            self.state = CLOSED
            self.refused = True
            if not self.failure:
                self.failure = "no endpoint"
            return [Close(reset=True)]
        self.tried.append(ep)
        self.endpoint = ep
        t = self.timeouts[min(len(self.tried), len(self.timeouts)) - 1]
        return [OpenConnection(ep, t)]

    def handle(self, ev: Event) -> list[Command]:
        if self.state == CLOSED:
            return []
        t = type(ev)
        if self.state == CONNECTING:
            if t is Connected:
                self.state = RELAYING
                return [StartReading(CLIENT), StartReading(BACKEND)]
            if t is ConnectFailed:
                assert self.endpoint is not None
                self.failure = f"{self.endpoint}: {ev.reason}"
                return [MarkFailed(self.endpoint), *self._dial()]
            if t is ConnectionReset:
                self.state = CLOSED
                return [Close(reset=True)]
            raise ValueError(f"{ev!r} while connecting")
        if t is EofReceived:
            side, other = ev.side, 1 - ev.side
            if self.eof[side]:
                return []
            self.eof[side] = True
            cmds: list[Command] = [StopReading(side)]
            if not self.blocked[other]:
                cmds += self._shutdown(other)
            return cmds
        if t is WriteBlocked:
            if self.blocked[ev.side]:
                return []
            self.blocked[ev.side] = True
            return [StopReading(1 - ev.side), AwaitWritable(ev.side)]
        if t is WriteDrained:
            side, other = ev.side, 1 - ev.side
            if not self.blocked[side]:
                return []
            self.blocked[side] = False
            if self.eof[other]:
                return self._shutdown(side)
            return [StartReading(other)]
        if t is ConnectionReset:
            self.state = CLOSED
            return [Close(reset=True)]
        raise ValueError(f"{ev!r} while {self.state}")

    def _shutdown(self, side: int) -> list[Command]:
        if self.shut[side]:
            return []
        self.shut[side] = True
        if self.shut[1 - side]:
            # Both ways are done: closing sends this last FIN.
            self.state = CLOSED
            return [Close(reset=False)]
        return [ShutdownWrite(side)]


# ---------------------------------------------------------------- the asyncio shells

class PortStats:
    """Counters of one Service port, shared by its listeners (rendered as Prometheus metrics)."""

    __slots__ = ("connections", "failed", "active", "bytes_to_endpoint", "bytes_to_client",
                 "packets_to_endpoint", "packets_to_client")

    def __init__(self) -> None:
        self.connections = 0          # TCP connections accepted / UDP flows opened
        self.failed = 0               # refused: no endpoint, or every connect failed
        self.active = 0
        self.bytes_to_endpoint = 0
        self.bytes_to_client = 0
        self.packets_to_endpoint = 0  # UDP datagrams
        self.packets_to_client = 0


class RelayContext:
    """What every connection of one agent shares: the loop, this node, one read buffer."""

    def __init__(self, loop, *, node_name: str, node_ip: str, node_of: Callable[[str], str | None],
                 buffer_size: int = 256 * 1024, udp_idle_timeout: float = 30.0,
                 batch_datagrams: bool = True):
        self.loop = loop
        self.node_name = node_name
        self.node_ip = node_ip
        self.node_of = node_of
        self.buffer = bytearray(buffer_size)
        self.view = memoryview(self.buffer)
        self.udp_idle_timeout = udp_idle_timeout
        self.connections: set[TcpConnection] = set()
        # recvmmsg/sendmmsg buffers, shared by every UDP listener of the agent (one loop)
        self.batch = mmsg.Batch() if batch_datagrams and mmsg.available() else None

    def traffic_node(self, frontend, client_ip: str) -> str | None:
        """The node whose endpoints a Local policy allows, or None for any node."""
        if not frontend.local:
            return None
        if frontend.external:
            return self.node_name
        return self.node_of(client_ip) or self.node_name

    def source_ip(self, frontend, client_ip: str) -> str:
        return client_ip if frontend.source == "client" else self.node_ip


class TcpConnection:
    """The I/O shell of one TcpRelay: executes its commands on two non-blocking sockets."""

    __slots__ = ("ctx", "loop", "relay", "picker", "stats", "client", "backend", "cfd", "bfd",
                 "client_addr", "source", "pending", "timer", "pipes", "in_pipe", "_readers", "_writers")

    def __init__(self, ctx: RelayContext, route, client: socket.socket, client_addr: tuple[str, int]):
        self.ctx = ctx
        self.loop = ctx.loop
        frontend = route.frontend
        self.picker = route.picker
        self.stats = route.stats
        self.client = client
        self.cfd = client.fileno()
        self.backend: socket.socket | None = None
        self.bfd = -1
        self.client_addr = client_addr
        client_ip = client_addr[0]
        self.source = ctx.source_ip(frontend, client_ip)
        node = ctx.traffic_node(frontend, client_ip)
        picker = self.picker
        self.relay = TcpRelay(lambda tried: picker.pick(client_ip, node=node, exclude=tried))
        self.pending: list[memoryview | None] = [None, None]  # copied bytes waiting toward side
        self.timer = None
        self.pipes: list[tuple[int, int] | None] = [None, None]  # splice pipe of data read from side
        self.in_pipe = [0, 0]
        self._readers = [self._read_client, self._read_backend]
        self._writers = (self._write_client, self._write_backend)

    def start(self) -> None:
        self.stats.connections += 1
        self.stats.active += 1
        self.ctx.connections.add(self)
        self._execute(self.relay.start())

    # -------------------------------------------------------- commands

    def _handle(self, ev: Event) -> None:
        self._execute(self.relay.handle(ev))

    def _execute(self, cmds: list[Command]) -> None:
        for c in cmds:
            t = type(c)
            if t is StartReading:
                self.loop.add_reader(self._fd(c.side), self._readers[c.side])
            elif t is StopReading:
                self.loop.remove_reader(self._fd(c.side))
            elif t is AwaitWritable:
                self.loop.add_writer(self._fd(c.side), self._writers[c.side])
            elif t is ShutdownWrite:
                try:
                    (self.client if c.side == CLIENT else self.backend).shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            elif t is OpenConnection:
                self._open(c.endpoint, c.timeout)
            elif t is MarkFailed:
                self.picker.failed(c.endpoint)
            elif t is Close:
                self._close(c.reset)

    def _fd(self, side: int) -> int:
        return self.cfd if side == CLIENT else self.bfd

    # -------------------------------------------------------- connecting

    def _open(self, ep: Endpoint, timeout: float) -> None:
        self._drop_backend()
        try:
            s = relayio.bound_socket(socket.SOCK_STREAM, self.source, self.ctx.node_ip, nodelay=True)
        except OSError as e:
            self.loop.call_soon(self._handle, ConnectFailed(str(e)))
            return
        self.backend, self.bfd = s, s.fileno()
        addr = (ep.ip, ep.port)
        err = s.connect_ex(addr)
        if err == errno.EINPROGRESS:
            # On loopback the handshake is usually over by the time connect() returns; asking
            # again costs one syscall and saves a trip through the poller.
            err = s.connect_ex(addr)
            if err == errno.EISCONN:
                err = 0
        if err == 0:
            self._handle(Connected())
        elif err in (errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN):
            self.loop.add_writer(self.bfd, self._connect_done)
            self.timer = self.loop.call_later(timeout, self._connect_timeout)
        else:
            # Refused at once: decide on the next turn of the loop, so a run of dead endpoints
            # does not recurse.
            self.loop.call_soon(self._handle, ConnectFailed(errno.errorcode.get(err, str(err))))

    def _connect_done(self) -> None:
        self.loop.remove_writer(self.bfd)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        err = self.backend.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._handle(ConnectFailed(errno.errorcode.get(err, str(err))))
        else:
            self._handle(Connected())

    def _connect_timeout(self) -> None:
        self.timer = None
        self.loop.remove_writer(self.bfd)
        self._handle(ConnectFailed("timeout"))

    def _drop_backend(self) -> None:
        if self.backend is not None:
            self.loop.remove_writer(self.bfd)
            self.backend.close()
            self.backend, self.bfd = None, -1

    # -------------------------------------------------------- relaying

    def _read_client(self) -> None:
        self._read(CLIENT)

    def _read_backend(self) -> None:
        self._read(BACKEND)

    def _read(self, side: int) -> None:
        """`side` is readable: pass what it sent straight to the other side."""
        other = 1 - side
        src, dst = (self.client, self.backend) if side == CLIENT else (self.backend, self.client)
        view = self.ctx.view
        try:
            n = src.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._handle(ConnectionReset(side))
            return
        if not n:
            self._handle(EofReceived(side))
            return
        if side == CLIENT:
            self.stats.bytes_to_endpoint += n
        else:
            self.stats.bytes_to_client += n
        try:
            m = dst.send(view[:n])
        except (BlockingIOError, InterruptedError):
            m = 0
        except OSError:
            self._handle(ConnectionReset(other))
            return
        if m < n:
            self.pending[other] = memoryview(bytes(view[m:n]))
            self._handle(WriteBlocked(other))
        elif n >= SPLICE_CHUNK and SPLICE:
            self._to_splice(side)

    def _write_client(self) -> None:
        self._flush(CLIENT)

    def _write_backend(self) -> None:
        self._flush(BACKEND)

    def _flush(self, side: int) -> None:
        """The socket toward `side` is writable again: send what waits for it."""
        if self.pipes[1 - side] is not None:
            if not self._splice_out(1 - side):
                return
        else:
            data = self.pending[side]
            try:
                m = (self.client if side == CLIENT else self.backend).send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._handle(ConnectionReset(side))
                return
            if m < len(data):
                self.pending[side] = data[m:]
                return
            self.pending[side] = None
        self.loop.remove_writer(self._fd(side))
        self._handle(WriteDrained(side))

    # -------------------------------------------------------- splice(2) for bulk directions

    def _to_splice(self, side: int) -> None:
        """From now on, data read from `side` goes through a pipe (nothing is pending now)."""
        try:
            self.pipes[side] = _pipes.get()
        except OSError:
            return  # out of descriptors: the copying path still works
        self._readers[side] = self._splice_client if side == CLIENT else self._splice_backend
        self.loop.add_reader(self._fd(side), self._readers[side])

    def _splice_client(self) -> None:
        self._splice_in(CLIENT)

    def _splice_backend(self) -> None:
        self._splice_in(BACKEND)

    def _splice_in(self, side: int) -> None:
        try:
            n = os.splice(self._fd(side), self.pipes[side][1], PIPE_SIZE, flags=SPLICE_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._handle(ConnectionReset(side))
            return
        if not n:
            self._handle(EofReceived(side))
            return
        if side == CLIENT:
            self.stats.bytes_to_endpoint += n
        else:
            self.stats.bytes_to_client += n
        self.in_pipe[side] = n
        self._splice_out(side)

    def _splice_out(self, side: int) -> bool:
        """Move the pipe's bytes read from `side` to the other socket; False if it is full."""
        other = 1 - side
        r = self.pipes[side][0]
        dst = self._fd(other)
        left = self.in_pipe[side]
        while left:
            try:
                left -= os.splice(r, dst, left, flags=SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                self.in_pipe[side] = left
                self._handle(WriteBlocked(other))
                return False
            except OSError:
                self.in_pipe[side] = left
                self._handle(ConnectionReset(other))
                return False
        self.in_pipe[side] = 0
        return True

    # -------------------------------------------------------- closing

    def _close(self, reset: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.relay.refused:
            self.stats.failed += 1
            log.debug("%s:%d: connection reset: %s", *self.client_addr, self.relay.failure)
        for sock, fd in ((self.client, self.cfd), (self.backend, self.bfd)):
            if sock is None:
                continue
            self.loop.remove_reader(fd)
            self.loop.remove_writer(fd)
            relayio.close(sock, reset)
        for side, p in enumerate(self.pipes):
            if p is not None:
                _pipes.put(p, self.in_pipe[side] == 0)
        self.pipes = [None, None]
        self.backend = None
        self.stats.active -= 1
        self.ctx.connections.discard(self)

    def abort(self) -> None:
        """Close at once with a reset (the proxy is stopping)."""
        if self.relay.state != CLOSED:
            self.relay.state = CLOSED
            self._close(reset=True)


# ---------------------------------------------------------------- UDP

UDP_BATCH = 64  # datagrams read per readiness callback before yielding to the loop
# A flow that was one datagram and its answer (a DNS lookup from a fresh source port) is done:
# it goes after this much idleness instead of the full idle timeout, as conntrack keeps an
# unassured UDP entry far shorter than an assured one. Flows are capped per listener so a
# client spraying source ports cannot run the agent out of descriptors.
UDP_ANSWERED_TIMEOUT = 1.0
MAX_FLOWS = 16384


class UdpFlow:
    """One client address's flow: a socket connected to its endpoint, bound to the source."""

    __slots__ = ("owner", "sock", "fd", "endpoint", "key", "client_addr", "dest", "last", "sent",
                 "answered")

    def __init__(self, owner: "UdpRelay", sock: socket.socket, endpoint: Endpoint, key: object,
                 client_addr: tuple[str, int], now: float):
        self.owner = owner
        self.sock = sock
        self.fd = sock.fileno()
        self.endpoint = endpoint
        self.key = key
        self.client_addr = client_addr
        self.dest = mmsg.sockaddr(*client_addr)
        self.last = now
        self.sent = 0
        self.answered = False

    def on_reply(self) -> None:
        owner = self.owner
        view = owner.ctx.view
        out = owner.sock
        stats = owner.route.stats
        sock = self.sock
        for _ in range(UDP_BATCH):
            try:
                n = sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # ICMP port unreachable from the endpoint: its process is gone.
                owner.flow_failed(self)
                return
            try:
                out.sendto(view[:n], self.client_addr)
            except OSError:
                pass
            stats.packets_to_client += 1
            stats.bytes_to_client += n
        self.answered = True
        self.last = owner.ctx.loop.time()

    def on_reply_batch(self) -> None:
        """on_reply with recvmmsg/sendmmsg: a batch of replies in, the same batch out."""
        owner = self.owner
        batch = owner.ctx.batch
        try:
            n = batch.recv(self.fd)
        except OSError:
            owner.flow_failed(self)
            return
        if not n:
            return
        try:
            batch.send_to(owner.fd, n, self.dest)
        except OSError:
            pass
        stats = owner.route.stats
        stats.packets_to_client += n
        lengths = batch.lengths
        stats.bytes_to_client += sum(lengths[i] for i in range(n))
        self.answered = True
        self.last = owner.ctx.loop.time()


class UdpRelay:
    """Relays the datagrams of one UDP listener, one flow per client address.

    A flow's first datagram picks the endpoint (with affinity, Local filtering and source
    address as for TCP); later ones reuse it until the flow has been idle for
    `udp_idle_timeout` seconds (UDP_ANSWERED_TIMEOUT for a one-datagram exchange), or its
    endpoint leaves the Service (kube-proxy clears those conntrack entries too), or the
    endpoint answers with ICMP port unreachable. Replies leave from the listener's socket, so
    the client sees them come from the address it sent to. With recvmmsg/sendmmsg (the
    context's `batch`), requests are read and replies relayed a batch per system call.
    """

    def __init__(self, ctx: RelayContext, sock: socket.socket, route):
        self.ctx = ctx
        self.sock = sock
        self.fd = sock.fileno()
        self.route = route
        self.flows: dict[object, UdpFlow] = {}  # by raw sockaddr (batch mode) or (ip, port)
        self._sweeper = None
        self.on_readable = self._read_batches if ctx.batch is not None else self._read_one_by_one

    def _read_one_by_one(self) -> None:
        ctx = self.ctx
        view = ctx.view
        sock = self.sock
        flows = self.flows
        stats = self.route.stats
        now = ctx.loop.time()
        for _ in range(UDP_BATCH):
            try:
                n, addr = sock.recvfrom_into(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            flow = flows.get(addr)
            if flow is None:
                flow = self._open(addr, addr, now)
                if flow is None:
                    stats.failed += 1
                    continue
            self._forward(flow, view[:n], now)

    def _read_batches(self) -> None:
        ctx = self.ctx
        batch = ctx.batch
        flows = self.flows
        now = ctx.loop.time()
        for _ in range(UDP_BATCH // batch.count or 1):
            try:
                n = batch.recv(self.fd)
            except OSError:
                return  # an ICMP error queued on the listener: nothing to relay
            if not n:
                return
            senders = batch.senders(n)
            for i in range(n):
                key = senders[i * mmsg.SOCKADDR_IN:i * mmsg.SOCKADDR_IN + mmsg.KEY]
                flow = flows.get(key)
                if flow is None:
                    flow = self._open(key, mmsg.address(key), now)
                    if flow is None:
                        self.route.stats.failed += 1
                        continue
                self._forward(flow, batch.payload(i), now)
            if n < batch.count:
                return

    def _forward(self, flow: UdpFlow, data: memoryview, now: float) -> None:
        flow.last = now
        flow.sent += 1
        try:
            flow.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return  # a full send buffer drops the datagram, as a full queue would
        except OSError:
            # The endpoint refused an earlier datagram (ICMP): try another one once.
            key, addr = flow.key, flow.client_addr
            self.flow_failed(flow)
            flow = self._open(key, addr, now)
            if flow is None:
                self.route.stats.failed += 1
                return
            flow.sent += 1
            try:
                flow.sock.send(data)
            except OSError:
                return
        stats = self.route.stats
        stats.packets_to_endpoint += 1
        stats.bytes_to_endpoint += len(data)

    def _open(self, key: object, addr: tuple[str, int], now: float) -> UdpFlow | None:
        ctx = self.ctx
        if len(self.flows) >= MAX_FLOWS:
            return None
        frontend = self.route.frontend
        client_ip = addr[0]
        ep = self.route.picker.pick(client_ip, node=ctx.traffic_node(frontend, client_ip))
        if ep is None:
            return None
        try:
            s = relayio.bound_socket(socket.SOCK_DGRAM, ctx.source_ip(frontend, client_ip), ctx.node_ip)
        except OSError as e:
            log.warning("UDP flow from %s:%d: %s", *addr, e)
            return None
        try:
            s.connect((ep.ip, ep.port))
        except OSError:
            s.close()
            self.route.picker.failed(ep)
            return None
        flow = UdpFlow(self, s, ep, key, addr, now)
        self.flows[key] = flow
        ctx.loop.add_reader(flow.fd, flow.on_reply_batch if ctx.batch is not None else flow.on_reply)
        stats = self.route.stats
        stats.connections += 1
        stats.active += 1
        if self._sweeper is None:
            self._schedule_sweep()
        return flow

    def _close_flow(self, flow: UdpFlow) -> None:
        if self.flows.get(flow.key) is flow:
            del self.flows[flow.key]
            self.route.stats.active -= 1
        self.ctx.loop.remove_reader(flow.fd)
        flow.sock.close()

    def flow_failed(self, flow: UdpFlow) -> None:
        self.route.picker.failed(flow.endpoint)
        self._close_flow(flow)

    def _schedule_sweep(self) -> None:
        period = max(0.05, min(self.ctx.udp_idle_timeout, UDP_ANSWERED_TIMEOUT) / 2)
        self._sweeper = self.ctx.loop.call_later(period, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.ctx.loop.time()
        cutoff = now - self.ctx.udp_idle_timeout
        done = now - min(UDP_ANSWERED_TIMEOUT, self.ctx.udp_idle_timeout)
        for flow in [f for f in self.flows.values()
                     if f.last < cutoff or (f.last < done and f.sent == 1 and f.answered)]:
            self._close_flow(flow)
        if self.flows:
            self._schedule_sweep()

    def set_route(self, route) -> None:
        """New endpoints or settings: flows to endpoints no longer there are closed."""
        self.route.stats.active -= len(self.flows)
        route.stats.active += len(self.flows)
        self.route = route
        alive = set(route.picker.endpoints)
        for flow in [f for f in self.flows.values() if f.endpoint not in alive]:
            self._close_flow(flow)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for flow in list(self.flows.values()):
            self._close_flow(flow)
