"""kubemu.publish: the pure parts of publishing a component as a Service's backend."""
from __future__ import annotations

from kubemu import objects
from kubemu import publish


def svc(ports=((("http", 80), 8080),), type_="LoadBalancer"):
    s = objects.new("Service", "web", "kube-system")
    s.metadata.uid = "u1"
    s.spec.type = type_
    for (name, port), target in ports:
        p = s.spec.ports.add()
        p.name, p.protocol, p.port = name, "TCP", port
        p.targetPort.CopyFrom(objects.int_or_string(target))
    return s


def test_own_slice_points_at_the_listener_and_is_owned_by_the_service():
    sl = publish.own_slice(svc(), name="web-self", manager="me", address="127.5.0.9",
                           ports=[("http", "TCP", 8080, "http")], labels={"a": "b"})
    assert sl.metadata.labels == {"a": "b", publish.SERVICE_NAME_LABEL: "web", publish.MANAGED_BY_LABEL: "me"}
    assert [(r.kind, r.name, r.uid, r.controller) for r in sl.metadata.ownerReferences] == [("Service", "web", "u1", True)]
    assert [list(e.addresses) for e in sl.endpoints] == [["127.5.0.9"]] and sl.endpoints[0].conditions.ready
    assert [(p.name, p.port, p.appProtocol) for p in sl.ports] == [("http", 8080, "http")]
    assert sl.addressType == "IPv4"


def test_slice_differences_and_update():
    want = publish.own_slice(svc(), name="s", manager="me", address="127.5.0.9", ports=[("http", "TCP", 8080, "")])
    live = objects.new("EndpointSlice", "s", "kube-system")
    live.CopyFrom(want)
    live.metadata.labels["extra"] = "kept"
    assert not publish.slice_differs(live, want)
    moved = publish.own_slice(svc(), name="s", manager="me", address="127.5.0.10", ports=[("http", "TCP", 8081, "")])
    assert publish.slice_differs(live, moved)
    updated = publish.update_slice(live, moved)
    assert updated.endpoints[0].addresses == ["127.5.0.10"] and updated.ports[0].port == 8081
    assert updated.metadata.labels["extra"] == "kept"


def test_service_update_keeps_allocated_node_ports_and_cluster_ip():
    live = svc(ports=((("http", 80), 8080), (("https", 443), 8443)))
    live.spec.clusterIP = "127.96.0.20"
    for p, n in zip(live.spec.ports, (30001, 30002)):
        p.nodePort = n
    want = svc(ports=((("http", 80), 9090), (("https", 443), 8443)))
    assert publish.service_differs(live, want)
    live.spec.selector["app"] = "x"
    out = publish.update_service(live, want)
    assert [(p.nodePort, objects.ios_value(p.targetPort)) for p in out.spec.ports] == [(30001, 9090), (30002, 8443)]
    assert out.spec.clusterIP == "127.96.0.20" and not out.spec.selector
    assert not publish.service_differs(out, want)
