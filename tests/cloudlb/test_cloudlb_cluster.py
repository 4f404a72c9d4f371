"""The cloud LB in a whole cluster (`kubemu up`: API server, controllers, node agents, cloud-lb):
LB -> NodePort -> pod, with real node agents behind it."""
from __future__ import annotations

import os
import re
import socket
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
    c.apply(os.path.join(ROOT, "examples/loadbalancer/hello.yaml"))
    c.wait_deployment("hello-world", timeout=60)
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


def test_udp_through_the_load_balancer(kubemu_cluster):
    c = kubemu_cluster
    c.apply([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "udp"},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "udp"}},
                  "template": {"metadata": {"labels": {"app": "udp"}},
                               "spec": {"containers": [{"name": "netexec",
                                                        "image": "registry.k8s.io/e2e-test-images/agnhost:2.40",
                                                        "args": ["netexec", "--http-port=8080", "--udp-port=8081"]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "udp"},
         "spec": {"type": "LoadBalancer", "selector": {"app": "udp"},
                  "ports": [{"port": 5300, "protocol": "UDP", "targetPort": 8081}]}}])
    pods = c.wait_endpoints("udp", 2)
    ip = lb_ip(c, "udp")
    names = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)

        def ask():
            s.sendto(b"hostname", (ip, 5300))
            return s.recvfrom(1000)
        data, addr = c.wait_for(ask, 15, message="a UDP answer through the LB")
        assert addr == (ip, 5300) and data.decode().startswith("udp-")
        names.add(data.decode())
    # a new client flow per socket: round robin over the nodes spreads them over both pods
    # (once every node's data plane has both endpoints: the slice reaches them a moment after
    # the API shows both ready)
    def both_pods_answer():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(b"hostname", (ip, 5300))
            names.add(s.recvfrom(1000)[0].decode())
        return len(names) == 2
    c.wait_for(both_pods_answer, 15, message=f"UDP flows to reach both pods (so far {names})")
    assert len(pods) == 2 and all(n.startswith("udp-") for n in names), names
    c.kubemu("delete", "svc", "udp")
    c.kubemu("delete", "deployment", "udp")


def _first_log_time(path: str, pattern: str, after: float) -> float | None:
    import datetime
    with open(path, errors="replace") as f:
        for line in f:
            if re.search(pattern, line):
                t = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if t >= after - 0.002:
                    return t
    return None


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
    c.apply(os.path.join(ROOT, "examples/loadbalancer/hello.yaml"))  # 5 hello-app pods over 3 nodes
    c.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "failover"},
             "spec": {"type": "LoadBalancer", "selector": {"app.kubernetes.io/name": "load-balancer-example"},
                      "ports": [{"port": 8080}]}})
    c.wait_deployment("hello-world", timeout=60)
    ip = lb_ip(c, "failover")
    stop = threading.Event()
    results: list = []
    threads = [threading.Thread(target=_hammer, args=(ip, 8080, stop, results)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        procs.wait_for(lambda: len(results) > 50, 15, message="traffic")
        killed_at, killed_wall = time.monotonic(), time.time()
        c.node("kill", "node-2")
        kill_took = time.time() - killed_wall
        procs.wait_for(lambda: sum(1 for r in results if r[0] > killed_at + 2) > 50, 30,
                       message="traffic after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    failures = [r for r in results if r[3] is not None]
    after = [r for r in results if r[0] > killed_at]
    out_at = _first_log_time(os.path.join(c.state_dir, "logs", "cloud-lb.log"),
                             rf"//{re.escape(c.node_ip(2))}:\d+ (failed on the data path|is now unhealthy)",
                             killed_wall)
    print(f"\nkill -9 node-2 under load: {len(results)} requests from 4 clients, {len(failures)} failed; "
          f"{len(after)} after the kill, slowest {max(r[1] for r in after) * 1000:.0f} ms, "
          f"median {sorted(r[1] for r in after)[len(after) // 2] * 1000:.1f} ms; the LB took node-2 out "
          f"{(out_at - killed_wall) * 1000:.0f} ms after `kubemu node kill` started (it took "
          f"{kill_took * 1000:.0f} ms)" if out_at else "(not logged)")
    if failures:
        with open(os.path.join(c.state_dir, "logs", "cloud-lb.log"), errors="replace") as f:
            lb_log = f.read()[-6000:]
        when = [f"{(r[0] - killed_at) * 1000:.0f} ms after the kill: {r[3]}" for r in failures[:5]]
        raise AssertionError(f"{len(failures)} failed requests: {when}\ncloud-lb log:\n{lb_log}")
    c.node("start", "node-2")
    c.kubemu("delete", "svc", "failover")
