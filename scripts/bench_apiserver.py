"""Benchmark the API server against etcd, both started here on loopback, in one run.

Measures, for kubemu and for etcd (Debian's etcd-server) side by side:
  - durable creates/s and updates/s from 1 and from 8 concurrent clients, with the server's CPU
    per write (steadier than throughput on a shared machine) and the CPU the host stole
  - watch delivery latency p50/p99 with 1, 10 and 50 watchers while a writer does 500 writes/s
    (latency = event received by a watcher - write sent; watchers run in their own process),
    once with a stream per watcher (as many clients would) and, for more than one, once with
    all of them multiplexed over one stream (as one client carries its watches: kubemu's
    client library, etcd's clientv3)
  - List of 10,000 objects (etcd: a prefix Range over 10,000 keys)
Each figure is the median of --runs runs. The etcd payload is the same serialized object.
The harness and the watcher process keep the cyclic GC's full passes off their growing
records (kubemu.process.FreezeSurvivors), which otherwise paused them 9-15 ms: the latency
measured is the servers', for both alike.

    scripts/bench apiserver [--runs 3] [--quick]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import shutil
import statistics
import sys
import tempfile
import time

import grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import cpu_seconds, stolen_seconds  # noqa: E402
from kubemu import objects  # noqa: E402
from kubemu.client import Client  # noqa: E402
from kubemu.process import FreezeSurvivors  # noqa: E402
from kubemu.testing import procs  # noqa: E402
from kubemu.v1 import api_pb2, api_pb2_grpc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

try:  # the harness should cost as little as it can, for both servers alike
    from uvloop import run
except ImportError:
    run = asyncio.run


def etcd_modules(tmp: str):
    from grpc_tools import protoc
    out = os.path.join(tmp, "etcdpb")
    os.makedirs(out, exist_ok=True)
    rc = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}", f"--grpc_python_out={out}",
                      os.path.join(HERE, "etcd_rpc_subset.proto")])
    assert rc == 0, "protoc failed"
    sys.path.insert(0, out)
    import etcd_rpc_subset_pb2 as pb
    import etcd_rpc_subset_pb2_grpc as pbg
    return pb, pbg


def payload(name: str):
    obj = objects.new("Lease", name, "default")
    obj.spec.holderIdentity = name
    obj.metadata.labels["app"] = "bench"
    obj.metadata.annotations["note"] = "x" * 300  # a few hundred bytes, like a small Service
    return obj


# ------------------------------------------------------------------ backends

class Kubemu:
    name = "kubemu"

    def __init__(self, address: str):
        self.address = address

    async def clients(self, n: int):
        return [Client(self.address) for _ in range(n)]

    async def warm(self, c: Client) -> None:  # connect, and open the call stream
        await c.get("Namespace", "default")

    async def create(self, c: Client, name: str) -> int:
        return int((await c.create(payload(name))).metadata.resourceVersion)

    async def update(self, c: Client, name: str, i: int) -> int:
        obj = payload(name)
        obj.spec.leaseTransitions = i
        return int((await c.update(obj)).metadata.resourceVersion)

    async def list_all(self, c: Client, prefix: str) -> int:
        items, _ = await c.list("Lease", "bench-list")
        return len(items)

    async def close(self, clients):
        for c in clients:
            await c.close()


class Etcd:
    name = "etcd"

    def __init__(self, address: str, pb, pbg):
        self.address, self.pb, self.pbg = address, pb, pbg

    async def clients(self, n: int):
        from kubemu.wire import CHANNEL_OPTIONS
        # a connection each, as kubemu's clients have (grpcio would otherwise share one)
        return [grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS + [
            ("grpc.use_local_subchannel_pool", 1)]) for _ in range(n)]

    async def warm(self, ch) -> None:
        await self.pbg.KVStub(ch).Range(self.pb.RangeRequest(key=b"warm"))

    async def create(self, ch, name: str) -> int:
        stub = self.pbg.KVStub(ch)
        resp = await stub.Put(self.pb.PutRequest(key=f"/registry/leases/default/{name}".encode(),
                                                 value=payload(name).SerializeToString()))
        return resp.header.revision

    async def update(self, ch, name: str, i: int) -> int:
        obj = payload(name)
        obj.spec.leaseTransitions = i
        stub = self.pbg.KVStub(ch)
        resp = await stub.Put(self.pb.PutRequest(key=f"/registry/leases/default/{name}".encode(),
                                                 value=obj.SerializeToString()))
        return resp.header.revision

    async def list_all(self, ch, prefix: str) -> int:
        stub = self.pbg.KVStub(ch)
        key = b"/registry/leases/bench-list/"
        resp = await stub.Range(self.pb.RangeRequest(key=key, range_end=key[:-1] + b"0"))
        return len(resp.kvs)

    async def close(self, clients):
        for c in clients:
            await c.close()


# ------------------------------------------------------------------ measurements

async def throughput(backend, op: str, clients: int, total: int, tag: str,
                     server_pid: int) -> tuple[float, float, float]:
    """(writes/s, server CPU µs per write, % of the machine's CPU stolen by the host)"""
    chans = await backend.clients(clients)
    await asyncio.gather(*(backend.warm(c) for c in chans))
    per = total // clients
    if op == "update":  # the objects to update, made by each client in turn
        async def make(k: int):
            for i in range(per):
                await backend.create(chans[k], f"{tag}-{k}-{i}")
        await asyncio.gather(*(make(k) for k in range(clients)))

    async def worker(k: int):
        for i in range(per):
            name = f"{tag}-{k}-{i}"
            if op == "create":
                await backend.create(chans[k], name)
            else:
                await backend.update(chans[k], name, i + 1)
    start, cpu, stolen = time.perf_counter(), cpu_seconds(server_pid), stolen_seconds()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    elapsed = time.perf_counter() - start
    cpu, stolen = cpu_seconds(server_pid) - cpu, stolen_seconds() - stolen
    await backend.close(chans)
    n = per * clients
    return n / elapsed, cpu / n * 1e6, 100 * stolen / (elapsed * os.cpu_count())


def watcher_process(kind: str, address: str, n: int, seconds: float, ready, out, tmp: str, mux: bool):
    """Runs in its own process: n watches, recording (revision, receive time). `mux`: all n
    over one stream (each side's multiplexing), else a stream each."""
    async def main():
        FreezeSurvivors().install()
        recs: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        if kind == "kubemu":
            create = lambda i: api_pb2.WatchRequest(create=api_pb2.WatchCreate(
                watch_id=i + 1, kind="Lease", namespace="bench-watch"))
            open_stream = lambda ch, reqs: api_pb2_grpc.APIStub(ch).Watch(reqs)
            index = lambda resp, order: resp.watch_id - 1
            rev = lambda e: e.resource_version
        else:
            pb, pbg = etcd_modules(tmp)
            key = b"/registry/leases/bench-watch/"
            create = lambda i: pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key, range_end=key[:-1] + b"0"))
            open_stream = lambda ch, reqs: pbg.WatchStub(ch).Watch(reqs)
            index = lambda resp, order: order[resp.watch_id]  # etcd numbers watches itself
            rev = lambda e: e.kv.mod_revision

        async def stream(ids: range):
            ch = grpc.aio.insecure_channel(address)
            q: asyncio.Queue = asyncio.Queue()
            for i in ids:
                q.put_nowait(create(i))

            async def reqs():
                while True:
                    yield await q.get()
            order: dict[int, int] = {}
            async for msg in open_stream(ch, reqs()):
                now = time.time()
                for resp in getattr(msg, "batch", None) or (msg,):
                    if resp.created:
                        order[resp.watch_id] = ids[len(order)]
                        ready.release()
                    if resp.events:
                        r = recs[index(resp, order)]
                        for e in resp.events:
                            r.append((rev(e), now))
        groups = [range(n)] if mux else [range(i, i + 1) for i in range(n)]
        tasks = [asyncio.create_task(stream(g)) for g in groups]
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()
        out.put(recs)
    run(main())


async def watch_latency(backend, address: str, watchers: int, rate: int, seconds: float, tmp: str,
                        mux: bool = False):
    ctx = multiprocessing.get_context("spawn")
    ready, out = ctx.Semaphore(0), ctx.Queue()
    proc = ctx.Process(target=watcher_process,
                       args=(backend.name, address, watchers, seconds + 4, ready, out, tmp, mux))
    proc.start()
    for _ in range(watchers):
        while not ready.acquire(timeout=0.01):
            if not proc.is_alive():
                sys.exit(f"the watcher process exited ({proc.exitcode}) before its watches started")
            await asyncio.sleep(0.01)
    chans = await backend.clients(8)
    await asyncio.gather(*(backend.warm(c) for c in chans))  # connected before the clock starts
    sent: dict[int, float] = {}
    interval = 1.0 / rate
    start = time.perf_counter()

    tag = f"w{watchers}{'m' if mux else ''}"

    async def write(i: int):
        t = time.time()
        c = chans[i % len(chans)]
        if backend.name == "kubemu":
            obj = payload(f"{tag}-{i}")
            obj.metadata.namespace = "bench-watch"
            rev = int((await c.create(obj)).metadata.resourceVersion)
        else:
            stub = backend.pbg.KVStub(c)
            resp = await stub.Put(backend.pb.PutRequest(key=f"/registry/leases/bench-watch/{tag}-{i}".encode(),
                                                        value=payload(f"{tag}-{i}").SerializeToString()))
            rev = resp.header.revision
        sent[rev] = t
    pending = []
    i = 0
    while time.perf_counter() - start < seconds:
        pending.append(asyncio.create_task(write(i)))
        i += 1
        await asyncio.sleep(max(0, start + i * interval - time.perf_counter()))
    await asyncio.gather(*pending)
    achieved = i / (time.perf_counter() - start)
    try:  # the watchers stop by themselves 4 s after the writes; never wait forever
        recs = await asyncio.get_running_loop().run_in_executor(None, lambda: out.get(timeout=seconds + 60))
    except queue.Empty:
        proc.kill()
        sys.exit(f"the watcher process sent no results (alive: {proc.is_alive()}, exit code {proc.exitcode})")
    proc.join(10)
    await backend.close(chans)
    lat = []
    complete = 0
    for r in recs:
        got = {rev: t for rev, t in r}
        if all(rev in got for rev in sent):
            complete += 1
        lat += [(got[rev] - sent[rev]) * 1000 for rev in sent if rev in got]
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
    return p(0.5), p(0.99), complete, achieved


async def list_time(backend, runs: int = 5) -> float:
    chans = await backend.clients(8)
    if backend.name == "kubemu":
        async def mk(k):
            for i in range(1250):
                obj = payload(f"l{k}-{i}")
                obj.metadata.namespace = "bench-list"
                await chans[k].create(obj)
    else:
        async def mk(k):
            stub = backend.pbg.KVStub(chans[k])
            for i in range(1250):
                await stub.Put(backend.pb.PutRequest(key=f"/registry/leases/bench-list/l{k}-{i}".encode(),
                                                     value=payload(f"l{k}-{i}").SerializeToString()))
    await asyncio.gather(*(mk(k) for k in range(8)))
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        n = await backend.list_all(chans[0], "")
        times.append((time.perf_counter() - t) * 1000)
        assert n == 10000, n
    await backend.close(chans)
    return statistics.median(times)


# ------------------------------------------------------------------ servers

def start_kubemu(tmp: str):
    port = procs.free_port()
    state = os.path.join(tmp, "kubemu")
    proc = procs.Proc(procs.kubemu_command("apiserver", "--listen", f"127.0.0.1:{port}",
                                           "--state-dir", state), os.path.join(tmp, "kubemu.log"))
    procs.wait_port("127.0.0.1", port, 15, proc)

    async def namespaces():
        async with Client(f"127.0.0.1:{port}") as c:
            for ns in ("bench-watch", "bench-list"):
                await c.create(objects.new("Namespace", ns))
    asyncio.run(namespaces())
    return proc, f"127.0.0.1:{port}"


def start_etcd(tmp: str):
    etcd = shutil.which("etcd")
    if etcd is None:
        sys.exit("etcd not found: apt-get install etcd-server")
    cport, pport = procs.free_port(), procs.free_port()
    proc = procs.Proc([etcd, "--data-dir", os.path.join(tmp, "etcd"), "--name", "bench",
                       "--listen-client-urls", f"http://127.0.0.1:{cport}",
                       "--advertise-client-urls", f"http://127.0.0.1:{cport}",
                       "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                       "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                       "--initial-cluster", f"bench=http://127.0.0.1:{pport}",
                       "--quota-backend-bytes", str(4 * 1024**3)],
                      os.path.join(tmp, "etcd.log"))
    procs.wait_port("127.0.0.1", cport, 15, proc)
    return proc, f"127.0.0.1:{cport}"


def run_suite(which: str, tmp: str, pb, pbg, args) -> dict:
    proc, address = start_kubemu(tmp) if which == "kubemu" else start_etcd(tmp)
    backend = Kubemu(address) if which == "kubemu" else Etcd(address, pb, pbg)
    res: dict = {}
    try:
        async def go():
            n = args.writes
            res["create_1"] = await throughput(backend, "create", 1, n // 2, "c1", proc.pid)
            res["create_8"] = await throughput(backend, "create", 8, n, "c8", proc.pid)
            res["update_1"] = await throughput(backend, "update", 1, n // 2, "u1", proc.pid)
            res["update_8"] = await throughput(backend, "update", 8, n, "u8", proc.pid)
            for w in args.watchers:
                res[f"watch_{w}"] = await watch_latency(backend, address, w, args.rate, args.seconds, tmp)
                if w > 1:
                    res[f"watch_{w}_mux"] = await watch_latency(backend, address, w, args.rate, args.seconds,
                                                                tmp, mux=True)
            res["list_10000_ms"] = await list_time(backend)
        run(go())
    finally:
        proc.stop()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--writes", type=int, default=2000, help="writes per throughput measurement")
    ap.add_argument("--rate", type=int, default=500, help="writes/s during the watch measurement")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each watch measurement")
    ap.add_argument("--watchers", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--quick", action="store_true", help="one short run (smoke test)")
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.writes, args.seconds, args.watchers = 1, 400, 1.5, [1, 10]
    FreezeSurvivors().install()
    results: dict[str, list[dict]] = {"kubemu": [], "etcd": []}
    with tempfile.TemporaryDirectory(prefix="kubemu-bench-") as tmp:
        pb, pbg = etcd_modules(tmp)
        for r in range(args.runs):
            for which in ("kubemu", "etcd"):  # interleaved, so machine noise hits both alike
                run_dir = os.path.join(tmp, f"{which}-{r}")
                os.makedirs(run_dir)
                print(f"run {r + 1}/{args.runs}: {which} ...", file=sys.stderr, flush=True)
                results[which].append(run_suite(which, run_dir, pb, pbg, args))
    med = lambda which, key, idx=None: statistics.median(
        (x[key] if idx is None else x[key][idx]) for x in results[which])
    print(f"\nAPI server vs etcd, median of {args.runs} run(s) on {os.cpu_count()} cores "
          f"(payload {len(payload('x').SerializeToString())} bytes)\n")
    print("| measurement | kubemu | etcd | kubemu/etcd |\n|---|---|---|---|")
    for key, label in (("create_1", "creates/s, 1 client"), ("create_8", "creates/s, 8 clients"),
                       ("update_1", "updates/s, 1 client"), ("update_8", "updates/s, 8 clients")):
        k, e = med("kubemu", key, 0), med("etcd", key, 0)
        print(f"| {label} | {k:,.0f} | {e:,.0f} | {k / e:.2f} |")
        k, e = med("kubemu", key, 1), med("etcd", key, 1)
        print(f"| {label.split('/')[0].replace('s,', ',')}: server CPU per write (µs) | {k:,.0f} | {e:,.0f} | {k / e:.2f} |")
    for w in args.watchers:
        for key, how in ((f"watch_{w}", "a stream each"), (f"watch_{w}_mux", "one stream")):
            if key not in results["kubemu"][0]:
                continue
            for idx, label in ((0, "p50"), (1, "p99")):
                k, e = med("kubemu", key, idx), med("etcd", key, idx)
                print(f"| watch delivery {label}, {w} watcher(s), {how}, at {args.rate} writes/s (ms) "
                      f"| {k:.1f} | {e:.1f} | {k / e:.2f} |")
            kc = min(x[key][2] for x in results["kubemu"])
            ec = min(x[key][2] for x in results["etcd"])
            kr = med("kubemu", key, 3)
            print(f"| watchers that received every event, {w} watcher(s), {how} (achieved {kr:.0f} writes/s) "
                  f"| {kc}/{w} | {ec}/{w} | |")
    k, e = med("kubemu", "list_10000_ms"), med("etcd", "list_10000_ms")
    print(f"| List of 10,000 objects (ms) | {k:.0f} | {e:.0f} | {k / e:.2f} |")
    steal = lambda which: ", ".join(f"{x['create_8'][2]:.0f}/{x['update_8'][2]:.0f}" for x in results[which])
    print(f"\nCPU stolen by the host during the 8-client creates/updates, % of the machine, per run: "
          f"kubemu {steal('kubemu')}; etcd {steal('etcd')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
