"""The garbage collector: which dependents it deletes, fixes or leaves alone."""
from __future__ import annotations

from kubemu import objects

from kubemu.controllers.gc import GarbageCollector

from ctrl_helpers import FakeClient, informer, pod, remove, run, service


def rs(name="web-abc", uid="rs-uid"):
    return objects.from_dict({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                              "metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": "1"},
                              "spec": {"replicas": 1}})


def child(name, *owners):
    p = pod(name)
    for o in owners:
        p.metadata.ownerReferences.add(apiVersion=o.apiVersion, kind=o.kind, name=o.metadata.name,
                                       uid=o.metadata.uid, controller=True)
    return p


def make(pods=(), rss=(), services=(), client=None):
    """The caches hold pods, rss and services; the API server holds the pods (dependents)."""
    client = client or FakeClient()
    for p in pods:
        client.objects[("Pod", p.metadata.namespace, p.metadata.name)] = p
    informers = {"Pod": informer("Pod", *pods), "ReplicaSet": informer("ReplicaSet", *rss),
                 "Service": informer("Service", *services)}
    return GarbageCollector(client, informers=informers), client


def test_dependent_of_a_live_owner_is_kept():
    owner = rs()
    gc, client = make([child("p", owner)], [owner])
    run(gc.sync("Pod/default/p"))
    assert client.writes == []


def test_dependent_of_a_vanished_owner_is_deleted_with_uid_precondition():
    gc, client = make([child("p", rs())], [])
    run(gc.sync("Pod/default/p"))
    assert client.verbs() == [("delete", "Pod", "default/p")]
    kw = client.writes[0][3]
    assert kw["precondition_uid"] == "uid-p" and kw["propagation_policy"] == "Background"
    assert kw["precondition_resource_version"] == "1"


def test_verdict_is_retaken_on_the_live_dependent():
    """The owner was deleted with --cascade=orphan; our cache still shows the reference."""
    owner = rs()
    cached = child("p", owner)
    gc, client = make([cached], [])
    client.objects[("Pod", "default", "p")] = pod("p")  # the API server already dropped the reference
    run(gc.sync("Pod/default/p"))
    assert client.writes == []


def test_owner_missing_from_cache_but_present_on_the_server_is_not_collected():
    owner = rs()
    client = FakeClient()
    client.objects[("ReplicaSet", "default", "web-abc")] = owner
    gc, client = make([child("p", owner)], [], client=client)
    run(gc.sync("Pod/default/p"))
    assert client.writes == []


def test_owner_recreated_with_another_uid_counts_as_gone():
    gc, client = make([child("p", rs(uid="old"))], [rs(uid="new")])
    run(gc.sync("Pod/default/p"))
    assert client.verbs() == [("delete", "Pod", "default/p")]


def test_dangling_reference_is_removed_when_another_owner_lives():
    live, gone = rs("live", "uid-live"), rs("gone", "uid-gone")
    gc, client = make([child("p", live, gone)], [live])
    run(gc.sync("Pod/default/p"))
    assert client.verbs() == [("update", "Pod", "default/p")]
    assert [r.uid for r in client.writes[0][3].metadata.ownerReferences] == ["uid-live"]


def test_owner_deletion_enqueues_dependents_and_skips_the_lookup():
    owner = rs()
    svc = service("web")
    gc, client = make([child("p", owner), child("q", svc)], [owner], [svc])
    remove(gc.informers["ReplicaSet"], owner)
    assert list(gc.queue._queue) == ["Pod/default/p"]
    assert "rs-uid" in gc.deleted_uids
    run(gc.sync("Pod/default/p"))
    assert client.verbs() == [("delete", "Pod", "default/p")]


def test_objects_without_owners_or_being_deleted_are_ignored():
    dying = child("d", rs())
    dying.metadata.deletionTimestamp = "2026-01-01T00:00:00Z"
    gc, client = make([pod("free"), dying], [])
    run(gc.sync("Pod/default/free"))
    run(gc.sync("Pod/default/d"))
    run(gc.sync("Pod/default/missing"))
    assert client.writes == []
