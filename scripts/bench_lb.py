"""Benchmark the cloud LB's two-hop path (LB -> NodePort -> pod) against a direct connection to the
pod, in one run.

Setup: an API server, one real node agent (`kubemu nodeagent`, whose proxy serves the
NodePorts), one real `kubemu cloud-lb`; backends on a pod IP, started here: a sink and an echo
server (Python, blocking, one thread per connection, in a process of their own) and nginx (HTTP).
One selector-less LoadBalancer Service per backend with a hand-made EndpointSlice, so no
controller manager is needed.

Targets, taken in turn within each run (the figure reported is the median of --runs runs):
  direct    the backend on the pod IP
  nodePort  NODE_IP:nodePort through the node agent's proxy (one hop; for reference)
  lbDirect  the cloud LB straight to the pod (allocateLoadBalancerNodePorts: false; one hop,
            the LB's own cost)
  lb        EXTERNAL_IP:port through the cloud LB and then the node agent (two hops: the path
            the target is about)

Measures:
  - bulk TCP throughput: --bulk-mib MiB through one connection into the sink, GiB/s, in 1 MiB
    writes and in 128 KiB writes (iperf3's default)
  - small-message round trip: 64-byte ping-pong on one connection through the echo, p50/p99 us
  - HTTP requests/s with wrk (-t1 -c50 -d --duration): keep-alive, and a new connection per
    request (`Connection: close`)
  - CPU seconds the cloud-lb process used per measurement

    scripts/bench lb [--runs 3] [--duration 4] [--bulk-mib 1024] [--loop uvloop|asyncio] [--json FILE]

Needs wrk and nginx (Debian packages).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import cpu_seconds, wrk  # noqa: E402  (scripts/ is on sys.path when run)

from kubemu import objects  # noqa: E402
from kubemu.client import Client  # noqa: E402
from kubemu.testing import procs  # noqa: E402
from bench_dataplane import backend_script, bulk, nginx_conf, rtt  # noqa: E402  (scripts/ is on sys.path when run)

SINK_PORT, ECHO_PORT, HTTP_PORT = 9000, 9001, 80
TARGETS = ("direct", "nodePort", "lbDirect", "lb")

# ------------------------------------------------------------------ setup


async def create_services(server: str, pod_ip: str) -> None:
    async with Client(server) as c:
        for name, port in (("bulk", SINK_PORT), ("echo", ECHO_PORT), ("http", HTTP_PORT)):
            for svc_name, via_nodes in ((name, True), (f"{name}-direct", False)):
                await c.create(objects.from_dict({
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": svc_name, "namespace": "default"},
                    "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": via_nodes,
                             "ports": [{"name": "p", "port": port, "targetPort": port}]}}))
                if not via_nodes:
                    await c.create(objects.from_dict({
                        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"name": f"{svc_name}-1", "namespace": "default",
                                     "labels": {"kubernetes.io/service-name": svc_name}},
                        "addressType": "IPv4", "ports": [{"name": "p", "port": port, "protocol": "TCP"}],
                        "endpoints": [{"addresses": [pod_ip], "conditions": {"ready": True},
                                       "nodeName": "node-1"}]}))
            await c.create(objects.from_dict({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-1", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "ports": [{"name": "p", "port": port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [pod_ip], "conditions": {"ready": True}, "nodeName": "node-1"}]}))


async def addresses(server: str) -> dict[str, dict[str, tuple[str, int]]]:
    async with Client(server) as c:
        out = {}
        for name in ("bulk", "echo", "http"):
            svc = await c.get("Service", name, "default")
            direct = await c.get("Service", f"{name}-direct", "default")
            ing, ing_d = svc.status.loadBalancer.ingress, direct.status.loadBalancer.ingress
            if not ing or not ing_d:
                return {}
            out[name] = {"lb": (ing[0].ip, svc.spec.ports[0].port), "nodePort": svc.spec.ports[0].nodePort,
                         "lbDirect": (ing_d[0].ip, direct.spec.ports[0].port)}
        return out


def wait_http(host: str, port: int, timeout: float = 20.0) -> None:
    def ok():
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(100).startswith(b"HTTP/1.1 200")
    procs.wait_for(ok, timeout, message=f"HTTP on {host}:{port}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--bulk-mib", type=int, default=1024)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                    help="event loop of the cloud-lb and node-agent processes")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install {tool})")

    slot = procs.claim_slot()
    tmp = tempfile.mkdtemp(prefix="kubemu-bench-lb-")
    env = dict(os.environ, KUBEMU_LOOP=args.loop)
    node_ip, pod_ip = slot.node_ip(1), f"127.{slot.index}.128.10"
    started: list[procs.Proc] = []
    try:
        with procs.apiserver(os.path.join(tmp, "state"), service_cidr=slot.service_cidr) as (_, server):
            agent = procs.Proc(procs.kubemu_command(
                "nodeagent", "--server", server, "--name", "node-1", "--node-ip", node_ip,
                "--pod-cidr", f"127.{slot.index}.128.0/24", "--state-dir", os.path.join(tmp, "node-1"),
                "--log-level", "warning"), os.path.join(tmp, "nodeagent.log"), env=env)
            lb = procs.Proc(procs.kubemu_command("cloud-lb", "--server", server, "--pool", slot.lb_pool,
                                                 "--log-level", "warning"),
                            os.path.join(tmp, "cloud-lb.log"), env=env)
            backends = procs.Proc([sys.executable, "-c", backend_script(pod_ip, SINK_PORT, ECHO_PORT)],
                                  os.path.join(tmp, "backends.log"))
            nginx = procs.Proc(["nginx", "-c", nginx_conf(tmp, pod_ip, HTTP_PORT)], os.path.join(tmp, "nginx.log"))
            started += [agent, lb, backends, nginx]
            procs.wait_port(pod_ip, SINK_PORT, 10, backends)
            asyncio.run(create_services(server, pod_ip))
            addrs = procs.wait_for(lambda: asyncio.run(addresses(server)), 30, interval=0.2,
                                   message="external IPs for the three Services")
            paths = {name: {"direct": (pod_ip, {"bulk": SINK_PORT, "echo": ECHO_PORT, "http": HTTP_PORT}[name]),
                            "nodePort": (node_ip, a["nodePort"]), "lbDirect": a["lbDirect"], "lb": a["lb"]}
                     for name, a in addrs.items()}
            for target in TARGETS:
                wait_http(*paths["http"][target])
            results = run(paths, args, lb.pid)
    finally:
        for p in reversed(started):
            p.stop()
        slot.release()
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, args)


def run(paths, args, lb_pid: int) -> dict:
    """Every measure for every target, --runs times, targets taken in turn within a run."""
    measures = ("bulk", "bulk_128k", "rtt_p50", "rtt_p99", "http_keepalive", "http_close")
    res: dict = {t: {m: [] for m in measures + ("lb_cpu_bulk", "lb_cpu_http")} for t in TARGETS}
    for r in range(args.runs):
        print(f"run {r + 1}/{args.runs}", file=sys.stderr)
        for t in TARGETS:
            c0 = cpu_seconds(lb_pid)
            res[t]["bulk"].append(bulk(*paths["bulk"][t], args.bulk_mib))
            res[t]["lb_cpu_bulk"].append(cpu_seconds(lb_pid) - c0)
            res[t]["bulk_128k"].append(bulk(*paths["bulk"][t], args.bulk_mib, 128))
        for t in TARGETS:
            p50, p99 = rtt(*paths["echo"][t], n=10000)
            res[t]["rtt_p50"].append(p50)
            res[t]["rtt_p99"].append(p99)
        for t in TARGETS:
            c0 = cpu_seconds(lb_pid)
            res[t]["http_keepalive"].append(wrk("http://%s:%d/" % paths["http"][t], args.duration))
            res[t]["http_close"].append(wrk("http://%s:%d/" % paths["http"][t], args.duration, close=True))
            res[t]["lb_cpu_http"].append(cpu_seconds(lb_pid) - c0)
    return {t: {m: statistics.median(v) for m, v in ms.items()} for t, ms in res.items()}


def report(results: dict, args) -> None:
    d, n, ld, lb = results["direct"], results["nodePort"], results["lbDirect"], results["lb"]
    rows = [
        ("bulk throughput (GiB/s)", "bulk", "{:.2f}", True),
        ("bulk, 128 KiB writes (GiB/s)", "bulk_128k", "{:.2f}", True),
        ("round trip p50 (us)", "rtt_p50", "{:.0f}", False),
        ("round trip p99 (us)", "rtt_p99", "{:.0f}", False),
        ("HTTP keep-alive (req/s)", "http_keepalive", "{:,.0f}", True),
        ("HTTP new connection (req/s)", "http_close", "{:,.0f}", True),
    ]
    print(f"\ncloud LB benchmark: median of {args.runs} runs, {args.bulk_mib} MiB bulk, wrk -t1 -c50 "
          f"{args.duration:g}s, loop {args.loop}, {os.cpu_count()} CPUs")
    print(f"{'measure':<30}{'direct':>12}{'nodePort':>12}{'lbDirect':>12}{'lb':>12}{'lb/direct':>12}")
    for label, key, fmt, higher_better in rows:
        ratio = lb[key] / d[key] if higher_better else lb[key] - d[key]
        rtxt = f"{ratio:.0%}" if higher_better else f"+{ratio:.0f} us"
        print(f"{label:<30}{fmt.format(d[key]):>12}{fmt.format(n[key]):>12}{fmt.format(ld[key]):>12}"
              f"{fmt.format(lb[key]):>12}{rtxt:>12}")
    for t in ("lbDirect", "lb"):
        r = results[t]
        print(f"cloud-lb CPU seconds ({t}): bulk {r['lb_cpu_bulk']:.2f} s for {args.bulk_mib} MiB; "
              f"HTTP {r['lb_cpu_http']:.2f} s over {2 * args.duration:g} s of wrk")
    for key, writes in (("bulk_128k", "128 KiB"), ("bulk", "1 MiB")):
        verdict = lb[key] / d[key]
        print(f"target: LB path at least 50% of direct throughput, {writes} writes -> {verdict:.0%} "
              f"({'met' if verdict >= 0.5 else 'NOT met'})")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"results": results, "runs": args.runs, "bulkMiB": args.bulk_mib,
                       "duration": args.duration, "loop": args.loop}, f, indent=2)


if __name__ == "__main__":
    main()
