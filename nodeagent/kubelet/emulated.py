"""Emulated images, served inside the agent on the pod's IP, so thousands of pods cost little.

Each container is an `EmulatedInstance`: the sockets its image would open (HTTP, TCP echo, UDP),
bound to the pod IP, plus the connections they accepted. Stopping the container closes all of
them, as killing a container would. The protocols are asyncio Protocols (no Streams on the
data path) with a small HTTP/1.1 parser: keep-alive, pipelining, Content-Length and chunked
request bodies, `Expect: 100-continue`.

The answers follow the real images closely enough for Kubernetes' own e2e checks:
nginx's default page, echoserver's plain-text report (`Hostname:`, `client_address=`),
agnhost netexec (`/hostname`, `/clientip` as `ip:port`, `/echo?msg=`, `/dial`, `/exit`, the
UDP commands `hostname`, `echo <msg>`, `clientip`), serve-hostname, hello-app.
"""
from __future__ import annotations

import asyncio
import datetime
import email.utils
import http
import json
import logging
import time
import urllib.parse
from typing import Any, Awaitable, Callable

from kubemu.nodeagent.kubelet import httpclient, logs
from kubemu.nodeagent.kubelet.images import Emulated, Listen
from kubemu.nodeagent.kubelet.runtime import ExitInfo, StartError

log = logging.getLogger("kubemu.nodeagent.kubelet.emulated")

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

NGINX_VERSION = "1.27.3"
NGINX_INDEX = b"""<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""


def _nginx_error(code: int) -> bytes:
    phrase = f"{code} {http.HTTPStatus(code).phrase}"
    if code == 405:
        phrase = "405 Not Allowed"
    return (f"<html>\r\n<head><title>{phrase}</title></head>\r\n<body>\r\n<center><h1>{phrase}</h1>"
            f"</center>\r\n<hr><center>nginx/{NGINX_VERSION}</center>\r\n</body>\r\n</html>\r\n").encode()


class PodContext:
    """What an emulated container knows about its pod."""

    __slots__ = ("name", "namespace", "hostname", "pod_ip", "node_name", "env")

    def __init__(self, name: str, namespace: str, hostname: str, pod_ip: str, node_name: str,
                 env: dict[str, str] | None = None):
        self.name = name
        self.namespace = namespace
        self.hostname = hostname
        self.pod_ip = pod_ip
        self.node_name = node_name
        self.env = env or {}


class Request:
    __slots__ = ("method", "target", "path", "query", "version", "headers", "body", "client", "local")

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]],
                 body: bytes, client: tuple[str, int], local: tuple[str, int]):
        self.method = method
        self.target = target
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = body
        self.client = client
        self.local = local

    def header(self, name: str, default: str = "") -> str:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def param(self, name: str, default: str = "") -> str:
        values = urllib.parse.parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else default


class Response:
    __slots__ = ("status", "body", "content_type", "headers", "after")

    def __init__(self, status: int = 200, body: bytes | str = b"", content_type: str = "text/plain; charset=utf-8",
                 headers: list[tuple[str, str]] | None = None, after: Callable[[], None] | None = None):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.headers = headers or []
        self.after = after  # run once the response is written (agnhost /exit)


Handler = Callable[[Request], "Response | Awaitable[Response]"]

_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


_PHRASES = {s.value: s.phrase for s in http.HTTPStatus}


class HTTPProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection to an emulated server."""

    __slots__ = ("app", "instance", "transport", "buf", "client", "local", "busy", "closing")

    def __init__(self, app: "HTTPApp", instance: "EmulatedInstance"):
        self.app = app
        self.instance = instance
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.busy = False  # an async handler is running: later requests wait their turn
        self.closing = False

    def connection_made(self, transport):
        self.transport = transport
        self.instance.conns.add(transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        sock = transport.get_extra_info("sockname") or ("", 0)
        self.client = (peer[0], peer[1])
        self.local = (sock[0], sock[1])

    def connection_lost(self, exc):
        self.instance.conns.discard(self.transport)
        self.closing = True

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        if not self.busy:
            self._process()

    def _process(self) -> None:
        while self.buf and not self.closing:
            parsed = self._parse()
            if parsed is None:
                return
            req, keep_alive = parsed
            result = self.app.handle(req)
            if isinstance(result, Response):
                self._respond(req, result, keep_alive)
            else:
                self.busy = True
                asyncio.ensure_future(self._finish(req, result, keep_alive))
                return

    async def _finish(self, req: Request, pending: Awaitable[Response], keep_alive: bool) -> None:
        try:
            resp = await pending
        except Exception as e:  # a handler bug answers 500, as a server would
            log.debug("handler failed: %r", e)
            resp = Response(500, f"{e}\n")
        if self.closing:
            return
        self._respond(req, resp, keep_alive)
        self.busy = False
        self._process()

    def _parse(self) -> tuple[Request, bool] | None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                self._error(431)
            return None
        try:
            head = buf[:end].decode("latin-1")
            lines = head.split("\r\n")
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            self._error(400)
            return None
        headers = []
        length = 0
        chunked = False
        conn = ""
        expect = False
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            v = v.strip()
            headers.append((k, v))
            if k == "content-length":
                try:
                    length = int(v)
                except ValueError:
                    self._error(400)
                    return None
            elif k == "transfer-encoding":
                chunked = "chunked" in v.lower()
            elif k == "connection":
                conn = v.lower()
            elif k == "expect":
                expect = v.lower() == "100-continue"
        start = end + 4
        if chunked:
            decoded = _dechunk(buf, start)
            if decoded is None:
                if expect and len(buf) == start:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return None
            body, consumed = decoded
            self.buf = buf[consumed:]
        else:
            if length > MAX_BODY:
                self._error(413)
                return None
            if len(buf) - start < length:
                if expect and len(buf) == start:
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return None
            body = buf[start:start + length]
            self.buf = buf[start + length:]
        if version == "HTTP/1.1":
            keep_alive = conn != "close"
        else:
            keep_alive = conn == "keep-alive"
        return Request(method, target, version, headers, body, self.client, self.local), keep_alive

    def _error(self, code: int) -> None:
        self.buf = b""
        self._write(code, http.HTTPStatus(code).phrase.encode() + b"\n", "text/plain; charset=utf-8", [], False, False)
        self.closing = True

    def _respond(self, req: Request, resp: Response, keep_alive: bool) -> None:
        self._write(resp.status, resp.body, resp.content_type, resp.headers, keep_alive, req.method == "HEAD")
        if resp.after is not None:
            asyncio.get_running_loop().call_soon(resp.after)

    def _write(self, status: int, body: bytes, ctype: str, extra: list[tuple[str, str]], keep_alive: bool,
               head_only: bool) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        lines = [f"HTTP/1.1 {status} {_PHRASES.get(status, '')}\r\n"]
        if self.app.server:
            lines.append(f"Server: {self.app.server}\r\n")
        lines.append(f"Date: {http_date()}\r\n")
        if ctype:
            lines.append(f"Content-Type: {ctype}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n")
        for k, v in extra:
            lines.append(f"{k}: {v}\r\n")
        if not keep_alive:
            lines.append("Connection: close\r\n")
        elif self.app.server.startswith("nginx"):
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1")
        t.write(data if head_only else data + body)
        if not keep_alive:
            self.closing = True
            t.close()


def _dechunk(buf: bytes, start: int) -> tuple[bytes, int] | None:
    """A complete chunked body starting at `start`: (body, end offset), or None if incomplete."""
    out = bytearray()
    pos = start
    while True:
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return None
        try:
            size = int(buf[pos:nl].split(b";")[0].strip() or b"0", 16)
        except ValueError:
            size = 0
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", nl)
            if buf[nl:nl + 4] == b"\r\n\r\n":
                return bytes(out), nl + 4
            if trailer_end < 0:
                return None
            return bytes(out), trailer_end + 4
        if len(buf) < nl + 2 + size + 2:
            return None
        out += buf[nl + 2:nl + 2 + size]
        pos = nl + 2 + size + 2


# ------------------------------------------------------------------ HTTP applications

class HTTPApp:
    server = ""

    def __init__(self, instance: "EmulatedInstance"):
        self.instance = instance
        self.ctx = instance.ctx

    def handle(self, req: Request) -> "Response | Awaitable[Response]":
        raise NotImplementedError


class Nginx(HTTPApp):
    server = f"nginx/{NGINX_VERSION}"

    def handle(self, req):
        if req.method not in ("GET", "HEAD"):
            return Response(405, _nginx_error(405), "text/html")
        if req.path in ("/", "/index.html"):
            return Response(200, NGINX_INDEX, "text/html", [("Accept-Ranges", "bytes")])
        return Response(404, _nginx_error(404), "text/html")


class EchoServer(HTTPApp):
    """registry.k8s.io/echoserver:1.10 (nginx + lua): the request, reported back as text."""

    server = "echoserver"

    def handle(self, req):
        ctx = self.ctx
        host = req.header("host")
        host_only = host.rsplit(":", 1)[0] if host and not host.endswith("]") else host
        lines = ["", "", f"Hostname: {ctx.hostname}", "", "Pod Information:",
                 f"\tnode name:\t{ctx.node_name}", f"\tpod name:\t{ctx.name}",
                 f"\tpod namespace:\t{ctx.namespace}", f"\tpod IP:\t{ctx.pod_ip}", "",
                 "Server values:", "\tserver_version=nginx: 1.13.3 - lua: 10008", "",
                 "Request Information:", f"\tclient_address={req.client[0]}", f"\tmethod={req.method}",
                 f"\treal path={req.path}", f"\tquery={req.query}",
                 f"\trequest_version={req.version.partition('/')[2]}", "\trequest_scheme=http",
                 f"\trequest_uri=http://{host_only or ctx.pod_ip}:{req.local[1]}{req.target}", "",
                 "Request Headers:"]
        for k, v in sorted(req.headers):
            lines.append(f"\t{k}={v}")
        lines += ["", "Request Body:"]
        body = "\n".join(lines) + "\n"
        if req.body:
            body += req.body.decode("utf-8", "replace") + "\n"
        else:
            body += "\t-no body in request-\n"
        return Response(200, body + "\n", "text/plain")


class HelloApp(HTTPApp):
    def handle(self, req):
        return Response(200, f"Hello, world!\nVersion: {self.instance.workload.version}\n"
                             f"Hostname: {self.ctx.hostname}\n")


class ServeHostname(HTTPApp):
    def handle(self, req):
        return Response(200, self.ctx.hostname)


class Porter(HTTPApp):
    def handle(self, req):
        env = dict(self.instance.workload.env_ports)
        return Response(200, env.get(f"SERVE_PORT_{req.local[1]}", ""))


def _go_now() -> str:
    now = datetime.datetime.now().astimezone()
    return now.strftime("%Y-%m-%d %H:%M:%S.%f000 %z %Z")


class Netexec(HTTPApp):
    """agnhost netexec's HTTP endpoints."""

    def handle(self, req):
        p = req.path
        if p == "/clientip":
            return Response(200, f"{req.client[0]}:{req.client[1]}")
        if p in ("/hostname", "/hostName"):
            return Response(200, self.ctx.hostname)
        if p == "/echo":
            code = req.param("code")
            if code and not code.lstrip("-").isdigit():
                return Response(200, f"argument 'code' must be an integer or empty, got {code!r}\n")
            return Response(int(code) if code else 200, req.param("msg"))
        if p == "/healthz":
            return Response(200 if self.instance.running else 412, b"")
        if p == "/readyz":
            return Response(503 if self.instance.shutting_down else 200, b"")
        if p == "/header":
            return Response(200, req.header(req.param("key").lower()))
        if p == "/redirect":
            code = req.param("code") or "302"
            if not code.isdigit():
                return Response(200, f"argument 'code' must be an integer or empty, got {code!r}\n")
            return Response(int(code), b"", "text/html; charset=utf-8", [("Location", req.param("location"))])
        if p in ("/exit", "/shutdown"):
            code = req.param("code") or "0" if p == "/exit" else "0"
            if not code.isdigit() or not 0 <= int(code) <= 127:
                return Response(200, f"argument 'code' must be an integer [0-127] or empty, got {code!r}\n")
            inst = self.instance
            return Response(200, b"", after=lambda: inst.exit(int(code)))
        if p == "/dial":
            return self._dial(req)
        if p == "/shell":
            return self._shell(req)
        return Response(200, f"NOW: {_go_now()}")

    async def _dial(self, req: Request) -> Response:
        host, port = req.param("host"), req.param("port")
        request, protocol = req.param("request"), (req.param("protocol") or "http").lower()
        tries_s = req.param("tries") or "1"
        if not tries_s.isdigit():
            return Response(400, f"tries parameter is invalid. {tries_s}\n")
        if not request:
            return Response(400, "request parameter not specified. <nil>\n")
        if protocol not in ("http", "udp") or not port.isdigit():
            return Response(400, f"unsupported protocol. {protocol}\n" if protocol not in ("http", "udp")
                            else f"host and/or port param are invalid. {port}\n")
        responses, errors = [], []
        for _ in range(int(tries_s)):
            try:
                if protocol == "http":
                    _, body = await httpclient.get(host, int(port), "/" + request, timeout=5,
                                                   local_ip=self.ctx.pod_ip)
                    responses.append(body.decode("utf-8", "replace"))
                else:
                    responses.append(await udp_request(host, int(port), request.encode(), 5, self.ctx.pod_ip))
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
        out: dict[str, Any] = {}
        if responses:
            out["responses"] = responses
        if errors:
            out["errors"] = errors
        return Response(200, json.dumps(out, separators=(",", ":")))

    async def _shell(self, req: Request) -> Response:
        cmd = req.param("shellCommand") or req.param("cmd")
        out: dict[str, str] = {}
        try:
            code, output = await self.instance.run_shell(cmd)
            if output:
                out["output"] = output.decode("utf-8", "replace")
            if code != 0:
                out["error"] = f"exit status {code}"
        except Exception as e:
            out["error"] = str(e)
        return Response(200 if "error" not in out else 417, json.dumps(out))


async def udp_request(host: str, port: int, data: bytes, timeout: float, local_ip: str | None) -> str:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    class P(asyncio.DatagramProtocol):
        def datagram_received(self, d, addr):
            if not fut.done():
                fut.set_result(d)

        def error_received(self, exc):
            if not fut.done():
                fut.set_exception(exc)

    transport, _ = await loop.create_datagram_endpoint(
        P, remote_addr=(host, port), local_addr=(local_ip, 0) if local_ip else None)
    try:
        transport.sendto(data)
        return (await asyncio.wait_for(fut, timeout)).decode("utf-8", "replace")
    finally:
        transport.close()


_APPS: dict[str, type[HTTPApp]] = {
    "nginx": Nginx, "echoserver": EchoServer, "hello-app": HelloApp, "agnhost-netexec": Netexec,
    "serve-hostname": ServeHostname, "porter": Porter,
}


# ------------------------------------------------------------------ TCP and UDP servers

class TCPEcho(asyncio.Protocol):
    __slots__ = ("instance", "transport")

    def __init__(self, instance: "EmulatedInstance"):
        self.instance = instance

    def connection_made(self, transport):
        self.transport = transport
        self.instance.conns.add(transport)

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False  # half-close: what was echoed is flushed, then the connection closes

    def connection_lost(self, exc):
        self.instance.conns.discard(self.transport)


class TCPHostname(asyncio.Protocol):
    """serve-hostname --tcp: writes the hostname and closes."""

    def __init__(self, instance: "EmulatedInstance"):
        self.instance = instance

    def connection_made(self, transport):
        transport.write(self.instance.ctx.hostname.encode())
        transport.close()


class UDPServer(asyncio.DatagramProtocol):
    def __init__(self, instance: "EmulatedInstance", role: str):
        self.instance = instance
        self.role = role
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if self.role == "udp-echo":
            self.transport.sendto(data, addr)
            return
        if self.role == "udp-hostname":
            self.transport.sendto(self.instance.ctx.hostname.encode(), addr)
            return
        text = data.decode("utf-8", "replace").strip().lower()
        if text == "hostname":
            reply = self.instance.ctx.hostname
        elif text.startswith("echo "):
            reply = text.split(" ", 1)[1]
        elif text == "clientip":
            reply = f"{addr[0]}:{addr[1]}"
        else:
            return
        self.transport.sendto(reply.encode(), addr)

    def error_received(self, exc):
        pass


# ------------------------------------------------------------------ the container

STARTUP_LOG = {
    "agnhost-netexec": lambda l: (f"Started HTTP server on port {l.port}" if l.protocol == "TCP"
                                  else f"Started UDP server on port  {l.port}"),
}


class EmulatedInstance:
    """One run of an emulated container: its listeners and the connections they accepted."""

    def __init__(self, workload: Emulated, ctx: PodContext, log_path: str,
                 shell: Callable[[str], Awaitable[tuple[int, bytes]]] | None = None):
        self.workload = workload
        self.ctx = ctx
        self.log_path = log_path
        self.shell = shell
        self.servers: list[Any] = []
        self.conns: set[asyncio.BaseTransport] = set()
        self.exited: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        self.running = False
        self.shutting_down = False
        self._stop_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        app_cls = _APPS.get(self.workload.kind)
        app = app_cls(self) if app_cls else None
        lines = []
        try:
            for lis in self.workload.listens:
                lines.append(self._bind_message(lis))
                if lis.protocol == "UDP":
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda role=lis.role: UDPServer(self, role), local_addr=(self.ctx.pod_ip, lis.port))
                    self.servers.append(transport)
                    continue
                if lis.role == "http":
                    factory = (lambda: HTTPProtocol(app, self))
                elif lis.role == "tcp-hostname":
                    factory = (lambda: TCPHostname(self))
                else:
                    factory = (lambda: TCPEcho(self))
                server = await loop.create_server(factory, self.ctx.pod_ip, lis.port, reuse_address=True)
                self.servers.append(server)
        except OSError as e:
            self._close_all()
            proto = lis.protocol.lower()
            raise StartError(f"listen {proto} {self.ctx.pod_ip}:{lis.port}: bind: "
                             f"{(e.strerror or str(e)).lower()}") from None
        self.running = True
        logs.append_line(self.log_path, "\n".join(lines) if lines else f"{self.workload.kind}: started")

    def _bind_message(self, lis: Listen) -> str:
        fmt = STARTUP_LOG.get(self.workload.kind)
        if fmt:
            return fmt(lis)
        return f"{self.workload.kind}: serving {lis.protocol} on {self.ctx.pod_ip}:{lis.port}"

    async def run_shell(self, cmd: str) -> tuple[int, bytes]:
        if self.shell is None:
            raise RuntimeError("no shell")
        return await self.shell(cmd)

    def _close_all(self) -> None:
        for s in self.servers:
            s.close()
        self.servers = []
        for t in list(self.conns):
            t.abort() if hasattr(t, "abort") else t.close()
        self.conns.clear()

    def _stop(self, info: ExitInfo) -> None:
        if self.exited.done():
            return
        self.running = False
        if self._stop_timer is not None:
            self._stop_timer.cancel()
        self._close_all()
        self.exited.set_result(info)

    def exit(self, code: int) -> None:
        """The image's own exit (agnhost /exit?code=N)."""
        self._stop(ExitInfo(code, "Completed" if code == 0 else "Error"))

    def terminate(self) -> None:
        if self.exited.done():
            return
        if self.workload.delay_shutdown > 0 and not self.shutting_down:
            # agnhost --delay-shutdown: keep serving (with /readyz failing) for a while.
            self.shutting_down = True
            self._stop_timer = asyncio.get_running_loop().call_later(
                self.workload.delay_shutdown, self._stop, ExitInfo(0, "Completed"))
            return
        if not self.shutting_down:
            self._stop(ExitInfo(0, "Completed"))

    def kill(self) -> None:
        self._stop(ExitInfo(137, "Error", signal=9))
