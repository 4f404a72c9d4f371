"""End to end with the real node agents: API server, controller manager and three
`kubemu nodeagent` processes (kubelet + proxy). Traffic to the ClusterIP reaches the pods the
controllers placed, a killed node's endpoints are fenced and its pods replaced elsewhere.
"""
from __future__ import annotations

import os
import time
import urllib.request

import pytest

from kubemu import objects
from kubemu.client import Client
from kubemu.testing import procs

from kubemu.timefmt import parse_time

from ctrl_helpers import deployment_manifest, eventually, ready_nodes, run

pytestmark = pytest.mark.timeout(120)


class AgentCluster:
    def __init__(self, tmp, slot, address):
        self.tmp, self.slot, self.address = tmp, slot, address
        self.agents: dict[int, procs.Proc] = {}
        self.cm: procs.Proc | None = None

    def start_agent(self, n: int) -> None:
        self.agents[n] = procs.Proc(procs.kubemu_command(
            "nodeagent", "--server", self.address, "--name", f"node-{n}", "--node-ip", self.slot.node_ip(n),
            "--pod-cidr", f"127.{self.slot.index}.{128 + n}.0/24", "--kubelet-port", str(procs.free_port()),
            "--state-dir", os.path.join(self.tmp, f"node-{n}")), os.path.join(self.tmp, f"agent-{n}.log"))

    def stop(self) -> None:
        for p in self.agents.values():
            p.stop()
        if self.cm is not None:
            self.cm.stop()


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("agents"))
    slot = procs.claim_slot()
    try:
        with procs.apiserver(os.path.join(tmp, "state"), service_cidr=slot.service_cidr) as (_, address):
            c = AgentCluster(tmp, slot, address)
            try:
                c.cm = procs.Proc(procs.kubemu_command(
                    "controller-manager", "--server", address, "--service-cidr", slot.service_cidr,
                    "--node-monitor-grace-period", "3", "--pod-eviction-timeout", "6"),
                    os.path.join(tmp, "controller-manager.log"))
                for n in (1, 2, 3):
                    c.start_agent(n)
                procs.wait_for(lambda: run(ready_nodes(address)) == 3, 30, 0.1, message="3 Ready nodes")
                yield c
                assert c.cm.alive() and "Traceback" not in c.cm.output(), c.cm.output()[-5000:]
            finally:
                c.stop()
    finally:
        slot.release()


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.read().decode()


async def ready_endpoints(client, ns):
    slices, _ = await client.list("EndpointSlice", ns)
    return {e.addresses[0]: e for s in slices for e in s.endpoints if e.conditions.ready}


def test_traffic_reaches_controller_placed_pods_and_survives_a_dead_node(agents):
    async def body():
        async with Client(agents.address) as client:
            await client.create(objects.from_dict({"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": "real"}}))
            await client.create(objects.from_dict(deployment_manifest("web", "real", 3, labels={"app": "web"})))
            await client.create(objects.from_dict({
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "real"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}}))
            eps = await eventually(lambda: _n_ready(client, "real", 3), 30, message="3 ready endpoints")
            assert sorted(e.nodeName for e in eps.values()) == ["node-1", "node-2", "node-3"]
            svc = await client.get("Service", "web", "real")
            url = f"http://{svc.spec.clusterIP}:8080/"

            def answered_by():  # refused until the proxies opened the new Service's VIP
                body = http_get(url)
                return {name for name in (e.targetRef.name for e in eps.values()) if name in body}
            seen: set[str] = set()
            await eventually(lambda: seen.update(answered_by()) or len(seen) == 3, 15, message="all pods answer")

            # kill -9 node-3's agent: its pod dies with it; the controllers fence and replace it
            on3 = {ip for ip, e in eps.items() if e.nodeName == "node-3"}
            agents.agents[3].kill()
            killed = time.time()
            last_renew = parse_time((await client.get("Lease", "node-3", "kube-node-lease")).spec.renewTime)
            assert killed - last_renew < 1.5
            await eventually(lambda: _none_of(client, "real", on3), 10, 0.02, message="node-3 endpoint not ready")
            # ... because the grace period (3 s) ran out, not because the pod went at the
            # eviction timeout (6 s later): the pod is still there, its node's Ready Unknown.
            # (Causes, not a stopwatch: a loaded machine stretches both delays alike.)
            pods, _ = await client.list("Pod", "real", field_selector="spec.nodeName=node-3")
            assert {p.status.podIP for p in pods} == on3
            ready = [c for c in (await client.get("Node", "node-3")).status.conditions if c.type == "Ready"]
            assert ready[0].status == "Unknown"
            http_get(url)  # the Service keeps answering from the live nodes
            eps = await eventually(lambda: _n_ready(client, "real", 3), 6 + 8, message="replacement ready")
            assert all(e.nodeName in ("node-1", "node-2") for e in eps.values())
            assert time.time() - last_renew <= 3 + 6 + 5
            node = await client.get("Node", "node-3")
            assert any(t.key == "node.kubernetes.io/unreachable" for t in node.spec.taints)

            agents.start_agent(3)

            async def back():
                n = await client.get("Node", "node-3")
                return any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) and \
                    not any(t.key.startswith("node.kubernetes.io/") for t in n.spec.taints)
            await eventually(back, 30, message="node-3 Ready and untainted again")
    run(body())


async def _n_ready(client, ns, n):
    eps = await ready_endpoints(client, ns)
    return eps if len(eps) == n else None


async def _none_of(client, ns, ips):
    return not (ips & set(await ready_endpoints(client, ns)))
