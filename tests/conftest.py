"""Shared fixtures: real API server processes on ports of their own."""
from __future__ import annotations

import pytest

from kubemu.testing import procs


@pytest.fixture
def apiserver(tmp_path):
    """A fresh API server process; yields its address. Stopped even when the test fails."""
    with procs.apiserver(str(tmp_path / "state"), "--bookmark-interval", "0.2") as (_, address):
        yield address

