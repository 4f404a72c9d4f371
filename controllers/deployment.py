"""The Deployment controller: ReplicaSets per pod template, rolled out with maxSurge/maxUnavailable.

It follows Kubernetes' deployment controller (pkg/controller/deployment), whose behaviour
users and `kubectl rollout` rely on:
- Each template gets a ReplicaSet named `<deployment>-<pod-template-hash>`; the hash is a
  short stable hash of the template (FNV-32a, rendered with Kubernetes' safe alphabet) and is
  added to the ReplicaSet's selector, labels and template labels, so the pods of different
  revisions never overlap. A name taken by a different template bumps
  `status.collisionCount`, which changes the hash.
- The ReplicaSet whose template equals the Deployment's (ignoring the hash label) is the new
  one; its `deployment.kubernetes.io/revision` is one more than any old one's.
- RollingUpdate moves in steps: scale the new ReplicaSet up while the total stays within
  replicas + maxSurge; otherwise scale old ones down (unhealthy first, then oldest first)
  while the available pods stay at least replicas - maxUnavailable. Availability comes from
  ReplicaSet status, counted no higher than the ReplicaSet's own spec.replicas: an old
  ReplicaSet that was just told to shrink may still report its old pods as available, and
  must not be counted twice. Recreate scales everything old to zero, waits for the old pods to
  be gone, then scales the new one up.
- A change of `replicas` alone is a scaling event: replicas are shared out proportionally
  among the active ReplicaSets (using their max-replicas annotation), as Kubernetes does.
- Status (replicas, updated/ready/available/unavailable, conditions Available and
  Progressing with their reasons) is what `kubectl get deploy` and `rollout status` read.
- Old ReplicaSets scaled to zero beyond `revisionHistoryLimit` are deleted once a rollout
  completes.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Callable, Iterable

from google.protobuf.message import Message

from kubemu import errors, labels, objects
from kubemu.informer import Informer
from kubemu.v1 import objects_pb2 as pb

from kubemu.controllers.base import (Controller, can_adopt, controller_ref, copy, index_controller_uid, index_namespace,
                                     owner_ref, pod_terminal)
from kubemu.timefmt import parse_time, rfc3339

log = logging.getLogger("kubemu.controllers.deployment")

COMPONENT = "deployment-controller"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
_NOT_COPIED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
               DESIRED_REPLICAS, MAX_REPLICAS, "deprecated.deployment.rollback.to"}
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
MAX_INT32 = 2**31 - 1

AVAILABLE, PROGRESSING = "Available", "Progressing"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"


# ------------------------------------------------------------------ hashing and templates

def fnv32a(data: bytes, h: int = 0x811C9DC5) -> int:
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    """rand.SafeEncodeString: map each character onto an alphabet without vowels."""
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in s)


def template_hash(template: Message, collision_count: int | None = None) -> str:
    """controller.ComputeHash: FNV-32a of the template (+ collisionCount), safely encoded."""
    h = fnv32a(template.SerializeToString(deterministic=True))
    if collision_count:
        h = fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4), h)
    return safe_encode(str(h))


def _without_hash(template: Message) -> Message:
    t = copy(template)
    if HASH_LABEL in t.metadata.labels:
        del t.metadata.labels[HASH_LABEL]
    return t


def equal_ignore_hash(a: Message, b: Message) -> bool:
    return _without_hash(a) == _without_hash(b)


# ------------------------------------------------------------------ arithmetic

def replicas_of(obj: Message) -> int:
    return obj.spec.replicas if obj.spec.HasField("replicas") else 1


def is_rolling(d: Message) -> bool:
    return (d.spec.strategy.type or "RollingUpdate") == "RollingUpdate"


def scaled_value(v: Message | None, total: int, round_up: bool, default: str = "25%") -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if v is None:
        value: int | str = default
    else:
        value = objects.ios_value(v)
    if isinstance(value, int):
        return value
    if value.endswith("%"):
        pct = int(value[:-1])
        x = pct * total / 100
        return math.ceil(x) if round_up else math.floor(x)
    return int(value)


def resolve_fenceposts(d: Message) -> tuple[int, int]:
    ru = d.spec.strategy.rollingUpdate
    n = replicas_of(d)
    surge = scaled_value(ru.maxSurge if ru.HasField("maxSurge") else None, n, True)
    unavailable = scaled_value(ru.maxUnavailable if ru.HasField("maxUnavailable") else None, n, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # a rollout has to be able to move
    return surge, unavailable


def max_surge(d: Message) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Message) -> int:
    n = replicas_of(d)
    if not is_rolling(d) or n == 0:
        return 0
    return min(resolve_fenceposts(d)[1], n)


def revision(rs: Message) -> int:
    try:
        return int(rs.metadata.annotations.get(REVISION, "0"))
    except ValueError:
        return 0


def by_creation(rss: Iterable[Message]) -> list[Message]:
    return sorted(rss, key=lambda r: (r.metadata.creationTimestamp, r.metadata.name))


def available(rs: Message) -> int:
    """Available pods of a ReplicaSet, never more than it is meant to keep."""
    return min(rs.spec.replicas, rs.status.availableReplicas)


def find_new_rs(d: Message, rss: Iterable[Message]) -> Message | None:
    for rs in by_creation(rss):
        if equal_ignore_hash(rs.spec.template, d.spec.template):
            return rs
    return None


# ------------------------------------------------------------------ rollout steps (pure)

def rolling_scale_up(d: Message, new_rs: Message, all_rss: list[Message]) -> int | None:
    """NewRSNewReplicas for a rolling update: the new ReplicaSet's next size, or None."""
    want, cur = replicas_of(d), new_rs.spec.replicas
    if cur == want:
        return None
    if cur > want:
        return want
    max_total = want + max_surge(d)
    current = sum(r.spec.replicas for r in all_rss)
    if current >= max_total:
        return None
    return cur + min(max_total - current, want - cur)


def rolling_scale_down(d: Message, new_rs: Message, old_rss: list[Message]) -> dict[str, int]:
    """reconcileOldReplicaSets: new sizes of the old ReplicaSets that shrink in this step."""
    if sum(r.spec.replicas for r in old_rss) == 0:
        return {}
    all_count = sum(r.spec.replicas for r in old_rss) + new_rs.spec.replicas
    min_available = replicas_of(d) - max_unavailable(d)
    new_unavailable = new_rs.spec.replicas - available(new_rs)
    max_down = all_count - min_available - new_unavailable
    if max_down <= 0:
        return {}
    sizes = {r.metadata.name: r.spec.replicas for r in old_rss}
    ordered = by_creation(old_rss)
    # 1. Unhealthy replicas first: they would otherwise block the rollout.
    total = 0
    for r in ordered:
        if total >= max_down:
            break
        n = sizes[r.metadata.name]
        healthy = min(n, r.status.availableReplicas)
        if n == 0 or n == healthy:
            continue
        k = min(max_down - total, n - healthy)
        sizes[r.metadata.name] = n - k
        total += k
    # 2. Then healthy ones, oldest first, keeping min_available.
    avail = sum(min(sizes[r.metadata.name], r.status.availableReplicas) for r in old_rss) + available(new_rs)
    if avail > min_available:
        to_down, done = avail - min_available, 0
        for r in ordered:
            if done >= to_down:
                break
            n = sizes[r.metadata.name]
            if n == 0:
                continue
            k = min(n, to_down - done)
            sizes[r.metadata.name] = n - k
            done += k
    return {r.metadata.name: sizes[r.metadata.name] for r in old_rss
            if sizes[r.metadata.name] != r.spec.replicas}


def _max_replicas_annotation(rs: Message) -> int | None:
    try:
        return int(rs.metadata.annotations[MAX_REPLICAS])
    except (KeyError, ValueError):
        return None


def _desired_annotation(rs: Message) -> int | None:
    try:
        return int(rs.metadata.annotations[DESIRED_REPLICAS])
    except (KeyError, ValueError):
        return None


def is_scaling_event(d: Message, rss: Iterable[Message]) -> bool:
    for rs in rss:
        if rs.spec.replicas > 0:
            desired = _desired_annotation(rs)
            if desired is not None and desired != replicas_of(d):
                return True
    return False


def is_saturated(d: Message, new_rs: Message | None) -> bool:
    if new_rs is None:
        return False
    n = replicas_of(d)
    return (new_rs.spec.replicas == n and _desired_annotation(new_rs) == n
            and new_rs.status.availableReplicas == n)


def proportional_scale(d: Message, new_rs: Message | None, old_rss: list[Message]) -> dict[str, int]:
    """DeploymentController.scale: new sizes of the ReplicaSets after a scaling event."""
    n = replicas_of(d)
    active = [r for r in old_rss + ([new_rs] if new_rs is not None else []) if r.spec.replicas > 0]
    if len(active) <= 1:
        # One active ReplicaSet takes the whole size; with none, the newest one does.
        if active:
            target = active[0]
        elif new_rs is not None:
            target = new_rs
        elif old_rss:
            target = by_creation(old_rss)[-1]
        else:
            return {}
        return {} if target.spec.replicas == n else {target.metadata.name: n}
    if is_saturated(d, new_rs):
        return {r.metadata.name: 0 for r in old_rss if r.spec.replicas > 0}
    if not is_rolling(d):
        return {}
    allowed = n + max_surge(d) if n > 0 else 0
    to_add = allowed - sum(r.spec.replicas for r in active)
    if to_add > 0:  # ReplicaSetsBySizeNewer
        active.sort(key=lambda r: (r.spec.replicas, r.metadata.creationTimestamp, r.metadata.name), reverse=True)
    elif to_add < 0:  # ReplicaSetsBySizeOlder
        active.sort(key=lambda r: (-r.spec.replicas, r.metadata.creationTimestamp, r.metadata.name))
    sizes, added = {}, 0
    for r in active:
        if to_add != 0:
            p = _proportion(r, d, to_add, added)
            sizes[r.metadata.name] = r.spec.replicas + p
            added += p
        else:
            sizes[r.metadata.name] = r.spec.replicas
    if to_add != 0 and active:
        first = active[0].metadata.name
        sizes[first] = max(0, sizes[first] + to_add - added)
    return {r.metadata.name: sizes[r.metadata.name] for r in active if sizes[r.metadata.name] != r.spec.replicas}


def _proportion(rs: Message, d: Message, to_add: int, added: int) -> int:
    if rs.spec.replicas == 0 or to_add == 0 or to_add == added:
        return 0
    n = replicas_of(d)
    if n == 0:
        fraction = -rs.spec.replicas
    else:
        before = _max_replicas_annotation(rs) or d.status.replicas
        if not before:
            fraction = 0
        else:
            fraction = math.floor(rs.spec.replicas * (n + max_surge(d)) / before + 0.5) - rs.spec.replicas
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# ------------------------------------------------------------------ status (pure)

def get_condition(status: Message, type_: str):
    for c in status.conditions:
        if c.type == type_:
            return c
    return None


def new_condition(type_: str, status: str, reason: str, message: str, now: float) -> pb.DeploymentCondition:
    t = rfc3339(now)
    return pb.DeploymentCondition(type=type_, status=status, reason=reason, message=message,
                                  lastUpdateTime=t, lastTransitionTime=t)


def set_condition(status: Message, cond: Message) -> None:
    """SetDeploymentCondition: same status and reason -> no change; same status -> keep the
    transition time."""
    cur = get_condition(status, cond.type)
    if cur is not None and cur.status == cond.status and cur.reason == cond.reason:
        return
    if cur is not None and cur.status == cond.status:
        cond.lastTransitionTime = cur.lastTransitionTime
    remove_condition(status, cond.type)
    status.conditions.add().CopyFrom(cond)


def remove_condition(status: Message, type_: str) -> None:
    keep = [c for c in status.conditions if c.type != type_]
    del status.conditions[:]
    status.conditions.extend(keep)


def calculate_status(d: Message, all_rss: list[Message], new_rs: Message | None, now: float) -> pb.DeploymentStatus:
    avail = sum(r.status.availableReplicas for r in all_rss)
    total = sum(r.spec.replicas for r in all_rss)
    st = pb.DeploymentStatus()
    st.observedGeneration = d.metadata.generation
    st.replicas = sum(r.status.replicas for r in all_rss)
    st.updatedReplicas = new_rs.status.replicas if new_rs is not None else 0
    st.readyReplicas = sum(r.status.readyReplicas for r in all_rss)
    st.availableReplicas = avail
    st.unavailableReplicas = max(0, total - avail)
    if d.status.HasField("collisionCount"):
        st.collisionCount = d.status.collisionCount
    st.conditions.extend(d.status.conditions)
    if avail >= replicas_of(d) - max_unavailable(d):
        set_condition(st, new_condition(AVAILABLE, "True", "MinimumReplicasAvailable",
                                        "Deployment has minimum availability.", now))
    else:
        set_condition(st, new_condition(AVAILABLE, "False", "MinimumReplicasUnavailable",
                                        "Deployment does not have minimum availability.", now))
    return st


def progress_deadline(d: Message) -> int | None:
    v = d.spec.progressDeadlineSeconds if d.spec.HasField("progressDeadlineSeconds") else 600
    return None if v == MAX_INT32 else v


def deployment_complete(d: Message, st: Message) -> bool:
    n = replicas_of(d)
    return (st.updatedReplicas == n and st.replicas == n and st.availableReplicas == n
            and st.observedGeneration >= d.metadata.generation)


def deployment_progressing(d: Message, st: Message) -> bool:
    old = d.status
    return (st.updatedReplicas > old.updatedReplicas
            or (st.replicas - st.updatedReplicas) < (old.replicas - old.updatedReplicas)
            or st.readyReplicas > old.readyReplicas
            or st.availableReplicas > old.availableReplicas)


def deployment_timed_out(d: Message, st: Message, now: float) -> bool:
    deadline = progress_deadline(d)
    if deadline is None:
        return False
    cond = get_condition(st, PROGRESSING)
    if cond is None or cond.reason == NEW_RS_AVAILABLE:
        return False
    if cond.reason == TIMED_OUT:
        return True
    since = parse_time(cond.lastUpdateTime)
    return since is not None and since + deadline < now


def rollout_status(d: Message, all_rss: list[Message], new_rs: Message | None, now: float) -> pb.DeploymentStatus:
    """syncRolloutStatus: calculate_status plus the Progressing condition."""
    st = calculate_status(d, all_rss, new_rs, now)
    if progress_deadline(d) is None:
        remove_condition(st, PROGRESSING)
    cur = get_condition(d.status, PROGRESSING)
    complete = st.replicas == st.updatedReplicas and cur is not None and cur.reason == NEW_RS_AVAILABLE
    if progress_deadline(d) is not None and not complete:
        rs_name = new_rs.metadata.name if new_rs is not None else ""
        if deployment_complete(d, st):
            msg = (f'ReplicaSet "{rs_name}" has successfully progressed.' if new_rs is not None
                   else f'Deployment "{d.metadata.name}" has successfully progressed.')
            set_condition(st, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now))
        elif deployment_progressing(d, st):
            msg = (f'ReplicaSet "{rs_name}" is progressing.' if new_rs is not None
                   else f'Deployment "{d.metadata.name}" is progressing.')
            cond = new_condition(PROGRESSING, "True", "ReplicaSetUpdated", msg, now)
            old = get_condition(st, PROGRESSING)
            if old is not None:
                if old.status == "True":
                    cond.lastTransitionTime = old.lastTransitionTime
                remove_condition(st, PROGRESSING)
            set_condition(st, cond)
        elif deployment_timed_out(d, st, now):
            msg = (f'ReplicaSet "{rs_name}" has timed out progressing.' if new_rs is not None
                   else f'Deployment "{d.metadata.name}" has timed out progressing.')
            set_condition(st, new_condition(PROGRESSING, "False", TIMED_OUT, msg, now))
    return st


def rs_annotations_for(d: Message, rs: Message, new_revision: int, exists: bool) -> dict[str, str]:
    """SetNewReplicaSetAnnotations: the new ReplicaSet's annotations after this sync."""
    out = dict(rs.metadata.annotations)
    for k, v in d.metadata.annotations.items():
        if k not in _NOT_COPIED:
            out[k] = v
    old = rs.metadata.annotations.get(REVISION)
    try:
        old_int = int(old) if old is not None else 0
    except ValueError:
        old_int = 0
    if old_int < new_revision:
        out[REVISION] = str(new_revision)
        if old is not None:
            history = rs.metadata.annotations.get(REVISION_HISTORY, "")
            out[REVISION_HISTORY] = f"{history},{old}" if history else old
    if not exists:
        out[DESIRED_REPLICAS] = str(replicas_of(d))
        out[MAX_REPLICAS] = str(replicas_of(d) + max_surge(d))
    return out


def new_replica_set(d: Message, rs_hash: str, replicas: int, new_revision: int) -> pb.ReplicaSet:
    rs = objects.new("ReplicaSet", f"{d.metadata.name}-{rs_hash}", d.metadata.namespace)
    rs.spec.template.CopyFrom(d.spec.template)
    rs.spec.template.metadata.labels[HASH_LABEL] = rs_hash
    rs.metadata.labels.update(rs.spec.template.metadata.labels)
    rs.metadata.ownerReferences.append(owner_ref(d))
    rs.spec.selector.CopyFrom(d.spec.selector)
    rs.spec.selector.matchLabels[HASH_LABEL] = rs_hash
    rs.spec.replicas = replicas
    rs.spec.minReadySeconds = d.spec.minReadySeconds
    rs.metadata.annotations.update(rs_annotations_for(d, rs, new_revision, exists=False))
    return rs


# ------------------------------------------------------------------ the controller

class DeploymentController(Controller):
    name = "deployment"
    workers = 4
    resync_period = 60.0

    def __init__(self, client, *, deployments: Informer, replicasets: Informer, pods: Informer, recorder,
                 clock: Callable[[], float] = time.time):
        super().__init__()
        self.client = client
        self.deployments = deployments
        self.replicasets = replicasets
        self.pods = pods
        self.recorder = recorder.for_component(COMPONENT) if recorder is not None else None
        self.clock = clock
        replicasets.add_index("controller", index_controller_uid)
        replicasets.add_index("namespace", index_namespace)
        deployments.add_index("namespace", index_namespace)
        pods.add_index("controller", index_controller_uid)
        deployments.add_handler(self._on_deployment)
        replicasets.add_handler(self._on_rs)
        pods.add_handler(self._on_pod)

    def all_keys(self):
        return list(self.deployments.cache.keys())

    def _event(self, obj: Message, reason: str, message: str, warning: bool = False) -> None:
        if self.recorder is not None:
            (self.recorder.warning if warning else self.recorder.normal)(obj, reason, message)

    # ------------------------------------------------------------ handlers

    def _on_deployment(self, event: str, d: Message, old: Message | None) -> None:
        self.enqueue(objects.key(d))

    def _on_rs(self, event: str, rs: Message, old: Message | None) -> None:
        for r in (rs, old) if old is not None else (rs,):
            ref = controller_ref(r)
            if ref is not None:
                if ref.kind == "Deployment":
                    self.enqueue(f"{r.metadata.namespace}/{ref.name}")
            elif event != "DELETED":
                for d in self.deployments.by_index("namespace", r.metadata.namespace):
                    sel = _selector(d)
                    if sel and labels.matches(sel, r.metadata.labels):
                        self.enqueue(objects.key(d))

    def _on_pod(self, event: str, pod: Message, old: Message | None) -> None:
        """Only Recreate waits on pods: a deleted old pod may let it proceed."""
        if event != "DELETED" and not pod_terminal(pod):
            return
        ref = controller_ref(pod)
        if ref is None or ref.kind != "ReplicaSet":
            return
        rs = self.replicasets.get(f"{pod.metadata.namespace}/{ref.name}")
        if rs is None:
            return
        dref = controller_ref(rs)
        if dref is not None and dref.kind == "Deployment":
            d = self.deployments.get(f"{rs.metadata.namespace}/{dref.name}")
            if d is not None and d.spec.strategy.type == "Recreate":
                self.enqueue(objects.key(d))

    # ------------------------------------------------------------ sync

    def _claim(self, d: Message) -> tuple[list[Message], list[Message]]:
        sel = _selector(d)
        owned, adopt = [], []
        for rs in self.replicasets.by_index("controller", d.metadata.uid):
            owned.append(rs)
        if sel and not d.metadata.HasField("deletionTimestamp"):
            for rs in self.replicasets.by_index("namespace", d.metadata.namespace):
                if controller_ref(rs) is None and labels.matches(sel, rs.metadata.labels):
                    adopt.append(rs)
        return owned, adopt

    async def sync(self, key: str) -> None:
        if not self.expectations.satisfied(key):
            return  # events of our own writes re-enqueue the key
        d = self.deployments.get(key)
        if d is None:
            self.expectations.forget(key)
            return
        if not _selector(d):
            self._event(d, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.",
                        warning=True)
            return
        rss, adopt = self._claim(d)
        if adopt and not await can_adopt(self.client, d):
            adopt = []
        for rs in adopt:
            new = copy(rs)
            new.metadata.ownerReferences.append(owner_ref(d))
            try:
                rss.append(await self._write_rs(key, new))
            except errors.NotFound:
                pass
        s = _Sync(self, key, d, rss)
        if d.metadata.HasField("deletionTimestamp"):
            await s.status_only()
        elif d.spec.paused:
            await s.scale_only()
        elif is_scaling_event(d, rss):
            await s.scale_only()
        elif d.spec.strategy.type == "Recreate":
            await s.recreate()
        else:
            await s.rolling()

    async def _write_rs(self, key: str, rs: Message) -> Message:
        out = await self.client.update(rs)
        self.expectations.wrote(key, self.replicasets, out)
        return out


def _selector(d: Message):
    if not d.spec.HasField("selector"):
        return None
    sel = labels.from_label_selector(d.spec.selector)
    return sel or None


class _Sync:
    """One sync of one Deployment: the objects as this sync last wrote or read them."""

    def __init__(self, c: DeploymentController, key: str, d: Message, rss: list[Message]):
        self.c = c
        self.key = key
        self.d = d
        self.rss = {r.metadata.name: r for r in rss}
        self.new_rs_name: str | None = None
        self.conditions: list[Message] = []  # Progressing conditions decided while syncing
        self.now = c.clock()

    @property
    def new_rs(self) -> Message | None:
        return self.rss.get(self.new_rs_name) if self.new_rs_name else None

    @property
    def old_rss(self) -> list[Message]:
        return [r for n, r in self.rss.items() if n != self.new_rs_name]

    def all_rss(self) -> list[Message]:
        return list(self.rss.values())

    # ------------------------------------------------------------ building blocks

    async def _new_and_old(self, create: bool) -> None:
        """getAllReplicaSetsAndSyncRevision."""
        d, c = self.d, self.c
        found = find_new_rs(d, self.rss.values())
        self.new_rs_name = found.metadata.name if found is not None else None
        new_revision = max((revision(r) for r in self.old_rss), default=0) + 1
        if found is not None:
            ann = rs_annotations_for(d, found, new_revision, exists=True)
            if ann != dict(found.metadata.annotations) or found.spec.minReadySeconds != d.spec.minReadySeconds:
                rs = copy(found)
                rs.metadata.annotations.clear()
                rs.metadata.annotations.update(ann)
                rs.spec.minReadySeconds = d.spec.minReadySeconds
                self.rss[rs.metadata.name] = await c._write_rs(self.key, rs)
            if progress_deadline(d) is not None and get_condition(d.status, PROGRESSING) is None:
                self.conditions.append(new_condition(PROGRESSING, "True", "FoundNewReplicaSet",
                                                     f'Found new replica set "{found.metadata.name}"', self.now))
            await self._sync_revision(revision(self.new_rs))
            return
        if not create:
            return
        collision = d.status.collisionCount if d.status.HasField("collisionCount") else None
        rs_hash = template_hash(d.spec.template, collision)
        rs = new_replica_set(d, rs_hash, 0, new_revision)
        if is_rolling(d):
            size = rolling_scale_up(d, rs, self.old_rss + [rs]) or 0
        else:
            size = replicas_of(d)
        rs.spec.replicas = size
        try:
            created = await c.client.create(rs)
        except errors.AlreadyExists:
            existing = c.replicasets.get(f"{d.metadata.namespace}/{rs.metadata.name}")
            if existing is None:
                existing = await c.client.get("ReplicaSet", rs.metadata.name, d.metadata.namespace)
            ref = controller_ref(existing)
            if ref is not None and ref.uid == d.metadata.uid and equal_ignore_hash(existing.spec.template, d.spec.template):
                raise  # our own, not in the cache yet: retry from the cache
            # A hash collision: another template owns the name. Bump collisionCount.
            new = copy(d)
            new.status.collisionCount = (collision or 0) + 1
            await c.client.update_status(new)
            raise
        c.expectations.wrote(self.key, c.replicasets, created)
        self.rss[created.metadata.name] = created
        self.new_rs_name = created.metadata.name
        if size > 0:
            c._event(d, "ScalingReplicaSet", f"Scaled up replica set {created.metadata.name} from 0 to {size}")
        if progress_deadline(d) is not None:
            self.conditions.append(new_condition(PROGRESSING, "True", "NewReplicaSetCreated",
                                                 f'Created new replica set "{created.metadata.name}"', self.now))
        await self._sync_revision(new_revision)

    async def _sync_revision(self, rev: int) -> None:
        if self.d.metadata.annotations.get(REVISION) == str(rev):
            return
        d = copy(self.d)
        d.metadata.annotations[REVISION] = str(rev)
        self.d = await self.c.client.update(d)
        self.c.expectations.wrote(self.key, self.c.deployments, self.d)

    async def _scale(self, rs: Message, size: int, *, annotations: bool = False) -> None:
        """scaleReplicaSet: the size, plus the desired/max-replicas annotations."""
        d, c = self.d, self.c
        want = {DESIRED_REPLICAS: str(replicas_of(d)), MAX_REPLICAS: str(replicas_of(d) + max_surge(d))}
        size_changed = rs.spec.replicas != size
        ann_changed = any(rs.metadata.annotations.get(k) != v for k, v in want.items())
        if not size_changed and not (annotations and ann_changed):
            return
        new = copy(rs)
        new.spec.replicas = size
        new.metadata.annotations.update(want)
        self.rss[rs.metadata.name] = await c._write_rs(self.key, new)
        if size_changed:
            op = "up" if size > rs.spec.replicas else "down"
            c._event(d, "ScalingReplicaSet",
                     f"Scaled {op} replica set {rs.metadata.name} from {rs.spec.replicas} to {size}")

    async def _write_status(self, status: Message) -> None:
        if status == self.d.status:
            return
        d = copy(self.d)
        d.status.CopyFrom(status)
        try:
            self.d = await self.c.client.update_status(d)
        except errors.NotFound:
            return
        self.c.expectations.wrote(self.key, self.c.deployments, self.d)

    def _with_conditions(self, st: Message) -> Message:
        for cond in self.conditions:
            set_condition(st, cond)
        return st

    async def _cleanup(self) -> None:
        """Delete old, empty ReplicaSets beyond revisionHistoryLimit (oldest revision first)."""
        d = self.d
        limit = d.spec.revisionHistoryLimit if d.spec.HasField("revisionHistoryLimit") else 10
        alive = [r for r in self.old_rss if not r.metadata.HasField("deletionTimestamp")]
        diff = len(alive) - limit
        if diff <= 0:
            return
        alive.sort(key=lambda r: (revision(r), r.metadata.creationTimestamp, r.metadata.name))
        for rs in alive[:diff]:
            if rs.status.replicas != 0 or rs.spec.replicas != 0 or \
                    rs.metadata.generation > rs.status.observedGeneration:
                continue
            try:
                await self.c.client.delete("ReplicaSet", rs.metadata.name, rs.metadata.namespace,
                                           precondition_uid=rs.metadata.uid)
            except errors.NotFound:
                pass
            self.rss.pop(rs.metadata.name, None)

    def _requeue_stuck(self, st: Message) -> None:
        """Sync again when the progress deadline would pass, to report it."""
        deadline = progress_deadline(self.d)
        cond = get_condition(st, PROGRESSING)
        if deadline is None or cond is None or cond.reason in (NEW_RS_AVAILABLE, TIMED_OUT):
            return
        if deployment_complete(self.d, st):
            return
        since = parse_time(cond.lastUpdateTime)
        if since is not None:
            self.c.queue.add_after(self.key, max(0.0, since + deadline - self.now) + 1.0)

    def _paused_condition(self, st: Message) -> None:
        cond = get_condition(st, PROGRESSING)
        if progress_deadline(self.d) is None:
            return
        if self.d.spec.paused and (cond is None or cond.reason != "DeploymentPaused"):
            set_condition(st, new_condition(PROGRESSING, "Unknown", "DeploymentPaused", "Deployment is paused", self.now))
        elif not self.d.spec.paused and cond is not None and cond.reason == "DeploymentPaused":
            set_condition(st, new_condition(PROGRESSING, "Unknown", "DeploymentResumed", "Deployment is resumed", self.now))

    # ------------------------------------------------------------ the paths of syncDeployment

    async def status_only(self) -> None:
        await self._new_and_old(create=False)
        st = self._with_conditions(calculate_status(self.d, self.all_rss(), self.new_rs, self.now))
        await self._write_status(st)

    async def scale_only(self) -> None:
        await self._new_and_old(create=False)
        for name, size in proportional_scale(self.d, self.new_rs, self.old_rss).items():
            await self._scale(self.rss[name], size, annotations=True)
        # Sizes equal but annotations stale (a scaling event that needs no resize).
        for rs in list(self.rss.values()):
            if rs.spec.replicas > 0:
                await self._scale(rs, rs.spec.replicas, annotations=True)
        if self.d.spec.paused:
            await self._cleanup()
        st = self._with_conditions(calculate_status(self.d, self.all_rss(), self.new_rs, self.now))
        self._paused_condition(st)
        await self._write_status(st)

    async def rolling(self) -> None:
        await self._new_and_old(create=True)
        new_rs = self.new_rs
        assert new_rs is not None
        # One step per sync, as Kubernetes: scale up if we can, else scale down if we can.
        up = rolling_scale_up(self.d, new_rs, self.all_rss())
        if up is not None:
            await self._scale(new_rs, up)
        else:
            for name, size in rolling_scale_down(self.d, new_rs, self.old_rss).items():
                await self._scale(self.rss[name], size)
        if deployment_complete(self.d, self.d.status):
            await self._cleanup()
        await self._finish()

    async def recreate(self) -> None:
        await self._new_and_old(create=False)
        active_old = [r for r in self.old_rss if r.spec.replicas > 0]
        if active_old:
            for rs in active_old:
                await self._scale(rs, 0)
            await self._finish()
            return
        if self._old_pods_running():
            await self._finish()
            return
        if self.new_rs is None:
            await self._new_and_old(create=True)
        if self.new_rs is not None:
            await self._scale(self.new_rs, replicas_of(self.d))
        if deployment_complete(self.d, self.d.status):
            await self._cleanup()
        await self._finish()

    def _old_pods_running(self) -> bool:
        if sum(r.status.replicas for r in self.old_rss) > 0:
            return True
        for rs in self.old_rss:
            for p in self.c.pods.by_index("controller", rs.metadata.uid):
                if not pod_terminal(p):
                    return True
        return False

    async def _finish(self) -> None:
        st = self._with_conditions(rollout_status(self.d, self.all_rss(), self.new_rs, self.now))
        self._paused_condition(st)
        await self._write_status(st)
        self._requeue_stuck(st)
