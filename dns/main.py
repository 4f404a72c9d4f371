"""`kubemu dns`: informers feed the snapshot builder, the builder feeds the server.

Wiring only. Informer handlers record which object changed and schedule one flush on the next
loop iteration; the flush re-reads those objects from the informer caches (level-triggered),
updates the builder, and swaps in a new snapshot only if an answer could differ. A burst of
events (a re-list after an outage, a Deployment rolling 100 pods) therefore costs one snapshot,
and a single change reaches the answers within one loop iteration of its watch event. A work
queue with a worker task would add a hop for nothing: the flush never awaits.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from google.protobuf.message import Message

from kubemu import objects
from kubemu.client import Client
from kubemu.dns import publish
from kubemu.dns.forward import Forwarder, Upstream
from kubemu.dns.server import DnsServer
from kubemu.dns.snapshot import SERVICE_NAME_LABEL, Snapshot, SnapshotBuilder
from kubemu.informer import Informer, wait_synced
from kubemu.process import FreezeSurvivors

log = logging.getLogger("kubemu.dns")


def parse_listen(value: str) -> tuple[str, int]:
    """`127.0.0.1:10053` or `[::1]:10053` -> (host, port)."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest.lstrip(":"))
    host, _, port = value.rpartition(":")
    if not host:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host, int(port)


def _slice_service(sl: Message) -> list[str]:
    name = sl.metadata.labels.get(SERVICE_NAME_LABEL, "")
    return [f"{sl.metadata.namespace}/{name}"] if name else []


class SnapshotSync:
    """Keeps a SnapshotBuilder equal to the API server's objects and publishes snapshots."""

    def __init__(self, client: Client, builder: SnapshotBuilder, publish_snapshot,
                 on_change=None):
        self.builder = builder
        self.publish_snapshot = publish_snapshot
        self.on_change = on_change   # called with (kind, key) for every event: the publisher
        self.services = Informer(client, "Service")
        self.slices = Informer(client, "EndpointSlice")
        self.pods = Informer(client, "Pod")
        self.namespaces = Informer(client, "Namespace")
        self.slices.add_index("service", _slice_service)
        self.synced = False
        self._pending: dict[str, set[str]] = {"Service": set(), "Pod": set(), "Namespace": set()}
        self._scheduled = False
        self.services.add_handler(lambda ev, obj, old: self._enqueue("Service", objects.key(obj)))
        self.pods.add_handler(lambda ev, obj, old: self._enqueue("Pod", objects.key(obj)))
        self.namespaces.add_handler(lambda ev, obj, old: self._enqueue("Namespace", objects.key(obj)))
        self.slices.add_handler(self._on_slice)

    def _on_slice(self, ev: str, obj: Message, old: Message | None) -> None:
        for key in {*_slice_service(obj), *(_slice_service(old) if old is not None else ())}:
            self._enqueue("Service", key)
        if self.on_change is not None:
            self.on_change("EndpointSlice", objects.key(obj))

    def _enqueue(self, kind: str, key: str) -> None:
        self._pending[kind].add(key)
        if self.on_change is not None and kind == "Service":
            self.on_change(kind, key)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        b = self.builder
        changed = False
        pending, self._pending = self._pending, {"Service": set(), "Pod": set(), "Namespace": set()}
        for key in pending["Service"]:
            ns, _, name = key.partition("/")
            changed |= b.set_service(ns, name, self.services.get(key),
                                     self.slices.by_index("service", key))
        for key in pending["Pod"]:
            changed |= b.set_pod(key, self.pods.get(key))
        for name in pending["Namespace"]:
            changed |= b.set_namespace(name, self.namespaces.get(name) is not None)
        if changed and self.synced:
            snap = b.build(synced=True, serial=int(time.time()))
            log.debug("snapshot %d after %d Service, %d Pod, %d Namespace changes", snap.generation,
                      len(pending["Service"]), len(pending["Pod"]), len(pending["Namespace"]))
            self.publish_snapshot(snap)

    async def run(self) -> None:
        informers = (self.services, self.slices, self.pods, self.namespaces)
        tasks = [asyncio.create_task(i.run(), name=f"informer-{i.kind}") for i in informers]
        try:
            await wait_synced(*informers)
            self.flush()
            self.synced = True
            snap = self.builder.build(synced=True, serial=int(time.time()))
            self.publish_snapshot(snap)
            log.info("synced: %d services, %d namespaces", len(snap.services), len(snap.namespaces))
            # The informer caches are long-lived: keep the cyclic GC from rescanning them, so a
            # full collection cannot stall the hot path for milliseconds (p99 latency).
            tasks.append(asyncio.create_task(FreezeSurvivors().install().run(), name="gc-review"))
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def run(*, server: str, listen: str, zone: str = "cluster.local", ttl: int = 5,
              upstreams: list[Upstream] | None = None, service_ip: str = "",
              cache_size: int = 100_000) -> None:
    host, port = parse_listen(listen)
    own = {(host, port)} | ({(service_ip, 53)} if service_ip else set())
    upstreams = [u for u in (upstreams or []) if u not in own]   # never forward to ourselves
    builder = SnapshotBuilder(zone, ttl=ttl, nameservers=[service_ip or host])
    # KUBEMU_DNS_UDP=protocol: the event loop's datagram protocol instead of reading the
    # socket directly (kept for the benchmark's comparison; see docs/perf/dns.md)
    dns = DnsServer(builder.build(synced=False), cache_size=cache_size,
                    forwarder=Forwarder(upstreams) if upstreams else None,
                    udp_mode=os.environ.get("KUBEMU_DNS_UDP", "reader"))
    try:
        await dns.start(host, port)
    except OSError as e:
        log.error("cannot listen on %s: %s", listen, e.strerror or e)
        raise SystemExit(1) from None
    log.info("serving %s on %s:%d (UDP+TCP), upstreams %s", builder.zone, host, port,
             ", ".join(f"{h}:{p}" for h, p in upstreams) or "none")

    client = Client(server)
    publisher = None
    if service_ip:
        publisher = publish.Publisher(client, service_ip=service_ip, listen_host=host, listen_port=port)

    def on_change(kind: str, key: str) -> None:
        if publisher is not None and key in (f"{publish.NAMESPACE}/{publish.NAME}",
                                             f"{publish.NAMESPACE}/{publish.SLICE_NAME}"):
            publisher.kick()

    def swap(snap: Snapshot) -> None:
        dns.swap(snap)

    sync = SnapshotSync(client, builder, swap, on_change=on_change)
    tasks = [asyncio.create_task(sync.run(), name="snapshot-sync")]
    if publisher is not None:
        tasks.append(asyncio.create_task(publisher.run(), name="publish-kube-dns"))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not waiter and t.exception() is not None:
                log.error("%s failed: %r", t.get_name(), t.exception())
    finally:
        log.info("shutting down")
        for t in [waiter, *tasks]:
            t.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)
        await dns.stop()
        await client.close()
