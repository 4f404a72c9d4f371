"""Ingress and IngressClass (networking.k8s.io/v1).

Transcribed from pkg/apis/networking/validation (ValidateIngressCreate/Update,
ValidateIngressStatusUpdate, ValidateIngressClass/Update) and the strategies in
pkg/registry/networking/{ingress,ingressclass}: a create starts with an empty status and
generation 1; a spec change bumps the generation; an update keeps the stored status.

Two simplifications, both about objects kubemu can never have stored: Kubernetes relaxes some
rules on update for objects persisted by older API versions (invalid TLS secret names, invalid
rules under wildcard hosts); kubemu has validated strictly from the start, so it has no such
objects and applies the strict rules on update as well. Service names of backends are DNS-1035
labels (the RelaxedServiceNameValidation feature gate is off, its default).
"""
from __future__ import annotations

import re

from kubemu.apiserver import validation as v
from kubemu.apiserver.registry.generic import ObjectStrategy
from kubemu.errors import FieldError, forbidden, invalid, required, too_long
from kubemu.v1 import objects_pb2 as pb

ANNOTATION_INGRESS_CLASS = "kubernetes.io/ingress.class"
MAX_LEN_INGRESS_CLASS_CONTROLLER = 250

EXACT, PREFIX, IMPLEMENTATION_SPECIFIC = "Exact", "Prefix", "ImplementationSpecific"
SUPPORTED_PATH_TYPES = sorted([EXACT, PREFIX, IMPLEMENTATION_SPECIFIC])
INVALID_PATH_SEQUENCES = ["//", "/./", "/../", "%2f", "%2F"]
INVALID_PATH_SUFFIXES = ["/..", "/."]
PARAMETERS_SCOPES = ["Cluster", "Namespace"]

WILDCARD_DNS1123_SUBDOMAIN_FMT = "\\*\\." + v.DNS1123_SUBDOMAIN_FMT
WILDCARD_DNS1123_SUBDOMAIN_ERR = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
    "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
    "alphanumeric character")
_WILDCARD_DNS1123_SUBDOMAIN = re.compile(WILDCARD_DNS1123_SUBDOMAIN_FMT)

HTTP_PATH_FMT = "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+"
_HTTP_PATH = re.compile(HTTP_PATH_FMT)

NO_RULES = v.GoValue("[]networking.IngressRule(nil)")


# ------------------------------------------------------------------ apimachinery helpers


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > v.DNS1123_SUBDOMAIN_MAX:
        errs.append(v.max_len_error(v.DNS1123_SUBDOMAIN_MAX))
    if not _WILDCARD_DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(v.regex_error(WILDCARD_DNS1123_SUBDOMAIN_ERR, WILDCARD_DNS1123_SUBDOMAIN_FMT,
                                  "*.example.com"))
    return errs


def is_path_segment_name(name: str) -> list[str]:
    """content.IsPathSegmentName: a name that can be one segment of a REST path."""
    for illegal in (".", ".."):
        if name == illegal:
            return [f"may not be '{illegal}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def is_domain_prefixed_path(path: str, value: str) -> list[FieldError]:
    """validation.IsDomainPrefixedPath: `acme.io/foo`, a DNS subdomain, '/', an HTTP path."""
    if not value:
        return [required(path)]
    host, sep, rest = value.partition("/")
    if not sep or not host or not rest:
        return [invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    errs = v.validate_each(path, host, v.is_dns1123_subdomain(host))
    if not _HTTP_PATH.fullmatch(rest):
        errs.append(invalid(path, rest, v.regex_error("Invalid path", HTTP_PATH_FMT)))
    return errs


def _host_errors(host: str) -> list[str]:
    if "*" in host:
        return is_wildcard_dns1123_subdomain(host)
    return v.is_dns1123_subdomain(host)


# ------------------------------------------------------------------ Ingress


def validate_ingress_backend(backend: pb.IngressBackend, path: str) -> list[FieldError]:
    has_resource, has_service = backend.HasField("resource"), backend.HasField("service")
    if has_resource and has_service:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if has_resource:
        return validate_typed_local_object_reference(backend.resource, f"{path}.resource")
    if not has_service:
        return [invalid(path, "", "resource or service backend is required")]
    errs: list[FieldError] = []
    svc = backend.service
    if not svc.name:
        errs.append(required(f"{path}.service.name"))
    else:
        errs += v.validate_each(f"{path}.service.name", svc.name, v.name_is_dns1035_label(svc.name))
    port_name, port_number = svc.port.name, svc.port.number
    if port_name and port_number:
        errs.append(invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        errs += v.validate_each(f"{path}.service.port.name", port_name, v.is_valid_port_name(port_name))
    elif port_number:
        errs += v.validate_each(f"{path}.service.port.number", port_number, v.is_valid_port_num(port_number))
    else:
        errs.append(required(path, "port name or number is required"))
    return errs


def validate_http_ingress_path(p: pb.HTTPIngressPath, path: str) -> list[FieldError]:
    if not p.HasField("pathType"):
        return [required(f"{path}.pathType", "pathType must be specified")]
    errs: list[FieldError] = []
    if p.pathType in (EXACT, PREFIX):
        if not p.path.startswith("/"):
            errs.append(invalid(f"{path}.path", p.path, "must be an absolute path"))
        if p.path:
            for seq in INVALID_PATH_SEQUENCES:
                if seq in p.path:
                    errs.append(invalid(f"{path}.path", p.path, f"must not contain '{seq}'"))
            for suffix in INVALID_PATH_SUFFIXES:
                if p.path.endswith(suffix):
                    errs.append(invalid(f"{path}.path", p.path, f"cannot end with '{suffix}'"))
    elif p.pathType == IMPLEMENTATION_SPECIFIC:
        if p.path and not p.path.startswith("/"):
            errs.append(invalid(f"{path}.path", p.path, "must be an absolute path"))
    else:
        errs.append(v.not_supported(f"{path}.pathType", p.pathType, SUPPORTED_PATH_TYPES))
    return errs + validate_ingress_backend(p.backend, f"{path}.backend")


def validate_ingress_rules(rules, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, rule in enumerate(rules):
        rpath = f"{path}[{i}]"
        if rule.host:
            if v.parse_ip(rule.host) is not None:
                errs.append(invalid(f"{rpath}.host", rule.host, "must be a DNS name, not an IP address"))
            errs += v.validate_each(f"{rpath}.host", rule.host, _host_errors(rule.host))
        if rule.HasField("http"):
            hpath = f"{rpath}.http"
            if not rule.http.paths:
                errs.append(required(f"{hpath}.paths"))
            for j, p in enumerate(rule.http.paths):
                errs += validate_http_ingress_path(p, f"{hpath}.paths[{j}]")
    return errs


def validate_ingress_tls(tls, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, t in enumerate(tls):
        for j, host in enumerate(t.hosts):
            errs += v.validate_each(f"{path}[{i}].hosts[{j}]", host, _host_errors(host))
        if t.secretName:
            errs += v.validate_each(f"{path}[{i}].secretName", t.secretName,
                                    v.name_is_dns_subdomain(t.secretName))
    return errs


def validate_ingress_spec(spec: pb.IngressSpec, path: str = "spec") -> list[FieldError]:
    errs: list[FieldError] = []
    if not spec.rules and not spec.HasField("defaultBackend"):
        errs.append(invalid(path, NO_RULES, "either `defaultBackend` or `rules` must be specified"))
    if spec.HasField("defaultBackend"):
        errs += validate_ingress_backend(spec.defaultBackend, f"{path}.defaultBackend")
    errs += validate_ingress_rules(spec.rules, f"{path}.rules")
    errs += validate_ingress_tls(spec.tls, f"{path}.tls")
    if spec.HasField("ingressClassName"):
        errs += v.validate_each(f"{path}.ingressClassName", spec.ingressClassName,
                                v.name_is_dns_subdomain(spec.ingressClassName))
    return errs


def validate_ingress_load_balancer_status(status: pb.IngressLoadBalancerStatus,
                                          old: pb.IngressLoadBalancerStatus,
                                          path: str = "status.loadBalancer") -> list[FieldError]:
    existing = {i.ip for i in old.ingress if i.ip}
    errs: list[FieldError] = []
    for i, ing in enumerate(status.ingress):
        ipath = f"{path}.ingress[{i}]"
        if ing.ip and ing.ip not in existing:
            errs += v.is_valid_ip(f"{ipath}.ip", ing.ip)
        if ing.hostname:
            errs += v.validate_each(f"{ipath}.hostname", ing.hostname, v.is_dns1123_subdomain(ing.hostname))
            if v.parse_ip(ing.hostname) is not None:
                errs.append(invalid(f"{ipath}.hostname", ing.hostname, "must be a DNS name, not an IP address"))
    return errs


class IngressStrategy(ObjectStrategy):
    kind = "Ingress"
    resets_status = True
    generation_fields = ("spec",)

    def validate_spec(self, obj: pb.Ingress) -> list[FieldError]:
        errs = validate_ingress_spec(obj.spec)
        creating = not obj.metadata.resourceVersion  # the store clears it on create only
        annotation = obj.metadata.annotations.get(ANNOTATION_INGRESS_CLASS)
        if creating and annotation is not None and obj.spec.HasField("ingressClassName") \
                and annotation != obj.spec.ingressClassName:
            errs.append(invalid(f"annotations.{ANNOTATION_INGRESS_CLASS}", annotation,
                                "must match `ingressClassName` when both are specified"))
        return errs

    def validate_status_update(self, new: pb.Ingress, old: pb.Ingress) -> list[FieldError]:
        return validate_ingress_load_balancer_status(new.status.loadBalancer, old.status.loadBalancer)


# ------------------------------------------------------------------ IngressClass


def validate_typed_local_object_reference(ref: pb.TypedLocalObjectReference, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if ref.HasField("apiGroup"):
        errs += v.validate_each(f"{path}.apiGroup", ref.apiGroup, v.is_dns1123_subdomain(ref.apiGroup))
    if not ref.kind:
        errs.append(required(f"{path}.kind"))
    else:
        errs += v.validate_each(f"{path}.kind", ref.kind, is_path_segment_name(ref.kind))
    if not ref.name:
        errs.append(required(f"{path}.name"))
    else:
        errs += v.validate_each(f"{path}.name", ref.name, is_path_segment_name(ref.name))
    return errs


def validate_parameters_reference(params: pb.IngressClassParametersReference, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if params.HasField("apiGroup"):
        errs += v.validate_each(f"{path}.apiGroup", params.apiGroup, v.is_dns1123_subdomain(params.apiGroup))
    for field in ("kind", "name"):
        value = getattr(params, field)
        if not value:
            errs.append(required(f"{path}.{field}"))
        else:
            errs += v.validate_each(f"{path}.{field}", value, is_path_segment_name(value))
    if not params.HasField("scope"):
        errs.append(required(f"{path}.scope"))
        return errs
    if params.scope not in PARAMETERS_SCOPES:
        errs.append(v.not_supported(f"{path}.scope", params.scope, PARAMETERS_SCOPES))
    elif params.scope == "Namespace":
        if not params.HasField("namespace"):
            errs.append(required(f"{path}.namespace", "`parameters.scope` is set to 'Namespace'"))
        else:
            errs += v.validate_each(f"{path}.namespace", params.namespace,
                                    v.name_is_dns_label(params.namespace))
    elif params.HasField("namespace"):
        errs.append(forbidden(f"{path}.namespace", "`parameters.scope` is set to 'Cluster'"))
    return errs


def validate_ingress_class_spec(spec: pb.IngressClassSpec, path: str = "spec") -> list[FieldError]:
    errs: list[FieldError] = []
    if not spec.controller:
        errs.append(required(f"{path}.controller"))
    else:
        if len(spec.controller) > MAX_LEN_INGRESS_CLASS_CONTROLLER:
            errs.append(too_long(f"{path}.controller", MAX_LEN_INGRESS_CLASS_CONTROLLER))
        errs += is_domain_prefixed_path(f"{path}.controller", spec.controller)
    if spec.HasField("parameters"):
        errs += validate_parameters_reference(spec.parameters, f"{path}.parameters")
    return errs


class IngressClassStrategy(ObjectStrategy):
    kind = "IngressClass"
    generation_fields = ("spec",)

    def validate_spec(self, obj: pb.IngressClass) -> list[FieldError]:
        return validate_ingress_class_spec(obj.spec)

    def validate_spec_update(self, new: pb.IngressClass, old: pb.IngressClass) -> list[FieldError]:
        return v.validate_immutable(new.spec.controller, old.spec.controller, "spec.controller")
