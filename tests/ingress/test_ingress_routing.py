"""Route table: Kubernetes' matching rules for hosts and paths, without sockets.

The path cases are the table of the Kubernetes Ingress documentation ("Examples" under
"Path types"), each as (rules, request path, expected backend or None).
"""
from __future__ import annotations

import pytest

from kubemu import objects
from kubemu.ingress import routing, tls

SERVICES = {}


def svc(name: str, ip: str, *ports, namespace: str = "default", type_: str = "ClusterIP"):
    s = objects.from_dict({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": name, "namespace": namespace},
                           "spec": {"type": type_, "clusterIP": ip,
                                    "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports]}})
    return s


for i, name in enumerate(["a", "b", "c", "d", "e", "def"]):
    SERVICES[f"default/{name}"] = svc(name, f"127.96.0.{i + 10}", ("http", 80), ("admin", 9000))


def backend(name: str, port=80) -> dict:
    return {"service": {"name": name, "port": {"name": port} if isinstance(port, str) else {"number": port}}}


def ingress(name: str, rules: list, *, default: str | None = None, created: str = "2024-01-01T00:00:00Z",
            namespace: str = "default", cls: str | None = None, annotations: dict | None = None, tls_=None):
    spec: dict = {"rules": rules}
    if default:
        spec["defaultBackend"] = backend(default)
    if cls is not None:
        spec["ingressClassName"] = cls
    if tls_ is not None:
        spec["tls"] = tls_
    meta = {"name": name, "namespace": namespace, "creationTimestamp": created}
    if annotations:
        meta["annotations"] = annotations
    return objects.from_dict({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
                              "spec": spec})


def rule(host: str | None, *paths) -> dict:
    r: dict = {"http": {"paths": [{"path": p, "pathType": t, "backend": backend(b)} for t, p, b in paths]}}
    if host:
        r["host"] = host
    return r


def served(table: routing.RouteTable, host: str, path: str) -> str | None:
    b = table.match(host, path)
    return None if b is None else b.service.split("/")[1]


# (path type, rule path, request path, matches?) from the docs' "Examples" table
DOCS_TABLE = [
    ("Prefix", "/", "/", True), ("Prefix", "/", "/anything/at/all", True),
    ("Exact", "/foo", "/foo", True), ("Exact", "/foo", "/bar", False),
    ("Exact", "/foo", "/foo/", False), ("Exact", "/foo/", "/foo", False),
    ("Prefix", "/foo", "/foo", True), ("Prefix", "/foo", "/foo/", True),
    ("Prefix", "/foo/", "/foo", True), ("Prefix", "/foo/", "/foo/", True),
    ("Prefix", "/aaa/bb", "/aaa/bbb", False), ("Prefix", "/aaa/bbb", "/aaa/bbb", True),
    ("Prefix", "/aaa/bbb/", "/aaa/bbb", True), ("Prefix", "/aaa/bbb", "/aaa/bbb/", True),
    ("Prefix", "/aaa/bbb", "/aaa/bbb/ccc", True), ("Prefix", "/aaa/bbb", "/aaa/bbbxyz", False),
    ("Prefix", "/foo", "/foobar", False),
    ("ImplementationSpecific", "/foo", "/foo/bar", True), ("ImplementationSpecific", "/foo", "/foobar", False),
]


@pytest.mark.parametrize("path_type,rule_path,sent,matches", DOCS_TABLE)
def test_docs_path_table(path_type, rule_path, sent, matches):
    table = routing.compile_routes([ingress("i", [rule("foo.com", (path_type, rule_path, "a"))])], SERVICES)
    assert (served(table, "foo.com", sent) == "a") is matches


def test_docs_mixed_examples():
    # "/" and "/aaa" (both Prefix): /aaa/ccc goes to the longer
    t = routing.compile_routes([ingress("i", [rule(None, ("Prefix", "/", "a"), ("Prefix", "/aaa", "b"))])], SERVICES)
    assert served(t, "x", "/aaa/ccc") == "b"
    assert served(t, "x", "/ccc") == "a"
    # Prefix /aaa and Exact /aaa: the exact one wins for /aaa, the prefix for the rest
    t = routing.compile_routes([ingress("i", [rule(None, ("Prefix", "/aaa", "a"), ("Exact", "/aaa", "b"))])], SERVICES)
    assert served(t, "x", "/aaa") == "b"
    assert served(t, "x", "/aaa/x") == "a"
    # Prefix "/foo/" of equal length to an Exact "/foo": both match /foo, Exact wins
    t = routing.compile_routes([ingress("i", [rule(None, ("Prefix", "/foo/", "a"), ("Exact", "/foo", "b"))])], SERVICES)
    assert served(t, "x", "/foo") == "b"


def test_longest_prefix_wins_regardless_of_order():
    paths = [("Prefix", "/", "a"), ("Prefix", "/api/v1/users", "c"), ("Prefix", "/api", "b")]
    for order in (paths, paths[::-1]):
        t = routing.compile_routes([ingress("i", [rule("h.io", *order)])], SERVICES)
        assert served(t, "h.io", "/api/v1/users/7") == "c"
        assert served(t, "h.io", "/api/v1/user") == "b"
        assert served(t, "h.io", "/apis") == "a"


def test_query_and_host_port_are_ignored():
    t = routing.compile_routes([ingress("i", [rule("Foo.Bar.com", ("Exact", "/x", "a"))])], SERVICES)
    assert served(t, "foo.bar.com:8080", "/x") == "a"
    assert served(t, "FOO.bar.com.", "/x") == "a"


def test_wildcard_host_matches_exactly_one_label():
    # the docs' ingress-wildcard-host example
    t = routing.compile_routes([ingress("i", [rule("foo.bar.com", ("Prefix", "/bar", "a")),
                                              rule("*.foo.com", ("Prefix", "/foo", "b"))])], SERVICES)
    assert served(t, "foo.bar.com", "/bar") == "a"
    assert served(t, "bar.foo.com", "/foo") == "b"
    assert served(t, "baz.bar.foo.com", "/foo") is None  # two labels: no match
    assert served(t, "foo.com", "/foo") is None  # zero labels: no match


def test_exact_host_beats_wildcard_and_hostless():
    t = routing.compile_routes([ingress("i", [rule(None, ("Prefix", "/", "c")),
                                              rule("*.foo.com", ("Prefix", "/", "b")),
                                              rule("a.foo.com", ("Prefix", "/", "a"))])], SERVICES)
    assert served(t, "a.foo.com", "/") == "a"
    assert served(t, "z.foo.com", "/") == "b"
    assert served(t, "example.org", "/") == "c"
    assert served(t, "", "/") == "c"


def test_host_rules_do_not_fall_through_to_hostless_rules():
    t = routing.compile_routes([ingress("i", [rule("a.io", ("Prefix", "/app", "a")),
                                              rule(None, ("Prefix", "/", "c"))])], SERVICES)
    assert served(t, "a.io", "/other") is None  # 404: a.io has rules, none match
    assert served(t, "b.io", "/other") == "c"


def test_default_backend_and_404():
    none = routing.compile_routes([ingress("i", [rule("a.io", ("Exact", "/", "a"))])], SERVICES)
    assert none.match("a.io", "/nope") is None
    assert none.match("other", "/") is None
    t = routing.compile_routes([ingress("i", [rule("a.io", ("Exact", "/", "a"))], default="def")], SERVICES)
    assert served(t, "a.io", "/nope") == "def"
    assert served(t, "other", "/") == "def"
    # an Ingress with only a defaultBackend catches everything no rule takes
    only = ingress("only", [], default="e", created="2023-01-01T00:00:00Z")
    t = routing.compile_routes([only, ingress("i", [rule("a.io", ("Exact", "/", "a"))])], SERVICES)
    assert served(t, "a.io", "/") == "a"
    assert served(t, "b.io", "/") == "e"


def test_per_host_default_backend_beats_global_one():
    old = ingress("old", [], default="e", created="2023-01-01T00:00:00Z")
    new = ingress("new", [rule("a.io", ("Exact", "/", "a"))], default="def")
    t = routing.compile_routes([old, new], SERVICES)
    assert served(t, "a.io", "/x") == "def"
    assert served(t, "b.io", "/x") == "e"


def test_oldest_ingress_wins_a_conflict_and_hosts_merge():
    old = ingress("old", [rule("a.io", ("Prefix", "/", "a"))], created="2023-01-01T00:00:00Z")
    new = ingress("new", [rule("a.io", ("Prefix", "/", "b"), ("Prefix", "/extra", "c"))])
    for order in ([old, new], [new, old]):
        t = routing.compile_routes(order, SERVICES)
        assert served(t, "a.io", "/") == "a"
        assert served(t, "a.io", "/extra/1") == "c"


def test_backend_resolution():
    t = routing.compile_routes([ingress("i", [rule("a.io", ("Exact", "/num", "a"), ("Exact", "/missing", "zz"))]),
                                ingress("j", [{"host": "a.io", "http": {"paths": [
                                    {"path": "/named", "pathType": "Exact", "backend": backend("b", "admin")},
                                    {"path": "/badport", "pathType": "Exact", "backend": backend("b", 81)}]}}])],
                               SERVICES)
    assert t.match("a.io", "/num").address == ("127.96.0.10", 80)
    assert t.match("a.io", "/named").address == ("127.96.0.11", 9000)
    missing = t.match("a.io", "/missing")
    assert missing.address is None and "not found" in missing.reason
    assert t.match("a.io", "/badport").address is None
    # services in another namespace do not count
    other = ingress("k", [rule("b.io", ("Exact", "/", "a"))], namespace="other")
    assert routing.compile_routes([other], SERVICES).match("b.io", "/").address is None


def test_resource_backend_is_reported_unsupported():
    ing = objects.from_dict({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                             "metadata": {"name": "r", "namespace": "default"},
                             "spec": {"defaultBackend": {"resource": {"apiGroup": "k8s.example.com",
                                                                      "kind": "StorageBucket", "name": "s"}}}})
    b = routing.compile_routes([ing], SERVICES).match("x", "/")
    assert b is not None and b.address is None and "not supported" in b.reason


def test_which_ingresses_are_ours():
    ours = objects.from_dict({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                              "metadata": {"name": "kubemu", "annotations": {routing.DEFAULT_CLASS_ANNOTATION: "true"}},
                              "spec": {"controller": routing.CONTROLLER}})
    other = objects.from_dict({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                               "metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}})
    names, default = routing.our_classes([ours, other])
    assert names == {"kubemu"} and default
    assert routing.is_ours(ingress("a", [], cls="kubemu"), names, default)
    assert not routing.is_ours(ingress("b", [], cls="nginx"), names, default)
    assert routing.is_ours(ingress("c", []), names, default)  # no class: the default class
    assert not routing.is_ours(ingress("c", []), names, False)
    assert not routing.is_ours(ingress("d", [], annotations={routing.LEGACY_CLASS_ANNOTATION: "nginx"}), names, default)
    assert routing.is_ours(ingress("e", [], annotations={routing.LEGACY_CLASS_ANNOTATION: "kubemu"}), names, False)


def test_tls_table_picks_secret_by_server_name():
    a = ingress("a", [], created="2023-01-01T00:00:00Z",
                tls_=[{"hosts": ["a.io", "*.wild.io"], "secretName": "a-tls"}])
    b = ingress("b", [], tls_=[{"hosts": ["a.io", "b.io"], "secretName": "b-tls"}, {"secretName": "fallback"}])
    t = tls.compile_tls([b, a])
    assert t.secret_for("a.io") == "default/a-tls"  # oldest wins
    assert t.secret_for("B.io") == "default/b-tls"
    assert t.secret_for("x.wild.io") == "default/a-tls"
    assert t.secret_for("y.x.wild.io") == "default/fallback"
    assert t.secret_for(None) == "default/fallback"
    assert t.secrets() == {"default/a-tls", "default/b-tls", "default/fallback"}
