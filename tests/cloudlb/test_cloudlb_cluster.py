"""The cloud LB in a whole cluster (`kubemu up`: API server, controllers, node agents, cloud-lb):
LB -> NodePort -> pod, with real node agents behind it."""
from __future__ import annotations

import os
import re
import threading
import time

import pytest

from kubemu.testing import procs
from kubemu.testing.cluster import http_get

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.kubemu(nodes=3)


def lb_ip(cluster, name: str) -> str:
    return cluster.wait_for(lambda: (lambda s: s.status.loadBalancer.ingress[0].ip
                                     if s.status.loadBalancer.ingress else None)(
        cluster.get("Service", name)), 30, message=f"an external IP for {name}")


def hostname(body: str) -> str:
    return re.search(r"Hostname: (\S+)", body).group(1)


def test_exposing_an_external_ip_address(kubemu_cluster):
    """Kubernetes' tutorial: 5 hello-app pods, `expose --type=LoadBalancer`, curl the external IP."""
    c = kubemu_cluster
    c.apply(os.path.join(ROOT, "examples/loadbalancer/hello.yaml"))
    c.wait_deployment("hello-world", timeout=60)
    c.kubemu("expose", "deployment", "hello-world", "--type=LoadBalancer", "--name=my-service", "--port=8080")
    ip = lb_ip(c, "my-service")
    assert ip.startswith(f"127.{c.slot.index}.200.")
    table = c.kubemu("get", "svc", "my-service").stdout
    assert ip in table and "8080:3" in table, table
    seen = set()
    for _ in range(40):
        body = http_get(ip, 8080, "/")
        assert "Hello, world!" in body and "Version: 2.0.0" in body
        seen.add(hostname(body))
        if len(seen) == 5:
            break
    assert len(seen) == 5, seen
    status = c.status()
    lb = next(x for x in status["loadBalancers"] if x["service"] == "default/my-service")
    assert lb["ingress"] == [ip] and lb["hourlyCost"] == "$0.0250" and lb["cost"].startswith("$")


def test_node_port_to_load_balancer_keeps_cluster_ip_and_node_port(kubemu_cluster):
    c = kubemu_cluster
    c.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "switch"},
             "spec": {"type": "NodePort", "selector": {"app.kubernetes.io/name": "load-balancer-example"},
                      "ports": [{"port": 8080}]}})
    before = c.get("Service", "switch")
    c.kubemu("patch", "svc", "switch", "-p", '{"spec":{"type":"LoadBalancer"}}')
    ip = lb_ip(c, "switch")
    after = c.get("Service", "switch")
    assert after.spec.clusterIP == before.spec.clusterIP
    assert after.spec.ports[0].nodePort == before.spec.ports[0].nodePort
    assert "Hello, world!" in c.wait_for(lambda: http_get(ip, 8080, "/"), 10, message="traffic")
    c.kubemu("delete", "svc", "switch")


def test_local_policy_only_nodes_with_endpoints_and_the_client_ip(kubemu_cluster):
    c = kubemu_cluster
    c.apply([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "source-ip"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "source-ip"}},
                  "template": {"metadata": {"labels": {"app": "source-ip"}},
                               "spec": {"containers": [{"name": "netexec",
                                                        "image": "registry.k8s.io/e2e-test-images/agnhost:2.40",
                                                        "args": ["netexec", "--http-port=8080"]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "source-ip"},
         "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": {"app": "source-ip"},
                  "ports": [{"port": 8081, "targetPort": 8080}]}}])
    c.wait_endpoints("source-ip", 1)
    ip = lb_ip(c, "source-ip")
    client = f"127.{c.slot.index}.77.9"
    # every request lands on the one node with an endpoint, and the pod sees the client's address
    answers = [c.wait_for(lambda: http_get(ip, 8081, "/clientip", source=client), 10, message="/clientip")]
    answers += [http_get(ip, 8081, "/clientip", source=client) for _ in range(15)]
    assert {a.strip().rsplit(":", 1)[0] for a in answers} == {client}
    c.kubemu("delete", "svc", "source-ip")
    c.kubemu("delete", "deployment", "source-ip")


def _hammer(ip: str, port: int, stop: threading.Event, results: list) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            body = http_get(ip, port, "/", timeout=5)
            results.append((t0, time.monotonic() - t0, hostname(body), None))
        except Exception as e:  # every failure counts
            results.append((t0, time.monotonic() - t0, None, repr(e)))


def test_kill_9_of_a_node_agent_fails_no_request(kubemu_cluster):
    c = kubemu_cluster
    ip = lb_ip(c, "my-service")  # from the first test: 5 hello-app pods over 3 nodes
    stop = threading.Event()
    results: list = []
    threads = [threading.Thread(target=_hammer, args=(ip, 8080, stop, results)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        procs.wait_for(lambda: len(results) > 50, 15, message="traffic")
        killed_at = time.monotonic()
        c.node("kill", "node-2")
        procs.wait_for(lambda: sum(1 for r in results if r[0] > killed_at + 2) > 50, 30,
                       message="traffic after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    failures = [r for r in results if r[3] is not None]
    after = [r for r in results if r[0] > killed_at]
    print(f"\nkill -9 node-2 under load: {len(results)} requests from 4 clients, {len(failures)} failed; "
          f"{len(after)} after the kill, slowest {max(r[1] for r in after) * 1000:.0f} ms, "
          f"median {sorted(r[1] for r in after)[len(after) // 2] * 1000:.1f} ms")
    assert failures == [], failures[:5]
    c.node("start", "node-2")
