"""The kube-proxy of one node agent: informer caches in, listening sockets out.

Informer handlers only mark a Service key dirty and wake the sync loop. The loop runs at most
once per `min_sync_interval` (a burst of changes costs one sync, as kube-proxy's
minSyncPeriod), re-plans only the dirty Services (`state.plan_service`), drops plans that did
not change, and when something did, reconciles the listeners and health-check ports as a diff.
A full re-plan runs every `full_resync_interval`, and failed binds are retried every
`retry_interval`, each reported once as a Warning Event on its Service.

Static stability: the informers keep their caches while the API server is away and nothing
here needs the server to forward traffic, so the data plane keeps its last state; Events that
cannot be posted are logged and dropped.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time

from google.protobuf.message import Message

from kubemu import objects
from kubemu.client import Client
from kubemu.events import EventRecorder
from kubemu.informer import Informer
from kubemu.nodeagent.proxy import metrics
from kubemu.nodeagent.proxy.healthcheck import HealthCheckServers
from kubemu.nodeagent.proxy.listeners import ListenerSet, Route
from kubemu.nodeagent.proxy.picker import Picker
from kubemu.nodeagent.proxy.relay import PortStats, RelayContext
from kubemu.nodeagent.proxy.state import (HealthCheck, ListenerKey, NodeAddresses, PortKey, ServicePlan,
                                          plan_service, slice_service_key)

log = logging.getLogger("kubemu.nodeagent.proxy")

SLICE_INDEX = "proxy/service"
UNHEALTHY_AFTER = 10.0  # seconds a wanted sync may wait before /healthz says the proxy is unhealthy


class Proxy:
    def __init__(self, client: Client, *, node_name: str, node_ip: str, services_informer: Informer,
                 slices_informer: Informer, nodes_informer: Informer, min_sync_interval: float = 0.05,
                 full_resync_interval: float = 30.0, retry_interval: float = 5.0,
                 udp_idle_timeout: float = 30.0, udp_batching: bool = True):
        self.client = client
        self.node_name = node_name
        self.node_ip = node_ip
        self.services = services_informer
        self.slices = slices_informer
        self.nodes = nodes_informer
        self.min_sync_interval = min_sync_interval
        self.full_resync_interval = full_resync_interval
        self.retry_interval = retry_interval
        self.udp_idle_timeout = udp_idle_timeout
        self.udp_batching = udp_batching

        self._plans: dict[str, ServicePlan] = {}
        self._pickers: dict[PortKey, Picker] = {}
        self._stats: dict[PortKey, PortStats] = {}
        self._routes: dict[ListenerKey, Route] = {}
        self._node_map = NodeAddresses()
        self._dirty: set[str] = set()
        self._all_dirty = True
        self._nodes_dirty = True
        self._dirty_since: float | None = None
        self._failing: dict[object, str] = {}     # listener key or ("healthcheck", port) -> error
        self._reported: dict[object, str] = {}    # what an Event was already posted for
        self._wake = asyncio.Event()
        self._recorder = EventRecorder(client)
        self.events = self._recorder.for_component("kube-proxy", host=node_name)
        self._listeners: ListenerSet | None = None
        self._health: HealthCheckServers | None = None
        self.sync_stats = metrics.SyncStats()

        services_informer.add_handler(self._on_service)
        slices_informer.add_index(SLICE_INDEX, lambda s: [k] if (k := slice_service_key(s)) else [])
        slices_informer.add_handler(self._on_slice)
        nodes_informer.add_handler(self._on_node)

    # ------------------------------------------------------------ informer handlers: enqueue only

    def _mark(self, key: str) -> None:
        self._dirty.add(key)
        self._kick()

    def _kick(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()
        self._wake.set()

    def _on_service(self, event: str, obj: Message, old: Message | None) -> None:
        self._mark(objects.key(obj))

    def _on_slice(self, event: str, obj: Message, old: Message | None) -> None:
        for s in (obj, old):
            if s is not None and (key := slice_service_key(s)):
                self._mark(key)

    def _on_node(self, event: str, obj: Message, old: Message | None) -> None:
        self._nodes_dirty = True
        self._kick()

    # ------------------------------------------------------------ running

    async def run(self) -> None:
        """Serve until cancelled; every listener and connection is closed on the way out."""
        loop = asyncio.get_running_loop()
        self._listeners = ListenerSet(RelayContext(
            loop, node_name=self.node_name, node_ip=self.node_ip, node_of=self._node_of,
            udp_idle_timeout=self.udp_idle_timeout, batch_datagrams=self.udp_batching))
        self._health = HealthCheckServers(self.node_ip, self.healthy)
        recorder = asyncio.create_task(self._recorder.run(), name="proxy-events")
        try:
            await asyncio.gather(self.services.synced.wait(), self.slices.synced.wait(),
                                 self.nodes.synced.wait())
            log.info("proxy for %s (%s): caches synced", self.node_name, self.node_ip)
            last = -math.inf
            next_full = loop.time() + self.full_resync_interval
            while True:
                timeout = next_full - loop.time()
                if self._failing:
                    timeout = min(timeout, self.retry_interval)
                if not self._wake.is_set() and timeout > 0:
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    except asyncio.TimeoutError:
                        pass
                if loop.time() >= next_full:
                    self._all_dirty = True
                    next_full = loop.time() + self.full_resync_interval
                delay = last + self.min_sync_interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # coalesce a burst of changes into one sync
                self._wake.clear()
                last = loop.time()
                self.sync()
        finally:
            self._listeners.close_all()
            self._health.close_all()
            recorder.cancel()
            log.info("proxy for %s stopped: listeners closed", self.node_name)

    def healthy(self) -> bool:
        """kube-proxy's notion: not behind on applying changes for too long."""
        return self._dirty_since is None or time.monotonic() - self._dirty_since < UNHEALTHY_AFTER

    def _node_of(self, ip: str) -> str | None:
        return self._node_map.node_of(ip)

    # ------------------------------------------------------------ one sync

    def sync(self) -> None:
        t0 = time.perf_counter()
        self._dirty_since = None
        if self._nodes_dirty:
            self._nodes_dirty = False
            self._node_map = NodeAddresses(self.nodes.list())
        if self._all_dirty:
            keys = set(self.services.cache) | set(self._plans)
            self._all_dirty = False
            self._dirty.clear()
        else:
            keys, self._dirty = self._dirty, set()
        changed = False
        for key in keys:
            svc = self.services.get(key)
            plan = None
            if svc is not None:
                plan = plan_service(svc, self.slices.by_index(SLICE_INDEX, key),
                                    node_name=self.node_name, node_ip=self.node_ip)
            old = self._plans.get(key)
            if plan == old:
                continue
            changed = True
            self._update_ports(old, plan)
            if plan is None:
                del self._plans[key]
            else:
                self._plans[key] = plan
        if changed or self._failing:
            self._apply()
        dt = time.perf_counter() - t0
        st = self.sync_stats
        st.syncs += 1
        st.duration_sum += dt
        st.last_sync = time.time()
        if changed:
            log.debug("sync: %d services re-planned in %.1f ms", len(keys), dt * 1000)

    def _update_ports(self, old: ServicePlan | None, new: ServicePlan | None) -> None:
        keep = set()
        for p in new.ports if new is not None else ():
            keep.add(p.key)
            picker = self._pickers.get(p.key)
            if picker is None:
                self._pickers[p.key] = Picker(p.endpoints, affinity_timeout=p.affinity_timeout)
                self._stats[p.key] = PortStats()
            else:
                picker.update(p.endpoints, p.affinity_timeout)
        for p in old.ports if old is not None else ():
            if p.key not in keep:
                self._pickers.pop(p.key, None)
                self._stats.pop(p.key, None)

    def _apply(self) -> None:
        assert self._listeners is not None and self._health is not None
        wanted: dict[ListenerKey, Route] = {}
        owners: dict[ListenerKey, str] = {}
        conflicts: dict[ListenerKey, tuple[str, str]] = {}
        health: dict[int, HealthCheck] = {}
        for skey in sorted(self._plans):
            plan = self._plans[skey]
            for lk, fe in plan.listeners:
                if lk in wanted:
                    if owners[lk] != skey:
                        conflicts[lk] = (skey, owners[lk])
                    continue
                route = self._routes.get(lk)
                picker = self._pickers[fe.port_key]
                if route is None or route.frontend != fe or route.picker is not picker:
                    route = Route(fe, picker, self._stats[fe.port_key])
                wanted[lk] = route
                owners[lk] = skey
            if plan.health_check is not None:
                health.setdefault(plan.health_check.port, plan.health_check)
        self._routes = wanted

        failing: dict[object, str] = {}
        for lk, e in self._listeners.apply(wanted).items():
            fe = wanted[lk].frontend
            failing[lk] = str(e)
            self._report(lk, owners[lk], "FailedToStartServiceListener",
                         f'node {self.node_name} can\'t open "{fe.role} for {fe.port_key}" ({lk}), '
                         f"skipping it: {e}")
        for lk, (skey, owner) in conflicts.items():
            failing[("conflict", lk, skey)] = owner
            self._report(("conflict", lk, skey), skey, "FailedToStartServiceListener",
                         f"node {self.node_name} can't open {lk} for {skey}: already used by Service {owner}")
        for port, e in self._health.apply(health).items():
            hc = health[port]
            failing[("healthcheck", port)] = str(e)
            self._report(("healthcheck", port), f"{hc.namespace}/{hc.name}", "FailedToStartServiceHealthcheck",
                         f'node {self.node_name} failed to start healthcheck "{hc.namespace}/{hc.name}" '
                         f"on port {port}: {e}")
        # A problem that is gone may be reported again if it comes back.
        self._reported = {k: v for k, v in self._reported.items() if k in failing}
        self._failing = failing

        by_proto: dict[str, int] = {"TCP": 0, "UDP": 0}
        for lk in self._listeners.listeners:
            by_proto[lk.protocol] += 1
        self.sync_stats.listeners = by_proto
        self.sync_stats.failing = len(failing)
        self.sync_stats.health_checks = len(self._health.servers)

    # ------------------------------------------------------------ events

    def _report(self, problem: object, service_key: str, reason: str, message: str) -> None:
        if self._reported.get(problem) == message:
            return
        self._reported[problem] = message
        log.warning("%s", message)
        ns, _, name = service_key.partition("/")
        svc = self.services.get(service_key) or objects.new("Service", name, ns)
        self.events.warning(svc, reason, message)

    # ------------------------------------------------------------ metrics

    def render_metrics(self) -> str:
        """Prometheus text: per-Service-port connection, failure and byte counters, sync health."""
        return metrics.render(list(self._stats.items()), self.sync_stats)
