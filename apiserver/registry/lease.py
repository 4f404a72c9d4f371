"""Lease (coordination.k8s.io/v1): the node heartbeat. From ValidateLeaseSpec."""
from __future__ import annotations

from kubemu.apiserver.registry.generic import ObjectStrategy
from kubemu.errors import FieldError, invalid
from kubemu.v1 import objects_pb2 as pb


class LeaseStrategy(ObjectStrategy):
    kind = "Lease"

    def validate_spec(self, obj: pb.Lease) -> list[FieldError]:
        spec = obj.spec
        errs: list[FieldError] = []
        if spec.HasField("leaseDurationSeconds") and spec.leaseDurationSeconds <= 0:
            errs.append(invalid("spec.leaseDurationSeconds", spec.leaseDurationSeconds, "must be greater than 0"))
        if spec.HasField("leaseTransitions") and spec.leaseTransitions < 0:
            errs.append(invalid("spec.leaseTransitions", spec.leaseTransitions, "must be greater than or equal to 0"))
        return errs
