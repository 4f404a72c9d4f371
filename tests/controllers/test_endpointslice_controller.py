"""The EndpointSlice controller's sync and handlers, on pre-filled caches with a recording client."""
from __future__ import annotations

from kubemu.controllers import endpointslice_reconciler as rec
from kubemu.controllers.base import copy
from kubemu.controllers.endpointslice import EndpointSliceController

from ctrl_helpers import FakeClient, informer, node, pod, put, run, service


def make(pods=(), services=(), slices=(), client=None):
    client = client or FakeClient()
    c = EndpointSliceController(client, services=informer("Service", *services), pods=informer("Pod", *pods),
                                slices=informer("EndpointSlice", *slices), nodes=informer("Node", node("node-1")),
                                recorder=None)
    return c, client


def three_pods():
    return [pod(f"web-{i}", node="node-1", ip=f"10.0.0.{i}") for i in range(1, 4)]


def test_sync_creates_then_a_second_sync_writes_nothing():
    c, client = make(three_pods(), [service("web")])
    run(c.sync("default/web"))
    assert client.verbs() == [("create", "EndpointSlice", client.writes[0][2])]
    created = client.writes[0][3]
    # the informer sees our write: its echo does not enqueue the Service again ...
    put(c.slices, created, rev=int(created.metadata.resourceVersion))
    assert len(c.queue) == 0
    # ... and syncing anyway finds nothing to change
    client.writes.clear()
    run(c.sync("default/web"))
    assert client.writes == []


def test_sync_waits_for_the_cache_to_show_our_last_write():
    c, client = make(three_pods(), [service("web")])
    run(c.sync("default/web"))
    run(c.sync("default/web"))  # the slice cache does not have our slice yet
    assert len(client.writes) == 1  # no duplicate slice
    assert "default/web" in c.parked
    c.queue._queue.clear()
    c.queue._dirty.clear()
    created = client.writes[0][3]
    put(c.slices, created, rev=int(created.metadata.resourceVersion))  # the echo wakes it up
    assert list(c.queue._queue) == ["default/web"]
    run(c.sync("default/web"))
    assert len(client.writes) == 1 and not c.parked


def test_pod_readiness_change_enqueues_and_updates_one_slice():
    ps = three_pods()
    c, client = make(ps, [service("web")])
    run(c.sync("default/web"))
    created = client.writes[0][3]
    put(c.slices, created, rev=int(created.metadata.resourceVersion))
    client.writes.clear()
    unready = copy(ps[1])
    unready.status.conditions[0].status = "False"
    put(c.pods, unready)
    assert c.queue._queue.count("default/web") == 1
    run(c.sync("default/web"))
    assert [w[:2] for w in client.writes] == [("update", "EndpointSlice")]
    eps = {e.targetRef.name: e.conditions.ready for e in client.writes[0][3].endpoints}
    assert eps == {"web-1": True, "web-2": False, "web-3": True}


def test_pod_changes_no_endpoint_shows_are_ignored():
    ps = three_pods()
    c, _ = make(ps, [service("web")])
    c.queue._queue.clear()
    c.queue._dirty.clear()
    p = copy(ps[0])
    p.status.containerStatuses.add(name="app", restartCount=3)  # not visible in an endpoint
    p.metadata.annotations["note"] = "x"
    put(c.pods, p)
    assert len(c.queue) == 0
    p2 = copy(p)
    p2.metadata.labels["app"] = "other"  # leaves the Service: its old Service must resync
    put(c.pods, p2)
    assert list(c.queue._queue) == ["default/web"]


def test_service_without_selector_loses_managed_slices_but_not_user_slices():
    svc = service("web")
    ours = rec.new_slice(svc, ())
    ours.metadata.name, ours.metadata.uid = "web-abcde", "uid-s1"
    user = rec.new_slice(svc, ())
    user.metadata.name, user.metadata.uid = "web-user", "uid-s2"
    del user.metadata.labels[rec.LABEL_MANAGED_BY]
    selectorless = service("web", selector={})
    c, client = make(three_pods(), [selectorless], [ours, user])
    run(c.sync("default/web"))
    assert client.verbs() == [("delete", "EndpointSlice", "default/web-abcde")]
    assert client.writes[0][3]["precondition_uid"] == "uid-s1"


def test_deleted_service_writes_nothing():
    c, client = make(three_pods(), [])
    run(c.sync("default/web"))
    assert client.writes == []


def test_pods_of_other_namespaces_or_labels_are_not_selected():
    ps = three_pods() + [pod("x", ns="other", node="node-1", ip="10.0.1.1"),
                         pod("y", labels={"app": "db"}, node="node-1", ip="10.0.1.2")]
    c, client = make(ps, [service("web")])
    run(c.sync("default/web"))
    names = sorted(e.targetRef.name for e in client.writes[0][3].endpoints)
    assert names == ["web-1", "web-2", "web-3"]
