"""The Deployment controller: hashing, rollout arithmetic, and what a sync writes."""
from __future__ import annotations

from kubemu import objects

from kubemu.controllers import deployment as dep
from kubemu.controllers.base import copy
from kubemu.controllers.deployment import DeploymentController

from ctrl_helpers import FakeClient, deployment_manifest, informer, run

NOW = 1_800_000_000.0


def deploy(replicas=4, strategy=None, **kw):
    m = deployment_manifest("web", replicas=replicas, strategy=strategy, **kw)
    m["metadata"].update(uid="d-uid", generation=1, resourceVersion="2", creationTimestamp="2026-01-01T00:00:00Z")
    return objects.from_dict(m)


def rs_for(d, replicas, available=None, created="2026-01-01T00:00:00Z", revision=1):
    """The ReplicaSet of d's current template, as the API server would hold it."""
    r = dep.new_replica_set(d, dep.template_hash(d.spec.template), replicas, revision)
    r.metadata.uid = f"uid-{r.metadata.name}"
    r.metadata.creationTimestamp = created
    r.metadata.resourceVersion = "5"
    r.metadata.generation = 1
    avail = replicas if available is None else available
    r.status.replicas = replicas
    r.status.readyReplicas = avail
    r.status.availableReplicas = avail
    r.status.observedGeneration = 1
    return r


def new_template(d, image="registry.k8s.io/echoserver:1.11"):
    t = copy(d.spec.template)
    t.spec.containers[0].image = image
    return t


# ------------------------------------------------------------------ pure

def test_template_hash_is_stable_short_and_safe():
    d = deploy()
    h = dep.template_hash(d.spec.template)
    assert h == dep.template_hash(copy(d.spec.template))
    assert 1 <= len(h) <= 10 and set(h) <= set(dep.SAFE_ALPHABET)
    assert h != dep.template_hash(new_template(d))
    assert h != dep.template_hash(d.spec.template, 1)


def test_new_replicaset_shape():
    d = deploy()
    h = dep.template_hash(d.spec.template)
    r = dep.new_replica_set(d, h, 3, 1)
    assert r.metadata.name == f"web-{h}"
    assert r.spec.selector.matchLabels[dep.HASH_LABEL] == h
    assert r.spec.template.metadata.labels[dep.HASH_LABEL] == h and r.metadata.labels[dep.HASH_LABEL] == h
    assert r.metadata.annotations[dep.REVISION] == "1"
    assert r.metadata.annotations[dep.DESIRED_REPLICAS] == "4" and r.metadata.annotations[dep.MAX_REPLICAS] == "5"
    assert r.metadata.ownerReferences[0].uid == "d-uid"
    assert dep.equal_ignore_hash(r.spec.template, d.spec.template)


def test_fenceposts_round_like_kubernetes():
    d = deploy(replicas=10)
    assert dep.resolve_fenceposts(d) == (3, 2)  # 25% surge rounds up, 25% unavailable down
    d = deploy(replicas=1, strategy={"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}})
    assert dep.resolve_fenceposts(d) == (0, 1)


def simulate(d, rss, steps=50):
    """Drive the pure rolling steps; the 'ReplicaSet controller' makes pods available at once,
    except that new pods take one step to become available. Returns the lowest availability
    and the highest pod count seen."""
    lowest, highest = 10**9, 0
    pending: dict[str, int] = {}
    for _ in range(steps):
        names = {r.metadata.name: r for r in rss}
        new_rs = dep.find_new_rs(d, rss)
        old = [r for r in rss if r is not new_rs]
        up = dep.rolling_scale_up(d, new_rs, rss)
        if up is not None:
            new_rs.spec.replicas = up
        else:
            for name, size in dep.rolling_scale_down(d, new_rs, old).items():
                names[name].spec.replicas = size
        # the world catches up: old pods vanish at once, new pods are ready one step later
        for r in rss:
            r.status.replicas = r.spec.replicas
            if r is new_rs:
                r.status.availableReplicas = min(r.spec.replicas, pending.get(r.metadata.name, 0))
                pending[r.metadata.name] = r.spec.replicas
            else:
                r.status.availableReplicas = min(r.status.availableReplicas, r.spec.replicas)
        lowest = min(lowest, sum(r.status.availableReplicas for r in rss))
        highest = max(highest, sum(r.spec.replicas for r in rss))
        if new_rs.status.availableReplicas == dep.replicas_of(d) and not any(r.spec.replicas for r in old):
            return lowest, highest, True
    return lowest, highest, False


def test_rolling_update_respects_surge_and_unavailability():
    for replicas, surge, unavailable in [(4, "25%", "25%"), (3, 1, 0), (10, 0, 2), (5, "50%", "0%")]:
        d = deploy(replicas=replicas, strategy={"type": "RollingUpdate",
                                                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
        old = rs_for(d, replicas, revision=1)
        d.spec.template.CopyFrom(new_template(d))
        new = rs_for(d, 0, revision=2, created="2026-01-02T00:00:00Z")
        s, u = dep.resolve_fenceposts(d)
        lowest, highest, done = simulate(d, [old, new])
        assert done, (replicas, surge, unavailable)
        assert lowest >= replicas - u, (replicas, surge, unavailable, lowest)
        assert highest <= replicas + s, (replicas, surge, unavailable, highest)


def test_proportional_scaling_during_a_rollout():
    d = deploy(replicas=10)
    old = rs_for(d, 8, revision=1)
    old.metadata.annotations[dep.MAX_REPLICAS] = "13"
    d2 = copy(d)
    d2.spec.template.CopyFrom(new_template(d))
    new = rs_for(d2, 5, available=0, revision=2, created="2026-01-02T00:00:00Z")
    new.metadata.annotations[dep.MAX_REPLICAS] = "13"
    d2.spec.replicas = 20  # max 20 + 5 = 25 allowed, 13 now: 12 to add, shared 8:5
    sizes = dep.proportional_scale(d2, new, [old])
    assert sum(sizes.values()) == 25 and sizes[old.metadata.name] > sizes[new.metadata.name] > 5


def test_single_active_replicaset_takes_the_new_size():
    d = deploy(replicas=4)
    r = rs_for(d, 4)
    d.spec.replicas = 7
    assert dep.is_scaling_event(d, [r])
    assert dep.proportional_scale(d, r, []) == {r.metadata.name: 7}


def test_status_and_conditions():
    d = deploy(replicas=4)
    r = rs_for(d, 4, available=2)
    st = dep.rollout_status(d, [r], r, NOW)
    assert (st.replicas, st.updatedReplicas, st.readyReplicas, st.availableReplicas, st.unavailableReplicas) == \
        (4, 4, 2, 2, 2)
    avail = dep.get_condition(st, "Available")
    assert (avail.status, avail.reason) == ("False", "MinimumReplicasUnavailable")
    prog = dep.get_condition(st, "Progressing")
    assert (prog.status, prog.reason, prog.message) == ("True", "ReplicaSetUpdated",
                                                       f'ReplicaSet "{r.metadata.name}" is progressing.')
    d.status.CopyFrom(st)
    r.status.availableReplicas = r.status.readyReplicas = 4
    st = dep.rollout_status(d, [r], r, NOW + 5)
    assert dep.get_condition(st, "Available").status == "True"
    prog = dep.get_condition(st, "Progressing")
    assert (prog.reason, prog.message) == ("NewReplicaSetAvailable",
                                           f'ReplicaSet "{r.metadata.name}" has successfully progressed.')


def test_progress_deadline_times_out():
    d = deploy(replicas=2, progressDeadlineSeconds=60)
    r = rs_for(d, 2, available=0)
    d.status.CopyFrom(dep.rollout_status(d, [r], r, NOW))
    st = dep.rollout_status(d, [r], r, NOW + 61)
    assert dep.get_condition(st, "Progressing").reason == "ProgressDeadlineExceeded"


# ------------------------------------------------------------------ sync

def make(deployments, rss, pods=()):
    client = FakeClient()
    c = DeploymentController(client, deployments=informer("Deployment", *deployments),
                             replicasets=informer("ReplicaSet", *rss), pods=informer("Pod", *pods),
                             recorder=None, clock=lambda: NOW)
    return c, client


def test_sync_creates_the_first_replicaset_and_revision():
    d = deploy(replicas=3)
    c, client = make([d], [])
    run(c.sync("default/web"))
    verbs = [w[:2] for w in client.writes]
    assert verbs[0] == ("create", "ReplicaSet")
    created = client.writes[0][3]
    assert created.metadata.name == f"web-{dep.template_hash(d.spec.template)}"
    assert created.spec.replicas == 3 and created.metadata.annotations[dep.REVISION] == "1"
    assert ("update", "Deployment") in verbs  # revision annotation on the Deployment
    status = [w[3] for w in client.writes if w[0] == "update_status"][-1].status
    assert dep.get_condition(status, "Progressing").reason == "NewReplicaSetCreated"


def test_steady_state_writes_nothing():
    d = deploy(replicas=3)
    d.metadata.annotations[dep.REVISION] = "1"
    r = rs_for(d, 3)
    d.status.CopyFrom(dep.rollout_status(d, [r], r, NOW))
    d.status.CopyFrom(dep.rollout_status(d, [r], r, NOW))
    c, client = make([d], [r])
    run(c.sync("default/web"))
    assert client.writes == []


def test_template_change_starts_a_rollout_with_surge():
    d = deploy(replicas=4)
    d.metadata.annotations[dep.REVISION] = "1"
    old = rs_for(d, 4)
    d.spec.template.CopyFrom(new_template(d))
    c, client = make([d], [old])
    run(c.sync("default/web"))
    creates = [w[3] for w in client.writes if w[0] == "create"]
    assert len(creates) == 1 and creates[0].spec.replicas == 1  # maxSurge 25% of 4
    assert creates[0].metadata.annotations[dep.REVISION] == "2"
    scaled = {w[3].metadata.name: w[3].spec.replicas for w in client.writes
              if w[0] == "update" and w[1] == "ReplicaSet"}
    assert scaled == {old.metadata.name: 3}  # maxUnavailable 1: one old pod may go now


def test_restart_annotation_changes_the_template_hash():
    d = deploy()
    t = copy(d.spec.template)
    t.metadata.annotations[dep.RESTARTED_AT] = "2026-01-01T00:00:00Z"
    assert dep.template_hash(t) != dep.template_hash(d.spec.template)
