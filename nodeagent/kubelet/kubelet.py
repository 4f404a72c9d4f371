"""The kubelet: runs the pods bound to this node and writes their status.

Wiring as in client-go controllers: the pod informer (field selector spec.nodeName=<node>) only
enqueues `namespace/name`; workers run `sync(key)`, which re-reads the pod from the cache and
brings the node in line with it. `sync` is level-triggered and idempotent:
- pod gone from the API, or replaced by a new one of the same name: stop its containers now;
- deletionTimestamp set: run graceful termination, then write the final status and delete it
  with grace period 0 (the API server waits for that before removing a pod from a node);
- otherwise: allocate its IP, start what should run, and write the status if it changed.

Restart: before the first sync, every pod of this node the API knows is taken back: its IP is
reserved again from the pod CIDR and its restart counts are carried over (worker.restore). A pod
whose IP cannot be reserved (the node came back with another pod CIDR) is marked Failed, so its
owner replaces it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

from kubemu import errors, objects
from kubemu.client import Client
from kubemu.informer import Informer, wait_synced
from kubemu.v1 import objects_pb2 as pb
from kubemu.workqueue import WorkQueue, run_worker

from kubemu.nodeagent.kubelet import ipam, logs
from kubemu.events import WARNING, EventRecorder
from kubemu.nodeagent.kubelet.process import Reaper
from kubemu.nodeagent.kubelet.status import now_rfc3339
from kubemu.nodeagent.kubelet.worker import PodWorker

log = logging.getLogger("kubemu.nodeagent.kubelet")

TERMINAL = ("Succeeded", "Failed")


class Metrics:
    def __init__(self) -> None:
        self.containers_started = 0
        self.pods_started = 0
        self.pods_deleted = 0
        self.probe_failures = 0
        self.status_writes = 0
        self.status_conflicts = 0
        self.sync_seconds = 0.0
        self.syncs = 0


class Kubelet:
    def __init__(self, client: Client, *, node_name: str, node_ip: str, pod_cidr: str, state_dir: str,
                 pods: Informer, services: Informer, backoff: tuple[float, float] = (10.0, 300.0),
                 workers: int = 64, resync_period: float = 60.0):
        self.client = client
        self.node_name = node_name
        self.node_ip = node_ip
        self.state_dir = state_dir
        self.pods = pods
        self.services = services
        self.backoff = backoff
        self.n_workers = workers
        self.resync_period = resync_period
        self.ipam = ipam.PodIPAllocator(pod_cidr)
        self.reaper = Reaper()
        self.queue = WorkQueue(base_delay=0.05, max_delay=10.0)
        self.workers: dict[str, PodWorker] = {}
        self.metrics = Metrics()
        self._recorder = EventRecorder(client)
        self.events = self._recorder.for_component("kubelet", host=node_name)
        self.started = asyncio.Event()
        self.start_time = time.time()
        pods.add_handler(self._on_pod)

    # ------------------------------------------------------------ wiring

    def _on_pod(self, event: str, obj: pb.Pod, old: pb.Pod | None) -> None:
        self.queue.add(objects.key(obj))

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    async def run(self) -> None:
        await wait_synced(self.pods, self.services)
        self._restore()
        self.started.set()
        log.info("kubelet on %s: %d pods restored, pod CIDR %s", self.node_name, len(self.workers),
                 self.ipam.network)
        for key in list(self.pods.cache):
            self.queue.add(key)
        await asyncio.gather(*(run_worker(self.queue, self.sync, name="kubelet") for _ in range(self.n_workers)),
                             self._resync(), self._recorder.run())

    async def _resync(self) -> None:
        """The safety net of level-triggered control: every pod is looked at now and then."""
        while True:
            await asyncio.sleep(self.resync_period)
            for key in set(self.pods.cache) | set(self.workers):
                self.queue.add(key)

    async def stop(self, grace: float = 2.0) -> None:
        """The agent stops: every container stops (SIGTERM, `grace`, SIGKILL). The API is not told:
        the pods are this node's until the node lifecycle controller decides otherwise."""
        self.queue.shutdown()
        await asyncio.gather(*(w.kill_all(grace) for w in list(self.workers.values())), return_exceptions=True)
        self.reaper.close()

    def _restore(self) -> None:
        for pod in self.pods.list():
            if pod.status.phase in TERMINAL or not pod.status.podIP:
                continue
            w = PodWorker(self, pod)
            w.restore(pod)
            why = None if pod.spec.hostNetwork else self.ipam.reserve(w.ip, w.uid)
            if why is not None:
                log.warning("%s: cannot restore pod IP: %s", w.key, why)
                w.fail("PodIPUnavailable", f"the node agent restarted and cannot give the pod its IP back: {why}")
            self.workers[w.key] = w

    # ------------------------------------------------------------ sync

    async def sync(self, key: str) -> None:
        t0 = time.perf_counter()
        try:
            await self._sync(key)
        finally:
            self.metrics.syncs += 1
            self.metrics.sync_seconds += time.perf_counter() - t0

    async def _sync(self, key: str) -> None:
        pod = self.pods.get(key)
        w = self.workers.get(key)
        if w is not None and (pod is None or pod.metadata.uid != w.uid):
            # Gone from the API (force-deleted, namespace deleted) or replaced: stop at once.
            self.workers.pop(key, None)
            await w.kill_all()
            self._forget(w)
            w = None
        if pod is None:
            return
        if w is None:
            if pod.status.phase in TERMINAL:
                if pod.metadata.HasField("deletionTimestamp"):
                    await self._delete(pod)
                return
            w = PodWorker(self, pod)
            self.workers[key] = w
            self.metrics.pods_started += 1
        w.pod = pod
        if pod.metadata.HasField("deletionTimestamp"):
            if w.finished or (w.terminal and w.running_instances() == 0):
                # Unlike the kubelet, no final status (phase Succeeded/Failed) is written first:
                # the pod vanishes a moment later, and churn would pay one more write per pod.
                w.finished = True
                await self._delete(pod)
                self.workers.pop(key, None)
                self._forget(w)
                return
            w.set_deadline()
            if w.term_task is None:
                w.term_task = asyncio.ensure_future(w.terminate())
            return
        if w.terminal:
            if w.running_instances():
                await w.kill_all()
            self._release_ip(w)
            await self.write_status(w)
            return
        if not w.start_time:
            w.start_time = now_rfc3339()
        if not w.ip and pod.spec.hostNetwork:
            w.ip = self.node_ip  # the pod shares the node's network: its IP is the node's
        if not w.ip:
            try:
                w.ip = self.ipam.allocate(w.uid)
            except ipam.RangeFull as e:
                for s in w.all_slots:
                    s.record.message = f"failed to allocate a pod IP: {e}"
                self.events.event(pod, WARNING, "FailedCreatePodSandBox",
                                 f"Failed to create pod sandbox: failed to allocate a pod IP: {e}")
                await self.write_status(w)
                self.queue.add_after(key, 5.0)
                return
        wake = await w.reconcile()
        if wake is not None:
            self.queue.add_after(key, wake + 0.01)
        await self.write_status(w)

    def _release_ip(self, w: PodWorker) -> None:
        if w.ip:
            self.ipam.release(w.ip, w.uid)

    def _forget(self, w: PodWorker) -> None:
        self._release_ip(w)
        logs.remove_pod(self.state_dir, w.namespace, w.name, w.uid)

    async def _delete(self, pod: pb.Pod) -> None:
        try:
            await self.client.delete("Pod", pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                                     precondition_uid=pod.metadata.uid)
            self.metrics.pods_deleted += 1
        except (errors.NotFound, errors.Conflict):
            pass

    async def write_status(self, w: PodWorker) -> None:
        """Write the pod's status if it differs from what the API has (or what we last wrote,
        while the cache has not caught up with our own write)."""
        async with w.lock:
            for attempt in range(4):
                pod = self.pods.get(w.key) if attempt == 0 else None
                if attempt > 0:
                    try:
                        pod = await self.client.get("Pod", w.name, w.namespace)
                    except errors.NotFound:
                        return
                if pod is None or pod.metadata.uid != w.uid:
                    return
                st = w.build_status(pod)
                rv = int(pod.metadata.resourceVersion or 0)
                current = pod.status if (w.written is None or rv >= w.written_rv) else w.written
                if current == st:
                    self._note_terminal(w, st)
                    return
                out = pb.Pod(apiVersion="v1", kind="Pod")
                out.metadata.name, out.metadata.namespace = w.name, w.namespace
                out.metadata.resourceVersion = pod.metadata.resourceVersion
                out.status.CopyFrom(st)
                try:
                    res = await self.client.update_status(out)
                except errors.Conflict:
                    self.metrics.status_conflicts += 1
                    continue
                except errors.NotFound:
                    return
                self.metrics.status_writes += 1
                w.written, w.written_rv = res.status, int(res.metadata.resourceVersion)
                self._note_terminal(w, st)
                return
            raise errors.Conflict(f"pod {w.key}: status kept conflicting")

    def _note_terminal(self, w: PodWorker, st: pb.PodStatus) -> None:
        if st.phase in TERMINAL and not w.terminating and not w.terminal:
            w.terminal = True
            self._release_ip(w)
            self.queue.add(w.key)

    # ------------------------------------------------------------ logs and metrics

    def find_log(self, namespace: str, pod: str, container: str, previous: bool = False):
        """(path, still_running) of a container's log, or raise LookupError with a kubectl message."""
        w = self.workers.get(f"{namespace}/{pod}")
        if w is None:
            raise LookupError(f'pods "{pod}" not found')
        s = w.slot(container)
        if s is None:
            names = " ".join(c.spec.name for c in w.slots)
            raise LookupError(f"container {container} is not valid for pod {pod}"
                              if not names else f'container "{container}" in pod "{pod}" is not valid; '
                              f"choose one of: [{names}]")
        n = s.record.restart_count
        if previous:
            if n == 0:
                raise LookupError(f'previous terminated container "{container}" in pod "{pod}" not found')
            return w.log_path(s, n - 1), (lambda: False)
        inst = s.instance
        path = w.log_path(s, n)
        if not os.path.exists(path) and s.record.state == "waiting":
            raise LookupError(f'container "{container}" in pod "{pod}" is waiting to start: '
                              f"{s.record.reason or 'ContainerCreating'}")
        return path, (lambda: inst is not None and s.instance is inst and w.key in self.workers)

    def render_metrics(self) -> str:
        m = self.metrics
        running_pods = sum(1 for w in self.workers.values() if w.running_instances())
        states = {"running": 0, "exited": 0, "waiting": 0}
        for w in self.workers.values():
            for s in w.all_slots:
                st = s.record.state
                states["running" if st == "running" else "exited" if st == "terminated" else "waiting"] += 1
        restarts = sum(s.record.restart_count for w in self.workers.values() for s in w.all_slots)
        lines = [
            "# HELP kubelet_node_name The node's name. The count is always 1.",
            "# TYPE kubelet_node_name gauge",
            f'kubelet_node_name{{node="{self.node_name}"}} 1',
            "# HELP kubelet_running_pods Number of pods that have a running container.",
            "# TYPE kubelet_running_pods gauge",
            f"kubelet_running_pods {running_pods}",
            "# HELP kubelet_running_containers Number of containers by state.",
            "# TYPE kubelet_running_containers gauge",
        ]
        for state, n in states.items():
            lines.append(f'kubelet_running_containers{{container_state="{state}"}} {n}')
        lines += [
            "# HELP kubelet_started_pods_total Pods this agent started.",
            "# TYPE kubelet_started_pods_total counter",
            f"kubelet_started_pods_total {m.pods_started}",
            "# HELP kubelet_started_containers_total Container instances started (restarts included).",
            "# TYPE kubelet_started_containers_total counter",
            f"kubelet_started_containers_total {m.containers_started}",
            "# HELP kubemu_kubelet_container_restarts Sum of restartCount over this node's containers.",
            "# TYPE kubemu_kubelet_container_restarts gauge",
            f"kubemu_kubelet_container_restarts {restarts}",
            "# HELP kubemu_kubelet_deleted_pods_total Pods this agent finished deleting.",
            "# TYPE kubemu_kubelet_deleted_pods_total counter",
            f"kubemu_kubelet_deleted_pods_total {m.pods_deleted}",
            "# HELP prober_probe_failures_total Probe runs that failed.",
            "# TYPE prober_probe_failures_total counter",
            f"prober_probe_failures_total {m.probe_failures}",
            "# HELP kubemu_kubelet_status_writes_total Pod status updates written to the API.",
            "# TYPE kubemu_kubelet_status_writes_total counter",
            f"kubemu_kubelet_status_writes_total {m.status_writes}",
            "# HELP kubemu_kubelet_status_conflicts_total Status updates retried after a conflict.",
            "# TYPE kubemu_kubelet_status_conflicts_total counter",
            f"kubemu_kubelet_status_conflicts_total {m.status_conflicts}",
            "# HELP kubemu_kubelet_pod_ips Pod IPs in use and available in this node's pod CIDR.",
            "# TYPE kubemu_kubelet_pod_ips gauge",
            f'kubemu_kubelet_pod_ips{{state="in_use"}} {len(self.ipam)}',
            f'kubemu_kubelet_pod_ips{{state="available"}} {self.ipam.capacity - len(self.ipam)}',
            "# HELP kubelet_pod_worker_duration_seconds Time spent syncing pods.",
            "# TYPE kubelet_pod_worker_duration_seconds summary",
            f"kubelet_pod_worker_duration_seconds_sum {m.sync_seconds:.6f}",
            f"kubelet_pod_worker_duration_seconds_count {m.syncs}",
        ]
        return "\n".join(lines) + "\n"
