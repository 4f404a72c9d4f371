"""`kubemu cloud-lb` as a process against a real API server; NodePorts served by stand-ins.

Each test uses Services of its own names and stops the stand-in nodes it started, so tests
share one API server and one cloud-lb (the `env` fixture) without seeing each other.
"""
from __future__ import annotations

import datetime
import re
import socket
import subprocess
import threading
import time

import pytest

from kubemu import objects
from kubemu.testing import procs
from kubemu.testing.cluster import http_get

from lb_env import KUBELET_PORT


@pytest.fixture(autouse=True)
def own_nodes(request):
    """Stop the stand-in nodes a test started when it ends."""
    if "env" not in request.fixturenames:
        yield
        return
    env = request.getfixturevalue("env")
    before = len(env.procs)
    yield
    for p in env.procs[before:]:
        p.stop()
    del env.procs[before:]


def node_of(body: str) -> str:
    return body.split()[0].removeprefix("node=")


def client_of(body: str) -> str:
    return re.search(r"client=([\d.]+):", body).group(1)


def refused(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((ip, port)) != 0


def spread(ip: str, port: int, n: int = 12, **kw) -> dict[str, int]:
    seen: dict[str, int] = {}
    for _ in range(n):
        name = node_of(http_get(ip, port, "/", **kw))
        seen[name] = seen.get(name, 0) + 1
    return seen


# ------------------------------------------------------------------ provisioning


def test_provisioned_reachable_with_finalizer_status_events_and_cost(env):
    svc = env.create_service("web", [{"name": "http", "port": 8080, "targetPort": 80}])
    np = svc.spec.ports[0].nodePort
    for n in (1, 2, 3):
        env.fake_node(n, http=[np])
    ip = env.wait_ingress("web")
    assert ip.startswith(f"127.{env.slot.index}.200.")
    s = env.get("web")
    assert list(s.metadata.finalizers) == ["service.kubernetes.io/load-balancer-cleanup"]
    assert [(i.ip, i.ipMode) for i in s.status.loadBalancer.ingress] == [(ip, "Proxy")]
    # reachable, spread across the nodes, and the backend sees the load balancer's address
    procs.wait_for(lambda: set(spread(ip, 8080, 9)) == {"node-1", "node-2", "node-3"}, 10,
                   message="traffic on all three nodes")
    assert client_of(http_get(ip, 8080, "/")) == ip
    with subprocess.Popen(["curl", "-s", "-m", "5", f"http://{ip}:8080/"], stdout=subprocess.PIPE) as curl:
        assert curl.communicate(timeout=10)[0].startswith(b"node=")
    reasons = [e.reason for e in env.events("web")]
    for r in ("IPAllocated", "EnsuringLoadBalancer", "EnsuredLoadBalancer"):
        assert r in reasons
    # the running cost: annotations and an Event with the total over every load balancer
    ev = env.wait_event("web", "LoadBalancerCost", "all ")
    assert re.fullmatch(r"Load balancer cost so far \$\d+\.\d{6} \(\d+\.\d{3} h at \$0\.0250/h\); "
                        r"all \d+ load balancers?: \$\d+\.\d{6}", ev.message), ev.message
    ann = procs.wait_for(lambda: (lambda a: a if float(a.get("kubemu.io/cost", "$0")[1:]) > 0 else None)(
        env.get("web").metadata.annotations), 10, message="a cost above zero")
    assert ann["kubemu.io/hourly-cost"] == "$0.0250"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ann["kubemu.io/load-balancer-since"])
    out = subprocess.run(procs.kubemu_command("describe", "svc", "web", "--server", env.server),
                         capture_output=True, text=True, timeout=30).stdout
    assert "LoadBalancer Ingress:" in out and ip in out and "kubemu.io/cost" in out, out
    assert "LoadBalancerCost" in out, out
    # deletion: listener closed, finalizer removed so the Service goes, IP released
    env.delete_and_wait("web")
    assert refused(ip, 8080)
    ev = env.wait_event("web", "DeletedLoadBalancer")
    assert "costing $" in ev.message


def test_requested_ips_and_conflicts(env):
    pool = f"127.{env.slot.index}.200"
    env.create_service("req-spec", [{"port": 80}], loadBalancerIP=f"{pool}.77")
    env.create_service("req-ann", [{"port": 80}], annotations={"kubemu.io/load-balancer-ip": f"{pool}.78"})
    assert env.wait_ingress("req-spec") == f"{pool}.77"
    assert env.wait_ingress("req-ann") == f"{pool}.78"
    env.create_service("req-taken", [{"port": 80}], loadBalancerIP=f"{pool}.77")
    env.create_service("req-outside", [{"port": 80}], loadBalancerIP=f"127.{env.slot.index}.199.1")
    env.wait_event("req-taken", "AllocationFailed",
                   f'Failed to allocate IP for "default/req-taken": requested IP "{pool}.77" is already '
                   f'in use by "default/req-spec"')
    env.wait_event("req-outside", "AllocationFailed", "is not in the pool")
    assert env.ingress("req-taken") is None and env.ingress("req-outside") is None
    # the holder goes: the one asking for its address gets it
    env.delete_and_wait("req-spec")
    assert env.wait_ingress("req-taken") == f"{pool}.77"
    for name in ("req-ann", "req-taken", "req-outside"):
        env.delete_and_wait(name)


def test_port_that_cannot_be_bound_stays_pending_until_it_can(env):
    ip = f"127.{env.slot.index}.200.90"
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((ip, 8081))
    blocker.listen()
    try:
        svc = env.create_service("busy", [{"port": 8081}], loadBalancerIP=ip)
        env.fake_node(1, http=[svc.spec.ports[0].nodePort])
        env.wait_event("busy", "SyncLoadBalancerFailed",
                       f"Error syncing load balancer: listen tcp {ip}:8081: bind: address already in use")
        assert env.ingress("busy") is None
    finally:
        blocker.close()
    assert env.wait_ingress("busy", timeout=10) == ip
    assert node_of(http_get(ip, 8081, "/")) == "node-1"
    env.delete_and_wait("busy")


def test_other_load_balancer_classes_are_left_alone(env):
    env.create_service("other-class", [{"port": 80}], loadBalancerClass="example.com/other")
    env.create_service("our-class", [{"port": 80}], loadBalancerClass="kubemu.io/test")
    env.create_service("no-class", [{"port": 80}])
    env.wait_ingress("our-class")
    env.wait_ingress("no-class")
    other = env.get("other-class")
    assert not other.metadata.finalizers and env.ingress("other-class") is None
    assert env.events("other-class") == []
    for name in ("other-class", "our-class", "no-class"):
        env.delete_and_wait(name)


# ------------------------------------------------------------------ changes


def test_port_change_type_change_and_back(env):
    svc = env.create_service("change", [{"name": "a", "port": 8082}])
    np_a = svc.spec.ports[0].nodePort
    cluster_ip = svc.spec.clusterIP
    ip = env.wait_ingress("change")
    svc = env.patch("change", {"spec": {"ports": [{"name": "b", "port": 8083, "targetPort": 8083}]}})
    np_b = svc.spec.ports[0].nodePort
    env.fake_node(2, http=[np_a, np_b])
    procs.wait_for(lambda: refused(ip, 8082), 10, message="the old port to close")
    procs.wait_for(lambda: node_of(http_get(ip, 8083, "/")) == "node-2", 10, message="the new port")
    # away from LoadBalancer: listener closed, IP released, finalizer and cost annotations gone
    env.patch("change", {"spec": {"type": "NodePort"}})

    def cleaned():
        s = env.get("change")
        return (not s.metadata.finalizers and not s.status.loadBalancer.ingress
                and not any(k.startswith("kubemu.io/") for k in s.metadata.annotations)) and s
    s = procs.wait_for(cleaned, 10, message="cleanup after the type change")
    assert s.spec.clusterIP == cluster_ip and s.spec.ports[0].nodePort == np_b
    procs.wait_for(lambda: refused(ip, 8083), 10, message="the listener to close")
    # NodePort -> LoadBalancer keeps the ClusterIP and the NodePort
    s = env.patch("change", {"spec": {"type": "LoadBalancer"}})
    assert s.spec.clusterIP == cluster_ip and s.spec.ports[0].nodePort == np_b
    ip2 = env.wait_ingress("change")
    assert node_of(http_get(ip2, 8083, "/")) == "node-2"
    env.delete_and_wait("change")


def test_restart_adopts_what_it_provisioned(env):
    ips = {}
    for name in ("keep-a", "keep-b"):
        env.create_service(name, [{"port": 8084}])
        ips[name] = env.wait_ingress(name)
    env.fake_node(3, http=[env.get(n).spec.ports[0].nodePort for n in ips])
    out = env.stop_lb()
    assert "shutting down" in out and env.outputs and "Traceback" not in out
    # while it is away, the data plane is gone but nothing was deprovisioned
    assert all(refused(ip, 8084) for ip in ips.values())
    assert all(env.ingress(n) == ip and env.get(n).metadata.finalizers for n, ip in ips.items())
    env.create_service("newcomer", [{"port": 8084}])
    env.restart_lb()
    new_ip = env.wait_ingress("newcomer")
    assert new_ip not in ips.values()
    for name, ip in ips.items():
        assert env.ingress(name) == ip
        procs.wait_for(lambda ip=ip: node_of(http_get(ip, 8084, "/")) == "node-3", 10,
                       message=f"{ip} to answer again")
        assert not any(e.reason.startswith("Delet") for e in env.events(name))
    adopted = int(re.search(r"adopted (\d+) load balancers", env.lb.output()).group(1))
    assert adopted >= 2
    for name in (*ips, "newcomer"):
        env.delete_and_wait(name)


# ------------------------------------------------------------------ traffic policy, health


def test_local_policy_sends_only_to_nodes_with_endpoints_and_keeps_the_client_ip(env):
    svc = env.create_service("local", [{"port": 8085}], externalTrafficPolicy="Local")
    np, hc = svc.spec.ports[0].nodePort, svc.spec.healthCheckNodePort
    assert hc
    env.fake_node(1, http=[np], healthz={hc: 200})
    env.fake_node(2, http=[np], healthz={hc: 503})
    env.fake_node(3, http=[np])                   # no health-check port at all
    ip = env.wait_ingress("local")
    client = f"127.{env.slot.index}.77.9"
    procs.wait_for(lambda: spread(ip, 8085, 3, source=client) == {"node-1": 3}, 10,
                   message="only node-1 to get traffic")
    seen = spread(ip, 8085, 15, source=client)
    assert seen == {"node-1": 15}
    assert client_of(http_get(ip, 8085, "/", source=client)) == client
    env.delete_and_wait("local")


def test_not_ready_nodes_get_no_traffic(env):
    svc = env.create_service("ready", [{"port": 8086}])
    np = svc.spec.ports[0].nodePort
    for n in (1, 2, 3):
        env.fake_node(n, http=[np])
    ip = env.wait_ingress("ready")
    procs.wait_for(lambda: set(spread(ip, 8086, 9)) == {"node-1", "node-2", "node-3"}, 10,
                   message="all three nodes")
    env.set_node_ready(3, False)
    try:
        procs.wait_for(lambda: "node-3" not in spread(ip, 8086, 6), 10, message="node-3 out")
        assert set(spread(ip, 8086, 12)) == {"node-1", "node-2"}
        ev = env.wait_event("ready", "UpdatedLoadBalancer")
        assert ev.message == "Updated load balancer with new hosts"
    finally:
        env.set_node_ready(3, True)
    procs.wait_for(lambda: "node-3" in spread(ip, 8086, 9), 10, message="node-3 back")
    env.delete_and_wait("ready")


def _hammer(ip: str, port: int, stop: threading.Event, results: list, source: str | None = None) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            body = http_get(ip, port, "/", timeout=5, source=source)
            results.append((t0, time.monotonic() - t0, node_of(body), None))
        except Exception as e:  # every failure counts
            results.append((t0, time.monotonic() - t0, None, repr(e)))


def _log_time(env, pattern: str, after: float) -> float | None:
    """Wall-clock time of the first cloud-lb log line matching `pattern` logged after `after`."""
    for line in env.lb.output().splitlines():
        if re.search(pattern, line):
            t = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t >= after - 0.002:
                return t
    return None


def test_killed_node_zero_failed_requests(env):
    """Continuous requests (some in flight: each answer takes 50 ms) while a node dies by kill -9."""
    svc = env.create_service("failover", [{"port": 8087}])
    np = svc.spec.ports[0].nodePort
    nodes = {n: env.fake_node(n, http=[np], delay=0.05) for n in (1, 2, 3)}
    ip = env.wait_ingress("failover")
    procs.wait_for(lambda: len(spread(ip, 8087, 9)) == 3, 10, message="all three nodes")
    stop = threading.Event()
    results: list = []
    threads = [threading.Thread(target=_hammer, args=(ip, 8087, stop, results)) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        procs.wait_for(lambda: len(results) > 60, 10, message="traffic")
        killed_at, killed_wall = time.monotonic(), time.time()
        nodes[2].kill()
        procs.wait_for(lambda: sum(1 for r in results if r[0] > killed_at + 1.5) > 60, 15,
                       message="traffic after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    failures = [r for r in results if r[3] is not None]
    assert failures == [], failures[:5]
    after = [r for r in results if r[0] > killed_at]
    assert {r[2] for r in after if r[0] > killed_at + 1.0} == {"node-1", "node-3"}
    slow = max(r[1] for r in after)
    # With traffic, the first connection that fails takes the node out (passive check).
    passive = _log_time(env, rf"tcp://{env.slot.node_ip(2)}:{np} failed on the data path", killed_wall)
    assert passive is not None
    # Without traffic, the active check takes it out within one interval (0.5 s here).
    killed3 = time.time()
    nodes[3].kill()
    active = procs.wait_for(lambda: _log_time(env, rf"tcp://{env.slot.node_ip(3)}:{np} is now unhealthy",
                                              killed3), 5, message="the health check to notice")
    print(f"\nfailover under load: {len(results)} requests from 6 clients, 0 failed, {len(after)} after "
          f"the kill; slowest after the kill {slow * 1000:.0f} ms (answers take 50 ms); dead node out "
          f"{(passive - killed_wall) * 1000:.0f} ms after the kill (first failed connect); without "
          f"traffic, out {(active - killed3) * 1000:.0f} ms after the kill (health interval 500 ms)")
    assert active - killed3 < 2 * 0.5
    assert node_of(http_get(ip, 8087, "/")) == "node-1"
    env.delete_and_wait("failover")


# ------------------------------------------------------------------ UDP, direct endpoints


def test_udp_load_balancer(env):
    svc = env.create_service("udp", [{"port": 5353, "protocol": "UDP"}])
    np = svc.spec.ports[0].nodePort
    # UDP targets are checked through the node agent's /healthz on its kubelet port: only
    # node-1 serves it here
    env.fake_node(1, udp=[np], healthz={KUBELET_PORT: 200})
    ip = env.wait_ingress("udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)

        def ask():
            s.sendto(b"q", (ip, 5353))
            return s.recvfrom(1000)
        data, addr = procs.wait_for(ask, 10, message="a UDP answer")
        for _ in range(5):
            assert data.decode().startswith(f"node=node-1 client={ip}:") and addr == (ip, 5353)
            data, addr = ask()
    env.delete_and_wait("udp")


def test_without_node_ports_traffic_goes_straight_to_endpoints(env):
    svc = env.create_service("direct", [{"name": "http", "port": 8088, "targetPort": 8080}],
                             allocateLoadBalancerNodePorts=False)
    assert not svc.spec.ports[0].nodePort
    pod_a, pod_b = f"127.{env.slot.index}.130.5", f"127.{env.slot.index}.131.5"
    a = env.stand_in("pod-a", pod_a, http=[8080])
    b = env.stand_in("pod-b", pod_b, http=[8080])
    sl = objects.from_dict({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "direct-x1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "direct"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [pod_a], "conditions": {"ready": True}},
                      {"addresses": [pod_b], "conditions": {"ready": False}}]})
    env.call(lambda c: c.create(sl))
    ip = env.wait_ingress("direct")
    procs.wait_for(lambda: spread(ip, 8088, 4) == {"pod-a": 4}, 10, message="pod-a only")
    assert client_of(http_get(ip, 8088, "/")) == ip
    cur = env.get("direct-x1", "EndpointSlice")
    cur.endpoints[0].conditions.ready = False
    cur.endpoints[1].conditions.ready = True
    env.call(lambda c: c.update(cur))
    procs.wait_for(lambda: spread(ip, 8088, 4) == {"pod-b": 4}, 10, message="pod-b only")
    a.stop()
    b.stop()
    env.call(lambda c: c.delete("EndpointSlice", "direct-x1", "default"))
    env.delete_and_wait("direct")



# ------------------------------------------------------------------ pool exhaustion


def test_exhausted_pool_leaves_a_service_pending_until_an_ip_is_freed(small_pool_env):
    env = small_pool_env
    a = env.create_service("first", [{"port": 80}])
    env.create_service("second", [{"port": 80}])
    ip_a, ip_b = env.wait_ingress("first"), env.wait_ingress("second")
    assert {ip_a, ip_b} == {f"127.{env.slot.index}.201.1", f"127.{env.slot.index}.201.2"}
    env.create_service("third", [{"port": 80}])
    ev = env.wait_event("third", "AllocationFailed")
    assert ev.type == "Warning" and ev.message == (
        f'Failed to allocate IP for "default/third": no available IPs in pool '
        f'127.{env.slot.index}.201.0/30 (2 of 2 in use)')
    out = subprocess.run(procs.kubemu_command("get", "svc", "third", "--server", env.server),
                         capture_output=True, text=True, timeout=30).stdout
    assert "<pending>" in out, out
    assert env.ingress("third") is None and env.get("third").metadata.finalizers
    env.delete_and_wait("first")
    assert env.wait_ingress("third") == ip_a
    assert env.ingress("second") == ip_b
    assert a.spec.ports[0].nodePort  # the Services are real LoadBalancers with NodePorts


# ------------------------------------------------------------------ static stability


def test_keeps_forwarding_and_failing_over_while_the_api_server_is_down(tmp_path):
    """The data plane runs from its last state without the API server, and re-syncs after."""
    from lb_env import LbEnv

    slot = procs.claim_slot()
    state = str(tmp_path / "state")
    port = procs.free_port()
    env = None
    try:
        with procs.apiserver(state, port=port, service_cidr=slot.service_cidr) as (api, server):
            env = LbEnv(str(tmp_path), slot, server, slot.lb_pool)
            env.start_lb(health_interval=0.3)
            for n in (1, 2):
                env.add_node(n)
            svc = env.create_service("stable", [{"port": 8089}])
            nodes = {n: env.fake_node(n, http=[svc.spec.ports[0].nodePort]) for n in (1, 2)}
            ip = env.wait_ingress("stable")
            procs.wait_for(lambda: set(spread(ip, 8089, 6)) == {"node-1", "node-2"}, 10, message="both nodes")
            api.kill()
        # Both still get traffic. Waited for, not asserted once: with thresholds of 1, one health
        # probe that times out on a loaded machine takes a node out for an interval.
        procs.wait_for(lambda: set(spread(ip, 8089, 6)) == {"node-1", "node-2"}, 10,
                       message="both nodes without the API server")
        nodes[1].kill()                      # and failover still works without the API server
        assert spread(ip, 8089, 10) == {"node-2": 10}
        assert env.lb.alive()
        with procs.apiserver(state, port=port, service_cidr=slot.service_cidr):
            env.delete("stable")             # re-synced: the deletion is carried out
            procs.wait_for(lambda: not env.exists("stable"), 20, message="the deletion after the outage")
            procs.wait_for(lambda: refused(ip, 8089), 10, message="the listener to close")
            env.stop()
        assert "Traceback" not in env.outputs[-1], env.outputs[-1][-3000:]
    finally:
        if env is not None:
            env.stop()
        slot.release()
