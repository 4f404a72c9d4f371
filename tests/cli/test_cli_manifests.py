"""Reading manifests: every documentation manifest decodes; every mistake names where it is."""
from __future__ import annotations

import os

import pytest

from kubemu.cli import manifests

from cli_env import MANIFESTS


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_documentation_manifests_decode():
    items = manifests.load([MANIFESTS])
    kinds = sorted((m.kind.kind, m.obj.metadata.name, os.path.basename(m.source)) for m in items)
    assert kinds == [
        ("Deployment", "my-nginx", "run-my-nginx.yaml"),
        ("EndpointSlice", "my-service-1", "endpointslice.yaml"),
        ("Service", "my-nginx", "nginx-svc.yaml"),
        ("Service", "my-service", "externalname-service.yaml"),
        ("Service", "my-service", "multi-port-service.yaml"),
        ("Service", "my-service", "nodeport-service.yaml"),
        ("Service", "my-service", "service-without-selector.yaml"),
    ]


def test_multi_document_yaml_json_streams_and_lists(tmp_path):
    yaml_path = write(tmp_path, "a.yaml", "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"
                                          "---\n---\n# only a comment\n---\nkind: Namespace\nmetadata:\n  name: b\n")
    json_path = write(tmp_path, "b.json", '{"kind": "List", "apiVersion": "v1", "items": ['
                                          '{"kind": "Namespace", "metadata": {"name": "c"}}]}\n'
                                          '{"kind": "Namespace", "metadata": {"name": "d"}}')
    write(tmp_path, "ignored.txt", "not a manifest")
    items = manifests.load([yaml_path, json_path])
    assert [m.obj.metadata.name for m in items] == ["a", "b", "c", "d"]
    assert [m.document for m in items] == [1, 4, 1, 2]
    assert [m.obj.metadata.name for m in manifests.load([str(tmp_path)])] == ["a", "b", "c", "d"]


def test_directory_recursion(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub, "x.yml", "kind: Namespace\nmetadata: {name: x}\n")
    assert manifests.load([str(tmp_path)]) == []
    assert [m.obj.metadata.name for m in manifests.load([str(tmp_path)], recursive=True)] == ["x"]


def test_timestamps_stay_strings(tmp_path):
    path = write(tmp_path, "t.yaml", "kind: Namespace\nmetadata:\n  name: t\n  creationTimestamp: 2024-01-01T00:00:00Z\n")
    assert manifests.load([path])[0].obj.metadata.creationTimestamp == "2024-01-01T00:00:00Z"


@pytest.mark.parametrize("text,message", [
    ("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n    targetPort 80\n",
     "error parsing {path}: error converting YAML to JSON: yaml: line 8: could not find expected ':'"),
    ("kind: Service\nmetadata:\n  name: web\n    labels: {}\n",
     "error parsing {path}: error converting YAML to JSON: yaml: line 4: mapping values are not allowed in this context"),
    ("kind: Service\nmetadata:\n\tname: web\n",
     "error parsing {path}: error converting YAML to JSON: yaml: line 3: found character that cannot start any token"),
    ("kind: Service\nmetadata:\n  name: a\n  name: b\n",
     'error parsing {path}: error converting YAML to JSON: yaml: line 4: mapping key "name" already defined at line 3'),
])
def test_yaml_errors_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path, "web.yaml", text)
    with pytest.raises(manifests.ManifestError) as e:
        manifests.load([path])
    assert str(e.value) == message.format(path=path)


def test_json_errors_name_file_and_line(tmp_path):
    path = write(tmp_path, "web.json", '{"kind": "Namespace",\n "metadata": {"name": "a",}}')
    with pytest.raises(manifests.ManifestError, match=r"error parsing .*web.json: line 2, column 27"):
        manifests.load([path])


@pytest.mark.parametrize("doc,message", [
    ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  portz: []\n",
     'error validating "{path}" (document 2): error validating data: ValidationError(Service.spec): unknown field "portz"'),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - port: eighty\n",
     "error validating \"{path}\" (document 2): error validating data: ValidationError(Service.spec.ports[0].port): "
     "expected integer, got string 'eighty'"),
    ("apiVersion: v1\nkind: Servic\nmetadata: {name: web}\n",
     'resource mapping not found for name: "web" namespace: "" from "{path}": no kind "Servic" is served'),
    ("apiVersion: v2\nkind: Service\nmetadata: {name: web}\n",
     'resource mapping not found for name: "web" namespace: "" from "{path}": no matches for kind "Service" in version "v2"'),
    ("- just\n- a list\n",
     'error validating "{path}" (document 2): expected an object, got list'),
])
def test_schema_errors_name_file_document_and_field(tmp_path, doc, message):
    path = write(tmp_path, "svc.yaml", "kind: Namespace\nmetadata: {name: ok}\n---\n" + doc)
    with pytest.raises(manifests.ManifestError) as e:
        manifests.load([path])
    assert str(e.value).startswith(message.format(path=path))


def test_missing_path(tmp_path):
    with pytest.raises(manifests.ManifestError, match='the path "nope.yaml" does not exist'):
        manifests.load(["nope.yaml"])
