"""`kubemu up`, `status`, `down` and node chaos, with real processes on private addresses."""
from __future__ import annotations

import ipaddress
import json
import os
import signal

import pytest

from kubemu import launcher
from kubemu.launcher import Config
from kubemu.testing import procs
from kubemu.testing.cluster import Cluster


def listeners(prefix: str, *ports: int) -> list[str]:
    """Listening TCP sockets and bound UDP sockets on addresses starting with `prefix`
    (the cluster's slot), or on 127.0.0.1 at one of `ports` (its API server and DNS)."""
    found = []
    for path, kind in (("/proc/net/tcp", "tcp"), ("/proc/net/udp", "udp")):
        with open(path) as f:
            next(f)
            for line in f:
                parts = line.split()
                addr_hex, port_hex = parts[1].split(":")
                state = parts[3]
                if kind == "tcp" and state != "0A":  # LISTEN
                    continue
                ip = str(ipaddress.IPv4Address(bytes.fromhex(addr_hex)[::-1]))
                p = int(port_hex, 16)
                if ip.startswith(prefix) or (ip == "127.0.0.1" and p in ports):
                    found.append(f"{kind} {ip}:{p}")
    return found


def test_plan_derives_every_address_from_the_config(tmp_path):
    cfg = Config(nodes=2, apiserver_port=7000, service_cidr="127.50.96.0/20",
                 node_ip_base="127.50.10.0", pod_cidr="127.50.128.0/17", lb_pool="127.50.200.0/24",
                 dns_listen="127.0.0.1:7001")
    specs = {s.name: s for s in launcher.plan(cfg, str(tmp_path), ["node-1", "node-2"])}
    assert specs["apiserver"].args[:3] == ("apiserver", "--listen", "127.0.0.1:7000")
    assert cfg.dns_service_ip == "127.50.96.10"
    assert cfg.node_ip(2) == "127.50.10.2" and cfg.node_pod_cidr(2) == "127.50.130.0/24"
    if "node-2" in specs:
        args = specs["node-2"].args
        assert args[args.index("--node-ip") + 1] == "127.50.10.2"
        assert args[args.index("--pod-cidr") + 1] == "127.50.130.0/24"


@pytest.mark.parametrize("field,value,message", [
    ("service_cidr", "10.96.0.0/12", "--service-cidr: 10.96.0.0/12 is outside 127.0.0.0/8"),
    ("pod_cidr", "127.244.0.0/33", "--pod-cidr"),
    ("node_ip_base", "192.168.1.0", "--node-ip-base: 192.168.1.0 is outside 127.0.0.0/8"),
    ("nodes", 300, "--nodes: 300 is not between 0 and 250"),
])
def test_bad_configs_name_the_flag(field, value, message):
    cfg = Config(**{field: value})
    assert any(message in p for p in launcher.validate(cfg))


def test_up_status_down_leave_nothing_behind():
    cluster = Cluster(nodes=2)
    prefix = f"127.{cluster.slot.index}."
    try:
        cluster.up()
        assert 'Cluster "test" is up' in cluster.up_output
        status = cluster.status()
        pids = [c["pid"] for c in status["components"].values()] + \
               [n["pid"] for n in status["nodes"].values()] + [status["supervisor"]["pid"]]
        assert all(launcher.pid_alive(p) for p in pids)
        assert status["apiserver"]["reachable"] is True
        assert set(status["nodes"]) == {"node-1", "node-2"}
        # `up` again says so instead of starting a second cluster
        again = cluster.kubemu("up", "--state-dir", cluster.state_dir)
        assert "already running" in again.stdout
        assert listeners(prefix, cluster.apiserver_port, cluster.dns_port)
    finally:
        cluster.kubemu("down", check=False)
    try:
        procs.wait_for(lambda: not any(launcher.pid_alive(p) for p in pids), 10,
                       message="every process of the cluster to exit")
        try:
            procs.wait_for(lambda: not listeners(prefix, cluster.apiserver_port, cluster.dns_port), 10)
        except TimeoutError:
            pytest.fail(f"listeners left behind: {listeners(prefix, cluster.apiserver_port, cluster.dns_port)}")
        text = cluster.kubemu("status", check=False).stdout
        assert "stopped" in text
    finally:
        cluster.down()


def test_supervisor_restarts_a_dead_control_plane_process_but_not_a_killed_node():
    with Cluster(nodes=1) as cluster:
        before = cluster.status()
        api_pid = before["components"]["apiserver"]["pid"]
        os.kill(api_pid, signal.SIGKILL)  # dies unexpectedly
        after = cluster.wait_for(
            lambda: (lambda s: s if s["components"].get("apiserver", {}).get("pid") not in (None, api_pid)
                     and s["apiserver"]["reachable"] else None)(cluster.status()),
            20, message="the API server to be restarted")
        assert after["components"]["apiserver"]["restarts"] >= 1
        log = open(os.path.join(cluster.state_dir, "logs", "supervisor.log")).read()
        assert "apiserver exited" in log
        if "node-1" in after["nodes"] and after["nodes"]["node-1"]["pid"]:
            node_pid = after["nodes"]["node-1"]["pid"]
            assert "node-1 killed" in cluster.node("kill", "node-1")
            assert not launcher.pid_alive(node_pid)
            st = cluster.status()
            assert st["nodes"]["node-1"]["pid"] is None and st["nodes"]["node-1"]["desired"] == "killed"
            assert "started" in cluster.node("start", "node-1")
            assert launcher.pid_alive(cluster.status()["nodes"]["node-1"]["pid"])


def test_two_clusters_side_by_side():
    with Cluster(nodes=1, name="a") as a, Cluster(nodes=1, name="b") as b:
        assert a.slot.index != b.slot.index and a.server != b.server
        a.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "only-in-a"}})
        assert "only-in-a" in {n.metadata.name for n in a.list("Namespace")}
        assert "only-in-a" not in {n.metadata.name for n in b.list("Namespace")}


def test_status_json_is_cluster_json_plus_live_health():
    with Cluster(nodes=1) as cluster:
        st = cluster.status()
        on_disk = json.load(open(os.path.join(cluster.state_dir, "cluster.json")))
        for key in ("apiserver", "dns", "nodes", "ranges", "supervisor"):
            assert key in st and key in on_disk
        assert st["ranges"]["serviceCIDR"] == cluster.slot.service_cidr
        assert st["running"] is True
        assert st["tcpMigrateReq"] in ("on", "off", "unknown")


def test_up_names_a_port_that_is_taken(tmp_path):
    import socket
    import subprocess
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run(procs.kubemu_command("up", "--state-dir", str(tmp_path), "--apiserver-port", str(port),
                                                  "--dns-listen", f"127.0.0.1:{procs.free_port()}"),
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert f"--apiserver-port: 127.0.0.1:{port} is not available" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
