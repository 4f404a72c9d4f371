"""Fixtures for the node agent's tests: a real API server and real `kubemu nodeagent` processes.

Fixture and helper names of the kubelet tests start with `kubelet_`. Every cluster lives on a
claimed address slot (127.S.0.0/16): node-n has the IP slot.node_ip(n) and the pod CIDR
127.S.(128+n).0/24, so suites run side by side; every process is stopped even when a test fails.
"""
from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any, Callable

import pytest

from kubemu import errors, objects
from kubemu.client import Client
from kubemu.testing import procs


class KubeletEnv:
    """An API server, node agents started on demand, and a client usable from sync tests."""

    def __init__(self, tmp: str, slot: procs.Slot, api_proc: procs.Proc, server: str):
        self.tmp = tmp
        self.slot = slot
        self.api_proc = api_proc
        self.server = server
        self.agents: dict[int, procs.Proc] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.client: Client = self.call_raw(self._make_client())

    async def _make_client(self) -> Client:
        return Client(self.server)

    # ------------------------------------------------------------ processes

    def node_ip(self, n: int) -> str:
        return self.slot.node_ip(n)

    def pod_cidr(self, n: int) -> str:
        return f"127.{self.slot.index}.{128 + n}.0/24"

    def agent_args(self, n: int, *extra: str) -> list[str]:
        return procs.kubemu_command(
            "nodeagent", "--server", self.server, "--name", f"node-{n}", "--node-ip", self.node_ip(n),
            "--pod-cidr", self.pod_cidr(n), "--kubelet-port", "10250",
            "--state-dir", os.path.join(self.tmp, f"node-{n}"), "--restart-backoff", "1",
            "--max-restart-backoff", "4", "--log-level", "debug", *extra)

    def start_agent(self, n: int = 1, *extra: str, wait: bool = True) -> procs.Proc:
        proc = procs.Proc(self.agent_args(n, *extra), os.path.join(self.tmp, f"agent-{n}.log"))
        self.agents[n] = proc
        if wait:
            procs.wait_port(self.node_ip(n), 10250, 20, proc)
            procs.wait_for(lambda: self.healthz(n), 20, message=f"node-{n} healthz")
        return proc

    def healthz(self, n: int) -> bool:
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://{self.node_ip(n)}:10250/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def kill_agent(self, n: int) -> None:
        """kill -9 of the agent process alone (not its process group): its children must die anyway."""
        proc = self.agents[n]
        os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait(10)

    def restart_apiserver(self, down: Callable[[], None] | None = None) -> None:
        """Stop the API server, run `down()` while it is away, start it again on the same port
        and state (the store is durable)."""
        args, log_path = self.api_proc.args, self.api_proc.log_path
        self.api_proc.stop()
        try:
            if down is not None:
                down()
        finally:
            self.api_proc = procs.Proc(args, log_path)
            host, port = self.server.rsplit(":", 1)
            procs.wait_port(host, int(port), 15, self.api_proc)

    def stop(self) -> None:
        for proc in self.agents.values():
            proc.stop(10)
        self.api_proc.stop()
        try:
            self.call_raw(self.client.close(), timeout=5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def agent_log(self, n: int) -> str:
        return self.agents[n].output()

    # ------------------------------------------------------------ API

    def call_raw(self, coro, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[[Client], Any], timeout: float = 30.0) -> Any:
        return self.call_raw(fn(self.client), timeout)

    def create(self, manifest: dict) -> Any:
        return self.call(lambda c: c.create(objects.from_dict(manifest)))

    def get(self, kind: str, name: str, namespace: str = "default") -> Any:
        return self.call(lambda c: c.get(kind, name, namespace))

    def get_or_none(self, kind: str, name: str, namespace: str = "default") -> Any:
        try:
            return self.get(kind, name, namespace)
        except errors.NotFound:
            return None

    def delete(self, kind: str, name: str, namespace: str = "default", grace: int | None = None) -> Any:
        return self.call(lambda c: c.delete(kind, name, namespace, grace_period_seconds=grace))

    def wait_pod(self, name: str, predicate: Callable[[Any], Any], timeout: float = 20.0,
                 message: str = "", namespace: str = "default") -> Any:
        def check():
            pod = self.get(name=name, kind="Pod", namespace=namespace)
            return pod if predicate(pod) else None
        return procs.wait_for(check, timeout, interval=0.05, message=message or f"pod {name}")

    def wait_running(self, name: str, timeout: float = 20.0, namespace: str = "default") -> Any:
        return self.wait_pod(name, lambda p: p.status.phase == "Running" and p.status.podIP, timeout,
                             f"pod {name} Running with an IP", namespace)

    def wait_ready(self, name: str, timeout: float = 20.0, namespace: str = "default") -> Any:
        return self.wait_pod(name, kubelet_pod_ready, timeout, f"pod {name} Ready", namespace)

    def wait_gone(self, name: str, timeout: float = 20.0, namespace: str = "default") -> None:
        procs.wait_for(lambda: self.get_or_none("Pod", name, namespace) is None, timeout,
                       message=f"pod {name} deleted")


def kubelet_pod_ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def make_pod(name: str, node: int = 1, *, image: str = "nginx", spec: dict | None = None,
             **container: Any) -> dict:
    """A pod manifest bound to node-<node> (no scheduler needed)."""
    c = {"name": container.pop("container_name", "main"), "image": image, **container}
    pod_spec = {"nodeName": f"node-{node}", "containers": [c], **(spec or {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec}


@pytest.fixture
def kubelet_pod():
    """The pod manifest builder: kubelet_pod(name, node, image=..., command=[...], ...)."""
    return make_pod


@pytest.fixture
def kubelet_ready():
    return kubelet_pod_ready


@pytest.fixture(scope="module")
def kubelet_env(tmp_path_factory):
    """Per test module: an API server on a claimed slot; tests start the agents they need."""
    tmp = str(tmp_path_factory.mktemp("kubelet"))
    slot = procs.claim_slot()
    env = None
    try:
        with procs.apiserver(os.path.join(tmp, "api"), "--bookmark-interval", "0.5",
                             service_cidr=slot.service_cidr) as (proc, address):
            env = KubeletEnv(tmp, slot, proc, address)
            try:
                yield env
            finally:
                env.stop()
    finally:
        slot.release()


@pytest.fixture(scope="module")
def kubelet_node(kubelet_env):
    """kubelet_env with node-1's agent running."""
    kubelet_env.start_agent(1)
    return kubelet_env
