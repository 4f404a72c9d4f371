"""The controller manager: one client, one informer per kind, every controller on top.

Informers are shared: each kind is listed and watched once, and every controller that reads
it registers its handlers and indexes on the same cache (client-go's SharedInformerFactory).
Handlers are registered before the informers start, so the first list reaches every
controller as ADDED events. Controllers start only once every informer has synced: a
controller acting on a half-filled cache would, for instance, create pods that already exist.

Shutdown: `stop` set -> controllers, then informers and the event recorder are cancelled, and
the client is closed. Nothing here needs a graceful drain: every controller is level-triggered,
so whatever was in flight is redone by the next controller manager from the state it finds.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging

from kubemu.client import Client
from kubemu.informer import Informer
from kubemu.process import FreezeSurvivors

from kubemu.controllers.deployment import DeploymentController
from kubemu.controllers.endpointslice import EndpointSliceController
from kubemu.events import EventRecorder
from kubemu.controllers.gc import GarbageCollector
from kubemu.controllers.kubernetes_service import KubernetesServiceController
from kubemu.controllers.nodelifecycle import LEASE_NAMESPACE, NodeLifecycleController
from kubemu.controllers.replicaset import ReplicaSetController
from kubemu.controllers.scheduler import Scheduler

log = logging.getLogger("kubemu.controllers.manager")


@dataclasses.dataclass
class Options:
    server: str
    service_cidr: str = "127.96.0.0/16"
    node_monitor_grace_period: float = 3.0
    pod_eviction_timeout: float = 10.0
    max_endpoints_per_slice: int = 100
    apiserver_endpoint: str = ""
    controllers: tuple[str, ...] = ()  # empty: all


ALL = ("scheduler", "replicaset", "deployment", "endpointslice", "nodelifecycle", "garbagecollector",
       "kubernetes-service")


class Informers:
    """One informer per kind, created on first use."""

    def __init__(self, client: Client):
        self.client = client
        self.by_kind: dict[str, Informer] = {}

    def get(self, kind: str, namespace: str = "") -> Informer:
        if kind not in self.by_kind:
            self.by_kind[kind] = Informer(self.client, kind, namespace=namespace)
        return self.by_kind[kind]

    def __getattr__(self, name: str) -> Informer:
        kinds = {"nodes": ("Node", ""), "leases": ("Lease", LEASE_NAMESPACE), "pods": ("Pod", ""),
                 "services": ("Service", ""), "slices": ("EndpointSlice", ""),
                 "deployments": ("Deployment", ""), "replicasets": ("ReplicaSet", "")}
        if name not in kinds:
            raise AttributeError(name)
        return self.get(*kinds[name])


def build(client: Client, opts: Options, recorder: EventRecorder) -> tuple[Informers, list]:
    inf = Informers(client)
    enabled = set(opts.controllers or ALL)
    unknown = enabled - set(ALL)
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(sorted(unknown))} (known: {', '.join(ALL)})")
    controllers = []
    if "scheduler" in enabled:
        controllers.append(Scheduler(client, pods=inf.pods, nodes=inf.nodes, recorder=recorder))
    if "replicaset" in enabled:
        controllers.append(ReplicaSetController(client, replicasets=inf.replicasets, pods=inf.pods,
                                                recorder=recorder))
    if "deployment" in enabled:
        controllers.append(DeploymentController(client, deployments=inf.deployments,
                                                replicasets=inf.replicasets, pods=inf.pods, recorder=recorder))
    if "endpointslice" in enabled:
        controllers.append(EndpointSliceController(client, services=inf.services, pods=inf.pods,
                                                   slices=inf.slices, nodes=inf.nodes, recorder=recorder,
                                                   max_endpoints_per_slice=opts.max_endpoints_per_slice))
    if "nodelifecycle" in enabled:
        controllers.append(NodeLifecycleController(client, nodes=inf.nodes, leases=inf.leases, pods=inf.pods,
                                                   recorder=recorder,
                                                   grace_period=opts.node_monitor_grace_period,
                                                   eviction_timeout=opts.pod_eviction_timeout))
    if "garbagecollector" in enabled:
        controllers.append(GarbageCollector(client, informers={
            "Pod": inf.pods, "ReplicaSet": inf.replicasets, "Deployment": inf.deployments,
            "Service": inf.services, "EndpointSlice": inf.slices, "Node": inf.nodes, "Lease": inf.leases}))
    if "kubernetes-service" in enabled:
        controllers.append(KubernetesServiceController(
            client, services=inf.services, slices=inf.slices, service_cidr=opts.service_cidr,
            apiserver_endpoint=opts.apiserver_endpoint or opts.server))
    return inf, controllers


async def run(opts: Options, stop: asyncio.Event) -> None:
    client = Client(opts.server)
    recorder = EventRecorder(client)
    informers, controllers = build(client, opts, recorder)
    tasks: list[asyncio.Task] = []
    waiters: list[asyncio.Task] = []
    try:
        for kind, i in informers.by_kind.items():
            tasks.append(asyncio.create_task(i.run(), name=f"informer-{kind}"))
        tasks.append(asyncio.create_task(recorder.run(), name="event-recorder"))
        synced = asyncio.create_task(_wait_synced(informers, opts.server))
        stopping = asyncio.create_task(stop.wait())
        waiters = [synced, stopping]
        done, _ = await asyncio.wait({synced, stopping, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        _check(done, waiters)
        if stop.is_set():
            return
        # The caches are the bulk of our heap and live long: keep them out of the cyclic
        # collector's full passes, which would otherwise stall the loop for tens of ms.
        tasks.append(asyncio.create_task(FreezeSurvivors().install().run(), name="gc-review"))
        log.info("caches synced; starting %s", ", ".join(c.name for c in controllers))
        for c in controllers:
            tasks.append(asyncio.create_task(c.run(), name=f"controller-{c.name}"))
        done, _ = await asyncio.wait({stopping, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        _check(done, waiters)
    finally:
        log.info("shutting down")
        for t in tasks + waiters:
            t.cancel()
        await asyncio.gather(*tasks, *waiters, return_exceptions=True)
        try:
            await asyncio.wait_for(client.close(), 2.0)
        except (asyncio.TimeoutError, Exception):
            pass


def _check(done: set[asyncio.Task], waiters: list[asyncio.Task]) -> None:
    """A controller, informer or the recorder that stops is a bug: exit with an error, so the
    supervisor restarts us, rather than limp on half blind."""
    for t in done:
        if t not in waiters:
            exc = None if t.cancelled() else t.exception()
            raise RuntimeError(f"{t.get_name()} stopped unexpectedly") from exc


async def _wait_synced(informers: Informers, server: str) -> None:
    waiting = [i for i in informers.by_kind.values()]
    while True:
        pending = [i for i in waiting if not i.synced.is_set()]
        if not pending:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in pending)), 5.0)
        except asyncio.TimeoutError:
            log.info("waiting for the API server at %s (caches not synced: %s)", server,
                     ", ".join(i.kind for i in pending if not i.synced.is_set()))
