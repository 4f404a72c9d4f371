"""Helpers for testing and benchmarking the DNS server: objects, a fake upstream, `dig`.

Used by tests/dns and scripts/bench_dns.py; nothing here runs in the server.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
from typing import Iterable

from dnslib import QTYPE, RCODE, RR, DNSRecord
from google.protobuf.message import Message

from kubemu import objects
from kubemu.dns.snapshot import SERVICE_NAME_LABEL

# ------------------------------------------------------------------ objects


def namespace(name: str) -> Message:
    return objects.new("Namespace", name)


def service(name: str, ns: str = "default", *, cluster_ip: str = "", ports: Iterable = (("http", 80, "TCP"),),
            type: str = "ClusterIP", external_name: str = "", headless: bool = False,
            selector: dict | None = None, publish_not_ready: bool = False) -> Message:
    """A Service; ports are (name, port, protocol) with name "" for a single unnamed port."""
    svc = objects.new("Service", name, ns)
    svc.spec.type = type
    if type == "ExternalName":
        svc.spec.externalName = external_name
    else:
        ip = "None" if headless else cluster_ip
        if ip:
            svc.spec.clusterIP = ip
            svc.spec.clusterIPs.append(ip)
        for pname, port, proto in ports:
            p = svc.spec.ports.add()
            if pname:
                p.name = pname
            p.port, p.protocol = port, proto
            p.targetPort.CopyFrom(objects.int_or_string(port))
        svc.spec.selector.update(selector if selector is not None else {"app": name})
    if publish_not_ready:
        svc.spec.publishNotReadyAddresses = True
    return svc


def endpoint_slice(name: str, svc: str, ns: str = "default", *, endpoints: Iterable = (),
                   ports: Iterable = (("http", 80, "TCP"),), address_type: str = "IPv4") -> Message:
    """endpoints: (ip, hostname or None, ready) tuples, or bare IPs (ready, no hostname)."""
    sl = objects.new("EndpointSlice", name, ns)
    sl.metadata.labels[SERVICE_NAME_LABEL] = svc
    sl.metadata.labels["endpointslice.kubernetes.io/managed-by"] = "kubemu-dns-tests"
    sl.addressType = address_type
    for e in endpoints:
        ip, host, ready = (e, None, True) if isinstance(e, str) else e
        ep = sl.endpoints.add()
        ep.addresses.append(ip)
        ep.conditions.ready = ready
        if host:
            ep.hostname = host
    for pname, port, proto in ports:
        p = sl.ports.add()
        if pname:
            p.name = pname
        p.port, p.protocol = port, proto
    return sl


def pod(name: str, ns: str = "default", ip: str = "", *, labels: dict | None = None,
        phase: str = "Running") -> Message:
    p = objects.new("Pod", name, ns)
    p.metadata.labels.update(labels or {})
    c = p.spec.containers.add()
    c.name, c.image = "main", "echoserver"
    if ip:
        p.status.podIP = ip
        p.status.podIPs.add().ip = ip
    p.status.phase = phase
    return p


# ------------------------------------------------------------------ a fake upstream server


class FakeUpstream:
    """An upstream DNS server on one port (UDP and TCP) with fixed records, in a thread.

    `records`: {"name.": [(qtype, rdata-text)]}; names in `slow` are never answered; anything
    else is NXDOMAIN. `queries` lists the (name, qtype) pairs it saw.
    """

    def __init__(self, records: dict[str, list[tuple[str, str]]], slow: Iterable[str] = ()):
        self.records = {k.lower().rstrip(".") + ".": v for k, v in records.items()}
        self.slow = {s.lower().rstrip(".") + "." for s in slow}
        self.queries: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def reply(self, data: bytes) -> bytes | None:
        try:
            req = DNSRecord.parse(data)
        except Exception:
            return None
        qname = str(req.q.qname).lower()
        self.queries.append((qname, QTYPE.get(req.q.qtype)))
        if qname in self.slow:
            return None
        rep = req.reply()
        rep.header.ra = 1
        rep.header.aa = 0   # a recursive resolver's answer
        if qname not in self.records:
            rep.header.rcode = RCODE.NXDOMAIN
        for qtype, text in self.records.get(qname, ()):
            if QTYPE.get(req.q.qtype) == qtype:
                rep.add_answer(*RR.fromZone(f"{qname} 60 IN {qtype} {text}"))
        return bytes(rep.pack())

    def __enter__(self) -> "FakeUpstream":
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            tcp = socket.socket()
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            break
        tcp.listen(16)
        udp.settimeout(0.1)
        tcp.settimeout(0.1)
        self.udp, self.tcp, self.port = udp, tcp, port
        self.address = f"127.0.0.1:{port}"
        for fn in (self._serve_udp, self._serve_tcp):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.udp.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            out = self.reply(data)
            if out is not None:
                self.udp.sendto(out, addr)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    n = struct.unpack("!H", _recv_exact(conn, 2))[0]
                    out = self.reply(_recv_exact(conn, n))
                    if out is not None:
                        conn.sendall(struct.pack("!H", len(out)) + out)
                except (OSError, ValueError):
                    pass


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ValueError("closed")
        buf += chunk
    return buf


# ------------------------------------------------------------------ asking


def query(host: str, port: int, name: str, qtype: str = "A", *, tcp: bool = False,
          timeout: float = 2.0) -> DNSRecord:
    """One query, in-process (dig costs ~25 ms to start; this costs ~0.1 ms)."""
    q = DNSRecord.question(name, qtype)
    return DNSRecord.parse(q.send(host, port, tcp=tcp, timeout=timeout))


def addresses(reply: DNSRecord) -> list[str]:
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype in (QTYPE.A, QTYPE.AAAA))


@dataclasses.dataclass
class Dig:
    status: str
    flags: set[str]
    answer: list[str]
    authority: list[str]
    additional: list[str]
    edns: bool
    text: str

    def records(self, section: str = "answer", rtype: str | None = None) -> list[tuple[str, ...]]:
        """Records of a section as (name, ttl, class, type, rdata) tuples."""
        out = []
        for line in getattr(self, section):
            parts = line.split(None, 4)
            if rtype is None or parts[3] == rtype:
                out.append(tuple(parts))
        return out


_SECTIONS = {";; ANSWER SECTION:": "answer", ";; AUTHORITY SECTION:": "authority",
             ";; ADDITIONAL SECTION:": "additional"}


def parse_dig(text: str) -> Dig:
    status = re.search(r"status: (\w+)", text)
    flags = re.search(r";; flags:([\w ]*);", text)
    sections: dict[str, list[str]] = {"answer": [], "authority": [], "additional": []}
    current = None
    for line in text.splitlines():
        if line in _SECTIONS:
            current = _SECTIONS[line]
            continue
        if not line.strip() or line.startswith(";"):
            if not line.strip():
                current = None
            continue
        if current is not None:
            sections[current].append(" ".join(line.split()))
    return Dig(status=status.group(1) if status else "", flags=set(flags.group(1).split()) if flags else set(),
               answer=sections["answer"], authority=sections["authority"],
               additional=sections["additional"], edns="; EDNS:" in text, text=text)


@contextlib.contextmanager
def dns_process(api: str, log_dir: str, *extra: str, host: str = "127.0.0.1"):
    """A real `kubemu dns` process on a free port of `host`; yields (Proc, port), always stopped."""
    from kubemu.testing import procs
    port = procs.free_port(host)
    proc = procs.Proc(procs.kubemu_command("dns", "--server", api, "--listen", f"{host}:{port}",
                                           "--log-level", "debug", *extra),
                      os.path.join(log_dir, f"dns-{port}.log"))
    try:
        procs.wait_port(host, port, 15, proc)
        yield proc, port
    finally:
        proc.stop()


def dig_available() -> bool:
    return shutil.which("dig") is not None


def dig(host: str, port: int, name: str, qtype: str = "A", *args: str, tcp: bool = False,
        timeout: float = 10.0) -> Dig:
    """Run the real `dig` (one try; pass `+ignore` to see a truncated UDP answer as it is)."""
    if not dig_available():
        raise RuntimeError("dig is not installed: apt-get install dnsutils")
    cmd = ["dig", f"@{host}", "-p", str(port), "+noall", "+comments", "+answer", "+authority",
           "+additional", "+nocookie", "+tries=1", "+time=3",
           "+tcp" if tcp else "+notcp", *args, name, qtype]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return parse_dig(out.stdout)
