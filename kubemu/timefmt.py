"""Kubernetes' timestamp format (metav1.Time, RFC 3339 in UTC), in one place."""
from __future__ import annotations

import datetime
import time


def rfc3339(t: float | None = None) -> str:
    """`2026-11-28T18:40:00Z`: second precision, as metav1.Time renders."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def rfc3339_micro(t: float | None = None) -> str:
    """`2026-11-28T18:40:00.123456Z`, as metav1.MicroTime renders (Lease renewTime)."""
    t = time.time() if t is None else t
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (with or without fractions), or None."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
