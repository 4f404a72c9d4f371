"""Command containers, probes, restarts, termination, and the agent's own restarts and death."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from kubemu.testing import procs
from kubemu.testing.cluster import http_get

PY = sys.executable


def kubemu_logs(env, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(procs.kubemu_command("logs", "--server", env.server, *args), capture_output=True,
                          text=True, timeout=timeout)


def processes_with(token: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if token.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            continue
    return out


def container_status(pod):
    return pod.status.containerStatuses[0]


def test_command_container_env_and_logs(kubelet_node, kubelet_pod):
    env = kubelet_node
    env.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "backend"},
                "spec": {"selector": {"app": "backend"}, "ports": [{"name": "http", "port": 8080}]}})
    svc = env.get("Service", "backend")
    script = "import os; [print(k + '=' + os.environ.get(k, '-')) for k in os.environ['SHOW'].split()]"
    env.create(kubelet_pod("envdump", image="python:3.12", command=[PY, "-c", script],
                           args=[], env=[{"name": "SHOW", "value": "POD_NAME POD_NAMESPACE POD_IP NODE_NAME "
                                          "HOSTNAME MY_IP GREETING BACKEND_SERVICE_HOST BACKEND_SERVICE_PORT_HTTP "
                                          "BACKEND_PORT_8080_TCP"},
                                         {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                         {"name": "GREETING", "value": "hello $(POD_NAME)"}],
                           spec={"restartPolicy": "Never"}))
    pod = env.wait_pod("envdump", lambda p: p.status.phase == "Succeeded", message="envdump Succeeded")
    ip = pod.status.podIP
    cs = container_status(pod)
    assert cs.state.terminated.exitCode == 0 and cs.state.terminated.reason == "Completed"
    out = kubemu_logs(env, "envdump")
    assert out.returncode == 0, out.stderr
    got = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert got == {"POD_NAME": "envdump", "POD_NAMESPACE": "default", "POD_IP": ip, "NODE_NAME": "node-1",
                   "HOSTNAME": "envdump", "MY_IP": ip, "GREETING": "hello envdump",
                   "BACKEND_SERVICE_HOST": svc.spec.clusterIP, "BACKEND_SERVICE_PORT_HTTP": "8080",
                   "BACKEND_PORT_8080_TCP": f"tcp://{svc.spec.clusterIP}:8080"}
    tail = kubemu_logs(env, "envdump", "--tail", "1")
    assert tail.stdout == "BACKEND_PORT_8080_TCP=" + f"tcp://{svc.spec.clusterIP}:8080\n"


def test_logs_follow_and_errors(kubelet_node, kubelet_pod):
    env = kubelet_node
    script = "import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.3)\n"
    env.create(kubelet_pod("ticker", command=[PY, "-u", "-c", script], spec={"restartPolicy": "Never"}))
    env.wait_running("ticker")
    t0 = time.monotonic()
    out = kubemu_logs(env, "ticker", "-f")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"line {i}" for i in range(5)]  # followed until the container ended
    assert time.monotonic() - t0 < 10
    missing = kubemu_logs(env, "no-such-pod")
    assert missing.returncode == 1 and 'pods "no-such-pod" not found' in missing.stderr
    bad = kubemu_logs(env, "ticker", "-c", "nope")
    assert bad.returncode == 1 and "nope" in bad.stderr


def test_readiness_probe_drives_ready(kubelet_node, kubelet_pod, kubelet_ready, tmp_path):
    env = kubelet_node
    flag = tmp_path / "ready"
    env.create(kubelet_pod("gated", image="nginx", readinessProbe={
        "exec": {"command": ["test", "-f", str(flag)]}, "periodSeconds": 1, "failureThreshold": 1}))
    pod = env.wait_running("gated")
    assert not kubelet_ready(pod) and not container_status(pod).ready
    assert "Welcome to nginx!" in http_get(pod.status.podIP, 80, "/")  # running, just not ready
    flag.write_text("ok")
    env.wait_ready("gated", 10)
    flag.unlink()
    env.wait_pod("gated", lambda p: not kubelet_ready(p), 10, "gated not ready again")
    # an httpGet probe against the emulated server itself
    env.create(kubelet_pod("http-ready", image="nginx", readinessProbe={
        "httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}))
    env.wait_ready("http-ready", 10)
    env.create(kubelet_pod("tcp-ready", image="kubemu/echo", ports=[{"containerPort": 7000}],
                           readinessProbe={"tcpSocket": {"port": 7000}, "periodSeconds": 1}))
    env.wait_ready("tcp-ready", 10)


def test_liveness_failure_restarts_the_container_on_the_same_ip(kubelet_node, kubelet_pod, tmp_path):
    env = kubelet_node
    alive = tmp_path / "alive"
    alive.write_text("")
    script = "import time\nprint('started', flush=True)\ntime.sleep(1000)\n"
    env.create(kubelet_pod("liveness", command=[PY, "-c", script], livenessProbe={
        "exec": {"command": ["test", "-f", str(alive)]}, "periodSeconds": 1, "failureThreshold": 2},
        spec={"terminationGracePeriodSeconds": 2}))
    pod = env.wait_ready("liveness")
    ip, first_id = pod.status.podIP, container_status(pod).containerID
    alive.unlink()
    pod = env.wait_pod("liveness", lambda p: container_status(p).restartCount >= 1, 15, "a liveness restart")
    alive.write_text("")
    pod = env.wait_ready("liveness", 15)
    cs = container_status(pod)
    assert pod.status.podIP == ip
    assert cs.restartCount == 1 and cs.containerID != first_id
    assert cs.lastState.terminated.exitCode == 128 + 15  # SIGTERM
    assert cs.lastState.terminated.containerID == first_id
    prev = kubemu_logs(env, "liveness", "--previous")
    assert prev.stdout == "started\n"

    # an emulated container failing an httpGet liveness probe restarts the same way
    env.create(kubelet_pod("nginx-live", image="nginx", livenessProbe={
        "httpGet": {"path": "/healthz", "port": 80}, "periodSeconds": 1, "failureThreshold": 1}))
    ip2 = env.wait_running("nginx-live").status.podIP
    pod = env.wait_pod("nginx-live", lambda p: container_status(p).restartCount >= 2, 20, "nginx restarts")
    assert pod.status.podIP == ip2


def test_crash_loop_back_off_and_restart_policies(kubelet_node, kubelet_pod):
    env = kubelet_node
    env.create(kubelet_pod("crasher", image="busybox", command=["sh", "-c", "echo boom; exit 3"]))
    pod = env.wait_pod("crasher", lambda p: p.status.containerStatuses
                       and container_status(p).state.waiting.reason == "CrashLoopBackOff", 15, "CrashLoopBackOff")
    cs = container_status(pod)
    assert cs.state.waiting.message.startswith("back-off ")
    assert f"restarting failed container=main pod=crasher_default({pod.metadata.uid})" in cs.state.waiting.message
    assert cs.lastState.terminated.exitCode == 3 and cs.lastState.terminated.reason == "Error"
    assert pod.status.phase == "Running"  # restartPolicy Always: it will be restarted
    count = cs.restartCount
    env.wait_pod("crasher", lambda p: container_status(p).restartCount > count, 15, "another restart")

    env.create(kubelet_pod("never", image="busybox", command=["sh", "-c", "exit 3"], spec={"restartPolicy": "Never"}))
    pod = env.wait_pod("never", lambda p: p.status.phase == "Failed", 10, "never Failed")
    assert container_status(pod).state.terminated.exitCode == 3 and container_status(pod).restartCount == 0
    env.create(kubelet_pod("onfailure", image="busybox", spec={"restartPolicy": "OnFailure"},
                           command=["sh", "-c", "test -f $(POD_NAME).done && exit 0; touch $(POD_NAME).done; exit 1"]))
    pod = env.wait_pod("onfailure", lambda p: p.status.phase == "Succeeded", 15, "onfailure Succeeded")
    assert container_status(pod).restartCount == 1
    env.create(kubelet_pod("nocmd", image="busybox", command=["no-such-program-kubemu"],
                           spec={"restartPolicy": "Never"}))
    pod = env.wait_pod("nocmd", lambda p: p.status.phase == "Failed", 10, "nocmd Failed")
    term = container_status(pod).state.terminated
    assert term.reason == "StartError" and "executable file not found" in term.message


def test_init_containers_run_first_in_order(kubelet_node, kubelet_pod, tmp_path):
    env = kubelet_node
    trail = tmp_path / "trail"
    manifest = kubelet_pod("with-init", command=["sh", "-c", f"echo main >> {trail}; sleep 1000"])
    manifest["spec"]["initContainers"] = [
        {"name": "first", "image": "busybox", "command": ["sh", "-c", f"echo first >> {trail}"]},
        {"name": "second", "image": "busybox", "command": ["sh", "-c", f"sleep 0.3; echo second >> {trail}"]},
    ]
    env.create(manifest)
    pod = env.wait_ready("with-init")
    assert trail.read_text().split() == ["first", "second", "main"]
    inits = {c.name: c for c in pod.status.initContainerStatuses}
    assert inits["first"].state.terminated.reason == "Completed" and inits["second"].state.terminated.exitCode == 0
    assert {c.type: c.status for c in pod.status.conditions}["Initialized"] == "True"


def test_graceful_deletion(kubelet_node, kubelet_pod, kubelet_ready, tmp_path):
    env = kubelet_node
    marker = tmp_path / "term"
    script = (f"trap 'echo TERM > {marker}; sleep 1; exit 0' TERM; "
              "while true; do sleep 0.1; done")
    env.create(kubelet_pod("graceful", image="busybox", command=["sh", "-c", script]))
    env.wait_ready("graceful")
    env.delete("Pod", "graceful", grace=10)
    # not ready first, while the pod still exists (its endpoint turns terminating)
    pod = env.wait_pod("graceful", lambda p: p.metadata.deletionTimestamp and not kubelet_ready(p), 5,
                       "graceful not ready while terminating")
    assert pod.metadata.deletionGracePeriodSeconds == 10
    t0 = time.monotonic()
    env.wait_gone("graceful", 10)
    assert marker.read_text().strip() == "TERM"  # SIGTERM came, and the pod waited for it to finish
    assert time.monotonic() - t0 < 5

    token = f"kubemu-stubborn-{uuid.uuid4().hex}"
    env.create(kubelet_pod("stubborn", image="busybox", command=["sh", "-c", f"trap '' TERM; sleep 1000; echo {token}"]))
    env.wait_ready("stubborn")
    t0 = time.monotonic()
    env.delete("Pod", "stubborn", grace=2)
    env.wait_gone("stubborn", 10)
    took = time.monotonic() - t0
    assert 1.5 < took < 6, took  # SIGTERM ignored: SIGKILL after the grace period
    assert not processes_with(token)

    # agnhost --delay-shutdown keeps serving after SIGTERM, failing /readyz, then stops
    env.create(kubelet_pod("delayed", image="registry.k8s.io/e2e-test-images/agnhost:2.53",
                           args=["netexec", "--delay-shutdown=2"]))
    ip = env.wait_ready("delayed").status.podIP
    assert http_get(ip, 8080, "/readyz") == ""
    t0 = time.monotonic()
    env.delete("Pod", "delayed", grace=10)
    procs.wait_for(lambda: _status(ip, 8080, "/readyz") == 503, 5, message="/readyz to fail during shutdown")
    assert http_get(ip, 8080, "/hostname") == "delayed"
    env.wait_gone("delayed", 10)
    assert 1.5 < time.monotonic() - t0 < 6

    env.create(kubelet_pod("forced", image="nginx"))
    ip = env.wait_ready("forced").status.podIP
    env.delete("Pod", "forced", grace=0)
    env.wait_gone("forced", 5)
    procs.wait_for(lambda: _refused(ip, 80), 5, message="the forced pod's listener to close")


def _status(ip: str, port: int, path: str) -> int:
    import http.client
    conn = http.client.HTTPConnection(ip, port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def _refused(ip: str, port: int) -> bool:
    import socket
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((ip, port)) != 0


def test_agent_restart_restores_pods_on_the_same_ips(kubelet_env, kubelet_pod):
    env = kubelet_env
    agent = env.start_agent(2)
    env.create(kubelet_pod("keep-web", 2, image="registry.k8s.io/echoserver:1.10"))
    env.create(kubelet_pod("keep-cmd", 2, command=[PY, "-c", "import time; time.sleep(1000)"]))
    web = env.wait_ready("keep-web")
    cmd = env.wait_ready("keep-cmd")
    agent.stop()
    assert agent.popen.returncode == 0, agent.output()[-2000:]
    assert _refused(web.status.podIP, 8080)  # the agent's pods stopped with it
    env.start_agent(2)
    web2 = env.wait_ready("keep-web")
    cmd2 = env.wait_pod("keep-cmd", lambda p: container_status(p).restartCount == 1
                        and p.status.containerStatuses[0].ready, 15, "keep-cmd restarted")
    assert web2.status.podIP == web.status.podIP and cmd2.status.podIP == cmd.status.podIP
    assert container_status(web2).restartCount == 0 and web2.status.startTime == web.status.startTime
    assert "Hostname: keep-web" in http_get(web.status.podIP, 8080, "/")
    # a new pod gets an address nobody holds
    env.create(kubelet_pod("keep-new", 2, image="nginx"))
    new_ip = env.wait_ready("keep-new").status.podIP
    assert new_ip not in (web.status.podIP, cmd.status.podIP)


def test_kill_9_of_the_agent_kills_its_child_processes(kubelet_env, kubelet_pod):
    env = kubelet_env
    env.start_agent(3)
    token = f"kubemu-orphan-{uuid.uuid4().hex}"
    # a main process and a grandchild in the background: both must die with the agent
    script = f"sleep 1000 & sleep 1001; wait # {token}"
    env.create(kubelet_pod("orphan", 3, image="busybox", command=["sh", "-c", script, token]))
    env.wait_ready("orphan")
    procs.wait_for(lambda: len([p for p in _pids_in_session_of(token)]) >= 3, 5,
                   message="the container's processes")
    env.kill_agent(3)
    procs.wait_for(lambda: not _pids_in_session_of(token), 5, message="the container's processes to die")
    # restarted, the agent takes the pod back and runs its command again
    env.start_agent(3)
    pod = env.wait_pod("orphan", lambda p: container_status(p).restartCount == 1 and container_status(p).ready,
                       15, "orphan restarted")
    assert container_status(pod).lastState.terminated.exitCode == 137


def _pids_in_session_of(token: str) -> list[int]:
    """The processes of the container whose shell carries `token`: same session as that shell."""
    leaders = processes_with(token)
    if not leaders:
        return []
    sids = set()
    for pid in leaders:
        try:
            sids.add(os.getsid(pid))
        except OSError:
            pass
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.getsid(int(pid)) in sids:
                    out.append(int(pid))
            except OSError:
                continue
    return out


def test_pods_keep_running_while_the_api_server_is_away(kubelet_node, kubelet_pod):
    env = kubelet_node
    script = "import time\nprint('up', flush=True)\ntime.sleep(1.5)\nraise SystemExit(1)\n"
    env.create(kubelet_pod("steady", image="nginx"))
    env.create(kubelet_pod("flaky", command=[PY, "-c", script]))
    ip = env.wait_ready("steady").status.podIP
    env.wait_running("flaky")

    def while_down():
        # pods keep serving, and a crashing container keeps being restarted, with no API server
        for _ in range(3):
            assert "Welcome to nginx!" in http_get(ip, 80, "/")
        time.sleep(3)

    env.restart_apiserver(while_down)
    pod = env.wait_pod("flaky", lambda p: container_status(p).restartCount >= 1, 20,
                       "the restarts to be reported once the API server is back")
    assert pod.status.phase == "Running"
    lease = env.get("Lease", "node-1", "kube-node-lease")
    t0 = lease.spec.renewTime
    procs.wait_for(lambda: env.get("Lease", "node-1", "kube-node-lease").spec.renewTime > t0, 10,
                   message="lease renewals to resume")
