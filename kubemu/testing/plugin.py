"""The kubemu pytest plugin (entry point `pytest11`): a `kubemu_cluster` fixture.

The fixture brings up a real cluster on addresses and ports of its own and tears it down
afterwards, whatever the test did. Its scope is "module" by default; choose another with
`--kubemu-scope=session|package|module|function` or the ini option `kubemu_scope`; the node
count with `--kubemu-nodes` (ini `kubemu_nodes`, default 3). A test can ask for a different
shape with the marker `@pytest.mark.kubemu(nodes=2)` (function scope applies then).
"""
from __future__ import annotations

import pytest

from kubemu.testing.cluster import Cluster


def pytest_addoption(parser):
    group = parser.getgroup("kubemu")
    group.addoption("--kubemu-scope", default=None, help="scope of the kubemu_cluster fixture")
    group.addoption("--kubemu-nodes", default=None, type=int, help="nodes per kubemu_cluster")
    parser.addini("kubemu_scope", "scope of the kubemu_cluster fixture", default="module")
    parser.addini("kubemu_nodes", "nodes per kubemu_cluster", default="3")


def pytest_configure(config):
    config.addinivalue_line("markers", "kubemu(nodes=N): the shape of this test's kubemu_cluster")


def _scope(fixture_name, config):
    return config.getoption("--kubemu-scope") or config.getini("kubemu_scope")


@pytest.fixture(scope=_scope)
def kubemu_cluster(request):
    marker = request.node.get_closest_marker("kubemu") if hasattr(request.node, "get_closest_marker") else None
    nodes = request.config.getoption("--kubemu-nodes") or int(request.config.getini("kubemu_nodes"))
    if marker is not None:
        nodes = marker.kwargs.get("nodes", nodes)
    cluster = Cluster(nodes=nodes)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
