"""recvmmsg(2)/sendmmsg(2) for the UDP relay: many datagrams per system call.

Rules of this module: Linux only, through ctypes (the standard library has neither call);
`available()` says whether they can be used, and the relay falls back to one datagram per
call without them. A `Batch` owns its buffers; the memoryviews it hands out are valid until
its next receive, and no pointer leaves this module.

Why: on the machines kubemu runs on, a UDP syscall costs microseconds, and relaying a DNS
query one datagram at a time takes four of them (receive and send each way). Reading a batch
of datagrams at once and sending a flow's replies back in one call leaves about one per query.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno as _errno
import socket
import struct

MSG_DONTWAIT = 0x40
SOCKADDR_IN = 16
KEY = 8  # family, port and address: the part of a sockaddr_in that names a client


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.c_void_p), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint32)]


_state: dict[str, object] = {}


def _load() -> bool:
    if "ok" in _state:
        return bool(_state["ok"])
    ok = False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
        recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
        recv.restype = ctypes.c_int
        send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
        send.restype = ctypes.c_int
        _state.update(recv=recv, send=send)
        ok = ctypes.sizeof(_MMsgHdr) == 64 and ctypes.sizeof(ctypes.c_void_p) == 8  # LP64 layout
    except (OSError, AttributeError):
        ok = False
    _state["ok"] = ok
    return ok


def available() -> bool:
    return _load()


def sockaddr(ip: str, port: int) -> bytes:
    """A struct sockaddr_in, as recvmmsg fills it in and sendmmsg takes it."""
    return struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton(ip))


def address(key: bytes) -> tuple[str, int]:
    """(ip, port) of a sockaddr_in (or of its first KEY bytes)."""
    port, ip = struct.unpack_from("!H4s", key, 2)
    return socket.inet_ntoa(ip), port


def _errno_or_zero(n: int) -> int:
    if n >= 0:
        return n
    e = ctypes.get_errno()
    if e in (_errno.EAGAIN, _errno.EWOULDBLOCK, _errno.EINTR):
        return 0
    raise OSError(e, _errno.errorcode.get(e, str(e)))


class Batch:
    """Buffers for up to `count` datagrams of up to 64 KiB each, their senders and lengths.

    Slot i of the receive side is also datagram i of the send side: what was received can be
    sent on without a copy.
    """

    SLOT = 65536

    def __init__(self, count: int = 32):
        if not _load():
            raise OSError("recvmmsg/sendmmsg are not available")
        self.count = count
        size = self.SLOT
        self.data = ctypes.create_string_buffer(count * size)
        self.view = memoryview(self.data).cast("B")
        self.names = ctypes.create_string_buffer(count * SOCKADDR_IN)
        self.dest = ctypes.create_string_buffer(SOCKADDR_IN)
        self.recv_iov = (_IOVec * count)()
        self.send_iov = (_IOVec * count)()
        self.recv_msgs = (_MMsgHdr * count)()
        self.send_msgs = (_MMsgHdr * count)()
        base, names = ctypes.addressof(self.data), ctypes.addressof(self.names)
        for i in range(count):
            self.recv_iov[i].iov_base = self.send_iov[i].iov_base = base + i * size
            self.recv_iov[i].iov_len = size
            r = self.recv_msgs[i].msg_hdr
            r.msg_name, r.msg_namelen = names + i * SOCKADDR_IN, SOCKADDR_IN
            r.msg_iov, r.msg_iovlen = ctypes.addressof(self.recv_iov[i]), 1
            s = self.send_msgs[i].msg_hdr
            s.msg_name, s.msg_namelen = ctypes.addressof(self.dest), SOCKADDR_IN
            s.msg_iov, s.msg_iovlen = ctypes.addressof(self.send_iov[i]), 1
        # msg_len of datagram i, readable without a ctypes object per datagram
        self.lengths = memoryview(self.recv_msgs).cast("B").cast("I")[14::16]
        self._recv_addr = ctypes.addressof(self.recv_msgs)
        self._send_addr = ctypes.addressof(self.send_msgs)
        self._names_addr = names
        self._recv = _state["recv"]
        self._send = _state["send"]

    def recv(self, fd: int) -> int:
        """Receive up to `count` datagrams: how many (0 if none waits); OSError on an error
        such as ECONNREFUSED (an ICMP port unreachable on a connected socket)."""
        # msg_namelen is written back as 16 for every IPv4 sender: no reset needed.
        return _errno_or_zero(self._recv(fd, self._recv_addr, self.count, MSG_DONTWAIT, None))

    def payload(self, i: int) -> memoryview:
        start = i * self.SLOT
        return self.view[start:start + self.lengths[i]]

    def senders(self, n: int) -> bytes:
        """The raw sockaddr_in of the first n senders, 16 bytes each, in one copy."""
        return ctypes.string_at(self._names_addr, n * SOCKADDR_IN)

    def send_to(self, fd: int, n: int, dest: bytes) -> int:
        """Send the n datagrams just received to `dest` (a sockaddr) in one call; returns how
        many went (a full send buffer drops the rest, as a full queue would)."""
        ctypes.memmove(self.dest, dest, SOCKADDR_IN)
        lengths, iov = self.lengths, self.send_iov
        for i in range(n):
            iov[i].iov_len = lengths[i]
        return _errno_or_zero(self._send(fd, self._send_addr, n, MSG_DONTWAIT))
