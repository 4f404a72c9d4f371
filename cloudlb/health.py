"""Health checks of load-balancer targets: active probes, plus failures the data path reports.

One probe per distinct (kind, ip, port, path), however many listeners share it: ten
LoadBalancer Services on three nodes with Local policy cost three probes per Service, not
thirty. A probe runs every `interval` seconds; one failed check takes a target out and one
passing check brings it back (thresholds of 1), so a dead node stops getting traffic within one
interval, as the issue asks. A connect that fails on the data path is reported at once
(`report_failure`, passive health checking as Envoy's outlier detection does), so in practice the
first failed connection already takes the node out and the next check decides whether it
comes back.

State is three-valued: True, False, or unknown (no check finished yet). Only True counts as
healthy; the listener fails open when no target is known healthy (see forward.Backends).
"""
from __future__ import annotations

import asyncio
import logging
import random
import socket
from typing import Callable, Iterable

from kubemu.cloudlb.planner import HTTP_PROBE, Probe

log = logging.getLogger("kubemu.cloudlb.health")

USER_AGENT = "kubemu-cloud-lb"


async def tcp_check(ip: str, port: int, timeout: float) -> bool:
    """A TCP connect that completes is a pass (what NLB's TCP health check does)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (ip, port))
        return True
    except (OSError, TimeoutError):
        return False
    finally:
        sock.close()


async def http_check(ip: str, port: int, path: str, timeout: float) -> bool:
    """`GET path` answering 200 is a pass; anything else, or no answer in time, a failure."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (ip, port))
            await loop.sock_sendall(sock, (
                f"GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
                "Connection: close\r\n\r\n").encode())
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk:
                    break
                head += chunk
        parts = head.split(b"\r\n", 1)[0].split()
        return len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1] == b"200"
    except (OSError, TimeoutError):
        return False
    finally:
        sock.close()


async def check(probe: Probe, timeout: float) -> bool:
    if probe.kind == HTTP_PROBE:
        return await http_check(probe.ip, probe.port, probe.path or "/", timeout)
    return await tcp_check(probe.ip, probe.port, timeout)


class HealthChecker:
    def __init__(self, *, interval: float = 1.0, timeout: float | None = None,
                 on_change: Callable[[], None] | None = None,
                 checker: Callable[[Probe, float], "asyncio.Future[bool]"] = check):
        self.interval = interval
        # A check must end before the next one is due, or a hung node would hold its slot.
        self.timeout = timeout if timeout is not None else max(0.05, min(interval * 0.8, 2.0))
        self.on_change = on_change
        self.checker = checker
        self.state: dict[Probe, bool] = {}
        self._tasks: dict[Probe, asyncio.Task] = {}
        self._checked: dict[Probe, asyncio.Event] = {}
        self._wakeup: dict[Probe, asyncio.Event] = {}

    def healthy(self, probe: Probe | None) -> bool:
        return probe is None or self.state.get(probe) is True

    def set_probes(self, probes: Iterable[Probe]) -> None:
        """Run exactly these probes: start the new ones, stop (and forget) the others."""
        wanted = set(probes)
        for p in [p for p in self._tasks if p not in wanted]:
            self._tasks.pop(p).cancel()
            self.state.pop(p, None)
            self._checked.pop(p, None)
            self._wakeup.pop(p, None)
        for p in wanted:
            if p not in self._tasks:
                self._checked[p] = asyncio.Event()
                self._wakeup[p] = asyncio.Event()
                self._tasks[p] = asyncio.create_task(self._run(p), name=f"probe {p}")

    async def wait_checked(self, probes: Iterable[Probe], timeout: float) -> None:
        """Wait (at most `timeout`) until each probe has a first result."""
        events = [self._checked[p].wait() for p in probes if p in self._checked]
        if events:
            try:
                await asyncio.wait_for(asyncio.gather(*events), timeout)
            except TimeoutError:
                pass

    def report_failure(self, probe: Probe | None) -> None:
        """The data path could not reach a target: take it out now and re-check it soon."""
        if probe is None or probe not in self._tasks:
            return
        if self.state.get(probe) is not False:
            log.info("%s failed on the data path: target out until a check passes", probe)
            self._set(probe, False)
        self._wakeup[probe].set()

    def _set(self, probe: Probe, ok: bool) -> None:
        before = self.state.get(probe)
        self.state[probe] = ok
        if before is not None and before != ok:
            log.info("%s is now %s", probe, "healthy" if ok else "unhealthy")
        if before != ok and self.on_change is not None:
            self.on_change()

    async def _run(self, probe: Probe) -> None:
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup[probe]
        first = True
        while True:
            start = loop.time()
            wakeup.clear()
            ok = await self.checker(probe, self.timeout)
            if probe not in self._tasks:
                return
            self._set(probe, ok)
            if first:
                self._checked[probe].set()
                first = False
            # A passive failure wakes the probe early, but not in a busy loop: at least a tenth
            # of the interval between checks. The first waits are spread out so that probes
            # created together do not stay in lockstep.
            delay = self.interval - (loop.time() - start)
            try:
                async with asyncio.timeout(max(delay, 0.0) * random.uniform(0.9, 1.0)):
                    await wakeup.wait()
                await asyncio.sleep(max(0.0, start + self.interval / 10 - loop.time()))
            except TimeoutError:
                pass

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
