"""End to end: two applications behind one external IP, through the whole cluster.

client -> cloud-lb (EXTERNAL_IP:80/443) -> a node's NodePort -> the ingress controller ->
the app's ClusterIP -> a pod. The Kubernetes docs' "simple fanout" and "name based virtual
hosting" Ingresses (and the TLS example) are applied unchanged from tests/ingress/manifests.
"""
from __future__ import annotations

import base64
import http.client
import os
import shutil
import subprocess
import threading
import time

import pytest

from kubemu.ingress import tls

HERE = os.path.join(os.path.dirname(__file__), "manifests")

APPS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app1}
spec:
  replicas: 2
  selector: {matchLabels: {app: app1}}
  template:
    metadata: {labels: {app: app1}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: echo
        image: registry.k8s.io/echoserver:1.10
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app2}
spec:
  replicas: 2
  selector: {matchLabels: {app: app2}}
  template:
    metadata: {labels: {app: app2}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: echo
        image: registry.k8s.io/echoserver:1.10
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: service1}
spec:
  selector: {app: app1}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: alt, port: 4200, targetPort: http}
---
apiVersion: v1
kind: Service
metadata: {name: service2}
spec:
  selector: {app: app2}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: alt, port: 8080, targetPort: http}
"""


def fetch(ip: str, host: str, path: str, port: int = 80, timeout: float = 5.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def hostname(body: str) -> str:
    for line in body.splitlines():
        if line.startswith("Hostname:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Hostname in {body[:200]!r}")


@pytest.fixture(scope="module")
def ingress_apps(kubemu_cluster):
    """The two apps deployed and ready; yields (cluster, external IP of the ingress)."""
    c = kubemu_cluster
    c.apply(APPS)
    c.wait_deployment("app1", timeout=60)
    c.wait_deployment("app2", timeout=60)

    def lb_ip():
        svc = c.get("Service", "ingress-kubemu", "kube-system")
        return svc.status.loadBalancer.ingress[0].ip if svc.status.loadBalancer.ingress else None
    ip = c.wait_for(lb_ip, 60, message="an external IP for kube-system/ingress-kubemu")
    return c, ip


def test_fanout_and_virtual_hosts_behind_one_ip(ingress_apps):
    c, ip = ingress_apps
    c.apply(os.path.join(HERE, "simple-fanout-example.yaml"))
    c.apply(os.path.join(HERE, "name-virtual-host-ingress.yaml"))

    def routed():
        return fetch(ip, "bar.foo.com", "/anything")[0] == 200 and fetch(ip, "foo.bar.com", "/foo")[0] == 200
    c.wait_for(routed, 30, message="both Ingresses to route through the external IP")

    expect = {("foo.bar.com", "/foo"): "app1", ("foo.bar.com", "/foo/x"): "app1",  # fanout, Prefix
              ("foo.bar.com", "/bar"): "app2",  # fanout, to service2:8080
              ("foo.bar.com", "/"): "app1", ("foo.bar.com", "/foobar"): "app1",  # vhost "/" (not /foo)
              ("bar.foo.com", "/"): "app2", ("bar.foo.com", "/foo"): "app2"}
    for (host, path), app in expect.items():
        status, body = fetch(ip, host, path)
        assert status == 200 and hostname(body).startswith(app + "-"), (host, path, body[:300])
        assert "x-forwarded-host=" + host in body and "x-forwarded-proto=http" in body
    status, body = fetch(ip, "unknown.example.com", "/")
    assert status == 404 and "default backend - 404" in body
    # the pod's client is the ingress controller (its 'pod IP', where its EndpointSlice points),
    # and X-Forwarded-For holds the node the load balancer went through (externalTrafficPolicy: Cluster)
    ingress_ip = c.get("EndpointSlice", "ingress-kubemu-controller", "kube-system").endpoints[0].addresses[0]
    _, body = fetch(ip, "foo.bar.com", "/")
    assert f"client_address={ingress_ip}" in body
    node_ips = {c.node_ip(n) for n in range(1, c.nodes + 1)}
    assert any(f"x-forwarded-for={n}" in body for n in node_ips), body

    # kubemu get ingress shows the external IP as ADDRESS
    def address_shown():
        out = c.kubemu("get", "ingress").stdout
        rows = [line.split() for line in out.splitlines()[1:]]
        return all(ip in r for r in rows) and len(rows) == 2 and out
    out = c.wait_for(address_shown, 30, message="ADDRESS in `kubemu get ingress`")
    assert out.splitlines()[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert "foo.bar.com,bar.foo.com" in out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_tls_with_curl_resolve(ingress_apps, tmp_path):
    c, ip = ingress_apps
    cert, key = tls.generate_self_signed("https-example.foo.com", ["https-example.foo.com"])
    (tmp_path / "tls.crt").write_bytes(cert)
    c.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": {"name": "testsecret-tls"},
             "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()}})
    c.apply(os.path.join(HERE, "tls-example-ingress.yaml"))

    def curl():
        res = subprocess.run(["curl", "-sS", "--fail", "--max-time", "5", "--cacert", str(tmp_path / "tls.crt"),
                              "--resolve", f"https-example.foo.com:443:{ip}", "https://https-example.foo.com/tls"],
                             capture_output=True, text=True)
        return res.stdout if res.returncode == 0 else None
    out = c.wait_for(curl, 30, message="curl --resolve over TLS through the external IP")
    assert hostname(out).startswith("app1-") and "x-forwarded-proto=https" in out
    out = c.kubemu("get", "ingress", "tls-example-ingress").stdout
    assert "80, 443" in out


def test_pods_replaced_while_requests_flow(ingress_apps):
    c, ip = ingress_apps
    c.apply(os.path.join(HERE, "name-virtual-host-ingress.yaml"))
    c.wait_for(lambda: fetch(ip, "foo.bar.com", "/")[0] == 200, 30, message="routing")
    before = {p.metadata.name for p in c.list("Pod", "default", label_selector="app=app1")}

    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                status, body = fetch(ip, "foo.bar.com", "/")
                results.append((status, hostname(body) if status == 200 else body[:200]))
            except Exception as e:
                results.append((0, repr(e)))
            time.sleep(0.01)

    workers = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        c.kubemu("rollout", "restart", "deployment/app1")

        def replaced():
            pods = c.list("Pod", "default", label_selector="app=app1")
            names = {p.metadata.name for p in pods if not p.metadata.deletionTimestamp}
            ready = [p for p in pods if any(cond.type == "Ready" and cond.status == "True"
                                            for cond in p.status.conditions)]
            return names and not names & before and len(ready) == 2 and len(pods) == 2
        c.wait_for(replaced, 90, message="app1's pods replaced")
        time.sleep(1.0)  # requests keep flowing to the new pods
    finally:
        stop.set()
        for w in workers:
            w.join(10)
    failures = [r for r in results if r[0] != 200]
    served_by = {r[1] for r in results if r[0] == 200}
    assert len(results) > 50
    assert not failures, f"{len(failures)} of {len(results)} requests failed: {failures[:5]}"
    assert served_by & before and served_by - before, "requests reached old and new pods"
