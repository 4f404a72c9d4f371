"""The pytest plugin's traffic helper, against plain sockets."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from kubemu.testing import cluster, procs
from kubemu.testing.cluster import Cluster


def test_http_get_retries_a_refused_connection_until_its_timeout(monkeypatch):
    ip = "127.0.0.1"
    port = procs.free_port(ip)
    attempts = []
    servers: list[threading.Thread] = []
    real = cluster.http_get

    def attempt(host, port_, *args, **kwargs):
        attempts.append(port_)
        if len(attempts) == 3:  # the listener opens late, as a node agent's does after a sync
            ls = socket.create_server((ip, port))

            def serve():
                with ls:
                    c, _ = ls.accept()
                    with c:
                        c.recv(65536)
                        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            servers.append(threading.Thread(target=serve, daemon=True))
            servers[0].start()
        return real(host, port_, *args, **kwargs)
    monkeypatch.setattr(cluster, "http_get", attempt)
    assert Cluster.http_get(None, ip, port, timeout=5) == "hello"  # an IP needs no cluster
    assert len(attempts) == 3  # two refused, then served
    servers[0].join(5)
    # nothing ever listens: refused, once the timeout has passed
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        Cluster.http_get(None, ip, procs.free_port(ip), timeout=0.3)
    assert time.monotonic() - started >= 0.3
