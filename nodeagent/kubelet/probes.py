"""Readiness, liveness and startup probes: a pure result counter and the three probe actions.

`ProbeCounter` applies successThreshold/failureThreshold as the kubelet's prober does: a result
flips only after that many consecutive opposite outcomes. Readiness starts as failure (a pod
is not ready until a probe passed), liveness as success, startup as unknown (not started).
The actions leave from the node IP, as kubelet probes do: httpGet succeeds on 200-399,
tcpSocket when the connection opens, exec when the command exits 0, each within timeoutSeconds.
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Awaitable, Callable

from kubemu import objects
from kubemu.v1 import objects_pb2 as pb

from kubemu.nodeagent.kubelet import httpclient


@dataclasses.dataclass
class ProbeCounter:
    success_threshold: int = 1
    failure_threshold: int = 3
    result: bool | None = None
    successes: int = 0
    failures: int = 0

    @classmethod
    def for_probe(cls, probe: pb.Probe, initial: bool | None) -> "ProbeCounter":
        return cls(probe.successThreshold or 1, probe.failureThreshold or 3, initial)

    def observe(self, ok: bool) -> bool:
        """Record one outcome; True when the result changed."""
        before = self.result
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.success_threshold:
                self.result = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.failure_threshold:
                self.result = False
        return self.result != before


def timing(probe: pb.Probe) -> tuple[float, float, float]:
    """(initialDelaySeconds, periodSeconds, timeoutSeconds) with Kubernetes' defaults."""
    return (float(probe.initialDelaySeconds), float(probe.periodSeconds or 10),
            float(probe.timeoutSeconds or 1))


def resolve_port(port: pb.IntOrString, container: pb.Container) -> int:
    v = objects.ios_value(port)
    if isinstance(v, int):
        return v
    for p in container.ports:
        if p.name == v:
            return p.containerPort
    if v.isdigit():
        return int(v)
    raise ValueError(f"port {v!r} is not a port of the container")


ExecFn = Callable[[list[str], float], Awaitable[int]]


async def run(probe: pb.Probe | pb.LifecycleHandler, container: pb.Container, *, pod_ip: str,
              node_ip: str, exec_fn: ExecFn, timeout: float) -> tuple[bool, str]:
    """Run one probe (or lifecycle handler): (success, a message for failures)."""
    try:
        if probe.HasField("httpGet"):
            g = probe.httpGet
            port = resolve_port(g.port, container)
            host = g.host or pod_ip
            headers = [(h.name, h.value) for h in g.httpHeaders]
            status, _ = await httpclient.get(host, port, g.path or "/", timeout=timeout, local_ip=node_ip,
                                             headers=headers, scheme=g.scheme or "HTTP")
            if 200 <= status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {status}"
        if probe.HasField("tcpSocket"):
            t = probe.tcpSocket
            port = resolve_port(t.port, container)
            host = t.host or pod_ip
            _, w = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=(node_ip, 0)), timeout)
            w.close()
            return True, ""
        if probe.HasField("exec"):
            code = await exec_fn(list(probe.exec.command), timeout)
            if code == 0:
                return True, ""
            if code < 0:
                return False, f"command timed out after {timeout:g}s"
            return False, f"command exited with {code}"
        return True, ""
    except asyncio.TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except (OSError, ValueError, httpclient.HTTPError, asyncio.IncompleteReadError) as e:
        if isinstance(e, ConnectionRefusedError):
            return False, f"dial tcp {pod_ip}: connect: connection refused"
        return False, str(e) or type(e).__name__
