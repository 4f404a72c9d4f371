"""Endpoint selection for one Service port: round robin, ClientIP affinity, Local filtering.

Rules of this module: pure apart from the injected clock; no sockets, no asyncio. One Picker
serves every listener of a Service port (cluster IP, node port, external IPs), so affinity
and the round-robin position are shared by them, as in kube-proxy's userspace load balancer.

- Candidates are `state.usable(...)`: ready endpoints, else serving-and-terminating ones;
  with a node, only that node's (Local traffic policies).
- `sessionAffinity: ClientIP`: a client IP keeps its endpoint while it reconnects within the
  timeout (measured from its last new connection), and while that endpoint stays a candidate.
- An endpoint whose connect just failed is skipped for `quarantine` seconds unless nothing
  else is left, so a dead pod costs one failed attempt, not one per connection, until its
  EndpointSlice catches up.
"""
from __future__ import annotations

import time
from typing import Callable, Collection

from kubemu.nodeagent.proxy.state import Endpoint, usable

AFFINITY_SWEEP_EVERY = 1024  # picks between sweeps of expired affinity entries


class Picker:
    def __init__(self, endpoints: tuple[Endpoint, ...] = (), *, affinity_timeout: float | None = None,
                 quarantine: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.quarantine = quarantine
        self.endpoints: tuple[Endpoint, ...] = ()
        self.affinity_timeout: float | None = None
        self._candidates: dict[str | None, tuple[Endpoint, ...]] = {}
        self._next: dict[str | None, int] = {}
        self._affinity: dict[str, tuple[Endpoint, float]] = {}
        self._failed: dict[Endpoint, float] = {}
        self._picks = 0
        self.update(endpoints, affinity_timeout)

    def update(self, endpoints: tuple[Endpoint, ...], affinity_timeout: float | None) -> None:
        """New endpoints or affinity setting; affinity to endpoints that remain is kept."""
        if affinity_timeout != self.affinity_timeout:
            self._affinity.clear()
            self.affinity_timeout = affinity_timeout
        if endpoints == self.endpoints:
            return
        self.endpoints = endpoints
        self._candidates.clear()
        alive = set(endpoints)
        self._affinity = {c: v for c, v in self._affinity.items() if v[0] in alive}
        self._failed = {e: t for e, t in self._failed.items() if e in alive}

    def candidates(self, node: str | None = None) -> tuple[Endpoint, ...]:
        c = self._candidates.get(node)
        if c is None:
            c = self._candidates[node] = usable(self.endpoints, node)
        return c

    def pick(self, client_ip: str, *, node: str | None = None,
             exclude: Collection[Endpoint] = ()) -> Endpoint | None:
        """The endpoint for a new connection from `client_ip`; None when there is none to try."""
        cands = self.candidates(node)
        if not cands:
            return None
        now = self.clock()
        timeout = self.affinity_timeout
        if timeout is not None:
            entry = self._affinity.get(client_ip)
            if entry is not None:
                ep, last = entry
                if now - last <= timeout and ep in cands and ep not in exclude:
                    self._affinity[client_ip] = (ep, now)
                    return ep
            self._picks += 1
            if self._picks % AFFINITY_SWEEP_EVERY == 0:
                self._sweep(now)
        ep = self._round_robin(cands, node, exclude, now)
        if ep is not None and timeout is not None:
            self._affinity[client_ip] = (ep, now)
        return ep

    def _round_robin(self, cands: tuple[Endpoint, ...], node: str | None,
                     exclude: Collection[Endpoint], now: float) -> Endpoint | None:
        n = len(cands)
        start = self._next.get(node, 0) % n
        fallback = None
        for i in range(n):
            ep = cands[(start + i) % n]
            if ep in exclude:
                continue
            if self._failed and self._failed.get(ep, 0.0) > now:
                fallback = fallback or ep
                continue
            self._next[node] = start + i + 1
            return ep
        if fallback is not None:
            self._next[node] = cands.index(fallback) + 1
        return fallback

    def failed(self, ep: Endpoint) -> None:
        """A connect to `ep` failed: avoid it for a moment, and forget clients' affinity to it."""
        if self.quarantine > 0:
            self._failed[ep] = self.clock() + self.quarantine
        if self._affinity:
            self._affinity = {c: v for c, v in self._affinity.items() if v[0] != ep}

    def _sweep(self, now: float) -> None:
        timeout = self.affinity_timeout or 0
        self._affinity = {c: v for c, v in self._affinity.items() if now - v[1] <= timeout}
        self._failed = {e: t for e, t in self._failed.items() if t > now}

    def affinity_of(self, client_ip: str) -> Endpoint | None:
        entry = self._affinity.get(client_ip)
        return entry[0] if entry is not None else None
