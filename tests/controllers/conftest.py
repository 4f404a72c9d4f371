"""Fixtures for the controller tests; the helpers they use live in ctrl_helpers.py."""
from __future__ import annotations

import os

import pytest

from kubemu.testing import procs

from ctrl_helpers import Cluster, FakeClient, ready_nodes, run


@pytest.fixture
def fake_client():
    return FakeClient()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """API server + controller manager (grace 3 s, eviction 6 s) + fake nodes node-1..3."""
    tmp = str(tmp_path_factory.mktemp("cluster"))
    slot = procs.claim_slot()
    try:
        with procs.apiserver(os.path.join(tmp, "state"), "--bookmark-interval", "0.5",
                             service_cidr=slot.service_cidr) as (_, address):
            c = Cluster(tmp, slot, address, ("--node-monitor-grace-period", "3", "--pod-eviction-timeout", "6"))
            try:
                c.start_controller_manager()
                for n in (1, 2, 3):
                    c.start_node(n, "--ready-delay", "0.2")
                procs.wait_for(lambda: run(ready_nodes(address)) == 3, 20, 0.1, message="3 Ready nodes")
                yield c
                c.check_alive()
                c.check_traceback()
            finally:
                c.stop()
    finally:
        slot.release()
