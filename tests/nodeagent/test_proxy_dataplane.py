"""The proxy's data plane end to end: a real API server, real sockets, in-process proxies.

Each test is one of the Kubernetes Service behaviours of issue 7 (the e2e tests of
test/e2e/network/service.go, with hand-made EndpointSlices standing in for the controller).
"""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from conftest_proxy import Pod, http_get, proxy_env, refused, udp_ask, wait_answers  # noqa: F401 (fixture)
from kubemu import relayio
from kubemu.nodeagent.proxy.listeners import open_socket
from kubemu.nodeagent.proxy.state import ListenerKey
from kubemu.testing.procs import wait_for


def wait_refused(host, port, timeout=10.0):
    wait_for(lambda: refused(host, port), timeout, message=f"{host}:{port} to refuse connections")


def test_service_follows_endpoints_as_pods_come_and_go(proxy_env):
    env = proxy_env
    env.add_node(1)
    env.start_proxy(1)
    vip = env.service("web").spec.clusterIP
    assert refused(vip, 80)  # 0 endpoints
    a, b = env.start_pod("web-a", 1), env.start_pod("web-b", 1)
    env.endpoints("web", [a])
    wait_answers(lambda: http_get(vip, 80), {"web-a"}, message="1 endpoint")
    env.endpoints("web", [a, b])
    wait_answers(lambda: http_get(vip, 80), {"web-a", "web-b"}, message="2 endpoints")
    env.endpoints("web", [b])
    wait_answers(lambda: http_get(vip, 80), {"web-b"}, message="back to 1 endpoint")
    env.endpoints("web", [])
    wait_refused(vip, 80)


def test_multi_port_service_with_named_target_ports(proxy_env):
    env = proxy_env
    env.add_node(1)
    env.start_proxy(1)
    vip = env.service("multi", ports=[{"name": "http", "port": 80, "targetPort": "http"},
                                      {"name": "admin", "port": 81, "targetPort": "admin"}]).spec.clusterIP
    # two pods that put their named ports on different numbers: the slice carries the numbers
    a = env.start_pod("multi-a", 1, http_ports=(8080, 9090))
    env.endpoints("multi", [a], ports=[{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}])
    wait_answers(lambda: http_get(vip, 80, "/port"), {"multi-a:8080"})
    wait_answers(lambda: http_get(vip, 81, "/port"), {"multi-a:9090"})


def test_node_port_answers_on_every_node_ip(proxy_env):
    env = proxy_env
    for n in (1, 2):
        env.add_node(n)
        env.start_proxy(n)
    svc = env.service("np", type="NodePort")
    node_port = svc.spec.ports[0].nodePort
    a, b = env.start_pod("np-a", 1), env.start_pod("np-b", 2)
    env.endpoints("np", [a, b])
    for n in (1, 2):
        wait_answers(lambda: http_get(env.node_ip(n), node_port), {"np-a", "np-b"}, message=f"node-{n}")
    wait_answers(lambda: http_get(svc.spec.clusterIP, 80), {"np-a", "np-b"}, message="cluster IP")
    assert refused(env.node_ip(3), node_port)  # no agent for node-3, nobody listens there


def test_session_affinity_holds_then_spreads_after_switching_to_none(proxy_env):
    env = proxy_env
    env.add_node(1)
    env.start_proxy(1)
    vip = env.service("aff", sessionAffinity="ClientIP").spec.clusterIP
    pods = [env.start_pod(f"aff-{i}", 1) for i in range(3)]
    env.endpoints("aff", pods)
    wait_for(lambda: not refused(vip, 80), 10, message="listener")
    got = [http_get(vip, 80) for _ in range(15)]
    assert len(set(got)) == 1, got
    env.patch("Service", "aff", {"spec": {"sessionAffinity": "None"}})
    wait_answers(lambda: http_get(vip, 80), {p.name for p in pods}, message="spreading again")


def test_session_affinity_expires_after_its_timeout(proxy_env):
    env = proxy_env
    env.add_node(1)
    env.start_proxy(1)
    vip = env.service("aff", sessionAffinity="ClientIP",
                      sessionAffinityConfig={"clientIP": {"timeoutSeconds": 1}}).spec.clusterIP
    pods = [env.start_pod(f"aff-{i}", 1) for i in range(2)]
    env.endpoints("aff", pods)
    wait_for(lambda: not refused(vip, 80), 10, message="listener")
    first = http_get(vip, 80)
    assert {http_get(vip, 80) for _ in range(10)} == {first}
    time.sleep(1.3)  # the behaviour under test is a timeout: idle past it
    assert http_get(vip, 80) != first


def test_source_ip_through_cluster_ip_and_node_port(proxy_env):
    env = proxy_env
    for n in (1, 2):
        env.add_node(n)
        env.start_proxy(n)
    a, b = env.start_pod("src-a", 1), env.start_pod("src-b", 2)
    client_ip = env.pod_ip(1)  # a "pod" on node-1 as the client
    # ClusterIP: the backend sees the client's address
    vip = env.service("src", type="NodePort").spec.clusterIP
    env.endpoints("src", [a, b])
    wait_for(lambda: not refused(vip, 80), 10, message="listener")
    for _ in range(4):
        assert http_get(vip, 80, "/clientip", source=client_ip).split(":")[0] == client_ip
    # NodePort, externalTrafficPolicy Cluster: the node's IP (masquerade)
    np_cluster = env.get("Service", "src").spec.ports[0].nodePort
    for n in (1, 2):
        wait_for(lambda: not refused(env.node_ip(n), np_cluster), 10, message="node port")
        seen = {http_get(env.node_ip(n), np_cluster, "/clientip", source=client_ip).split(":")[0] for _ in range(4)}
        assert seen == {env.node_ip(n)}
    # NodePort, externalTrafficPolicy Local: the client's address, and only the node's own pods
    svc = env.service("srclocal", type="NodePort", externalTrafficPolicy="Local")
    env.endpoints("srclocal", [a, b])
    np_local = svc.spec.ports[0].nodePort
    for n, pod in ((1, "src-a"), (2, "src-b")):
        wait_answers(lambda: http_get(env.node_ip(n), np_local, source=client_ip), {pod}, message=f"local on {n}")
        got = http_get(env.node_ip(n), np_local, "/clientip", source=client_ip)
        assert got.split(":")[0] == client_ip
    # a node without a local endpoint refuses, as kube-proxy drops the traffic
    env.endpoints("srclocal", [a])
    wait_refused(env.node_ip(2), np_local)
    assert http_get(env.node_ip(1), np_local, source=client_ip) == "src-a"


def test_internal_traffic_policy_local_uses_the_clients_node(proxy_env):
    env = proxy_env
    for n in (1, 2, 3):
        env.add_node(n)
    env.start_proxy(1)
    env.start_proxy(2)
    vip = env.service("itp", internalTrafficPolicy="Local").spec.clusterIP
    a, b = env.start_pod("itp-a", 1), env.start_pod("itp-b", 2)
    env.endpoints("itp", [a, b])
    wait_for(lambda: not refused(vip, 80), 10, message="listener")
    for n, pod in ((1, "itp-a"), (2, "itp-b")):
        src = env.pod_ip(n)
        assert {http_get(vip, 80, source=src) for _ in range(6)} == {pod}
        assert {http_get(vip, 80, source=env.node_ip(n)) for _ in range(3)} == {pod}
    # node-3 has no endpoint of the Service: its clients are turned away
    with pytest.raises(OSError):
        http_get(vip, 80, source=env.pod_ip(3))


def test_unproxied_services_get_no_listener(proxy_env):
    env = proxy_env
    env.add_node(1)
    env.start_proxy(1)
    a = env.start_pod("u-a", 1)
    other = env.service("other", labels={"service.kubernetes.io/service-proxy-name": "someone-else"})
    mine = env.service("mine")
    env.endpoints("other", [a])
    env.endpoints("mine", [a])
    wait_answers(lambda: http_get(mine.spec.clusterIP, 80), {"u-a"})
    assert refused(other.spec.clusterIP, 80)
    env.patch("Service", "mine", {"metadata": {"labels": {"service.kubernetes.io/headless": ""}}})
    wait_refused(mine.spec.clusterIP, 80)


def test_external_ips(proxy_env):
    env = proxy_env
    env.add_node(1)
    env.start_proxy(1)
    ext = f"127.{env.slot.index}.200.7"
    env.service("ext", externalIPs=[ext])
    a = env.start_pod("ext-a", 1)
    env.endpoints("ext", [a])
    wait_answers(lambda: http_get(ext, 80), {"ext-a"})
    assert http_get(ext, 80, "/clientip", source=env.pod_ip(2)).split(":")[0] == env.node_ip(1)


@pytest.mark.parametrize("batching", [True, False], ids=["mmsg", "one-by-one"])
def test_udp_service_flows_and_idle_timeout(proxy_env, batching):
    env = proxy_env
    env.add_node(1)
    proxy = env.start_proxy(1, udp_idle_timeout=0.5, udp_batching=batching)
    vip = env.service("dns", ports=[{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]).spec.clusterIP
    pods = [env.start_pod(f"udp-{i}", 1, http_ports=(), udp_ports=(5353,)) for i in range(2)]
    env.endpoints("dns", pods, ports=[{"name": "dns", "port": 5353, "protocol": "UDP"}])
    wait_answers(lambda: udp_ask(vip, 53), {"udp-0", "udp-1"}, message="UDP spreading over flows")
    # one flow: a client socket keeps its endpoint, sees its own address, gets echoes back
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((env.pod_ip(1), 0))
        first = udp_ask(vip, 53, sock=s)
        assert {udp_ask(vip, 53, sock=s) for _ in range(5)} == {first}
        assert udp_ask(vip, 53, "clientip", sock=s).split(":")[0] == s.getsockname()[0]
        assert udp_ask(vip, 53, "echo hello", sock=s) == "hello"
    # idle flows are closed
    wait_for(lambda: 'kubemu_proxy_active_connections{namespace="default",service="dns",port="dns",'
             'protocol="UDP"} 0' in proxy.render_metrics(), 5, message="idle UDP flows closed")
    env.endpoints("dns", [], ports=[{"name": "dns", "port": 5353, "protocol": "UDP"}])
    wait_for(lambda: _udp_unanswered(vip, 53), 10, message="UDP with no endpoints to go unanswered")


@pytest.mark.parametrize("batching", [True, False], ids=["mmsg", "one-by-one"])
def test_udp_endpoint_that_died_is_avoided(proxy_env, batching):
    env = proxy_env
    env.add_node(1)
    env.start_proxy(1, udp_batching=batching)
    vip = env.service("dns", ports=[{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]).spec.clusterIP
    pods = [env.start_pod(f"udp-{i}", 1, http_ports=(), udp_ports=(5353,)) for i in range(2)]
    env.endpoints("dns", pods, ports=[{"name": "dns", "port": 5353, "protocol": "UDP"}])
    wait_answers(lambda: udp_ask(vip, 53), {"udp-0", "udp-1"})
    pods[0].stop()  # its slice still lists it

    def ask_like_a_resolver():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(3):  # a stub resolver retries on the same socket
                try:
                    return udp_ask(vip, 53, sock=s, timeout=0.3)
                except socket.timeout:
                    continue
                except ConnectionRefusedError:
                    continue
        return "unanswered"
    assert {ask_like_a_resolver() for _ in range(10)} == {"udp-1"}


def test_udp_answered_one_shot_flows_go_first(proxy_env):
    env = proxy_env
    env.add_node(1)
    proxy = env.start_proxy(1)  # the default idle timeout: 30 s
    vip = env.service("dns", ports=[{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]).spec.clusterIP
    pod = env.start_pod("udp-0", 1, http_ports=(), udp_ports=(5353,))
    env.endpoints("dns", [pod], ports=[{"name": "dns", "port": 5353, "protocol": "UDP"}])
    wait_answers(lambda: udp_ask(vip, 53), {"udp-0"})
    active = 'kubemu_proxy_active_connections{namespace="default",service="dns",port="dns",protocol="UDP"} '
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(3):
            assert udp_ask(vip, 53, sock=s) == "udp-0"
        # the lookups on fresh sockets (one query, one answer each) are closed within ~1 s;
        # the conversation on `s` stays open
        wait_for(lambda: active + "1" in proxy.render_metrics(), 5, message="one-shot flows closed")
        assert udp_ask(vip, 53, sock=s) == "udp-0"
        assert active + "1" in proxy.render_metrics()


def _udp_unanswered(host, port):
    try:
        udp_ask(host, port, timeout=0.3)
        return False
    except (ConnectionRefusedError, socket.timeout):
        return True


def test_connect_failures_are_retried_on_the_next_endpoint(proxy_env):
    env = proxy_env
    env.add_node(1)
    proxy = env.start_proxy(1)
    vip = env.service("ha").spec.clusterIP
    pods = [env.start_pod(f"ha-{i}", 1) for i in range(3)]
    env.endpoints("ha", pods)
    wait_answers(lambda: http_get(vip, 80), {p.name for p in pods})
    # Requests run without pause while one pod after another dies behind a slice that still
    # lists it: no client connection fails for want of an endpoint while a live one remains.
    # (Each pod finishes the requests it already accepted: one cut off inside a pod fails in
    # Kubernetes too, and is not a connect failure. That includes a connection still in the
    # pod's accept queue when its listener closes, which the kernel resets: at most one per
    # death here, with one request at a time. The proxy's failure counter tells them apart.)
    errors: list[str] = []
    answers: list[str] = []
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                answers.append(http_get(vip, 80))
            except OSError as e:
                errors.append(repr(e))
    t = threading.Thread(target=traffic)
    t.start()
    try:
        wait_for(lambda: len(answers) > 20, 10, message="traffic")
        pods[0].stop(drain=2.0)
        n = len(answers)
        wait_for(lambda: len(answers) > n + 30, 10, message="traffic after the first death")
        pods[1].stop(drain=2.0)
        n = len(answers)
        wait_for(lambda: len(answers) > n + 30, 10, message="traffic after the second death")
    finally:
        stop.set()
        t.join(10)
    failures = 'kubemu_proxy_connection_failures_total{namespace="default",service="ha",port="",protocol="TCP"}'
    assert f"{failures} 0" in proxy.render_metrics()
    assert len(errors) <= 2 and all(e.startswith("ConnectionResetError") for e in errors), errors
    assert set(answers[-10:]) == {"ha-2"}
    # ... and with every endpoint dead, clients are reset, counted as failures
    pods[2].stop()
    with pytest.raises(OSError):
        http_get(vip, 80)
    assert f"{failures} 0" not in proxy.render_metrics()


def test_tcp_half_close_is_relayed(proxy_env):
    env = proxy_env
    env.add_node(1)
    env.start_proxy(1)
    ip = env.pod_ip(1)
    # a backend that answers only after the client's FIN, with what it received, reversed
    srv = socket.socket()
    srv.bind((ip, 7000))
    srv.listen(8)

    def backend():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                data = b""
                while chunk := c.recv(65536):
                    data += chunk
                c.sendall(data[::-1])
    t = threading.Thread(target=backend, daemon=True)
    t.start()
    try:
        vip = env.service("rev", ports=[{"port": 7000}]).spec.clusterIP
        env.endpoints("rev", [Pod(env, "rev", ip, 1, [])], ports=[{"name": "", "port": 7000}])
        wait_for(lambda: not refused(vip, 7000), 10, message="listener")
        payload = b"0123456789" * 100_000  # 1 MB, more than the socket buffers hold
        with socket.create_connection((vip, 7000), timeout=5) as c:
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := c.recv(65536):
                got += chunk
        assert got == payload[::-1]
    finally:
        srv.shutdown(socket.SHUT_RDWR)
        srv.close()
        t.join(5)


def test_static_stability_when_the_api_server_is_gone(proxy_env):
    env = proxy_env
    env.add_node(1)
    env.start_proxy(1)
    vip = env.service("stable").spec.clusterIP
    a, b = env.start_pod("st-a", 1), env.start_pod("st-b", 1)
    env.endpoints("stable", [a])
    wait_answers(lambda: http_get(vip, 80), {"st-a"})
    env.kill_apiserver()
    # the data plane keeps its last state: traffic flows, nothing is torn down
    assert {http_get(vip, 80) for _ in range(20)} == {"st-a"}
    time.sleep(1.0)  # past several informer reconnect attempts and sync periods
    assert {http_get(vip, 80) for _ in range(20)} == {"st-a"}
    env.start_apiserver()
    wait_for(lambda: env.endpoints("stable", [b]), 10, message="the API server to take a write")
    wait_answers(lambda: http_get(vip, 80), {"st-b"}, timeout=20, message="re-sync after the API server returns")


def test_health_check_node_port(proxy_env):
    env = proxy_env
    for n in (1, 2):
        env.add_node(n)
        env.start_proxy(n)
    hc_port = env.node_port()
    env.service("lb", type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=hc_port)
    assert env.get("Service", "lb").spec.healthCheckNodePort == hc_port
    a = env.start_pod("lb-a", 1)
    env.endpoints("lb", [a])

    def probe(n):
        import http.client
        conn = http.client.HTTPConnection(env.node_ip(n), hc_port, timeout=3)
        try:
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            return r.status, r.getheader("X-Load-Balancing-Endpoint-Weight"), json.loads(r.read())
        finally:
            conn.close()
    wait_for(lambda: probe(1)[0] == 200, 10, message="health check 200 on node-1")
    status, weight, body = probe(1)
    assert (status, weight) == (200, "1")
    assert body == {"service": {"namespace": "default", "name": "lb"}, "localEndpoints": 1,
                    "serviceProxyHealthy": True}
    status, weight, body = probe(2)
    assert (status, weight, body["localEndpoints"]) == (503, "0", 0)
    env.endpoints("lb", [])
    wait_for(lambda: probe(1)[0] == 503, 10, message="health check 503 without endpoints")
    env.delete("Service", "lb")
    wait_refused(env.node_ip(1), hc_port)


def test_failed_bind_is_an_event_and_the_rest_keeps_working(proxy_env):
    env = proxy_env
    env.add_node(1)
    env.start_proxy(1, retry_interval=0.2)
    a = env.start_pod("bf-a", 1)
    taken = socket.socket()  # something else on the node holds the node port
    # SO_REUSEADDR: an earlier test's connections to this address may linger in TIME_WAIT
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken.bind((env.node_ip(1), env.node_port()))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        env.service("clash", type="NodePort", ports=[{"port": 80, "targetPort": 8080, "nodePort": port}])
        ok = env.service("fine")
        env.endpoints("clash", [a])
        env.endpoints("fine", [a])
        wait_answers(lambda: http_get(ok.spec.clusterIP, 80), {"bf-a"})
        wait_answers(lambda: http_get(env.get("Service", "clash").spec.clusterIP, 80), {"bf-a"})

        def event():
            for ev in env.list("Event"):
                if ev.involvedObject.name == "clash" and ev.reason == "FailedToStartServiceListener":
                    return ev
        ev = wait_for(event, 10, message="an Event on the Service")
        assert ev.type == "Warning" and f"{env.node_ip(1)}:{port}/TCP" in ev.message
        assert "Address already in use" in ev.message
    finally:
        taken.close()
    wait_answers(lambda: http_get(env.node_ip(1), port), {"bf-a"}, message="bind retried once the port is free")
    assert len([e for e in env.list("Event") if e.involvedObject.name == "clash"]) == 1


def test_vip_survives_one_agent(proxy_env):
    env = proxy_env
    for n in (1, 2):
        env.add_node(n)
        env.start_proxy(n)
    vip = env.service("shared").spec.clusterIP
    a = env.start_pod("sh-a", 1)
    env.endpoints("shared", [a])
    wait_for(lambda: all(_has_listener(env, n, vip) for n in (1, 2)), 10, message="both agents listening")
    env.stop_proxy(1)
    assert {http_get(vip, 80) for _ in range(10)} == {"sh-a"}


def _has_listener(env, n, ip):
    return any(k.ip == ip for k in env.proxy(n)._listeners.listeners)


def test_metrics_count_connections_and_bytes(proxy_env):
    env = proxy_env
    env.add_node(1)
    proxy = env.start_proxy(1)
    vip = env.service("m", ports=[{"name": "http", "port": 80, "targetPort": 8080}]).spec.clusterIP
    env.endpoints("m", [env.start_pod("m-a", 1)], ports=[{"name": "http", "port": 8080}])
    wait_answers(lambda: http_get(vip, 80), {"m-a"})
    before = _metric(proxy, "kubemu_proxy_connections_total")
    for _ in range(5):
        http_get(vip, 80, "/echo?msg=" + "x" * 1000)
    wait_for(lambda: _metric(proxy, "kubemu_proxy_active_connections") == 0, 5, message="connections closed")
    assert _metric(proxy, "kubemu_proxy_connections_total") == before + 5
    assert _metric(proxy, "kubemu_proxy_bytes_total", 'direction="to_client"') > 5000
    assert _metric(proxy, "kubemu_proxy_bytes_total", 'direction="to_endpoint"') > 5000
    env.delete("Service", "m")
    wait_for(lambda: 'service="m"' not in proxy.render_metrics(), 5, message="series gone with the Service")


def _metric(proxy, name, extra=""):
    lbl = 'namespace="default",service="m",port="http",protocol="TCP"'
    lbl = f"{lbl},{extra}" if extra else lbl
    for line in proxy.render_metrics().splitlines():
        if line.startswith(f"{name}{{{lbl}}} "):
            return int(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def test_no_op_changes_keep_listeners_and_endpoint_changes_reopen_nothing(proxy_env):
    env = proxy_env
    env.add_node(1)
    proxy = env.start_proxy(1)
    vip = env.service("noop").spec.clusterIP
    a, b = env.start_pod("noop-a", 1), env.start_pod("noop-b", 1)
    env.endpoints("noop", [a])
    wait_answers(lambda: http_get(vip, 80), {"noop-a"})
    before = dict(proxy._listeners.listeners)
    syncs = proxy.sync_stats.syncs
    env.patch("Service", "noop", {"metadata": {"annotations": {"touched": "yes"}}})
    wait_for(lambda: proxy.sync_stats.syncs > syncs, 5, message="a sync after the change")
    env.endpoints("noop", [a, b])
    wait_answers(lambda: http_get(vip, 80), {"noop-a", "noop-b"})
    after = proxy._listeners.listeners
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before)  # same sockets: nothing was reopened


def test_kill_9_of_the_serving_agent_leaves_the_vip_answering(proxy_env, tmp_path):
    """Real `kubemu nodeagent` processes: the kernel takes a killed agent's sockets out of the
    shared VIP's group and another agent's listener answers."""
    import re
    import urllib.request

    from kubemu.testing import procs
    env = proxy_env
    agents = {}

    def metrics(n):
        with urllib.request.urlopen(f"http://{env.node_ip(n)}:10250/metrics", timeout=2) as r:
            return r.read().decode()

    def served(n):
        m = re.search(r'^kubemu_proxy_connections_total\{namespace="default",service="web",[^}]*\} (\d+)$',
                      metrics(n), re.M)
        return int(m.group(1)) if m else 0
    try:
        for n in (1, 2):
            agents[n] = procs.Proc(procs.kubemu_command(
                "nodeagent", "--server", env.server, "--name", f"node-{n}", "--node-ip", env.node_ip(n),
                "--pod-cidr", env.pod_cidr(n), "--kubelet-port", "10250",
                "--state-dir", str(tmp_path / f"node-{n}")), str(tmp_path / f"agent-{n}.log"))
        vip = env.service("web").spec.clusterIP
        env.endpoints("web", [env.start_pod("web-a", 1)])
        for n in (1, 2):
            wait_for(lambda: 'kubemu_proxy_listeners{protocol="TCP"} 1' in metrics(n), 30,
                     message=f"node-{n}'s proxy listening")
        assert {http_get(vip, 80) for _ in range(5)} == {"web-a"}
        serving = 1 if served(1) else 2
        assert served(serving) == 5 and served(3 - serving) == 0  # steered to one agent
        agents[serving].kill()
        assert {http_get(vip, 80) for _ in range(10)} == {"web-a"}
        assert served(3 - serving) == 10
        agents[3 - serving].kill()
        wait_refused(vip, 80)
    finally:
        for p in agents.values():
            p.kill()
            p.stop()


def test_tcp_listeners_do_not_pace_what_they_accept():
    # BBR, a common default, paces every send; on loopback that slows a relayed transfer
    # down (docs/perf/dataplane.md). Accepted connections inherit the listener's choice.
    s = open_socket(ListenerKey("TCP", "127.10.0.9", 0), shared=False)
    try:
        assert relayio.congestion(s) in relayio.LOOPBACK_CONGESTION
    finally:
        s.close()
