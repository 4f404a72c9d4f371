"""A write the API server acknowledged survives `kill -9`; watchers resume without gaps."""
from __future__ import annotations

import asyncio
import os
import signal

from kubemu import errors, objects
from kubemu.client import Client
from kubemu.testing import procs
from kubemu.testing.procs import run


def lease(name: str):
    obj = objects.new("Lease", name, "default")
    obj.spec.holderIdentity = name
    return obj


def test_acknowledged_writes_survive_kill_9_and_watch_resumes(tmp_path):
    state = str(tmp_path / "state")
    port = procs.free_port()
    acked: dict[str, int] = {}
    seen: list[tuple[int, str, str]] = []

    async def writer(c: Client, prefix: str, n: int) -> None:
        for i in range(n):
            name = f"{prefix}-{i}"
            try:
                obj = await c.create(lease(name))
            except (errors.Unavailable, errors.ApiError):
                return  # the server died under us: unacknowledged, may or may not exist
            acked[name] = int(obj.metadata.resourceVersion)

    async def watch_until(c: Client, start: int, stop_at: int) -> int:
        """Record events; return the last revision seen."""
        last = start
        try:
            async for batch in c.watch("Lease", "default", resource_version=start, allow_bookmarks=False):
                for e in batch:
                    seen.append((e.resource_version, e.type, e.object.metadata.name))
                    last = e.resource_version
                if last >= stop_at:
                    return last
        except errors.Unavailable:
            pass
        return last

    with procs.apiserver(state, port=port) as (proc, address):
        async def phase1() -> int:
            async with Client(address) as c, Client(address) as wc:
                _, rev = await c.list("Lease", "default")
                watcher = asyncio.create_task(watch_until(wc, rev, 10**9))
                writers = [asyncio.create_task(writer(c, f"w{k}", 10**6)) for k in range(8)]
                while len(acked) < 500:
                    await asyncio.sleep(0.01)
                os.kill(proc.pid, signal.SIGKILL)  # mid-stream, with writes in flight
                await asyncio.gather(*writers)
                return await asyncio.wait_for(watcher, 10)
        last_seen = run(phase1(), 120)
        assert len(acked) >= 500

    with procs.apiserver(state, port=port) as (_, address):
        async def phase2() -> None:
            async with Client(address) as c, Client(address) as wc:
                items, rev = await c.list("Lease", "default")
                stored = {i.metadata.name: int(i.metadata.resourceVersion) for i in items}
                missing = [n for n in acked if n not in stored]
                assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
                assert all(stored[n] == r for n, r in acked.items())
                assert rev >= max(acked.values())
                # The watcher resumes from the last revision it saw, across the restart.
                await writer(c, "after", max(1000 - len(acked), 0) + 200)
                assert len(acked) >= 1000
                target = max(acked.values())
                last = await asyncio.wait_for(watch_until(wc, last_seen, target), 30)
                assert last == target
        run(phase2(), 120)

    revs = [r for r, _, _ in seen]
    assert revs == sorted(set(revs)), "events repeated or out of order"
    # no gap: every revision from the first seen to the last is there (all writes are Leases)
    assert revs == list(range(revs[0], revs[-1] + 1)), "a revision is missing from the watch"
    names_seen = {n for _, t, n in seen if t == "ADDED"}
    assert set(acked) <= names_seen
