"""The ReplicaSet controller: which pods go first, what a sync creates, deletes and writes."""
from __future__ import annotations

import pytest

from kubemu import objects

from kubemu.controllers.base import copy
from kubemu.controllers.replicaset import ReplicaSetController, calculate_status, new_pod, pods_to_delete

from ctrl_helpers import FakeClient, container, informer, pod, put, run

NOW = 1_800_000_000.0


def rs(name="web-abc", replicas=3, min_ready=0, uid="rs-uid"):
    r = objects.from_dict({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default", "uid": uid, "generation": 2, "resourceVersion": "3"},
        "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                              "spec": {"containers": [container()]}}}})
    return r


def child(name, owner=None, node="node-1", ip="10.0.0.1", ready=True, created="2026-01-01T00:00:00Z",
          ready_at="2026-01-01T00:00:00Z"):
    p = pod(name, node=node, ip=ip, ready=ready)
    p.metadata.creationTimestamp = created
    if ip:
        p.status.conditions[0].lastTransitionTime = ready_at
    owner = owner or rs()
    p.metadata.ownerReferences.add(apiVersion="apps/v1", kind="ReplicaSet", name=owner.metadata.name,
                                   uid=owner.metadata.uid, controller=True, blockOwnerDeletion=True)
    return p


def make(rss, pods):
    client = FakeClient()
    c = ReplicaSetController(client, replicasets=informer("ReplicaSet", *rss), pods=informer("Pod", *pods),
                             recorder=None, clock=lambda: NOW)
    return c, client


def test_new_pod_from_template():
    p = new_pod(rs())
    assert p.metadata.generateName == "web-abc-" and not p.metadata.name
    assert dict(p.metadata.labels) == {"app": "web"} and dict(p.metadata.annotations) == {"a": "b"}
    ref = p.metadata.ownerReferences[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("ReplicaSet", "web-abc", "rs-uid", True)
    assert p.spec.containers[0].image == "registry.k8s.io/echoserver:1.10"


def test_deletion_order_follows_kubernetes_ranking():
    unscheduled = child("unscheduled", node="", ip="")
    pending = child("pending", ip="")
    pending.status.phase = "Pending"
    not_ready = child("not-ready", ready=False)
    doubled = [child("d1", node="node-2"), child("d2", node="node-2")]
    old = child("old", node="node-3", created="2025-01-01T00:00:00Z", ready_at="2025-01-01T00:00:00Z")
    new = child("new", node="node-4", created="2026-06-01T00:00:00Z", ready_at="2026-06-01T00:00:00Z")
    pods = [old, new, *doubled, not_ready, pending, unscheduled]
    order = [p.metadata.name for p in pods_to_delete(pods, len(pods))]
    assert order[:3] == ["unscheduled", "pending", "not-ready"]
    assert order[3:5] == ["d1", "d2"] or order[3:5] == ["d2", "d1"]
    assert order[5:] == ["new", "old"]


def test_sync_creates_missing_pods_in_slow_start_batches():
    c, client = make([rs(replicas=5)], [])
    run(c.sync("default/web-abc"))
    creates = [w for w in client.writes if w[0] == "create"]
    assert len(creates) == 5 and all(w[3].metadata.name.startswith("web-abc-") for w in creates)
    status = [w for w in client.writes if w[0] == "update_status"]
    assert status and status[0][3].status.replicas == 0  # status counts the pods it saw


def test_a_second_sync_waits_for_the_cache_to_show_its_pods():
    c, client = make([rs(replicas=2)], [])
    run(c.sync("default/web-abc"))
    n = len(client.writes)
    run(c.sync("default/web-abc"))  # the pod cache has not caught up: no duplicates
    assert len(client.writes) == n
    for w in client.writes:
        if w[0] == "create":
            put(c.pods, w[3], rev=int(w[3].metadata.resourceVersion))
    c.replicasets._replace([client.writes[-1][3]], 99_999)
    client.writes.clear()
    run(c.sync("default/web-abc"))
    assert [w[0] for w in client.writes if w[0] in ("create", "delete")] == []


def test_scale_down_deletes_the_worst_pods_gracefully():
    owner = rs(replicas=1)
    pods = [child("ready-old", created="2025-01-01T00:00:00Z", ready_at="2025-01-01T00:00:00Z"),
            child("ready-new", ip="10.0.0.2", created="2026-01-02T00:00:00Z", ready_at="2026-01-02T00:00:00Z"),
            child("unready", ip="10.0.0.3", ready=False)]
    c, client = make([owner], pods)
    run(c.sync("default/web-abc"))
    deletes = sorted(w[2] for w in client.writes if w[0] == "delete")
    assert deletes == ["default/ready-new", "default/unready"]
    assert all("grace_period_seconds" not in w[3] for w in client.writes if w[0] == "delete")


def test_steady_state_writes_nothing():
    owner = rs(replicas=2)
    pods = [child("a"), child("b", ip="10.0.0.2")]
    owner.status.CopyFrom(calculate_status(owner, pods, NOW))
    c, client = make([owner], pods)
    run(c.sync("default/web-abc"))
    assert client.writes == []


def test_terminating_and_failed_pods_are_replaced_not_counted():
    owner = rs(replicas=2)
    gone = child("gone")
    gone.metadata.deletionTimestamp = "2026-01-01T00:00:30Z"
    failed = child("failed", ip="10.0.0.2")
    failed.status.phase = "Failed"
    c, client = make([owner], [gone, failed, child("ok", ip="10.0.0.3")])
    run(c.sync("default/web-abc"))
    assert len([w for w in client.writes if w[0] == "create"]) == 1
    assert not [w for w in client.writes if w[0] == "delete"]


def test_status_counts_ready_and_available_with_min_ready_seconds():
    owner = rs(replicas=2, min_ready=30)
    long_ready = child("a", ready_at="2026-01-01T00:00:00Z")
    just_ready = child("b", ip="10.0.0.2", ready_at="2027-01-15T08:00:00Z")  # NOW - 0 s
    st = calculate_status(owner, [long_ready, just_ready], 1_800_000_000.0)
    assert (st.replicas, st.readyReplicas, st.availableReplicas, st.observedGeneration) == (2, 2, 1, 2)


def test_orphans_matching_the_selector_are_adopted_and_strays_released():
    owner = rs(replicas=2)
    orphan = pod("orphan", node="node-1", ip="10.0.0.5")
    stray = child("stray")
    stray.metadata.labels["app"] = "other"
    c, client = make([owner], [orphan, stray, child("mine", ip="10.0.0.6")])
    client.objects[("ReplicaSet", "default", "web-abc")] = owner  # what a fresh read returns
    run(c.sync("default/web-abc"))
    updates = {w[2]: w[3] for w in client.writes if w[0] == "update"}
    assert updates["default/orphan"].metadata.ownerReferences[0].uid == "rs-uid"
    assert len(updates["default/stray"].metadata.ownerReferences) == 0
    assert not [w for w in client.writes if w[0] in ("create", "delete")]


@pytest.mark.parametrize("server_side", ["gone", "being deleted", "replaced"])
def test_no_adoption_when_the_owner_is_gone_from_the_api_server(server_side):
    """The cache can lag an orphaning delete: the owner is re-read before adopting."""
    owner = rs(replicas=1)
    c, client = make([owner], [pod("orphan", node="node-1", ip="10.0.0.5")])
    if server_side != "gone":
        fresh = rs(replicas=1)
        if server_side == "being deleted":
            fresh.metadata.deletionTimestamp = "2027-01-15T08:00:00Z"
        else:
            fresh.metadata.uid = "another-uid"
        client.objects[("ReplicaSet", "default", "web-abc")] = fresh
    run(c.sync("default/web-abc"))
    assert not [w for w in client.writes if w[0] == "update" and w[2] == "default/orphan"]


def test_deleting_replicaset_is_not_managed():
    owner = copy(rs(replicas=3))
    owner.metadata.deletionTimestamp = "2026-01-01T00:00:00Z"
    owner.status.observedGeneration = 2
    c, client = make([owner], [])
    run(c.sync("default/web-abc"))
    assert [w[0] for w in client.writes if w[0] == "create"] == []
