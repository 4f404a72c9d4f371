"""The `kubemu dns` command."""
from __future__ import annotations

import ipaddress
import logging

import click


@click.command("dns")
@click.option("--server", envvar="KUBEMU_SERVER", default=None,
              help="API server address (default: KUBEMU_SERVER, else the cluster's cluster.json)")
@click.option("--listen", default="127.0.0.1:10053", show_default=True,
              help="UDP and TCP address to serve on")
@click.option("--zone", default="cluster.local", show_default=True, help="cluster domain")
@click.option("--ttl", default=5, show_default=True, type=click.IntRange(0, 3600),
              help="TTL of cluster records, seconds")
@click.option("--upstream", "upstreams", multiple=True, metavar="HOST[:PORT]",
              help="server for names outside the zone (repeatable; default: the nameservers of "
                   "/etc/resolv.conf; `none`: do not forward)")
@click.option("--service-ip", default="", metavar="IP",
              help="publish this server as the kube-system/kube-dns Service with this cluster IP")
@click.option("--cache-size", default=100_000, show_default=True, type=click.IntRange(1),
              help="answers cached per snapshot")
@click.option("--log-level", default="info", show_default=True)
def command(server, listen, zone, ttl, upstreams, service_ip, cache_size, log_level):
    """Run the cluster DNS server (authoritative for the cluster domain, UDP and TCP)."""
    from kubemu import cluster
    from kubemu.process import run_async, setup_logging
    from kubemu.dns import forward, main

    try:
        main.parse_listen(listen)
    except ValueError:
        raise click.BadParameter(f"{listen!r} is not HOST:PORT", param_hint="--listen") from None
    if service_ip:
        try:
            ipaddress.ip_address(service_ip)
        except ValueError:
            raise click.BadParameter(f"{service_ip!r} is not an IP address",
                                     param_hint="--service-ip") from None
    if any(u.lower() == "none" for u in upstreams):
        resolved = []
    elif upstreams:
        try:
            resolved = [forward.parse_upstream(u) for u in upstreams]
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--upstream") from None
    else:
        resolved = forward.resolv_conf_upstreams()
    address = cluster.server_address(server)
    setup_logging(log_level)
    # gRPC logs a cancelled watch stream at DEBUG with a traceback; it is not ours to debug
    logging.getLogger("grpc").setLevel(max(logging.INFO, logging.getLogger().level))
    run_async(main.run(server=address, listen=listen, zone=zone, ttl=ttl, upstreams=resolved,
                       service_ip=service_ip, cache_size=cache_size))
