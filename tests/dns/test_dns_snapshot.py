"""The snapshot builder: incremental, copy-on-write, and quiet when nothing changed."""
from __future__ import annotations

from kubemu.dns import snapshot
from kubemu.dns import testing as t


def test_snapshots_are_not_changed_by_later_updates():
    b = snapshot.SnapshotBuilder("cluster.local")
    b.set_namespace("default", True)
    b.set_service("default", "web", t.service("web", cluster_ip="10.96.0.20"))
    s1 = b.build()
    b.set_service("default", "web", None)
    b.set_service("default", "api", t.service("api", cluster_ip="10.96.0.21"))
    s2 = b.build()
    assert set(s1.services) == {("default", "web")}
    assert set(s2.services) == {("default", "api")}
    assert "10.96.0.20" in s1.ptr and "10.96.0.20" not in s2.ptr
    assert s2.generation == s1.generation + 1


def test_no_op_changes_are_reported_as_such():
    b = snapshot.SnapshotBuilder("cluster.local")
    svc = t.service("web", cluster_ip="10.96.0.20")
    assert b.set_service("default", "web", svc)
    svc.metadata.resourceVersion = "99"
    svc.metadata.annotations["x"] = "y"
    assert not b.set_service("default", "web", svc)
    p = t.pod("p", ip="10.244.1.1")
    assert b.set_pod("default/p", p)
    p.status.conditions.add().type = "Ready"   # a probe result: no DNS consequence
    assert not b.set_pod("default/p", p)
    p.status.podIP = "10.244.1.2"
    del p.status.podIPs[:]
    assert b.set_pod("default/p", p)
    assert not b.set_namespace("kube-system", False)


def test_ptr_entries_follow_endpoint_changes():
    b = snapshot.SnapshotBuilder("cluster.local")
    svc = t.service("db", headless=True)
    b.set_service("default", "db", svc, [t.endpoint_slice("db-a", "db", endpoints=["10.244.1.5"])])
    b.set_service("default", "db2", t.service("db2", headless=True),
                  [t.endpoint_slice("db2-a", "db2", endpoints=["10.244.1.5"])])
    s = b.build()
    assert s.ptr["10.244.1.5"] == ("10-244-1-5.db.default.svc.cluster.local.",
                                   "10-244-1-5.db2.default.svc.cluster.local.")
    b.set_service("default", "db", svc, [t.endpoint_slice("db-a", "db", endpoints=["10.244.1.6"])])
    s = b.build()
    assert s.ptr["10.244.1.5"] == ("10-244-1-5.db2.default.svc.cluster.local.",)
    assert s.ptr["10.244.1.6"] == ("10-244-1-6.db.default.svc.cluster.local.",)


def test_namespace_exists_while_anything_refers_to_it():
    b = snapshot.SnapshotBuilder("cluster.local")
    b.set_namespace("team", True)
    b.set_service("team", "s", t.service("s", "team", cluster_ip="10.96.0.5"))
    b.set_namespace("team", False)
    assert "team" in b.build().namespaces
    b.set_service("team", "s", None)
    assert "team" not in b.build().namespaces


def test_finished_pods_have_no_pod_record():
    assert snapshot.pod_ips(t.pod("p", ip="10.244.1.1", phase="Succeeded")) == ()
    assert snapshot.pod_ips(t.pod("p", ip="10.244.1.1")) == ("10.244.1.1",)


def test_external_name_that_is_an_ip_gets_no_record():
    assert snapshot.service_record(t.service("e", type="ExternalName", external_name="1.2.3.4"), ()) is None
