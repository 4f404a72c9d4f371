"""The pure parts of the cloud LB: pool, planner, cost, target order, health state. No sockets."""
from __future__ import annotations

import asyncio

import pytest

from kubemu import objects
from kubemu.cloudlb import cost, planner
from kubemu.cloudlb.forward import Backends
from kubemu.cloudlb.health import HealthChecker
from kubemu.cloudlb.planner import Probe, Target
from kubemu.cloudlb.pool import Exhausted, Pool, Unavailable
from kubemu.timefmt import parse_time


# ------------------------------------------------------------------ pool


def test_pool_hands_out_lowest_free_and_skips_network_and_broadcast():
    p = Pool("127.200.0.0/29")
    assert p.size == 6
    assert [p.allocate(f"ns/s{i}") for i in range(6)] == [f"127.200.0.{i}" for i in range(1, 7)]
    with pytest.raises(Exhausted, match=r"no available IPs in pool 127.200.0.0/29 \(6 of 6 in use\)"):
        p.allocate("ns/s6")
    assert p.release("ns/s2") == "127.200.0.3"
    assert p.allocate("ns/s6") == "127.200.0.3"


def test_pool_allocation_is_idempotent_per_key():
    p = Pool("127.200.0.0/24")
    assert p.allocate("a/x") == p.allocate("a/x") == "127.200.0.1"
    assert len(p) == 1 and p.holder("127.200.0.1") == "a/x" and p.ip_of("a/x") == "127.200.0.1"
    assert p.release("a/x") == "127.200.0.1" and p.release("a/x") is None


def test_pool_small_prefixes_use_every_address():
    assert Pool("127.200.0.8/31").size == 2
    p = Pool("127.200.0.9/32")
    assert p.allocate("a/x") == "127.200.0.9"


def test_pool_requested_ip():
    p = Pool("127.200.0.0/24")
    assert p.allocate("a/x", "127.200.0.50") == "127.200.0.50"
    with pytest.raises(Unavailable, match='requested IP "127.200.0.50" is already in use by "a/x"'):
        p.allocate("a/y", "127.200.0.50")
    with pytest.raises(Unavailable, match='requested IP "127.201.0.5" is not in the pool 127.200.0.0/24'):
        p.allocate("a/y", "127.201.0.5")
    with pytest.raises(Unavailable, match="not a valid IPv4 address"):
        p.allocate("a/y", "nope")
    # asking for another address gives the old one up
    assert p.allocate("a/x", "127.200.0.60") == "127.200.0.60"
    assert p.holder("127.200.0.50") is None
    # a failed request keeps what the key held
    with pytest.raises(Unavailable):
        p.allocate("a/x", "127.201.0.1")
    assert p.ip_of("a/x") == "127.200.0.60"
    # dynamic allocation does not hand out a requested address
    assert p.allocate("a/z") == "127.200.0.1"


def test_pool_adopt():
    p = Pool("127.200.0.0/24")
    assert p.adopt("a/x", "127.200.0.7")
    assert p.adopt("a/x", "127.200.0.7")           # idempotent
    assert not p.adopt("a/y", "127.200.0.7")       # someone else's
    assert not p.adopt("a/y", "127.201.0.7")       # outside the pool
    assert not p.adopt("a/y", "127.200.0.0")       # the network address is never handed out
    assert p.adopt("a/x", "127.200.0.8") and p.holder("127.200.0.7") is None
    assert p.allocate("a/y") == "127.200.0.1"


# ------------------------------------------------------------------ planner


def _svc(ports, *, etp="Cluster", hc=0, cls=None, name="web", **spec):
    d = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
         "spec": {"type": "LoadBalancer", "ports": ports, "externalTrafficPolicy": etp, **spec}}
    if hc:
        d["spec"]["healthCheckNodePort"] = hc
    if cls:
        d["spec"]["loadBalancerClass"] = cls
    return objects.from_dict(d)


def _node(name, ip, *, ready=True, labels=None, kubelet=10250):
    n = objects.new("Node", name)
    n.metadata.labels.update(labels or {})
    if ip:
        n.status.addresses.add(type="InternalIP", address=ip)
    n.status.addresses.add(type="Hostname", address=name)
    n.status.conditions.add(type="Ready", status="True" if ready else "False")
    if kubelet:
        n.status.daemonEndpoints.kubeletEndpoint.Port = kubelet
    return n


NODES = [_node("node-2", "127.10.0.2"), _node("node-1", "127.10.0.1"),
         _node("node-3", "127.10.0.3", ready=False),
         _node("node-4", "127.10.0.4", labels={planner.EXCLUDE_LABEL: ""}),
         _node("node-5", "")]


def test_ours_and_wanted():
    assert planner.is_ours(_svc([]), None)
    assert not planner.is_ours(_svc([], cls="example.com/other"), None)
    assert planner.is_ours(_svc([], cls="kubemu.io/lb"), "kubemu.io/lb")
    assert not planner.is_ours(_svc([], cls="example.com/other"), "kubemu.io/lb")
    svc = _svc([])
    assert planner.wants_load_balancer(svc, None)
    svc.metadata.deletionTimestamp = "2024-01-01T00:00:00Z"
    assert not planner.wants_load_balancer(svc, None)
    svc = _svc([])
    svc.spec.type = "NodePort"
    assert not planner.wants_load_balancer(svc, None)


def test_requested_ip_from_spec_or_annotation():
    assert planner.requested_ip(_svc([])) is None
    assert planner.requested_ip(_svc([], loadBalancerIP="127.200.0.9")) == "127.200.0.9"
    svc = _svc([])
    svc.metadata.annotations[planner.ANNOTATION_IP] = "127.200.0.10"
    assert planner.requested_ip(svc) == "127.200.0.10"


def test_plan_cluster_policy_targets_ready_included_nodes_with_tcp_checks():
    svc = _svc([{"name": "http", "port": 80, "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}])
    p = planner.plan(svc, NODES, [])
    tcp, udp = p.listeners
    assert (tcp.protocol, tcp.port, tcp.preserve_client_ip, tcp.via_node_ports) == ("TCP", 80, False, True)
    assert tcp.targets == (Target("127.10.0.1", 30080, Probe("tcp", "127.10.0.1", 30080), "node-1"),
                           Target("127.10.0.2", 30080, Probe("tcp", "127.10.0.2", 30080), "node-2"))
    # a UDP NodePort cannot be probed with a connect: the node agent's /healthz stands in
    assert [t.probe for t in udp.targets] == [Probe("http", "127.10.0.1", 10250, "/healthz"),
                                             Probe("http", "127.10.0.2", 10250, "/healthz")]
    assert p.probes() == {t.probe for lp in p.listeners for t in lp.targets}
    # same inputs, equal plan: the controller sees a no-op
    assert planner.plan(svc, list(reversed(NODES)), []) == p


def test_plan_local_policy_checks_the_health_check_node_port_and_keeps_client_ip():
    svc = _svc([{"port": 80, "nodePort": 30080}], etp="Local", hc=32000)
    (lp,) = planner.plan(svc, NODES, []).listeners
    assert lp.preserve_client_ip
    assert [(str(t), t.probe) for t in lp.targets] == [
        ("127.10.0.1:30080", Probe("http", "127.10.0.1", 32000, "/healthz")),
        ("127.10.0.2:30080", Probe("http", "127.10.0.2", 32000, "/healthz"))]


def _slice(svc_name, port_name, port, endpoints, protocol="TCP"):
    sl = objects.from_dict({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{svc_name}-abc", "namespace": "default",
                     "labels": {planner.SERVICE_NAME_LABEL: svc_name}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": protocol}],
        "endpoints": [{"addresses": [ip], **({"conditions": {"ready": r}} if r is not None else {})}
                      for ip, r in endpoints]})
    return sl


def test_plan_without_node_ports_goes_to_ready_endpoints():
    svc = _svc([{"name": "http", "port": 80, "targetPort": 8080}], allocateLoadBalancerNodePorts=False)
    slices = [_slice("web", "http", 8080, [("127.244.1.5", True), ("127.244.2.5", None),
                                           ("127.244.3.5", False)]),
              _slice("web", "other", 9090, [("127.244.1.6", True)])]
    (lp,) = planner.plan(svc, NODES, slices).listeners
    assert not lp.via_node_ports
    assert [(str(t), t.probe) for t in lp.targets] == [
        ("127.244.1.5:8080", Probe("tcp", "127.244.1.5", 8080)),
        ("127.244.2.5:8080", Probe("tcp", "127.244.2.5", 8080))]


def test_plan_skips_sctp_and_duplicate_ports():
    svc = _svc([{"name": "a", "port": 80, "nodePort": 30080},
                {"name": "b", "port": 80, "protocol": "SCTP", "nodePort": 30081}])
    p = planner.plan(svc, NODES, [])
    assert [lp.key for lp in p.listeners] == [("TCP", 80)]
    assert p.skipped == ("port 80/SCTP: protocol SCTP is not supported by this load balancer",)


def test_status_patch_and_match():
    svc = _svc([])
    assert planner.status_matches(svc, None)
    assert not planner.status_matches(svc, "127.200.0.1")
    assert planner.status_patch("127.200.0.1") == {
        "status": {"loadBalancer": {"ingress": [{"ip": "127.200.0.1", "ipMode": "Proxy"}]}}}
    svc.status.loadBalancer.ingress.add(ip="127.200.0.1", ipMode="Proxy")
    assert planner.status_matches(svc, "127.200.0.1")
    assert not planner.status_matches(svc, "127.200.0.2")
    assert planner.status_patch(None) == {"status": {"loadBalancer": None}}


# ------------------------------------------------------------------ cost


def test_cost():
    since = parse_time("2024-05-01T10:00:00Z")
    now = since + 1800
    assert cost.running_cost(0.025, since, now) == pytest.approx(0.0125)
    assert cost.annotations(0.025, since, now) == {
        "kubemu.io/load-balancer-since": "2024-05-01T10:00:00Z",
        "kubemu.io/hourly-cost": "$0.0250",
        "kubemu.io/cost": "$0.012500"}
    assert cost.since_of({"kubemu.io/load-balancer-since": "2024-05-01T10:00:00Z"}, now) == since
    assert cost.since_of({}, now) == now
    assert cost.since_of({"kubemu.io/load-balancer-since": "garbage"}, now) == now
    assert cost.cost_message(0.025, since, now, 0.05, 3) == (
        "Load balancer cost so far $0.012500 (0.500 h at $0.0250/h); all 3 load balancers: $0.050000")


# ------------------------------------------------------------------ target order


def test_backends_round_robin_over_healthy_and_fail_open():
    ts = tuple(Target(f"127.10.0.{i}", 30080, Probe("tcp", f"127.10.0.{i}", 30080)) for i in (1, 2, 3))
    healthy = {ts[0], ts[2]}
    b = Backends()
    b.update(ts, lambda t: t in healthy, preserve_client_ip=False)
    firsts = [b.order()[0] for _ in range(4)]
    assert firsts == [ts[0], ts[2], ts[0], ts[2]]
    assert b.order() == (ts[0], ts[2])
    healthy.clear()
    b.refresh(lambda t: t in healthy)
    assert set(b.order()) == set(ts)  # nothing known healthy: try them all
    b.update((), lambda t: True, preserve_client_ip=False)
    assert b.order() == ()


# ------------------------------------------------------------------ health state


def test_health_checker_state_changes_and_passive_failures():
    async def go():
        results: dict[Probe, bool] = {}
        changes = []
        checked = asyncio.Event()

        async def checker(probe, timeout):
            checked.set()
            return results.get(probe, False)

        h = HealthChecker(interval=0.05, checker=checker, on_change=lambda: changes.append(dict(h.state)))
        a, b = Probe("tcp", "127.0.0.1", 1), Probe("tcp", "127.0.0.1", 2)
        results[a] = True
        h.set_probes([a, b])
        assert not h.healthy(a)  # unknown until checked
        await h.wait_checked([a, b], 1.0)
        assert h.healthy(a) and not h.healthy(b) and h.healthy(None)
        n = len(changes)
        h.report_failure(a)       # the data path saw it fail: out at once ...
        assert not h.healthy(a) and len(changes) == n + 1
        for _ in range(100):      # ... and back after the next passing check
            await asyncio.sleep(0.01)
            if h.healthy(a):
                break
        assert h.healthy(a)
        results[a] = False
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not h.healthy(a):
                break
        assert not h.healthy(a)
        h.set_probes([b])
        assert a not in h.state and a not in h._tasks
        await h.close()
    asyncio.run(asyncio.wait_for(go(), 10))
