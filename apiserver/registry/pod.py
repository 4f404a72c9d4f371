"""Pod: defaulting, validation and update rules, shared with pod templates.

From pkg/apis/core/v1/defaults.go (SetDefaults_Pod, _PodSpec, _Container, _Probe, ...),
pkg/apis/core/validation (ValidatePodSpec, validateContainers, ValidatePodUpdate,
ValidatePodStatusUpdate) and pkg/registry/core/pod/strategy.go. Deployments and ReplicaSets
reuse `set_pod_spec_defaults` and `validate_pod_template_spec`.

kubemu has no pods/binding subresource: a scheduler binds a pod by updating spec.nodeName
from empty to a node name, which the update rules allow once (Kubernetes' binding makes the
same one-time change). Any other change of spec.nodeName is forbidden like the rest of the spec.
"""
from __future__ import annotations

import difflib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Iterable

from kubemu import objects
from kubemu.apiserver import validation as v
from kubemu.apiserver.registry.generic import ObjectStrategy
from kubemu.errors import FieldError, forbidden, invalid, required
from kubemu.v1 import objects_pb2 as pb

PROTOCOLS = ["SCTP", "TCP", "UDP"]
RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
HTTP_SCHEMES = ["HTTP", "HTTPS"]
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
TOLERATION_OPERATORS = ["Equal", "Exists"]
ENV_FIELD_PATHS = sorted(["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                          "spec.serviceAccountName", "status.hostIP", "status.hostIPs",
                          "status.podIP", "status.podIPs"])
DEFAULT_TERMINATION_GRACE_PERIOD = 30
UPDATABLE_POD_SPEC_FIELDS = ",".join([
    "`spec.containers[*].image`", "`spec.initContainers[*].image`", "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
])


# ------------------------------------------------------------------ defaulting


def pull_policy_for(image: str) -> str:
    """Always for `:latest` or an untagged, undigested image; IfNotPresent otherwise."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_probe(probe: pb.Probe) -> None:
    for name, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                        ("failureThreshold", 3)):
        if not getattr(probe, name):
            setattr(probe, name, value)
    _default_handler(probe)


def _default_handler(handler: pb.Probe | pb.LifecycleHandler) -> None:
    if handler.HasField("httpGet"):
        if not handler.httpGet.path:
            handler.httpGet.path = "/"
        if not handler.httpGet.scheme:
            handler.httpGet.scheme = "HTTP"


def _default_container(c: pb.Container) -> None:
    if not c.imagePullPolicy:
        c.imagePullPolicy = pull_policy_for(c.image)
    if not c.terminationMessagePath:
        c.terminationMessagePath = "/dev/termination-log"
    if not c.terminationMessagePolicy:
        c.terminationMessagePolicy = "File"
    for p in c.ports:
        if not p.protocol:
            p.protocol = "TCP"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if c.HasField(probe):
            _default_probe(getattr(c, probe))
    if c.HasField("lifecycle"):
        for hook in ("postStart", "preStop"):
            if c.lifecycle.HasField(hook):
                _default_handler(getattr(c.lifecycle, hook))
    for env in c.env:
        if env.valueFrom.HasField("fieldRef") and not env.valueFrom.fieldRef.apiVersion:
            env.valueFrom.fieldRef.apiVersion = "v1"


def set_pod_spec_defaults(spec: pb.PodSpec) -> None:
    """SetDefaults_PodSpec and the per-container defaults: pods and pod templates alike."""
    if not spec.dnsPolicy:
        spec.dnsPolicy = "ClusterFirst"
    if not spec.restartPolicy:
        spec.restartPolicy = "Always"
    if not spec.HasField("terminationGracePeriodSeconds"):
        spec.terminationGracePeriodSeconds = DEFAULT_TERMINATION_GRACE_PERIOD
    if not spec.schedulerName:
        spec.schedulerName = "default-scheduler"
    for c in list(spec.containers) + list(spec.initContainers):
        _default_container(c)


def set_pod_defaults(pod: pb.Pod) -> None:
    """SetDefaults_Pod on top of the spec defaults, plus the v1 conversion that keeps podIP
    and podIPs (hostIP and hostIPs) in step."""
    spec = pod.spec
    set_pod_spec_defaults(spec)
    for c in list(spec.containers) + list(spec.initContainers):
        if c.HasField("resources"):
            for key, value in c.resources.limits.items():
                if key not in c.resources.requests:
                    c.resources.requests[key] = value
    if not spec.HasField("enableServiceLinks"):
        spec.enableServiceLinks = True
    if spec.hostNetwork:
        for c in list(spec.containers) + list(spec.initContainers):
            for p in c.ports:
                if not p.hostPort:
                    p.hostPort = p.containerPort
    if spec.terminationGracePeriodSeconds < 0:
        spec.terminationGracePeriodSeconds = 1  # Kubernetes' strategy mutates negative values to 1
    st = pod.status
    if st.podIP and not st.podIPs:
        st.podIPs.add(ip=st.podIP)
    elif st.podIPs and not st.podIP:
        st.podIP = st.podIPs[0].ip
    if st.hostIP and not st.hostIPs:
        st.hostIPs.add(ip=st.hostIP)
    elif st.hostIPs and not st.hostIP:
        st.hostIP = st.hostIPs[0].ip


_QUANTITY = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")
_SUFFIXES = {"": 1, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def parse_quantity(text: str) -> Decimal | None:
    m = _QUANTITY.fullmatch(text.strip())
    if not m:
        return None
    try:
        number = Decimal(m.group(1))
    except InvalidOperation:
        return None
    suffix = m.group(2)
    if suffix in _SUFFIXES:
        return number * Decimal(_SUFFIXES[suffix])
    if suffix[:1] in "eE":
        try:
            return number * (Decimal(10) ** int(suffix[1:]))
        except ValueError:
            return None
    return None


def qos_class(spec: pb.PodSpec) -> str:
    """GetPodQOS over cpu and memory."""
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    for c in list(spec.containers) + list(spec.initContainers):
        have = set()
        for name, qty in c.resources.requests.items():
            if name in ("cpu", "memory") and (q := parse_quantity(qty)) is not None and q != 0:
                requests[name] = requests.get(name, Decimal(0)) + q
        for name, qty in c.resources.limits.items():
            if name in ("cpu", "memory") and (q := parse_quantity(qty)) is not None and q != 0:
                limits[name] = limits.get(name, Decimal(0)) + q
                have.add(name)
        if have != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"


# ------------------------------------------------------------------ validation


def validate_pod_spec(spec: pb.PodSpec, path: str) -> list[FieldError]:
    errs = validate_containers(spec.containers, f"{path}.containers")
    errs += _validate_init_containers(spec, f"{path}.initContainers")
    errs += _validate_enum(spec.restartPolicy, RESTART_POLICIES, f"{path}.restartPolicy")
    errs += _validate_enum(spec.dnsPolicy, DNS_POLICIES, f"{path}.dnsPolicy")
    errs += v.validate_labels(dict(spec.nodeSelector), f"{path}.nodeSelector")
    if spec.serviceAccountName:
        errs += v.validate_each(f"{path}.serviceAccountName", spec.serviceAccountName,
                                v.name_is_dns_subdomain(spec.serviceAccountName))
    if spec.nodeName:
        errs += v.validate_each(f"{path}.nodeName", spec.nodeName, v.name_is_dns_subdomain(spec.nodeName))
    if spec.hostname:
        errs += v.validate_dns1123_label(spec.hostname, f"{path}.hostname")
    if spec.subdomain:
        errs += v.validate_dns1123_label(spec.subdomain, f"{path}.subdomain")
    errs += validate_tolerations(spec.tolerations, f"{path}.tolerations")
    if spec.hostNetwork:
        for i, c in enumerate(spec.containers):
            for j, p in enumerate(c.ports):
                if p.hostPort != p.containerPort:
                    errs.append(invalid(f"{path}.containers[{i}].ports[{j}].containerPort", p.containerPort,
                                        "must match `hostPort` when `hostNetwork` is true"))
    return errs


def _validate_enum(value: str, allowed: list[str], path: str) -> list[FieldError]:
    if not value:
        return [required(path)]
    if value not in allowed:
        return [v.not_supported(path, value, allowed)]
    return []


def validate_containers(containers: Iterable[pb.Container], path: str) -> list[FieldError]:
    containers = list(containers)
    if not containers:
        return [required(path)]
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, c in enumerate(containers):
        cpath = f"{path}[{i}]"
        if not c.name:
            errs.append(required(f"{cpath}.name"))
        else:
            errs += v.validate_dns1123_label(c.name, f"{cpath}.name")
        if c.name in names:
            errs.append(v.duplicate(f"{cpath}.name", c.name))
        names.add(c.name)
        if not c.image:
            errs.append(required(f"{cpath}.image"))
        if c.HasField("lifecycle"):
            for hook in ("postStart", "preStop"):
                if c.lifecycle.HasField(hook):
                    errs += _validate_handler(getattr(c.lifecycle, hook), f"{cpath}.lifecycle.{hook}")
        errs += _validate_probe(c, "livenessProbe", cpath)
        if c.HasField("readinessProbe") and c.readinessProbe.HasField("terminationGracePeriodSeconds"):
            errs.append(invalid(f"{cpath}.readinessProbe.terminationGracePeriodSeconds",
                                c.readinessProbe.terminationGracePeriodSeconds, "must not be set for readinessProbes"))
        errs += _validate_probe(c, "startupProbe", cpath)
        for probe in ("livenessProbe", "startupProbe"):
            if c.HasField(probe) and getattr(c, probe).successThreshold != 1:
                errs.append(invalid(f"{cpath}.{probe}.successThreshold", getattr(c, probe).successThreshold, "must be 1"))
        if not c.terminationMessagePolicy:
            errs.append(required(f"{cpath}.terminationMessagePolicy", "must be 'File' or 'FallbackToLogsOnError'"))
        elif c.terminationMessagePolicy not in ("File", "FallbackToLogsOnError"):
            errs.append(invalid(f"{cpath}.terminationMessagePolicy", c.terminationMessagePolicy,
                                "must be 'File' or 'FallbackToLogsOnError'"))
        errs += _validate_probe(c, "readinessProbe", cpath)
        errs += _validate_container_ports(c.ports, f"{cpath}.ports")
        errs += _validate_env(c.env, f"{cpath}.env")
        if not c.imagePullPolicy:
            errs.append(required(f"{cpath}.imagePullPolicy"))
        elif c.imagePullPolicy not in PULL_POLICIES:
            errs.append(v.not_supported(f"{cpath}.imagePullPolicy", c.imagePullPolicy, sorted(PULL_POLICIES)))
    errs += _check_host_port_conflicts(containers, path)
    return errs


def _validate_init_containers(spec: pb.PodSpec, path: str) -> list[FieldError]:
    if not spec.initContainers:
        return []
    errs = validate_containers(spec.initContainers, path)
    names = {c.name for c in spec.containers}
    for i, c in enumerate(spec.initContainers):
        if c.name in names:
            errs.append(v.duplicate(f"{path}[{i}].name", c.name))
        if c.name:
            names.add(c.name)
        for f in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
            if c.HasField(f):
                errs.append(forbidden(f"{path}[{i}].{f}", "may not be set for init containers without restartPolicy=Always"))
    return errs


def _validate_probe(c: pb.Container, name: str, cpath: str) -> list[FieldError]:
    if not c.HasField(name):
        return []
    probe: pb.Probe = getattr(c, name)
    path = f"{cpath}.{name}"
    errs = _validate_handler(probe, path)
    for f in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs += v.validate_nonnegative(getattr(probe, f), f"{path}.{f}")
    if probe.HasField("terminationGracePeriodSeconds") and probe.terminationGracePeriodSeconds <= 0:
        errs.append(invalid(f"{path}.terminationGracePeriodSeconds", probe.terminationGracePeriodSeconds,
                            "must be greater than 0"))
    return errs


def _validate_handler(handler: pb.Probe | pb.LifecycleHandler, path: str) -> list[FieldError]:
    """Exactly one of exec, httpGet, tcpSocket; the second one named is the one reported."""
    errs: list[FieldError] = []
    count = 0
    for kind in ("exec", "httpGet", "tcpSocket"):
        if not handler.HasField(kind):
            continue
        if count:
            errs.append(forbidden(f"{path}.{kind}", "may not specify more than 1 handler type"))
            continue
        count += 1
        action = getattr(handler, kind)
        if kind == "exec" and not action.command:
            errs.append(required(f"{path}.exec.command"))
        elif kind == "httpGet":
            if not action.path:
                errs.append(required(f"{path}.httpGet.path"))
            errs += v.validate_port_num_or_name(action.port, f"{path}.httpGet.port")
            if action.scheme not in HTTP_SCHEMES:
                errs.append(v.not_supported(f"{path}.httpGet.scheme", action.scheme, HTTP_SCHEMES))
            for header in action.httpHeaders:
                errs += v.validate_each(f"{path}.httpGet.httpHeaders", header.name, v.is_http_header_name(header.name))
        elif kind == "tcpSocket":
            errs += v.validate_port_num_or_name(action.port, f"{path}.tcpSocket.port")
    if not count:
        errs.append(required(path, "must specify a handler type"))
    return errs


def _validate_container_ports(ports: Iterable[pb.ContainerPort], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, p in enumerate(ports):
        ppath = f"{path}[{i}]"
        if p.name:
            msgs = v.is_valid_port_name(p.name)
            if msgs:
                errs += v.validate_each(f"{ppath}.name", p.name, msgs)
            elif p.name in names:
                errs.append(v.duplicate(f"{ppath}.name", p.name))
            else:
                names.add(p.name)
        if p.containerPort == 0:
            errs.append(required(f"{ppath}.containerPort"))
        else:
            errs += v.validate_each(f"{ppath}.containerPort", p.containerPort, v.is_valid_port_num(p.containerPort))
        if p.hostPort:
            errs += v.validate_each(f"{ppath}.hostPort", p.hostPort, v.is_valid_port_num(p.hostPort))
        if not p.protocol:
            errs.append(required(f"{ppath}.protocol"))
        elif p.protocol not in PROTOCOLS:
            errs.append(v.not_supported(f"{ppath}.protocol", p.protocol, PROTOCOLS))
    return errs


def _check_host_port_conflicts(containers: list[pb.Container], path: str) -> list[FieldError]:
    seen: set[str] = set()
    errs = []
    for i, c in enumerate(containers):
        for j, p in enumerate(c.ports):
            if not p.hostPort:
                continue
            key = f"{p.protocol}/{p.hostIP}/{p.hostPort}"
            if key in seen:
                errs.append(v.duplicate(f"{path}[{i}].ports[{j}].hostPort", key))
            seen.add(key)
    return errs


def _validate_env(env: Iterable[pb.EnvVar], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, e in enumerate(env):
        epath = f"{path}[{i}]"
        if not e.name:
            errs.append(required(f"{epath}.name"))
        elif any(not (0x20 <= ord(ch) < 0x7f) or ch == "=" for ch in e.name):
            # RelaxedEnvironmentVariableValidation, on by default in current Kubernetes.
            errs.append(invalid(f"{epath}.name", e.name, "a valid environment variable name must consist only "
                                                        "of printable ASCII characters other than '='"))
        if e.HasField("valueFrom"):
            errs += _validate_env_source(e, f"{epath}.valueFrom")
    return errs


def _validate_env_source(e: pb.EnvVar, path: str) -> list[FieldError]:
    src = e.valueFrom
    errs: list[FieldError] = []
    sources = 0
    if src.HasField("fieldRef"):
        sources += 1
        ref = src.fieldRef
        if not ref.apiVersion:
            errs.append(required(f"{path}.fieldRef.apiVersion"))
        elif not ref.fieldPath:
            errs.append(required(f"{path}.fieldRef.fieldPath"))
        else:
            subscripted = re.fullmatch(r"(metadata\.(?:labels|annotations))\['(.*)'\]", ref.fieldPath)
            if subscripted:
                key = subscripted.group(2)
                if subscripted.group(1) == "metadata.annotations":
                    key = key.lower()
                errs += v.validate_qualified_name(key, f"{path}.fieldRef")
            elif ref.fieldPath not in ENV_FIELD_PATHS:
                errs.append(v.not_supported(f"{path}.fieldRef.fieldPath", ref.fieldPath, ENV_FIELD_PATHS))
    for kind in ("configMapKeyRef", "secretKeyRef"):
        if src.HasField(kind):
            sources += 1
            ref = getattr(src, kind)
            errs += v.validate_each(f"{path}.{kind}.name", ref.name, v.name_is_dns_subdomain(ref.name))
            if not ref.key:
                errs.append(required(f"{path}.{kind}.key"))
            else:
                errs += v.validate_each(f"{path}.{kind}.key", ref.key, v.is_config_map_key(ref.key))
    if sources == 0:
        errs.append(invalid(path, "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                      "`configMapKeyRef` or `secretKeyRef`"))
    elif e.value:
        errs.append(invalid(path, "", "may not be specified when `value` is not empty"))
    elif sources > 1:
        errs.append(invalid(path, "", "may not have more than one field specified at a time"))
    return errs


def _go_toleration(t: pb.Toleration) -> v.GoValue:
    seconds = f"&{t.tolerationSeconds}" if t.HasField("tolerationSeconds") else "(*int64)(nil)"
    return v.GoValue(f"core.Toleration{{Key:{v.go_quote(t.key)}, Operator:{v.go_quote(t.operator)}, "
                     f"Value:{v.go_quote(t.value)}, Effect:{v.go_quote(t.effect)}, TolerationSeconds:{seconds}}}")


def validate_tolerations(tolerations: Iterable[pb.Toleration], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, t in enumerate(tolerations):
        tpath = f"{path}[{i}]"
        if t.key:
            errs += v.validate_qualified_name(t.key, f"{tpath}.key")
        if not t.key and t.operator != "Exists":
            errs.append(invalid(f"{tpath}.operator", t.operator,
                                'operator must be Exists when `key` is empty, which means "match all values and all keys"'))
        if t.HasField("tolerationSeconds") and t.effect != "NoExecute":
            errs.append(invalid(f"{tpath}.effect", t.effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if t.operator in ("Equal", ""):
            if msgs := v.is_label_value(t.value):
                errs.append(invalid(f"{tpath}.operator", t.value, ";".join(msgs)))
        elif t.operator == "Exists":
            if t.value:
                errs.append(invalid(f"{tpath}.operator", _go_toleration(t), "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(v.not_supported(f"{tpath}.operator", t.operator, TOLERATION_OPERATORS))
        if t.effect and t.effect not in TAINT_EFFECTS:
            errs.append(v.not_supported(f"{tpath}.effect", t.effect, TAINT_EFFECTS))
    return errs


def validate_pod_template_spec(template: pb.PodTemplateSpec, path: str) -> list[FieldError]:
    """ValidatePodTemplateSpec; labels are reported at `<path>.labels`, as Kubernetes does."""
    errs = v.validate_labels(dict(template.metadata.labels), f"{path}.labels")
    errs += v.validate_annotations(dict(template.metadata.annotations), f"{path}.annotations")
    errs += validate_pod_spec(template.spec, f"{path}.spec")
    return errs


def _spec_diff(old: pb.PodSpec, new: pb.PodSpec) -> str:
    """Stands in for Go's cmp.Diff in the "pod updates may not change" message."""
    a = json.dumps(objects.to_dict(old), indent=2, sort_keys=True).splitlines()
    b = json.dumps(objects.to_dict(new), indent=2, sort_keys=True).splitlines()
    return "\n".join(line for line in difflib.unified_diff(a, b, n=1, lineterm="")
                     if not line.startswith(("---", "+++")))


def validate_pod_update(new: pb.Pod, old: pb.Pod) -> list[FieldError]:
    if len(new.spec.containers) != len(old.spec.containers):
        return [forbidden("spec.containers", "pod updates may not add or remove containers")]
    errs: list[FieldError] = []
    munged = pb.PodSpec()
    munged.CopyFrom(new.spec)
    for mc, oc in zip(munged.containers, old.spec.containers):
        mc.image = oc.image
    for mc, oc in zip(munged.initContainers, old.spec.initContainers):
        mc.image = oc.image
    for ot in old.spec.tolerations:
        if not any(_same_toleration(ot, nt) for nt in new.spec.tolerations):
            errs.append(forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"))
            break
    del munged.tolerations[:]
    munged.tolerations.extend(old.spec.tolerations)
    if old.spec.terminationGracePeriodSeconds < 0 and new.spec.terminationGracePeriodSeconds == 1:
        munged.terminationGracePeriodSeconds = old.spec.terminationGracePeriodSeconds
    if not old.spec.nodeName:
        munged.ClearField("nodeName")  # a binding; see the module docstring
    if munged != old.spec:
        errs.append(forbidden("spec", f"pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n"
                                      + _spec_diff(old.spec, munged)))
    return errs


def _same_toleration(old: pb.Toleration, new: pb.Toleration) -> bool:
    a, b = pb.Toleration(), pb.Toleration()
    a.CopyFrom(old)
    b.CopyFrom(new)
    a.ClearField("tolerationSeconds")
    b.ClearField("tolerationSeconds")
    return a == b


def validate_pod_status(pod: pb.Pod) -> list[FieldError]:
    errs: list[FieldError] = []
    st = pod.status
    for field, entries in (("podIPs", st.podIPs), ("hostIPs", st.hostIPs)):
        ips = [e.ip for e in entries]
        for i, ip in enumerate(ips):
            errs += v.is_valid_ip(f"status.{field}[{i}]", ip)
        if len(ips) > 1 and not any(e.field.startswith(f"status.{field}") for e in errs):
            if len(ips) > 2 or {v.ip_family(ip) for ip in ips} != {"IPv4", "IPv6"}:
                type_name = "PodIP" if field == "podIPs" else "HostIP"
                items = ", ".join(f"core.{type_name}{{IP:{v.go_quote(ip)}}}" for ip in ips)
                shown = v.GoValue(f"[]core.{type_name}{{{items}}}")
                errs.append(invalid(f"status.{field}", shown, "may specify no more than one IP for each IP family"))
    if st.nominatedNodeName:
        errs += v.validate_each("status.nominatedNodeName", st.nominatedNodeName,
                                v.name_is_dns_subdomain(st.nominatedNodeName))
    return errs


class PodStrategy(ObjectStrategy):
    kind = "Pod"
    generation_fields = ("spec",)
    resets_status = True

    def default(self, obj: pb.Pod) -> None:
        set_pod_defaults(obj)

    def initial_status(self, obj: pb.Pod) -> None:
        obj.status.phase = "Pending"

    def prepare_for_create(self, obj: pb.Pod) -> None:
        super().prepare_for_create(obj)
        obj.status.qosClass = qos_class(obj.spec)

    def validate_spec(self, obj: pb.Pod) -> list[FieldError]:
        errs = validate_pod_spec(obj.spec, "spec")
        for i, c in enumerate(obj.spec.containers):
            if c.image != c.image.strip():
                errs.append(invalid(f"spec.containers[{i}].image", c.image, "must not have leading or trailing whitespace"))
        return errs

    def validate_spec_update(self, new: pb.Pod, old: pb.Pod) -> list[FieldError]:
        return validate_pod_update(new, old)

    def validate_status_update(self, new: pb.Pod, old: pb.Pod) -> list[FieldError]:
        return validate_pod_status(new)
