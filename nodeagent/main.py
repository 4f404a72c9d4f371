"""The node agent process: one client, shared informers, the kubelet and the proxy side by side.

Both halves read the same informer caches (one list+watch per kind for the whole process); the
kubelet watches only this node's pods (field selector spec.nodeName=<node>). Root tasks are
named; if one of them dies the agent stops (a supervisor restarts it) rather than limp on half
working. SIGTERM/SIGINT stop it cleanly: the proxy first, then every pod (SIGTERM, a short
grace, SIGKILL), then the informers and the client.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import resource
import signal

from kubemu.client import Client
from kubemu.informer import Informer

from kubemu.nodeagent.kubelet import AgentServer, Kubelet, NodeReporter

log = logging.getLogger("kubemu.nodeagent")

STOP_GRACE = 2.0  # seconds each pod's containers get to stop when the agent stops


def _raise_nofile() -> None:
    """Every emulated pod holds listening sockets: allow as many descriptors as the system lets us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def _proxy_class():
    """The proxy half, when it is built (kubemu.nodeagent.proxy); without it the agent runs pods only."""
    if importlib.util.find_spec("kubemu.nodeagent.proxy") is None:
        log.warning("kubemu.nodeagent.proxy is not available: running without the service proxy")
        return None
    try:
        from kubemu.nodeagent.proxy import Proxy
    except ImportError as e:
        # Pods still run without it; the error says what is missing.
        log.error("the service proxy cannot be loaded (%s): running without it", e)
        return None
    return Proxy


async def run(*, server: str, name: str, node_ip: str, pod_cidr: str, kubelet_port: int, state_dir: str,
              backoff: tuple[float, float] = (10.0, 300.0), max_pods: int = 2000,
              with_proxy: bool = True) -> int:
    _raise_nofile()
    os.makedirs(state_dir, exist_ok=True)
    client = Client(server)
    pods = Informer(client, "Pod", field_selector=f"spec.nodeName={name}")
    services = Informer(client, "Service")
    slices = Informer(client, "EndpointSlice")
    nodes = Informer(client, "Node")

    kubelet = Kubelet(client, node_name=name, node_ip=node_ip, pod_cidr=pod_cidr, state_dir=state_dir,
                      pods=pods, services=services, backoff=backoff)
    reporter = NodeReporter(client, name=name, node_ip=node_ip, pod_cidr=pod_cidr, kubelet_port=kubelet_port,
                            max_pods=min(max_pods, kubelet.ipam.capacity), nodes=nodes)
    proxy = None
    proxy_cls = _proxy_class() if with_proxy else None
    if proxy_cls is not None:
        proxy = proxy_cls(client, node_name=name, node_ip=node_ip, services_informer=services,
                          slices_informer=slices, nodes_informer=nodes)
    agent_server = AgentServer(kubelet, host=node_ip, port=kubelet_port,
                               extra_metrics=proxy.render_metrics if proxy is not None else None,
                               healthy=lambda: kubelet.started.is_set() and reporter.registered.is_set())
    try:
        await agent_server.start()
    except OSError as e:
        log.error("cannot listen on %s:%d (--node-ip, --kubelet-port): %s", node_ip, kubelet_port, e.strerror or e)
        await client.close()
        return 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    informer_tasks = [asyncio.create_task(i.run(), name=f"informer-{i.kind}")
                      for i in (pods, services, slices, nodes)]
    component_tasks = [asyncio.create_task(kubelet.run(), name="kubelet"),
                       asyncio.create_task(reporter.run(), name="node-reporter")]
    proxy_task = asyncio.create_task(proxy.run(), name="proxy") if proxy is not None else None
    roots = informer_tasks + component_tasks + ([proxy_task] if proxy_task else [])
    log.info("node agent %s: node IP %s, pod CIDR %s, API server %s", name, node_ip, pod_cidr, server)

    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    done, _ = await asyncio.wait(roots + [stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for t in done:
        if t is stopper:
            continue
        code = 1
        exc = t.exception() if not t.cancelled() else None
        log.error("%s stopped unexpectedly: %r; the node agent stops", t.get_name(), exc,
                  exc_info=exc)
    log.info("node agent %s stopping", name)

    async def cancel(tasks):
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        if proxy_task is not None:
            await cancel([proxy_task])
        await cancel(component_tasks)
        await asyncio.shield(kubelet.stop(STOP_GRACE))
        await agent_server.close()
        await cancel(informer_tasks + [stopper])
    finally:
        await client.close()
    log.info("node agent %s stopped", name)
    return code
