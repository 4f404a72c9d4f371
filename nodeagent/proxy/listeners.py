"""The listening sockets, reconciled as a diff against the wanted set.

Rules of this module: `ListenerSet.apply(wanted)` is idempotent and never raises for one
socket: listeners no longer wanted are closed first (freeing their ports for the new ones),
kept ones get their new route in place (no socket is reopened for an endpoint change), new
ones are opened, and each bind that fails is returned to the caller (an Event on the
Service) while the others go on.

Cluster IPs and external IPs are shared by every agent (SO_REUSEPORT); a node port belongs to
one agent (plain bind: a second agent claiming the same node IP gets EADDRINUSE, not half the
traffic). The kernel spreads a reuseport group's connections by a hash of the 4-tuple, which
would send one client's connections to different agents and break ClientIP affinity (every
agent keeps its own table); a classic BPF program on the group steers everything to its first
socket instead, as if the VIP were routed to one node. When that agent goes, the kernel moves
another socket into the first slot and the VIP keeps answering.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import logging
import socket
import struct

from kubemu import relayio
from kubemu.nodeagent.proxy.picker import Picker
from kubemu.nodeagent.proxy.relay import PortStats, RelayContext, TcpConnection, UdpRelay
from kubemu.nodeagent.proxy.state import CLUSTER_IP, EXTERNAL_IP, Frontend, ListenerKey

log = logging.getLogger("kubemu.nodeagent.proxy")

BACKLOG = 4096
ACCEPT_BATCH = 64
ACCEPT_PAUSE = 0.1  # seconds a listener stops accepting after running out of descriptors
SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)


@dataclasses.dataclass(eq=False, slots=True)
class Route:
    """Where a listener sends what it accepts: its frontend, the port's picker and counters."""

    frontend: Frontend
    picker: Picker
    stats: PortStats


def _first_socket_program() -> tuple[bytes, object]:
    # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}: one instruction, BPF_RET|BPF_K 0,
    # "deliver to socket 0 of the group"; struct sock_fprog {u16 len; sock_filter *filter}.
    insns = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))
    return struct.pack("HP", 1, ctypes.addressof(insns)), insns


_PROGRAM, _PROGRAM_KEEPALIVE = _first_socket_program()
_steering_warned = False


def _steer_to_first(sock: socket.socket) -> None:
    global _steering_warned
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, _PROGRAM)
    except OSError as e:
        if not _steering_warned:
            _steering_warned = True
            log.warning("cannot steer shared listeners to one agent (%s): with several agents, "
                        "ClientIP affinity holds per agent only", e)


def open_socket(key: ListenerKey, shared: bool) -> socket.socket:
    kind = socket.SOCK_STREAM if key.protocol == "TCP" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((key.ip, key.port))
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
            relayio.unpaced(s)  # so is this
            s.listen(BACKLOG)
        if shared:
            # After listen(): a TCP socket given a program while only bound would form a
            # group of its own and refuse the other agents' binds.
            _steer_to_first(s)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


class TcpListener:
    def __init__(self, ctx: RelayContext, key: ListenerKey, route: Route, sock: socket.socket):
        self.ctx = ctx
        self.key = key
        self.route = route
        self.sock = sock
        self._paused = None
        ctx.loop.add_reader(sock.fileno(), self._accept)

    def _resume(self) -> None:
        self._paused = None
        self.ctx.loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        ctx = self.ctx
        for _ in range(ACCEPT_BATCH):
            try:
                c, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The pending connection stays queued and the socket stays readable: stop
                    # polling it for a moment instead of spinning on the error.
                    log.error("%s: cannot accept: %s; pausing this listener for %gs", self.key, e, ACCEPT_PAUSE)
                    self.ctx.loop.remove_reader(self.sock.fileno())
                    self._paused = self.ctx.loop.call_later(ACCEPT_PAUSE, self._resume)
                return
            try:
                c.setblocking(False)
            except OSError:
                c.close()
                continue
            TcpConnection(ctx, self.route, c, addr).start()

    def set_route(self, route: Route) -> None:
        self.route = route

    def close(self) -> None:
        if self._paused is not None:
            self._paused.cancel()
        self.ctx.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class UdpListener:
    def __init__(self, ctx: RelayContext, key: ListenerKey, route: Route, sock: socket.socket):
        self.ctx = ctx
        self.key = key
        self.sock = sock
        self.relay = UdpRelay(ctx, sock, route)
        ctx.loop.add_reader(sock.fileno(), self.relay.on_readable)

    @property
    def route(self) -> Route:
        return self.relay.route

    def set_route(self, route: Route) -> None:
        self.relay.set_route(route)

    def close(self) -> None:
        self.ctx.loop.remove_reader(self.sock.fileno())
        self.relay.close()
        self.sock.close()


Listener = TcpListener | UdpListener


class ListenerSet:
    def __init__(self, ctx: RelayContext):
        self.ctx = ctx
        self.listeners: dict[ListenerKey, Listener] = {}

    def apply(self, wanted: dict[ListenerKey, Route]) -> dict[ListenerKey, OSError]:
        """Make the open listeners exactly `wanted`; returns the binds that failed."""
        for key in [k for k in self.listeners if k not in wanted]:
            log.info("closing %s (%s)", key, self.listeners[key].route.frontend.port_key)
            self.listeners.pop(key).close()
        failed: dict[ListenerKey, OSError] = {}
        for key, route in wanted.items():
            cur = self.listeners.get(key)
            if cur is not None:
                if cur.route is not route:
                    cur.set_route(route)
                continue
            shared = route.frontend.role in (CLUSTER_IP, EXTERNAL_IP)
            try:
                sock = open_socket(key, shared)
            except OSError as e:
                failed[key] = e
                continue
            cls = TcpListener if key.protocol == "TCP" else UdpListener
            self.listeners[key] = cls(self.ctx, key, route, sock)
            log.info("listening on %s for %s (%s)", key, route.frontend.port_key, route.frontend.role)
        return failed

    def close_all(self) -> None:
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()
        for conn in list(self.ctx.connections):
            conn.abort()
