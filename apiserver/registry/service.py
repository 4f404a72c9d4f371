"""Service: Kubernetes' defaulting, validation and ClusterIP/NodePort allocation.

Transcribed from Kubernetes, function for function, so a rule can be checked against its source:
  - SetDefaults_Service (pkg/apis/core/v1/defaults.go)           -> set_defaults
  - normalizeClusterIPs, patchAllocatedValues (service/storage)   -> normalize_cluster_ips, patch_allocated_values
  - dropTypeDependentFields (service/strategy.go)                  -> drop_type_dependent_fields
  - initIPFamilyFields (service/storage/alloc.go)                  -> init_ip_families + _family_errors
  - ValidateService / ValidateServiceUpdate / ValidateServiceStatusUpdate
    (pkg/apis/core/validation)                                     -> validate_service, validate_service_update, ...
  - allocateCreate / allocateUpdate / releaseAllocatedResources    -> ServiceStrategy.allocate / reallocate / release

One ordering differs from Kubernetes: its registry allocates before it validates, kubemu's
store validates first (nothing is allocated for an invalid object). So a zero
healthCheckNodePort is not "Required" at validation time: it means "allocate one".

kubemu deviations, each deliberate: externalIPs may be loopback addresses (kubemu's whole
address plan is 127.0.0.0/8), and the first address of the Service CIDR is reserved for
`default/kubernetes` (never handed out dynamically). Allocation messages follow the forms given
in DESIGN.md (`spec.clusterIP: Invalid value: "127.96.0.5": provided IP is already allocated`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

from kubemu import objects
from kubemu.apiserver import validation as v
from kubemu.apiserver.allocators import AllocationError, IPAllocator, PortAllocator
from kubemu.apiserver.registry.generic import ObjectStrategy
from kubemu.errors import ApiError, FieldError, Invalid, forbidden, invalid, required
from kubemu.v1 import objects_pb2 as pb

CLUSTER_IP, NODE_PORT, LOAD_BALANCER, EXTERNAL_NAME = "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"
SERVICE_TYPES = [CLUSTER_IP, EXTERNAL_NAME, LOAD_BALANCER, NODE_PORT]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
SESSION_AFFINITIES = ["ClientIP", "None"]
TRAFFIC_POLICIES = ["Cluster", "Local"]
IP_FAMILIES = ["IPv4", "IPv6"]
IP_FAMILY_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
LB_IP_MODES = ["Proxy", "VIP"]
TRAFFIC_DISTRIBUTIONS = ["PreferClose"]
NONE = "None"
DEFAULT_AFFINITY_SECONDS = 10800
MAX_AFFINITY_SECONDS = 86400
ANNOTATION_TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
ANNOTATION_TOPOLOGY_HINTS = "service.kubernetes.io/topology-aware-hints"
ANNOTATION_LB_SOURCE_RANGES = "service.beta.kubernetes.io/load-balancer-source-ranges"


# ------------------------------------------------------------------ predicates (pkg/api/service)


def externally_accessible(spec: pb.ServiceSpec) -> bool:
    return spec.type in (LOAD_BALANCER, NODE_PORT) or (spec.type == CLUSTER_IP and len(spec.externalIPs) > 0)


def needs_health_check(spec: pb.ServiceSpec) -> bool:
    return spec.type == LOAD_BALANCER and spec.externalTrafficPolicy == "Local"


def is_headless(spec: pb.ServiceSpec) -> bool:
    return len(spec.clusterIPs) == 1 and spec.clusterIPs[0] == NONE


def needs_cluster_ip(spec: pb.ServiceSpec) -> bool:
    return spec.type != EXTERNAL_NAME


def needs_node_port(spec: pb.ServiceSpec) -> bool:
    return spec.type in (NODE_PORT, LOAD_BALANCER)


def should_allocate_node_ports(spec: pb.ServiceSpec) -> bool:
    if spec.type == NODE_PORT:
        return True
    if spec.type == LOAD_BALANCER:
        return not spec.HasField("allocateLoadBalancerNodePorts") or spec.allocateLoadBalancerNodePorts
    return False


def node_ports(spec: pb.ServiceSpec) -> list[int]:
    return [p.nodePort for p in spec.ports if p.nodePort]


def _opt(msg: Any, name: str) -> Any:
    """A pointer field as Go sees it: None when unset."""
    return getattr(msg, name) if msg.HasField(name) else None


# ------------------------------------------------------------------ defaulting


def set_defaults(svc: pb.Service) -> None:
    """SetDefaults_Service: what decoding a v1 Service fills in."""
    spec = svc.spec
    if not spec.sessionAffinity:
        spec.sessionAffinity = "None"
    if spec.sessionAffinity == "None":
        spec.ClearField("sessionAffinityConfig")
    if spec.sessionAffinity == "ClientIP":
        cfg = spec.sessionAffinityConfig
        if not (spec.HasField("sessionAffinityConfig") and cfg.HasField("clientIP")
                and cfg.clientIP.HasField("timeoutSeconds")):
            cfg.clientIP.timeoutSeconds = DEFAULT_AFFINITY_SECONDS
    if not spec.type:
        spec.type = CLUSTER_IP
    for p in spec.ports:
        if not p.protocol:
            p.protocol = "TCP"
        tp = p.targetPort
        if not p.HasField("targetPort") or (tp.type == 1 and not tp.strVal) or (tp.type != 1 and tp.intVal == 0):
            p.targetPort.CopyFrom(objects.int_or_string(p.port))
    if externally_accessible(spec) and not spec.externalTrafficPolicy:
        spec.externalTrafficPolicy = "Cluster"
    if not spec.HasField("internalTrafficPolicy") and spec.type in (NODE_PORT, LOAD_BALANCER, CLUSTER_IP):
        spec.internalTrafficPolicy = "Cluster"
    if spec.type == LOAD_BALANCER:
        if not spec.HasField("allocateLoadBalancerNodePorts"):
            spec.allocateLoadBalancerNodePorts = True
        for ing in svc.status.loadBalancer.ingress:
            if ing.ip and not ing.HasField("ipMode"):
                ing.ipMode = "VIP"


def _set_cluster_ips(spec: pb.ServiceSpec, ips: Iterable[str]) -> None:
    del spec.clusterIPs[:]
    spec.clusterIPs.extend(ips)


def normalize_cluster_ips(new: pb.Service, old: pb.Service | None) -> None:
    """Keep clusterIP and clusterIPs in step for clients that only know one of them."""
    n = new.spec
    if old is None:
        if n.clusterIP and not n.clusterIPs:
            n.clusterIPs.append(n.clusterIP)
        return
    o = old.spec
    if o.clusterIPs and not n.clusterIPs and o.clusterIP == n.clusterIP:
        _set_cluster_ips(n, o.clusterIPs)
    if o.clusterIP != n.clusterIP:
        if o.clusterIP and not n.clusterIP:
            if list(o.clusterIPs) == list(n.clusterIPs):
                del n.clusterIPs[:]
        elif list(o.clusterIPs) == list(n.clusterIPs):
            _set_cluster_ips(n, [n.clusterIP])


def patch_allocated_values(new: pb.Service, old: pb.Service) -> None:
    """A client that re-submits its manifest without the values the server allocated keeps
    them (so `kubectl apply` of the same YAML is a no-op)."""
    n, o = new.spec, old.spec
    if needs_cluster_ip(o) and needs_cluster_ip(n):
        if not n.clusterIP:
            n.clusterIP = o.clusterIP
        if not n.clusterIPs and o.clusterIPs:
            _set_cluster_ips(n, o.clusterIPs)
    if needs_node_port(o) and needs_node_port(n):
        used = set(node_ports(o)) & set(node_ports(n))
        by_name: dict[str, int] = {}
        for p in o.ports:
            by_name[p.name] = p.nodePort
        for p in n.ports:
            if not p.nodePort:
                previous = by_name.get(p.name, 0)
                if previous and previous not in used:
                    p.nodePort = previous
    if needs_health_check(o) and needs_health_check(n) and not n.healthCheckNodePort:
        n.healthCheckNodePort = o.healthCheckNodePort


def drop_type_dependent_fields(new: pb.Service, old: pb.Service) -> None:
    """A type change wipes the fields the old type had allocated or defaulted, as long as the
    user did not also change them (then validation reports the conflict)."""
    n, o = new.spec, old.spec
    if needs_cluster_ip(o) and not needs_cluster_ip(n):
        if o.clusterIP == n.clusterIP and list(o.clusterIPs) == list(n.clusterIPs):
            n.ClearField("clusterIP")
            del n.clusterIPs[:]
        if list(o.ipFamilies) == list(n.ipFamilies):
            del n.ipFamilies[:]
        if _opt(o, "ipFamilyPolicy") == _opt(n, "ipFamilyPolicy"):
            n.ClearField("ipFamilyPolicy")
    if needs_node_port(o) and not needs_node_port(n) and set(node_ports(o)) >= set(node_ports(n)):
        for p in n.ports:
            p.ClearField("nodePort")
    if needs_health_check(o) and not needs_health_check(n) and o.healthCheckNodePort == n.healthCheckNodePort:
        n.ClearField("healthCheckNodePort")
    if o.type == LOAD_BALANCER and n.type != LOAD_BALANCER:
        if (n.HasField("allocateLoadBalancerNodePorts") and o.HasField("allocateLoadBalancerNodePorts")
                and o.allocateLoadBalancerNodePorts == n.allocateLoadBalancerNodePorts):
            n.ClearField("allocateLoadBalancerNodePorts")
    if o.type == LOAD_BALANCER and n.type != LOAD_BALANCER and _opt(o, "loadBalancerClass") == _opt(n, "loadBalancerClass"):
        n.ClearField("loadBalancerClass")
    if (o.type in (NODE_PORT, LOAD_BALANCER) and n.type not in (NODE_PORT, LOAD_BALANCER)
            and o.externalTrafficPolicy == n.externalTrafficPolicy):
        n.ClearField("externalTrafficPolicy")
    # Kubernetes clears the load-balancer status of every non-LoadBalancer Service on a spec
    # update; kubemu's store runs this for status updates too, so only a type change clears
    # it, and a status write onto a non-LoadBalancer Service is reported by validation.
    if o.type == LOAD_BALANCER and n.type != LOAD_BALANCER:
        new.status.ClearField("loadBalancer")
        if not new.status.ListFields():
            new.ClearField("status")


# ------------------------------------------------------------------ validation


def _go_service_port_key(protocol: str, port: int) -> v.GoValue:
    return v.GoValue(f'core.ServicePort{{Name:"", Protocol:{v.go_quote(protocol)}, AppProtocol:(*string)(nil), '
                     f'Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}')


def _go_families(families: Iterable[str]) -> v.GoValue:
    return v.go_strings(list(families), "[]core.IPFamily")


def validate_service(svc: pb.Service) -> list[FieldError]:
    """ValidateService, in Kubernetes' order."""
    spec = svc.spec
    errs = v.validate_object_meta(svc.metadata, namespaced=True, name_fn=v.name_is_dns1035_label)
    ann = svc.metadata.annotations
    if (ANNOTATION_TOPOLOGY_MODE in ann and ANNOTATION_TOPOLOGY_HINTS in ann
            and ann[ANNOTATION_TOPOLOGY_MODE] != ann[ANNOTATION_TOPOLOGY_HINTS]):
        errs.append(invalid(f"metadata.annotations[{ANNOTATION_TOPOLOGY_MODE}]", ann[ANNOTATION_TOPOLOGY_MODE],
                            f"must match annotations[{ANNOTATION_TOPOLOGY_HINTS}] when both are specified"))
    headless = is_headless(spec)
    if not spec.ports and not headless and spec.type != EXTERNAL_NAME:
        errs.append(required("spec.ports"))
    if spec.type == LOAD_BALANCER and headless:
        errs.append(invalid("spec.clusterIPs[0]", spec.clusterIPs[0], "may not be set to 'None' for LoadBalancer services"))
    elif spec.type == NODE_PORT and headless:
        errs.append(invalid("spec.clusterIPs[0]", spec.clusterIPs[0], "may not be set to 'None' for NodePort services"))
    elif spec.type == EXTERNAL_NAME:
        if spec.clusterIPs:
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        if spec.ipFamilies:
            errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
        if spec.HasField("ipFamilyPolicy"):
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        cname = spec.externalName.removesuffix(".")
        if cname:
            errs.extend(v.validate_dns1123_subdomain(cname, "spec.externalName"))
        else:
            errs.append(required("spec.externalName"))

    names: set[str] = set()
    for i, port in enumerate(spec.ports):
        errs.extend(_validate_service_port(port, len(spec.ports) > 1, names, f"spec.ports[{i}]"))

    errs.extend(v.validate_labels(dict(spec.selector), "spec.selector"))

    if not spec.sessionAffinity:
        errs.append(required("spec.sessionAffinity"))
    elif spec.sessionAffinity not in SESSION_AFFINITIES:
        errs.append(v.not_supported("spec.sessionAffinity", spec.sessionAffinity, SESSION_AFFINITIES))
    if spec.sessionAffinity == "ClientIP":
        errs.extend(_validate_client_ip_affinity(spec))
    elif spec.sessionAffinity == "None" and spec.HasField("sessionAffinityConfig"):
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))

    errs.extend(validate_cluster_ips_related_fields(svc))

    for i, ip in enumerate(spec.externalIPs):
        path = f"spec.externalIPs[{i}]"
        errs.extend(v.is_valid_ip(path, ip) or v.validate_non_special_ip(ip, path))

    if not spec.type:
        errs.append(required("spec.type"))
    elif spec.type not in SERVICE_TYPES:
        errs.append(v.not_supported("spec.type", spec.type, SERVICE_TYPES))

    if spec.type == CLUSTER_IP:
        for i, port in enumerate(spec.ports):
            if port.nodePort:
                errs.append(forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))

    seen_node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(spec.ports):
        if not port.nodePort:
            continue
        key = (port.protocol, port.nodePort)
        if key in seen_node_ports:
            errs.append(v.duplicate(f"spec.ports[{i}].nodePort", port.nodePort))
        seen_node_ports.add(key)

    seen_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(spec.ports):
        key = (port.protocol, port.port)
        if key in seen_ports:
            errs.append(v.duplicate(f"spec.ports[{i}]", _go_service_port_key(*key)))
        seen_ports.add(key)

    errs.extend(_validate_source_ranges(svc))

    if spec.HasField("allocateLoadBalancerNodePorts") and spec.type != LOAD_BALANCER:
        errs.append(forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    if spec.type == LOAD_BALANCER and not spec.HasField("allocateLoadBalancerNodePorts"):
        errs.append(required("allocateLoadBalancerNodePorts"))  # sic: Kubernetes drops the "spec." here

    errs.extend(validate_load_balancer_class(svc, None))
    errs.extend(_validate_external_traffic_policy(spec))
    if not spec.HasField("internalTrafficPolicy"):
        if spec.type in (NODE_PORT, LOAD_BALANCER, CLUSTER_IP):
            errs.append(required("spec.internalTrafficPolicy"))
    elif spec.internalTrafficPolicy not in TRAFFIC_POLICIES:
        errs.append(v.not_supported("spec.internalTrafficPolicy", spec.internalTrafficPolicy, TRAFFIC_POLICIES))
    if spec.HasField("trafficDistribution") and spec.trafficDistribution not in TRAFFIC_DISTRIBUTIONS:
        errs.append(v.not_supported("spec.trafficDistribution", spec.trafficDistribution, TRAFFIC_DISTRIBUTIONS))
    return errs


def _validate_service_port(port: pb.ServicePort, require_name: bool, names: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if require_name and not port.name:
        errs.append(required(f"{path}.name"))
    elif port.name:
        errs.extend(v.validate_dns1123_label(port.name, f"{path}.name"))
        if port.name in names:
            errs.append(v.duplicate(f"{path}.name", port.name))
        else:
            names.add(port.name)
    errs.extend(v.validate_each(f"{path}.port", port.port, v.is_valid_port_num(port.port)))
    if not port.protocol:
        errs.append(required(f"{path}.protocol"))
    elif port.protocol not in PROTOCOLS:
        errs.append(v.not_supported(f"{path}.protocol", port.protocol, PROTOCOLS))
    errs.extend(v.validate_port_num_or_name(port.targetPort, f"{path}.targetPort"))
    if port.HasField("appProtocol"):
        errs.extend(v.validate_qualified_name(port.appProtocol, f"{path}.appProtocol"))
    return errs


def _validate_client_ip_affinity(spec: pb.ServiceSpec) -> list[FieldError]:
    path = "spec.sessionAffinityConfig"
    detail = "when session affinity type is ClientIP"
    if not spec.HasField("sessionAffinityConfig"):
        return [required(path, detail)]
    cfg = spec.sessionAffinityConfig
    if not cfg.HasField("clientIP"):
        return [required(f"{path}.clientIP", detail)]
    if not cfg.clientIP.HasField("timeoutSeconds"):
        return [required(f"{path}.clientIP.timeoutSeconds", detail)]
    timeout = cfg.clientIP.timeoutSeconds
    if timeout <= 0 or timeout > MAX_AFFINITY_SECONDS:
        return [invalid(f"{path}.clientIP.timeoutSeconds", timeout,
                        f"must be greater than 0 and less than {MAX_AFFINITY_SECONDS}")]
    return []


def _validate_source_ranges(svc: pb.Service) -> list[FieldError]:
    spec = svc.spec
    errs: list[FieldError] = []
    if spec.loadBalancerSourceRanges:
        path = "spec.LoadBalancerSourceRanges"  # sic: Kubernetes capitalizes this path
        if spec.type != LOAD_BALANCER:
            errs.append(forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        for i, value in enumerate(spec.loadBalancerSourceRanges):
            errs.extend(v.is_valid_cidr(f"{path}[{i}]", value.strip()))
    elif ANNOTATION_LB_SOURCE_RANGES in svc.metadata.annotations:
        path = f"metadata.annotations[{ANNOTATION_LB_SOURCE_RANGES}]"
        if spec.type != LOAD_BALANCER:
            errs.append(forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        val = svc.metadata.annotations[ANNOTATION_LB_SOURCE_RANGES].strip()
        if val:
            for value in val.split(","):
                errs.extend(v.is_valid_cidr(path, value.strip()))
    return errs


def validate_load_balancer_class(svc: pb.Service, old: pb.Service | None) -> list[FieldError]:
    spec = svc.spec
    errs: list[FieldError] = []
    if old is not None and old.spec.type == LOAD_BALANCER and spec.type == LOAD_BALANCER:
        if _opt(old.spec, "loadBalancerClass") != _opt(spec, "loadBalancerClass"):
            errs.append(invalid("spec.loadBalancerClass", _opt(spec, "loadBalancerClass"), "may not change once set"))
    if spec.type == LOAD_BALANCER:
        if spec.HasField("loadBalancerClass"):
            errs.extend(v.validate_qualified_name(spec.loadBalancerClass, "spec.loadBalancerClass"))
    elif spec.HasField("loadBalancerClass"):
        errs.append(forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
    return errs


def _validate_external_traffic_policy(spec: pb.ServiceSpec) -> list[FieldError]:
    errs: list[FieldError] = []
    if not externally_accessible(spec):
        if spec.externalTrafficPolicy:
            errs.append(invalid("spec.externalTrafficPolicy", spec.externalTrafficPolicy,
                                "may only be set for externally-accessible services"))
    elif not spec.externalTrafficPolicy:
        errs.append(required("spec.externalTrafficPolicy"))
    elif spec.externalTrafficPolicy not in TRAFFIC_POLICIES:
        errs.append(v.not_supported("spec.externalTrafficPolicy", spec.externalTrafficPolicy, TRAFFIC_POLICIES))
    if not needs_health_check(spec):
        if spec.healthCheckNodePort:
            errs.append(invalid("spec.healthCheckNodePort", spec.healthCheckNodePort,
                                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    elif spec.healthCheckNodePort:
        # Zero is not "Required" here: kubemu validates before it allocates (see module doc).
        errs.extend(v.validate_each("spec.healthCheckNodePort", spec.healthCheckNodePort,
                                    v.is_valid_port_num(spec.healthCheckNodePort)))
    return errs


def validate_cluster_ips_related_fields(svc: pb.Service) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields: clusterIP(s), ipFamilies, ipFamilyPolicy."""
    spec = svc.spec
    if spec.type == EXTERNAL_NAME:
        return []
    errs: list[FieldError] = []
    ips = list(spec.clusterIPs)
    shown = v.go_strings(ips)
    if spec.clusterIP:
        if not ips:
            errs.append(required("spec.clusterIPs"))
        elif ips[0] != spec.clusterIP:
            errs.append(invalid("spec.clusterIPs", shown, "first value must match `clusterIP`"))
    elif ips:
        errs.append(invalid("spec.clusterIPs", shown, "must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, family in enumerate(spec.ipFamilies):
        if family not in IP_FAMILIES:
            errs.append(v.not_supported(f"spec.ipFamilies[{i}]", family, IP_FAMILIES))
        if family in seen:
            errs.append(v.duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)
    if spec.HasField("ipFamilyPolicy") and spec.ipFamilyPolicy not in IP_FAMILY_POLICIES:
        errs.append(v.not_supported("spec.ipFamilyPolicy", spec.ipFamilyPolicy, IP_FAMILY_POLICIES))
    bad_ips = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == NONE:
            if len(ips) > 1:
                bad_ips = True
                errs.append(invalid("spec.clusterIPs", shown, "'None' must be the first and only value"))
            continue
        ip_errs = v.is_valid_ip(f"spec.clusterIPs[{i}]", ip)
        bad_ips = bad_ips or bool(ip_errs)
        errs.extend(ip_errs)
    if len(ips) > 2:
        errs.append(invalid("spec.clusterIPs", shown, "may only hold up to 2 values"))
    if bad_ips:
        return errs
    if len(ips) > 1 and {v.ip_family(ip) for ip in ips} != {"IPv4", "IPv6"}:
        errs.append(invalid("spec.clusterIPs", shown, "may specify no more than one IP for each IP family"))
    if not is_headless(spec) and ips and spec.ipFamilies:
        for i, ip in enumerate(ips[:len(spec.ipFamilies)]):
            family = spec.ipFamilies[i]
            if family == "IPv4" and v.ip_family(ip) == "IPv6":
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip, f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if family == "IPv6" and v.ip_family(ip) != "IPv6":
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip, f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return errs


def validate_service_update(new: pb.Service, old: pb.Service) -> list[FieldError]:
    """ValidateServiceUpdate without the ValidateService part (the store runs that as well)."""
    errs = v.validate_object_meta_update(new.metadata, old.metadata)
    errs += _validate_upgrade_downgrade_cluster_ips(old, new)
    errs += _validate_upgrade_downgrade_ip_families(old, new)
    errs += [e for e in validate_load_balancer_class(new, old) if e.detail == "may not change once set"]
    if needs_health_check(old.spec) and needs_health_check(new.spec):
        if new.spec.healthCheckNodePort != old.spec.healthCheckNodePort:
            errs.append(forbidden("spec.healthCheckNodePort", v.FIELD_IMMUTABLE))
    return errs


def _validate_upgrade_downgrade_cluster_ips(old: pb.Service, new: pb.Service) -> list[FieldError]:
    o, n = old.spec, new.spec
    if EXTERNAL_NAME in (o.type, n.type) or (is_headless(o) and is_headless(n)):
        return []
    old_ips, new_ips = list(o.clusterIPs), list(n.clusterIPs)
    shown = v.go_strings(new_ips)
    errs: list[FieldError] = []
    if len(old_ips) == len(new_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.append(invalid(f"spec.clusterIPs[{i}]", shown, "may not change once set"))
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            errs.append(invalid("spec.clusterIPs[0]", shown, "primary clusterIP can not be unset"))
        if old_ips and new_ips and new_ips[0] != old_ips[0]:
            errs.append(invalid("spec.clusterIPs[0]", shown, "may not change once set"))
        if len(new_ips) == 1 and _opt(n, "ipFamilyPolicy") != "SingleStack":
            errs.append(invalid("spec.ipFamilyPolicy", _opt(n, "ipFamilyPolicy"),
                                "must be set to 'SingleStack' when releasing the secondary clusterIP"))
    elif old_ips and new_ips[0] != old_ips[0]:
        errs.append(invalid("spec.clusterIPs[0]", shown, "may not change once set"))
    return errs


def _validate_upgrade_downgrade_ip_families(old: pb.Service, new: pb.Service) -> list[FieldError]:
    o, n = old.spec, new.spec
    if EXTERNAL_NAME in (o.type, n.type) or is_headless(o) != is_headless(n) or is_headless(n):
        return []
    old_f, new_f = list(o.ipFamilies), list(n.ipFamilies)
    errs: list[FieldError] = []
    if len(old_f) == len(new_f):
        for i, family in enumerate(old_f):
            if family != new_f[i]:
                errs.append(invalid("spec.ipFamilies[0]", _go_families(new_f), "may not change once set"))
    elif len(old_f) > len(new_f):
        # Kubernetes tests and shows clusterIPs in some of these; kept as it does.
        if not n.clusterIPs:
            errs.append(invalid("spec.ipFamilies[0]", _go_families(new_f), "primary ipFamily can not be unset"))
        if new_f and new_f[0] != old_f[0]:
            errs.append(invalid("spec.ipFamilies[0]", v.go_strings(list(n.clusterIPs)), "may not change once set"))
        if len(new_f) == 1 and _opt(n, "ipFamilyPolicy") != "SingleStack":
            errs.append(invalid("spec.ipFamilyPolicy", _opt(n, "ipFamilyPolicy"),
                                "must be set to 'SingleStack' when releasing the secondary ipFamily"))
    elif old_f and new_f and new_f[0] != old_f[0]:
        errs.append(invalid("spec.ipFamilies[0]", v.go_strings(list(n.clusterIPs)), "may not change once set"))
    return errs


def validate_load_balancer_status(svc: pb.Service) -> list[FieldError]:
    """ValidateLoadBalancerStatus (AllowServiceLBStatusOnNonLB off, LoadBalancerIPMode on)."""
    path = "status.loadBalancer.ingress"
    ingress = svc.status.loadBalancer.ingress
    if svc.spec.type != LOAD_BALANCER and ingress:
        return [forbidden(path, "may only be used when `spec.type` is 'LoadBalancer'")]
    errs: list[FieldError] = []
    for i, ing in enumerate(ingress):
        ipath = f"{path}[{i}]"
        if ing.ip:
            errs.extend(v.is_valid_ip(f"{ipath}.ip", ing.ip))
        if not ing.HasField("ipMode"):
            if ing.ip:
                errs.append(required(f"{ipath}.ipMode", "must be specified when `ip` is set"))
        elif not ing.ip:
            errs.append(forbidden(f"{ipath}.ipMode", "may not be specified when `ip` is not set"))
        elif ing.ipMode not in LB_IP_MODES:
            errs.append(v.not_supported(f"{ipath}.ipMode", ing.ipMode, LB_IP_MODES))
        if ing.hostname:
            errs.extend(v.validate_dns1123_subdomain(ing.hostname, f"{ipath}.hostname"))
            if v.parse_ip(ing.hostname) is not None:
                errs.append(invalid(f"{ipath}.hostname", ing.hostname, "must be a DNS name, not an IP address"))
    return errs


# ------------------------------------------------------------------ allocation


class _Operation:
    """One write's allocator changes. Allocations take effect at once and are undone if the
    write fails; releases wait until it succeeds, so a failed update frees nothing
    (Kubernetes' PortAllocationOperation.ReleaseDeferred)."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, Any]] = []
        self._deferred: list[tuple[Any, Any]] = []

    def allocate(self, allocator: Any, value: Any) -> None:
        allocator.allocate(value)
        self._undo.append((allocator, value))

    def allocate_next(self, allocator: Any) -> Any:
        value = allocator.allocate_next()
        self._undo.append((allocator, value))
        return value

    def release_later(self, allocator: Any, value: Any) -> None:
        self._deferred.append((allocator, value))

    def revert(self) -> None:
        for allocator, value in reversed(self._undo):
            allocator.release(value)

    def commit(self) -> None:
        for allocator, value in self._deferred:
            allocator.release(value)


def _canonical_ip(ip: str) -> str:
    """Allocators key on the canonical form; a stored "127.96.0.010" is 127.96.0.10."""
    parsed = v.parse_ip(ip)
    return str(parsed) if parsed is not None else ip


def _internal(svc: pb.Service, detail: str) -> ApiError:
    """errors.NewInternalError: what Kubernetes returns when a range is exhausted."""
    return ApiError(f"Internal error occurred: {detail}", kind="Service", name=svc.metadata.name)


def _invalid(svc: pb.Service, err: FieldError) -> Invalid:
    return Invalid.of("Service", svc.metadata.name, [err])


class ServiceStrategy(ObjectStrategy):
    kind = "Service"
    name_fn = staticmethod(v.name_is_dns1035_label)
    generation_fields = ("spec",)
    resets_status = True

    def __init__(self, service_cidr: str = "127.96.0.0/16",
                 node_port_range: tuple[int, int] = (30000, 32767), *, rng: Any = None):
        self.ips = IPAllocator(service_cidr, rng=rng)
        self.node_ports = PortAllocator(*node_port_range, rng=rng)
        self.ip_allocators = {self.ips.family: self.ips}
        self.default_family = self.ips.family
        self.rebuild_problems: list[str] = []

    # -- defaulting

    def default(self, obj: pb.Service) -> None:
        set_defaults(obj)

    def prepare_for_create(self, obj: pb.Service) -> None:
        super().prepare_for_create(obj)
        normalize_cluster_ips(obj, None)
        self.init_ip_families(obj, None)

    def prepare_update(self, new: pb.Service, old: pb.Service) -> None:
        patch_allocated_values(new, old)
        normalize_cluster_ips(new, old)
        drop_type_dependent_fields(new, old)
        self.init_ip_families(new, old)

    def init_ip_families(self, svc: pb.Service, old: pb.Service | None) -> None:
        """The defaulting half of initIPFamilyFields; its errors come from _family_errors."""
        spec = svc.spec
        if spec.type == EXTERNAL_NAME or self._matching_prefer_dual_stack(svc, old):
            return
        if not spec.HasField("ipFamilyPolicy"):
            if old is not None and old.spec.HasField("ipFamilyPolicy"):
                spec.ipFamilyPolicy = old.spec.ipFamilyPolicy
            elif spec.clusterIP == NONE and not spec.selector:
                spec.ipFamilyPolicy = "RequireDualStack"
            else:
                spec.ipFamilyPolicy = "SingleStack"
        if validate_cluster_ips_related_fields(svc) or self._family_errors(svc, old):
            return
        if old is not None and spec.ipFamilyPolicy == "SingleStack":
            if list(old.spec.clusterIPs) == list(spec.clusterIPs) and len(spec.clusterIPs) > 1:
                del spec.clusterIPs[1:]
            if list(old.spec.ipFamilies) == list(spec.ipFamilies) and len(spec.ipFamilies) > 1:
                del spec.ipFamilies[1:]
        for i, ip in enumerate(spec.clusterIPs):
            if ip == NONE:
                break
            if i >= len(spec.ipFamilies):
                spec.ipFamilies.append(v.ip_family(ip))
        if spec.clusterIP == NONE and not spec.selector:
            if not spec.ipFamilies:
                spec.ipFamilies.append(self.default_family)
            if len(spec.ipFamilies) < 2 and spec.ipFamilyPolicy != "SingleStack":
                spec.ipFamilies.append("IPv6" if spec.ipFamilies[0] == "IPv4" else "IPv4")
            return
        if not spec.ipFamilies:
            spec.ipFamilies.append(self.default_family)
        if (spec.ipFamilyPolicy != "SingleStack" and len(spec.ipFamilies) == 1
                and len(self.ip_allocators) == 2):
            spec.ipFamilies.append("IPv6" if spec.ipFamilies[0] == "IPv4" else "IPv4")

    @staticmethod
    def _matching_prefer_dual_stack(svc: pb.Service, old: pb.Service | None) -> bool:
        """A PreferDualStack Service is not up- or downgraded because the cluster changed."""
        if old is None or not svc.spec.HasField("ipFamilyPolicy"):
            return False
        n, o = svc.spec, old.spec
        return (o.type == n.type and n.type in (CLUSTER_IP, NODE_PORT, LOAD_BALANCER)
                and n.ipFamilyPolicy == "PreferDualStack"
                and (not o.HasField("ipFamilyPolicy") or o.ipFamilyPolicy == "PreferDualStack")
                and list(o.clusterIPs) == list(n.clusterIPs) and list(o.ipFamilies) == list(n.ipFamilies))

    def _family_errors(self, svc: pb.Service, old: pb.Service | None) -> list[FieldError]:
        """The checks initIPFamilyFields makes against this cluster's configuration."""
        spec = svc.spec
        if spec.type == EXTERNAL_NAME or not spec.HasField("ipFamilyPolicy"):
            return []
        if self._matching_prefer_dual_stack(svc, old) or validate_cluster_ips_related_fields(svc):
            return []
        errs: list[FieldError] = []
        policy = spec.ipFamilyPolicy
        if old is not None and policy != "SingleStack":
            if spec.clusterIPs and len(spec.clusterIPs) < len(old.spec.clusterIPs):
                errs.append(invalid("spec.ipFamilyPolicy", policy, "must be 'SingleStack' to release the secondary cluster IP"))
            if spec.ipFamilies and len(spec.ipFamilies) < len(old.spec.ipFamilies):
                errs.append(invalid("spec.ipFamilyPolicy", policy, "must be 'SingleStack' to release the secondary IP family"))
        if policy == "SingleStack":
            if len(spec.clusterIPs) == 2:
                errs.append(invalid("spec.ipFamilyPolicy", policy,
                                    "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"))
            if len(spec.ipFamilies) == 2:
                errs.append(invalid("spec.ipFamilyPolicy", policy,
                                    "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"))
        for i, ip in enumerate(spec.clusterIPs):
            if ip == NONE:
                break
            family = v.ip_family(ip)
            if i >= len(spec.ipFamilies) and family not in self.ip_allocators:
                errs.append(invalid(f"spec.clusterIPs[{i}]", v.go_strings(list(spec.clusterIPs)),
                                    f"{family} is not configured on this cluster"))
        if errs or (spec.clusterIP == NONE and not spec.selector):
            return errs
        if policy == "RequireDualStack" and len(self.ip_allocators) < 2:
            errs.append(invalid("spec.ipFamilyPolicy", policy, "this cluster is not configured for dual-stack services"))
        for i, family in enumerate(spec.ipFamilies):
            if family not in self.ip_allocators:
                errs.append(invalid(f"spec.ipFamilies[{i}]", family, "not configured on this cluster"))
        return errs

    # -- validation

    def validate(self, obj: pb.Service) -> list[FieldError]:
        return validate_service(obj) + self._family_errors(obj, None)

    def validate_update(self, new: pb.Service, old: pb.Service) -> list[FieldError]:
        errs = validate_service_update(new, old)
        errs += [e for e in self._family_errors(new, old) if "to release the secondary" in e.detail]
        if new.status != old.status:
            errs += validate_load_balancer_status(new)
        return errs

    # -- allocation

    @contextlib.contextmanager
    def _operation(self) -> Iterator[_Operation]:
        op = _Operation()
        try:
            yield op
        except BaseException:
            op.revert()
            raise
        op.commit()

    def allocate(self, obj: pb.Service) -> None:
        with self._operation() as op:
            self._alloc_cluster_ips(obj, op)
            if needs_node_port(obj.spec):
                self._init_node_ports(obj, op)
            if needs_health_check(obj.spec):
                self._alloc_health_check_node_port(obj, op)

    def reallocate(self, new: pb.Service, old: pb.Service) -> None:
        with self._operation() as op:
            self._update_cluster_ips(new, old, op)
            self._update_node_ports(new, old, op)
            self._update_health_check_node_port(new, old, op)

    def release(self, obj: pb.Service) -> None:
        spec = obj.spec
        if needs_cluster_ip(spec) and not is_headless(spec):
            for ip in spec.clusterIPs:
                self._ip_allocator(ip).release(_canonical_ip(ip))
        for port in node_ports(spec):
            self.node_ports.release(port)
        if needs_health_check(spec) and spec.healthCheckNodePort > 0:
            self.node_ports.release(spec.healthCheckNodePort)

    def rebuild(self, objects_: Iterable[pb.Service]) -> None:
        """Re-derive both bitmaps from stored Services, as Kubernetes' repair loops do; values
        out of range or held twice are kept in `rebuild_problems` for the caller to report."""
        ips: list[str] = []
        ports: list[int] = []
        for svc in objects_:
            spec = svc.spec
            if needs_cluster_ip(spec) and not is_headless(spec):
                ips.extend(_canonical_ip(ip) for ip in spec.clusterIPs if v.ip_family(ip) == self.default_family)
            held = dict.fromkeys(node_ports(spec))
            if spec.healthCheckNodePort:
                held[spec.healthCheckNodePort] = None
            ports.extend(held)
        problems = [f"ClusterIP {ip}: {msg}" for ip, msg in self.ips.reset(ips)]
        problems += [f"NodePort {port}: {msg}" for port, msg in self.node_ports.reset(ports)]
        self.rebuild_problems = problems

    # -- ClusterIPs

    def _ip_allocator(self, ip: str) -> IPAllocator:
        return self.ip_allocators.get(v.ip_family(ip), self.ips)

    def _release_ip_later(self, op: _Operation, ip: str) -> None:
        op.release_later(self._ip_allocator(ip), _canonical_ip(ip))

    def _alloc_cluster_ips(self, svc: pb.Service, op: _Operation) -> None:
        spec = svc.spec
        if spec.type == EXTERNAL_NAME or (spec.clusterIPs and spec.clusterIPs[0] == NONE):
            return
        wanted = list(spec.clusterIPs)
        wanted += [""] * (len(spec.ipFamilies) - len(wanted))
        for i, family in enumerate(spec.ipFamilies):
            allocator = self.ip_allocators[family]
            ip = wanted[i]
            if not ip:
                try:
                    wanted[i] = op.allocate_next(allocator)
                except AllocationError as e:
                    raise _internal(svc, f"failed to allocate a serviceIP: {e}") from None
                continue
            try:
                op.allocate(allocator, _canonical_ip(ip))
            except AllocationError as e:
                path = "spec.clusterIP" if i == 0 else f"spec.clusterIPs[{i}]"
                raise _invalid(svc, invalid(path, ip, str(e))) from None
        _set_cluster_ips(spec, wanted)
        if wanted:
            spec.clusterIP = wanted[0]

    def _update_cluster_ips(self, new: pb.Service, old: pb.Service, op: _Operation) -> None:
        if self._matching_prefer_dual_stack(new, old):
            return
        if old.spec.type == EXTERNAL_NAME and new.spec.type != EXTERNAL_NAME:
            self._alloc_cluster_ips(new, op)
            return
        if is_headless(old.spec):
            return
        if old.spec.type != EXTERNAL_NAME and new.spec.type == EXTERNAL_NAME:
            for ip in old.spec.clusterIPs:
                self._release_ip_later(op, ip)
        # Up- and downgrades between single and dual stack need a second family, which a
        # one-CIDR cluster does not have; validation rejects them before this point.

    # -- NodePorts

    def _init_node_ports(self, svc: pb.Service, op: _Operation) -> None:
        """initNodePorts: ports that share a port number (TCP and UDP 53) share a nodePort."""
        spec = svc.spec
        by_port: dict[int, int] = {}
        for i, sp in enumerate(spec.ports):
            if not sp.nodePort and not should_allocate_node_ports(spec):
                continue
            allocated = by_port.get(sp.port, 0)
            if not allocated:
                requested = next((p.nodePort for p in spec.ports if p.port == sp.port and p.nodePort), 0)
                if requested:
                    self._allocate_node_port(svc, op, requested, i)
                    sp.nodePort = requested
                else:
                    sp.nodePort = self._allocate_next_node_port(svc, op)
                by_port[sp.port] = sp.nodePort
            elif sp.nodePort != allocated:
                if not sp.nodePort:
                    sp.nodePort = allocated
                else:
                    self._allocate_node_port(svc, op, sp.nodePort, i)

    def _allocate_node_port(self, svc: pb.Service, op: _Operation, port: int, index: int) -> None:
        try:
            op.allocate(self.node_ports, port)
        except AllocationError as e:
            raise _invalid(svc, invalid(f"spec.ports[{index}].nodePort", port, str(e))) from None

    def _allocate_next_node_port(self, svc: pb.Service, op: _Operation) -> int:
        try:
            return op.allocate_next(self.node_ports)
        except AllocationError as e:
            raise _internal(svc, f"failed to allocate a nodePort: {e}") from None

    def _update_node_ports(self, new: pb.Service, old: pb.Service, op: _Operation) -> None:
        n, o = new.spec, old.spec
        if needs_node_port(o) and n.type in (EXTERNAL_NAME, CLUSTER_IP):
            for port in node_ports(o):
                op.release_later(self.node_ports, port)
        if not needs_node_port(n):
            return
        old_ports = node_ports(o)
        claimed: set[int] = set()
        for i, sp in enumerate(n.ports):
            if not sp.nodePort and not should_allocate_node_ports(n):
                continue
            if sp.nodePort:
                if sp.nodePort not in old_ports and sp.nodePort not in claimed:
                    self._allocate_node_port(new, op, sp.nodePort, i)
                    claimed.add(sp.nodePort)
            else:
                sp.nodePort = self._allocate_next_node_port(new, op)
        new_ports = set(node_ports(n))
        for port in old_ports:
            if port not in new_ports:
                op.release_later(self.node_ports, port)

    # -- healthCheckNodePort

    def _alloc_health_check_node_port(self, svc: pb.Service, op: _Operation) -> None:
        spec = svc.spec
        if spec.healthCheckNodePort:
            try:
                op.allocate(self.node_ports, spec.healthCheckNodePort)
            except AllocationError as e:
                raise _internal(svc, f"failed to allocate requested HealthCheck NodePort "
                                     f"{spec.healthCheckNodePort}: {e}") from None
            return
        try:
            spec.healthCheckNodePort = op.allocate_next(self.node_ports)
        except AllocationError as e:
            raise _internal(svc, f"failed to allocate a HealthCheck NodePort 0: {e}") from None

    def _update_health_check_node_port(self, new: pb.Service, old: pb.Service, op: _Operation) -> None:
        needed, needs = needs_health_check(old.spec), needs_health_check(new.spec)
        if not needed and needs:
            self._alloc_health_check_node_port(new, op)
        elif needed and not needs:
            op.release_later(self.node_ports, old.spec.healthCheckNodePort)
