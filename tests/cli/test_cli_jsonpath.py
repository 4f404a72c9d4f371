"""kubectl's JSONPath dialect and custom columns, on plain data."""
from __future__ import annotations

import pytest

from kubemu.cli import jsonpath

SVC = {"kind": "Service", "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "web"}},
       "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "nodePort": 30007}, {"name": "https", "port": 443}]}}
LIST = {"kind": "List", "items": [
    SVC,
    {"kind": "Node", "metadata": {"name": "node-1"},
     "status": {"addresses": [{"type": "InternalIP", "address": "127.10.0.1"},
                              {"type": "Hostname", "address": "node-1"}]}},
]}


@pytest.mark.parametrize("template,data,out", [
    ("{.spec.clusterIP}", SVC, "10.96.0.10"),
    ("{.spec.ports[0].nodePort}", SVC, "30007"),
    ("{.spec.ports[-1].port}", SVC, "443"),
    ("{.spec.ports[*].port}", SVC, "80 443"),
    ("{.spec.ports[0:1].name}", SVC, "http"),
    ("{.items[*].metadata.name}", LIST, "web node-1"),
    ('{range .items[*]}{.metadata.name}{"\\n"}{end}', LIST, "web\nnode-1\n"),
    ('{range .spec.ports[*]}{.name}={.port};{end}', SVC, "http=80;https=443;"),
    ('{.items[1].status.addresses[?(@.type=="InternalIP")].address}', LIST, "127.10.0.1"),
    ("{.spec.ports[?(@.port>100)].name}", SVC, "https"),
    ("{.spec.ports[?(@.nodePort)].name}", SVC, "http"),
    (r"{.metadata.labels.app\.kubernetes\.io/name}", SVC, "web"),
    ("{.metadata.labels['app.kubernetes.io/name']}", SVC, "web"),
    ("{.spec.selector}", SVC, '{"app":"web"}'),
    ("{..nodePort}", SVC, "30007"),
    ("name: {.metadata.name}, missing: {.spec.nope}", SVC, "name: web, missing: "),
    ("{$.kind}", SVC, "Service"),
    ("plain text", SVC, "plain text"),
])
def test_render(template, data, out):
    assert jsonpath.render(template, data) == out


@pytest.mark.parametrize("bad", ["{.a", "{range .items[*]}{.x}", "{end}", "{foo}", "{.a[x]}",
                                 "{.a[?(@.b==1]}"])
def test_parse_errors(bad):
    with pytest.raises(jsonpath.JSONPathError):
        jsonpath.parse(bad)


def test_custom_columns():
    cols = jsonpath.parse_custom_columns("NAME:.metadata.name,PORTS:.spec.ports[*].port,"
                                         "SEL:.spec.selector,IP:{.spec.clusterIP},X:spec.nope")
    assert [h for h, _ in cols] == ["NAME", "PORTS", "SEL", "IP", "X"]
    assert jsonpath.custom_column_cells(cols, SVC) == ["web", "80,443", "map[app:web]", "10.96.0.10", "<none>"]
    with pytest.raises(jsonpath.JSONPathError):
        jsonpath.parse_custom_columns("NAME")
