"""Helpers for the controller tests (imported by conftest.py and the test modules).

Unit tests: `FakeClient` records every write a sync makes (and answers like the API server
would: names from generateName, new resourceVersions), and `informer(kind, *objects)` gives an
informer whose cache is pre-filled, so a test can call `sync(key)` directly.

End-to-end tests: `cluster` runs a real API server, a real controller manager and fake node
agents (tests/controllers/fake_node.py), each its own process on a private address slot, all
stopped at the end even when a test fails.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
import uuid

from kubemu import errors, objects
from kubemu.informer import Informer
from kubemu.testing import procs

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_NODE = os.path.join(HERE, "fake_node.py")


# ------------------------------------------------------------------ unit-test helpers

class FakeClient:
    """Records writes as (verb, kind, namespace/name, payload) and answers like the API server."""

    def __init__(self, *, fail: dict | None = None):
        self.writes: list[tuple] = []
        self.rev = itertools.count(10_000)
        self.objects: dict[tuple[str, str, str], object] = {}
        self.fail = dict(fail or {})  # verb -> exception to raise

    def _check(self, verb: str):
        exc = self.fail.get(verb)
        if exc is not None:
            raise exc

    def _stamp(self, obj):
        obj.metadata.resourceVersion = str(next(self.rev))
        return obj

    @staticmethod
    def _copy(obj):
        out = type(obj)()
        out.CopyFrom(obj)
        return out

    async def create(self, obj, **_):
        self._check("create")
        o = self._copy(obj)
        if not o.metadata.name and o.metadata.generateName:
            o.metadata.name = o.metadata.generateName + uuid.uuid4().hex[:5]
        if objects.kind_of(o).namespaced and not o.metadata.namespace:
            o.metadata.namespace = "default"
        o.metadata.uid = str(uuid.uuid4())
        o.metadata.creationTimestamp = "2026-01-01T00:00:00Z"
        self._stamp(o)
        self.writes.append(("create", o.kind, objects.key(o), o))
        return self._copy(o)

    async def update(self, obj, **_):
        self._check("update")
        o = self._stamp(self._copy(obj))
        self.writes.append(("update", o.kind, objects.key(o), o))
        return self._copy(o)

    async def update_status(self, obj, **_):
        self._check("update_status")
        o = self._stamp(self._copy(obj))
        self.writes.append(("update_status", o.kind, objects.key(o), o))
        return self._copy(o)

    async def patch(self, kind, name, patch, namespace="", **kw):
        self._check("patch")
        self.writes.append(("patch", kind, f"{namespace}/{name}" if namespace else name, patch))
        o = objects.new(kind, name, namespace)
        return self._stamp(o)

    async def delete(self, kind, name, namespace="", **kw):
        self._check("delete")
        self.writes.append(("delete", kind, f"{namespace}/{name}" if namespace else name, kw))
        o = objects.new(kind, name, namespace)
        return self._stamp(o)

    async def get(self, kind, name, namespace=""):
        o = self.objects.get((kind, namespace, name))
        if o is None:
            raise errors.NotFound.of(objects.KINDS[kind].resource, name)
        return o

    def verbs(self) -> list[tuple[str, str, str]]:
        return [w[:3] for w in self.writes]


def informer(kind: str, *items, rev: int = 5000) -> Informer:
    """An informer whose cache holds `items`, as if it had just listed them at `rev`."""
    inf = Informer(None, kind)
    inf._replace(list(items), rev)
    inf.synced.set()
    return inf


def put(inf: Informer, obj, rev: int | None = None) -> None:
    """Deliver one watch event to `inf` (ADDED or MODIFIED), running its handlers."""
    class _Ev:
        pass
    ev = _Ev()
    ev.type = "MODIFIED" if objects.key(obj) in inf.cache else "ADDED"
    ev.object = obj
    ev.resource_version = rev if rev is not None else inf.resource_version + 1
    inf._apply(ev)


def remove(inf: Informer, obj, rev: int | None = None) -> None:
    class _Ev:
        pass
    ev = _Ev()
    ev.type = "DELETED"
    ev.object = obj
    ev.resource_version = rev if rev is not None else inf.resource_version + 1
    inf._apply(ev)


def run(coro):
    return asyncio.run(coro)


# ------------------------------------------------------------------ object builders

def container(name: str = "app", port: int = 8080, port_name: str = "http") -> dict:
    c = {"name": name, "image": "registry.k8s.io/echoserver:1.10"}
    if port:
        c["ports"] = [{"name": port_name, "containerPort": port, "protocol": "TCP"}]
    return c


def pod_manifest(name: str, ns: str = "default", labels: dict | None = None, node: str = "", ip: str = "",
                 ready: bool = True, **spec) -> dict:
    m = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": "web"},
                      "uid": f"uid-{name}", "creationTimestamp": "2026-01-01T00:00:00Z",
                      "resourceVersion": "1"},
         "spec": {"containers": [container()], **spec}}
    if node:
        m["spec"]["nodeName"] = node
    if ip:
        m["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    return m


def pod(name: str, **kw):
    return objects.from_dict(pod_manifest(name, **kw))


def service(name: str, ns: str = "default", selector: dict | None = None, ports: list | None = None, **spec):
    return objects.from_dict({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-svc-{name}", "resourceVersion": "1"},
        "spec": {"selector": {"app": "web"} if selector is None else selector, "clusterIP": "10.96.0.10",
                 "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080,
                                                            "protocol": "TCP"}], **spec}})


def node(name: str, ready: str = "True", labels: dict | None = None, **spec):
    return objects.from_dict({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {}, "resourceVersion": "1",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": ready,
                                   "lastHeartbeatTime": "2026-01-01T00:00:00Z"}]}})


def deployment_manifest(name: str, ns: str = "default", replicas: int = 3, labels: dict | None = None,
                        strategy: dict | None = None, **spec) -> dict:
    labels = labels or {"app": name}
    m = {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [container()]}},
                  **spec}}
    if strategy:
        m["spec"]["strategy"] = strategy
    return m


# ------------------------------------------------------------------ end-to-end cluster

class Cluster:
    def __init__(self, tmp: str, slot: procs.Slot, address: str, cm_args: tuple[str, ...]):
        self.tmp = tmp
        self.slot = slot
        self.address = address
        self.cm_args = cm_args
        self.nodes: dict[str, procs.Proc] = {}
        self.cm: procs.Proc | None = None

    def start_controller_manager(self) -> None:
        self.cm = procs.Proc(procs.kubemu_command(
            "controller-manager", "--server", self.address, "--service-cidr", self.slot.service_cidr,
            "--log-level", "info", *self.cm_args), os.path.join(self.tmp, "controller-manager.log"))

    def restart_controller_manager(self) -> None:
        """kill -9, then a fresh controller manager (its log goes on in the same file)."""
        assert self.cm is not None
        self.cm.kill()
        self.check_traceback()
        self.start_controller_manager()

    def check_traceback(self) -> None:
        if self.cm is not None and "Traceback" in self.cm.output():
            raise AssertionError("controller manager logged a traceback:\n" + self.cm.output()[-5000:])

    def start_node(self, n: int, *extra: str) -> None:
        name = f"node-{n}"
        old = self.nodes.get(name)
        if old is not None:
            old.stop()
        self.nodes[name] = procs.Proc(
            [sys.executable, FAKE_NODE, "--server", self.address, "--name", name, "--ip", self.slot.node_ip(n),
             "--pod-cidr", f"127.{self.slot.index}.{128 + n}.0/24", *extra],
            os.path.join(self.tmp, f"{name}.log"))

    def kill_node(self, n: int) -> None:
        self.nodes[f"node-{n}"].kill()

    def stop(self) -> None:
        for p in self.nodes.values():
            p.stop()
        if self.cm is not None:
            self.cm.stop()

    def check_alive(self) -> None:
        if self.cm is not None and not self.cm.alive():
            raise RuntimeError("controller manager died:\n" + self.cm.output()[-3000:])


async def ready_nodes(address: str) -> int:
    from kubemu.client import Client
    async with Client(address) as client:
        nodes, _ = await client.list("Node")
        return sum(1 for n in nodes for c in n.status.conditions if c.type == "Ready" and c.status == "True")


async def eventually(fn, timeout: float = 15.0, interval: float = 0.05, message: str = "condition"):
    """Await `fn()` (sync or async) until it returns something truthy. What something not there
    yet raises (an API error, a failed assertion, a refused connection) is retried."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = fn()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
        except (errors.ApiError, AssertionError, KeyError, IndexError, OSError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}"
                                 + (f" (last: {last!r})" if last else ""))
        await asyncio.sleep(interval)
