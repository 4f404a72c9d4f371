"""Defaults and validation for every kind but Service, with Kubernetes' messages."""
from __future__ import annotations

import copy

import pytest

from kubemu import objects
from kubemu.apiserver.registry import strategies
from kubemu.apiserver.registry.base import Strategy

STRATEGIES = strategies()

SUBDOMAIN_RULE = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                  "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                  "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_RULE = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
              "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
              "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def doc(kind: str, name: str = "x", body: dict | None = None, **meta) -> dict:
    k = objects.KINDS[kind]
    metadata = {"name": name, **meta}
    if k.namespaced:
        metadata.setdefault("namespace", "default")
    return {"apiVersion": k.api_version, "kind": kind, "metadata": metadata, **(body or {})}


def create(d: dict):
    """The store's create path, without allocation; returns (object, error strings)."""
    obj = objects.from_dict(d)
    s = STRATEGIES[obj.kind]
    s.prepare_for_create(obj)
    return obj, [str(e) for e in s.validate(obj)]


def created(d: dict):
    obj, errs = create(d)
    assert errs == []
    return obj


def update(old, d: dict):
    """The store's update path: status and server-owned metadata come from the stored object."""
    new = objects.from_dict(d)
    for f in ("namespace", "uid", "generation"):
        if old.metadata.HasField(f):
            setattr(new.metadata, f, getattr(old.metadata, f))
        else:
            new.metadata.ClearField(f)
    if "status" in new.DESCRIPTOR.fields_by_name:
        if old.HasField("status"):
            new.status.CopyFrom(old.status)
        else:
            new.ClearField("status")
    s = STRATEGIES[new.kind]
    s.prepare_for_update(new, old)
    return new, [str(e) for e in s.validate(new) + s.validate_update(new, old)]


def update_status(old, status: dict):
    new = copy.deepcopy(old)
    new.ClearField("status")
    objects.fill(new.status, status)
    s = STRATEGIES[new.kind]
    s.prepare_for_update(new, old)
    return new, [str(e) for e in s.validate(new) + s.validate_update(new, old)]


def test_every_kind_has_a_strategy():
    assert set(STRATEGIES) == set(objects.KINDS)
    assert all(isinstance(s, Strategy) for s in STRATEGIES.values())
    assert all(s.kind == kind for kind, s in STRATEGIES.items())


# ------------------------------------------------------------------ ObjectMeta

POD_BODY = {"spec": {"containers": [{"name": "app", "image": "echo"}]}}

META_CASES = [
    ("name-required", doc("Pod", "", POD_BODY),
     ["metadata.name: Required value: name or generateName is required"]),
    ("pod-name-subdomain", doc("Pod", "Web_1", POD_BODY),
     ['metadata.name: Invalid value: "Web_1": ' + SUBDOMAIN_RULE]),
    ("pod-name-dots-ok", doc("Pod", "web.v1", POD_BODY), []),
    ("namespace-name", doc("Namespace", "my.ns"),
     ['metadata.name: Invalid value: "my.ns": must not contain dots']),
    ("namespace-of-object", doc("Pod", "p", POD_BODY, namespace="Team_A"),
     ['metadata.namespace: Invalid value: "Team_A": ' + LABEL_RULE]),
    ("cluster-scoped-with-namespace", doc("Node", "n", namespace="default"),
     ["metadata.namespace: Forbidden: not allowed on this type"]),
    ("generate-name", doc("Pod", "p", POD_BODY, generateName="Web-"),
     ['metadata.generateName: Invalid value: "Web-": ' + SUBDOMAIN_RULE]),
    ("label-key", doc("Pod", "p", POD_BODY, labels={"-app": "web"}),
     ["metadata.labels: Invalid value: \"-app\": name part must consist of alphanumeric characters, '-', '_' or "
      "'.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
      "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]),
    ("label-key-prefix", doc("Pod", "p", POD_BODY, labels={"/app": "web"}),
     ['metadata.labels: Invalid value: "/app": prefix part must be non-empty']),
    ("label-value-too-long", doc("Pod", "p", POD_BODY, labels={"app": "a" * 64}),
     [f'metadata.labels: Invalid value: "{"a" * 64}": must be no more than 63 characters']),
    ("annotations-too-big", doc("Pod", "p", POD_BODY, annotations={"big": "x" * (256 * 1024)}),
     ["metadata.annotations: Too long: may not be more than 262144 bytes"]),
    ("owner-reference", doc("Pod", "p", POD_BODY, ownerReferences=[{"kind": "ReplicaSet", "name": "rs"}]),
     ['metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty',
      'metadata.ownerReferences.uid: Invalid value: "": must not be empty']),
    ("two-controllers", doc("Pod", "p", POD_BODY, ownerReferences=[
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": True},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": True}]),
     ['metadata.ownerReferences: Invalid value: []v1.OwnerReference{v1.OwnerReference{APIVersion:"apps/v1", '
      'Kind:"ReplicaSet", Name:"a", UID:"1", Controller:(*bool)(true), BlockOwnerDeletion:(*bool)(nil)}, '
      'v1.OwnerReference{APIVersion:"apps/v1", Kind:"ReplicaSet", Name:"b", UID:"2", Controller:(*bool)(true), '
      'BlockOwnerDeletion:(*bool)(nil)}}: Only one reference can have Controller set to true. Found "true" in '
      "references for ReplicaSet/a and ReplicaSet/b"]),
    ("finalizer-name", doc("Pod", "p", POD_BODY, finalizers=["cleanup"]),
     ['metadata.finalizers[0]: Invalid value: "cleanup": name is neither a standard finalizer name nor is it '
      "fully qualified"]),
    ("finalizers-ok", doc("Pod", "p", POD_BODY, finalizers=["example.com/cleanup", "foregroundDeletion"]), []),
]


@pytest.mark.parametrize("d,expected", [c[1:] for c in META_CASES], ids=[c[0] for c in META_CASES])
def test_object_meta(d, expected):
    assert create(d)[1] == expected


def test_name_is_immutable():
    old = created(doc("Lease", "a", {"spec": {}}))
    _, errs = update(old, doc("Lease", "b", {"spec": {}}))
    assert errs == ['metadata.name: Invalid value: "b": field is immutable']


# ------------------------------------------------------------------ Namespace, Node, Lease


def test_namespace_defaults():
    ns = created(doc("Namespace", "team-a"))
    assert dict(ns.metadata.labels) == {"kubernetes.io/metadata.name": "team-a"}
    assert list(ns.spec.finalizers) == ["kubernetes"]
    assert ns.status.phase == "Active"
    again, errs = update(ns, doc("Namespace", "team-a"))
    assert errs == [] and again == ns


def test_namespace_status_phase():
    ns = created(doc("Namespace", "team-a"))
    _, errs = update_status(ns, {"phase": "Terminating"})
    assert errs == ['status.Phase: Invalid value: "Terminating": may only be \'Active\' if `deletionTimestamp` is empty']


def test_node_taints():
    _, errs = create(doc("Node", "node-1", {"spec": {"taints": [
        {"key": "a", "effect": "Sometimes"}, {"key": "b", "effect": "NoSchedule"},
        {"key": "b", "value": "x", "effect": "NoSchedule"}]}}))
    assert errs == [
        'metadata.taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", '
        '"PreferNoSchedule", "NoExecute"',
        'metadata.taints[2]: Duplicate value: core.Taint{Key:"b", Value:"x", Effect:"NoSchedule", TimeAdded:<nil>}: '
        "taints must be unique by key and effect pair"]


def test_node_pod_cidr_is_set_once():
    node = created(doc("Node", "node-1", {"spec": {"podCIDR": "127.244.1.0/24"}}))
    assert list(node.spec.podCIDRs) == ["127.244.1.0/24"]
    _, errs = update(node, doc("Node", "node-1", {"spec": {"podCIDR": "127.244.2.0/24"}}))
    assert errs == ['spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid']
    fresh = created(doc("Node", "node-2"))
    assigned, errs = update(fresh, doc("Node", "node-2", {"spec": {"podCIDRs": ["127.244.2.0/24"]}}))
    assert errs == [] and assigned.spec.podCIDR == "127.244.2.0/24"


def test_node_pod_cidr_format_and_status_addresses():
    _, errs = create(doc("Node", "node-1", {"spec": {"podCIDRs": ["127.244.1.0/40"]}}))
    assert errs == ['spec.podCIDRs[0]: Invalid value: "127.244.1.0/40": must be a valid CIDR value, '
                    "(e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    node = created(doc("Node", "node-1"))
    _, errs = update_status(node, {"addresses": [{"type": "InternalIP", "address": "127.10.0.1"},
                                                 {"type": "InternalIP", "address": "127.10.0.1"}]})
    assert errs == ['status.addresses[1]: Duplicate value: core.NodeAddress{Type:"InternalIP", Address:"127.10.0.1"}']


def test_node_allocatable_defaults_to_capacity():
    node = created(doc("Node", "node-1", {"status": {"capacity": {"cpu": "4", "pods": "110"}}}))
    assert dict(node.status.allocatable) == {"cpu": "4", "pods": "110"}


def test_lease_spec():
    _, errs = create(doc("Lease", "node-1", {"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}))
    assert errs == ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                    "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"]
    assert create(doc("Lease", "node-1", {"spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}))[1] == []


# ------------------------------------------------------------------ Pod


def pod(spec: dict, name: str = "web", **meta) -> dict:
    return doc("Pod", name, {"spec": spec}, **meta)


def test_pod_defaults():
    p = created(pod({"containers": [
        {"name": "app", "image": "nginx", "ports": [{"containerPort": 80}],
         "readinessProbe": {"httpGet": {"port": 80}}},
        {"name": "side", "image": "busybox:1.36"}]}))
    spec = p.spec
    assert (spec.restartPolicy, spec.dnsPolicy, spec.terminationGracePeriodSeconds, spec.schedulerName) == (
        "Always", "ClusterFirst", 30, "default-scheduler")
    assert spec.enableServiceLinks is True
    app, side = spec.containers
    assert (app.imagePullPolicy, side.imagePullPolicy) == ("Always", "IfNotPresent")
    assert (app.terminationMessagePath, app.terminationMessagePolicy) == ("/dev/termination-log", "File")
    assert app.ports[0].protocol == "TCP"
    probe = app.readinessProbe
    assert (probe.timeoutSeconds, probe.periodSeconds, probe.successThreshold, probe.failureThreshold) == (1, 10, 1, 3)
    assert (probe.httpGet.path, probe.httpGet.scheme) == ("/", "HTTP")
    assert p.status.phase == "Pending" and p.status.qosClass == "BestEffort"
    assert p.metadata.generation == 1


@pytest.mark.parametrize("resources,qos", [
    ({}, "BestEffort"),
    ({"requests": {"cpu": "100m"}}, "Burstable"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, "Burstable"),
    ({"limits": {"cpu": "1000m", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1024Mi"}}, "Guaranteed"),
])
def test_pod_qos_class(resources, qos):
    p = created(pod({"containers": [{"name": "app", "image": "echo", "resources": resources}]}))
    assert p.status.qosClass == qos


POD_CASES = [
    ("containers-required", {"containers": []}, ["spec.containers: Required value"]),
    ("container-name-required", {"containers": [{"image": "echo"}]}, ["spec.containers[0].name: Required value"]),
    ("container-name-label", {"containers": [{"name": "App", "image": "echo"}]},
     ['spec.containers[0].name: Invalid value: "App": ' + LABEL_RULE]),
    ("container-names-unique", {"containers": [{"name": "a", "image": "echo"}, {"name": "a", "image": "echo"}]},
     ['spec.containers[1].name: Duplicate value: "a"']),
    ("image-required", {"containers": [{"name": "a"}]}, ["spec.containers[0].image: Required value"]),
    ("image-whitespace", {"containers": [{"name": "a", "image": " echo"}]},
     ['spec.containers[0].image: Invalid value: " echo": must not have leading or trailing whitespace']),
    ("container-port-required", {"containers": [{"name": "a", "image": "echo", "ports": [{"name": "http"}]}]},
     ["spec.containers[0].ports[0].containerPort: Required value"]),
    ("container-port-range", {"containers": [{"name": "a", "image": "echo", "ports": [{"containerPort": 70000}]}]},
     ["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]),
    ("container-port-name", {"containers": [{"name": "a", "image": "echo", "ports": [
        {"name": "HTTP", "containerPort": 80}]}]},
     ['spec.containers[0].ports[0].name: Invalid value: "HTTP": must contain only alpha-numeric characters '
      "(a-z, 0-9), and hyphens (-)",
      'spec.containers[0].ports[0].name: Invalid value: "HTTP": must contain at least one letter (a-z)']),
    ("container-port-protocol", {"containers": [{"name": "a", "image": "echo", "ports": [
        {"containerPort": 80, "protocol": "ICMP"}]}]},
     ['spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"']),
    ("host-port-conflict", {"containers": [
        {"name": "a", "image": "echo", "ports": [{"containerPort": 80, "hostPort": 8080}]},
        {"name": "b", "image": "echo", "ports": [{"containerPort": 81, "hostPort": 8080}]}]},
     ['spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080"']),
    ("restart-policy", {"restartPolicy": "Sometimes", "containers": [{"name": "a", "image": "echo"}]},
     ['spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"']),
    ("dns-policy", {"dnsPolicy": "Google", "containers": [{"name": "a", "image": "echo"}]},
     ['spec.dnsPolicy: Unsupported value: "Google": supported values: "ClusterFirstWithHostNet", "ClusterFirst", '
      '"Default", "None"']),
    ("probe-two-handlers", {"containers": [{"name": "a", "image": "echo", "livenessProbe": {
        "httpGet": {"port": 80}, "tcpSocket": {"port": 80}}}]},
     ["spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type"]),
    ("probe-no-handler", {"containers": [{"name": "a", "image": "echo", "readinessProbe": {"periodSeconds": 5}}]},
     ["spec.containers[0].readinessProbe: Required value: must specify a handler type"]),
    ("probe-port", {"containers": [{"name": "a", "image": "echo", "readinessProbe": {"tcpSocket": {"port": 0}}}]},
     ["spec.containers[0].readinessProbe.tcpSocket.port: Invalid value: 0: must be between 1 and 65535, inclusive"]),
    ("liveness-success-threshold", {"containers": [{"name": "a", "image": "echo", "livenessProbe": {
        "exec": {"command": ["true"]}, "successThreshold": 2}}]},
     ["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"]),
    ("exec-command", {"containers": [{"name": "a", "image": "echo", "livenessProbe": {"exec": {}}}]},
     ["spec.containers[0].livenessProbe.exec.command: Required value"]),
    ("negative-probe-period", {"containers": [{"name": "a", "image": "echo", "readinessProbe": {
        "tcpSocket": {"port": 80}, "initialDelaySeconds": -1}}]},
     ["spec.containers[0].readinessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0"]),
    ("env-name-required", {"containers": [{"name": "a", "image": "echo", "env": [{"value": "x"}]}]},
     ["spec.containers[0].env[0].name: Required value"]),
    ("env-value-and-source", {"containers": [{"name": "a", "image": "echo", "env": [
        {"name": "N", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]},
     ['spec.containers[0].env[0].valueFrom: Invalid value: "": may not be specified when `value` is not empty']),
    ("env-field-path", {"containers": [{"name": "a", "image": "echo", "env": [
        {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}]}]},
     ['spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.hostname": supported values: '
      '"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", '
      '"status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"']),
    ("toleration-exists-with-value", {"containers": [{"name": "a", "image": "echo"}], "tolerations": [
        {"key": "k", "operator": "Exists", "value": "v"}]},
     ['spec.tolerations[0].operator: Invalid value: core.Toleration{Key:"k", Operator:"Exists", Value:"v", Effect:"", '
      "TolerationSeconds:(*int64)(nil)}: value must be empty when `operator` is 'Exists'"]),
    ("toleration-seconds-effect", {"containers": [{"name": "a", "image": "echo"}], "tolerations": [
        {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]},
     ['spec.tolerations[0].effect: Invalid value: "NoSchedule": effect must be \'NoExecute\' when '
      "`tolerationSeconds` is set"]),
    ("node-name", {"nodeName": "Node_1", "containers": [{"name": "a", "image": "echo"}]},
     ['spec.nodeName: Invalid value: "Node_1": ' + SUBDOMAIN_RULE]),
    ("init-container-name-clash", {"containers": [{"name": "a", "image": "echo"}],
                                   "initContainers": [{"name": "a", "image": "echo"}]},
     ['spec.initContainers[0].name: Duplicate value: "a"']),
]


@pytest.mark.parametrize("spec,expected", [c[1:] for c in POD_CASES], ids=[c[0] for c in POD_CASES])
def test_pod_validation(spec, expected):
    assert create(pod(spec))[1] == expected


POD_SPEC = {"containers": [{"name": "app", "image": "echo:1"}]}


def test_pod_image_update_is_allowed_and_bumps_generation():
    old = created(pod(POD_SPEC))
    new, errs = update(old, pod({"containers": [{"name": "app", "image": "echo:2"}]}))
    assert errs == [] and new.metadata.generation == 2


def test_pod_spec_is_otherwise_immutable():
    old = created(pod(POD_SPEC))
    _, errs = update(old, pod({"containers": [{"name": "app", "image": "echo:1", "ports": [{"containerPort": 80}]}]}))
    assert len(errs) == 1
    assert errs[0].startswith(
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
        "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n")
    assert '"containerPort": 80' in errs[0]


def test_pod_may_not_add_containers():
    old = created(pod(POD_SPEC))
    _, errs = update(old, pod({"containers": [{"name": "app", "image": "echo:1"}, {"name": "b", "image": "x"}]}))
    assert errs == ["spec.containers: Forbidden: pod updates may not add or remove containers"]


def test_pod_binding_sets_node_name_once():
    old = created(pod(POD_SPEC))
    bound, errs = update(old, pod({**POD_SPEC, "nodeName": "node-1"}))
    assert errs == [] and bound.spec.nodeName == "node-1"
    _, errs = update(bound, pod({**POD_SPEC, "nodeName": "node-2"}))
    assert len(errs) == 1 and errs[0].startswith("spec: Forbidden: pod updates may not change fields")


def test_pod_tolerations_may_only_be_added():
    old = created(pod({**POD_SPEC, "tolerations": [{"key": "a", "operator": "Exists"}]}))
    _, errs = update(old, pod({**POD_SPEC, "tolerations": [{"key": "a", "operator": "Exists"},
                                                            {"key": "b", "operator": "Exists"}]}))
    assert errs == []
    _, errs = update(old, pod({**POD_SPEC, "tolerations": [{"key": "b", "operator": "Exists"}]}))
    assert errs == ["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]


def test_pod_status_ips():
    p = created(pod(POD_SPEC))
    new, errs = update_status(p, {"phase": "Running", "podIP": "127.244.1.5", "hostIP": "127.10.0.1"})
    assert errs == []
    assert [i.ip for i in new.status.podIPs] == ["127.244.1.5"] and new.status.hostIPs[0].ip == "127.10.0.1"
    _, errs = update_status(p, {"podIPs": [{"ip": "127.244.1.5"}, {"ip": "127.244.1.6"}]})
    assert errs == ['status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:"127.244.1.5"}, '
                    'core.PodIP{IP:"127.244.1.6"}}: may specify no more than one IP for each IP family']
    _, errs = update_status(p, {"podIPs": [{"ip": "127.244.1.999"}]})
    assert errs == ['status.podIPs[0]: Invalid value: "127.244.1.999": must be a valid IP address, '
                    "(e.g. 10.9.8.7 or 2001:db8::ffff)"]


def test_pod_status_write_keeps_generation():
    p = created(pod(POD_SPEC))
    new, _ = update_status(p, {"phase": "Running"})
    assert new.metadata.generation == 1


# ------------------------------------------------------------------ Deployment, ReplicaSet

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "echo"}]}}


def deployment(spec: dict, name: str = "web") -> dict:
    return doc("Deployment", name, {"spec": spec})


def test_deployment_defaults():
    d = created(deployment({"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}))
    spec = objects.to_dict(d)["spec"]
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["template"]["spec"]["restartPolicy"] == "Always"
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    assert d.metadata.generation == 1 and not d.HasField("status")


def test_recreate_strategy_gets_no_rolling_update_defaults():
    d = created(deployment({"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE,
                            "strategy": {"type": "Recreate"}}))
    assert not d.spec.strategy.HasField("rollingUpdate")


DEPLOYMENT_CASES = [
    ("selector-required", {"template": TEMPLATE},
     ["spec.selector: Required value",
      'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match '
      "template `labels`"]),
    ("selector-mismatch", {"selector": {"matchLabels": {"app": "api"}}, "template": TEMPLATE},
     ['spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does not match '
      "template `labels`"]),
    ("selector-expression-match-ok", {"selector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": ["web", "api"]}]}, "template": TEMPLATE}, []),
    ("empty-selector", {"selector": {}, "template": TEMPLATE},
     ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
      "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]),
    ("selector-operator", {"selector": {"matchExpressions": [{"key": "app", "operator": "Is"}]}, "template": TEMPLATE},
     ['spec.selector.matchExpressions[0].operator: Invalid value: "Is": not a valid selector operator',
      'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), '
      'MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"app", Operator:"Is", '
      'Values:[]string(nil)}}}: invalid label selector']),
    ("replicas", {"replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
     ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]),
    ("restart-policy", {"selector": {"matchLabels": {"app": "web"}}, "template": {
        **TEMPLATE, "spec": {**TEMPLATE["spec"], "restartPolicy": "Never"}}},
     ['spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']),
    ("template-container", {"selector": {"matchLabels": {"app": "web"}}, "template": {
        **TEMPLATE, "spec": {"containers": [{"name": "app"}]}}},
     ["spec.template.spec.containers[0].image: Required value"]),
    ("template-label-path", {"selector": {"matchLabels": {"app": "web"}}, "template": {
        "metadata": {"labels": {"app": "web", "bad key": "x"}}, "spec": TEMPLATE["spec"]}},
     ["spec.template.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' "
      "or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
      "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]),
    ("surge-and-unavailable-zero", {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE,
                                    "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}},
     ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]),
    ("max-unavailable-over-100", {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE,
                                  "strategy": {"rollingUpdate": {"maxUnavailable": "150%"}}},
     ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 150%: must not be greater than 100%"]),
    ("bad-percent", {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE,
                     "strategy": {"rollingUpdate": {"maxSurge": "ten"}}},
     ["spec.strategy.rollingUpdate.maxSurge: Invalid value: ten: a valid percent string must be a numeric string "
      "followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"]),
    ("recreate-with-rolling-update", {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE,
                                      "strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}},
     ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]),
    ("strategy-type", {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE,
                       "strategy": {"type": "BlueGreen"}},
     ['spec.strategy.type: Unsupported value: "BlueGreen": supported values: "Recreate", "RollingUpdate"']),
    ("progress-deadline", {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE,
                           "minReadySeconds": 30, "progressDeadlineSeconds": 30},
     ["spec.progressDeadlineSeconds: Invalid value: 30: must be greater than minReadySeconds"]),
]


@pytest.mark.parametrize("spec,expected", [c[1:] for c in DEPLOYMENT_CASES], ids=[c[0] for c in DEPLOYMENT_CASES])
def test_deployment_validation(spec, expected):
    assert create(deployment(spec))[1] == expected


def test_deployment_selector_is_immutable_and_generation_follows_spec():
    base = {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}
    old = created(deployment(base))
    same, errs = update(old, deployment(base))
    assert errs == [] and same == old
    scaled, errs = update(old, deployment({**base, "replicas": 3}))
    assert errs == [] and scaled.metadata.generation == 2
    _, errs = update(old, deployment({"selector": {"matchLabels": {"app": "web", "v": "2"}},
                                      "template": {**TEMPLATE, "metadata": {"labels": {"app": "web", "v": "2"}}}}))
    assert errs == ['spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", '
                    '"v":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable']


def test_deployment_status_counts():
    d = created(deployment({"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}))
    _, errs = update_status(d, {"replicas": 1, "readyReplicas": 2, "availableReplicas": 1})
    assert errs == ["status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas"]
    _, errs = update_status(d, {"replicas": 2, "readyReplicas": 1, "availableReplicas": 2, "updatedReplicas": 2})
    assert errs == ["status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas"]


def test_replicaset():
    rs = created(doc("ReplicaSet", "web-abc", {"spec": {"selector": {"matchLabels": {"app": "web"}},
                                                        "template": TEMPLATE}}))
    assert rs.spec.replicas == 1 and rs.metadata.generation == 1
    _, errs = create(doc("ReplicaSet", "web-abc", {"spec": {"selector": {"matchLabels": {"app": "x"}},
                                                            "template": TEMPLATE}}))
    assert errs == ['spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: `selector` does '
                    "not match template `labels`"]
    _, errs = update(rs, doc("ReplicaSet", "web-abc", {"spec": {"selector": {"matchLabels": {}},
                                                                "template": TEMPLATE}}))
    assert "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), " \
           "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable" in errs
    _, errs = update_status(rs, {"replicas": 1, "fullyLabeledReplicas": 2})
    assert errs == ["status.fullyLabeledReplicas: Invalid value: 2: cannot be greater than status.replicas"]


# ------------------------------------------------------------------ EndpointSlice


def slice_(address_type: str | None = "IPv4", endpoints: list | None = None, ports: list | None = None) -> dict:
    body: dict = {"endpoints": endpoints or [], "ports": ports or []}
    if address_type is not None:
        body["addressType"] = address_type
    return doc("EndpointSlice", "web-x1", body)


def test_endpointslice_defaults_and_loopback_addresses():
    s = created(slice_(endpoints=[{"addresses": ["127.244.1.5"], "nodeName": "node-1"}], ports=[{"port": 8080}]))
    assert (s.ports[0].name, s.ports[0].protocol) == ("", "TCP")
    assert s.metadata.generation == 1


ENDPOINTSLICE_CASES = [
    ("address-type-required", slice_(None), ["addressType: Required value"]),
    ("address-type", slice_("IPv5"), ['addressType: Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"']),
    ("addresses-required", slice_(endpoints=[{"addresses": []}]),
     ["endpoints[0].addresses: Required value: must contain at least 1 address"]),
    ("ipv4-address", slice_(endpoints=[{"addresses": ["fd00::1"]}]),
     ['endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address']),
    ("ipv6-address", slice_("IPv6", endpoints=[{"addresses": ["10.0.0.1"]}]),
     ['endpoints[0].addresses[0]: Invalid value: "10.0.0.1": must be a valid IPv6 address']),
    ("unspecified-address", slice_(endpoints=[{"addresses": ["0.0.0.0"]}]),
     ['endpoints[0].addresses[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)']),
    ("fqdn", slice_("FQDN", endpoints=[{"addresses": ["example"]}]),
     ['endpoints[0].addresses[0]: Invalid value: "example": should be a domain with at least two segments separated '
      "by dots"]),
    ("too-many-endpoints", slice_(endpoints=[{"addresses": ["127.244.1.1"]}] * 1001),
     ["endpoints: Too many: 1001: must have at most 1000 items"]),
    ("hostname", slice_(endpoints=[{"addresses": ["127.244.1.1"], "hostname": "web.0"}]),
     ['endpoints[0].hostname: Invalid value: "web.0": must not contain dots']),
    ("port-names-unique", slice_(ports=[{"name": "http", "port": 80}, {"name": "http", "port": 81}]),
     ['ports[1].name: Duplicate value: "http"']),
    ("port-protocol", slice_(ports=[{"name": "http", "port": 80, "protocol": "ICMP"}]),
     ['ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"']),
    ("port-number", slice_(ports=[{"port": 0}]), ["ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]),
]


@pytest.mark.parametrize("d,expected", [c[1:] for c in ENDPOINTSLICE_CASES], ids=[c[0] for c in ENDPOINTSLICE_CASES])
def test_endpointslice_validation(d, expected):
    assert create(d)[1] == expected


def test_endpointslice_address_type_is_immutable_and_generation_moves():
    old = created(slice_(endpoints=[{"addresses": ["127.244.1.5"]}]))
    _, errs = update(old, slice_("IPv6"))
    assert errs == ['addressType: Invalid value: "IPv6": field is immutable']
    moved, errs = update(old, slice_(endpoints=[{"addresses": ["127.244.1.6"]}]))
    assert errs == [] and moved.metadata.generation == 2
    same, errs = update(old, slice_(endpoints=[{"addresses": ["127.244.1.5"]}]))
    assert errs == [] and same.metadata.generation == 1


# ------------------------------------------------------------------ Event


def event(body: dict, namespace: str = "default") -> dict:
    return doc("Event", "web.17a", body, namespace=namespace)


def test_event_validation():
    assert create(event({"involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
                         "reason": "Started", "message": "ok", "type": "Normal"}))[1] == []
    assert create(event({"reason": "Started"}))[1] == ["involvedObject: Required value"]
    assert create(event({"involvedObject": {"kind": "Pod", "name": "web", "namespace": "other"}}))[1] == [
        'involvedObject.namespace: Invalid value: "other": does not match event.namespace']
    assert create(event({"involvedObject": {"kind": "Node", "name": "node-1"}}, namespace="team"))[1] == [
        'involvedObject.namespace: Invalid value: "": does not match event.namespace']


def test_series_style_event_requires_reporting_fields():
    _, errs = create(event({"involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
                            "eventTime": "2026-01-01T00:00:00.000000Z"}))
    assert errs == ["reportingComponent: Required value",
                    "reportingComponent: Invalid value: \"\": name part must be non-empty",
                    "reportingComponent: Invalid value: \"\": name part must consist of alphanumeric characters, '-', "
                    "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
                    "or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                    "reportingInstance: Required value", "action: Required value", "reason: Required value"]
