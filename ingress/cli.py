"""The `kubemu ingress-controller` command."""
from __future__ import annotations

import ipaddress
import logging

import click


@click.command("ingress-controller")
@click.option("--server", envvar="KUBEMU_SERVER", default=None,
              help="API server address (default: KUBEMU_SERVER, else the cluster's cluster.json)")
@click.option("--listen-ip", default="127.0.0.1", show_default=True, metavar="IP",
              help="address of the HTTP and HTTPS listeners (the controller's 'pod IP', which the "
                   "ingress-kubemu Service's EndpointSlice points at)")
@click.option("--http-port", default=80, show_default=True, type=click.IntRange(0, 65535),
              help="HTTP listener port (0: any free port; a refused port falls back to a free one)")
@click.option("--https-port", default=443, show_default=True, type=click.IntRange(0, 65535),
              help="HTTPS listener port (0: any free port; a refused port falls back to a free one)")
@click.option("--publish-service/--no-publish-service", default=True, show_default=True,
              help="keep the IngressClass kubemu, the LoadBalancer Service kube-system/ingress-kubemu "
                   "and its EndpointSlice")
@click.option("--log-level", default="info", show_default=True)
def command(server, listen_ip, http_port, https_port, publish_service, log_level):
    """Run the ingress controller: HTTP(S) routing by host and path for Ingresses of class kubemu."""
    from kubemu import cluster
    from kubemu.ingress import main
    from kubemu.process import run_async, setup_logging

    try:
        ipaddress.ip_address(listen_ip)
    except ValueError:
        raise click.BadParameter(f"{listen_ip!r} is not an IP address", param_hint="--listen-ip") from None
    address = cluster.server_address(server)
    setup_logging(log_level)
    logging.getLogger("grpc").setLevel(max(logging.INFO, logging.getLogger().level))
    run_async(main.run(server=address, listen_ip=listen_ip, http_port=http_port, https_port=https_port,
                       publish_service=publish_service))
