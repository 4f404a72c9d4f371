"""Node: DNS-subdomain names, taints, pod CIDRs that are set once.

From ValidateNode / ValidateNodeUpdate (pkg/apis/core/validation) and SetDefaults_NodeStatus.
The v1 conversion keeps spec.podCIDR equal to spec.podCIDRs[0]; `default` does the same.
"""
from __future__ import annotations

from kubemu.apiserver import validation as v
from kubemu.apiserver.registry.pod import TAINT_EFFECTS
from kubemu.errors import FieldError, forbidden, invalid, required
from kubemu.apiserver.registry.generic import ObjectStrategy
from kubemu.v1 import objects_pb2 as pb

_POD_CIDR_CHANGE = 'node updates may not change podCIDR except from "" to valid'


def validate_taints(taints: list[pb.Taint], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(taints):
        tpath = f"{path}[{i}]"
        errs += v.validate_qualified_name(t.key, f"{tpath}.key")
        if msgs := v.is_label_value(t.value):
            errs.append(invalid(f"{tpath}.value", t.value, ";".join(msgs)))
        if not t.effect:
            errs.append(required(f"{tpath}.effect"))
        elif t.effect not in TAINT_EFFECTS:
            errs.append(v.not_supported(f"{tpath}.effect", t.effect, TAINT_EFFECTS))
        if (t.effect, t.key) in seen:
            shown = v.GoValue(f"core.Taint{{Key:{v.go_quote(t.key)}, Value:{v.go_quote(t.value)}, "
                              f"Effect:{v.go_quote(t.effect)}, TimeAdded:<nil>}}")
            err = v.duplicate(tpath, shown)
            errs.append(type(err)(err.type, err.field, "taints must be unique by key and effect pair", err.value))
            continue
        seen.add((t.effect, t.key))
    return errs


class NodeStrategy(ObjectStrategy):
    kind = "Node"

    def default(self, obj: pb.Node) -> None:
        spec = obj.spec
        if spec.podCIDR and not spec.podCIDRs:
            spec.podCIDRs.append(spec.podCIDR)
        elif spec.podCIDRs and not spec.podCIDR:
            spec.podCIDR = spec.podCIDRs[0]
        st = obj.status
        if st.capacity and not st.allocatable:
            st.allocatable.update(st.capacity)

    def validate_spec(self, obj: pb.Node) -> list[FieldError]:
        spec = obj.spec
        errs = validate_taints(list(spec.taints), "metadata.taints")  # sic: Kubernetes' path
        cidrs = list(spec.podCIDRs)
        for i, cidr in enumerate(cidrs):
            errs += v.is_valid_cidr(f"spec.podCIDRs[{i}]", cidr)
        if len(cidrs) > 1 and not errs:
            families = {v.parse_cidr(c).version for c in cidrs}  # type: ignore[union-attr]
            if len(cidrs) > 2 or families != {4, 6}:
                errs.append(invalid("spec.podCIDRs", v.go_strings(cidrs), "may specify no more than one CIDR for each IP family"))
            seen: set[str] = set()
            for i, cidr in enumerate(cidrs):
                if cidr in seen:
                    errs.append(v.duplicate(f"spec.podCIDRs[{i}]", cidr))
                seen.add(cidr)
        return errs

    def validate_spec_update(self, new: pb.Node, old: pb.Node) -> list[FieldError]:
        errs: list[FieldError] = []
        if old.spec.podCIDRs:
            if len(old.spec.podCIDRs) != len(new.spec.podCIDRs):
                errs.append(forbidden("spec.podCIDRs", _POD_CIDR_CHANGE))
            else:
                errs += [forbidden("spec.podCIDRs", _POD_CIDR_CHANGE)
                         for a, b in zip(old.spec.podCIDRs, new.spec.podCIDRs) if a != b]
        if old.spec.providerID and old.spec.providerID != new.spec.providerID:
            errs.append(forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid'))
        return errs

    def validate_status_update(self, new: pb.Node, old: pb.Node) -> list[FieldError]:
        errs: list[FieldError] = []
        seen: set[tuple[str, str]] = set()
        for i, a in enumerate(new.status.addresses):
            key = (a.type, a.address)
            if key in seen:
                errs.append(v.duplicate(f"status.addresses[{i}]", v.GoValue(
                    f"core.NodeAddress{{Type:{v.go_quote(a.type)}, Address:{v.go_quote(a.address)}}}")))
            seen.add(key)
        return errs
