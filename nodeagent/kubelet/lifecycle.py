"""Decisions about container restarts and pod phase. Pure: the clock is an argument.

- `should_restart(policy, exit_code)`: Always restarts everything, OnFailure only non-zero exits,
  Never nothing.
- `Backoff`: CrashLoopBackOff as the kubelet computes it (flowcontrol.Backoff): the first restart
  is immediate; each later one waits initial * 2^k, capped at `maximum`; a container that ran
  without exiting for twice the cap starts over.
- `pod_phase`: kubelet's getPhase over container states.
"""
from __future__ import annotations

import dataclasses


def should_restart(policy: str, exit_code: int) -> bool:
    policy = policy or "Always"
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def go_duration(seconds: float) -> str:
    """Format a duration as Go's time.Duration.String does for whole seconds: 10s, 1m20s, 5m0s."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m{s}s"


@dataclasses.dataclass
class Backoff:
    initial: float = 10.0
    maximum: float = 300.0
    delay: float = 0.0  # the back-off now in force (0: none yet)
    last_update: float | None = None

    def next(self, now: float) -> float:
        """A container exited at `now`: the delay before it may start again."""
        if self.last_update is None or now - self.last_update > 2 * self.maximum:
            # First exit, or a long quiet run: restart at once, back off from here on.
            self.delay = 0.0
            self.last_update = now
            return 0.0
        self.delay = self.initial if self.delay == 0 else min(self.delay * 2, self.maximum)
        self.last_update = now
        return self.delay


@dataclasses.dataclass(frozen=True)
class ContainerCounts:
    running: int = 0
    waiting: int = 0  # never ran yet
    stopped: int = 0  # terminated, or waiting to restart after a termination
    succeeded: int = 0
    failed: int = 0


def pod_phase(policy: str, counts: ContainerCounts, *, init_pending: bool, init_failed: bool,
              deleted: bool = False) -> str:
    """kubelet getPhase: Pending until every container ran; Running while one runs or will be
    restarted; Succeeded/Failed once all stopped for good (or the pod was deleted)."""
    policy = policy or "Always"
    if init_failed and policy == "Never":
        return "Failed"
    if init_pending:
        return "Pending"
    if counts.waiting > 0:
        return "Pending"
    if counts.running > 0:
        return "Running"
    if counts.stopped > 0:
        if deleted:
            return "Succeeded" if counts.stopped == counts.succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if counts.stopped == counts.succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def qos_class(pod) -> str:
    """Guaranteed when every container's cpu and memory limits equal its requests (and are set),
    BestEffort when no container asks for anything, Burstable otherwise."""
    any_set = False
    guaranteed = True
    for c in list(pod.spec.containers) + list(pod.spec.initContainers):
        req, lim = c.resources.requests, c.resources.limits
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
