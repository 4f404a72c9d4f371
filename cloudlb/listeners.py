"""The running load balancers: per Service, an external IP and one listener per port.

`ensure(key, ip, plan)` makes the running listeners of one load balancer match its plan, as a
diff (mitmproxy's and kube-proxy's way): listeners that are no longer wanted are closed first,
which frees their ports, then missing ones are opened; a listener whose port and protocol stay
keeps its socket and its connections and only gets new targets. One failing bind does not stop
the others; the failures come back as messages for an Event, worded like Go's net errors
(`listen tcp 127.200.0.1:80: bind: address already in use`).

The health checker runs the union of every plan's probes; when a probe changes state every
listener recomputes its healthy targets (cheap: a filter over a few targets).
"""
from __future__ import annotations

import dataclasses
import logging
import os

from kubemu.cloudlb.forward import Backends, TcpListener, UdpListener
from kubemu.cloudlb.health import HealthChecker
from kubemu.cloudlb.planner import Plan, Target

log = logging.getLogger("kubemu.cloudlb.listeners")


@dataclasses.dataclass
class LoadBalancer:
    key: str
    ip: str
    plan: Plan | None = None
    listeners: dict[tuple[str, int], TcpListener | UdpListener] = dataclasses.field(default_factory=dict)


def bind_error(protocol: str, ip: str, port: int, e: OSError) -> str:
    what = os.strerror(e.errno).lower() if e.errno else str(e)
    return f"listen {protocol.lower()} {ip}:{port}: bind: {what}"


class LoadBalancers:
    def __init__(self, health: HealthChecker, *, udp_idle_timeout: float = 30.0):
        self.health = health
        self.udp_idle_timeout = udp_idle_timeout
        self.lbs: dict[str, LoadBalancer] = {}

    def get(self, key: str) -> LoadBalancer | None:
        return self.lbs.get(key)

    def _healthy(self, target: Target) -> bool:
        return self.health.healthy(target.probe)

    def _report(self, target: Target) -> None:
        self.health.report_failure(target.probe)

    async def ensure(self, key: str, ip: str, plan: Plan) -> list[str]:
        """Make the load balancer of `key` serve `plan` on `ip`; returns the bind errors."""
        lb = self.lbs.get(key)
        if lb is not None and lb.ip != ip:
            self.remove(key)
            lb = None
        if lb is None:
            lb = self.lbs[key] = LoadBalancer(key, ip)
        lb.plan = plan
        wanted = {lp.key: lp for lp in plan.listeners}
        for k in [k for k in lb.listeners if k not in wanted]:
            log.info("%s: closing listener %s %s:%d", key, k[0], ip, k[1])
            lb.listeners.pop(k).close()
        errors: list[str] = []
        for k, lp in wanted.items():
            lst = lb.listeners.get(k)
            if lst is None:
                backends = Backends(source_ip=ip, report_failure=self._report)
                if lp.protocol == "TCP":
                    lst = TcpListener(ip, lp.port, backends)
                else:
                    lst = UdpListener(ip, lp.port, backends, idle_timeout=self.udp_idle_timeout)
                try:
                    await lst.start()
                except OSError as e:
                    errors.append(bind_error(lp.protocol, ip, lp.port, e))
                    continue
                log.info("%s: listening on %s %s:%d", key, lp.protocol, ip, lp.port)
                lb.listeners[k] = lst
            lst.backends.update(lp.targets, self._healthy, preserve_client_ip=lp.preserve_client_ip)
        self._update_probes()
        return errors

    def remove(self, key: str) -> LoadBalancer | None:
        lb = self.lbs.pop(key, None)
        if lb is None:
            return None
        for (proto, port), lst in lb.listeners.items():
            log.info("%s: closing listener %s %s:%d", key, proto, lb.ip, port)
            lst.close()
        lb.listeners.clear()
        self._update_probes()
        return lb

    def refresh(self) -> None:
        """A probe changed state: recompute every listener's healthy targets."""
        for lb in self.lbs.values():
            for lst in lb.listeners.values():
                lst.backends.refresh(self._healthy)

    def _update_probes(self) -> None:
        probes = set()
        for lb in self.lbs.values():
            if lb.plan is not None:
                probes |= lb.plan.probes()
        self.health.set_probes(probes)

    def close(self) -> None:
        for key in list(self.lbs):
            self.remove(key)
