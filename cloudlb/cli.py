"""The `kubemu cloud-lb` command."""
from __future__ import annotations

import ipaddress
import logging
import sys

import click


@click.command("cloud-lb")
@click.option("--server", envvar="KUBEMU_SERVER", default=None,
              help="API server address (default: KUBEMU_SERVER, else the cluster's cluster.json)")
@click.option("--pool", default="127.200.0.0/24", show_default=True,
              help="CIDR the external IPs are allocated from")
@click.option("--health-interval", default=1.0, show_default=True, type=click.FloatRange(0.05, 300),
              help="seconds between health checks of each target; a dead node stops getting "
                   "traffic within one interval")
@click.option("--hourly-price", default=0.025, show_default=True, type=click.FloatRange(0),
              help="USD per load-balancer-hour, for the kubemu.io/cost annotations")
@click.option("--cost-interval", default=60.0, show_default=True, type=click.FloatRange(0.1),
              help="seconds between updates of the running cost")
@click.option("--class", "lb_class", default=None, metavar="NAME",
              help="loadBalancerClass served besides Services without one")
@click.option("--log-level", default="info", show_default=True)
def command(server, pool, health_interval, hourly_price, cost_interval, lb_class, log_level):
    """Run the cloud load-balancer stub for Services of type LoadBalancer."""
    from kubemu import cluster
    from kubemu.process import run_async, setup_logging

    try:
        net = ipaddress.ip_network(pool, strict=False)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--pool") from None
    if net.version != 4:
        raise click.BadParameter("only IPv4 pools are supported", param_hint="--pool")
    address = cluster.server_address(server)
    setup_logging(log_level)
    # gRPC logs a cancelled watch stream at DEBUG with a traceback; it is not ours to debug
    logging.getLogger("grpc").setLevel(max(logging.INFO, logging.getLogger().level))
    from kubemu.cloudlb.main import run
    code = run_async(run(server=address, pool=str(net), lb_class=lb_class, health_interval=health_interval,
                         hourly_price=hourly_price, cost_interval=cost_interval))
    sys.exit(code or 0)
