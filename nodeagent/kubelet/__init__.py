"""The kubelet half of the node agent: the Node and its Lease, and the pods bound to this node.

Layers, lowest first (a module imports only from the ones above it):
- images, ipam, envvars, lifecycle, status, probes (the counter), logs: pure decisions and data;
- runtime, emulated, process, httpclient: running containers (in-process servers, child processes);
- worker: one pod's containers, probes, restarts and termination;
- kubelet: the informer-driven sync of all pods, status writes, IPs; node: Node and Lease;
- server: the agent's HTTP port (/healthz, /metrics, /containerLogs).
"""
from kubemu.nodeagent.kubelet.kubelet import Kubelet
from kubemu.nodeagent.kubelet.node import NodeReporter
from kubemu.nodeagent.kubelet.server import AgentServer

__all__ = ["Kubelet", "NodeReporter", "AgentServer"]
