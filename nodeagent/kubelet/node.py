"""This node's Node object and its Lease: registration, heartbeats, and taking the Node back.

- `node_object`/`node_status` are pure builders of what the agent reports (addresses, pod CIDR,
  capacity, conditions, nodeInfo, the kubelet port).
- `NodeReporter.run()` registers the Node (or takes an existing one back: a restarted agent
  keeps its name), then renews the Lease `kube-node-lease/<node>` every second, and writes the
  Node status when it drifted (the node lifecycle controller set Ready=Unknown while the lease
  was stale) or every `report_interval` seconds. Every step retries while the API server is
  away; nothing here stops the pods from running.
"""
from __future__ import annotations

import asyncio
import logging
import os
import platform

from kubemu import errors, objects
from kubemu.client import Client
from kubemu.timefmt import rfc3339, rfc3339_micro as micro_time
from kubemu.informer import Informer
from kubemu.v1 import objects_pb2 as pb

log = logging.getLogger("kubemu.nodeagent.node")

KUBELET_VERSION = "v1.31.0-kubemu"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40

_PRESSURE = (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
             ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
             ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))


def _memory_ki() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 8 * 1024 * 1024


def _os_image() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _machine_id() -> str:
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(p) as f:
                return f.read().strip()
        except OSError:
            continue
    return ""


def _arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def node_object(name: str, pod_cidr: str) -> pb.Node:
    node = objects.new("Node", name)
    node.metadata.labels.update({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                 "kubernetes.io/arch": _arch(), "beta.kubernetes.io/os": "linux",
                                 "beta.kubernetes.io/arch": _arch()})
    node.spec.podCIDR = pod_cidr
    node.spec.podCIDRs.append(pod_cidr)
    return node


def node_status(*, name: str, node_ip: str, kubelet_port: int, max_pods: int,
                old: pb.NodeStatus | None = None, now: str | None = None) -> pb.NodeStatus:
    """The status this agent reports: Ready=True with a fresh heartbeat. A condition keeps its
    lastTransitionTime while its status does not change."""
    now = now or rfc3339()
    prev = {c.type: c for c in old.conditions} if old is not None else {}
    st = pb.NodeStatus()
    cap = {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_ki()}Ki", "pods": str(max_pods),
           "ephemeral-storage": "100Gi"}
    st.capacity.update(cap)
    st.allocatable.update(cap)

    def cond(type_: str, status: str, reason: str, message: str) -> pb.NodeCondition:
        p = prev.get(type_)
        since = p.lastTransitionTime if p is not None and p.status == status and p.lastTransitionTime else now
        return pb.NodeCondition(type=type_, status=status, lastHeartbeatTime=now, lastTransitionTime=since,
                                reason=reason, message=message)

    for type_, reason, message in _PRESSURE:
        st.conditions.append(cond(type_, "False", reason, message))
    st.conditions.append(cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"))
    st.addresses.add(type="InternalIP", address=node_ip)
    st.addresses.add(type="Hostname", address=name)
    st.daemonEndpoints.kubeletEndpoint.Port = kubelet_port
    info = st.nodeInfo
    info.machineID = _machine_id()
    info.kernelVersion = platform.release()
    info.osImage = _os_image()
    info.containerRuntimeVersion = "kubemu://0.1.0"
    info.kubeletVersion = KUBELET_VERSION
    info.kubeProxyVersion = KUBELET_VERSION
    info.operatingSystem = "linux"
    info.architecture = _arch()
    return st


def needs_update(current: pb.Node | None, wanted: pb.NodeStatus) -> bool:
    """Does the Node's status differ from ours in anything but heartbeat times?"""
    if current is None:
        return True
    a, b = pb.NodeStatus(), pb.NodeStatus()
    a.CopyFrom(current.status)
    b.CopyFrom(wanted)
    for st in (a, b):
        for c in st.conditions:
            c.ClearField("lastHeartbeatTime")
            c.ClearField("lastTransitionTime")
    return a != b


class NodeReporter:
    def __init__(self, client: Client, *, name: str, node_ip: str, pod_cidr: str, kubelet_port: int,
                 max_pods: int, nodes: Informer | None = None, lease_interval: float = 1.0,
                 report_interval: float = 30.0):
        self.client = client
        self.name = name
        self.node_ip = node_ip
        self.pod_cidr = pod_cidr
        self.kubelet_port = kubelet_port
        self.max_pods = max_pods
        self.nodes = nodes
        self.lease_interval = lease_interval
        self.report_interval = report_interval
        self.registered = asyncio.Event()
        self.lease: pb.Lease | None = None
        self.node_uid = ""
        self._drift = asyncio.Event()
        self._last_report = 0.0
        if nodes is not None:
            nodes.add_handler(self._on_node)

    def _on_node(self, event: str, obj: pb.Node, old: pb.Node | None) -> None:
        if obj.metadata.name == self.name:
            self._drift.set()

    async def run(self) -> None:
        backoff = 0.1
        while not self.registered.is_set():
            try:
                await self.register()
            except errors.ApiError as e:
                log.warning("registering node %s: %s; retrying", self.name, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        await asyncio.gather(self._lease_loop(), self._status_loop())

    async def register(self) -> None:
        """Create the Node, or take an existing one of this name back (its spec kept, pod CIDR ours)."""
        wanted = node_object(self.name, self.pod_cidr)
        try:
            node = await self.client.create(wanted)
            log.info("registered node %s (%s, pod CIDR %s)", self.name, self.node_ip, self.pod_cidr)
        except errors.AlreadyExists:
            node = await self.client.get("Node", self.name)
            changed = False
            if node.spec.podCIDR != self.pod_cidr or list(node.spec.podCIDRs) != [self.pod_cidr]:
                node.spec.podCIDR = self.pod_cidr
                del node.spec.podCIDRs[:]
                node.spec.podCIDRs.append(self.pod_cidr)
                changed = True
            for k, v in wanted.metadata.labels.items():
                if node.metadata.labels.get(k) != v:
                    node.metadata.labels[k] = v
                    changed = True
            if changed:
                try:
                    node = await self.client.update(node)
                except errors.Invalid as e:
                    log.error("node %s exists with another pod CIDR and cannot take %s: %s",
                              self.name, self.pod_cidr, e)
            log.info("took node %s back (%s, pod CIDR %s)", self.name, self.node_ip, self.pod_cidr)
        self.node_uid = node.metadata.uid
        await self._write_status(node)
        self.registered.set()

    async def _write_status(self, node: pb.Node | None = None) -> None:
        if node is None:
            node = await self.client.get("Node", self.name)
        out = objects.new("Node", self.name)
        out.metadata.resourceVersion = node.metadata.resourceVersion
        out.status.CopyFrom(node_status(name=self.name, node_ip=self.node_ip, kubelet_port=self.kubelet_port,
                                        max_pods=self.max_pods, old=node.status))
        await self.client.update_status(out)
        self._last_report = asyncio.get_running_loop().time()

    async def _status_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._drift.wait(), self.report_interval)
            except asyncio.TimeoutError:
                pass
            self._drift.clear()
            current = self.nodes.get(self.name) if self.nodes is not None else None
            wanted = node_status(name=self.name, node_ip=self.node_ip, kubelet_port=self.kubelet_port,
                                 max_pods=self.max_pods, old=current.status if current is not None else None)
            due = loop.time() - self._last_report >= self.report_interval
            if not due and current is not None and not needs_update(current, wanted):
                continue
            try:
                if current is None and self.nodes is not None and self.nodes.synced.is_set():
                    # Someone deleted our Node: register again.
                    self.registered.clear()
                    await self.register()
                else:
                    await self._write_status(None)
            except errors.ApiError as e:
                log.debug("node status: %s", e)
                self._drift.set()
                await asyncio.sleep(1.0)

    async def _lease_loop(self) -> None:
        while True:
            try:
                await self.renew_lease()
            except (errors.Conflict, errors.NotFound):
                self.lease = None  # someone else wrote it: read it again and renew right away
                await asyncio.sleep(0.05)
                continue
            except errors.ApiError as e:
                log.debug("lease renewal: %s", e)
                self.lease = None
            await asyncio.sleep(self.lease_interval)

    async def renew_lease(self) -> None:
        now = micro_time()
        if self.lease is None:
            try:
                self.lease = await self.client.get("Lease", self.name, LEASE_NAMESPACE)
            except errors.NotFound:
                lease = objects.new("Lease", self.name, LEASE_NAMESPACE)
                lease.spec.holderIdentity = self.name
                lease.spec.leaseDurationSeconds = LEASE_DURATION
                lease.spec.acquireTime = now
                lease.spec.renewTime = now
                if self.node_uid:
                    lease.metadata.ownerReferences.add(apiVersion="v1", kind="Node", name=self.name,
                                                       uid=self.node_uid)
                self.lease = await self.client.create(lease)
                return
        lease = pb.Lease()
        lease.CopyFrom(self.lease)
        lease.spec.holderIdentity = self.name
        lease.spec.leaseDurationSeconds = LEASE_DURATION
        lease.spec.renewTime = now
        if self.node_uid and not any(r.uid == self.node_uid for r in lease.metadata.ownerReferences):
            del lease.metadata.ownerReferences[:]
            lease.metadata.ownerReferences.add(apiVersion="v1", kind="Node", name=self.name, uid=self.node_uid)
        try:
            self.lease = await self.client.update(lease)
        except (errors.Conflict, errors.NotFound):
            self.lease = None
            raise
