"""`kubemu controller-manager`: run the controllers against an API server until SIGTERM."""
from __future__ import annotations

import asyncio
import signal

import click

from kubemu.process import run_async, setup_logging


@click.command("controller-manager")
@click.option("--server", envvar="KUBEMU_SERVER", default="127.0.0.1:6443", show_default=True,
              help="API server address (also KUBEMU_SERVER)")
@click.option("--service-cidr", default="127.96.0.0/16", show_default=True,
              help="the Service CIDR; default/kubernetes gets its first address")
@click.option("--node-monitor-grace-period", type=float, default=3.0, show_default=True,
              help="seconds without a Lease renewal before a node is Unknown")
@click.option("--pod-eviction-timeout", type=float, default=10.0, show_default=True,
              help="seconds a node stays unreachable before its pods are deleted")
@click.option("--max-endpoints-per-slice", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--apiserver-endpoint", default="", metavar="HOST:PORT",
              help="address the default/kubernetes EndpointSlice points at (default: --server)")
@click.option("--controllers", default="", metavar="NAMES",
              help="comma-separated controllers to run (default: all)")
@click.option("--log-level", default="info", show_default=True)
def command(server, service_cidr, node_monitor_grace_period, pod_eviction_timeout, max_endpoints_per_slice,
            apiserver_endpoint, controllers, log_level):
    """Run the controller manager: scheduler, ReplicaSets, Deployments, EndpointSlices, node
    lifecycle, garbage collection and the `kubernetes` Service."""
    from kubemu.controllers.manager import ALL, Options, run
    setup_logging(log_level)
    names = tuple(n.strip() for n in controllers.split(",") if n.strip())
    unknown = set(names) - set(ALL)
    if unknown:
        raise click.BadParameter(f"unknown controllers {sorted(unknown)}; known: {', '.join(ALL)}",
                                 param_hint="--controllers")
    opts = Options(server=server, service_cidr=service_cidr,
                   node_monitor_grace_period=node_monitor_grace_period,
                   pod_eviction_timeout=pod_eviction_timeout, max_endpoints_per_slice=max_endpoints_per_slice,
                   apiserver_endpoint=apiserver_endpoint, controllers=names)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(opts, stop)

    run_async(main())
