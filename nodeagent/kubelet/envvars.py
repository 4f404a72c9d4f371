"""A container's environment, built as the kubelet builds it. Pure functions.

Order and precedence follow Kubernetes (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables):
the Service variables come first, then the container's `env` in order, each value expanded
with `$(VAR)` against everything defined before it; a later definition wins. kubemu adds
POD_NAME, POD_NAMESPACE, POD_IP and NODE_NAME before the container's own `env`, so a manifest
can still override them. Command and args are expanded against the final environment.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping

from kubemu.v1 import objects_pb2 as pb

MASTER_SERVICES = ("kubernetes",)


class FieldRefError(ValueError):
    pass


def env_var_name(name: str) -> str:
    """Service name -> variable prefix: `redis-primary` -> `REDIS_PRIMARY`."""
    out = name.replace("-", "_").upper()
    return "_" + out if out[:1].isdigit() else out


def _ip_set(svc: pb.Service) -> bool:
    return svc.spec.clusterIP not in ("", "None")


def services_for_pod(services: Iterable[pb.Service], namespace: str, enable_links: bool) -> list[pb.Service]:
    """The Services whose variables a pod gets: its namespace's (unless service links are off)
    and always the `kubernetes` Service of `default`, a same-named Service of the pod's own
    namespace taking precedence."""
    chosen: dict[str, pb.Service] = {}
    for svc in services:
        if not _ip_set(svc) or not svc.spec.ports:
            continue
        name = svc.metadata.name
        if svc.metadata.namespace == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif svc.metadata.namespace == namespace and enable_links:
            chosen[name] = svc
    return [chosen[k] for k in sorted(chosen)]


def service_env(services: Iterable[pb.Service]) -> list[tuple[str, str]]:
    """Kubernetes' envvars.FromServices: `<NAME>_SERVICE_HOST`, `_SERVICE_PORT[_<PORTNAME>]`
    and the Docker-link variables `<NAME>_PORT`, `<NAME>_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]`."""
    out: list[tuple[str, str]] = []
    for svc in services:
        if not _ip_set(svc) or not svc.spec.ports:
            continue
        prefix = env_var_name(svc.metadata.name)
        ip = svc.spec.clusterIP
        out.append((prefix + "_SERVICE_HOST", ip))
        out.append((prefix + "_SERVICE_PORT", str(svc.spec.ports[0].port)))
        for sp in svc.spec.ports:
            if sp.name:
                out.append((f"{prefix}_SERVICE_PORT_{env_var_name(sp.name)}", str(sp.port)))
        for i, sp in enumerate(svc.spec.ports):
            proto = (sp.protocol or "TCP")
            url = f"{proto.lower()}://{ip}:{sp.port}"
            if i == 0:
                out.append((prefix + "_PORT", url))
            pp = f"{prefix}_PORT_{sp.port}_{proto.upper()}"
            out += [(pp, url), (pp + "_PROTO", proto.lower()), (pp + "_PORT", str(sp.port)), (pp + "_ADDR", ip)]
    return out


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


def field_ref(pod: pb.Pod, path: str, *, pod_ip: str, host_ip: str) -> str:
    """The value of a `valueFrom.fieldRef.fieldPath` (the paths the downward API supports)."""
    m = _SUBSCRIPT.match(path)
    if m:
        source = pod.metadata.labels if m.group(1) == "labels" else pod.metadata.annotations
        return source.get(m.group(2), "")
    simple = {
        "metadata.name": lambda: pod.metadata.name,
        "metadata.namespace": lambda: pod.metadata.namespace,
        "metadata.uid": lambda: pod.metadata.uid,
        "spec.nodeName": lambda: pod.spec.nodeName,
        "spec.serviceAccountName": lambda: pod.spec.serviceAccountName,
        "status.hostIP": lambda: host_ip,
        "status.hostIPs": lambda: host_ip,
        "status.podIP": lambda: pod_ip,
        "status.podIPs": lambda: pod_ip,
    }
    fn = simple.get(path)
    if fn is None:
        raise FieldRefError(f'unsupported fieldPath "{path}"')
    return fn()


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' $(VAR) expansion: `$(VAR)` becomes its value when VAR is defined and stays
    as written otherwise; `$$` is a literal `$` (so `$$(VAR)` yields `$(VAR)`); a `$(` that is
    never closed stays as written."""
    out: list[str] = []
    i, n = 0, len(text)
    checkpoint = 0
    while i < n:
        if text[i] == "$" and i + 1 < n:
            out.append(text[checkpoint:i])
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 1
            elif nxt == "(":
                close = text.find(")", i + 2)
                if close == -1:
                    out.append("$(")
                    i += 1
                else:
                    name = text[i + 2:close]
                    value = lookup(name)
                    out.append(value if value is not None else f"$({name})")
                    i = close
            else:
                out.append("$" + nxt)
                i += 1
            checkpoint = i + 1
        i += 1
    out.append(text[checkpoint:])
    return "".join(out)


def container_env(pod: pb.Pod, container: pb.Container, *, services: Iterable[pb.Service],
                  pod_ip: str, host_ip: str) -> list[tuple[str, str]]:
    """The environment of one container, as (name, value) in definition order, names unique."""
    env: dict[str, str] = {}
    enable_links = pod.spec.enableServiceLinks if pod.spec.HasField("enableServiceLinks") else True
    for k, v in service_env(services_for_pod(services, pod.metadata.namespace, enable_links)):
        env[k] = v
    env["POD_NAME"] = pod.metadata.name
    env["POD_NAMESPACE"] = pod.metadata.namespace
    env["POD_IP"] = pod_ip
    env["NODE_NAME"] = pod.spec.nodeName
    for e in container.env:
        if e.HasField("valueFrom"):
            if e.valueFrom.HasField("fieldRef"):
                env[e.name] = field_ref(pod, e.valueFrom.fieldRef.fieldPath, pod_ip=pod_ip, host_ip=host_ip)
            else:
                raise FieldRefError(f"env {e.name}: only valueFrom.fieldRef is supported "
                                    "(kubemu has no ConfigMaps or Secrets)")
        else:
            env[e.name] = expand(e.value, env.get)
    return list(env.items())


def expand_argv(argv: Iterable[str], env: Mapping[str, str]) -> list[str]:
    return [expand(a, env.get) for a in argv]
