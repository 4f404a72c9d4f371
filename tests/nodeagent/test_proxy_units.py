"""Unit tests of the proxy's pure parts: planning, endpoint picking, the TCP relay state machine,
health-check answers and metrics text. No sockets, no event loop."""
from __future__ import annotations

import json


from kubemu import objects
from kubemu.nodeagent.proxy import healthcheck, metrics
from kubemu.nodeagent.proxy.picker import Picker
from kubemu.nodeagent.proxy.relay import (BACKEND, CLIENT, AwaitWritable, Close, ConnectFailed, Connected,
                                          ConnectionReset, EofReceived, MarkFailed, OpenConnection, PortStats,
                                          ShutdownWrite, StartReading, StopReading, TcpRelay, WriteBlocked,
                                          WriteDrained)
from kubemu.nodeagent.proxy.state import (CLUSTER_IP, EXTERNAL_IP, NODE_PORT, SOURCE_CLIENT, SOURCE_NODE, Endpoint,
                                          HealthCheck, ListenerKey, NodeAddresses, PortKey, plan_service,
                                          slice_endpoints, usable)

NODE, NODE_IP = "node-1", "127.10.0.1"


def svc(name="web", ports=None, labels=None, **spec):
    spec.setdefault("clusterIP", "127.96.0.5")
    return objects.from_dict({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "ns", "labels": labels or {}},
        "spec": {"ports": ports or [{"port": 80, "targetPort": 8080}], **spec}})


def eps_slice(endpoints, ports=None, name="web-1", service="web", address_type="IPv4"):
    return objects.from_dict({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "ns", "labels": {"kubernetes.io/service-name": service}},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports if ports is not None else [{"name": "", "port": 8080, "protocol": "TCP"}]})


def ep(ip, node=NODE, **cond):
    return {"addresses": [ip], "nodeName": node, "conditions": cond}


def plan(service, slices=()):
    return plan_service(service, slices, node_name=NODE, node_ip=NODE_IP)


def listeners(p):
    return dict(p.listeners)


# ---------------------------------------------------------------- state: endpoints

def test_slice_conditions_default_like_kube_proxy():
    got = slice_endpoints([eps_slice([ep("10.0.0.1"), ep("10.0.0.2", ready=False),
                                      ep("10.0.0.3", ready=False, serving=True, terminating=True)])])
    a, b, c = got[("", "TCP")]
    assert (a.ready, a.serving, a.terminating) == (True, True, False)
    assert (b.ready, b.serving, b.terminating) == (False, True, False)
    assert (c.ready, c.serving, c.terminating) == (False, True, True)


def test_slices_merge_dedupe_sort_and_skip_other_families():
    s1 = eps_slice([ep("10.0.0.10", ready=False), ep("10.0.0.9")], name="a")
    s2 = eps_slice([ep("10.0.0.10")], name="b")
    s6 = eps_slice([ep("fd00::1")], name="c", address_type="IPv6")
    got = slice_endpoints([s1, s2, s6])[("", "TCP")]
    assert [(e.ip, e.ready) for e in got] == [("10.0.0.9", True), ("10.0.0.10", True)]


def test_usable_prefers_ready_then_falls_back_to_serving_terminating():
    r = Endpoint("10.0.0.1", 80, "node-1")
    t = Endpoint("10.0.0.2", 80, "node-2", ready=False, serving=True, terminating=True)
    dead = Endpoint("10.0.0.3", 80, "node-2", ready=False, serving=False, terminating=True)
    assert usable([r, t, dead]) == (r,)
    assert usable([t, dead]) == (t,)
    assert usable([r, t], node="node-2") == (t,)
    assert usable([dead]) == ()


# ---------------------------------------------------------------- state: listeners

def test_cluster_ip_listener_only_with_endpoints():
    assert plan(svc()).listeners == ()
    p = plan(svc(), [eps_slice([ep("10.0.0.1")])])
    assert set(listeners(p)) == {ListenerKey("TCP", "127.96.0.5", 80)}
    fe = listeners(p)[ListenerKey("TCP", "127.96.0.5", 80)]
    assert (fe.role, fe.source, fe.local) == (CLUSTER_IP, SOURCE_CLIENT, False)
    assert p.ports[0].endpoints == (Endpoint("10.0.0.1", 8080, NODE),)


def test_unproxied_services():
    slices = [eps_slice([ep("10.0.0.1")])]
    assert plan(svc(clusterIP="None"), slices) is None
    assert plan(svc(labels={"service.kubernetes.io/service-proxy-name": "other"}), slices) is None
    assert plan(svc(labels={"service.kubernetes.io/headless": ""}), slices) is None
    assert plan(svc(type="ExternalName", externalName="example.com", clusterIP=""), slices) is None


def test_node_port_and_external_ips_follow_external_traffic_policy():
    ports = [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]
    slices = [eps_slice([ep("10.0.0.1", node="node-2")], ports=[{"name": "http", "port": 8080}])]
    p = plan(svc(type="NodePort", ports=ports, externalIPs=["127.200.0.9"]), slices)
    ls = listeners(p)
    np_ = ls[ListenerKey("TCP", NODE_IP, 30080)]
    ext = ls[ListenerKey("TCP", "127.200.0.9", 80)]
    assert (np_.role, np_.source, np_.local) == (NODE_PORT, SOURCE_NODE, False)
    assert (ext.role, ext.source) == (EXTERNAL_IP, SOURCE_NODE)
    # Local: the only endpoint is on another node, so this node serves neither.
    p = plan(svc(type="NodePort", ports=ports, externalIPs=["127.200.0.9"], externalTrafficPolicy="Local"), slices)
    assert set(listeners(p)) == {ListenerKey("TCP", "127.96.0.5", 80)}
    local = [eps_slice([ep("10.0.0.1")], ports=[{"name": "http", "port": 8080}])]
    p = plan(svc(type="NodePort", ports=ports, externalTrafficPolicy="Local"), local)
    fe = listeners(p)[ListenerKey("TCP", NODE_IP, 30080)]
    assert (fe.source, fe.local) == (SOURCE_CLIENT, True)


def test_internal_traffic_policy_local_marks_cluster_ip_frontend():
    p = plan(svc(internalTrafficPolicy="Local"), [eps_slice([ep("10.0.0.1", node="node-9")])])
    fe = listeners(p)[ListenerKey("TCP", "127.96.0.5", 80)]
    assert fe.local and not fe.external


def test_named_ports_and_protocols_match_by_name():
    ports = [{"name": "http", "port": 80, "targetPort": "web"},
             {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353},
             {"name": "sctp", "port": 99, "protocol": "SCTP"}]
    slices = [eps_slice([ep("10.0.0.1")], ports=[{"name": "http", "port": 8080, "protocol": "TCP"},
                                                 {"name": "dns", "port": 5353, "protocol": "UDP"}])]
    p = plan(svc(ports=ports), slices)
    by_key = {pp.key: pp.endpoints for pp in p.ports}
    assert by_key[PortKey("ns", "web", "http", "TCP")][0].port == 8080
    assert by_key[PortKey("ns", "web", "dns", "UDP")][0].port == 5353
    assert set(listeners(p)) == {ListenerKey("TCP", "127.96.0.5", 80), ListenerKey("UDP", "127.96.0.5", 53)}


def test_affinity_timeout_and_default():
    p = plan(svc(sessionAffinity="ClientIP"), [])
    assert p.ports[0].affinity_timeout == 10800
    p = plan(svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 7}}), [])
    assert p.ports[0].affinity_timeout == 7
    assert plan(svc(), []).ports[0].affinity_timeout is None


def test_health_check_counts_local_ready_endpoints():
    slices = [eps_slice([ep("10.0.0.1"), ep("10.0.0.2", ready=False), ep("10.0.0.3", node="node-2")])]
    s = svc(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=32000,
            ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080}])
    assert plan(s, slices).health_check == HealthCheck(32000, "ns", "web", 1)
    assert plan(svc(type="LoadBalancer", ports=[{"port": 80, "nodePort": 30080}]), slices).health_check is None


def test_same_inputs_same_plan_so_no_op_changes_do_nothing():
    slices = [eps_slice([ep("10.0.0.1"), ep("10.0.0.2")])]
    assert plan(svc(), slices) == plan(svc(), list(reversed(slices)))
    assert plan(svc(), slices) != plan(svc(), [eps_slice([ep("10.0.0.1")])])


def test_node_addresses():
    def node(name, ip, cidr):
        return objects.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                                  "spec": {"podCIDR": cidr},
                                  "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
    m = NodeAddresses([node("node-1", "127.10.0.1", "127.244.1.0/24"),
                       node("node-2", "127.10.0.2", "127.244.2.0/24")])
    assert m.node_of("127.10.0.2") == "node-2"
    assert m.node_of("127.244.1.77") == "node-1"
    assert m.node_of("127.244.2.255") == "node-2"
    assert m.node_of("127.244.3.1") is None
    assert m.node_of("127.0.0.1") is None
    assert m.node_of("not-an-ip") is None


# ---------------------------------------------------------------- picker

A, B, C = (Endpoint(f"10.0.0.{i}", 80, f"node-{i}") for i in (1, 2, 3))


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_round_robin_spreads():
    p = Picker((A, B, C))
    assert [p.pick("1.1.1.1") for _ in range(6)] == [A, B, C, A, B, C]


def test_empty_and_excluded():
    assert Picker(()).pick("x") is None
    p = Picker((A, B))
    assert p.pick("x", exclude=(A, B)) is None
    assert {p.pick("x", exclude=(A,)) for _ in range(3)} == {B}


def test_affinity_sticks_until_timeout_from_last_use():
    clock = Clock()
    p = Picker((A, B, C), affinity_timeout=10, clock=clock)
    first = p.pick("1.1.1.1")
    for _ in range(15):
        clock.t += 9  # keeps refreshing: never 10 s idle
        assert p.pick("1.1.1.1") == first
    assert p.pick("2.2.2.2") != first  # another client moves on
    clock.t += 10.5
    assert p.pick("1.1.1.1") != first  # expired: round robin again


def test_affinity_dropped_when_endpoint_leaves_or_fails():
    p = Picker((A, B), affinity_timeout=100)
    first = p.pick("c")
    other = B if first == A else A
    p.update((other,), 100)
    assert p.pick("c") == other
    p.update((A, B), 100)
    assert p.pick("c") == other
    p.failed(other)
    assert p.pick("c") != other


def test_switching_affinity_off_spreads_again():
    p = Picker((A, B, C), affinity_timeout=100)
    assert len({p.pick("c") for _ in range(9)}) == 1
    p.update((A, B, C), None)
    assert len({p.pick("c") for _ in range(9)}) == 3


def test_failed_endpoint_is_skipped_for_a_while_unless_it_is_the_last():
    clock = Clock()
    p = Picker((A, B), quarantine=1.0, clock=clock)
    p.failed(A)
    assert {p.pick("c") for _ in range(4)} == {B}
    clock.t += 1.5
    assert {p.pick("c") for _ in range(4)} == {A, B}
    p.failed(A)
    p.failed(B)
    assert p.pick("c") in (A, B)  # everything quarantined: still try something


def test_local_candidates_and_terminating_fallback():
    t1 = Endpoint("10.0.0.9", 80, "node-1", ready=False, serving=True, terminating=True)
    p = Picker((A, B, t1))
    assert p.candidates("node-1") == (A,)
    assert p.candidates("node-3") == ()
    assert p.pick("c", node="node-3") is None
    p.update((B, t1), None)
    assert p.candidates("node-1") == (t1,)
    assert p.candidates() == (B,)


# ---------------------------------------------------------------- relay state machine

def relay(*eps, attempts=8):
    picks = list(eps)

    def choose(tried):
        for e in picks:
            if e not in tried:
                return e
        return None
    return TcpRelay(choose, max_attempts=attempts)


def connected(r):
    assert isinstance(r.start()[0], OpenConnection)
    assert r.handle(Connected()) == [StartReading(CLIENT), StartReading(BACKEND)]
    return r


def test_connect_retries_next_endpoint_then_resets_client():
    r = relay(A, B)
    assert r.start() == [OpenConnection(A, 0.25)]
    assert r.handle(ConnectFailed("ECONNREFUSED")) == [MarkFailed(A), OpenConnection(B, 0.5)]
    assert r.handle(ConnectFailed("timeout")) == [MarkFailed(B), Close(reset=True)]
    assert r.refused and "timeout" in r.failure
    assert r.handle(EofReceived(CLIENT)) == []  # closed: nothing more happens


def test_no_endpoint_resets_at_once():
    r = relay()
    assert r.start() == [Close(reset=True)]
    assert r.refused


def test_attempts_are_bounded():
    r = relay(A, B, C, attempts=2)
    r.start()
    r.handle(ConnectFailed("x"))
    assert r.handle(ConnectFailed("x"))[-1] == Close(reset=True)


def test_half_close_client_first():
    r = connected(relay(A))
    assert r.handle(EofReceived(CLIENT)) == [StopReading(CLIENT), ShutdownWrite(BACKEND)]
    # the backend goes on answering after the client's FIN
    assert r.handle(WriteBlocked(CLIENT)) == [StopReading(BACKEND), AwaitWritable(CLIENT)]
    assert r.handle(WriteDrained(CLIENT)) == [StartReading(BACKEND)]
    # both directions done: the close itself sends the last FIN
    assert r.handle(EofReceived(BACKEND)) == [StopReading(BACKEND), Close(reset=False)]


def test_fin_waits_for_pending_data():
    r = connected(relay(A))
    assert r.handle(WriteBlocked(BACKEND)) == [StopReading(CLIENT), AwaitWritable(BACKEND)]
    # the client's FIN arrives while data toward the backend is still queued
    assert r.handle(EofReceived(CLIENT)) == [StopReading(CLIENT)]
    assert r.handle(WriteDrained(BACKEND)) == [ShutdownWrite(BACKEND)]
    assert r.handle(EofReceived(BACKEND)) == [StopReading(BACKEND), Close(reset=False)]


def test_reset_on_either_side_resets_both():
    r = connected(relay(A))
    assert r.handle(ConnectionReset(BACKEND)) == [Close(reset=True)]
    assert r.handle(EofReceived(CLIENT)) == []


def test_duplicate_events_are_harmless():
    r = connected(relay(A))
    r.handle(WriteBlocked(BACKEND))
    assert r.handle(WriteBlocked(BACKEND)) == []
    r.handle(WriteDrained(BACKEND))
    assert r.handle(WriteDrained(BACKEND)) == []
    r.handle(EofReceived(CLIENT))
    assert r.handle(EofReceived(CLIENT)) == []


# ---------------------------------------------------------------- health check and metrics

def test_health_check_body_and_status():
    status, headers, body = healthcheck.render(HealthCheck(32000, "ns", "web", 2), True)
    assert status == 200
    assert headers["X-Load-Balancing-Endpoint-Weight"] == "2"
    assert json.loads(body) == {"service": {"namespace": "ns", "name": "web"}, "localEndpoints": 2,
                                "serviceProxyHealthy": True}
    status, headers, body = healthcheck.render(HealthCheck(32000, "ns", "web", 0), True)
    assert status == 503 and headers["X-Load-Balancing-Endpoint-Weight"] == "0"
    assert healthcheck.render(HealthCheck(32000, "ns", "web", 3), False)[0] == 503


def test_metrics_text():
    s = PortStats()
    s.connections, s.bytes_to_endpoint, s.bytes_to_client, s.active = 3, 100, 2000, 1
    u = PortStats()
    u.packets_to_endpoint = 5
    text = metrics.render([(PortKey("ns", "web", "http", "TCP"), s), (PortKey("ns", "dns", "", "UDP"), u)],
                          metrics.SyncStats(syncs=2, listeners={"TCP": 1, "UDP": 1}))
    lines = set(text.splitlines())
    lbl = 'namespace="ns",service="web",port="http",protocol="TCP"'
    assert f"kubemu_proxy_connections_total{{{lbl}}} 3" in lines
    assert f'kubemu_proxy_bytes_total{{{lbl},direction="to_client"}} 2000' in lines
    assert f"kubemu_proxy_active_connections{{{lbl}}} 1" in lines
    assert ('kubemu_proxy_packets_total{namespace="ns",service="dns",port="",protocol="UDP",'
            'direction="to_endpoint"} 5') in lines
    assert "# TYPE kubemu_proxy_bytes_total counter" in lines
    assert 'kubemu_proxy_listeners{protocol="UDP"} 1' in lines
