"""The socket pieces both relays share."""
from __future__ import annotations

import os
import socket

import pytest

from kubemu import relayio


def test_empty_pipes_are_reused_and_others_closed():
    pool = relayio.PipePool(keep=1)
    r, w = pool.get()
    pool.put((r, w), empty=True)
    assert len(pool) == 1
    assert pool.get() == (r, w)
    os.write(w, b"left over")
    pool.put((r, w), empty=False)
    assert len(pool) == 0
    for fd in (r, w):
        with pytest.raises(OSError):
            os.fstat(fd)
    a, b = pool.get(), pool.get()
    pool.put(a, empty=True)
    pool.put(b, empty=True)  # over `keep`: closed
    assert len(pool) == 1
    with pytest.raises(OSError):
        os.fstat(b[0])
    pool.put(pool.get(), empty=False)


def test_bound_socket_binds_the_source_or_the_fallback():
    s = relayio.bound_socket(socket.SOCK_DGRAM, "127.0.0.3")
    assert s.getsockname()[0] == "127.0.0.3" and not s.getblocking()
    s.close()
    # 192.0.2.1 (TEST-NET-1) is not an address of this host: the fallback is bound instead.
    s = relayio.bound_socket(socket.SOCK_STREAM, "192.0.2.1", "127.0.0.4", nodelay=True)
    assert s.getsockname()[0] == "127.0.0.4"
    assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    s.close()
    with pytest.raises(OSError):
        relayio.bound_socket(socket.SOCK_STREAM, "192.0.2.1")


def test_close_with_reset_sends_an_rst():
    ls = socket.create_server(("127.0.0.1", 0))
    with ls:
        c = socket.create_connection(ls.getsockname())
        peer, _ = ls.accept()
        with c:
            relayio.close(peer, reset=True)
            c.settimeout(5)
            with pytest.raises(ConnectionResetError):
                c.recv(1)


def test_relay_sockets_and_what_a_listener_accepts_do_not_pace():
    # Reno is allowed to every process, so one of the two always takes, whatever the default.
    dialed = relayio.bound_socket(socket.SOCK_STREAM, "127.0.0.1")
    assert relayio.congestion(dialed) in relayio.LOOPBACK_CONGESTION
    ls = socket.socket()
    relayio.unpaced(ls)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    c = socket.create_connection(ls.getsockname())
    a, _ = ls.accept()
    assert relayio.congestion(a) == relayio.congestion(ls) in relayio.LOOPBACK_CONGESTION
    for s in (dialed, ls, c, a):
        s.close()


def test_a_congestion_control_refused_once_is_not_tried_again(monkeypatch):
    monkeypatch.setattr(relayio, "_congestion", [b"no-such-algorithm", b"reno"])
    s = socket.socket()
    relayio.unpaced(s)
    assert relayio.congestion(s) == b"reno" and relayio._congestion == [b"reno"]
    s.close()
