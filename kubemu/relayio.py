"""Socket pieces shared by the two userspace relays: the node agent's proxy and the cloud LB.

Both relay TCP on raw non-blocking sockets and move bulk directions with splice(2); the rules of
a connection's life differ (the proxy's is a sans-IO state machine, the LB also replays a
request to another target), so only these low-level helpers are shared.
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

SPLICE = hasattr(os, "splice")
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
# 1 MiB pipes (the unprivileged maximum): 64 KiB ones cost twice the CPU per GiB, because every
# splice moves at most a pipe's worth (measured: 0.69 against 0.34 CPU-s per GiB).
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_LINGER_RESET = struct.pack("ii", 1, 0)

# Congestion control for the relays' own TCP sockets. Every hop they make is on this host, but
# the system default may be BBR, which paces what it sends (a WAN algorithm): on loopback that
# held a relayed bulk transfer to 66-79% of a direct one at 128 KiB writes and 33-41% at 1 MiB,
# against 83-101% and 60-80% with cubic or reno (docs/perf/dataplane.md). Cubic is the
# usual default; an unprivileged process may only pick what net.ipv4.tcp_allowed_congestion_control
# lists, and reno is always allowed.
LOOPBACK_CONGESTION = (b"cubic", b"reno")
_congestion: list[bytes] = list(LOOPBACK_CONGESTION)


def unpaced(sock: socket.socket) -> None:
    """Give a TCP socket (a listener passes it on to what it accepts) the first congestion
    control of LOOPBACK_CONGESTION this process may use; keep the default if none."""
    while _congestion:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, _congestion[0])
            return
        except OSError:
            _congestion.pop(0)  # not built in, or not allowed to us: never try it again


def congestion(sock: socket.socket) -> bytes:
    """The congestion control a TCP socket uses, e.g. b"cubic"."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0")


def bound_socket(kind: int, source: str | None, fallback: str | None = None, *,
                 nodelay: bool = False) -> socket.socket:
    """A non-blocking socket bound to `source` (port chosen at connect time, so binding does
    not use up ephemeral ports per source address). When `source` is not a local address (a
    client on another host), `fallback` is bound instead if given."""
    s = socket.socket(socket.AF_INET, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            if nodelay:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            unpaced(s)
        if source:
            try:
                s.bind((source, 0))
            except OSError:
                if not fallback:
                    raise
                s.bind((fallback, 0))
    except BaseException:
        s.close()
        raise
    return s


def close(sock: socket.socket, reset: bool = False) -> None:
    """Close; with `reset`, abort with an RST (SO_LINGER 0) instead of a FIN."""
    if reset:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
    sock.close()


class PipePool:
    """splice(2) pipes: made non-blocking with PIPE_SIZE, and kept for reuse once empty."""

    def __init__(self, keep: int = 64):
        self.keep = keep
        self._free: list[tuple[int, int]] = []

    def __len__(self) -> int:
        """How many empty pipes wait for reuse."""
        return len(self._free)

    def get(self) -> tuple[int, int]:
        """A (read end, write end) pair; OSError when out of descriptors."""
        if self._free:
            return self._free.pop()
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # over the user's pipe-buffer quota: the default 64 KiB works, with more syscalls
        return r, w

    def put(self, pipe: tuple[int, int], empty: bool) -> None:
        """Give a pipe back; one with bytes still in it cannot be reused and is closed."""
        if empty and len(self._free) < self.keep:
            self._free.append(pipe)
        else:
            os.close(pipe[0])
            os.close(pipe[1])
