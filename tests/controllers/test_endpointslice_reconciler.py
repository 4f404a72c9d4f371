"""The EndpointSlice reconciler, without I/O: what it plans for a Service, its pods and slices."""
from __future__ import annotations

from kubemu import objects

from kubemu.controllers import endpointslice_reconciler as rec
from kubemu.controllers.base import copy

from ctrl_helpers import node, pod, service

NODES = {f"node-{i}": node(f"node-{i}", labels={rec.LABEL_ZONE: f"zone-{i}"}) for i in range(1, 4)}


def pods(n: int, ready: bool = True, **kw):
    return [pod(f"web-{i:03d}", node=f"node-{1 + i % 3}", ip=f"10.0.{i // 250}.{i % 250 + 1}", ready=ready, **kw)
            for i in range(n)]


def reconcile(svc, ps, existing=(), max_endpoints=100):
    return rec.reconcile(svc, ps, list(existing), get_node=NODES.get, max_endpoints=max_endpoints)


def materialize(plan: rec.Plan, existing=()):
    """Apply a plan as the API server would: the resulting set of slices."""
    out = {s.metadata.name: s for s in existing}
    for s in plan.delete:
        out.pop(s.metadata.name)
    for s in plan.update:
        out[s.metadata.name] = s
    for i, s in enumerate(plan.create):
        s = copy(s)
        s.metadata.name = s.metadata.generateName + f"x{i:04d}"[-5:]
        s.metadata.uid = f"uid-{s.metadata.name}"
        s.metadata.resourceVersion = "7"
        out[s.metadata.name] = s
    return list(out.values())


def test_new_service_gets_one_slice_shaped_like_kubernetes():
    svc = service("web", ports=[{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    ps = pods(3)
    ps[0].spec.hostname, ps[0].spec.subdomain = "web-0", "web"
    plan = reconcile(svc, ps)
    assert not plan.update and not plan.delete and len(plan.create) == 1
    s = plan.create[0]
    assert s.metadata.generateName == "web-" and not s.metadata.name
    assert dict(s.metadata.labels) == {rec.LABEL_SERVICE_NAME: "web", rec.LABEL_MANAGED_BY: rec.CONTROLLER_NAME}
    ref = s.metadata.ownerReferences[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller, ref.blockOwnerDeletion) == \
        ("Service", "web", "uid-svc-web", True, True)
    assert s.addressType == "IPv4"
    assert objects.to_dict(s)["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    ep = objects.to_dict(s.endpoints[0])
    assert ep == {"addresses": ["10.0.0.1"], "conditions": {"ready": True, "serving": True, "terminating": False},
                  "hostname": "web-0",
                  "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-000", "uid": "uid-web-000"},
                  "nodeName": "node-1", "zone": "zone-1"}
    assert "hostname" not in objects.to_dict(s.endpoints[1])


def test_nothing_changed_plans_nothing():
    svc, ps = service("web"), pods(5)
    slices = materialize(reconcile(svc, ps))
    assert reconcile(svc, ps, slices).empty()


def test_readiness_change_rewrites_only_its_slice():
    svc, ps = service("web"), pods(150)
    slices = materialize(reconcile(svc, ps))
    assert sorted(len(s.endpoints) for s in slices) == [50, 100]
    ps[120].status.conditions[0].status = "False"
    plan = reconcile(svc, ps, slices)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    updated = plan.update[0]
    eps = {e.targetRef.name: e for e in updated.endpoints}
    assert eps["web-120"].conditions.ready is False and eps["web-120"].conditions.serving is False
    # the other endpoints keep their order and content
    before = next(s for s in slices if s.metadata.name == updated.metadata.name)
    assert [e.targetRef.name for e in before.endpoints] == [e.targetRef.name for e in updated.endpoints]


def test_250_endpoints_make_three_slices():
    plan = reconcile(service("web"), pods(250))
    assert sorted(len(s.endpoints) for s in plan.create) == [50, 100, 100]
    assert len({e.addresses[0] for s in plan.create for e in s.endpoints}) == 250


def test_new_endpoint_fills_the_closest_fitting_unchanged_slice():
    svc, ps = service("web"), pods(150)
    slices = materialize(reconcile(svc, ps))
    ps.append(pod("web-new", node="node-1", ip="10.9.9.9"))
    plan = reconcile(svc, ps, slices)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert len(plan.update[0].endpoints) == 51


def test_removed_pod_is_dropped_and_empty_slice_deleted():
    svc = service("web")
    slices = materialize(reconcile(svc, pods(101)))
    small = next(s for s in slices if len(s.endpoints) == 1)
    gone = small.endpoints[0].targetRef.name
    plan = reconcile(svc, [p for p in pods(101) if p.metadata.name != gone], slices)
    assert [s.metadata.name for s in plan.delete] == [small.metadata.name]
    assert not plan.create and not plan.update


def test_terminating_pod_is_not_ready_unless_publishing_not_ready():
    p = pod("web-1", node="node-1", ip="10.0.0.1")
    p.metadata.deletionTimestamp = "2026-01-01T00:00:30Z"
    ep = reconcile(service("web"), [p]).create[0].endpoints[0]
    assert (ep.conditions.ready, ep.conditions.serving, ep.conditions.terminating) == (False, True, True)
    ep = reconcile(service("web", publishNotReadyAddresses=True), [p]).create[0].endpoints[0]
    assert ep.conditions.ready is True


def test_not_ready_and_unaddressed_and_finished_pods():
    ps = [pod("a", node="node-1", ip="10.0.0.1", ready=False), pod("b", node="node-1"),
          pod("c", node="node-1", ip="10.0.0.3")]
    ps[2].status.phase = "Failed"
    s = reconcile(service("web"), ps).create[0]
    assert [(e.targetRef.name, e.conditions.ready) for e in s.endpoints] == [("a", False)]


def test_named_target_port_resolving_differently_splits_slices():
    svc = service("web", ports=[{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    a = pod("a", node="node-1", ip="10.0.0.1")
    b = pod("b", node="node-1", ip="10.0.0.2")
    b.spec.containers[0].ports[0].containerPort = 9090
    c = pod("c", node="node-1", ip="10.0.0.3")
    c.spec.containers[0].ports[0].name = "other"  # the name does not resolve: no port at all
    plan = reconcile(svc, [a, b, c])
    got = sorted((tuple(p.port for p in s.ports), tuple(e.targetRef.name for e in s.endpoints)) for s in plan.create)
    assert got == [((), ("c",)), ((8080,), ("a",)), ((9090,), ("b",))]


def test_port_removed_from_service_updates_in_place():
    two = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
           {"name": "metrics", "port": 9100, "targetPort": 9100, "protocol": "TCP"}]
    slices = materialize(reconcile(service("web", ports=two), pods(3)))
    plan = reconcile(service("web", ports=two[:1]), pods(3), slices)
    assert not plan.create and not plan.delete and len(plan.update) == 1
    s = plan.update[0]
    assert s.metadata.name == slices[0].metadata.name and s.metadata.resourceVersion == "7"
    assert [p.name for p in s.ports] == ["http"] and len(s.endpoints) == 3


def test_no_endpoints_keeps_one_placeholder():
    svc = service("web")
    plan = reconcile(svc, [])
    assert len(plan.create) == 1 and not plan.create[0].endpoints and not plan.create[0].ports
    slices = materialize(plan)
    assert reconcile(svc, [], slices).empty()
    # endpoints arriving reuse the placeholder's name instead of delete + create
    plan = reconcile(svc, pods(2), slices)
    assert not plan.create and not plan.delete
    assert [s.metadata.name for s in plan.update] == [slices[0].metadata.name]


def test_slices_of_a_previous_service_incarnation_are_replaced():
    svc = service("web")
    slices = materialize(reconcile(svc, pods(2)))
    reborn = copy(svc)
    reborn.metadata.uid = "uid-new"
    plan = reconcile(reborn, pods(2), slices)
    assert [s.metadata.name for s in plan.delete] == [slices[0].metadata.name]
    assert len(plan.create) == 1 and plan.create[0].metadata.ownerReferences[0].uid == "uid-new"


def test_service_label_change_updates_slice_labels():
    svc = service("web")
    slices = materialize(reconcile(svc, pods(2)))
    svc.metadata.labels["team"] = "a"
    svc.metadata.labels[rec.LABEL_MANAGED_BY] = "someone-else"  # reserved: never copied
    plan = reconcile(svc, pods(2), slices)
    assert len(plan.update) == 1
    assert dict(plan.update[0].metadata.labels) == {"team": "a", rec.LABEL_SERVICE_NAME: "web",
                                                    rec.LABEL_MANAGED_BY: rec.CONTROLLER_NAME}


def test_headless_service_slices_are_labelled_headless():
    s = reconcile(service("web", clusterIP="None"), pods(1)).create[0]
    assert s.metadata.labels[rec.LABEL_HEADLESS] == ""


def test_pod_on_unknown_node_is_skipped_and_reported():
    p = pod("a", node="node-9", ip="10.0.0.1")
    plan = reconcile(service("web"), [p])
    assert plan.missing_nodes == ["node-9"]
    assert len(plan.create) == 1 and not plan.create[0].endpoints
