"""Every scenario in examples/ runs exactly as its README says, on a cluster of its own."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from kubemu.testing.cluster import Cluster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def readme_commands(example: str) -> list[str]:
    """The commands of the README's ```sh blocks, one per line."""
    text = open(os.path.join(EXAMPLES, example, "README.md")).read()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [line for b in blocks for line in b.splitlines() if line.strip() and not line.startswith("#")]


def run_readme(cluster: Cluster, example: str) -> list[tuple[str, str]]:
    env = dict(os.environ, KUBEMU_STATE_DIR=cluster.state_dir,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("KUBEMU_SERVER", None)
    out = []
    for cmd in readme_commands(example):
        res = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"`{cmd}` failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        out.append((cmd, res.stdout))
    return out


@pytest.fixture
def cluster():
    c = Cluster(nodes=3, name="examples")
    try:
        c.up()
        yield c
    finally:
        c.down()


def outputs(results, prefix: str) -> list[str]:
    return [o for c, o in results if c.startswith(prefix)]


def test_every_example_has_a_test():
    examples = sorted(d for d in os.listdir(EXAMPLES) if os.path.isfile(os.path.join(EXAMPLES, d, "README.md")))
    tested = {n[len("test_example_"):].replace("_", "-") for n in globals() if n.startswith("test_example_")}
    assert set(examples) - {"quickstart"} <= tested, f"examples without a test: {set(examples) - tested}"


def test_example_pod_churn(cluster):
    res = run_readme(cluster, "pod-churn")
    listings = outputs(res, "kubemu get pods")
    ips = [set(re.findall(r"127\.\d+\.\d+\.\d+", listing)) for listing in listings]
    assert len(ips[0]) == 3 and len(ips[1]) == 3
    assert ips[0].isdisjoint(ips[1]), "replaced pods must have new IPs"
    for out in outputs(res, "curl"):
        assert out.startswith("churn-")
    vip = cluster.get("Service", "churn").spec.clusterIP
    assert outputs(res, "dig")[0].strip() == vip


def test_example_clusterip(cluster):
    res = run_readme(cluster, "clusterip")
    assert outputs(res, "curl")[0].startswith("backend-")
    logs = outputs(res, "sleep 2; kubemu logs")[0]
    answers = re.findall(r"backend answered: (backend-\S+)", logs)
    assert answers, logs
    backends = {p.metadata.name for p in cluster.list("Pod", "default", label_selector="app=backend")}
    assert set(answers) <= backends
    described = outputs(res, "kubemu describe svc")[0]
    assert "Endpoints:" in described and "TargetPort:" in described


def test_example_nodeport(cluster):
    res = run_readme(cluster, "nodeport")
    every_node = outputs(res, "for n in")[0]
    assert every_node.count("Hello, world!") == 3
    down = [o for c, o in res if "node-3 is down" in c][0]
    assert "node-3 is down" in down
    survivor = [o for c, o in res if c.startswith("curl -s http") and "node-1" in c][0]
    assert "Hello, world!" in survivor


def test_example_loadbalancer(cluster):
    res = run_readme(cluster, "loadbalancer")
    first = [o for c, o in res if c.startswith("curl")][0]
    assert "Hello, world!" in first and "Version: 2.0.0" in first
    during = outputs(res, "for i in")[0]
    assert during.count("Hello, world!") == 6, during
    status = outputs(res, "kubemu status")[0]
    assert "default/my-service" in status
    total = [line for line in status.splitlines() if line.startswith("total")][0]
    assert re.search(r"\$\d+\.\d{6}$", total), total  # the running cost of every LoadBalancer


def test_example_ingress(cluster):
    res = run_readme(cluster, "ingress")
    curls = [o for c, o in res if c.startswith("curl")]
    assert "Version: 1.0.0" in curls[0]
    assert "Version: 2.0.0" in curls[1] and "Version: 2.0.0" in curls[2]
    assert curls[3].strip() == "404"
    status = outputs(res, "kubemu status")[0]
    assert "kube-system/ingress-kubemu" in status
    assert status.count("default/") == 0, "the apps need no LoadBalancer of their own"
