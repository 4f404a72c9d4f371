"""`kubemu nodeagent`: the kubelet and the kube-proxy of one node, in one process."""
from __future__ import annotations

import ipaddress
import os
import sys

import click


def node_number(name: str) -> int | None:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def default_node_ip(name: str) -> str | None:
    n = node_number(name)
    return f"127.10.0.{n}" if n is not None and 0 < n < 255 else None


def default_pod_cidr(name: str) -> str | None:
    n = node_number(name)
    return f"127.244.{n}.0/24" if n is not None and 0 <= n < 256 else None


@click.command("nodeagent")
@click.option("--server", envvar="KUBEMU_SERVER", default=None,
              help="API server address (default: KUBEMU_SERVER, else the local cluster's cluster.json)")
@click.option("--name", required=True, help="node name, node-N")
@click.option("--node-ip", default=None, help="this node's IP [default: 127.10.0.N]")
@click.option("--pod-cidr", default=None, help="pod IPs of this node [default: 127.244.N.0/24]")
@click.option("--kubelet-port", default=10250, show_default=True, type=int,
              help="the agent's HTTP port (/healthz, /metrics, /containerLogs) on the node IP")
@click.option("--state-dir", default=None, type=click.Path(file_okay=False),
              help="container logs and working directories [default: <cluster state dir>/nodes/<name>]")
@click.option("--restart-backoff", default=10.0, show_default=True, type=float,
              help="first CrashLoopBackOff delay in seconds (doubles up to --max-restart-backoff)")
@click.option("--max-restart-backoff", default=300.0, show_default=True, type=float)
@click.option("--max-pods", default=2000, show_default=True, type=int,
              help="pods capacity reported on the Node (at most the pod CIDR's size)")
@click.option("--no-proxy", is_flag=True, help="run the kubelet half only")
@click.option("--log-level", default="info", show_default=True)
def command(server, name, node_ip, pod_cidr, kubelet_port, state_dir, restart_backoff, max_restart_backoff,
            max_pods, no_proxy, log_level):
    """Run a node agent: register the Node, run its pods, proxy Service traffic."""
    # The agent forks container processes while gRPC threads run; gRPC's fork handlers only
    # matter for a child that uses gRPC, and ours exec at once. Must be set before grpc loads.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from kubemu import cluster
    from kubemu.process import run_async, setup_logging

    node_ip = node_ip or default_node_ip(name)
    if node_ip is None:
        raise click.UsageError(f"--node-ip is required: the name {name!r} does not end in -N")
    pod_cidr = pod_cidr or default_pod_cidr(name)
    if pod_cidr is None:
        raise click.UsageError(f"--pod-cidr is required: the name {name!r} does not end in -N")
    try:
        ipaddress.ip_address(node_ip)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--node-ip") from None
    try:
        pod_cidr = str(ipaddress.ip_network(pod_cidr, strict=False))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--pod-cidr") from None
    address = cluster.server_address(server)
    state_dir = os.path.abspath(state_dir or os.path.join(cluster.state_dir(), "nodes", name))
    setup_logging(log_level)
    from kubemu.nodeagent.main import run
    code = run_async(run(server=address, name=name, node_ip=node_ip, pod_cidr=pod_cidr,
                         kubelet_port=kubelet_port, state_dir=state_dir,
                         backoff=(restart_backoff, max_restart_backoff), max_pods=max_pods,
                         with_proxy=not no_proxy))
    sys.exit(code or 0)
