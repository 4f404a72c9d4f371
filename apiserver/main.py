"""`kubemu apiserver`: open the store in the state directory and serve it over gRPC."""
from __future__ import annotations

import asyncio
import logging
import os
import signal

from kubemu.apiserver import registry
from kubemu.apiserver.server import serve
from kubemu.apiserver.storage import CorruptStorage, WALBackend, read_sqlite
from kubemu.apiserver.store import Store
from kubemu.process import FreezeSurvivors

log = logging.getLogger("kubemu.apiserver")


def open_backend(state_dir: str) -> WALBackend:
    """The log in `<state-dir>/wal`; a SQLite store of an earlier kubemu is imported once."""
    backend = WALBackend(os.path.join(state_dir, "wal"))
    legacy = os.path.join(state_dir, "store.db")
    if os.path.exists(legacy) and not os.listdir(backend.dir):
        objs, revision = read_sqlite(legacy)
        backend.seed(objs, revision)
        os.rename(legacy, legacy + ".imported")
        log.info("imported %d objects at revision %d from %s", len(objs), revision, legacy)
    return backend


async def run(*, listen: str, state_dir: str, service_cidr: str, node_port_range: tuple[int, int],
              retain: int = 20000, max_pending: int = 10000, bookmark_interval: float = 5.0,
              ready_file: str | None = None) -> None:
    backend = open_backend(state_dir)
    store = Store(backend, registry.strategies(service_cidr, node_port_range),
                  retain=retain, max_pending=max_pending)
    try:
        await store.start()
    except CorruptStorage as e:
        raise SystemExit(f"kubemu apiserver: the store is damaged: {e}. Move "
                         f"{backend.dir} away to start with an empty store.") from None
    gc_review = asyncio.create_task(FreezeSurvivors().install().run(), name="gc-review")
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
    gc_review.cancel()
    await server.stop(grace=1.0)
    await store.stop()
