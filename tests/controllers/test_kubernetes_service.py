"""The default/kubernetes Service and EndpointSlice."""
from __future__ import annotations

from kubemu import objects

from kubemu.controllers import kubernetes_service as ks
from kubemu.controllers.base import copy

from ctrl_helpers import FakeClient, informer, run


def make(services=(), slices=()):
    client = FakeClient()
    c = ks.KubernetesServiceController(client, services=informer("Service", *services),
                                       slices=informer("EndpointSlice", *slices),
                                       service_cidr="127.96.0.0/16", apiserver_endpoint="127.0.0.1:6443")
    return c, client


def test_creates_service_and_slice_like_kubernetes():
    c, client = make()
    run(c.sync(ks.KEY))
    assert client.verbs() == [("create", "Service", "default/kubernetes"),
                              ("create", "EndpointSlice", "default/kubernetes")]
    svc, s = client.writes[0][3], client.writes[1][3]
    assert svc.spec.clusterIP == "127.96.0.1" and not svc.spec.selector
    assert objects.to_dict(svc)["spec"]["ports"] == [{"name": "https", "protocol": "TCP", "port": 443,
                                                      "targetPort": 6443}]
    assert dict(s.metadata.labels) == {"kubernetes.io/service-name": "kubernetes"}
    assert objects.to_dict(s)["endpoints"] == [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]
    assert objects.to_dict(s)["ports"] == [{"name": "https", "protocol": "TCP", "port": 6443}]


def test_in_sync_writes_nothing_and_drift_is_corrected():
    svc = ks.desired_service("127.96.0.1", 6443)
    svc.spec.ipFamilies.append("IPv4")  # defaulted by the API server: not ours to touch
    s = ks.desired_slice("127.0.0.1", 6443)
    c, client = make([svc], [s])
    run(c.sync(ks.KEY))
    assert client.writes == []
    drifted = copy(svc)
    drifted.spec.ports[0].port = 8443
    moved = copy(s)
    moved.endpoints[0].addresses[0] = "127.0.0.9"
    c, client = make([drifted], [moved])
    run(c.sync(ks.KEY))
    assert client.verbs() == [("update", "Service", "default/kubernetes"),
                              ("update", "EndpointSlice", "default/kubernetes")]
    assert client.writes[0][3].spec.ports[0].port == 443 and list(client.writes[0][3].spec.ipFamilies) == ["IPv4"]
    assert client.writes[1][3].endpoints[0].addresses[0] == "127.0.0.1"


def test_first_ip_and_endpoint_parsing():
    assert ks.first_ip("127.20.96.0/20") == "127.20.96.1"
    assert ks.split_endpoint("localhost:6443") == ("127.0.0.1", 6443)
