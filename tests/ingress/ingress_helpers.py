"""Test helpers for the ingress proxy: an HTTP backend that reports what it saw, a small
keep-alive HTTP client, and a harness that runs the proxy in-process on a private address.

The backend is written from scratch (not with kubemu.ingress.http1), so the proxy's framing is
checked against an independent reading of HTTP/1.1.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import ssl

from kubemu import objects
from kubemu.ingress import routing, tls
from kubemu.ingress.proxy import Proxy, UpstreamPool


# ------------------------------------------------------------------ backend


class Backend:
    """An HTTP/1.1 server on (host, port 0) answering with a JSON report of the request.

    Paths: /chunked/N answers in N chunks; /big/N answers N bytes with Content-Length;
    /close answers then closes; /upgrade switches protocols and echoes; anything else: JSON.
    """

    def __init__(self, name: str, host: str):
        self.name = name
        self.host = host
        self.port = 0
        self.connections = 0
        self.requests = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> "Backend":
        self.server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        self.close_idle()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    def close_idle(self) -> None:
        """Close every connection at once: what a backend's idle timeout or a dying pod does."""
        for w in list(self.writers):
            w.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_id = self.connections
        self.writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers: dict[str, list[str]] = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        headers.setdefault(k.strip().lower(), []).append(v.strip())
                body = b""
                if "chunked" in ",".join(headers.get("transfer-encoding", [])):
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        if size == 0:
                            while await reader.readuntil(b"\r\n") != b"\r\n":
                                pass
                            break
                        body += (await reader.readexactly(size + 2))[:-2]
                elif "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"][0]))
                self.requests += 1
                if not await self._respond(method, target, headers, body, conn_id, reader, writer):
                    return
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _respond(self, method, target, headers, body, conn_id, reader, writer) -> bool:
        if target.startswith("/chunked/"):
            n = int(target.rsplit("/", 1)[1])
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend: " + self.name.encode() + b"\r\n\r\n")
            for i in range(n):
                piece = f"chunk {i};".encode()
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\nX-Trailer: yes\r\n\r\n")
            await writer.drain()
            return True
        if target.startswith("/big/"):
            n = int(target.rsplit("/", 1)[1])
            data = (b"0123456789abcdef" * (n // 16 + 1))[:n]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Sha256: %s\r\n\r\n"
                         % (n, hashlib.sha256(data).hexdigest().encode()))
            if method != "HEAD":
                writer.write(data)
            await writer.drain()
            return True
        if target == "/upgrade":
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
            while data := await reader.read(65536):
                writer.write(data.upper())
                await writer.drain()
            return False
        report = {"server": self.name, "method": method, "path": target, "conn": conn_id,
                  "headers": {k: v if len(v) > 1 else v[0] for k, v in headers.items()},
                  "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
                  "peer": writer.get_extra_info("peername")[0]}
        data = json.dumps(report).encode()
        close = target == "/close"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                     % (len(data), b"Connection: close\r\n" if close else b""))
        if method != "HEAD":
            writer.write(data)
        await writer.drain()
        return not close


# ------------------------------------------------------------------ client


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    head: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class Client:
    """One HTTP/1.1 client connection (keep-alive), optionally over TLS with a server name."""

    def __init__(self, host: str, port: int, *, ssl_ctx: ssl.SSLContext | None = None,
                 server_name: str | None = None, source: str | None = None):
        self.host, self.port, self.source = host, port, source
        self.ssl_ctx, self.server_name = ssl_ctx, server_name
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> "Client":
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl_ctx,
            server_hostname=self.server_name if self.ssl_ctx else None,
            local_addr=(self.source, 0) if self.source else None)
        return self

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def send_raw(self, data: bytes) -> None:
        if self.writer is None:
            await self.connect()
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, method: str, path: str, *, host: str = "", headers: dict | None = None,
                      body: bytes = b"", version: str = "HTTP/1.1", chunks: list[bytes] | None = None) -> Reply:
        if self.writer is None:
            await self.connect()
        hdrs = {"Host": host} if host else {}
        hdrs.update(headers or {})
        if chunks is not None:
            hdrs["Transfer-Encoding"] = "chunked"
            body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        elif body or method in ("POST", "PUT"):
            hdrs["Content-Length"] = str(len(body))
        head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        return await self.read_reply(method)

    async def read_reply(self, method: str = "GET") -> Reply:
        while True:
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status >= 200 or status == 101:
                break
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        body = b""
        if method == "HEAD" or status in (101, 204, 304):
            pass
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await self.reader.readuntil(b"\r\n") != b"\r\n":
                        pass
                    break
                body += (await self.reader.readexactly(size + 2))[:-2]
        elif "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        else:
            body = await self.reader.read()
        return Reply(status, headers, body, head)


async def get(host: str, port: int, path: str, *, vhost: str = "", **kw) -> Reply:
    c = Client(host, port)
    try:
        return await c.request("GET", path, host=vhost or host, **kw)
    finally:
        await c.close()


# ------------------------------------------------------------------ objects


def service(name: str, cluster_ip: str, ports: list[tuple[str, int]], namespace: str = "default"):
    return objects.from_dict({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                              "spec": {"clusterIP": cluster_ip,
                                       "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports]}})


def ingress(name: str, spec: dict, namespace: str = "default", created: str = "2024-01-01T00:00:00Z"):
    return objects.from_dict({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                              "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
                              "spec": spec})


def tls_secret(name: str, cert: bytes, key: bytes, namespace: str = "default", rv: str = "1"):
    s = objects.new("Secret", name, namespace)
    s.type = "kubernetes.io/tls"
    s.data["tls.crt"] = cert
    s.data["tls.key"] = key
    s.metadata.resourceVersion = rv
    return s


def backend_ref(svc: str, port) -> dict:
    return {"service": {"name": svc, "port": {"name": port} if isinstance(port, str) else {"number": port}}}


# ------------------------------------------------------------------ harness


class Harness:
    """The proxy in-process: HTTP and HTTPS listeners on `host`, tables from given objects."""

    def __init__(self, host: str, *, response_timeout: float = 10.0):
        self.host = host
        self.routes = routing.RouteTable()
        self.pool = UpstreamPool()
        cert, key = tls.generate_self_signed(tls.FAKE_CERT_CN)
        self.default_ctx = tls.context_from_pem(cert, key)
        self.default_cert = cert
        self.certs = tls.CertStore(self.default_ctx)
        self.http = Proxy(lambda: self.routes, self.pool, scheme="http", public_port=80,
                          response_timeout=response_timeout)
        self.https = Proxy(lambda: self.routes, self.pool, scheme="https", public_port=443,
                           response_timeout=response_timeout)
        self.servers: list[asyncio.base_events.Server] = []
        self.http_port = self.https_port = 0

    def load(self, ingresses: list, services: list, secrets: list = ()) -> None:
        svcs = {objects.key(s): s for s in services}
        self.routes = routing.compile_routes(ingresses, svcs)
        table = tls.compile_tls(ingresses)
        self.certs.update(table, {objects.key(s): s for s in secrets})

    async def start(self) -> "Harness":
        s1 = await asyncio.start_server(self.http.handle, self.host, 0)
        s2 = await asyncio.start_server(self.https.handle, self.host, 0, ssl=self.default_ctx)
        self.servers = [s1, s2]
        self.http_port = s1.sockets[0].getsockname()[1]
        self.https_port = s2.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for s in self.servers:
            s.close()
        await asyncio.gather(self.http.shutdown(1.0), self.https.shutdown(1.0))
        self.pool.close()
