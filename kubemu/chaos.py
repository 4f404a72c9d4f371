"""Chaos rounds against a running cluster while traffic flows, and a report of what was lost.

For a bounded number of rounds: kill (SIGKILL) or pause (SIGSTOP) a random node agent, keep
it down for a while, bring it back, wait until the cluster is whole again. Meanwhile a traffic
generator sends requests, each on a new connection, through every path a client uses:
the ClusterIP, the NodePort on every node, the LoadBalancer IP, and DNS. The report gives
requests sent and failed per path, the longest outage per path, and the time to full recovery
per round.

What must not fail (the exit status says): with a replica surviving on another node, requests
through the ClusterIP and the LoadBalancer, and DNS queries, when node agents are killed. A
NodePort on the dead node fails while it is dead — that is what clients of a dead node see in
Kubernetes too.

A paused agent is a hung node, and there Kubernetes loses requests as well: the node's pods
stop answering but stay ready endpoints until the node lifecycle controller notices the
missed Lease renewals, and connections already accepted (the kernel completes handshakes for a
stopped process) hang until the client gives up. The paused agent's share of the ClusterIP
listener and its NodePorts hang the same way. So pause rounds are reported, not judged.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import threading
import time
from typing import Callable

from kubemu.testing.cluster import Cluster, http_get

WORKLOAD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: chaos-web}
spec:
  replicas: %(replicas)d
  selector: {matchLabels: {app: chaos-web}}
  template:
    metadata: {labels: {app: chaos-web}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/agnhost:2.53
        args: [netexec, --http-port=8080]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          httpGet: {path: /readyz, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: chaos-clusterip}
spec:
  selector: {app: chaos-web}
  ports: [{name: http, port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: chaos-nodeport}
spec:
  type: NodePort
  selector: {app: chaos-web}
  ports: [{name: http, port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: chaos-lb}
spec:
  type: LoadBalancer
  selector: {app: chaos-web}
  ports: [{name: http, port: 8080, targetPort: http}]
"""


@dataclasses.dataclass
class PathStats:
    sent: int = 0
    failed: int = 0
    longest_outage: float = 0.0
    _outage_start: float | None = None
    errors: dict[str, int] = dataclasses.field(default_factory=dict)

    def record(self, ok: bool, now: float, error: str = "") -> None:
        self.sent += 1
        if ok:
            if self._outage_start is not None:
                self.longest_outage = max(self.longest_outage, now - self._outage_start)
                self._outage_start = None
            return
        self.failed += 1
        self.errors[error] = self.errors.get(error, 0) + 1
        if self._outage_start is None:
            self._outage_start = now

    def close(self, now: float) -> None:
        if self._outage_start is not None:
            self.longest_outage = max(self.longest_outage, now - self._outage_start)
            self._outage_start = None


class Traffic:
    """One thread per path, each sending `rate` requests/s on new connections."""

    def __init__(self, paths: dict[str, Callable[[], None]], rate: float):
        self.paths = paths
        self.rate = rate
        self.stats = {name: PathStats() for name in paths}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in paths]

    def _run(self, name: str) -> None:
        send, st = self.paths[name], self.stats[name]
        interval = 1.0 / self.rate
        nxt = time.monotonic()
        while not self._stop.is_set():
            try:
                send()
                st.record(True, time.monotonic())
            except Exception as e:  # every failure is data here
                st.record(False, time.monotonic(), type(e).__name__)
            nxt += interval
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        now = time.monotonic()
        for st in self.stats.values():
            st.close(now)


def _dns_query(server: tuple[str, int], name: str, expect: str) -> Callable[[], None]:
    from dnslib import DNSRecord

    def send() -> None:
        raw = DNSRecord.question(name, "A").send(*server, timeout=2)
        answers = [str(r.rdata) for r in DNSRecord.parse(raw).rr]
        if expect not in answers:
            raise LookupError(f"{name} -> {answers}")
    return send


def run(cluster: Cluster, *, rounds: int, mode: str, down_time: float, rate: float,
        seed: int | None, out=sys.stdout) -> tuple[dict, bool]:
    rng = random.Random(seed)
    nodes = sorted(cluster.status()["nodes"])
    cluster.apply(WORKLOAD % {"replicas": 2 * len(nodes)})
    cluster.wait_deployment("chaos-web", timeout=60)
    cluster.wait_endpoints("chaos-clusterip", 2 * len(nodes), timeout=60)
    cip = cluster.get("Service", "chaos-clusterip")
    np_svc = cluster.get("Service", "chaos-nodeport")
    node_port = np_svc.spec.ports[0].nodePort
    paths: dict[str, Callable[[], None]] = {
        "clusterip": lambda: http_get(cip.spec.clusterIP, 8080, "/hostname", timeout=2),
        "dns": _dns_query(cluster.dns_address, "chaos-clusterip.default.svc.cluster.local", cip.spec.clusterIP),
    }
    for name in nodes:
        ip = cluster.node_ip(int(name.rsplit("-", 1)[1]))
        paths[f"nodeport {name}"] = (lambda ip=ip: http_get(ip, node_port, "/hostname", timeout=2))
    try:
        lb = cluster.wait_for(lambda: (lambda s: s if s.status.loadBalancer.ingress else None)(
            cluster.get("Service", "chaos-lb")), 20, message="a LoadBalancer IP for chaos-lb")
        lb_ip = lb.status.loadBalancer.ingress[0].ip
        paths["loadbalancer"] = lambda: http_get(lb_ip, 8080, "/hostname", timeout=2)
    except TimeoutError:
        print("note: no LoadBalancer IP (is cloud-lb running?); skipping that path", file=out)
    traffic = Traffic(paths, rate)
    traffic.start()
    recoveries = []
    victims = []
    try:
        time.sleep(1.0)  # a baseline before the first fault
        for r in range(rounds):
            victim = rng.choice(nodes)
            how = mode if mode != "mix" else rng.choice(["kill", "pause"])
            victims.append(f"{victim} ({how})")
            print(f"round {r + 1}/{rounds}: {how} {victim} for {down_time:g}s", file=out, flush=True)
            t0 = time.monotonic()
            cluster.node(how, victim)
            time.sleep(down_time)
            cluster.node("start" if how == "kill" else "resume", victim)
            cluster.wait_for(lambda: all(n.get("ready") == "True" for n in cluster.status()["nodes"].values()),
                             60, message="every node Ready again")
            cluster.wait_endpoints("chaos-clusterip", 2 * len(nodes), timeout=60)
            recoveries.append(time.monotonic() - t0 - down_time)
        time.sleep(1.0)
    finally:
        traffic.stop()
    must_not_fail = {"loadbalancer", "clusterip", "dns"} if mode == "kill" else set()
    report = {
        "rounds": rounds, "mode": mode, "victims": victims, "downTime": down_time,
        "recoverySeconds": [round(x, 2) for x in recoveries],
        "paths": {n: {"sent": s.sent, "failed": s.failed, "longestOutage": round(s.longest_outage, 2),
                      "errors": s.errors, "mustNotFail": n in must_not_fail}
                  for n, s in traffic.stats.items()},
    }
    ok = all(s.failed == 0 for n, s in traffic.stats.items() if n in must_not_fail)
    return report, ok


def print_report(report: dict, out=sys.stdout) -> None:
    print(f"\n{'PATH':<18} {'SENT':>6} {'FAILED':>7} {'LONGEST OUTAGE':>15}  MUST NOT FAIL", file=out)
    for name, p in report["paths"].items():
        print(f"{name:<18} {p['sent']:>6} {p['failed']:>7} {p['longestOutage']:>14.2f}s  "
              f"{'yes' if p['mustNotFail'] else 'no'}", file=out)
    rec = report["recoverySeconds"]
    if rec:
        print(f"\ntime to full recovery after the node came back: max {max(rec):.2f}s "
              f"(per round: {', '.join(f'{x:.2f}s' for x in rec)})", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state-dir", help="use this running cluster (default: start a private one)")
    ap.add_argument("--nodes", type=int, default=3, help="nodes of the private cluster")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mode", choices=["kill", "pause", "mix"], default="kill")
    ap.add_argument("--down-time", type=float, default=4.0, help="seconds a node stays down")
    ap.add_argument("--rate", type=float, default=20.0, help="requests/s per path")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--json", help="write the report here too")
    args = ap.parse_args(argv)
    if not 1 <= args.rounds <= 100:
        ap.error("--rounds must be between 1 and 100")
    if not 0 < args.rate <= 200:
        ap.error("--rate must be between 0 and 200 requests/s")
    if args.state_dir:
        cluster = Cluster.attach(args.state_dir)
        own = False
    else:
        cluster = Cluster(nodes=args.nodes, name="chaos")
        print(f"starting a private {args.nodes}-node cluster ...", flush=True)
        cluster.up()
        own = True
    try:
        report, ok = run(cluster, rounds=args.rounds, mode=args.mode, down_time=args.down_time,
                         rate=args.rate, seed=args.seed)
    finally:
        if own:
            cluster.down()
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print("\nOK: no request lost on the paths that must not fail" if ok else
          "\nFAIL: requests were lost on a path that must not fail")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
