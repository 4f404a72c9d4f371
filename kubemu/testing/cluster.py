"""A whole kubemu cluster for a test: `kubemu up` on a private address slot, and helpers.

    def test_web(kubemu_cluster):
        kubemu_cluster.apply("examples/clusterip/web.yaml")
        kubemu_cluster.wait_endpoints("web", 3)
        assert "Hostname:" in kubemu_cluster.http_get("web", 80, "/")

Every address is private to the cluster (its slot, 127.S.0.0/16) and every port is picked
free, so two clusters, or two test suites, run side by side. `down()` stops every process,
and the fixture calls it even when the test fails.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
from typing import Any, Callable, Iterable, TypeVar

import yaml

from kubemu.client import Client
from kubemu.testing import procs

T = TypeVar("T")


class Cluster:
    def __init__(self, *, nodes: int = 3, state_dir: str | None = None, name: str = "test",
                 extra_args: Iterable[str] = ()):
        self.slot = procs.claim_slot()
        self._tmp = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kubemu-cluster-")
            state_dir = self._tmp.name
        self.state_dir = state_dir
        self.name = name
        self.nodes = nodes
        self.apiserver_port = procs.free_port()
        self.dns_port = procs.free_port()
        self.server = f"127.0.0.1:{self.apiserver_port}"
        self.dns_address = ("127.0.0.1", self.dns_port)
        self.extra_args = list(extra_args)
        self.up_output = ""

    @classmethod
    def attach(cls, state_dir: str) -> "Cluster":
        """A running cluster started elsewhere (`kubemu up`), found by its state directory."""
        from kubemu import cluster as cluster_files
        info = cluster_files.read(state_dir)
        if not info:
            raise RuntimeError(f"no cluster in {state_dir}")
        self = cls.__new__(cls)
        self.slot = procs.Slot(-1)
        self._tmp = None
        self.state_dir, self.name, self.nodes = state_dir, info.get("name", "default"), len(info.get("nodes", {}))
        self.server = info["apiserver"]["address"]
        self.apiserver_port = int(self.server.rpartition(":")[2])
        host, _, port = info["dns"]["address"].rpartition(":")
        self.dns_port, self.dns_address = int(port), (host, int(port))
        self.extra_args, self.up_output = [], ""
        self._node_ips = {n: v["ip"] for n, v in info.get("nodes", {}).items()}
        return self

    # ------------------------------------------------------------ lifecycle

    def up(self, timeout: float = 60.0) -> "Cluster":
        s = self.slot
        args = ["up", "--name", self.name, "--state-dir", self.state_dir, "--nodes", str(self.nodes),
                "--apiserver-port", str(self.apiserver_port), "--service-cidr", s.service_cidr,
                "--node-ip-base", f"127.{s.index}.10.0", "--pod-cidr", s.pod_cidr,
                "--lb-pool", s.lb_pool, "--dns-listen", f"127.0.0.1:{self.dns_port}",
                "--timeout", str(timeout), *self.extra_args]
        res = self.kubemu(*args, check=False, timeout=timeout + 30, with_state=False)
        self.up_output = res.stdout + res.stderr
        if res.returncode != 0:
            self.down()
            raise RuntimeError(f"kubemu up failed:\n{self.up_output}")
        return self

    def down(self) -> None:
        with contextlib.suppress(Exception):
            self.kubemu("down", check=False, timeout=60)
        self.slot.release()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "Cluster":
        return self.up()

    def __exit__(self, *exc: Any) -> None:
        self.down()

    # ------------------------------------------------------------ commands

    def kubemu(self, *args: str, check: bool = True, timeout: float = 60.0, input: str | None = None,
               with_state: bool = True) -> subprocess.CompletedProcess:
        """Run the `kubemu` CLI against this cluster."""
        env = dict(os.environ, KUBEMU_STATE_DIR=self.state_dir) if with_state else dict(os.environ)
        res = subprocess.run(procs.kubemu_command(*args), capture_output=True, text=True,
                             timeout=timeout, input=input, env=env)
        if check and res.returncode != 0:
            raise AssertionError(f"kubemu {' '.join(args)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
        return res

    def apply(self, manifest: str | dict | list) -> str:
        """Apply a file path, a YAML string, or objects (dicts)."""
        if isinstance(manifest, (dict, list)):
            docs = manifest if isinstance(manifest, list) else [manifest]
            text = "\n---\n".join(yaml.safe_dump(d) for d in docs)
            return self.kubemu("apply", "-f", "-", input=text).stdout
        if "\n" in manifest or not os.path.exists(manifest):
            return self.kubemu("apply", "-f", "-", input=manifest).stdout
        return self.kubemu("apply", "-f", manifest).stdout

    def call(self, fn: Callable[[Client], Any], timeout: float = 30.0) -> Any:
        """Run `await fn(client)` against the API server and return its result."""
        async def go():
            async with Client(self.server) as c:
                return await fn(c)
        return asyncio.run(asyncio.wait_for(go(), timeout))

    def get(self, kind: str, name: str, namespace: str = "default"):
        return self.call(lambda c: c.get(kind, name, namespace))

    def list(self, kind: str, namespace: str = "", **kw) -> list:
        return self.call(lambda c: c.list(kind, namespace, **kw))[0]

    def wait_for(self, predicate: Callable[[], T], timeout: float = 20.0, message: str = "condition") -> T:
        return procs.wait_for(predicate, timeout, interval=0.05, message=message)

    # ------------------------------------------------------------ conditions

    def ready_endpoints(self, service: str, namespace: str = "default") -> list[str]:
        slices = self.list("EndpointSlice", namespace, label_selector=f"kubernetes.io/service-name={service}")
        return sorted(a for s in slices for e in s.endpoints
                      if e.conditions.ready for a in e.addresses)

    def wait_endpoints(self, service: str, count: int, namespace: str = "default",
                       timeout: float = 30.0) -> list[str]:
        return self.wait_for(lambda: (lambda eps: eps if len(eps) == count else None)(
            self.ready_endpoints(service, namespace)), timeout,
            message=f"{count} ready endpoints for {namespace}/{service}")

    def wait_deployment(self, name: str, namespace: str = "default", timeout: float = 30.0):
        def ready():
            d = self.get("Deployment", name, namespace)
            want = d.spec.replicas if d.spec.HasField("replicas") else 1
            return d if d.status.readyReplicas == want and d.status.updatedReplicas == want else None
        return self.wait_for(ready, timeout, message=f"deployment {name} ready")

    # ------------------------------------------------------------ traffic

    def service_address(self, service: str, port: int | None = None, namespace: str = "default") -> tuple[str, int]:
        svc = self.get("Service", service, namespace)
        p = svc.spec.ports[0].port if port is None else port
        return svc.spec.clusterIP, p

    def http_get(self, host_or_service: str, port: int | None = None, path: str = "/",
                 namespace: str = "default", timeout: float = 5.0, source: str | None = None) -> str:
        """GET from an IP, or from a Service's ClusterIP when given a Service name.

        A refused connection is tried again until `timeout` has passed, as with
        `curl --retry-connrefused`: the node agents open a Service's listener a moment after its
        endpoints change, as kube-proxy programs its rules after a sync, so a test that has just
        seen the endpoints in the API may otherwise get there first."""
        host = host_or_service
        if not _is_ip(host):
            host, port = self.service_address(host_or_service, port, namespace)
        deadline = time.monotonic() + timeout
        while True:
            try:
                return http_get(host, port or 80, path, timeout=timeout, source=source)
            except ConnectionRefusedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def resolve(self, name: str, qtype: str = "A", tcp: bool = False) -> list[str]:
        """Ask the cluster DNS; returns the answer records' data as strings."""
        from dnslib import DNSRecord
        q = DNSRecord.question(name, qtype)
        raw = q.send(*self.dns_address, tcp=tcp, timeout=3)
        return [str(r.rdata) for r in DNSRecord.parse(raw).rr]

    def node_ip(self, n: int) -> str:
        ips = getattr(self, "_node_ips", None)
        if ips:
            return ips[f"node-{n}"]
        return f"127.{self.slot.index}.10.{n}"

    # ------------------------------------------------------------ chaos

    def node(self, action: str, name: str) -> str:
        return self.kubemu("node", action, name).stdout

    def status(self) -> dict:
        return json.loads(self.kubemu("status", "-o", "json").stdout)


def _is_ip(s: str) -> bool:
    try:
        socket.inet_aton(s)
        return s.count(".") == 3
    except OSError:
        return False


def http_get(host: str, port: int, path: str = "/", *, timeout: float = 5.0,
             source: str | None = None, headers: dict[str, str] | None = None) -> str:
    """A plain HTTP/1.1 GET with a fresh connection (optionally from a chosen source IP)."""
    with socket.create_connection((host, port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as s:
        hdrs = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{hdrs}Connection: close\r\n\r\n".encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    raw = b"".join(chunks).decode(errors="replace")
    head, _, body = raw.partition("\r\n\r\n")
    if not head.startswith("HTTP/1."):
        raise ConnectionError(f"not an HTTP response from {host}:{port}: {raw[:100]!r}")
    status = int(head.split()[1])
    if status >= 400:
        raise ConnectionError(f"HTTP {status} from {host}:{port}{path}")
    return body
