"""`kubemu cloud-lb`: the process. Wiring only; the decisions live in planner, pool and controller.

One root task runs the controller (informers, workers, health checks, cost meter). SIGTERM or
SIGINT stops it: listeners close (their IPs stay published: a restarted cloud-lb adopts them),
pending Events get a short grace to be written, then the client closes. A root task that dies
stops the process with status 1, for the supervisor to restart it, rather than limp on.
"""
from __future__ import annotations

import asyncio
import logging
import resource
import signal

from kubemu.client import Client
from kubemu.cloudlb.controller import Controller
from kubemu.cloudlb.pool import Pool

log = logging.getLogger("kubemu.cloudlb")


def _raise_nofile() -> None:
    """Every relayed connection holds two sockets (and a bulk one two pipes): allow what we may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


async def run(*, server: str, pool: str, lb_class: str | None = None, health_interval: float = 1.0,
              hourly_price: float = 0.025, cost_interval: float = 60.0) -> int:
    _raise_nofile()
    client = Client(server)
    controller = Controller(client, pool=Pool(pool), lb_class=lb_class, health_interval=health_interval,
                            hourly_price=hourly_price, cost_interval=cost_interval)
    log.info("cloud load balancer: pool %s (%d addresses), class %s, health checks every %gs, "
             "$%g per LB-hour, API server %s", controller.pool.cidr, controller.pool.size,
             lb_class or "<none>", health_interval, hourly_price, server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    main = asyncio.create_task(controller.run(), name="controller")
    waiter = asyncio.create_task(stop.wait(), name="stop")
    code = 0
    try:
        done, _ = await asyncio.wait([main, waiter], return_when=asyncio.FIRST_COMPLETED)
        if main in done:
            code = 1
            exc = main.exception() if not main.cancelled() else None
            log.error("the controller stopped unexpectedly: %r", exc, exc_info=exc)
    finally:
        log.info("shutting down")
        for t in (main, waiter):
            t.cancel()
        await asyncio.gather(main, waiter, return_exceptions=True)
        await client.close()
    return code
