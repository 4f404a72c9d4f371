"""Namespace: DNS-1123 label names, the `kubernetes` finalizer, phase Active on create.

From pkg/registry/core/namespace/strategy.go, SetDefaults_Namespace and ValidateNamespace.
spec.finalizers can only change through Kubernetes' finalize subresource, which kubemu does
not serve, so an update keeps the stored list.
"""
from __future__ import annotations

from kubemu.apiserver import validation as v
from kubemu.apiserver.registry.generic import ObjectStrategy
from kubemu.errors import FieldError, invalid
from kubemu.v1 import objects_pb2 as pb

METADATA_NAME_LABEL = "kubernetes.io/metadata.name"


class NamespaceStrategy(ObjectStrategy):
    kind = "Namespace"
    name_fn = staticmethod(v.name_is_dns_label)
    resets_status = True

    def default(self, obj: pb.Namespace) -> None:
        if obj.metadata.name:
            obj.metadata.labels[METADATA_NAME_LABEL] = obj.metadata.name

    def initial_status(self, obj: pb.Namespace) -> None:
        obj.status.phase = "Active"

    def prepare_for_create(self, obj: pb.Namespace) -> None:
        super().prepare_for_create(obj)
        if "kubernetes" not in obj.spec.finalizers:
            obj.spec.finalizers.append("kubernetes")

    def prepare_update(self, new: pb.Namespace, old: pb.Namespace) -> None:
        del new.spec.finalizers[:]
        new.spec.finalizers.extend(old.spec.finalizers)
        if not new.spec.finalizers and not old.HasField("spec"):
            new.ClearField("spec")

    def validate_spec(self, obj: pb.Namespace) -> list[FieldError]:
        errs: list[FieldError] = []
        for f in obj.spec.finalizers:
            errs += v.validate_each("spec.finalizers", f, v.is_qualified_name(f))
            if "/" not in f and f not in v.STANDARD_FINALIZERS:
                errs.append(invalid("spec.finalizers", f,
                                    "name is neither a standard finalizer name nor is it fully qualified"))
        return errs

    def validate_status_update(self, new: pb.Namespace, old: pb.Namespace) -> list[FieldError]:
        phase = new.status.phase
        if not new.metadata.deletionTimestamp:
            if phase != "Active":
                return [invalid("status.Phase", phase, "may only be 'Active' if `deletionTimestamp` is empty")]
        elif phase != "Terminating":
            return [invalid("status.Phase", phase, "may only be 'Terminating' if `deletionTimestamp` is not empty")]
        return []
