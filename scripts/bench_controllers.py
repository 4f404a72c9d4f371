#!/usr/bin/env python3
"""Endpoint programming latency of the controller manager (`scripts/bench controllers`).

What is measured: the time from a write that changes a pod's endpoint (its Ready condition
flips, or it is deleted and starts terminating) to the moment a watcher of EndpointSlices sees
the slice change: API server -> controller manager (informer, queue, sync) -> API server ->
watcher. Samples are taken one at a time (a latency, not a throughput test), on a cluster of
S Services with P pods each, spread over N nodes whose Leases are renewed every second.

Baseline, measured in the same run with the same method: the time from a pod status write to
a watcher of Pods seeing it (one API round trip plus one watch delivery). The endpoint path is
two such trips plus the controller's work, so ~2x the baseline is the floor.

Every configuration runs --runs times on a fresh API server and controller manager; the
report gives the median of the runs' p50 and p99. Example:
    scripts/bench controllers --services 100,1000 --pods-per-service 5 --runs 3
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import rss_mib  # noqa: E402  (scripts/ is on sys.path when run)

from kubemu import errors, objects  # noqa: E402
from kubemu.client import Client  # noqa: E402
from kubemu.testing import procs  # noqa: E402

NS = "bench"


def now_micro() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_sec() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(q / 100 * (len(v) - 1)))))
    return v[k]


def _copy(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out


# ------------------------------------------------------------------ the cluster's objects

def pod_obj(name: str, svc: int, node: str) -> object:
    return objects.from_dict({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"app": f"svc-{svc}"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 30,
                 "containers": [{"name": "app", "image": "registry.k8s.io/echoserver:1.10",
                                 "ports": [{"name": "http", "containerPort": 8080}]}]}})


def set_running(pod, ip: str, ready: bool = True):
    new = _copy(pod)
    st = new.status
    st.phase = "Running"
    st.podIP = ip
    del st.podIPs[:]
    st.podIPs.add(ip=ip)
    st.ClearField("conditions")
    t = now_sec()
    for c in ("Initialized", "Ready", "ContainersReady", "PodScheduled"):
        st.conditions.add(type=c, status="True" if ready or c in ("Initialized", "PodScheduled") else "False",
                          lastTransitionTime=t)
    return new


async def gather_chunked(coros, size: int = 200):
    out = []
    coros = list(coros)
    for i in range(0, len(coros), size):
        out += await asyncio.gather(*coros[i:i + size])
    return out


class Nodes:
    """N nodes that stay healthy: Node objects Ready, Leases renewed every second."""

    def __init__(self, client: Client, n: int):
        self.client = client
        self.names = [f"node-{i}" for i in range(1, n + 1)]
        self.task: asyncio.Task | None = None

    async def register(self):
        for name in self.names:
            node = objects.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
            node = await self.client.create(node)
            node.status.conditions.add(type="Ready", status="True", reason="KubeletReady",
                                       lastHeartbeatTime=now_sec(), lastTransitionTime=now_sec())
            node.status.addresses.add(type="InternalIP", address=f"127.10.0.{len(self.names)}")
            await self.client.update_status(node)
            lease = objects.new("Lease", name, "kube-node-lease")
            lease.spec.holderIdentity, lease.spec.leaseDurationSeconds, lease.spec.renewTime = name, 40, now_micro()
            await self.client.create(lease)
        self.task = asyncio.create_task(self._renew())

    async def _renew_one(self, name: str):
        try:
            lease = await self.client.get("Lease", name, "kube-node-lease")
            lease.spec.renewTime = now_micro()
            await self.client.update(lease)
        except errors.ApiError:
            pass

    async def _renew(self):
        while True:
            await asyncio.sleep(1.0)
            await asyncio.gather(*(self._renew_one(n) for n in self.names))

    def stop(self):
        if self.task:
            self.task.cancel()


class Watcher:
    """Endpoints as EndpointSlice watchers see them, and pods as Pod watchers see them, with
    waiters resolved at the moment the matching event batch arrives."""

    def __init__(self, client: Client):
        self.client = client
        self.endpoints: dict[str, tuple[bool, bool]] = {}  # pod name -> (ready, terminating)
        self.members: dict[str, set[str]] = {}  # slice name -> pod names
        self.pods: dict[str, object] = {}
        self.slice_waiters: dict[str, tuple] = {}
        self.pod_waiters: dict[str, tuple] = {}
        self.tasks: list[asyncio.Task] = []

    async def start(self):
        items, rev = await self.client.list("EndpointSlice", NS)
        for s in items:
            self._slice("ADDED", s)
        self.tasks.append(asyncio.create_task(self._watch_slices(rev)))
        pods, prev = await self.client.list("Pod", NS)
        self.pods = {p.metadata.name: p for p in pods}
        self.tasks.append(asyncio.create_task(self._watch_pods(prev)))

    def stop(self):
        for t in self.tasks:
            t.cancel()

    def _slice(self, type_: str, s) -> None:
        name = s.metadata.name
        old = self.members.get(name, set())
        if type_ == "DELETED":
            new = set()
        else:
            new = set()
            for e in s.endpoints:
                pod = e.targetRef.name
                new.add(pod)
                self.endpoints[pod] = (e.conditions.ready, e.conditions.terminating)
        for pod in old - new:
            self.endpoints.pop(pod, None)
        self.members[name] = new

    async def _watch_slices(self, rev):
        async for batch in self.client.watch("EndpointSlice", NS, resource_version=rev):
            t = time.perf_counter()
            for ev in batch:
                if ev.type != "BOOKMARK":
                    self._slice(ev.type, ev.object)
            for pod, (pred, fut) in list(self.slice_waiters.items()):
                if pred(self.endpoints.get(pod)) and not fut.done():
                    fut.set_result(t)
                    del self.slice_waiters[pod]

    async def _watch_pods(self, rev):
        async for batch in self.client.watch("Pod", NS, resource_version=rev):
            t = time.perf_counter()
            for ev in batch:
                if ev.type == "DELETED":
                    self.pods.pop(ev.object.metadata.name, None)
                elif ev.type != "BOOKMARK":
                    self.pods[ev.object.metadata.name] = ev.object
            for pod, (pred, fut) in list(self.pod_waiters.items()):
                if pred(self.pods.get(pod)) and not fut.done():
                    fut.set_result(t)
                    del self.pod_waiters[pod]

    def wait_endpoint(self, pod: str, pred) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if pred(self.endpoints.get(pod)):
            fut.set_result(time.perf_counter())
        else:
            self.slice_waiters[pod] = (pred, fut)
        return fut

    def wait_pod(self, pod: str, pred) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.pod_waiters[pod] = (pred, fut)
        return fut

    def ready_count(self) -> int:
        return sum(1 for r, _ in self.endpoints.values() if r)


# ------------------------------------------------------------------ one run

async def one_run(args, services: int, log) -> dict:
    tmp = tempfile.mkdtemp(prefix="kubemu-bench-ctl-")
    slot = procs.claim_slot()
    result: dict = {"services": services, "pods": services * args.pods_per_service}
    try:
        with procs.apiserver(os.path.join(tmp, "state"), service_cidr=slot.service_cidr) as (_, address):
            # Kubernetes' default node grace (40 s) and eviction timeout (300 s): the setup floods
            # the API server with 10,000+ writes, which can delay lease renewals past kubemu's
            # 3 s default, and evicting pods is not what this benchmark measures.
            cm = procs.Proc(procs.kubemu_command("controller-manager", "--server", address, "--service-cidr",
                                                 slot.service_cidr, "--log-level", "warning",
                                                 "--node-monitor-grace-period", "40",
                                                 "--pod-eviction-timeout", "300"),
                            os.path.join(tmp, "controller-manager.log"))
            client = Client(address)
            nodes = Nodes(client, args.nodes)
            watcher = Watcher(client)
            try:
                t0 = time.perf_counter()
                await client.create(objects.from_dict({"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": NS}}))
                await nodes.register()
                await gather_chunked(client.create(objects.from_dict({
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}", "namespace": NS},
                    "spec": {"selector": {"app": f"svc-{i}"},
                             "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
                    for i in range(services))
                ips = (f"127.244.{i // 250}.{i % 250 + 1}" for i in itertools.count())
                specs = [(f"svc-{i}-p{j}", i, nodes.names[(i * args.pods_per_service + j) % len(nodes.names)])
                         for i in range(services) for j in range(args.pods_per_service)]
                created = await gather_chunked(client.create(pod_obj(n, i, node)) for n, i, node in specs)
                pods = {p.metadata.name: p for p in await gather_chunked(
                    client.update_status(set_running(p, next(ips))) for p in created)}
                log(f"  created {len(pods)} pods in {time.perf_counter() - t0:.1f}s")
                await watcher.start()
                total = services * args.pods_per_service
                deadline = time.monotonic() + 600
                while watcher.ready_count() < total:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"only {watcher.ready_count()}/{total} endpoints ready")
                    if not cm.alive():
                        raise RuntimeError("controller manager died:\n" + cm.output()[-3000:])
                    await asyncio.sleep(0.1)
                result["setup_s"] = time.perf_counter() - t0
                log(f"  setup: {services} services, {total} pods, all endpoints ready in {result['setup_s']:.1f}s")
                await asyncio.sleep(2.0)  # let the controllers' own follow-ups settle

                names = sorted(pods)
                base, flip, delete = [], [], []
                # baseline: pod status write -> pod watcher
                for _ in range(args.samples):
                    name = random.choice(names)
                    ready = not any(c.type == "Ready" and c.status == "True" for c in pods[name].status.conditions)
                    want = "True" if ready else "False"
                    fut = watcher.wait_pod(name, lambda p, w=want: p is not None and any(
                        c.type == "Ready" and c.status == w for c in p.status.conditions))
                    start = time.perf_counter()
                    pods[name] = await client.update_status(set_running(pods[name], pods[name].status.podIP, ready))
                    base.append((await asyncio.wait_for(fut, 10) - start) * 1000)
                    # the endpoint follows too; wait for it so samples do not overlap
                    await asyncio.wait_for(watcher.wait_endpoint(name, lambda e, r=ready: e is not None and e[0] == r), 10)
                    await asyncio.sleep(random.uniform(0, args.gap))
                # endpoint latency: Ready flips
                for _ in range(args.samples):
                    name = random.choice(names)
                    ready = not any(c.type == "Ready" and c.status == "True" for c in pods[name].status.conditions)
                    start = time.perf_counter()
                    fut = watcher.wait_endpoint(name, lambda e, r=ready: e is not None and e[0] == r)
                    pods[name] = await client.update_status(set_running(pods[name], pods[name].status.podIP, ready))
                    flip.append((await asyncio.wait_for(fut, 10) - start) * 1000)
                    await asyncio.sleep(random.uniform(0, args.gap))
                # endpoint latency: graceful deletion (the endpoint turns terminating)
                serial = itertools.count()
                for _ in range(args.delete_samples):
                    name = random.choice(names)
                    old = pods.pop(name)
                    names.remove(name)
                    fut = watcher.wait_endpoint(name, lambda e: e is not None and e[1])
                    start = time.perf_counter()
                    await client.delete("Pod", name, NS)
                    delete.append((await asyncio.wait_for(fut, 10) - start) * 1000)
                    # as the kubelet: finish the deletion, and start a replacement
                    await client.delete("Pod", name, NS, grace_period_seconds=0)
                    svc = int(old.metadata.labels["app"].split("-")[1])
                    new_name = f"svc-{svc}-r{next(serial)}"
                    p = await client.create(pod_obj(new_name, svc, old.spec.nodeName))
                    pods[new_name] = await client.update_status(set_running(p, old.status.podIP))
                    names.append(new_name)
                    await asyncio.wait_for(watcher.wait_endpoint(new_name, lambda e: e is not None and e[0]), 10)
                    await asyncio.sleep(random.uniform(0, args.gap))
                result.update(
                    baseline_p50=percentile(base, 50), baseline_p99=percentile(base, 99),
                    ready_p50=percentile(flip, 50), ready_p99=percentile(flip, 99),
                    delete_p50=percentile(delete, 50), delete_p99=percentile(delete, 99),
                    cm_rss_mb=rss_mib(cm.pid))
                log("  baseline p50 {baseline_p50:.1f} ms p99 {baseline_p99:.1f} ms | ready flip p50 "
                    "{ready_p50:.1f} ms p99 {ready_p99:.1f} ms | delete p50 {delete_p50:.1f} ms p99 "
                    "{delete_p99:.1f} ms | controller manager RSS {cm_rss_mb:.0f} MB".format(**result))
                if "Traceback" in cm.output():
                    raise RuntimeError("controller manager logged a traceback:\n" + cm.output()[-3000:])
            finally:
                watcher.stop()
                nodes.stop()
                await client.close()
                cm.stop()
    finally:
        slot.release()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--services", default="100,1000", help="comma-separated Service counts")
    p.add_argument("--pods-per-service", type=int, default=5)
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--samples", type=int, default=200, help="samples per measurement per run")
    p.add_argument("--delete-samples", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--gap", type=float, default=0.02, help="max random pause between samples (s)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every process this benchmark started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    def log(msg: str) -> None:
        print(msg, flush=True)

    log(f"command: scripts/bench controllers {' '.join(sys.argv[1:])}")
    summary = []
    for services in (int(s) for s in args.services.split(",")):
        runs = []
        for r in range(args.runs):
            log(f"{services} services x {args.pods_per_service} pods, run {r + 1}/{args.runs}")
            runs.append(asyncio.run(one_run(args, services, log)))
        med = {k: statistics.median(run[k] for run in runs) for k in runs[0] if isinstance(runs[0][k], float)}
        med.update(services=services, pods=services * args.pods_per_service, runs=len(runs))
        summary.append(med)
    log("")
    log("| Services | pods | baseline p50 / p99 (ms) | Ready flip p50 / p99 (ms) | deletion p50 / p99 (ms) "
        "| flip p50 / baseline p50 | setup (s) | controller manager RSS (MB) |")
    log("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in summary:
        log(f"| {m['services']} | {m['pods']} | {m['baseline_p50']:.1f} / {m['baseline_p99']:.1f} "
            f"| {m['ready_p50']:.1f} / {m['ready_p99']:.1f} | {m['delete_p50']:.1f} / {m['delete_p99']:.1f} "
            f"| {m['ready_p50'] / m['baseline_p50']:.2f}x | {m['setup_s']:.0f} | {m['cm_rss_mb']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
