"""The load-balancer controller: Kubernetes' service controller and a cloud's LB API in one.

Informer handlers only enqueue Service keys; `sync(key)` re-reads the Service, the Nodes and its
EndpointSlices from the caches and converges (level-triggered, idempotent; a sync that finds
nothing to change writes nothing):

- wants a load balancer (type LoadBalancer, our class, not being deleted):
  finalizer first (so a deletion cannot outrun the cleanup), then an IP from the pool, then the
  listeners, then `status.loadBalancer.ingress` - published only once every listener is bound
  and the health checks had their first say, so a client that reads the IP can use it.
  An exhausted pool or a refused bind leaves the Service pending with a Warning Event; a freed
  IP wakes the Services waiting for one, a bind is retried with backoff (at most 2 s apart).
- no longer wants one (deleted, type changed) but still holds our finalizer or an IP:
  listeners closed, IP released, finalizer and cost annotations removed, status cleared.

Event reasons are the service controller's (EnsuringLoadBalancer, EnsuredLoadBalancer,
UpdatedLoadBalancer, SyncLoadBalancerFailed, DeletingLoadBalancer, DeletedLoadBalancer) and
MetalLB's for the pool (AllocationFailed, IPAllocated).

Restart: before the first sync, every Service of ours whose status shows an IP of the pool gets
that IP back (`Pool.adopt`), so no Service is dropped or renumbered and none of its IPs goes to
a pending Service first.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from google.protobuf.message import Message

from kubemu import errors, objects
from kubemu.client import Client
from kubemu.events import NORMAL, WARNING, EventRecorder, new_event
from kubemu.timefmt import rfc3339
from kubemu.cloudlb import cost, planner
from kubemu.cloudlb.health import HealthChecker
from kubemu.cloudlb.listeners import LoadBalancers
from kubemu.cloudlb.pool import Pool, PoolError
from kubemu.informer import Informer, wait_synced
from kubemu.workqueue import WorkQueue, run_worker

log = logging.getLogger("kubemu.cloudlb")

WORKERS = 4
COMPONENT = "cloud-lb"
COST_ANNOTATIONS = (cost.ANNOTATION_SINCE, cost.ANNOTATION_HOURLY, cost.ANNOTATION_COST)


BIND_RETRY_BASE, BIND_RETRY_MAX = 0.05, 2.0


def _slice_service(sl: Message) -> list[str]:
    name = sl.metadata.labels.get(planner.SERVICE_NAME_LABEL, "")
    return [f"{sl.metadata.namespace}/{name}"] if name else []


def _node_summary(node: Message | None) -> tuple | None:
    """What of a Node matters to load balancing (heartbeats do not)."""
    if node is None:
        return None
    return planner.eligible_nodes([node])


def _hosts(plan: planner.Plan | None) -> tuple[str, ...]:
    if plan is None:
        return ()
    return tuple(sorted({t.name for lp in plan.listeners if lp.via_node_ports for t in lp.targets}))


class Controller:
    def __init__(self, client: Client, *, pool: Pool, lb_class: str | None = None,
                 health_interval: float = 1.0, hourly_price: float = 0.025, cost_interval: float = 60.0,
                 resync_interval: float = 30.0, clock: Callable[[], float] = time.time):
        self.client = client
        self.pool = pool
        self.lb_class = lb_class
        self.hourly_price = hourly_price
        self.cost_interval = cost_interval
        self.resync_interval = resync_interval
        self.clock = clock
        self.services = Informer(client, "Service")
        self.nodes = Informer(client, "Node")
        self.slices = Informer(client, "EndpointSlice")
        self.slices.add_index("service", _slice_service)
        self.queue = WorkQueue(base_delay=0.05, max_delay=2.0)
        self.health = HealthChecker(interval=health_interval, on_change=self._health_changed)
        self.lbs = LoadBalancers(self.health)
        self.events = EventRecorder(client)
        self.recorder = self.events.for_component(COMPONENT)
        self.pending: set[str] = set()  # waiting for an IP
        # The revision of our last write per Service: a cached copy older than that has not seen
        # it yet, and acting on it would write again what was just written.
        self.written: dict[str, int] = {}
        self.bind_failures: dict[str, int] = {}
        self.synced = asyncio.Event()
        self.services.add_handler(self._on_service)
        self.nodes.add_handler(self._on_node)
        self.slices.add_handler(self._on_slice)

    # ------------------------------------------------------------ handlers: enqueue only

    def _relevant(self, svc: Message) -> bool:
        key = objects.key(svc)
        return (svc.spec.type == planner.LOAD_BALANCER or planner.has_finalizer(svc)
                or key in self.lbs.lbs or self.pool.ip_of(key) is not None)

    def _on_service(self, event: str, svc: Message, old: Message | None) -> None:
        if event == "DELETED" or self._relevant(svc) or (old is not None and self._relevant(old)):
            self.queue.add(objects.key(svc))

    def _on_node(self, event: str, node: Message, old: Message | None) -> None:
        if event == "DELETED" or _node_summary(node) != _node_summary(old):
            self._enqueue_all()

    def _on_slice(self, event: str, sl: Message, old: Message | None) -> None:
        for key in {*_slice_service(sl), *(_slice_service(old) if old is not None else ())}:
            if key in self.lbs.lbs:
                self.queue.add(key)

    def _health_changed(self) -> None:
        self.lbs.refresh()

    def _enqueue_all(self) -> None:
        for key in list(self.lbs.lbs) + list(self.pending):
            self.queue.add(key)

    def _wake_pending(self) -> None:
        for key in sorted(self.pending):
            self.queue.add(key)

    # ------------------------------------------------------------ sync

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None:
            self._teardown(key, None)
            self.written.pop(key, None)
            return
        if int(svc.metadata.resourceVersion or 0) < self.written.get(key, 0):
            return  # the watch event of our own write is on its way and will sync again
        if not planner.is_ours(svc, self.lb_class):
            if key in self.lbs.lbs or self.pool.ip_of(key) is not None:
                self._teardown(key, svc)
            return
        if planner.wants_load_balancer(svc, self.lb_class):
            await self._provision(key, svc)
        elif (planner.has_finalizer(svc) or key in self.lbs.lbs or self.pool.ip_of(key) is not None
              or any(a in svc.metadata.annotations for a in COST_ANNOTATIONS)):
            await self._cleanup(key, svc)

    async def _patch(self, svc: Message, patch: dict, *, subresource: str = "") -> Message:
        out = await self.client.patch("Service", svc.metadata.name, patch, svc.metadata.namespace,
                                      subresource=subresource)
        key = objects.key(svc)
        self.written[key] = max(self.written.get(key, 0), int(out.metadata.resourceVersion or 0))
        return out

    def _teardown(self, key: str, svc: Message | None) -> bool:
        """Close the listeners and give the IP back; True if there was anything to tear down."""
        lb = self.lbs.remove(key)
        ip = self.pool.release(key)
        self.pending.discard(key)
        self.bind_failures.pop(key, None)
        if ip is not None:
            log.info("%s: released %s", key, ip)
            self._wake_pending()
        return lb is not None or ip is not None

    async def _cleanup(self, key: str, svc: Message) -> None:
        had = key in self.lbs.lbs or self.pool.ip_of(key) is not None
        if had:
            self.recorder.event(svc, NORMAL, "DeletingLoadBalancer", "Deleting load balancer")
        now = self.clock()
        ann = svc.metadata.annotations
        spent = ""
        if cost.ANNOTATION_SINCE in ann:
            since = cost.since_of(ann, now)
            spent = (f" after {(now - since) / 3600:.3f} h, costing "
                     f"{cost.usd(cost.running_cost(self.hourly_price, since, now))}")
        self._teardown(key, svc)
        meta: dict = {}
        if planner.has_finalizer(svc):
            meta["finalizers"] = [f for f in svc.metadata.finalizers if f != planner.FINALIZER]
        removed = {a: None for a in COST_ANNOTATIONS if a in ann}
        if removed:
            meta["annotations"] = removed
        cur: Message | None = svc
        if meta:
            meta["resourceVersion"] = svc.metadata.resourceVersion
            try:
                cur = await self._patch(svc, {"metadata": meta})
            except errors.NotFound:
                cur = None
        if had:
            self.recorder.event(svc, NORMAL, "DeletedLoadBalancer", f"Deleted load balancer{spent}")
        if (cur is not None and not cur.metadata.HasField("deletionTimestamp")
                and cur.spec.type == planner.LOAD_BALANCER and planner.ingress_ips(cur)):
            try:
                await self._patch(cur, planner.status_patch(None), subresource="status")
            except errors.NotFound:
                pass

    async def _provision(self, key: str, svc: Message) -> None:
        if not planner.has_finalizer(svc):
            svc = await self._patch(svc, {"metadata": {
                "finalizers": [*svc.metadata.finalizers, planner.FINALIZER],
                "resourceVersion": svc.metadata.resourceVersion}})
        held = self.pool.ip_of(key)
        try:
            ip = self.pool.allocate(key, planner.requested_ip(svc))
        except PoolError as e:
            if held is None:
                self.pending.add(key)
            log.info("%s: %s", key, e)
            self.recorder.event(svc, WARNING, e.reason, f'Failed to allocate IP for "{key}": {e}')
            return
        self.pending.discard(key)
        if held is not None and held != ip:
            self._wake_pending()
        if held != ip:
            log.info("%s: allocated %s", key, ip)
            self.recorder.event(svc, NORMAL, "IPAllocated", f'Assigned IP ["{ip}"]')

        plan = planner.plan(svc, self.nodes.list(), self.slices.by_index("service", key))
        lb = self.lbs.get(key)
        published = planner.status_matches(svc, ip)
        old_hosts = _hosts(lb.plan) if lb is not None else None
        if not published and (lb is None or lb.ip != ip):
            self.recorder.event(svc, NORMAL, "EnsuringLoadBalancer", "Ensuring load balancer")
        bind_errors = await self.lbs.ensure(key, ip, plan)
        for why in plan.skipped:
            self.recorder.event(svc, WARNING, "UnsupportedPort", why)
        if bind_errors:
            # Retried on a backoff of its own (at most BIND_RETRY_MAX apart, so the Service is
            # provisioned soon after the port is free) rather than by failing the sync, which
            # would log a warning on every attempt of a condition that may last.
            msg = "Error syncing load balancer: " + "; ".join(bind_errors)
            n = self.bind_failures.get(key, 0)
            self.bind_failures[key] = n + 1
            if n == 0:
                log.warning("%s: %s", key, msg)
            self.recorder.event(svc, WARNING, "SyncLoadBalancerFailed", msg)
            self.queue.add_after(key, min(BIND_RETRY_BASE * 2 ** n, BIND_RETRY_MAX))
            return
        self.bind_failures.pop(key, None)

        if not published:
            # Publish once the checks had their first say, so the first clients find healthy targets.
            await self.health.wait_checked(plan.probes(), timeout=self.health.timeout + 0.2)
            svc = await self._patch(svc, planner.status_patch(ip), subresource="status")
            log.info("%s: load balancer ready on %s, ports %s", key, ip,
                     ", ".join(f"{lp.port}/{lp.protocol}" for lp in plan.listeners))
            self.recorder.event(svc, NORMAL, "EnsuredLoadBalancer", "Ensured load balancer")
        elif old_hosts is not None and old_hosts != _hosts(plan):
            self.recorder.event(svc, NORMAL, "UpdatedLoadBalancer", "Updated load balancer with new hosts")

        ann = svc.metadata.annotations
        if (cost.ANNOTATION_SINCE not in ann
                or ann.get(cost.ANNOTATION_HOURLY) != cost.usd(self.hourly_price, 4)):
            now = self.clock()
            await self._patch(svc, {"metadata": {"annotations": cost.annotations(
                self.hourly_price, cost.since_of(ann, now), now)}})

    # ------------------------------------------------------------ cost

    def costs(self, now: float) -> dict[str, tuple[Message, float, float]]:
        """(Service, since, cost so far) of every load balancer that is provisioned."""
        out = {}
        for key, lb in self.lbs.lbs.items():
            svc = self.services.get(key)
            if svc is None or not planner.status_matches(svc, lb.ip):
                continue
            since = cost.since_of(svc.metadata.annotations, now)
            out[key] = (svc, since, cost.running_cost(self.hourly_price, since, now))
        return out

    async def write_costs(self) -> None:
        now = self.clock()
        costs = self.costs(now)
        total = sum(c for _, _, c in costs.values())
        for key, (svc, since, _) in costs.items():
            try:
                await self._patch(svc, {"metadata": {
                    "annotations": cost.annotations(self.hourly_price, since, now)}})
            except errors.ApiError as e:
                log.debug("%s: cost annotation not written: %s", key, e)
                continue
            try:
                await self._cost_event(svc, cost.cost_message(self.hourly_price, since, now, total, len(costs)),
                                       now)
            except errors.ApiError as e:
                log.debug("%s: cost event not written: %s", key, e)

    async def _cost_event(self, svc: Message, message: str, now: float) -> None:
        """One LoadBalancerCost Event per Service, its message replaced each time.

        Not through the recorder: it aggregates repeats of one message, and this message changes
        every time (a new Event every interval would pile up).
        """
        name, ns = f"{svc.metadata.name}.{cost.EVENT_SUFFIX}", svc.metadata.namespace
        try:
            ev = await self.client.get("Event", name, ns)
        except errors.NotFound:
            ev = new_event(svc, NORMAL, "LoadBalancerCost", message, COMPONENT, now)
            ev.metadata.name = name
            await self.client.create(ev)
            return
        if ev.involvedObject.uid != svc.metadata.uid:  # left over from an earlier Service
            ev.involvedObject.uid = svc.metadata.uid
            ev.firstTimestamp, ev.count = rfc3339(now), 0
        ev.message, ev.lastTimestamp, ev.count = message, rfc3339(now), ev.count + 1
        await self.client.update(ev)

    async def _cost_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cost_interval)
            await self.write_costs()

    async def _resync_loop(self) -> None:
        """The safety net: every Service of ours is synced again now and then."""
        while True:
            await asyncio.sleep(self.resync_interval)
            for svc in self.services.list():
                if self._relevant(svc):
                    self.queue.add(objects.key(svc))

    # ------------------------------------------------------------ running

    def adopt(self) -> int:
        """Take back the IPs a previous run published (before any new allocation)."""
        n = 0
        for svc in self.services.list():
            if svc.spec.type != planner.LOAD_BALANCER or not planner.is_ours(svc, self.lb_class):
                continue
            key = objects.key(svc)
            for ip in planner.ingress_ips(svc):
                if self.pool.adopt(key, ip):
                    log.info("%s: adopted %s", key, ip)
                    n += 1
                    break
        return n

    async def run(self) -> None:
        informers = (self.services, self.nodes, self.slices)
        tasks = [asyncio.create_task(i.run(), name=f"informer-{i.kind}") for i in informers]
        tasks.append(asyncio.create_task(self.events.run(), name="events"))
        try:
            await wait_synced(*informers)
            adopted = self.adopt()
            log.info("synced: %d services, %d nodes; adopted %d load balancers",
                     len(self.services.cache), len(self.nodes.cache), adopted)
            for svc in self.services.list():
                if self._relevant(svc):
                    self.queue.add(objects.key(svc))
            tasks += [asyncio.create_task(run_worker(self.queue, self.sync, name="cloud-lb"),
                                          name=f"worker-{i}") for i in range(WORKERS)]
            tasks.append(asyncio.create_task(self._cost_loop(), name="cost"))
            tasks.append(asyncio.create_task(self._resync_loop(), name="resync"))
            self.synced.set()
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()
        finally:
            self.queue.shutdown()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.lbs.close()
            await self.health.close()
            try:
                await asyncio.wait_for(self.events.flush(), 2.0)
            except (TimeoutError, errors.ApiError):
                pass
