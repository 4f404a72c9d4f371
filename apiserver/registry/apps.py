"""Deployment and ReplicaSet (apps/v1): defaults, validation, immutable selector.

From pkg/apis/apps/v1/defaults.go and pkg/apis/apps/validation/validation.go. Both kinds
validate their pod template with the Pod rules (registry/pod.py) plus the controller rules:
the selector must select the template's labels and restartPolicy must be Always.
"""
from __future__ import annotations

from kubemu import objects
from kubemu.apiserver import validation as v
from kubemu.apiserver.registry.generic import ObjectStrategy
from kubemu.apiserver.registry.pod import set_pod_spec_defaults, validate_pod_template_spec
from kubemu.errors import FieldError, forbidden, invalid, required
from kubemu.v1 import objects_pb2 as pb

STRATEGY_TYPES = ["Recreate", "RollingUpdate"]


def validate_selector_and_template(spec: pb.DeploymentSpec | pb.ReplicaSetSpec) -> list[FieldError]:
    """The selector checks and ValidatePodTemplateSpecForReplicaSet, in Kubernetes' order.

    An unset selector is Kubernetes' labels.Nothing(), which matches no template; an empty one
    is labels.Everything(), which is reported as invalid but not compared with the labels."""
    errs: list[FieldError] = []
    selector_errs: list[FieldError] = []
    if not spec.HasField("selector"):
        errs.append(required("spec.selector"))
    else:
        selector_errs = v.validate_label_selector(spec.selector, "spec.selector")
        errs += selector_errs
        if v.selector_is_empty(spec.selector):
            errs.append(invalid("spec.selector", v.go_label_selector(spec.selector),
                                "empty selector is invalid for deployment"))
    if selector_errs:
        errs.append(invalid("spec.selector", v.go_label_selector(spec.selector), "invalid label selector"))
        return errs
    template = spec.template
    labels = dict(template.metadata.labels)
    if not spec.HasField("selector") or (not v.selector_is_empty(spec.selector)
                                         and not v.selector_matches(spec.selector, labels)):
        errs.append(invalid("spec.template.metadata.labels", v.go_string_map(labels),
                            "`selector` does not match template `labels`"))
    errs += validate_pod_template_spec(template, "spec.template")
    if template.spec.restartPolicy != "Always":
        errs.append(v.not_supported("spec.template.spec.restartPolicy", template.spec.restartPolicy, ["Always"]))
    return errs


def _int_or_percent(value: pb.IntOrString) -> tuple[int, bool]:
    """getIntOrPercentValue: (number, is_percent); a malformed percent counts as 0."""
    if value.type == 1:
        digits = value.strVal[:-1] if value.strVal.endswith("%") else ""
        return (int(digits), True) if digits.isdigit() else (0, True)
    return value.intVal, False


def _validate_positive_int_or_percent(value: pb.IntOrString, path: str) -> list[FieldError]:
    shown = v.GoValue(str(objects.ios_value(value)))  # IntOrString prints through String()
    if value.type == 1:
        return v.validate_each(path, shown, v.is_valid_percent(value.strVal))
    return v.validate_nonnegative(value.intVal, path)


def validate_deployment_strategy(strategy: pb.DeploymentStrategy, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if strategy.type == "Recreate":
        if strategy.HasField("rollingUpdate"):
            errs.append(forbidden(f"{path}.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"))
    elif strategy.type == "RollingUpdate":
        if not strategy.HasField("rollingUpdate"):
            errs.append(required(f"{path}.rollingUpdate", "this should be defaulted and never be nil"))
        else:
            ru = strategy.rollingUpdate
            rpath = f"{path}.rollingUpdate"
            errs += _validate_positive_int_or_percent(ru.maxUnavailable, f"{rpath}.maxUnavailable")
            errs += _validate_positive_int_or_percent(ru.maxSurge, f"{rpath}.maxSurge")
            if _int_or_percent(ru.maxUnavailable)[0] == 0 and _int_or_percent(ru.maxSurge)[0] == 0:
                errs.append(invalid(f"{rpath}.maxUnavailable", v.GoValue(str(objects.ios_value(ru.maxUnavailable))),
                                    "may not be 0 when `maxSurge` is 0"))
            number, percent = _int_or_percent(ru.maxUnavailable)
            if percent and number > 100:
                errs.append(invalid(f"{rpath}.maxUnavailable", v.GoValue(str(objects.ios_value(ru.maxUnavailable))),
                                    "must not be greater than 100%"))
    else:
        errs.append(v.not_supported(f"{path}.type", strategy.type, STRATEGY_TYPES))
    return errs


def _validate_status_counts(status: object, fields: tuple[str, ...], ready_check: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    for f in fields:
        errs += v.validate_nonnegative(getattr(status, f), f"status.{f}")
    msg = "cannot be greater than status.replicas"
    for f in fields:
        if f not in ("replicas", "observedGeneration", "unavailableReplicas", "collisionCount") \
                and getattr(status, f) > status.replicas:  # type: ignore[attr-defined]
            errs.append(invalid(f"status.{f}", getattr(status, f), msg))
    if ready_check and status.availableReplicas > status.readyReplicas:  # type: ignore[attr-defined]
        errs.append(invalid("status.availableReplicas", status.availableReplicas,  # type: ignore[attr-defined]
                            "cannot be greater than readyReplicas"))
    return errs


class DeploymentStrategy(ObjectStrategy):
    kind = "Deployment"
    generation_fields = ("spec",)
    resets_status = True

    def default(self, obj: pb.Deployment) -> None:
        spec = obj.spec
        if not spec.HasField("replicas"):
            spec.replicas = 1
        if not spec.strategy.type:
            spec.strategy.type = "RollingUpdate"
        if spec.strategy.type == "RollingUpdate":
            ru = spec.strategy.rollingUpdate
            if not ru.HasField("maxUnavailable"):
                ru.maxUnavailable.CopyFrom(objects.int_or_string("25%"))
            if not ru.HasField("maxSurge"):
                ru.maxSurge.CopyFrom(objects.int_or_string("25%"))
        if not spec.HasField("revisionHistoryLimit"):
            spec.revisionHistoryLimit = 10
        if not spec.HasField("progressDeadlineSeconds"):
            spec.progressDeadlineSeconds = 600
        set_pod_spec_defaults(spec.template.spec)

    def validate_spec(self, obj: pb.Deployment) -> list[FieldError]:
        spec = obj.spec
        errs = v.validate_nonnegative(spec.replicas, "spec.replicas")
        errs += validate_selector_and_template(spec)
        errs += validate_deployment_strategy(spec.strategy, "spec.strategy")
        errs += v.validate_nonnegative(spec.minReadySeconds, "spec.minReadySeconds")
        if spec.HasField("revisionHistoryLimit"):
            errs += v.validate_nonnegative(spec.revisionHistoryLimit, "spec.revisionHistoryLimit")
        if spec.HasField("progressDeadlineSeconds"):
            errs += v.validate_nonnegative(spec.progressDeadlineSeconds, "spec.progressDeadlineSeconds")
            if spec.progressDeadlineSeconds <= spec.minReadySeconds:
                errs.append(invalid("spec.progressDeadlineSeconds", spec.progressDeadlineSeconds,
                                    "must be greater than minReadySeconds"))
        return errs

    def validate_spec_update(self, new: pb.Deployment, old: pb.Deployment) -> list[FieldError]:
        return _validate_selector_immutable(new.spec, old.spec)

    def validate_status_update(self, new: pb.Deployment, old: pb.Deployment) -> list[FieldError]:
        st = new.status
        errs = _validate_status_counts(st, ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas",
                                            "availableReplicas", "unavailableReplicas"), ready_check=True)
        if st.HasField("collisionCount"):
            errs += v.validate_nonnegative(st.collisionCount, "status.collisionCount")
        return errs


class ReplicaSetStrategy(ObjectStrategy):
    kind = "ReplicaSet"
    generation_fields = ("spec",)
    resets_status = True

    def default(self, obj: pb.ReplicaSet) -> None:
        if not obj.spec.HasField("replicas"):
            obj.spec.replicas = 1
        set_pod_spec_defaults(obj.spec.template.spec)

    def validate_spec(self, obj: pb.ReplicaSet) -> list[FieldError]:
        spec = obj.spec
        errs = v.validate_nonnegative(spec.replicas, "spec.replicas")
        errs += v.validate_nonnegative(spec.minReadySeconds, "spec.minReadySeconds")
        return errs + validate_selector_and_template(spec)

    def validate_spec_update(self, new: pb.ReplicaSet, old: pb.ReplicaSet) -> list[FieldError]:
        return _validate_selector_immutable(new.spec, old.spec)

    def validate_status_update(self, new: pb.ReplicaSet, old: pb.ReplicaSet) -> list[FieldError]:
        return _validate_status_counts(new.status, ("replicas", "fullyLabeledReplicas", "readyReplicas",
                                                    "availableReplicas", "observedGeneration"), ready_check=True)


def _validate_selector_immutable(new: pb.DeploymentSpec | pb.ReplicaSetSpec,
                                 old: pb.DeploymentSpec | pb.ReplicaSetSpec) -> list[FieldError]:
    """apps/v1 made the selector immutable: changing it would orphan the existing pods."""
    if new.selector != old.selector or new.HasField("selector") != old.HasField("selector"):
        return [invalid("spec.selector", v.go_label_selector(new.selector), v.FIELD_IMMUTABLE)]
    return []
