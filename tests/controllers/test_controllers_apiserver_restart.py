"""An API server restart (kill -9, back on the same port and store) must not make the node
lifecycle controller declare healthy nodes dead: renewals made while it was cut off reach it
late, and silence it could not have heard is not death."""
from __future__ import annotations

import os
import time

import pytest

from kubemu.client import Client
from kubemu.testing import procs

from ctrl_helpers import Cluster, ready_nodes, run

pytestmark = pytest.mark.timeout(90)


def start_apiserver(tmp: str, port: int, slot) -> procs.Proc:
    proc = procs.Proc(procs.kubemu_command("apiserver", "--listen", f"127.0.0.1:{port}", "--state-dir",
                                           os.path.join(tmp, "state"), "--service-cidr", slot.service_cidr,
                                           "--bookmark-interval", "0.5"),
                      os.path.join(tmp, "apiserver.log"))
    procs.wait_port("127.0.0.1", port, 15, proc)
    return proc


async def not_ready_nodes(address: str) -> list[str]:
    async with Client(address) as client:
        nodes, _ = await client.list("Node")
        return [n.metadata.name for n in nodes
                if not any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
                or any(t.key.startswith("node.kubernetes.io/") for t in n.spec.taints)]


def test_apiserver_restart_does_not_kill_nodes(tmp_path):
    tmp = str(tmp_path)
    slot = procs.claim_slot()
    port = procs.free_port()
    address = f"127.0.0.1:{port}"
    api = start_apiserver(tmp, port, slot)
    c = Cluster(tmp, slot, address, ("--node-monitor-grace-period", "3", "--pod-eviction-timeout", "6"))
    try:
        c.start_controller_manager()
        for n in (1, 2):
            c.start_node(n)
        procs.wait_for(lambda: run(ready_nodes(address)) == 2, 20, 0.1, message="2 Ready nodes")
        api.kill()
        # The scenario is an outage of 2.5 s: renewals resume only after it, more than the 3 s
        # grace period after the last one that got through (a fixed duration on purpose).
        time.sleep(2.5)
        api = start_apiserver(tmp, port, slot)
        # Watch the nodes for longer than the grace period after the restart.
        until = time.monotonic() + 6.0
        while time.monotonic() < until:
            try:
                bad = run(not_ready_nodes(address))
            except Exception:
                continue
            assert not bad, f"nodes declared dead after an API server restart: {bad}"
            time.sleep(0.1)
        c.check_alive()
        c.check_traceback()
    finally:
        c.stop()
        api.stop()
        slot.release()
