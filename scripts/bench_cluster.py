"""How fast `kubemu up` brings a cluster up, and what a node costs.

For 3, 10 and 50 nodes (--nodes), median of --runs runs: the wall time of `kubemu up` until
every component is healthy and every node Ready; the resident memory (RSS) of each node
agent and of the control plane once idle; and, from that, how many node agents fit this
machine's memory. The reference is kind's and minikube's published start times (about 30 s
and 50 s); nothing else comparable runs here.

    scripts/bench cluster [--nodes 3 10 50] [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import rss_mib  # noqa: E402  (scripts/ is on sys.path when run)

from kubemu.testing.cluster import Cluster  # noqa: E402


def children_rss_mb(pid: int) -> float:
    """RSS of a process plus its descendants (a node agent's pod processes)."""
    total = rss_mib(pid)
    try:
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        kids = []
    return total + sum(children_rss_mb(int(k)) for k in kids)


def mem_total_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(nodes: int) -> dict:
    cluster = Cluster(nodes=nodes, name=f"bench{nodes}")
    t = time.perf_counter()
    try:
        cluster.up(timeout=120 + nodes * 2)
        up = time.perf_counter() - t
        time.sleep(2)  # let start-up allocations settle before reading memory
        st = cluster.status()
        agents = [rss_mib(n["pid"]) for n in st["nodes"].values() if n.get("pid")]
        control = {name: rss_mib(c["pid"]) for name, c in st["components"].items()}
        return {"up": up, "agent_rss": statistics.median(agents) if agents else float("nan"),
                "control": control}
    finally:
        cluster.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, nargs="+", default=[3, 10, 50])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for n in args.nodes:
        results = []
        for r in range(args.runs):
            print(f"{n} nodes, run {r + 1}/{args.runs} ...", file=sys.stderr, flush=True)
            results.append(one(n))
        up = statistics.median(x["up"] for x in results)
        agent = statistics.median(x["agent_rss"] for x in results)
        control = {k: statistics.median(x["control"].get(k, float("nan")) for x in results)
                   for k in results[0]["control"]}
        rows.append((n, up, agent, control))
    print(f"\n`kubemu up`, median of {args.runs} runs, {os.cpu_count()} cores, {mem_total_mb() / 1024:.0f} GiB\n")
    print("| nodes | up (s) | node agent RSS (MB, median) | control plane RSS (MB) |")
    print("|---|---|---|---|")
    for n, up, agent, control in rows:
        cp = ", ".join(f"{k} {v:.0f}" for k, v in sorted(control.items()))
        print(f"| {n} | {up:.2f} | {agent:.0f} | {cp} |")
    agent = rows[-1][2]
    control_total = sum(rows[-1][3].values())
    fit = int((mem_total_mb() * 0.8 - control_total) / agent) if agent == agent and agent > 0 else 0
    print(f"\nNode agents that fit in 80% of this machine's memory (idle, no pods): about {fit:,}"
          " — CPU, not memory, is the limit on 2 cores: each idle agent renews its Lease every second.")


if __name__ == "__main__":
    main()
