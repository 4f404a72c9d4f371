"""EndpointSlice (discovery.k8s.io/v1). From pkg/apis/discovery/validation and the
endpointslice strategy: addressType is set once, addresses must fit it, at most 1000
endpoints, and generation moves when anything but metadata (or labels) changes.

Addresses may be loopback, unlike Kubernetes: kubemu's pod IPs live in 127.244.0.0/16.
"""
from __future__ import annotations

from kubemu.apiserver import validation as v
from kubemu.apiserver.registry.generic import ObjectStrategy
from kubemu.errors import FieldError, required
from kubemu.v1 import objects_pb2 as pb

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 20000


def validate_endpoints(endpoints: list[pb.Endpoint], address_type: str) -> list[FieldError]:
    if len(endpoints) > MAX_ENDPOINTS:
        return [v.too_many("endpoints", len(endpoints), MAX_ENDPOINTS)]
    errs: list[FieldError] = []
    for i, ep in enumerate(endpoints):
        path = f"endpoints[{i}]"
        apath = f"{path}.addresses"
        if not ep.addresses:
            errs.append(required(apath, "must contain at least 1 address"))
        elif len(ep.addresses) > MAX_ADDRESSES:
            errs.append(v.too_many(apath, len(ep.addresses), MAX_ADDRESSES))
        for j, address in enumerate(ep.addresses):
            if address_type == "IPv4":
                errs += v.is_valid_ipv4(f"{apath}[{j}]", address) or v.validate_non_special_ip(address, f"{apath}[{j}]")
            elif address_type == "IPv6":
                errs += v.is_valid_ipv6(f"{apath}[{j}]", address) or v.validate_non_special_ip(address, f"{apath}[{j}]")
            elif address_type == "FQDN":
                errs += v.validate_fully_qualified_domain_name(f"{apath}[{j}]", address)
        if ep.HasField("nodeName"):
            errs += v.validate_each(f"{path}.nodeName", ep.nodeName, v.name_is_dns_subdomain(ep.nodeName))
        if ep.HasField("hostname"):
            errs += v.validate_dns1123_label(ep.hostname, f"{path}.hostname")
    return errs


def validate_ports(ports: list[pb.EndpointPort]) -> list[FieldError]:
    if len(ports) > MAX_PORTS:
        return [v.too_many("ports", len(ports), MAX_PORTS)]
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, p in enumerate(ports):
        path = f"ports[{i}]"
        if p.name:
            errs += v.validate_dns1123_label(p.name, f"{path}.name")
        if p.name in names:
            errs.append(v.duplicate(f"{path}.name", p.name))
        names.add(p.name)
        if not p.HasField("protocol"):
            errs.append(required(f"{path}.protocol"))
        elif p.protocol not in PROTOCOLS:
            errs.append(v.not_supported(f"{path}.protocol", p.protocol, PROTOCOLS))
        if p.HasField("port"):
            errs += v.validate_each(f"{path}.port", p.port, v.is_valid_port_num(p.port))
        if p.HasField("appProtocol"):
            errs += v.validate_qualified_name(p.appProtocol, f"{path}.appProtocol")
    return errs


class EndpointSliceStrategy(ObjectStrategy):
    kind = "EndpointSlice"
    generation_fields = ("addressType", "endpoints", "ports")

    def default(self, obj: pb.EndpointSlice) -> None:
        for p in obj.ports:
            if not p.HasField("name"):
                p.name = ""
            if not p.HasField("protocol"):
                p.protocol = "TCP"

    def spec_changed(self, new: pb.EndpointSlice, old: pb.EndpointSlice) -> bool:
        return super().spec_changed(new, old) or dict(new.metadata.labels) != dict(old.metadata.labels)

    def validate_spec(self, obj: pb.EndpointSlice) -> list[FieldError]:
        errs: list[FieldError] = []
        if not obj.addressType:
            errs.append(required("addressType"))
        elif obj.addressType not in ADDRESS_TYPES:
            errs.append(v.not_supported("addressType", obj.addressType, ADDRESS_TYPES))
        errs += validate_endpoints(list(obj.endpoints), obj.addressType)
        errs += validate_ports(list(obj.ports))
        return errs

    def validate_spec_update(self, new: pb.EndpointSlice, old: pb.EndpointSlice) -> list[FieldError]:
        return v.validate_immutable(new.addressType, old.addressType, "addressType")
