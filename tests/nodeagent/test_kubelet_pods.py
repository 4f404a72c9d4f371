"""A real node agent registers its Node and runs pods of emulated images on their own IPs."""
from __future__ import annotations

import datetime
import json
import socket
import urllib.request

from kubemu.testing import procs
from kubemu.testing.cluster import http_get


def udp_ask(host: str, port: int, data: bytes, source: str | None = None) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        if source:
            s.bind((source, 0))
        s.sendto(data, (host, port))
        return s.recvfrom(4096)[0].decode()


def tcp_echo(host: str, port: int, data: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=2) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # half-close: the echo still comes back
        out = b""
        while chunk := s.recv(4096):
            out += chunk
    return out


def test_node_registration_and_lease(kubelet_node):
    env = kubelet_node
    node = env.get("Node", "node-1", "")
    assert node.spec.podCIDR == env.pod_cidr(1) and list(node.spec.podCIDRs) == [env.pod_cidr(1)]
    addrs = {a.type: a.address for a in node.status.addresses}
    assert addrs == {"InternalIP": env.node_ip(1), "Hostname": "node-1"}
    assert node.status.daemonEndpoints.kubeletEndpoint.Port == 10250
    assert node.status.nodeInfo.kubeletVersion == "v1.31.0-kubemu"
    assert node.status.capacity["pods"] == "253"  # a /24 less network, gateway and broadcast
    ready = {c.type: c for c in node.status.conditions}["Ready"]
    assert ready.status == "True" and ready.lastHeartbeatTime

    lease = procs.wait_for(lambda: env.get_or_none("Lease", "node-1", "kube-node-lease"), 5, message="the lease")
    assert lease.spec.holderIdentity == "node-1" and lease.spec.leaseDurationSeconds == 40
    first = lease.spec.renewTime
    datetime.datetime.strptime(first, "%Y-%m-%dT%H:%M:%S.%fZ")
    procs.wait_for(lambda: env.get("Lease", "node-1", "kube-node-lease").spec.renewTime > first, 5,
                   message="the lease to be renewed")


def test_node_ready_comes_back_after_the_controller_marks_it_unknown(kubelet_node):
    env = kubelet_node
    node = env.get("Node", "node-1", "")
    for c in node.status.conditions:
        if c.type == "Ready":
            c.status, c.reason = "Unknown", "NodeStatusUnknown"
    env.call(lambda cl: cl.update_status(node))
    procs.wait_for(lambda: {c.type: c.status for c in env.get("Node", "node-1", "").status.conditions}["Ready"]
                   == "True", 10, message="the agent to set Ready=True again")


def test_emulated_http_images_answer_on_the_pod_ip(kubelet_node, kubelet_pod):
    env = kubelet_node
    env.create(kubelet_pod("echo", image="registry.k8s.io/echoserver:1.10", ports=[{"containerPort": 8080}]))
    env.create(kubelet_pod("nginx", image="nginx:1.27"))
    env.create(kubelet_pod("hello", image="us-docker.pkg.dev/google-samples/containers/gke/hello-app:2.0"))
    env.create(kubelet_pod("hostnames", image="registry.k8s.io/serve_hostname"))
    pods = {name: env.wait_ready(name) for name in ("echo", "nginx", "hello", "hostnames")}
    ips = {name: p.status.podIP for name, p in pods.items()}
    assert len(set(ips.values())) == 4
    for p in pods.values():
        assert p.status.hostIP == env.node_ip(1) and p.status.podIPs[0].ip == p.status.podIP
        assert p.status.podIP.startswith(f"127.{env.slot.index}.129.")
        cs = p.status.containerStatuses[0]
        assert cs.ready and cs.started and cs.state.running.startedAt and cs.restartCount == 0
        assert {c.type: c.status for c in p.status.conditions} == {
            "PodScheduled": "True", "PodReadyToStartContainers": "True", "Initialized": "True",
            "Ready": "True", "ContainersReady": "True"}

    client_ip = env.node_ip(1)  # connect from the node IP, so the report is checkable
    report = http_get(ips["echo"], 8080, "/some/path?x=1", source=client_ip)
    assert "Hostname: echo" in report
    assert f"client_address={client_ip}" in report
    assert "real path=/some/path" in report and "query=x=1" in report
    assert f"pod IP:\t{ips['echo']}" in report and "node name:\tnode-1" in report

    assert "Welcome to nginx!" in http_get(ips["nginx"], 80, "/")
    assert http_get(ips["hello"], 8080, "/") == "Hello, world!\nVersion: 2.0.0\nHostname: hello\n"
    assert http_get(ips["hostnames"], 9376, "/") == "hostnames"
    # nothing else listens on the pod IP
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex((ips["nginx"], 8080)) != 0


def test_agnhost_netexec_http_and_udp(kubelet_node, kubelet_pod):
    env = kubelet_node
    env.create(kubelet_pod("netexec", image="registry.k8s.io/e2e-test-images/agnhost:2.53",
                           args=["netexec", "--http-port=8080", "--udp-port=8081"]))
    ip = env.wait_ready("netexec").status.podIP
    src = env.node_ip(1)
    assert http_get(ip, 8080, "/hostname") == "netexec"
    clientip = http_get(ip, 8080, "/clientip", source=src)
    host, port = clientip.rsplit(":", 1)
    assert host == src and port.isdigit()
    assert http_get(ip, 8080, "/echo?msg=hello%20world") == "hello world"
    assert udp_ask(ip, 8081, b"hostname") == "netexec"
    assert udp_ask(ip, 8081, b"echo Hi There") == "hi there"  # netexec lower-cases, as the real one
    assert udp_ask(ip, 8081, b"clientip", source=src).startswith(f"{src}:")
    dial = json.loads(http_get(ip, 8080, f"/dial?request=hostname&host={ip}&port=8080&protocol=http&tries=2"))
    assert dial == {"responses": ["netexec", "netexec"]}
    dial = json.loads(http_get(ip, 8080, f"/dial?request=clientip&host={ip}&port=8081&protocol=udp"))
    assert dial["responses"][0].startswith(f"{ip}:")  # a pod's own traffic leaves from its IP


def test_tcp_and_udp_echo(kubelet_node, kubelet_pod):
    env = kubelet_node
    env.create(kubelet_pod("echoes", image="kubemu/echo",
                           ports=[{"containerPort": 7000}, {"containerPort": 7001, "protocol": "UDP"}]))
    ip = env.wait_ready("echoes").status.podIP
    assert tcp_echo(ip, 7000, b"x" * 100000) == b"x" * 100000
    assert udp_ask(ip, 7001, b"ping 123") == "ping 123"


def test_image_not_emulated_waits_with_a_reason(kubelet_node, kubelet_pod):
    env = kubelet_node
    env.create(kubelet_pod("redis", image="redis:7"))
    pod = env.wait_pod("redis", lambda p: p.status.containerStatuses
                       and p.status.containerStatuses[0].state.waiting.reason == "ImageNotEmulated")
    msg = pod.status.containerStatuses[0].state.waiting.message
    assert '"redis:7"' in msg and "nginx" in msg and "command" in msg
    assert pod.status.phase == "Pending"
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"

    def failed_event():
        events = env.call(lambda c: c.list("Event", "default"))[0]
        return [e for e in events if e.involvedObject.name == "redis" and e.reason == "Failed"]
    ev = procs.wait_for(failed_event, 5, message="a Failed event for the pod")[0]
    assert ev.type == "Warning" and "ImageNotEmulated" in ev.message
    assert ev.source.component == "kubelet" and ev.source.host == "node-1"


def metrics(env, n: int = 1) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{env.node_ip(n)}:10250/metrics", timeout=2) as r:
        text = r.read().decode()
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_agent_port_serves_healthz_metrics_and_pods(kubelet_node, kubelet_pod):
    env = kubelet_node
    env.create(kubelet_pod("metrics-pod", image="nginx", readinessProbe={
        "httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}))
    env.wait_ready("metrics-pod")
    base = f"http://{env.node_ip(1)}:10250"
    with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
        assert r.read() == b"ok"
    values = metrics(env)
    assert values["kubelet_running_pods"] >= 1
    assert values['kubelet_node_name{node="node-1"}'] == 1
    assert values["process_resident_memory_bytes"] > 10e6
    with urllib.request.urlopen(base + "/pods", timeout=2) as r:
        names = {p["metadata"]["name"] for p in json.loads(r.read())["items"]}
    assert "metrics-pod" in names


def test_an_unchanged_pod_is_not_written_again(kubelet_node, kubelet_pod):
    """Status writes are level-triggered: probes that keep passing write nothing."""
    env = kubelet_node
    env.create(kubelet_pod("quiet", image="nginx", readinessProbe={
        "httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}))
    env.wait_ready("quiet")
    before = env.get("Pod", "quiet").metadata.resourceVersion
    probes = metrics(env)["kubelet_started_containers_total"]
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=2.5)  # over two probe periods
    procs.wait_for(lambda: datetime.datetime.now() > deadline, 5, message="two probe periods")
    assert env.get("Pod", "quiet").metadata.resourceVersion == before
    assert metrics(env)["kubelet_started_containers_total"] == probes


def test_host_network_pod_uses_the_node_ip(kubelet_node, kubelet_pod):
    env = kubelet_node
    env.create(kubelet_pod("hostnet", image="nginx", ports=[{"containerPort": 18080}],
                           spec={"hostNetwork": True}))
    pod = env.wait_ready("hostnet")
    assert pod.status.podIP == pod.status.hostIP == env.node_ip(1)
    assert "Welcome to nginx!" in http_get(env.node_ip(1), 18080, "/")
