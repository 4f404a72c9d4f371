"""Secret, Ingress and IngressClass in the API: decoding, defaulting and Kubernetes' validation.

Runs the registry strategies the way the store does (prepare, then validate), without a server.
"""
from __future__ import annotations

import base64
import copy
import os

import pytest
import yaml

from kubemu import objects
from kubemu.apiserver.registry import strategies
from kubemu.objects import DecodeError

STRATEGIES = strategies()
HERE = os.path.join(os.path.dirname(__file__), "manifests")


def manifest(name: str) -> dict:
    with open(os.path.join(HERE, name)) as f:
        return yaml.safe_load(f)


def create(d: dict):
    d = copy.deepcopy(d)
    d.setdefault("metadata", {})
    if objects.KINDS[d["kind"]].namespaced:
        d["metadata"].setdefault("namespace", "default")
    obj = objects.from_dict(d)
    s = STRATEGIES[obj.kind]
    s.prepare_for_create(obj)
    return obj, [str(e) for e in s.validate(obj)]


def update(old, d: dict):
    new = objects.from_dict(d)
    new.metadata.namespace = old.metadata.namespace
    new.metadata.resourceVersion = "7"
    if old.metadata.HasField("generation"):
        new.metadata.generation = old.metadata.generation
    if "status" in new.DESCRIPTOR.fields_by_name:
        new.status.CopyFrom(old.status)
    s = STRATEGIES[new.kind]
    s.prepare_for_update(new, old)
    return new, [str(e) for e in s.validate(new) + s.validate_update(new, old)]


def ing(spec: dict, **meta) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "x", "namespace": "default", **meta}, "spec": spec}


def svc_backend(name="web", number=80, port_name=None) -> dict:
    port = {"name": port_name} if port_name else ({"number": number} if number is not None else {})
    return {"service": {"name": name, "port": port}}


def path(p="/", t="Prefix", backend=None) -> dict:
    out = {"path": p, "backend": backend or svc_backend()}
    if t is not None:
        out["pathType"] = t
    return out


# ------------------------------------------------------------------ Secret


def test_secret_base64_round_trip_and_default_type():
    d = manifest("dotfile-secret.yaml")
    obj, errs = create(d)
    assert errs == []
    assert obj.data[".secret-file"] == b"value-2\r\n\r\n"
    assert obj.type == "Opaque"
    out = objects.to_dict(obj)
    assert out["data"] == d["data"]


def test_secret_string_data_is_write_only():
    obj, errs = create(manifest("basicauth-secret.yaml"))
    assert errs == []
    assert dict(obj.data) == {"username": b"admin", "password": b"t0p-Secret"}
    assert "stringData" not in objects.to_dict(obj)
    # stringData wins over data for the same key
    obj, _ = create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                     "data": {"k": base64.b64encode(b"old").decode()}, "stringData": {"k": "new"}})
    assert obj.data["k"] == b"new"


def test_secret_wrapped_base64_and_bad_base64():
    text = base64.b64encode(b"x" * 100).decode()
    wrapped = "\n".join(text[i:i + 40] for i in range(0, len(text), 40)) + "\n"
    obj, errs = create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": wrapped}})
    assert errs == [] and obj.data["k"] == b"x" * 100
    with pytest.raises(DecodeError) as e:
        objects.from_dict({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                           "data": {"k": "not base64!"}})
    assert e.value.field == "data.k"


def test_tls_secret_requires_cert_and_key():
    _, errs = create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"},
                      "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA=="}})
    assert errs == ["data[tls.key]: Required value"]
    _, errs = create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"},
                      "type": "kubernetes.io/tls", "stringData": {"tls.crt": "c", "tls.key": "k"}})
    assert errs == []


def test_secret_key_names_and_typed_secrets():
    _, errs = create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                      "stringData": {"bad key": "v", "..": "v"}})
    assert errs == [
        'data[..]: Invalid value: "..": must not be \'..\'',
        "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric "
        "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for "
        "validation is '[-._a-zA-Z0-9]+')"]
    _, errs = create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                      "type": "kubernetes.io/basic-auth"})
    assert errs == ["data[%s][username]: Required value", "data[%s][password]: Required value"]
    _, errs = create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                      "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{"}})
    assert len(errs) == 1 and errs[0].startswith('data[.dockerconfigjson]: Invalid value: "<secret contents redacted>"')


def test_secret_update_rules():
    old, _ = create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                     "stringData": {"k": "v"}, "immutable": True})
    base = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    _, errs = update(old, {**base, "type": "kubernetes.io/tls", "immutable": True,
                           "stringData": {"k": "v", "tls.crt": "c", "tls.key": "k"}})
    assert "type: Invalid value: \"kubernetes.io/tls\": field is immutable" in errs
    assert "data: Forbidden: field is immutable when `immutable` is set" in errs
    _, errs = update(old, {**base, "stringData": {"k": "v"}})
    assert errs == ["immutable: Forbidden: field is immutable when `immutable` is set"]
    _, errs = update(old, {**base, "stringData": {"k": "v"}, "immutable": True})
    assert errs == []


# ------------------------------------------------------------------ Ingress


@pytest.mark.parametrize("name", ["simple-fanout-example.yaml", "name-virtual-host-ingress.yaml",
                                  "tls-example-ingress.yaml", "ingress-wildcard-host.yaml",
                                  "ingress-resource-backend.yaml"])
def test_docs_ingresses_are_valid_and_read_back_unchanged(name):
    d = manifest(name)
    obj, errs = create(d)
    assert errs == []
    assert obj.metadata.generation == 1
    out = objects.to_dict(obj)
    assert out["spec"] == d["spec"]


def test_ingress_status_is_reset_on_create_and_kept_on_update():
    d = manifest("simple-fanout-example.yaml")
    d["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
    obj, _ = create(d)
    assert not obj.HasField("status") or not obj.status.loadBalancer.ingress
    obj.status.loadBalancer.ingress.add().ip = "127.200.0.1"
    new, errs = update(obj, manifest("simple-fanout-example.yaml"))
    assert errs == [] and new.status.loadBalancer.ingress[0].ip == "127.200.0.1"
    assert new.metadata.generation == 1
    changed = manifest("simple-fanout-example.yaml")
    changed["spec"]["rules"][0]["host"] = "other.bar.com"
    new, errs = update(obj, changed)
    assert errs == [] and new.metadata.generation == 2


def test_ingress_needs_rules_or_default_backend():
    _, errs = create(ing({}))
    assert errs == ["spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` "
                    "must be specified"]
    _, errs = create(ing({"defaultBackend": svc_backend()}))
    assert errs == []


def test_ingress_hosts():
    def host_errs(host):
        return create(ing({"rules": [{"host": host, "http": {"paths": [path()]}}]}))[1]
    assert host_errs("foo.bar.com") == []
    assert host_errs("*.bar.com") == []
    wildcard_rule = ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
                     "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
                     "alphanumeric character (e.g. '*.example.com', regex used for validation is "
                     "'\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    for bad in ("*.*.bar.com", "*.foo.*.com", "*bar.com", "f*.bar.com", "*"):
        assert host_errs(bad) == [f'spec.rules[0].host: Invalid value: "{bad}": {wildcard_rule}'], bad
    assert host_errs("1.2.3.4") == ['spec.rules[0].host: Invalid value: "1.2.3.4": must be a DNS name, '
                                    'not an IP address']
    assert host_errs("Foo.com")[0].startswith('spec.rules[0].host: Invalid value: "Foo.com": a lowercase RFC 1123 subdomain')


def test_ingress_paths():
    def path_errs(*paths):
        return create(ing({"rules": [{"http": {"paths": list(paths)}}]}))[1]
    assert path_errs(path("/a", "Exact"), path("/b", "Prefix"), path("", "ImplementationSpecific"),
                     path("/x(/|$)(.*)", "ImplementationSpecific")) == []
    assert path_errs(path("/a", None)) == ["spec.rules[0].http.paths[0].pathType: Required value: "
                                           "pathType must be specified"]
    assert path_errs(path("/a", "Regex")) == ['spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": '
                                              'supported values: "Exact", "ImplementationSpecific", "Prefix"']
    assert path_errs(path("a", "Prefix")) == ['spec.rules[0].http.paths[0].path: Invalid value: "a": '
                                              'must be an absolute path']
    assert path_errs(path("", "Exact")) == ['spec.rules[0].http.paths[0].path: Invalid value: "": '
                                            'must be an absolute path']
    assert path_errs(path("/a//b", "Prefix")) == ["spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": "
                                                  "must not contain '//'"]
    assert path_errs(path("/a/..", "Exact")) == ["spec.rules[0].http.paths[0].path: Invalid value: \"/a/..\": "
                                                 "cannot end with '/..'"]
    assert path_errs(path("a", "ImplementationSpecific")) == [
        'spec.rules[0].http.paths[0].path: Invalid value: "a": must be an absolute path']
    assert create(ing({"rules": [{"http": {"paths": []}}]}))[1] == ["spec.rules[0].http.paths: Required value"]


def test_ingress_backends():
    def backend_errs(b):
        return create(ing({"defaultBackend": b}))[1]
    assert backend_errs(svc_backend(port_name="http")) == []
    assert backend_errs({}) == ['spec.defaultBackend: Invalid value: "": resource or service backend is required']
    assert backend_errs({**svc_backend(), "resource": {"kind": "Bucket", "name": "b"}}) == [
        'spec.defaultBackend: Invalid value: "": cannot set both resource and service backends']
    assert backend_errs({"service": {"name": "web", "port": {"name": "http", "number": 80}}}) == [
        'spec.defaultBackend: Invalid value: "": cannot set both port name & port number']
    assert backend_errs(svc_backend(number=None)) == [
        "spec.defaultBackend: Required value: port name or number is required"]
    assert backend_errs(svc_backend(number=70000)) == [
        "spec.defaultBackend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive"]
    assert backend_errs(svc_backend(port_name="HTTP")) == [
        'spec.defaultBackend.service.port.name: Invalid value: "HTTP": must contain only alpha-numeric '
        'characters (a-z, 0-9), and hyphens (-)',
        'spec.defaultBackend.service.port.name: Invalid value: "HTTP": must contain at least one letter (a-z)']
    assert backend_errs(svc_backend(name="")) == ["spec.defaultBackend.service.name: Required value"]
    assert backend_errs(svc_backend(name="1web"))[0].startswith(
        'spec.defaultBackend.service.name: Invalid value: "1web": a DNS-1035 label')
    assert backend_errs({"resource": {"kind": "a/b", "name": ".."}}) == [
        "spec.defaultBackend.resource.kind: Invalid value: \"a/b\": may not contain '/'",
        "spec.defaultBackend.resource.name: Invalid value: \"..\": may not be '..'"]


def test_ingress_tls_and_class():
    _, errs = create(ing({"defaultBackend": svc_backend(), "ingressClassName": "Bad_Class",
                          "tls": [{"hosts": ["*.ok.com", "bad_host"], "secretName": "Bad"}]}))
    assert [e.split(":")[0] for e in errs] == ["spec.tls[0].hosts[1]", "spec.tls[0].secretName",
                                               "spec.ingressClassName"]
    _, errs = create(ing({"defaultBackend": svc_backend(), "ingressClassName": "kubemu"},
                         annotations={"kubernetes.io/ingress.class": "nginx"}))
    assert errs == ['annotations.kubernetes.io/ingress.class: Invalid value: "nginx": must match '
                    '`ingressClassName` when both are specified']


def test_ingress_status_update_validates_addresses():
    obj, _ = create(manifest("simple-fanout-example.yaml"))
    new = copy.deepcopy(obj)
    new.metadata.resourceVersion = "3"
    new.status.loadBalancer.ingress.add().ip = "not-an-ip"
    new.status.loadBalancer.ingress.add().hostname = "10.0.0.1"
    s = STRATEGIES["Ingress"]
    errs = [str(e) for e in s.validate_update(new, obj)]
    assert errs == [
        'status.loadBalancer.ingress[0].ip: Invalid value: "not-an-ip": must be a valid IP address, (e.g. 10.9.8.7 '
        'or 2001:db8::ffff)',
        'status.loadBalancer.ingress[1].hostname: Invalid value: "10.0.0.1": must be a DNS name, not an IP address']


# ------------------------------------------------------------------ IngressClass


def test_ingress_class():
    obj, errs = create(manifest("default-ingressclass.yaml"))
    assert errs == [] and obj.metadata.generation == 1
    assert objects.kind_for("ingressclasses").kind == "IngressClass"
    assert objects.kind_for("ing").kind == "Ingress"

    def class_errs(spec):
        return create({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                       "metadata": {"name": "c"}, "spec": spec})[1]
    assert class_errs({}) == ["spec.controller: Required value"]
    assert class_errs({"controller": "nodomain"}) == [
        'spec.controller: Invalid value: "nodomain": must be a domain-prefixed path (such as "acme.io/foo")']
    assert class_errs({"controller": "example.com/" + "x" * 250})[0] == "spec.controller: Too long: may not be more than 250 bytes"
    assert class_errs({"controller": "a.io/c", "parameters": {"kind": "K", "name": "n", "scope": "Namespace"}}) == [
        "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]
    assert class_errs({"controller": "a.io/c", "parameters": {"kind": "K", "name": "n", "scope": "Cluster",
                                                             "namespace": "x"}}) == [
        "spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]
    assert class_errs({"controller": "a.io/c", "parameters": {"kind": "K", "name": "n"}}) == [
        "spec.parameters.scope: Required value"]
    new = manifest("default-ingressclass.yaml")
    new["spec"]["controller"] = "k8s.io/other"
    _, errs = update(obj, new)
    assert errs == ['spec.controller: Invalid value: "k8s.io/other": field is immutable']
