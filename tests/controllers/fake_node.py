"""A stand-in node agent for the controller tests: registers a Node, renews its Lease, and
marks the pods bound to it Running and Ready with an IP of its pod CIDR.

It honours the node-agent contract the controllers rely on (Node `node-N` with an InternalIP
and a Ready condition whose lastHeartbeatTime it refreshes, Lease `kube-node-lease/node-N`
renewed every second with microsecond renewTime, pod status with phase, podIP, conditions and
containerStatuses, and graceful deletion finished with delete(grace 0)) but runs no workload.
Run it as its own process, one per node, so a test can kill a node like a real one:

    python tests/controllers/fake_node.py --server 127.0.0.1:PORT --name node-1 \
        --ip 127.30.10.1 --pod-cidr 127.30.129.0/24 [--ready-delay 0.2]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import logging
import signal

from kubemu import errors, objects
from kubemu.client import Client
from kubemu.informer import Informer
from kubemu.v1 import objects_pb2 as pb
from kubemu.workqueue import WorkQueue, run_worker

log = logging.getLogger("fake-node")


def now_micro() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_sec() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _copy(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out


class FakeNode:
    def __init__(self, client: Client, name: str, ip: str, pod_cidr: str, *, ready_delay: float = 0.0,
                 renew: float = 1.0, labels: dict[str, str] | None = None):
        self.client = client
        self.name = name
        self.ip = ip
        self.pod_cidr = pod_cidr
        self.ready_delay = ready_delay
        self.renew = renew
        self.labels = dict(labels or {})
        self.hosts = iter(ipaddress.ip_network(pod_cidr).hosts())
        self.ips: dict[str, str] = {}  # pod uid -> IP
        self.first_seen: dict[str, float] = {}
        self.pods = Informer(client, "Pod", field_selector=f"spec.nodeName={name}")
        self.queue = WorkQueue()
        self.pods.add_handler(lambda ev, pod, old: self.queue.add(objects.key(pod)))
        self.node_uid = ""

    # ------------------------------------------------------------ node and lease

    def _node_status(self, node: pb.Node) -> None:
        node.status.ClearField("conditions")
        node.status.conditions.add(type="Ready", status="True", reason="KubeletReady",
                                   message="kubelet is posting ready status",
                                   lastHeartbeatTime=now_sec(), lastTransitionTime=now_sec())
        del node.status.addresses[:]
        node.status.addresses.add(type="InternalIP", address=self.ip)
        node.status.addresses.add(type="Hostname", address=self.name)

    async def register(self) -> None:
        node = objects.new("Node", self.name)
        node.metadata.labels.update({"kubernetes.io/hostname": self.name, **self.labels})
        node.spec.podCIDR = self.pod_cidr
        node.spec.podCIDRs.append(self.pod_cidr)
        try:
            created = await self.client.create(node)
        except errors.AlreadyExists:
            created = await self.client.get("Node", self.name)
        self.node_uid = created.metadata.uid
        await self.heartbeat(force=True)

    async def heartbeat(self, force: bool = False) -> None:
        node = await self.client.get("Node", self.name)
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        if force or not ready or ready[0].status != "True":
            new = _copy(node)
            self._node_status(new)
            if ready and ready[0].status == "True":
                new.status.conditions[0].lastTransitionTime = ready[0].lastTransitionTime
            try:
                await self.client.update_status(new)
            except errors.Conflict:
                pass  # next tick

    async def renew_lease(self) -> None:
        try:
            lease = await self.client.get("Lease", self.name, "kube-node-lease")
        except errors.NotFound:
            lease = objects.new("Lease", self.name, "kube-node-lease")
            lease.metadata.ownerReferences.add(apiVersion="v1", kind="Node", name=self.name, uid=self.node_uid)
            lease.spec.holderIdentity = self.name
            lease.spec.leaseDurationSeconds = 40
            lease.spec.renewTime = now_micro()
            try:
                await self.client.create(lease)
            except errors.AlreadyExists:
                pass
            return
        new = _copy(lease)
        new.spec.renewTime = now_micro()
        new.spec.holderIdentity = self.name
        try:
            await self.client.update(new)
        except errors.Conflict:
            pass

    async def lease_loop(self) -> None:
        ticks = 0
        while True:
            try:
                await self.renew_lease()
                # Node status heartbeats are rarer than lease renewals, as in Kubernetes.
                await self.heartbeat(force=ticks % 10 == 9)
            except errors.ApiError as e:
                log.info("heartbeat failed: %s", e)
            ticks += 1
            await asyncio.sleep(self.renew)

    # ------------------------------------------------------------ pods

    def _ip_for(self, uid: str) -> str:
        if uid not in self.ips:
            self.ips[uid] = str(next(self.hosts))
        return self.ips[uid]

    async def sync_pod(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            return
        if pod.metadata.HasField("deletionTimestamp"):
            try:
                await self.client.delete("Pod", pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                                         precondition_uid=pod.metadata.uid)
            except (errors.NotFound, errors.Conflict):
                pass
            return
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
        if ready and pod.status.podIP:
            return
        loop = asyncio.get_running_loop()
        first = self.first_seen.setdefault(pod.metadata.uid, loop.time())
        wait = first + self.ready_delay - loop.time()
        if wait > 0:
            self.queue.add_after(key, wait)
            return
        new = _copy(pod)
        st = new.status
        st.phase = "Running"
        st.hostIP = self.ip
        del st.hostIPs[:]
        st.hostIPs.add(ip=self.ip)
        st.podIP = self._ip_for(pod.metadata.uid)
        del st.podIPs[:]
        st.podIPs.add(ip=st.podIP)
        if not st.startTime:
            st.startTime = now_sec()
        t = now_sec()
        st.ClearField("conditions")
        for ctype in ("Initialized", "Ready", "ContainersReady", "PodScheduled"):
            st.conditions.add(type=ctype, status="True", lastTransitionTime=t)
        st.ClearField("containerStatuses")
        for c in pod.spec.containers:
            cs = st.containerStatuses.add(name=c.name, image=c.image, ready=True, started=True, restartCount=0)
            cs.state.running.startedAt = st.startTime
        try:
            await self.client.update_status(new)
        except errors.Conflict:
            raise  # retried from the cache
        except errors.NotFound:
            pass

    async def run(self) -> None:
        await self.client.wait_ready(30)
        await self.register()
        tasks = [asyncio.create_task(self.lease_loop()), asyncio.create_task(self.pods.run())]
        tasks += [asyncio.create_task(run_worker(self.queue, self.sync_pod, name="pods")) for _ in range(4)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()


async def main(args) -> None:
    client = Client(args.server)
    node = FakeNode(client, args.name, args.ip, args.pod_cidr, ready_delay=args.ready_delay, renew=args.renew,
                    labels=dict(kv.split("=", 1) for kv in args.label))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(node.run())
    await asyncio.wait({task, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass
    await client.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--pod-cidr", required=True)
    p.add_argument("--ready-delay", type=float, default=0.0)
    p.add_argument("--renew", type=float, default=1.0)
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--log-level", default="warning")
    a = p.parse_args()
    logging.basicConfig(level=getattr(logging, a.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(a))
