"""`kubemu proxy` (kubectl proxy) and `kubemu port-forward` (kubectl port-forward).

Debugging tools, not data paths: asyncio streams are fine here. The proxy serves
  /api/v1/namespaces/NS/services/[http:]NAME[:PORT]/proxy/PATH  -> the Service's ClusterIP
  /api/v1/namespaces/NS/pods/NAME[:PORT]/proxy/PATH             -> the pod's IP
  /api/v1/namespaces/NS/services, .../pods/NAME, /api/v1/nodes ... -> the objects as JSON
"""
from __future__ import annotations

import asyncio
import json
import re
import signal
import sys

import click

from kubemu import cluster, errors, objects
from kubemu.client import Client

_PROXY = re.compile(r"^/api/v1/namespaces/([^/]+)/(services|pods)/([^/]+)/proxy(/.*)?$")
_OBJECTS = re.compile(r"^/(?:api/v1|apis/([^/]+)/v1)(?:/namespaces/([^/]+))?/([a-z]+)(?:/([^/]+))?/?$")


def parse_target(name: str) -> tuple[str, str]:
    """`http:web:8080` / `web:http` / `web` -> (name, port-or-empty)."""
    parts = name.split(":")
    if len(parts) == 3:
        return parts[1], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    return parts[0], ""


def service_port(svc, port: str) -> int:
    if not svc.spec.ports:
        raise errors.BadRequest(f'service "{svc.metadata.name}" has no ports')
    if not port:
        return svc.spec.ports[0].port
    for p in svc.spec.ports:
        if p.name == port or str(p.port) == port:
            return p.port
    raise errors.NotFound(f'no port "{port}" on service "{svc.metadata.name}"')


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    return method, target, version, headers, body


def _response(status: int, reason: str, body: bytes, ctype: str = "text/plain") -> bytes:
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


class ApiProxy:
    def __init__(self, client: Client):
        self.client = client

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target, _, headers, body = await _read_head(reader)
            path, _, query = target.partition("?")
            m = _PROXY.match(path)
            if m:
                await self._forward(m, query, method, headers, body, writer)
            else:
                writer.write(await self._objects(path))
        except errors.ApiError as e:
            writer.write(_response(e.code or 500, e.reason, json.dumps(
                {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": e.message,
                 "reason": e.reason, "code": e.code}).encode(), "application/json"))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            try:
                await writer.drain()
                writer.close()
            except ConnectionError:
                pass

    async def _objects(self, path: str) -> bytes:
        m = _OBJECTS.match(path)
        if not m:
            raise errors.NotFound(f"the server could not find the requested resource ({path})")
        _, ns, plural, name = m.groups()
        kind = objects.kind_for(plural)
        if name:
            body = objects.to_dict(await self.client.get(kind.kind, name, ns or ""))
        else:
            items, rev = await self.client.list(kind.kind, ns or "")
            body = {"apiVersion": kind.api_version, "kind": f"{kind.kind}List",
                    "metadata": {"resourceVersion": str(rev)}, "items": [objects.to_dict(i) for i in items]}
        return _response(200, "OK", json.dumps(body, indent=2).encode(), "application/json")

    async def _forward(self, m, query, method, headers, body, writer) -> None:
        ns, what, target, rest = m.group(1), m.group(2), m.group(3), m.group(4) or "/"
        name, port = parse_target(target)
        if what == "services":
            svc = await self.client.get("Service", name, ns)
            if not svc.spec.clusterIP or svc.spec.clusterIP == "None":
                raise errors.BadRequest(f'service "{name}" has no cluster IP to proxy to')
            host, p = svc.spec.clusterIP, service_port(svc, port)
        else:
            pod = await self.client.get("Pod", name, ns)
            if not pod.status.podIP:
                raise errors.BadRequest(f'pod "{name}" has no IP yet')
            host, p = pod.status.podIP, int(port) if port.isdigit() else _container_port(pod, port)
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, p), 5)
        except (OSError, asyncio.TimeoutError) as e:
            writer.write(_response(503, "Service Unavailable",
                                   f"error trying to reach {what[:-1]} {ns}/{name} at {host}:{p}: {e}\n".encode()))
            return
        headers = {k: v for k, v in headers.items() if k not in ("connection", "keep-alive")}
        headers["host"] = f"{host}:{p}"
        headers["connection"] = "close"
        req = f"{method} {rest}{'?' + query if query else ''} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        up_w.write(req.encode("latin-1") + body)
        await up_w.drain()
        while chunk := await up_r.read(65536):
            writer.write(chunk)
            await writer.drain()
        up_w.close()


def _container_port(pod, name: str) -> int:
    for c in pod.spec.containers:
        for p in c.ports:
            if not name or p.name == name:
                return p.containerPort
    raise errors.NotFound(f'no port "{name}" on pod "{pod.metadata.name}"')


def _client_options(f):
    f = click.option("--server", envvar="KUBEMU_SERVER", help="API server address [env KUBEMU_SERVER]")(f)
    f = click.option("--state-dir", envvar="KUBEMU_STATE_DIR", help="cluster state directory")(f)
    f = click.option("--name", "cluster_name", default="default", help="cluster name")(f)
    return f


async def _serve_until_signal(start) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    servers = await start()
    await stop.wait()
    for s in servers:
        s.close()


@click.command()
@_client_options
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("-p", "--port", default=8001, show_default=True)
def proxy(server, state_dir, cluster_name, address, port):
    """Serve the API and proxy to Services and pods over HTTP (kubectl proxy)."""
    addr = cluster.server_address(server, state_dir, cluster_name)

    async def main():
        async with Client(addr) as c:
            async def start():
                srv = await asyncio.start_server(ApiProxy(c).handle, address, port)
                click.echo(f"Starting to serve on {address}:{port}")
                return [srv]
            await _serve_until_signal(start)
    try:
        asyncio.run(main())
    except OSError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


async def _pick_backend(c: Client, target: str, namespace: str, remote: str) -> tuple[str, int]:
    """Where `svc/NAME` or `pod/NAME` port REMOTE leads: a pod IP and port, as kubectl does."""
    kind, _, name = target.partition("/")
    if not name:
        kind, name = "pod", kind
    kind = objects.kind_for(kind).kind
    if kind == "Service":
        svc = await c.get("Service", name, namespace)
        sp = next((p for p in svc.spec.ports if str(p.port) == remote or p.name == remote), None)
        if sp is None:
            raise errors.BadRequest(f'Service {namespace}/{name} does not have a service port {remote}')
        slices, _ = await c.list("EndpointSlice", namespace, label_selector=f"kubernetes.io/service-name={name}")
        for s in slices:
            port = next((p.port for p in s.ports if p.name == sp.name), None)
            for e in s.endpoints:
                if e.conditions.ready and port:
                    return e.addresses[0], port
        raise errors.BadRequest(f"no ready endpoints for service {namespace}/{name}")
    if kind == "Pod":
        pod = await c.get("Pod", name, namespace)
        if not pod.status.podIP:
            raise errors.BadRequest(f'pod "{name}" has no IP yet')
        return pod.status.podIP, int(remote) if remote.isdigit() else _container_port(pod, remote)
    raise errors.BadRequest(f"cannot port-forward to a {kind}; use svc/NAME or pod/NAME")


@click.command("port-forward")
@_client_options
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True)
@click.argument("target")
@click.argument("ports", nargs=-1, required=True)
def port_forward(server, state_dir, cluster_name, namespace, address, target, ports):
    """Forward local ports to a pod or to a pod behind a Service: svc/NAME LOCAL:REMOTE."""
    addr = cluster.server_address(server, state_dir, cluster_name)
    pairs = []
    for spec in ports:
        local, _, remote = spec.rpartition(":")
        if not remote or (local and not local.isdigit()):
            raise click.BadParameter(f"{spec!r}: expected LOCAL:REMOTE or PORT", param_hint="PORTS")
        pairs.append((int(local) if local else None, remote))

    async def main():
        async with Client(addr) as c:
            async def start():
                servers = []
                for local, remote in pairs:
                    host, port = await _pick_backend(c, target, namespace, remote)

                    async def relay(r, w, host=host, port=port):
                        try:
                            ur, uw = await asyncio.open_connection(host, port)
                        except OSError:
                            w.close()
                            return

                        async def pipe(src, dst):
                            try:
                                while data := await src.read(65536):
                                    dst.write(data)
                                    await dst.drain()
                                if dst.can_write_eof():
                                    dst.write_eof()
                            except ConnectionError:
                                pass
                        await asyncio.gather(pipe(r, uw), pipe(ur, w))
                        w.close()
                        uw.close()
                    srv = await asyncio.start_server(relay, address, local if local is not None else int(remote) if remote.isdigit() else 0)
                    bound = srv.sockets[0].getsockname()[1]
                    click.echo(f"Forwarding from {address}:{bound} -> {remote}")
                    servers.append(srv)
                return servers
            await _serve_until_signal(start)
    asyncio.run(main())
