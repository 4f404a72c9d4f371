"""Health-check node ports: how a load balancer learns which nodes have local endpoints.

For a LoadBalancer Service with `externalTrafficPolicy: Local` the API server allocates a
`healthCheckNodePort`; every node's kube-proxy answers HTTP on it, 200 when the node has a
ready endpoint of the Service and 503 otherwise, with kube-proxy's JSON body and the
`X-Load-Balancing-Endpoint-Weight` header (the number of local endpoints). As in kube-proxy,
every path gets the same answer (load balancers probe `/healthz`).

Rules of this module: `render(...)` is pure; `HealthCheckServers.apply(wanted)` reconciles the
servers as a diff, binds synchronously (so a failed bind is reported at once) and never
raises for one port.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

from kubemu.nodeagent.proxy.state import HealthCheck

log = logging.getLogger("kubemu.nodeagent.proxy")

MAX_REQUEST = 16 * 1024


def render(hc: HealthCheck, healthy: bool) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of kube-proxy's service health handler."""
    n = hc.local_endpoints
    body = ('{\n\t"service": {\n\t\t"namespace": "%s",\n\t\t"name": "%s"\n\t},\n'
            '\t"localEndpoints": %d,\n\t"serviceProxyHealthy": %s\n}'
            % (hc.namespace, hc.name, n, "true" if healthy else "false")).encode()
    status = 200 if n > 0 and healthy else 503
    headers = {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff",
               "X-Load-Balancing-Endpoint-Weight": str(n)}
    return status, headers, body


_REASONS = {200: "OK", 400: "Bad Request", 503: "Service Unavailable"}


class _HealthProtocol(asyncio.Protocol):
    def __init__(self, server: "_Server"):
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None and b"\r\n\r\n" in self.buf:
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            self._respond(head)
        if len(self.buf) > MAX_REQUEST and self.transport is not None:
            self.transport.close()

    def _respond(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3:
            status, headers, body, close = 400, {"Content-Type": "text/plain"}, b"bad request\n", True
        else:
            method, version = parts[0], parts[2]
            fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            conn = fields.get("connection", "").lower()
            close = conn == "close" or (version == "HTTP/1.0" and conn != "keep-alive")
            status, headers, body = render(self.server.hc, self.server.healthy())
            if method == "HEAD":
                headers = dict(headers, **{"Content-Length": str(len(body))})
                body = b""
        out = [f"HTTP/1.1 {status} {_REASONS[status]}"]
        out += [f"{k}: {v}" for k, v in headers.items()]
        if "Content-Length" not in headers:
            out.append(f"Content-Length: {len(body)}")
        if close:
            out.append("Connection: close")
        self.transport.write(("\r\n".join(out) + "\r\n\r\n").encode() + body)
        if close:
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc) -> None:
        self.transport = None


class _Server:
    def __init__(self, hc: HealthCheck, sock: socket.socket, healthy: Callable[[], bool]):
        self.hc = hc
        self.sock = sock
        self.healthy = healthy
        self.server: asyncio.AbstractServer | None = None
        self.task = asyncio.get_running_loop().create_task(self._serve(), name=f"healthcheck-{hc.port}")

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _HealthProtocol(self), sock=self.sock)

    def close(self) -> None:
        self.task.cancel()
        if self.server is not None:
            self.server.close()
        else:
            self.sock.close()


class HealthCheckServers:
    def __init__(self, node_ip: str, healthy: Callable[[], bool]):
        self.node_ip = node_ip
        self.healthy = healthy
        self.servers: dict[int, _Server] = {}

    def apply(self, wanted: dict[int, HealthCheck]) -> dict[int, OSError]:
        """Serve exactly the `wanted` ports (port -> what to report); returns the failed binds."""
        for port in [p for p, s in self.servers.items() if p not in wanted
                     or (wanted[p].namespace, wanted[p].name) != (s.hc.namespace, s.hc.name)]:
            self.servers.pop(port).close()
        failed: dict[int, OSError] = {}
        for port, hc in wanted.items():
            cur = self.servers.get(port)
            if cur is not None:
                cur.hc = hc
                continue
            s = socket.socket()
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((self.node_ip, port))
                s.listen(128)
                s.setblocking(False)
            except OSError as e:
                s.close()
                failed[port] = e
                continue
            self.servers[port] = _Server(hc, s, self.healthy)
            log.info("health check for %s/%s on %s:%d", hc.namespace, hc.name, self.node_ip, port)
        return failed

    def close_all(self) -> None:
        for s in self.servers.values():
            s.close()
        self.servers.clear()
