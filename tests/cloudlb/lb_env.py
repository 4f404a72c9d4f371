"""Fixtures for the cloud-lb tests: a real API server and a real `kubemu cloud-lb` process.

Nodes are Node objects the test writes, and their data plane is `lb_fake_node.py` processes
listening on the node IPs: what the load balancer talks to (NodePorts, health-check node ports)
without the rest of a node agent, so these tests do not depend on it. The tests against whole
clusters (`kubemu_cluster`) are in test_cloudlb_cluster.py.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from kubemu import objects
from kubemu.client import Client
from kubemu.testing import procs

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_NODE = os.path.join(HERE, "lb_fake_node.py")
KUBELET_PORT = 10250  # what the Nodes advertise; a stand-in serves /healthz there if asked


class LbEnv:
    def __init__(self, tmp: str, slot: procs.Slot, server: str, pool: str):
        self.tmp = tmp
        self.slot = slot
        self.server = server
        self.pool = pool
        self.lb: procs.Proc | None = None
        self.lb_args: tuple[str, ...] = ()
        self.procs: list[procs.Proc] = []
        self.outputs: list[str] = []
        self.started = 0

    # ------------------------------------------------------------ processes

    def start_lb(self, *extra: str, health_interval: float = 0.5) -> procs.Proc:
        self.lb_args = ("--health-interval", str(health_interval), *extra)
        self.lb = procs.Proc(procs.kubemu_command("cloud-lb", "--server", self.server, "--pool", self.pool,
                                                  *self.lb_args),
                             os.path.join(self.tmp, f"cloud-lb-{len(self.outputs)}.log"))
        _wait_output(self.lb, "synced:", 20)
        return self.lb

    def stop_lb(self) -> str:
        assert self.lb is not None
        self.lb.stop()
        out = self.lb.output()
        self.outputs.append(out)
        self.lb = None
        return out

    def restart_lb(self) -> procs.Proc:
        if self.lb is not None:
            self.stop_lb()
        return self.start_lb(*self.lb_args[2:], health_interval=float(self.lb_args[1]))

    def fake_node(self, n: int, **kw) -> procs.Proc:
        """Node n's data plane: NodePort listeners and health-check ports on its node IP."""
        return self.stand_in(f"node-{n}", self.slot.node_ip(n), **kw)

    def stand_in(self, name: str, ip: str, *, http: list[int] = (), udp: list[int] = (),
                 healthz: dict[int, int] | None = None, delay: float = 0.0) -> procs.Proc:
        args = [sys.executable, FAKE_NODE, "--name", name, "--ip", ip, "--delay", str(delay)]
        for p in http:
            args += ["--http", str(p)]
        for p in udp:
            args += ["--udp", str(p)]
        for p, code in (healthz or {}).items():
            args += ["--healthz", f"{p}={code}"]
        self.started += 1
        proc = procs.Proc(args, os.path.join(self.tmp, f"{name}-{self.started}.log"))
        self.procs.append(proc)
        _wait_output(proc, "ready", 10)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            p.stop()
        if self.lb is not None:
            self.stop_lb()

    # ------------------------------------------------------------ API

    def call(self, fn, timeout: float = 20.0):
        async def go():
            async with Client(self.server) as c:
                return await fn(c)
        return asyncio.run(asyncio.wait_for(go(), timeout))

    def add_node(self, n: int, *, ready: bool = True, labels: dict[str, str] | None = None) -> None:
        node = objects.new("Node", f"node-{n}")
        node.metadata.labels.update(labels or {})
        node.status.addresses.add(type="InternalIP", address=self.slot.node_ip(n))
        node.status.conditions.add(type="Ready", status="True" if ready else "False")
        node.status.daemonEndpoints.kubeletEndpoint.Port = KUBELET_PORT
        self.call(lambda c: c.create(node))

    def set_node_ready(self, n: int, ready: bool) -> None:
        async def go(c):
            node = await c.get("Node", f"node-{n}")
            for cond in node.status.conditions:
                if cond.type == "Ready":
                    cond.status = "True" if ready else "False"
            await c.update_status(node)
        self.call(go)

    def create_service(self, name: str, ports: list[dict], **spec) -> object:
        manifest = {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": "default",
                                 "annotations": spec.pop("annotations", {})},
                    "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": ports, **spec}}
        svc = objects.from_dict(manifest)
        return self.call(lambda c: c.create(svc))

    def get(self, name: str, kind: str = "Service"):
        return self.call(lambda c: c.get(kind, name, "default"))

    def exists(self, name: str) -> bool:
        from kubemu.errors import NotFound
        try:
            self.get(name)
            return True
        except NotFound:
            return False

    def delete(self, name: str) -> None:
        self.call(lambda c: c.delete("Service", name, "default"))

    def patch(self, name: str, patch: dict, subresource: str = ""):
        return self.call(lambda c: c.patch("Service", name, patch, "default", subresource=subresource))

    def ingress(self, name: str) -> str | None:
        svc = self.get(name)
        ips = [i.ip for i in svc.status.loadBalancer.ingress]
        return ips[0] if ips else None

    def wait_ingress(self, name: str, timeout: float = 15.0) -> str:
        return procs.wait_for(lambda: self.ingress(name), timeout, message=f"an ingress IP for {name}")

    def events(self, name: str) -> list:
        items, _ = self.call(lambda c: c.list("Event", "default"))
        return [e for e in items if e.involvedObject.name == name]

    def wait_event(self, name: str, reason: str, contains: str = "", timeout: float = 15.0):
        def found():
            return next((e for e in self.events(name)
                         if e.reason == reason and contains in e.message), None)
        return procs.wait_for(found, timeout, message=f"event {reason} {contains!r} on {name}")

    def delete_and_wait(self, name: str, timeout: float = 15.0) -> None:
        self.delete(name)
        procs.wait_for(lambda: not self.exists(name), timeout, message=f"{name} to be deleted")


def _wait_output(proc: procs.Proc, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.output():
        if not proc.alive():
            raise RuntimeError(f"process exited: {proc.args}\n{proc.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proc.args} did not print {text!r} within {timeout}s")
        time.sleep(0.02)


def lb_env(tmp_path_factory, pool_of, lb_args=(), health_interval: float = 0.5):
    tmp = str(tmp_path_factory.mktemp("cloudlb"))
    slot = procs.claim_slot()
    env = None
    try:
        with procs.apiserver(os.path.join(tmp, "state"), "--bookmark-interval", "0.5",
                             service_cidr=slot.service_cidr) as (_, address):
            env = LbEnv(tmp, slot, address, pool_of(slot))
            try:
                env.start_lb(*lb_args, health_interval=health_interval)
                yield env
            finally:
                env.stop()
            for out in env.outputs:
                assert "Traceback" not in out, out[-5000:]
    finally:
        slot.release()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """API server + cloud-lb (class kubemu.io/test, cost every 0.5 s) on the slot's pool, with
    Nodes node-1..3 registered Ready."""
    gen = lb_env(tmp_path_factory, lambda s: s.lb_pool, ("--cost-interval", "0.5", "--class", "kubemu.io/test"))
    e = next(gen)
    for n in (1, 2, 3):
        e.add_node(n)
    try:
        yield e
    finally:
        next(gen, None)


@pytest.fixture
def small_pool_env(tmp_path_factory):
    """API server + cloud-lb whose pool has two addresses (a /30)."""
    yield from lb_env(tmp_path_factory, lambda s: f"127.{s.index}.201.0/30")


def now() -> float:
    return time.monotonic()
