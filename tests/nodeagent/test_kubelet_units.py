"""The kubelet's pure decisions, without sockets or processes."""
from __future__ import annotations

import pytest

from kubemu import objects
from kubemu.v1 import objects_pb2 as pb

from kubemu.nodeagent.kubelet import envvars, images, ipam, lifecycle, logs, node, probes, status
from kubemu.nodeagent.kubelet.emulated import _dechunk


def container(d: dict) -> pb.Container:
    return objects.fill(pb.Container(), d)


def pod_from(spec: dict, name: str = "web-1", namespace: str = "ns1") -> pb.Pod:
    return objects.from_dict({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": name, "namespace": namespace, "uid": "u1",
                                           "labels": {"app": "web"}},
                              "spec": spec})


# ------------------------------------------------------------------ images

@pytest.mark.parametrize("ref,expect", [
    ("nginx", ("", "nginx", "")),
    ("nginx:1.27", ("", "nginx", "1.27")),
    ("docker.io/library/nginx:alpine", ("docker.io", "library/nginx", "alpine")),
    ("registry.k8s.io/e2e-test-images/agnhost:2.53@sha256:abc", ("registry.k8s.io", "e2e-test-images/agnhost", "2.53")),
    ("localhost:5000/app", ("localhost:5000", "app", "")),
    ("myuser/app:v2", ("", "myuser/app", "v2")),
])
def test_parse_image(ref, expect):
    r = images.parse_image(ref)
    assert (r.registry, r.repository, r.tag) == expect


def test_resolve_emulated_images_and_ports():
    w = images.resolve(container({"name": "a", "image": "docker.io/library/nginx:1.27",
                                  "ports": [{"containerPort": 8080}, {"containerPort": 8443}]}))
    assert isinstance(w, images.Emulated) and w.kind == "nginx"
    assert [(l.port, l.protocol) for l in w.listens] == [(8080, "TCP"), (8443, "TCP")]
    assert images.resolve(container({"name": "a", "image": "nginx"})).listens[0].port == 80
    assert images.resolve(container({"name": "a", "image": "registry.k8s.io/echoserver:1.10"})).listens[0].port == 8080

    net = images.resolve(container({"name": "a", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                                    "args": ["netexec", "--http-port=9000", "--udp-port", "9001",
                                             "--delay-shutdown=5"]}))
    assert net.kind == "agnhost-netexec" and net.delay_shutdown == 5
    assert [(l.port, l.protocol) for l in net.listens] == [(9000, "TCP"), (9001, "UDP")]
    # agnhost's own command keeps it emulated; defaults 8080/8081; --udp-port=-1 disables UDP
    net2 = images.resolve(container({"name": "a", "image": "agnhost:2.53", "command": ["/agnhost", "netexec"]}))
    assert [(l.port, l.protocol) for l in net2.listens] == [(8080, "TCP"), (8081, "UDP")]
    net3 = images.resolve(container({"name": "a", "image": "agnhost", "args": ["netexec", "--udp-port=-1"]}))
    assert [l.protocol for l in net3.listens] == ["TCP"]

    sh = images.resolve(container({"name": "a", "image": "registry.k8s.io/serve_hostname"}))
    assert sh.kind == "serve-hostname" and sh.listens[0].port == 9376
    sh_udp = images.resolve(container({"name": "a", "image": "agnhost", "args": ["serve-hostname", "--udp", "--http=false"]}))
    assert [(l.protocol, l.role) for l in sh_udp.listens] == [("UDP", "udp-hostname")]
    assert images.resolve(container({"name": "a", "image": "registry.k8s.io/pause:3.9"})).listens == ()
    hello = images.resolve(container({"name": "a", "image": "gcr.io/google-samples/hello-app:2.0"}))
    assert hello.version == "2.0.0" and hello.listens[0].port == 8080
    echo = images.resolve(container({"name": "a", "image": "kubemu/echo",
                                     "ports": [{"containerPort": 7000}, {"containerPort": 7001, "protocol": "UDP"}]}))
    assert [(l.port, l.role) for l in echo.listens] == [(7000, "tcp-echo"), (7001, "udp-echo")]


def test_command_runs_any_image_and_unknown_images_wait_with_a_reason():
    w = images.resolve(container({"name": "a", "image": "busybox", "command": ["sh", "-c"], "args": ["echo hi"]}))
    assert w == images.Process(("sh", "-c", "echo hi"))
    # a command on an emulated image is a real program too (the user asked for it)
    assert isinstance(images.resolve(container({"name": "a", "image": "nginx", "command": ["sleep", "1"]})),
                      images.Process)
    # base images without an entrypoint run their args
    assert images.resolve(container({"name": "a", "image": "busybox:1.36", "args": ["sleep", "5"]})) == \
        images.Process(("sleep", "5"))
    assert images.resolve(container({"name": "a", "image": "curlimages/curl", "args": ["-s", "x"]})) == \
        images.Process(("curl", "-s", "x"))
    assert isinstance(images.resolve(container({"name": "a", "image": "busybox"})), images.NotEmulated)
    bad = images.resolve(container({"name": "a", "image": "redis:7"}))
    assert isinstance(bad, images.NotEmulated) and bad.reason == "ImageNotEmulated"
    assert '"redis:7"' in bad.message and "nginx" in bad.message and "command" in bad.message
    sub = images.resolve(container({"name": "a", "image": "agnhost", "args": ["dns-server"]}))
    assert isinstance(sub, images.NotEmulated) and "dns-server" in sub.message


# ------------------------------------------------------------------ IPs

def test_ip_allocation_is_round_robin_and_skips_the_gateway():
    a = ipam.PodIPAllocator("127.50.130.0/29")  # .2 .. .6 usable
    assert a.capacity == 5
    ips = [a.allocate(f"p{i}") for i in range(3)]
    assert ips == ["127.50.130.2", "127.50.130.3", "127.50.130.4"]
    a.release("127.50.130.2")
    # a freed address is not handed out again before the rest of the range
    assert a.allocate("p3") == "127.50.130.5"
    assert a.allocate("p4") == "127.50.130.6"
    assert a.allocate("p5") == "127.50.130.2"
    with pytest.raises(ipam.RangeFull):
        a.allocate("p6")


def test_ip_reserve_on_restore():
    a = ipam.PodIPAllocator("127.50.130.0/24")
    assert a.reserve("127.50.130.40", "u1") is None
    assert a.reserve("127.50.130.40", "u1") is None  # idempotent for the same pod
    assert "another pod" in a.reserve("127.50.130.40", "u2")
    assert "outside" in a.reserve("127.50.131.4", "u3")
    assert a.allocate("u4") == "127.50.130.41"  # continues after what is in use
    a.release("127.50.130.40", owner="someone-else")
    assert "127.50.130.40" in a


# ------------------------------------------------------------------ environment

def svc(name: str, ns: str, ip: str, ports: list[dict]) -> pb.Service:
    return objects.from_dict({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                              "spec": {"clusterIP": ip, "ports": ports}})


def test_service_env_matches_kubernetes():
    s = svc("redis-primary", "ns1", "10.0.0.11", [{"port": 6379, "protocol": "TCP"},
                                                   {"name": "metrics", "port": 9121, "protocol": "UDP"}])
    env = dict(envvars.service_env([s]))
    assert env["REDIS_PRIMARY_SERVICE_HOST"] == "10.0.0.11"
    assert env["REDIS_PRIMARY_SERVICE_PORT"] == "6379"
    assert env["REDIS_PRIMARY_SERVICE_PORT_METRICS"] == "9121"
    assert env["REDIS_PRIMARY_PORT"] == "tcp://10.0.0.11:6379"
    assert env["REDIS_PRIMARY_PORT_6379_TCP"] == "tcp://10.0.0.11:6379"
    assert env["REDIS_PRIMARY_PORT_6379_TCP_PROTO"] == "tcp"
    assert env["REDIS_PRIMARY_PORT_6379_TCP_PORT"] == "6379"
    assert env["REDIS_PRIMARY_PORT_6379_TCP_ADDR"] == "10.0.0.11"
    assert env["REDIS_PRIMARY_PORT_9121_UDP"] == "udp://10.0.0.11:9121"


def test_services_for_pod_namespace_links_and_master_service():
    services = [svc("kubernetes", "default", "10.0.0.1", [{"name": "https", "port": 443}]),
                svc("web", "ns1", "10.0.0.5", [{"port": 80}]),
                svc("other", "ns2", "10.0.0.6", [{"port": 80}]),
                svc("headless", "ns1", "None", [{"port": 80}])]
    names = [s.metadata.name for s in envvars.services_for_pod(services, "ns1", True)]
    assert names == ["kubernetes", "web"]
    assert [s.metadata.name for s in envvars.services_for_pod(services, "ns1", False)] == ["kubernetes"]


@pytest.mark.parametrize("text,expect", [
    ("$(A)", "a"), ("x$(A)y$(B)", "xayb"), ("$(MISSING)", "$(MISSING)"), ("$$(A)", "$(A)"),
    ("$$", "$"), ("$(A", "$(A"), ("$A", "$A"), ("end$", "end$"), ("$()", "$()"),
])
def test_expansion(text, expect):
    assert envvars.expand(text, {"A": "a", "B": "b"}.get) == expect


def test_container_env_order_fieldrefs_and_expansion():
    pod = pod_from({"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]})
    c = container({"name": "c", "image": "x", "env": [
        {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "GREETING", "value": "hi $(ME) on $(NODE_NAME) via $(WEB_SERVICE_HOST) $(NOPE)"},
        {"name": "POD_NAME", "value": "overridden"},
    ]})
    env = dict(envvars.container_env(pod, c, services=[svc("web", "ns1", "10.0.0.5", [{"port": 80}])],
                                     pod_ip="127.1.2.3", host_ip="127.0.0.9"))
    assert env["ME"] == "web-1" and env["IP"] == "127.1.2.3" and env["HOST"] == "127.0.0.9"
    assert env["APP"] == "web" and env["POD_NAMESPACE"] == "ns1" and env["NODE_NAME"] == "node-1"
    assert env["GREETING"] == "hi web-1 on node-1 via 10.0.0.5 $(NOPE)"
    assert env["POD_NAME"] == "overridden" and env["POD_IP"] == "127.1.2.3"
    assert envvars.expand_argv(["echo", "$(ME)", "$$(ME)"], env) == ["echo", "web-1", "$(ME)"]
    pod.spec.enableServiceLinks = False
    assert "WEB_SERVICE_HOST" not in dict(envvars.container_env(pod, c, services=[], pod_ip="", host_ip=""))
    bad = container({"name": "c", "image": "x", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]})
    with pytest.raises(envvars.FieldRefError):
        envvars.container_env(pod, bad, services=[], pod_ip="", host_ip="")


# ------------------------------------------------------------------ restarts and phase

def test_restart_policy():
    assert lifecycle.should_restart("Always", 0) and lifecycle.should_restart("", 0)
    assert lifecycle.should_restart("OnFailure", 1) and not lifecycle.should_restart("OnFailure", 0)
    assert not lifecycle.should_restart("Never", 1)


def test_crashloop_backoff_sequence_and_reset():
    b = lifecycle.Backoff(10, 300)
    delays = [b.next(t) for t in (0, 1, 12, 33, 80, 170, 400, 700)]
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]
    assert b.next(700 + 601) == 0  # a quiet run of twice the cap starts over
    assert [lifecycle.go_duration(s) for s in (10, 80, 300, 3725)] == ["10s", "1m20s", "5m0s", "1h2m5s"]


def test_pod_phase():
    C = lifecycle.ContainerCounts
    assert lifecycle.pod_phase("Always", C(waiting=1), init_pending=False, init_failed=False) == "Pending"
    assert lifecycle.pod_phase("Always", C(running=1, waiting=1), init_pending=False, init_failed=False) == "Pending"
    assert lifecycle.pod_phase("Always", C(running=1), init_pending=False, init_failed=False) == "Running"
    assert lifecycle.pod_phase("Always", C(stopped=1, failed=1), init_pending=False, init_failed=False) == "Running"
    assert lifecycle.pod_phase("Never", C(stopped=2, succeeded=2), init_pending=False, init_failed=False) == "Succeeded"
    assert lifecycle.pod_phase("Never", C(stopped=2, succeeded=1, failed=1), init_pending=False, init_failed=False) == "Failed"
    assert lifecycle.pod_phase("OnFailure", C(stopped=1, failed=1), init_pending=False, init_failed=False) == "Running"
    assert lifecycle.pod_phase("Always", C(stopped=1, succeeded=1), init_pending=False, init_failed=False, deleted=True) == "Succeeded"
    assert lifecycle.pod_phase("Never", C(waiting=1), init_pending=True, init_failed=True) == "Failed"
    assert lifecycle.pod_phase("Always", C(waiting=1), init_pending=True, init_failed=False) == "Pending"


# ------------------------------------------------------------------ status

def test_status_conditions_and_stable_transition_times():
    pod = pod_from({"nodeName": "node-1", "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]})
    a = status.ContainerRecord("a", "x", state="running", started_at="T0", ready=True, started=True)
    b = status.ContainerRecord("b", "y", reason="ImageNotEmulated", message="nope")
    st = status.build_status(pod, containers=[a, b], init_containers=[], initialized=True, init_failed=False,
                             pod_ip="127.1.1.2", host_ip="127.0.0.1", start_time="T0", terminating=False, now="T1")
    conds = {c.type: c for c in st.conditions}
    assert st.phase == "Pending" and st.podIP == "127.1.1.2" and st.podIPs[0].ip == "127.1.1.2"
    assert conds["Ready"].status == "False" and conds["Ready"].message == "containers with unready status: [b]"
    assert conds["PodScheduled"].status == "True" and conds["Initialized"].status == "True"
    assert st.containerStatuses[1].state.waiting.reason == "ImageNotEmulated"
    assert st.qosClass == "BestEffort"

    pod.status.CopyFrom(st)
    b.state, b.started_at, b.ready, b.started = "running", "T2", True, True
    st2 = status.build_status(pod, containers=[a, b], init_containers=[], initialized=True, init_failed=False,
                              pod_ip="127.1.1.2", host_ip="127.0.0.1", start_time="T0", terminating=False, now="T3")
    c2 = {c.type: c for c in st2.conditions}
    assert st2.phase == "Running" and c2["Ready"].status == "True" and c2["Ready"].lastTransitionTime == "T3"
    assert c2["Initialized"].lastTransitionTime == "T1"  # unchanged status keeps its time
    pod.status.CopyFrom(st2)
    again = status.build_status(pod, containers=[a, b], init_containers=[], initialized=True, init_failed=False,
                                pod_ip="127.1.1.2", host_ip="127.0.0.1", start_time="T0", terminating=False, now="T9")
    assert again == st2  # nothing changed: nothing to write
    term = status.build_status(pod, containers=[a, b], init_containers=[], initialized=True, init_failed=False,
                               pod_ip="127.1.1.2", host_ip="127.0.0.1", start_time="T0", terminating=True, now="T9")
    assert {c.type: c.status for c in term.conditions}["Ready"] == "False"


def test_container_status_with_last_state():
    r = status.ContainerRecord("a", "x", state="waiting", reason="CrashLoopBackOff", message="back-off 10s",
                               restart_count=2,
                               last=status.Terminated(1, "Error", "T0", "T1", "kubemu://c1"))
    cs = r.status()
    assert cs.state.waiting.reason == "CrashLoopBackOff" and cs.restartCount == 2
    assert cs.lastState.terminated.exitCode == 1 and cs.lastState.terminated.reason == "Error"
    assert not cs.ready and not cs.started


# ------------------------------------------------------------------ probes, logs, wire bits

def test_probe_counter_thresholds():
    readiness = probes.ProbeCounter(success_threshold=2, failure_threshold=3, result=False)
    assert not readiness.observe(True) and readiness.result is False
    assert readiness.observe(True) and readiness.result is True
    assert not readiness.observe(False) and not readiness.observe(False)
    assert readiness.observe(False) and readiness.result is False
    liveness = probes.ProbeCounter.for_probe(pb.Probe(failureThreshold=1), True)
    assert liveness.observe(False) and liveness.result is False


def test_probe_named_port():
    c = container({"name": "a", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]})
    assert probes.resolve_port(objects.int_or_string("http"), c) == 8080
    assert probes.resolve_port(objects.int_or_string(9000), c) == 9000
    with pytest.raises(ValueError):
        probes.resolve_port(objects.int_or_string("nope"), c)


def test_tail_offset(tmp_path):
    p = tmp_path / "x.log"
    p.write_bytes(b"one\ntwo\nthree\n")
    assert p.read_bytes()[logs.tail_offset(str(p), 2):] == b"two\nthree\n"
    assert p.read_bytes()[logs.tail_offset(str(p), 10):] == b"one\ntwo\nthree\n"
    assert p.read_bytes()[logs.tail_offset(str(p), 0):] == b""
    p.write_bytes(b"one\ntwo\npartial")
    assert p.read_bytes()[logs.tail_offset(str(p), 1):] == b"partial"
    assert p.read_bytes()[logs.tail_offset(str(p), 2):] == b"two\npartial"
    assert logs.tail_offset(str(p), 1, chunk=3) == len(b"one\ntwo\n")


def test_dechunk():
    body = b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\nNEXT"
    assert _dechunk(body, 0) == (b"Wikipedia", len(body) - 4)
    assert _dechunk(b"4\r\nWi", 0) is None


def test_node_status_drift_ignores_heartbeats():
    a = node.node_status(name="node-1", node_ip="127.0.0.2", kubelet_port=10250, max_pods=100, now="T1")
    n = objects.new("Node", "node-1")
    n.status.CopyFrom(a)
    b = node.node_status(name="node-1", node_ip="127.0.0.2", kubelet_port=10250, max_pods=100, old=n.status, now="T2")
    assert not node.needs_update(n, b)
    assert {c.type: c.lastTransitionTime for c in b.conditions}["Ready"] == "T1"
    for c in n.status.conditions:
        if c.type == "Ready":
            c.status = "Unknown"  # the node lifecycle controller saw a stale lease
    assert node.needs_update(n, b)
    assert b.daemonEndpoints.kubeletEndpoint.Port == 10250 and b.capacity["pods"] == "100"
    assert b.nodeInfo.kubeletVersion == "v1.31.0-kubemu"


def test_logs_command_picks_the_container_as_kubectl():
    from kubemu.cli.logs import choose_container, node_endpoint
    pod = pod_from({"nodeName": "node-1", "containers": [{"name": "app", "image": "x"}, {"name": "side", "image": "y"}]})
    assert choose_container(pod, None) == ("app", 'Defaulted container "app" out of: app, side')
    assert choose_container(pod, "side") == ("side", None)
    pod.metadata.annotations["kubectl.kubernetes.io/default-container"] = "side"
    assert choose_container(pod, None) == ("side", None)
    with pytest.raises(Exception, match="container nope is not valid for pod web-1"):
        choose_container(pod, "nope")
    n = objects.new("Node", "node-1")
    n.status.CopyFrom(node.node_status(name="node-1", node_ip="127.0.0.2", kubelet_port=10555, max_pods=1))
    assert node_endpoint(n) == ("127.0.0.2", 10555)
