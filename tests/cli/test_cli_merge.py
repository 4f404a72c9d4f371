"""apply's three-way merge, strategic merge patch and JSON patch, on plain data."""
from __future__ import annotations

import json

import pytest

from kubemu import objects
from kubemu.cli import merge

SVC_DESC = objects.KINDS["Service"].message.DESCRIPTOR
DEPLOY_DESC = objects.KINDS["Deployment"].message.DESCRIPTOR


def live_service(manifest: dict) -> dict:
    """What the API server makes of a Service manifest: defaults and allocations added."""
    live = json.loads(json.dumps(manifest))
    spec = live["spec"]
    spec.update({"clusterIP": "10.96.0.50", "clusterIPs": ["10.96.0.50"], "sessionAffinity": "None"})
    for p in spec["ports"]:
        p.setdefault("protocol", "TCP")
        p.setdefault("targetPort", p["port"])
        if spec.get("type") == "NodePort":
            p.setdefault("nodePort", 31000 + p["port"] % 1000)
    live["metadata"].update({"uid": "u1", "resourceVersion": "7"})
    return live


MANIFEST = {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "old": "x"}},
            "spec": {"type": "NodePort", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}


def test_reapplying_the_same_manifest_changes_nothing():
    live = live_service(merge.with_annotation(MANIFEST))
    desired = merge.three_way(MANIFEST, merge.with_annotation(MANIFEST), live, SVC_DESC)
    assert merge.merge_patch(live, desired) == {}


def test_server_set_fields_survive_and_dropped_fields_go():
    live = live_service(merge.with_annotation(MANIFEST))
    live["metadata"]["labels"]["added-by-someone"] = "y"
    new = json.loads(json.dumps(MANIFEST))
    del new["metadata"]["labels"]["old"]
    new["spec"]["ports"][0]["targetPort"] = 8080
    new["spec"]["ports"] = new["spec"]["ports"][:1]  # drop the dns port
    desired = merge.three_way(MANIFEST, merge.with_annotation(new), live, SVC_DESC)
    assert desired["spec"]["clusterIP"] == "10.96.0.50"
    assert desired["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP",
                                         "targetPort": 8080, "nodePort": 31080}]
    assert desired["metadata"]["labels"] == {"app": "web", "added-by-someone": "y"}
    patch = merge.merge_patch(live, desired)
    assert patch["metadata"]["labels"] == {"old": None}
    assert "clusterIP" not in patch["spec"]
    assert merge.apply_merge_patch(live, patch) == desired


def test_without_last_applied_nothing_is_removed():
    live = live_service(MANIFEST)
    new = json.loads(json.dumps(MANIFEST))
    del new["metadata"]["labels"]["old"]
    desired = merge.three_way({}, new, live, SVC_DESC)
    assert desired["metadata"]["labels"]["old"] == "x"


def test_containers_merge_by_name():
    current = {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "a:1", "imagePullPolicy": "Always"},
        {"name": "sidecar", "image": "s:1"}]}}}}
    original = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}}}
    modified = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}}}}
    desired = merge.three_way(original, modified, current, DEPLOY_DESC)
    assert desired["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "a:2", "imagePullPolicy": "Always"}, {"name": "sidecar", "image": "s:1"}]


def test_applied_configuration_drops_server_fields():
    m = merge.applied_configuration({"kind": "Service", "status": {"x": 1}, "metadata": {
        "name": "a", "uid": "u", "resourceVersion": "1", "creationTimestamp": "t",
        "annotations": {merge.LAST_APPLIED: "{}"}}})
    assert m == {"kind": "Service", "metadata": {"name": "a"}}
    ann = merge.with_annotation(m)["metadata"]["annotations"][merge.LAST_APPLIED]
    assert ann.endswith("\n") and json.loads(ann) == m
    assert merge.last_applied(merge.with_annotation(m)) == m
    assert merge.last_applied({"metadata": {"annotations": {merge.LAST_APPLIED: "not json"}}}) is None


def test_strategic_patch_merges_keyed_lists():
    current = {"spec": {"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080},
                                  {"port": 53, "protocol": "UDP"}], "type": "NodePort"}}
    out = merge.strategic(current, {"spec": {"ports": [{"port": 80, "name": "http"}]}}, SVC_DESC)
    assert out["spec"]["ports"][0] == {"port": 80, "protocol": "TCP", "nodePort": 30080, "name": "http"}
    assert len(out["spec"]["ports"]) == 2
    out = merge.strategic(current, {"spec": {"ports": [{"port": 53, "protocol": "UDP", "$patch": "delete"}],
                                             "type": None}}, SVC_DESC)
    assert out == {"spec": {"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}}
    out = merge.strategic(current, {"spec": {"$patch": "replace", "type": "ClusterIP"}}, SVC_DESC)
    assert out == {"spec": {"type": "ClusterIP"}}


def test_json_patch():
    doc = {"spec": {"ports": [{"port": 80}], "type": "ClusterIP"}}
    out = merge.json_patch(doc, [
        {"op": "replace", "path": "/spec/type", "value": "NodePort"},
        {"op": "add", "path": "/spec/ports/-", "value": {"port": 443}},
        {"op": "add", "path": "/metadata", "value": {"labels": {"a/b": "c"}}},
        {"op": "test", "path": "/metadata/labels/a~1b", "value": "c"},
        {"op": "copy", "from": "/spec/type", "path": "/metadata/labels/type"},
        {"op": "remove", "path": "/spec/ports/0"},
    ])
    assert out == {"spec": {"ports": [{"port": 443}], "type": "NodePort"},
                   "metadata": {"labels": {"a/b": "c", "type": "NodePort"}}}
    assert doc["spec"]["type"] == "ClusterIP"  # the input is not changed
    for bad in ([{"op": "remove", "path": "/nope"}], [{"op": "test", "path": "/spec/type", "value": "x"}],
                {"op": "add"}, [{"op": "frob", "path": "/a"}], [{"op": "add", "path": "spec"}]):
        with pytest.raises(merge.PatchError):
            merge.json_patch(doc, bad)
