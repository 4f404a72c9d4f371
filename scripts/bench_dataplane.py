"""Benchmark the node agent's data plane (kubemu.nodeagent.proxy) against a direct connection and
socat, in one run.

Setup: an API server; one proxy process (the Proxy class as the node agent runs it, on uvloop;
--loop asyncio for the default loop) for node-1; backends on a pod IP: a sink and an echo server
(Python, blocking, one thread per connection), nginx (HTTP) and dnsmasq (DNS over UDP); one
NodePort Service per backend with a hand-made EndpointSlice; socat forwarders started here.

Targets, taken in turn within each run (the reported figure is the median of --runs runs):
  direct      the backend itself
  clusterIP   the Service's VIP:port through the proxy
  nodePort    NODE_IP:nodePort through the proxy (the backend sees the node's IP)
  socat       `socat TCP-LISTEN:..,fork TCP:backend` (UDP-RECVFROM/UDP-SENDTO likewise)
  socat-64k   socat with -b65536 (bulk only: its default 8 KiB buffer is what limits it)
  direct/clusterIP (unpaced client)
              bulk only: the client's socket uses cubic (reno where cubic is not allowed) instead
              of the system's default congestion control, which may be BBR; ratios against the
              direct run of the same client (see docs/perf/dataplane.md)

Measures:
  - bulk TCP throughput: --bulk-mib MiB sent through one connection, GiB/s, once per
    --bulk-write-kib write size (1 MiB, and iperf3's default 128 KiB; the sink reads 1 MiB)
  - small-message round trip: 64-byte ping-pong on one connection, p50/p99 in microseconds
  - HTTP requests/s with wrk (-t1 -c50): keep-alive, and a new connection per request
  - UDP DNS queries/s with dnsperf (-c 4 -q 100) against dnsmasq
  - forwarder CPU seconds per measurement (proxy process, socat with its children)
  - scale: --services more Services (one port each) -> seconds until every listener is open,
    and the proxy process's RSS before and after

    scripts/bench dataplane [--runs 3] [--duration 4] [--bulk-mib 1024] [--bulk-write-kib 1024 128]
                            [--services 1000]
                            [--loop uvloop|asyncio] [--only bulk,rtt,http,udp,scale]

Needs: socat, wrk, nginx, dnsperf, dnsmasq-base (Debian packages).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchlib import cpu_seconds, rss_mib, wrk  # noqa: E402  (scripts/ is on sys.path when run)

from kubemu import objects, relayio  # noqa: E402
from kubemu.client import Client  # noqa: E402
from kubemu.testing import procs  # noqa: E402

METRICS_PORT = 10249  # kube-proxy's metrics port, on the node IP


# ------------------------------------------------------------------ the proxy process

def serve_proxy(server: str, node_name: str, node_ip: str, loop_kind: str, batching: str = "mmsg") -> None:
    """Run one Proxy as the node agent does, plus a /metrics endpoint; until SIGTERM."""
    import logging
    import resource
    import signal

    from kubemu.informer import Informer
    from kubemu.nodeagent.proxy import Proxy

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # as the node agent does

    async def main():
        client = Client(server)
        infs = [Informer(client, k) for k in ("Service", "EndpointSlice", "Node")]
        proxy = Proxy(client, node_name=node_name, node_ip=node_ip, services_informer=infs[0],
                      slices_informer=infs[1], nodes_informer=infs[2], udp_batching=batching == "mmsg")

        async def metrics(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            body = proxy.render_metrics().encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.close()
        srv = await asyncio.start_server(metrics, node_ip, METRICS_PORT)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(i.run()) for i in infs] + [asyncio.create_task(proxy.run())]
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        srv.close()
        await client.close()

    if loop_kind == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())


# ------------------------------------------------------------------ backends

def _thread_server(ip: str, port: int, handler) -> socket.socket:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ip, port))
    ls.listen(1024)

    def accept_loop():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=accept_loop, daemon=True).start()
    return ls


def _sink(c: socket.socket) -> None:
    buf = bytearray(1 << 20)
    with c:
        try:
            while c.recv_into(buf):
                pass
            c.sendall(b"ok")
        except OSError:
            pass


def _echo(c: socket.socket) -> None:
    buf = bytearray(65536)
    view = memoryview(buf)
    with c:
        try:
            while n := c.recv_into(buf):
                c.sendall(view[:n])
        except OSError:
            pass


def backend_script(ip: str, sink_port: int, echo_port: int) -> str:
    """The sink and echo servers, as a separate process (so they do not share our GIL)."""
    return f"""
import socket, sys, threading, time
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from bench_dataplane import _thread_server, _sink, _echo
_thread_server({ip!r}, {sink_port}, _sink)
_thread_server({ip!r}, {echo_port}, _echo)
while True:
    time.sleep(3600)
"""


def nginx_conf(tmp: str, ip: str, port: int) -> str:
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{
        listen {ip}:{port} reuseport;
        location / {{ default_type text/plain; return 200 "Hello, world!\\n"; }}
    }}
}}
""")
    return path


# ------------------------------------------------------------------ clients

UNPACED = " (unpaced client)"


def congestion(unpaced: bool = False) -> str:
    """The congestion control a new TCP socket of this process gets."""
    with socket.socket() as s:
        if unpaced:
            relayio.unpaced(s)
        return relayio.congestion(s).decode()


def bulk(host: str, port: int, mib: int, write_kib: int = 1024, unpaced: bool = False) -> float:
    """GiB/s for `mib` MiB sent in `write_kib` KiB writes through one connection, until the
    sink has read it all. `unpaced`: the client's socket uses relayio.LOOPBACK_CONGESTION
    instead of the system's default congestion control."""
    s = socket.socket()
    if unpaced:
        relayio.unpaced(s)
    s.settimeout(30)
    s.connect((host, port))
    chunk = b"x" * (write_kib << 10)
    t0 = time.perf_counter()
    for _ in range((mib << 10) // write_kib):
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    assert s.recv(2) == b"ok"
    dt = time.perf_counter() - t0
    s.close()
    return mib / 1024 / dt


def rtt(host: str, port: int, n: int = 20000, size: int = 64) -> tuple[float, float]:
    """p50 and p99 round-trip microseconds of `size`-byte ping-pongs on one connection."""
    s = socket.create_connection((host, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * size
    out = []
    for i in range(n + 1000):
        t0 = time.perf_counter_ns()
        s.sendall(msg)
        got = 0
        while got < size:
            got += len(s.recv(size - got))
        if i >= 1000:
            out.append(time.perf_counter_ns() - t0)
    s.close()
    out.sort()
    return out[len(out) // 2] / 1000, out[int(len(out) * 0.99)] / 1000


def dnsperf(host: str, port: int, duration: float, names: str) -> float:
    cmd = ["dnsperf", "-s", host, "-p", str(port), "-d", names, "-l", str(duration),
           "-q", "100", "-c", "4", "-t", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"dnsperf: {out}")
    return float(m.group(1))


def metrics_text(node_ip: str) -> str:
    with urllib.request.urlopen(f"http://{node_ip}:{METRICS_PORT}/metrics", timeout=5) as r:
        return r.read().decode()


def listeners_open(node_ip: str) -> int:
    text = metrics_text(node_ip)
    return sum(int(m) for m in re.findall(r'^kubemu_proxy_listeners\{protocol="\w+"\} (\d+)$', text, re.M))


# ------------------------------------------------------------------ API objects

def service(name: str, vip: str, ports: list[dict]) -> object:
    return objects.from_dict({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": vip, "ports": ports}})


def endpoint_slice(name: str, ip: str, ports: list[dict]) -> object:
    return objects.from_dict({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "node-1"}],
        "ports": ports})


async def create_all(server: str, objs: list, concurrency: int = 32) -> None:
    async with Client(server) as c:
        sem = asyncio.Semaphore(concurrency)

        async def one(o):
            async with sem:
                await c.create(o)
        await asyncio.gather(*(one(o) for o in objs))


# ------------------------------------------------------------------ the run

class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="kubemu-bench-dataplane-")
        self.slot = procs.claim_slot()
        s = self.slot.index
        self.node_ip = self.slot.node_ip(1)
        self.pod_ip = f"127.{s}.129.10"
        self.socat_ip = f"127.{s}.50.1"
        self.procs: list[procs.Proc] = []
        self.results: dict[str, dict[str, list]] = {}
        self.cpu: dict[str, dict[str, list]] = {}
        self.proxy: procs.Proc | None = None

    def start(self, args: list[str], name: str, env: dict | None = None) -> procs.Proc:
        p = procs.Proc(args, os.path.join(self.tmp, f"{name}.log"), env=env)
        self.procs.append(p)
        return p

    def setup(self) -> None:
        a = self.args
        s = self.slot.index
        port = procs.free_port()
        self.server = f"127.0.0.1:{port}"
        api = self.start(procs.kubemu_command("apiserver", "--listen", self.server, "--state-dir",
                                              os.path.join(self.tmp, "state"), "--service-cidr",
                                              self.slot.service_cidr), "apiserver")
        procs.wait_port("127.0.0.1", port, 20, api)

        # backends
        b = self.start([sys.executable, "-c", backend_script(self.pod_ip, 5001, 5002)], "backends")
        procs.wait_port(self.pod_ip, 5001, 10, b)
        procs.wait_port(self.pod_ip, 5002, 10, b)
        ng = self.start(["nginx", "-c", nginx_conf(self.tmp, self.pod_ip, 8080)], "nginx")
        procs.wait_port(self.pod_ip, 8080, 10, ng)
        self.start(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--port=5353",
                    f"--listen-address={self.pod_ip}", "--bind-interfaces", "--cache-size=1000",
                    "--address=/bench.local/10.1.2.3", f"--pid-file={self.tmp}/dnsmasq.pid"], "dnsmasq")
        self.names = os.path.join(self.tmp, "names.txt")
        with open(self.names, "w") as f:
            f.write("".join(f"host{i}.bench.local A\n" for i in range(100)))

        # one Service per backend
        self.vip = {k: f"127.{s}.100.{i + 1}" for i, k in enumerate(("bulk", "rtt", "http", "udp"))}
        self.node_port = {"bulk": 30001, "rtt": 30002, "http": 30003, "udp": 30004}
        self.svc_port = {"bulk": 5001, "rtt": 5002, "http": 80, "udp": 53}
        self.pod_port = {"bulk": 5001, "rtt": 5002, "http": 8080, "udp": 5353}
        objs = [objects.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
                                   "spec": {"podCIDR": f"127.{s}.129.0/24"},
                                   "status": {"addresses": [{"type": "InternalIP", "address": self.node_ip}]}})]
        for k in self.vip:
            proto = "UDP" if k == "udp" else "TCP"
            objs.append(service(k, self.vip[k], [{"name": "p", "port": self.svc_port[k], "protocol": proto,
                                                  "targetPort": self.pod_port[k], "nodePort": self.node_port[k]}]))
            objs.append(endpoint_slice(k, self.pod_ip, [{"name": "p", "port": self.pod_port[k], "protocol": proto}]))
        asyncio.run(create_all(self.server, objs))

        self.proxy = self.start([sys.executable, os.path.abspath(__file__), "--serve-proxy", self.server,
                                 "node-1", self.node_ip, a.loop, "none" if a.no_mmsg else "mmsg"], "proxy")
        for k in self.vip:
            if k != "udp":
                procs.wait_port(self.vip[k], self.svc_port[k], 20, self.proxy)
                procs.wait_port(self.node_ip, self.node_port[k], 20, self.proxy)

        # socat forwarders on an address of their own, ports as the Services'
        self.socat: dict[str, procs.Proc] = {}
        for k in ("bulk", "rtt", "http"):
            nd = ",nodelay" if k != "bulk" else ""
            self.socat[k] = self.start(["socat", f"TCP-LISTEN:{self.svc_port[k]},bind={self.socat_ip},reuseaddr,fork,backlog=1024{nd}",
                                        f"TCP:{self.pod_ip}:{self.pod_port[k]}{nd}"], f"socat-{k}")
        self.socat["bulk64k"] = self.start(["socat", "-b65536", f"TCP-LISTEN:6001,bind={self.socat_ip},reuseaddr,fork",
                                            f"TCP:{self.pod_ip}:5001"], "socat-bulk64k")
        self.socat["udp"] = self.start(["socat", f"UDP-LISTEN:53,bind={self.socat_ip},reuseaddr,fork",
                                        f"UDP:{self.pod_ip}:5353"], "socat-udp")
        for k in ("bulk", "rtt", "http"):
            procs.wait_port(self.socat_ip, self.svc_port[k], 10, self.socat[k])
        procs.wait_port(self.socat_ip, 6001, 10, self.socat["bulk64k"])

    def targets(self, k: str) -> dict[str, tuple[str, int, int | None]]:
        """name -> (host, port, pid of the forwarder or None)."""
        t = {"direct": (self.pod_ip, self.pod_port[k], None),
             "clusterIP": (self.vip[k], self.svc_port[k], self.proxy.pid),
             "nodePort": (self.node_ip, self.node_port[k], self.proxy.pid),
             "socat": (self.socat_ip, self.svc_port[k], self.socat[k].pid)}
        if k == "bulk":
            t["socat-64k"] = (self.socat_ip, 6001, self.socat["bulk64k"].pid)
            t["direct" + UNPACED] = t["direct"]
            t["clusterIP" + UNPACED] = t["clusterIP"]
        return t

    def measure(self, metric: str, k: str, fn, *, ops, unit: str, scale: float = 1e6) -> None:
        """Run fn(host, port, target name) on every target, --runs times in rotating order. `ops(value)` is
        the amount of work a run did: the forwarder's CPU seconds per op, times `scale`, is
        reported in `unit` (CPU time is what the proxy can improve; throughput on a shared
        machine also depends on the neighbours)."""
        res = self.results.setdefault(metric, {})
        cpu = self.cpu.setdefault(metric, {})
        targets = self.targets(k)
        names = list(targets)
        for run in range(self.args.runs):
            order = names[run % len(names):] + names[:run % len(names)]
            for name in order:
                host, port, pid = targets[name]
                c0 = cpu_seconds(pid, children=True)
                value = fn(host, port, name)
                time.sleep(0.2)  # let socat reap its children, so their CPU is counted
                c1 = cpu_seconds(pid, children=True)
                res.setdefault(name, []).append(value)
                cpu.setdefault(name, []).append((c1 - c0) / ops(value) * scale)
        self.report(metric, unit)

    def report(self, metric: str, unit: str) -> None:
        print(f"\n{metric}")
        res = self.results[metric]
        for name, values in res.items():
            base = res["direct" + UNPACED if name.endswith(UNPACED) else "direct"]
            c = statistics.median(self.cpu[metric][name])
            cpu = f"forwarder CPU {c:8.2f} {unit}" if not name.startswith("direct") else ""
            if isinstance(values[0], tuple):
                p50 = statistics.median(v[0] for v in values)
                p99 = statistics.median(v[1] for v in values)
                b50 = statistics.median(v[0] for v in base)
                extra = f"(+{p50 - b50:5.1f} us)" if name != "direct" else " " * 10
                print(f"  {name:10s} p50 {p50:7.1f} us {extra}  p99 {p99:7.1f} us   {cpu}   "
                      f"p50 runs {[round(v[0], 1) for v in values]}")
            else:
                med = statistics.median(values)
                ratio = med / statistics.median(base)
                print(f"  {name:28s} {med:12.2f}  ({ratio:5.0%} of direct)   {cpu}   "
                      f"runs {[round(v, 2) for v in values]}")

    def run(self) -> None:
        a = self.args
        only = set(a.only.split(","))
        print(f"loop: {a.loop}; UDP batching: {'off' if a.no_mmsg else 'recvmmsg/sendmmsg'}; runs: {a.runs}; medians; {os.cpu_count()} CPUs; "
              f"load {os.getloadavg()[0]:.2f} at start")
        print(f"TCP congestion control: {congestion()} by default, {congestion(unpaced=True)} for the proxy's "
              "sockets and the unpaced client")
        if "bulk" in only:
            for kib in a.bulk_write_kib:
                self.measure(f"bulk TCP throughput, GiB/s ({a.bulk_mib} MiB per run, {kib} KiB writes)", "bulk",
                             lambda h, p, name, kib=kib: bulk(h, p, a.bulk_mib, kib, unpaced=name.endswith(UNPACED)), ops=lambda v: a.bulk_mib / 1024,
                             unit="ms/GiB", scale=1e3)
        if "rtt" in only:
            self.measure("64-byte round trip on one connection", "rtt", lambda h, p, _: rtt(h, p, a.rtt_count),
                         ops=lambda v: a.rtt_count + 1000, unit="us/round trip")
        if "http" in only:
            self.measure(f"HTTP requests/s, wrk -c50 keep-alive, {a.duration:g}s", "http",
                         lambda h, p, _: wrk(f"http://{h}:{p}/", a.duration), ops=lambda v: v * a.duration,
                         unit="us/request")
            self.measure(f"HTTP requests/s, wrk -c50 new connection per request, {a.duration:g}s", "http",
                         lambda h, p, _: wrk(f"http://{h}:{p}/", a.duration, close=True), ops=lambda v: v * a.duration,
                         unit="us/request")
        if "udp" in only:
            self.measure(f"UDP DNS queries/s, dnsperf -c4 -q100 (dnsmasq), {a.duration:g}s", "udp",
                         lambda h, p, _: dnsperf(h, p, a.duration, self.names), ops=lambda v: v * a.duration,
                         unit="us/query")
        if "scale" in only:
            self.scale(a.services)
        print(f"\nload {os.getloadavg()[0]:.2f} at end")

    def scale(self, n: int) -> None:
        s = self.slot.index
        before_rss = rss_mib(self.proxy.pid)
        before = listeners_open(self.node_ip)
        objs = []
        for i in range(n):
            name = f"scale-{i}"
            vip = f"127.{s}.{101 + i // 250}.{i % 250 + 1}"
            objs.append(service(name, vip, [{"name": "p", "port": 80, "targetPort": 8080,
                                             "nodePort": 31000 + i}]))
            objs.append(endpoint_slice(name, self.pod_ip, [{"name": "p", "port": 8080, "protocol": "TCP"}]))
        t0 = time.perf_counter()
        asyncio.run(create_all(self.server, objs))
        t_created = time.perf_counter() - t0
        want = before + 2 * n  # a cluster IP and a node port listener each
        procs.wait_for(lambda: listeners_open(self.node_ip) >= want, 120, interval=0.1,
                       message=f"{want} listeners")
        t_open = time.perf_counter() - t0
        after_rss = rss_mib(self.proxy.pid)
        # every one answers
        t1 = time.perf_counter()
        for i in range(n):
            vip = f"127.{s}.{101 + i // 250}.{i % 250 + 1}"
            with socket.create_connection((vip, 80), timeout=5) as c:
                c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert b"200 OK" in c.recv(4096)
        t_check = time.perf_counter() - t1
        print(f"\nscale: {n} more Services (one TCP port each: {2 * n} listeners, cluster IP + node port)")
        print(f"  created through the API in {t_created:.1f}s; all listeners open {t_open:.1f}s after the first write")
        print(f"  proxy process RSS {before_rss:.1f} MiB before, {after_rss:.1f} MiB after "
              f"({(after_rss - before_rss) * 1024 / n:.1f} KiB per Service)")
        print(f"  one request through each of the {n} cluster IPs: {t_check:.1f}s")

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.slot.release()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-proxy":
        serve_proxy(*sys.argv[2:7])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per wrk/dnsperf run")
    ap.add_argument("--bulk-mib", type=int, default=1024)
    ap.add_argument("--bulk-write-kib", type=int, nargs="+", default=[1024, 128],
                    help="the client's write size; 128 KiB is iperf3's default")
    ap.add_argument("--rtt-count", type=int, default=20000)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    ap.add_argument("--only", default="bulk,rtt,http,udp,scale")
    ap.add_argument("--no-mmsg", action="store_true", help="UDP one datagram per syscall (no recvmmsg/sendmmsg)")
    a = ap.parse_args()
    for tool in ("socat", "wrk", "nginx", "dnsperf", "dnsmasq"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (Debian package); see the docstring")
    print(f"command: scripts/bench dataplane {' '.join(sys.argv[1:])}")
    b = Bench(a)
    try:
        b.setup()
        b.run()
    finally:
        b.close()


if __name__ == "__main__":
    main()
