"""`kubemu apiserver`: open the store in the state directory and serve it over gRPC."""
from __future__ import annotations

import asyncio
import logging
import os
import signal

from kubemu.apiserver import registry
from kubemu.apiserver.server import serve
from kubemu.apiserver.storage import SQLiteBackend
from kubemu.apiserver.store import Store

log = logging.getLogger("kubemu.apiserver")


async def run(*, listen: str, state_dir: str, service_cidr: str, node_port_range: tuple[int, int],
              retain: int = 20000, max_pending: int = 10000, bookmark_interval: float = 5.0,
              ready_file: str | None = None) -> None:
    backend = SQLiteBackend(os.path.join(state_dir, "store.db"))
    store = Store(backend, registry.strategies(service_cidr, node_port_range),
                  retain=retain, max_pending=max_pending)
    await store.start()
    server = await serve(store, listen, bookmark_interval)
    log.info("serving on %s (revision %d, state %s)", listen, store.revision, state_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_file:
        with open(ready_file, "w") as f:
            f.write(str(os.getpid()))
    await stop.wait()
    log.info("shutting down")
    await server.stop(grace=1.0)
    await store.stop()
