"""Fixtures for the ingress tests: a private address slot, and certificates made once."""
from __future__ import annotations

from typing import Iterator

import pytest

from kubemu.ingress import tls
from kubemu.testing import procs


@pytest.fixture(scope="module")
def ingress_slot() -> Iterator[procs.Slot]:
    """A claimed 127.S.0.0/16: backends and proxies of this module bind addresses in it."""
    slot = procs.claim_slot()
    try:
        yield slot
    finally:
        slot.release()


@pytest.fixture(scope="session")
def ingress_certs() -> dict[str, tuple[bytes, bytes]]:
    """Self-signed certificates (PEM cert, key) for the TLS tests, by common name."""
    return {cn: tls.generate_self_signed(cn, hosts) for cn, hosts in
            {"a.example.com": ["a.example.com"], "wild.example.com": ["*.wild.example.com"],
             "https-example.foo.com": ["https-example.foo.com"]}.items()}
