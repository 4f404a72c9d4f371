"""Pod status as the kubelet reports it, computed from what the agent knows. Pure.

`ContainerRecord` is the agent's record of one container (it outlives restarts: it carries the
restart count and the last termination). `build_status` turns a pod's records into a PodStatus
message; it keeps a condition's lastTransitionTime while its status does not change, so
building twice from the same facts gives the same message and the kubelet writes nothing.
"""
from __future__ import annotations

import dataclasses

from kubemu.timefmt import rfc3339 as now_rfc3339
from kubemu.v1 import objects_pb2 as pb

from kubemu.nodeagent.kubelet import lifecycle


@dataclasses.dataclass
class Terminated:
    exit_code: int
    reason: str  # Completed, Error, ...
    started_at: str
    finished_at: str
    container_id: str
    message: str = ""
    signal: int = 0

    def fill(self, msg: pb.ContainerStateTerminated) -> None:
        msg.exitCode = self.exit_code
        if self.signal:
            msg.signal = self.signal
        msg.reason = self.reason
        if self.message:
            msg.message = self.message
        if self.started_at:
            msg.startedAt = self.started_at
        msg.finishedAt = self.finished_at
        if self.container_id:
            msg.containerID = self.container_id


@dataclasses.dataclass
class ContainerRecord:
    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"  # waiting reason
    message: str = ""
    started_at: str = ""  # running since
    terminated: Terminated | None = None  # current state, when terminated
    last: Terminated | None = None  # lastState
    restart_count: int = 0
    ready: bool = False
    started: bool = False  # startup probe passed (or none)
    container_id: str = ""
    image_id: str = ""

    @property
    def ever_ran(self) -> bool:
        return self.state != "waiting" or self.last is not None

    def status(self) -> pb.ContainerStatus:
        cs = pb.ContainerStatus(name=self.name, image=self.image, ready=self.ready,
                                restartCount=self.restart_count)
        if self.state == "running":
            cs.state.running.startedAt = self.started_at
            cs.started = self.started
        elif self.state == "terminated" and self.terminated is not None:
            self.terminated.fill(cs.state.terminated)
            cs.started = False
        else:
            cs.state.waiting.reason = self.reason
            if self.message:
                cs.state.waiting.message = self.message
            cs.started = False
        if self.last is not None:
            self.last.fill(cs.lastState.terminated)
        else:
            cs.lastState.SetInParent()
        if self.image_id:
            cs.imageID = self.image_id
        if self.container_id and self.state != "waiting":
            cs.containerID = self.container_id
        elif self.last is not None and self.last.container_id:
            cs.containerID = self.last.container_id
        return cs


def counts(records: list[ContainerRecord]) -> lifecycle.ContainerCounts:
    running = waiting = stopped = succeeded = failed = 0
    for r in records:
        if r.state == "running":
            running += 1
        elif r.state == "terminated" and r.terminated is not None:
            stopped += 1
            if r.terminated.exit_code == 0:
                succeeded += 1
            else:
                failed += 1
        elif r.last is not None:  # waiting to restart
            stopped += 1
            if r.last.exit_code == 0:
                succeeded += 1
            else:
                failed += 1
        else:
            waiting += 1
    return lifecycle.ContainerCounts(running, waiting, stopped, succeeded, failed)


def _condition(old: dict[str, pb.PodCondition], type_: str, status: bool, now: str,
               reason: str = "", message: str = "") -> pb.PodCondition:
    s = "True" if status else "False"
    prev = old.get(type_)
    c = pb.PodCondition(type=type_, status=s)
    c.lastTransitionTime = prev.lastTransitionTime if prev is not None and prev.status == s and prev.lastTransitionTime else now
    if reason:
        c.reason = reason
    if message:
        c.message = message
    return c


def build_status(pod: pb.Pod, *, containers: list[ContainerRecord], init_containers: list[ContainerRecord],
                 initialized: bool, init_failed: bool, pod_ip: str, host_ip: str, start_time: str,
                 terminating: bool, finished: bool = False, now: str | None = None,
                 reason: str = "", message: str = "", force_phase: str = "") -> pb.PodStatus:
    """The status to write. `finished`: the pod was deleted and all its containers stopped."""
    now = now or now_rfc3339()
    old = {c.type: c for c in pod.status.conditions}
    st = pb.PodStatus()
    phase = lifecycle.pod_phase(pod.spec.restartPolicy, counts(containers),
                                init_pending=not initialized, init_failed=init_failed,
                                deleted=finished)
    phase = force_phase or phase
    st.phase = phase
    terminal = phase in ("Succeeded", "Failed")

    not_ready = [c.name for c in containers if not c.ready]
    all_ready = not not_ready and not terminating and not terminal
    conds: list[pb.PodCondition] = []
    # Conditions other controllers own (PodScheduled, DisruptionTarget, ...) are kept as they are.
    owned = ("Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers")
    for c in pod.status.conditions:
        if c.type not in owned:
            conds.append(c)
    if "PodScheduled" not in old:
        conds.insert(0, pb.PodCondition(type="PodScheduled", status="True",
                                        lastTransitionTime=start_time or now))
    conds.append(_condition(old, "PodReadyToStartContainers", bool(pod_ip) and not finished, now))
    if initialized:
        conds.append(_condition(old, "Initialized", True, now))
    else:
        pending = [c.name for c in init_containers if not (c.state == "terminated" and c.terminated
                                                              and c.terminated.exit_code == 0)]
        conds.append(_condition(old, "Initialized", False, now, "ContainersNotInitialized",
                                f"containers with incomplete status: [{' '.join(pending)}]"))
    if all_ready:
        conds.append(_condition(old, "Ready", True, now))
        conds.append(_condition(old, "ContainersReady", True, now))
    elif terminal:
        conds.append(_condition(old, "Ready", False, now, "PodCompleted"))
        conds.append(_condition(old, "ContainersReady", False, now, "PodCompleted"))
    else:
        names = not_ready or [c.name for c in containers]
        msg = f"containers with unready status: [{' '.join(names)}]"
        conds.append(_condition(old, "Ready", False, now, "ContainersNotReady", msg))
        conds.append(_condition(old, "ContainersReady", False, now, "ContainersNotReady", msg))
    st.conditions.extend(conds)
    if reason:
        st.reason = reason
    if message:
        st.message = message
    if host_ip:
        st.hostIP = host_ip
        st.hostIPs.add(ip=host_ip)
    if pod_ip:
        st.podIP = pod_ip
        st.podIPs.add(ip=pod_ip)
    if start_time:
        st.startTime = start_time
    for r in init_containers:
        st.initContainerStatuses.append(r.status())
    for r in containers:
        st.containerStatuses.append(r.status())
    st.qosClass = lifecycle.qos_class(pod)
    return st
