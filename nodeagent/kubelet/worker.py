"""One pod on this node: its containers, their probes and restarts, and its termination.

The kubelet's sync calls `reconcile()`, which is level-triggered: it looks at each container's
record and starts what should run (first start, restart after an exit, after the back-off).
Events that change the facts (a container exited, a probe flipped, a back-off expired) only
record them and ask the kubelet to sync the pod again; they never act themselves.

Termination (`terminate()`, on deletionTimestamp) runs as its own task because it takes up to
the grace period: readiness goes false and is written first, then preStop hooks, SIGTERM, a
wait up to the grace period (re-read on every sync, so a shorter second delete applies), and
SIGKILL for what is left. The kubelet then writes the final status and deletes the pod.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from typing import TYPE_CHECKING

from kubemu import objects
from kubemu.v1 import objects_pb2 as pb

from kubemu.nodeagent.kubelet import envvars, images, lifecycle, logs, probes
from kubemu.nodeagent.kubelet.emulated import EmulatedInstance, PodContext
from kubemu.events import NORMAL, WARNING
from kubemu.nodeagent.kubelet.process import ProcessInstance, run_command
from kubemu.nodeagent.kubelet.runtime import ExitInfo, StartError
from kubemu.nodeagent.kubelet.status import ContainerRecord, Terminated, build_status, now_rfc3339

if TYPE_CHECKING:
    from kubemu.nodeagent.kubelet.kubelet import Kubelet

log = logging.getLogger("kubemu.nodeagent.kubelet")

# The environment a child process inherits from the agent; everything else comes from the pod.
BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL")


def _terminated_from(msg: pb.ContainerStateTerminated) -> Terminated:
    return Terminated(msg.exitCode, msg.reason or ("Completed" if msg.exitCode == 0 else "Error"),
                      msg.startedAt, msg.finishedAt or now_rfc3339(), msg.containerID, msg.message, msg.signal)


class ContainerSlot:
    """A container of the pod spec across its restarts: record, current instance, back-off, probes."""

    __slots__ = ("spec", "init", "record", "workload", "instance", "backoff", "restart_at",
                 "pending_restart", "silent_restart", "probe_task", "spec_bytes", "reported")

    def __init__(self, spec: pb.Container, init: bool, backoff: lifecycle.Backoff):
        self.spec = spec
        self.init = init
        self.record = ContainerRecord(spec.name, spec.image)
        self.workload = images.resolve(spec)
        self.instance = None
        self.backoff = backoff
        self.restart_at = 0.0
        self.pending_restart = False  # it exited; the next start counts as a restart
        self.silent_restart = False  # restored emulated container: start again without counting
        self.probe_task: asyncio.Task | None = None
        self.spec_bytes = spec.SerializeToString()
        self.reported = False  # the Failed event of a container that cannot start was recorded
        if isinstance(self.workload, images.NotEmulated):
            self.record.reason, self.record.message = self.workload.reason, self.workload.message
        if isinstance(self.workload, images.Emulated):
            self.record.image_id = f"kubemu://emulated/{self.workload.kind}"

    def stop_probes(self) -> None:
        if self.probe_task is not None:
            self.probe_task.cancel()
            self.probe_task = None


class PodWorker:
    def __init__(self, kubelet: "Kubelet", pod: pb.Pod):
        self.k = kubelet
        self.key = objects.key(pod)
        self.uid = pod.metadata.uid
        self.pod = pod
        self.ip = ""
        self.start_time = ""
        b = kubelet.backoff
        self.init_slots = [ContainerSlot(c, True, lifecycle.Backoff(*b)) for c in pod.spec.initContainers]
        self.slots = [ContainerSlot(c, False, lifecycle.Backoff(*b)) for c in pod.spec.containers]
        self.initialized = not self.init_slots
        self.init_failed = False
        self.terminating = False
        self.finished = False  # deleted and every container stopped
        self.terminal = False  # Succeeded/Failed: nothing runs again
        self.term_task: asyncio.Task | None = None
        self.deadline = 0.0
        self.force_phase = ""
        self.reason = ""
        self.message = ""
        self.lock = asyncio.Lock()
        self.written: pb.PodStatus | None = None
        self.written_rv = 0
        self.created = asyncio.get_running_loop().time()

    # ------------------------------------------------------------ helpers

    @property
    def all_slots(self) -> list[ContainerSlot]:
        return self.init_slots + self.slots

    @property
    def namespace(self) -> str:
        return self.pod.metadata.namespace

    @property
    def name(self) -> str:
        return self.pod.metadata.name

    def slot(self, name: str) -> ContainerSlot | None:
        for s in self.all_slots:
            if s.spec.name == name:
                return s
        return None

    def hostname(self) -> str:
        return (self.pod.spec.hostname or self.pod.metadata.name)[:63]

    def log_path(self, slot: ContainerSlot, instance: int | None = None) -> str:
        n = slot.record.restart_count if instance is None else instance
        return logs.container_log(self.k.state_dir, self.namespace, self.name, self.uid, slot.spec.name, n)

    def pod_dir(self) -> str:
        return logs.pod_dir(self.k.state_dir, self.namespace, self.name, self.uid)

    def env_for(self, slot: ContainerSlot) -> dict[str, str]:
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        env["HOSTNAME"] = self.hostname()
        env.update(envvars.container_env(self.pod, slot.spec, services=self.k.services.list(),
                                         pod_ip=self.ip, host_ip=self.k.node_ip))
        return env

    def cwd_for(self, slot: ContainerSlot) -> str:
        if slot.spec.workingDir:
            return slot.spec.workingDir
        d = self.pod_dir()
        os.makedirs(d, exist_ok=True)
        return d

    async def exec_in(self, slot: ContainerSlot, argv: list[str], timeout: float) -> tuple[int, bytes]:
        """Run a command "in" a container: with its environment and working directory."""
        env = self.env_for(slot)
        try:
            return await run_command(envvars.expand_argv(argv, env), env=env, cwd=self.cwd_for(slot),
                                     timeout=timeout, reaper=self.k.reaper)
        except (StartError, OSError) as e:
            return 127, str(e).encode()

    # ------------------------------------------------------------ restore after an agent restart

    def restore(self, pod: pb.Pod) -> None:
        """Take over what the API says about the pod: IP, start time, restart counts. A command
        container that was running died with the previous agent: it is recorded as terminated
        (137), so the restart policy decides; an emulated one simply starts again."""
        st = pod.status
        self.ip = st.podIP
        self.start_time = st.startTime
        by_name = {c.name: c for c in list(st.containerStatuses) + list(st.initContainerStatuses)}
        initialized = any(c.type == "Initialized" and c.status == "True" for c in st.conditions)
        now = now_rfc3339()
        for s in self.init_slots:
            if initialized:
                cs = by_name.get(s.spec.name)
                s.record.state = "terminated"
                s.record.terminated = (_terminated_from(cs.state.terminated)
                                       if cs is not None and cs.state.HasField("terminated")
                                       else Terminated(0, "Completed", "", now, ""))
                if cs is not None:
                    s.record.restart_count = cs.restartCount
        self.initialized = initialized or not self.init_slots
        for s in self.slots:
            cs = by_name.get(s.spec.name)
            if cs is None:
                continue
            r = s.record
            r.restart_count = cs.restartCount
            if cs.lastState.HasField("terminated"):
                r.last = _terminated_from(cs.lastState.terminated)
            if cs.state.HasField("terminated"):
                r.state, r.terminated = "terminated", _terminated_from(cs.state.terminated)
                s.pending_restart = True
            elif cs.state.HasField("running"):
                if isinstance(s.workload, images.Process):
                    r.state = "terminated"
                    r.terminated = Terminated(137, "Error", cs.state.running.startedAt, now, cs.containerID,
                                              "the node agent stopped, and the container's process with it")
                    s.pending_restart = True
                else:
                    s.silent_restart = True
            elif r.last is not None:
                s.pending_restart = True

    # ------------------------------------------------------------ running

    def should_restart(self, slot: ContainerSlot, exit_code: int) -> bool:
        policy = self.pod.spec.restartPolicy or "Always"
        if slot.init:
            return exit_code != 0 and policy != "Never"
        return lifecycle.should_restart(policy, exit_code)

    async def reconcile(self) -> float | None:
        """Start whatever should run now; returns when to look again (a back-off), if ever."""
        loop = asyncio.get_running_loop()
        wake: float | None = None
        self._apply_spec_changes()
        if not self.initialized:
            for s in self.init_slots:
                r = s.record
                if r.state == "terminated" and r.terminated is not None and r.terminated.exit_code == 0:
                    continue
                if s.instance is not None:
                    break
                if r.state == "terminated" and r.terminated is not None and not self.should_restart(s, r.terminated.exit_code):
                    self.init_failed = True
                    break
                wake = await self._maybe_start(s, loop.time())
                break
            else:
                self.initialized = True
        if not self.initialized:
            return wake
        for s in self.slots:
            if s.instance is not None:
                continue
            r = s.record
            if r.state == "terminated" and r.terminated is not None and not self.should_restart(s, r.terminated.exit_code):
                continue
            w = await self._maybe_start(s, loop.time())
            if w is not None:
                wake = w if wake is None else min(wake, w)
        return wake

    def _apply_spec_changes(self) -> None:
        """A container whose spec changed (an image update) is restarted, as Kubernetes does."""
        specs = {c.name: c for c in list(self.pod.spec.containers) + list(self.pod.spec.initContainers)}
        for s in self.all_slots:
            c = specs.get(s.spec.name)
            if c is None:
                continue
            data = c.SerializeToString()
            if data == s.spec_bytes:
                continue
            s.spec, s.spec_bytes = c, data
            s.workload = images.resolve(c)
            s.record.image = c.image
            s.restart_at = 0.0
            if isinstance(s.workload, images.NotEmulated):
                s.record.reason, s.record.message = s.workload.reason, s.workload.message
            if s.instance is not None:
                s.instance.terminate()
                asyncio.get_running_loop().call_later(self._grace(), s.instance.kill)

    async def _maybe_start(self, s: ContainerSlot, now: float) -> float | None:
        r = s.record
        if isinstance(s.workload, images.NotEmulated):
            if not s.reported:
                self.k.events.event(self.pod, WARNING, "Failed", f"Error: {s.workload.reason}: {s.workload.message}")
                s.reported = True
            r.state, r.reason, r.message = "waiting", s.workload.reason, s.workload.message
            return None
        if now < s.restart_at:
            if r.reason != "CrashLoopBackOff" or r.state == "terminated":
                self.k.events.event(self.pod, WARNING, "BackOff",
                                   f"Back-off restarting failed container {s.spec.name} in pod "
                                   f"{self.name}_{self.namespace}({self.uid})")
            if r.state == "terminated":
                r.last, r.terminated = r.terminated, None
            r.state = "waiting"
            r.reason = "CrashLoopBackOff"
            r.message = (f"back-off {lifecycle.go_duration(s.backoff.delay)} restarting failed "
                         f"container={s.spec.name} pod={self.name}_{self.namespace}({self.uid})")
            return s.restart_at - now
        await self._start(s)
        return None

    async def _start(self, s: ContainerSlot) -> None:
        r = s.record
        if s.pending_restart and not s.silent_restart:
            if r.state == "terminated" and r.terminated is not None:
                r.last = r.terminated
            r.restart_count += 1
        s.pending_restart = s.silent_restart = False
        r.terminated = None
        cid = "kubemu://" + secrets.token_hex(16)
        log_path = self.log_path(s)
        if r.restart_count >= 2:
            # Keep the current and the previous run's log (`logs -p`), as the kubelet keeps one
            # dead container per container: a crash loop must not fill the disk.
            with contextlib.suppress(OSError):
                os.unlink(self.log_path(s, r.restart_count - 2))
        try:
            if isinstance(s.workload, images.Emulated):
                ctx = PodContext(self.name, self.namespace, self.hostname(), self.ip, self.k.node_name)
                shell_slot = s

                async def shell(cmd: str) -> tuple[int, bytes]:
                    return await self.exec_in(shell_slot, ["/bin/sh", "-c", cmd], 30)

                inst = EmulatedInstance(s.workload, ctx, log_path, shell)
            else:
                assert isinstance(s.workload, images.Process)
                env = self.env_for(s)
                inst = ProcessInstance(envvars.expand_argv(s.workload.argv, env), env, self.cwd_for(s),
                                       log_path, self.k.reaper)
        except envvars.FieldRefError as e:
            r.state, r.reason, r.message = "waiting", "CreateContainerConfigError", str(e)
            self.k.events.event(self.pod, WARNING, "Failed", f"Error: {e}")
            return
        started_at = now_rfc3339()
        try:
            await inst.start()
        except StartError as e:
            logs.append_line(log_path, str(e))
            self.k.events.event(self.pod, WARNING, "Failed", f"Error: {e}")
            self._record_exit(s, ExitInfo(128, "StartError", str(e)), started_at="", cid=cid)
            self.k.enqueue(self.key)
            return
        s.instance = inst
        r.state = "running"
        r.started_at = started_at
        r.container_id = cid
        r.reason = r.message = ""
        has_startup = s.spec.HasField("startupProbe")
        r.started = not has_startup
        r.ready = r.started and not s.spec.HasField("readinessProbe") and not s.init
        self.k.metrics.containers_started += 1
        inst.exited.add_done_callback(lambda f, inst=inst: self._on_exit(s, inst, f))
        if not s.init and (has_startup or s.spec.HasField("readinessProbe") or s.spec.HasField("livenessProbe")):
            s.probe_task = asyncio.ensure_future(self._probe(s, inst))

    def _on_exit(self, s: ContainerSlot, inst, fut: asyncio.Future) -> None:
        if s.instance is not inst or fut.cancelled():
            return
        s.instance = None
        s.stop_probes()
        self._record_exit(s, fut.result(), started_at=s.record.started_at, cid=s.record.container_id)
        self.k.enqueue(self.key)

    def _record_exit(self, s: ContainerSlot, info: ExitInfo, *, started_at: str, cid: str) -> None:
        r = s.record
        r.state = "terminated"
        r.terminated = Terminated(info.exit_code, info.reason, started_at, now_rfc3339(), cid, info.message,
                                  info.signal)
        r.ready = r.started = False
        s.pending_restart = True
        if not self.terminating and self.should_restart(s, info.exit_code):
            now = asyncio.get_running_loop().time()
            s.restart_at = now + s.backoff.next(now)

    # ------------------------------------------------------------ probes

    async def _probe(self, s: ContainerSlot, inst) -> None:
        spec = s.spec
        started = asyncio.Event()
        if not spec.HasField("startupProbe"):
            started.set()
        loops = []
        if spec.HasField("startupProbe"):
            loops.append(self._probe_loop(s, inst, "startup", spec.startupProbe, started))
        if spec.HasField("readinessProbe"):
            loops.append(self._probe_loop(s, inst, "readiness", spec.readinessProbe, started))
        if spec.HasField("livenessProbe"):
            loops.append(self._probe_loop(s, inst, "liveness", spec.livenessProbe, started))
        try:
            await asyncio.gather(*loops)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s: probes of %s failed", self.key, spec.name)

    async def _probe_loop(self, s: ContainerSlot, inst, kind: str, probe: pb.Probe, started: asyncio.Event) -> None:
        delay, period, timeout = probes.timing(probe)
        counter = probes.ProbeCounter.for_probe(probe, {"readiness": False, "liveness": True, "startup": None}[kind])
        if kind != "startup":
            await started.wait()
        if delay:
            await asyncio.sleep(delay)
        r = s.record
        while s.instance is inst and not self.terminating:
            ok, msg = await probes.run(probe, s.spec, pod_ip=self.ip, node_ip=self.k.node_ip, timeout=timeout,
                                       exec_fn=lambda argv, t: self._exec_code(s, argv, t))
            if s.instance is not inst or self.terminating:
                return
            changed = counter.observe(ok)
            if not ok:
                self.k.metrics.probe_failures += 1
                log.debug("%s/%s: %s probe failed: %s", self.key, s.spec.name, kind, msg)
                self.k.events.event(self.pod, WARNING, "Unhealthy", f"{kind.capitalize()} probe failed: {msg}")
            if kind == "startup":
                if counter.result is True:
                    r.started = True
                    if not s.spec.HasField("readinessProbe"):
                        r.ready = True
                    started.set()
                    self.k.enqueue(self.key)
                    return
                if counter.result is False:
                    self._kill_unhealthy(s, inst, f"Container {s.spec.name} failed startup probe, will be restarted", probe)
                    return
            elif kind == "readiness":
                if changed:
                    r.ready = bool(counter.result) and r.started
                    self.k.enqueue(self.key)
            elif counter.result is False:
                self._kill_unhealthy(s, inst, f"Container {s.spec.name} failed liveness probe, will be restarted", probe)
                return
            await asyncio.sleep(period)

    async def _exec_code(self, s: ContainerSlot, argv: list[str], timeout: float) -> int:
        code, _ = await self.exec_in(s, argv, timeout)
        return code

    def _kill_unhealthy(self, s: ContainerSlot, inst, why: str, probe: pb.Probe) -> None:
        log.info("%s: %s", self.key, why)
        self.k.events.event(self.pod, NORMAL, "Killing", why)
        s.record.ready = False
        grace = probe.terminationGracePeriodSeconds if probe.HasField("terminationGracePeriodSeconds") else self._grace()
        inst.terminate()
        asyncio.get_running_loop().call_later(max(grace, 0), inst.kill)
        self.k.enqueue(self.key)

    def _grace(self) -> float:
        spec = self.pod.spec
        return float(spec.terminationGracePeriodSeconds) if spec.HasField("terminationGracePeriodSeconds") else 30.0

    # ------------------------------------------------------------ stopping

    def set_deadline(self) -> None:
        """(Re)compute when SIGKILL comes: a second delete with a shorter grace moves it earlier."""
        meta = self.pod.metadata
        grace = float(meta.deletionGracePeriodSeconds) if meta.HasField("deletionGracePeriodSeconds") else self._grace()
        when = asyncio.get_running_loop().time() + grace
        if not self.deadline or when < self.deadline:
            self.deadline = when

    async def terminate(self) -> None:
        """Graceful deletion: not ready (written first), preStop, SIGTERM, grace, SIGKILL."""
        self.terminating = True
        for s in self.all_slots:
            s.stop_probes()
            s.record.ready = False
        self.set_deadline()
        try:
            await asyncio.wait_for(self.k.write_status(self), 2.0)
        except Exception as e:  # the API may be away; stopping must not wait for it
            log.debug("%s: could not write not-ready status before stopping: %s", self.key, e)
        await asyncio.gather(*(self._stop_slot(s) for s in self.all_slots if s.instance is not None))
        self.finished = True
        self.k.enqueue(self.key)

    async def _stop_slot(self, s: ContainerSlot) -> None:
        inst = s.instance
        loop = asyncio.get_running_loop()
        pre = s.spec.lifecycle.preStop if s.spec.HasField("lifecycle") and s.spec.lifecycle.HasField("preStop") else None
        if pre is not None:
            remaining = self.deadline - loop.time()
            if remaining > 0:
                try:
                    await asyncio.wait_for(probes.run(pre, s.spec, pod_ip=self.ip, node_ip=self.k.node_ip,
                                                      timeout=remaining,
                                                      exec_fn=lambda argv, t: self._exec_code(s, argv, t)),
                                           remaining)
                except (asyncio.TimeoutError, Exception) as e:
                    log.debug("%s/%s: preStop: %r", self.key, s.spec.name, e)
        inst.terminate()
        while not inst.exited.done():
            remaining = self.deadline - loop.time()
            if remaining <= 0:
                inst.kill()
                try:
                    await asyncio.wait_for(asyncio.shield(inst.exited), 10)
                except asyncio.TimeoutError:
                    log.warning("%s/%s: did not stop after SIGKILL", self.key, s.spec.name)
                return
            try:
                await asyncio.wait_for(asyncio.shield(inst.exited), min(remaining, 0.25))
            except asyncio.TimeoutError:
                pass

    async def kill_all(self, grace: float = 0.0) -> None:
        """Stop everything now (the pod vanished from the API, or the agent stops): SIGTERM, up to
        `grace` seconds, SIGKILL. No status is written."""
        self.terminating = True
        insts = []
        for s in self.all_slots:
            s.stop_probes()
            if s.instance is not None:
                insts.append(s.instance)
                if grace > 0:
                    s.instance.terminate()
                else:
                    s.instance.kill()
        if not insts:
            self.finished = True
            return
        pending = [i.exited for i in insts]
        if grace > 0:
            _, still = await asyncio.wait(pending, timeout=grace)
            for i in insts:
                if not i.exited.done():
                    i.kill()
        await asyncio.wait(pending, timeout=10)
        self.finished = True

    def running_instances(self) -> int:
        return sum(1 for s in self.all_slots if s.instance is not None)

    # ------------------------------------------------------------ status

    def build_status(self, pod: pb.Pod | None = None) -> pb.PodStatus:
        return build_status(pod or self.pod, containers=[s.record for s in self.slots],
                            init_containers=[s.record for s in self.init_slots],
                            initialized=self.initialized, init_failed=self.init_failed, pod_ip=self.ip,
                            host_ip=self.k.node_ip, start_time=self.start_time, terminating=self.terminating,
                            finished=self.finished, reason=self.reason, message=self.message,
                            force_phase=self.force_phase)

    def fail(self, reason: str, message: str) -> None:
        """The pod cannot run here (its IP could not be restored): Failed, so its owner replaces it."""
        self.force_phase, self.reason, self.message = "Failed", reason, message
        self.terminal = True
        now = now_rfc3339()
        for s in self.all_slots:
            r = s.record
            if r.state != "terminated":
                r.state = "terminated"
                r.terminated = Terminated(137, "Error", r.started_at, now, r.container_id, message)
            r.ready = False
