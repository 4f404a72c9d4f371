"""Fixtures for the DNS tests: a real API server and a real `kubemu dns` process per module."""
from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest

from kubemu.dns import testing as t
from kubemu.testing import procs


@dataclasses.dataclass
class DnsCluster:
    slot: procs.Slot
    api: str
    host: str
    port: int
    dns: procs.Proc
    upstream: t.FakeUpstream


@pytest.fixture(scope="module")
def dns_cluster(tmp_path_factory) -> Iterator[DnsCluster]:
    """API server + DNS server (forwarding to a fake upstream) on a slot of their own."""
    slot = procs.claim_slot()
    state = tmp_path_factory.mktemp("dns")
    try:
        with t.FakeUpstream({"example.test": [("A", "192.0.2.10")]}, slow=["slow.test"]) as up, \
                procs.apiserver(str(state / "api"), service_cidr=slot.service_cidr) as (_, api), \
                t.dns_process(api, str(state), "--upstream", up.address) as (proc, port):
            procs.wait_for(lambda: t.query("127.0.0.1", port, "default.svc.cluster.local").header.rcode == 0,
                           15, message="the DNS server's first sync")
            yield DnsCluster(slot, api, "127.0.0.1", port, proc, up)
    finally:
        slot.release()

