"""Event (core/v1): Kubernetes' legacy event validation.

Kubernetes accepts a core/v1 Event without an involvedObject; kubemu requires one, because
every component that reads events (`kubemu describe`, tests) keys them by the object they are
about. The namespace rules and the eventTime-style required fields are Kubernetes'.
"""
from __future__ import annotations

from kubemu.apiserver import validation as v
from kubemu.apiserver.registry.generic import ObjectStrategy
from kubemu.errors import FieldError, invalid, required
from kubemu.v1 import objects_pb2 as pb

REASON_LIMIT = ACTION_LIMIT = REPORTING_INSTANCE_LIMIT = 128
NOTE_LIMIT = 1024


class EventStrategy(ObjectStrategy):
    kind = "Event"

    def validate_spec(self, obj: pb.Event) -> list[FieldError]:
        errs: list[FieldError] = []
        ref = obj.involvedObject
        if not obj.HasField("involvedObject"):
            errs.append(required("involvedObject"))
        ns = obj.metadata.namespace
        mismatch = invalid("involvedObject.namespace", ref.namespace, "does not match event.namespace")
        if not obj.eventTime:
            if not ref.namespace:
                if ns not in ("", "default"):
                    errs.append(mismatch)
            elif ns != ref.namespace:
                errs.append(mismatch)
        else:
            if not ref.namespace and ns not in ("default", "kube-system"):
                errs.append(mismatch)
            if not obj.reportingComponent:
                errs.append(required("reportingComponent"))
            errs += v.validate_qualified_name(obj.reportingComponent, "reportingComponent")
            for name, value, limit in (("reportingInstance", obj.reportingInstance, REPORTING_INSTANCE_LIMIT),
                                       ("action", obj.action, ACTION_LIMIT),
                                       ("reason", obj.reason, REASON_LIMIT)):
                if not value:
                    errs.append(required(name))
                if len(value) > limit:
                    errs.append(invalid(name, "", f"can have at most {limit} characters"))
            if len(obj.message) > NOTE_LIMIT:
                errs.append(invalid("message", "", f"can have at most {NOTE_LIMIT} characters"))
        errs += v.validate_each("namespace", ns, v.is_dns1123_subdomain(ns))
        return errs
