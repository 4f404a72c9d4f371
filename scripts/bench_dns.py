"""Benchmark `kubemu dns` against C servers answering the same names, in one run.

Setup: an API server with N Services (10,000 by default, Service names `svc-NNNNN` in the
namespace `bench`, cluster IPs allocated by the API server); `kubemu dns` fed from it; dnsmasq
and unbound (Debian packages) loaded with the same N names and addresses as static records.

Measures, each the median of --runs runs, servers taken in turn within each run:
  - throughput: dnsperf over the N names (UDP, 100 queries outstanding, --duration seconds):
    queries/s, and the ratio to each C server
  - CPU time of the server process per query during the throughput run (the figure least
    disturbed by other load on the machine)
  - latency at a fixed 10,000 queries/s: p50/p99 from dnsperf's per-query times (-v)
  - kubemu's cache-miss path alone (a second instance with --cache-size 1)
  - kubemu on asyncio's own event loop instead of uvloop (KUBEMU_LOOP=asyncio), and with the
    event loop's datagram protocol instead of reading the UDP socket directly
    (KUBEMU_DNS_UDP=protocol)
  - DNS programming latency: a Service created (or an ExternalName retargeted, or deleted)
    through the API server -> the new answer seen by a client polling the DNS server; measured
    from the write request and from the write's acknowledgement

    scripts/bench dns [--names 10000] [--runs 5] [--duration 5] [--changes 100] [--quick] [--rt]

Needs: dnsperf, dnsmasq (dnsmasq-base), unbound (Debian packages).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import cpu_seconds  # noqa: E402  (scripts/ is on sys.path when run)

from dnslib import DNSRecord  # noqa: E402

from kubemu.client import Client  # noqa: E402
from kubemu.dns import testing as t  # noqa: E402
from kubemu.testing import procs  # noqa: E402

NS = "bench"
ZONE = "cluster.local"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


# ------------------------------------------------------------------ cluster objects


async def create_services(api: str, n: int) -> dict[str, str]:
    """N Services, created 64 at a time; returns name -> cluster IP."""
    out: dict[str, str] = {}
    async with Client(api) as c:
        await c.create(t.namespace(NS))
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                svc = await c.create(t.service(f"svc-{i:05d}", NS))
                out[svc.metadata.name] = svc.spec.clusterIP
        await asyncio.gather(*(one(i) for i in range(n)))
    return out


# ------------------------------------------------------------------ servers


class Server:
    name = ""

    def __init__(self, port: int):
        self.port = port
        self.proc: procs.Proc | None = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


class Kubemu(Server):
    def __init__(self, port: int, api: str, tmp: str, *extra: str, name: str = "kubemu",
                 env: dict | None = None):
        super().__init__(port)
        self.name = name
        self.proc = procs.Proc(procs.kubemu_command(
            "dns", "--server", api, "--listen", f"127.0.0.1:{port}", "--upstream", "none",
            "--log-level", "warning", *extra), os.path.join(tmp, f"{name}.log"),
            env={**os.environ, **(env or {})})
        procs.wait_port("127.0.0.1", port, 20, self.proc)


class Dnsmasq(Server):
    name = "dnsmasq"

    def __init__(self, port: int, records: dict[str, str], tmp: str):
        super().__init__(port)
        conf = os.path.join(tmp, "dnsmasq.conf")
        with open(conf, "w") as f:
            f.write(f"port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n"
                    f"no-poll\nlocal=/{ZONE}/\ncache-size=0\nuser=root\n")
            for name, ip in records.items():
                f.write(f"host-record={name}.{NS}.svc.{ZONE},{ip}\n")
        self.proc = procs.Proc(["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}",
                                f"--pid-file={tmp}/dnsmasq.pid"], os.path.join(tmp, "dnsmasq.log"))
        procs.wait_port("127.0.0.1", port, 10, self.proc)


class Unbound(Server):
    name = "unbound"

    def __init__(self, port: int, records: dict[str, str], tmp: str):
        super().__init__(port)
        conf = os.path.join(tmp, "unbound.conf")
        with open(conf, "w") as f:
            f.write(f"""server:
  interface: 127.0.0.1
  port: {port}
  do-daemonize: no
  num-threads: 1
  chroot: ""
  username: ""
  directory: "{tmp}"
  pidfile: "{tmp}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  do-ip6: no
  so-rcvbuf: 4m
  so-sndbuf: 4m
  local-zone: "{ZONE}." static
""")
            for name, ip in records.items():
                f.write(f'  local-data: "{name}.{NS}.svc.{ZONE}. 5 IN A {ip}"\n')
        self.proc = procs.Proc(["unbound", "-d", "-c", conf], os.path.join(tmp, "unbound.log"))
        procs.wait_port("127.0.0.1", port, 20, self.proc)


def answers(server: Server, name: str, ip: str) -> bool:
    r = t.query("127.0.0.1", server.port, f"{name}.{NS}.svc.{ZONE}", timeout=1)
    return t.addresses(r) == [ip]


# ------------------------------------------------------------------ dnsperf


def realtime(pid: int, on: bool) -> None:
    """SCHED_FIFO for every thread of `pid` (on) or back to SCHED_OTHER (off)."""
    args = ["-f", "-p", "10"] if on else ["-o", "-p", "0"]
    subprocess.run(["chrt", "-a", *args, str(pid)], check=True, capture_output=True)


def dnsperf(port: int, names_file: str, duration: float, *, rate: int | None = None,
            verbose: bool = False, outstanding: int = 100, rt: bool = False) -> dict:
    cmd = (["chrt", "-f", "10"] if rt else []) + ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", names_file, "-l", str(duration),
           "-q", str(outstanding), "-c", "4", "-t", "2"]
    if rate:
        cmd += ["-Q", str(rate)]
    if verbose:
        cmd += ["-v"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    lost = float(re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", out).group(1))
    res = {"qps": qps, "lost_pct": lost}
    if verbose:
        lat = [float(m) for m in re.findall(r"^> \w+ \S+ \S+ ([\d.]+)$", out, re.M)]
        if lat:
            res["p50_ms"] = pct(lat, 50) * 1000
            res["p99_ms"] = pct(lat, 99) * 1000
    return res


# ------------------------------------------------------------------ programming latency


async def programming_latency(api: str, port: int, n: int) -> dict[str, list[float]]:
    """Create, retarget and delete Services; time until a polling client sees each change."""
    loop = asyncio.get_running_loop()

    class Poller(asyncio.DatagramProtocol):
        def __init__(self):
            self.q: asyncio.Queue = asyncio.Queue()

        def datagram_received(self, data, addr):
            self.q.put_nowait(data)

    transport, proto = await loop.create_datagram_endpoint(Poller, remote_addr=("127.0.0.1", port))

    async def ask(name: str, qtype: str = "A") -> DNSRecord:
        q = DNSRecord.question(name, qtype)
        transport.sendto(bytes(q.pack()))
        while True:
            r = DNSRecord.parse(await asyncio.wait_for(proto.q.get(), 2))
            if r.header.id == q.header.id:
                return r

    async def until(name: str, pred, qtype: str = "A") -> float:
        while True:
            if pred(await ask(name, qtype)):
                return time.perf_counter()
            await asyncio.sleep(0.0005)

    out: dict[str, list[float]] = {k: [] for k in ("create", "create_from_ack", "retarget", "delete")}
    async with Client(api) as c:
        for i in range(n):
            name = f"lat-{i:04d}"
            fq = f"{name}.{NS}.svc.{ZONE}"
            t0 = time.perf_counter()
            created = c.create(t.service(name, NS))
            svc = await created
            t_ack = time.perf_counter()
            ip = svc.spec.clusterIP
            t1 = await until(fq, lambda r: t.addresses(r) == [ip])
            out["create"].append(t1 - t0)
            out["create_from_ack"].append(t1 - t_ack)
            # an ExternalName retargeted
            ext = f"ext-{i:04d}"
            await c.create(t.service(ext, NS, type="ExternalName", external_name="a.example"))
            await until(f"{ext}.{NS}.svc.{ZONE}", lambda r: any(str(x.rdata) == "a.example." for x in r.rr), "CNAME")
            cur = await c.get("Service", ext, NS)
            cur.spec.externalName = "b.example"
            t0 = time.perf_counter()
            await c.update(cur)
            t1 = await until(f"{ext}.{NS}.svc.{ZONE}", lambda r: any(str(x.rdata) == "b.example." for x in r.rr), "CNAME")
            out["retarget"].append(t1 - t0)
            t0 = time.perf_counter()
            await c.delete("Service", name, NS)
            t1 = await until(fq, lambda r: r.header.rcode == 3)
            out["delete"].append(t1 - t0)
            await c.delete("Service", ext, NS)
    transport.close()
    return out


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per dnsperf run")
    ap.add_argument("--rate", type=int, default=10000, help="queries/s of the latency runs")
    ap.add_argument("--changes", type=int, default=100, help="changes timed for programming latency")
    ap.add_argument("--quick", action="store_true", help="1,000 names, 1 run, 3 s, 20 changes")
    ap.add_argument("--rt", action="store_true",
                    help="run the fixed-rate latency measurement (server and dnsperf) under SCHED_FIFO, "
                         "so other load on a shared machine does not dominate p99 (needs root; the "
                         "rate is fixed, so this cannot starve the machine)")
    args = ap.parse_args()
    if args.quick:
        args.names, args.runs, args.duration, args.changes = 1000, 1, 3.0, 20
    for tool in ("dnsperf", "dnsmasq", "unbound"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install dnsperf dnsmasq-base unbound")

    load_before = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="kubemu-bench-dns-")
    slot = procs.claim_slot()
    servers: list[Server] = []
    try:
        cidr = f"127.{slot.index}.0.0/16"
        with procs.apiserver(os.path.join(tmp, "api"), service_cidr=cidr) as (_, api):
            t0 = time.time()
            records = procs.run(create_services(api, args.names), timeout=3600)
            print(f"created {len(records)} Services in {time.time() - t0:.1f}s", flush=True)
            names_file = os.path.join(tmp, "names.txt")
            with open(names_file, "w") as f:
                for name in sorted(records):
                    f.write(f"{name}.{NS}.svc.{ZONE} A\n")
            last = max(records)
            kub = Kubemu(procs.free_port(), api, tmp)
            miss = Kubemu(procs.free_port(), api, tmp, "--cache-size", "1", name="kubemu-nocache")
            aio = Kubemu(procs.free_port(), api, tmp, name="kubemu-asyncio", env={"KUBEMU_LOOP": "asyncio"})
            proto = Kubemu(procs.free_port(), api, tmp, name="kubemu-protocol", env={"KUBEMU_DNS_UDP": "protocol"})
            dm = Dnsmasq(procs.free_port(), records, tmp)
            ub = Unbound(procs.free_port(), records, tmp)
            servers = [kub, miss, aio, proto, dm, ub]
            for s in servers:
                procs.wait_for(lambda: answers(s, last, records[last]), 120, message=f"{s.name} to answer")
            # one pass over every name first: the runs measure a warm answer cache (a cold one is
            # what kubemu-nocache measures)
            for s in servers:
                subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(s.port), "-d", names_file,
                                "-n", "1", "-q", "20"], capture_output=True, timeout=600)
            results: dict[str, dict[str, list[float]]] = {s.name: {} for s in servers}
            for run in range(args.runs):
                order = servers[run % len(servers):] + servers[:run % len(servers)]
                for s in order:
                    cpu0 = cpu_seconds(s.proc.pid)
                    tp = dnsperf(s.port, names_file, args.duration)
                    cpu_us = (cpu_seconds(s.proc.pid) - cpu0) / max(1.0, tp["qps"] * args.duration) * 1e6
                    if args.rt:
                        realtime(s.proc.pid, True)
                    try:
                        lat = dnsperf(s.port, names_file, min(args.duration, 5), rate=args.rate,
                                      verbose=True, rt=args.rt)
                    finally:
                        if args.rt:
                            realtime(s.proc.pid, False)
                    r = results[s.name]
                    r.setdefault("qps", []).append(tp["qps"])
                    r.setdefault("cpu_us", []).append(cpu_us)
                    r.setdefault("lost_pct", []).append(tp["lost_pct"])
                    r.setdefault("qps_at_rate", []).append(lat["qps"])
                    r.setdefault("p50_ms", []).append(lat.get("p50_ms", float("nan")))
                    r.setdefault("p99_ms", []).append(lat.get("p99_ms", float("nan")))
                    print(f"run {run + 1} {s.name:16s} {tp['qps']:9.0f} qps (lost {tp['lost_pct']:.2f}%, "
                          f"{cpu_us:.1f} us CPU/query)  "
                          f"at {args.rate}/s: p50 {lat.get('p50_ms', 0):.3f} ms p99 {lat.get('p99_ms', 0):.3f} ms",
                          flush=True)
            for s in (miss, aio, proto, dm, ub):
                s.stop()
            prog = procs.run(programming_latency(api, kub.port, args.changes), timeout=3600)
    finally:
        for s in servers:
            s.stop()
        slot.release()
        shutil.rmtree(tmp, ignore_errors=True)

    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    print()
    print(f"(machine: {os.cpu_count()} CPUs, load average {load_before:.1f} before and "
          f"{os.getloadavg()[0]:.1f} after the run)")
    print()
    print(f"## DNS, {args.names} names, median of {args.runs} runs "
          f"(dnsperf -q 100 -c 4, {args.duration:g} s; latency at {args.rate} qps"
          f"{', SCHED_FIFO' if args.rt else ''})")
    print()
    def ratio(name: str, ref: str, key: str = "qps") -> float:
        """Median over runs of the per-run ratio: both measured minutes apart at most."""
        return statistics.median(a / b for a, b in zip(results[name][key], results[ref][key]))

    print("| server | queries/s | vs dnsmasq | vs unbound | CPU per query | p50 at {0}/s | p99 at {0}/s |"
          .format(args.rate))
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m['qps']:,.0f} | {ratio(name, 'dnsmasq'):.2f} | "
              f"{ratio(name, 'unbound'):.2f} | {m['cpu_us']:.1f} us | {m['p50_ms']:.3f} ms | {m['p99_ms']:.3f} ms |")
    print()
    print("(ratios: median of the per-run ratios; queries/s and latencies: medians over runs)")
    print()
    print(f"## DNS programming latency ({args.changes} changes each)")
    print()
    print("| change | p50 | p99 | max |")
    print("|---|---:|---:|---:|")
    labels = {"create": "Service created (from the create request)",
              "create_from_ack": "Service created (from the API's acknowledgement)",
              "retarget": "ExternalName retargeted", "delete": "Service deleted"}
    for k, v in prog.items():
        print(f"| {labels[k]} | {pct(v, 50) * 1000:.1f} ms | {pct(v, 99) * 1000:.1f} ms | {max(v) * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
