"""Benchmark the ingress path against direct-to-pod, in one run.

Setup: a real cluster (`kubemu up` on a private slot, --nodes nodes) with one pod running a
real nginx (a container `command`, so the backend is not the bottleneck and costs the same on
every path), a ClusterIP Service `bench`, a LoadBalancer Service `bench-lb`, and an Ingress
routing host `bench.local` to `bench`.

Targets, taken in turn within each run (the reported figure is the median of --runs runs):
  direct          POD_IP:8080
  clusterIP       VIP:80                          node agent -> pod
  loadBalancer    LB_IP:80 of bench-lb            cloud-lb -> NodePort (node agent) -> pod
  ingress         INGRESS_IP:port, Host header    ingress -> ClusterIP (node agent) -> pod
  ingress+LB      LB_IP:80 of ingress-kubemu      cloud-lb -> NodePort -> ingress -> ClusterIP -> pod
  ingress+LB TLS  LB_IP:443 (TLS ends at the ingress; the default certificate, wrk sends no SNI)

Measures: HTTP requests/s with wrk (-t1 -c50, keep-alive), and the ingress controller's CPU
microseconds per request. The machine is shared, so compare ratios within a run, not across.

    scripts/bench ingress [--runs 5] [--duration 3] [--nodes 1] [--connections 50]

Needs: wrk and nginx (Debian packages).
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import cpu_seconds, wrk  # noqa: E402  (scripts/ is on sys.path when run)

from kubemu.testing.cluster import Cluster  # noqa: E402

NGINX_POD = r"""d=/tmp/kubemu-bench-ingress-$POD_NAME; mkdir -p $d
cat > $d/nginx.conf <<EOF
daemon off; master_process off; worker_processes 1; pid $d/nginx.pid; error_log stderr error;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $d/body; proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi; uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
  keepalive_requests 1000000;
  server { listen $POD_IP:8080; location / { return 200 "hello from $POD_NAME\n"; } }
}
EOF
exec nginx -p $d -c $d/nginx.conf"""


def manifests() -> list[dict]:
    pod = {"metadata": {"labels": {"app": "bench"}},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
               "name": "nginx", "image": "nginx", "command": ["sh", "-c", NGINX_POD],
               "ports": [{"containerPort": 8080, "name": "http"}],
               "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}]}}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "bench"}}, "template": pod}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench"},
         "spec": {"selector": {"app": "bench"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench-lb"},
         "spec": {"type": "LoadBalancer", "selector": {"app": "bench"},
                  "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "bench"},
         "spec": {"rules": [{"host": "bench.local", "http": {"paths": [
             {"path": "/", "pathType": "Prefix",
              "backend": {"service": {"name": "bench", "port": {"name": "http"}}}}]}}]}},
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--connections", type=int, default=50)
    a = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"bench ingress needs {tool} (apt-get install {tool})")

    c = Cluster(nodes=a.nodes, name="bench-ingress")
    c.up(timeout=90)
    try:
        c.apply(manifests())
        c.wait_deployment("bench", timeout=60)
        pod = [p for p in c.list("Pod", "default", label_selector="app=bench") if p.status.podIP][0]

        def lb_ip(ns, name):
            svc = c.get("Service", name, ns)
            return svc.status.loadBalancer.ingress[0].ip if svc.status.loadBalancer.ingress else None
        bench_lb = c.wait_for(lambda: lb_ip("default", "bench-lb"), 60, message="bench-lb's external IP")
        ingress_lb = c.wait_for(lambda: lb_ip("kube-system", "ingress-kubemu"), 60, message="the ingress's IP")
        sl = c.get("EndpointSlice", "ingress-kubemu-controller", "kube-system")
        ingress_ip, ingress_port = sl.endpoints[0].addresses[0], {p.name: p.port for p in sl.ports}["http"]
        vip = c.get("Service", "bench").spec.clusterIP
        targets = {
            "direct": f"http://{pod.status.podIP}:8080/",
            "clusterIP": f"http://{vip}:80/",
            "loadBalancer": f"http://{bench_lb}:80/",
            "ingress": f"http://{ingress_ip}:{ingress_port}/",
            "ingress+LB": f"http://{ingress_lb}:80/",
            "ingress+LB TLS": f"https://{ingress_lb}:443/",
        }
        for name, url in targets.items():  # warm up every path (pools, caches) and check it serves
            out = subprocess.run(["curl", "-sSk", "--max-time", "5", "-H", "Host: bench.local", url],
                                 capture_output=True, text=True)
            if "hello from" not in out.stdout:
                sys.exit(f"{name} ({url}) does not serve: {out.stdout[:200]} {out.stderr[:200]}")
        ingress_pid = c.status().get("components", {}).get("ingress-controller", {}).get("pid")

        print(f"ingress benchmark: {a.runs} runs of {a.duration:g}s, wrk -t1 -c{a.connections} keep-alive; "
              f"{a.nodes} node(s); {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f} at start")
        results: dict[str, list[float]] = {n: [] for n in targets}
        cpu: dict[str, list[float]] = {n: [] for n in targets}
        names = list(targets)
        for run in range(a.runs):
            for name in names[run % len(names):] + names[:run % len(names)]:
                c0 = cpu_seconds(ingress_pid)
                rps = wrk(targets[name], a.duration, connections=a.connections, headers=("Host: bench.local",))
                c1 = cpu_seconds(ingress_pid)
                results[name].append(rps)
                cpu[name].append((c1 - c0) / max(1.0, rps * a.duration) * 1e6)
        base = statistics.median(results["direct"])
        print(f"\n{'path':16s} {'requests/s':>11s}  {'of direct':>9s}  {'ingress CPU':>14s}   runs")
        for name in names:
            med = statistics.median(results[name])
            cpu_txt = f"{statistics.median(cpu[name]):7.1f} us/req" if name.startswith("ingress") else ""
            print(f"{name:16s} {med:11.0f}  {med / base:9.0%}  {cpu_txt:>14s}   {[round(v) for v in results[name]]}")
        print(f"\nload {os.getloadavg()[0]:.2f} at end")
    finally:
        c.down()
        for d in glob.glob("/tmp/kubemu-bench-ingress-bench-*"):  # the nginx pods' prefixes
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
