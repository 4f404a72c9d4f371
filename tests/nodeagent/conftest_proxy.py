"""Fixtures for the proxy's tests: a real API server, in-process proxies, emulated pods.

Test files import what they use from here (`from conftest_proxy import ...`). Each test gets
its own API server process on a claimed address slot (127.S.0.0/16) and a background thread
running a uvloop loop that hosts the client, the Proxy instances ("nodes": node-n has IP
127.S.10.n and pod CIDR 127.S.(128+n).0/24) and the backend pods: agnhost-netexec-like HTTP
servers (/hostname, /clientip) and UDP servers (hostname, clientip, echo) on pod IPs. No
kubelet is involved: the tests write Nodes, Services and EndpointSlices themselves, with
explicit cluster IPs and node ports from the slot. Everything is stopped even when a test
fails.
"""
from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import os
import socket
import threading
import time
from typing import Any, Callable, Iterator

import pytest
import uvloop

from kubemu import objects
from kubemu.client import Client
from kubemu.informer import Informer
from kubemu.nodeagent.proxy import Proxy
from kubemu.testing import procs


# ---------------------------------------------------------------- emulated pods

class _HttpPod(asyncio.Protocol):
    """agnhost netexec's HTTP side: /hostname, /clientip (ip:port), /echo?msg=, keep-alive;
    and /port (name:local port) for multi-port tests."""

    def __init__(self, name: str):
        self.name = name
        self.buf = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.peer = transport.get_extra_info("peername")

    def data_received(self, data):
        self.buf += data
        while b"\r\n\r\n" in self.buf and self.transport is not None:
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode()
            path = line.split()[1] if len(line.split()) > 1 else "/"
            if path.startswith("/clientip"):
                body = f"{self.peer[0]}:{self.peer[1]}"
            elif path.startswith("/port"):
                body = f"{self.name}:{self.transport.get_extra_info('sockname')[1]}"
            elif path.startswith("/echo?msg="):
                body = path.partition("=")[2]
            else:
                body = self.name
            close = b"connection: close" in head.lower()
            self.transport.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                f"{'Connection: close' if close else ''}\r\n\r\n{body}".encode())
            if close:
                self.transport.close()
                self.transport = None


class _UdpPod(asyncio.DatagramProtocol):
    """agnhost netexec's UDP side: `hostname`, `clientip`, `echo X`."""

    def __init__(self, name: str):
        self.name = name

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        msg = data.decode(errors="replace").strip()
        if msg == "hostname":
            out = self.name
        elif msg == "clientip":
            out = f"{addr[0]}:{addr[1]}"
        elif msg.startswith("echo "):
            out = msg[5:]
        else:
            out = msg
        self.transport.sendto(out.encode(), addr)


class Pod:
    def __init__(self, env: "ProxyEnv", name: str, ip: str, node: int, servers: list[tuple[Any, Any]]):
        self.env = env
        self.name = name
        self.ip = ip
        self.node = node
        self.servers = servers

    def stop(self, drain: float = 0.0) -> None:
        """The process dies: its sockets close, connections to it are refused. With `drain`, it
        first stops listening and lets requests already accepted finish for up to that long."""
        async def go():
            for s, _ in self.servers:
                s.close()
            deadline = asyncio.get_running_loop().time() + drain
            while any(not t.is_closing() for _, conns in self.servers for t in conns) \
                    and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.005)
            for _, conns in self.servers:
                for t in list(conns):
                    t.abort()
        self.env.call(go())
        self.servers = []


# ---------------------------------------------------------------- the environment

class ProxyEnv:
    def __init__(self, tmp: str, slot: procs.Slot):
        self.tmp = tmp
        self.slot = slot
        self.api: procs.Proc | None = None
        self.api_port = procs.free_port()
        self.server = f"127.0.0.1:{self.api_port}"
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="proxy-env", daemon=True)
        self.thread.start()
        self.proxies: dict[int, tuple[Proxy, list[asyncio.Task], Client]] = {}
        self.pods: list[Pod] = []
        self._vips = itertools.count(1)
        self._node_ports = itertools.count(30000 + 100 * (slot.index % 20))
        self._pod_ips: dict[int, Iterator[int]] = {}
        self.start_apiserver()
        self.client: Client = self.call(self._client())

    async def _client(self) -> Client:
        return Client(self.server)

    # -------------------------------------------------------- plumbing

    def call(self, coro, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start_apiserver(self) -> None:
        state = os.path.join(self.tmp, "state")
        os.makedirs(state, exist_ok=True)
        self.api = procs.Proc(procs.kubemu_command(
            "apiserver", "--listen", self.server, "--state-dir", state, "--service-cidr",
            self.slot.service_cidr, "--bookmark-interval", "0.2"), os.path.join(self.tmp, "apiserver.log"))
        procs.wait_port("127.0.0.1", self.api_port, 15, self.api)

    def kill_apiserver(self) -> None:
        assert self.api is not None
        self.api.kill()

    def close(self) -> None:
        try:
            for n in list(self.proxies):
                self.stop_proxy(n)
            for pod in self.pods:
                pod.stop()
            self.call(self.client.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            if self.api is not None:
                self.api.stop()

    # -------------------------------------------------------- addresses

    def node_ip(self, n: int) -> str:
        return self.slot.node_ip(n)

    def pod_cidr(self, n: int) -> str:
        return f"127.{self.slot.index}.{128 + n}.0/24"

    def vip(self) -> str:
        i = next(self._vips)
        return f"127.{self.slot.index}.{100 + i // 250}.{i % 250 + 1}"

    def node_port(self) -> int:
        return next(self._node_ports)

    def pod_ip(self, node: int) -> str:
        it = self._pod_ips.setdefault(node, itertools.count(10))
        return f"127.{self.slot.index}.{128 + node}.{next(it)}"

    # -------------------------------------------------------- nodes and proxies

    def add_node(self, n: int) -> None:
        node = objects.new("Node", f"node-{n}")
        node.spec.podCIDR = self.pod_cidr(n)
        node.spec.podCIDRs.append(self.pod_cidr(n))
        node.status.addresses.add(type="InternalIP", address=self.node_ip(n))
        node.status.addresses.add(type="Hostname", address=f"node-{n}")
        self.call(self.client.create(node))

    def start_proxy(self, n: int, **kw: Any) -> Proxy:
        """A Proxy as node-n's agent runs it: own client, shared informers, run() as a task."""
        async def go():
            client = Client(self.server)
            infs = [Informer(client, k) for k in ("Service", "EndpointSlice", "Node")]
            proxy = Proxy(client, node_name=f"node-{n}", node_ip=self.node_ip(n), services_informer=infs[0],
                          slices_informer=infs[1], nodes_informer=infs[2], **{"min_sync_interval": 0.01, **kw})
            tasks = [asyncio.create_task(i.run()) for i in infs] + [asyncio.create_task(proxy.run())]
            return proxy, tasks, client
        self.proxies[n] = self.call(go())
        return self.proxies[n][0]

    def stop_proxy(self, n: int) -> None:
        proxy, tasks, client = self.proxies.pop(n)

        async def go():
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()
        self.call(go())

    def proxy(self, n: int) -> Proxy:
        return self.proxies[n][0]

    # -------------------------------------------------------- pods

    def start_pod(self, name: str, node: int, *, http_ports: tuple[int, ...] = (8080,),
                  udp_ports: tuple[int, ...] = (), ip: str | None = None) -> Pod:
        ip = ip or self.pod_ip(node)

        async def go():
            loop = asyncio.get_running_loop()
            servers = []
            for port in http_ports:
                conns: set = set()

                def factory(conns=conns):
                    p = _HttpPod(name)
                    orig = p.connection_made

                    def made(t, orig=orig):
                        conns.add(t)
                        orig(t)
                    p.connection_made = made
                    return p
                srv = await loop.create_server(factory, ip, port, reuse_address=True)
                servers.append((srv, conns))
            for port in udp_ports:
                t, _ = await loop.create_datagram_endpoint(lambda: _UdpPod(name), local_addr=(ip, port))
                servers.append((t, ()))
            return servers
        pod = Pod(self, name, ip, node, self.call(go()))
        self.pods.append(pod)
        return pod

    # -------------------------------------------------------- API objects

    def create(self, obj):
        return self.call(self.client.create(obj))

    def update(self, obj):
        return self.call(self.client.update(obj))

    def get(self, kind: str, name: str, namespace: str = "default"):
        return self.call(self.client.get(kind, name, namespace))

    def patch(self, kind: str, name: str, patch: dict, namespace: str = "default"):
        return self.call(self.client.patch(kind, name, patch, namespace))

    def delete(self, kind: str, name: str, namespace: str = "default"):
        return self.call(self.client.delete(kind, name, namespace))

    def list(self, kind: str, namespace: str = "default"):
        return self.call(self.client.list(kind, namespace))[0]

    def service(self, name: str, *, ports: list[dict] | None = None, type: str = "ClusterIP",
                namespace: str = "default", labels: dict[str, str] | None = None, **spec: Any):
        """Create a Service with an explicit cluster IP (and node ports for NodePort/LoadBalancer)."""
        ports = [dict(p) for p in (ports or [{"port": 80, "targetPort": 8080}])]
        if type in ("NodePort", "LoadBalancer"):
            for p in ports:
                p.setdefault("nodePort", self.node_port())
        manifest = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
                    "spec": {"type": type, "clusterIP": spec.pop("clusterIP", None) or self.vip(),
                             "ports": ports, **spec}}
        return self.create(objects.from_dict(manifest))

    def endpoints(self, service: str, pods: list[Pod | tuple[Pod, dict]], *,
                  ports: list[dict] | None = None, name: str | None = None, namespace: str = "default"):
        """Create or replace the EndpointSlice of `service` (pods, or (pod, conditions) pairs)."""
        eps = []
        for item in pods:
            pod, cond = item if isinstance(item, tuple) else (item, {"ready": True})
            eps.append({"addresses": [pod.ip], "conditions": cond, "nodeName": f"node-{pod.node}",
                        "targetRef": {"kind": "Pod", "name": pod.name, "namespace": namespace}})
        manifest = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": name or f"{service}-abc", "namespace": namespace,
                                 "labels": {"kubernetes.io/service-name": service}},
                    "addressType": "IPv4", "endpoints": eps,
                    "ports": ports or [{"name": "", "port": 8080, "protocol": "TCP"}]}
        obj = objects.from_dict(manifest)
        try:
            old = self.get("EndpointSlice", obj.metadata.name, namespace)
        except Exception:
            return self.create(obj)
        obj.metadata.resourceVersion = old.metadata.resourceVersion
        return self.update(obj)


@pytest.fixture
def proxy_env(tmp_path) -> Iterator[ProxyEnv]:
    slot = procs.claim_slot()
    env = None
    try:
        env = ProxyEnv(str(tmp_path), slot)
        yield env
    finally:
        if env is not None:
            env.close()
        slot.release()


# ---------------------------------------------------------------- clients

def http_get(host: str, port: int, path: str = "/hostname", *, timeout: float = 3.0,
             source: str | None = None) -> str:
    """One request on a new connection; raises OSError (e.g. ConnectionRefusedError) on failure."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.read().decode()
    finally:
        conn.close()


def udp_ask(host: str, port: int, msg: str = "hostname", *, timeout: float = 1.0,
            sock: socket.socket | None = None, source: str | None = None) -> str:
    own = sock is None
    if own:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if source:
            sock.bind((source, 0))
    try:
        sock.settimeout(timeout)
        sock.sendto(msg.encode(), (host, port))
        data, _ = sock.recvfrom(65535)
        return data.decode()
    finally:
        if own:
            sock.close()


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def wait_answers(fn: Callable[[], str], want: set[str], *, timeout: float = 10.0,
                 message: str = "answers") -> set[str]:
    """Call fn until the answers seen within the last len(want)*4 calls are exactly `want`."""
    deadline = time.monotonic() + timeout
    last: set[str] = set()
    while True:
        seen: set[str] = set()
        try:
            for _ in range(max(4, 4 * len(want))):
                seen.add(fn())
        except OSError as e:
            seen.add(f"error: {e!r}")
        if seen == want:
            return seen
        last = seen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}: want {sorted(want)}, saw {sorted(last)}")
        time.sleep(0.05)


@contextlib.contextmanager
def raises_refused() -> Iterator[None]:
    with pytest.raises(ConnectionRefusedError):
        yield
