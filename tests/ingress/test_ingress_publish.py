"""What the controller publishes (kubemu.ingress.publish), as pure decisions."""
from __future__ import annotations

from kubemu import objects
from kubemu.ingress import publish
from kubemu.v1 import objects_pb2 as pb


def lb_service(*ips: str) -> pb.Service:
    svc = publish.desired_service(8080, 8443)
    for ip in ips:
        svc.status.loadBalancer.ingress.add().ip = ip
    return svc


def ing(*ips: str) -> pb.Ingress:
    i = objects.new("Ingress", "x", "default")
    for ip in ips:
        i.status.loadBalancer.ingress.add().ip = ip
    return i


def test_desired_objects():
    svc = publish.desired_service(8080, 8443)
    assert svc.spec.type == "LoadBalancer" and not svc.spec.selector
    assert [(p.name, p.port, objects.ios_value(p.targetPort)) for p in svc.spec.ports] == [
        ("http", 80, 8080), ("https", 443, 8443)]
    svc.metadata.uid = "u-1"
    sl = publish.desired_slice(svc, "127.5.255.254", 8080, 8443)
    assert sl.metadata.labels["kubernetes.io/service-name"] == "ingress-kubemu"
    assert sl.metadata.ownerReferences[0].uid == "u-1"
    assert [(p.name, p.port) for p in sl.ports] == [("http", 8080), ("https", 8443)]
    assert list(sl.endpoints[0].addresses) == ["127.5.255.254"] and sl.endpoints[0].conditions.ready
    ic = publish.desired_ingress_class()
    assert ic.spec.controller == "kubemu.io/ingress-controller"


def test_service_updates_keep_node_ports():
    current = publish.desired_service(80, 443)
    for p, n in zip(current.spec.ports, (30001, 30002)):
        p.nodePort = n
    current.spec.externalTrafficPolicy = "Cluster"
    want = publish.desired_service(8080, 443)
    assert not publish.service_differs(current, publish.desired_service(80, 443))
    assert publish.service_differs(current, want)
    updated = publish.update_service(current, want)
    assert [(p.nodePort, objects.ios_value(p.targetPort)) for p in updated.spec.ports] == [(30001, 8080), (30002, 443)]
    assert updated.spec.externalTrafficPolicy == "Cluster"


def test_ingress_status_follows_the_service():
    now = publish.ingress_status(lb_service("127.200.0.5"))
    assert [i.ip for i in now.ingress] == ["127.200.0.5"]
    assert publish.ingress_status(None).ingress == []
    # ours, without the address: write it
    out = publish.status_update(ing(), now, now)
    assert out is not None and [i.ip for i in out.status.loadBalancer.ingress] == ["127.200.0.5"]
    # ours, already right: nothing to write
    assert publish.status_update(ing("127.200.0.5"), now, now) is None
    # ours, the LB lost its address: clear it
    gone = publish.status_update(ing("127.200.0.5"), publish.ingress_status(lb_service()), now)
    assert gone is not None and not gone.status.loadBalancer.ingress
    # not ours: cleared only while it shows our address, never another controller's
    assert publish.status_update(ing("127.200.0.5"), None, now).status.loadBalancer.ingress == []
    assert publish.status_update(ing("10.0.0.1"), None, now) is None
