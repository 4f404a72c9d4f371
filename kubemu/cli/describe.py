"""What `kubemu describe` prints, following kubectl's describers (k8s.io/kubectl/pkg/describe).

Pure functions: the object plus what kubectl would fetch alongside it (EndpointSlices for a
Service, Events whose involvedObject is the object, a Node's pods and Lease, a Deployment's
ReplicaSets) go in, text comes out. Lines are written with tabs and aligned by Go's
tabwriter rules with describe's settings (minimum width 0, padding 2), so the layout matches
kubectl's. Kinds without a dedicated describer (Lease, Event) get kubectl's generic one.
"""
from __future__ import annotations

import datetime
import decimal
import re
from typing import Any, Iterable

from google.protobuf.message import Message

from kubemu import objects
from kubemu.cli import printers
from kubemu.cli.merge import LAST_APPLIED

MAX_ANNOTATION_LEN = 140
SKIP_ANNOTATIONS = {LAST_APPLIED}


class Writer:
    """kubectl's PrefixWriter: two spaces of indent per level, tabs separate columns."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, level: int, text: str) -> None:
        self.parts.append("  " * level + text)

    def text(self) -> str:
        return printers.tabwrite("".join(self.parts), printers.DESCRIBE_MIN_WIDTH,
                                 printers.DESCRIBE_PADDING)


def _labels_multiline(w: Writer, title: str, labels: Any, initial: str = "", inner: str = "\t") -> None:
    w.write(0, f"{initial}{title}:{inner}")
    items = sorted(dict(labels).items())
    if not items:
        w.write(0, "<none>\n")
        return
    for i, (k, v) in enumerate(items):
        if i:
            w.write(0, initial + inner)
        w.write(0, f"{k}={v}\n")


def _annotations_multiline(w: Writer, title: str, annotations: Any) -> None:
    w.write(0, f"{title}:\t")
    keys = sorted(k for k in dict(annotations) if k not in SKIP_ANNOTATIONS)
    if not keys:
        w.write(0, "<none>\n")
        return
    for i, k in enumerate(keys):
        if i:
            w.write(0, "\t")
        value = annotations[k].removesuffix("\n")
        if len(value) + len(k) + 2 > MAX_ANNOTATION_LEN or "\n" in value:
            w.write(0, f"{k}:\n")
            for s in value.split("\n"):
                limit = MAX_ANNOTATION_LEN - 2
                w.write(0, f"\t  {s[:limit] + '...' if len(s) > limit else s}\n")
        else:
            w.write(0, f"{k}: {value}\n")


def _meta_header(w: "Writer", obj: Message) -> None:
    """Name, Namespace, Labels and Annotations: how most of kubectl's describers begin."""
    w.write(0, f"Name:\t{obj.metadata.name}\n")
    w.write(0, f"Namespace:\t{obj.metadata.namespace}\n")
    _labels_multiline(w, "Labels", obj.metadata.labels)
    _annotations_multiline(w, "Annotations", obj.metadata.annotations)

def _events(w: Writer, events: list[Message] | None, now: datetime.datetime) -> None:
    if events is None:
        return
    if not events:
        w.write(0, "Events:\t<none>\n")
        return
    ordered = sorted(events, key=lambda e: e.lastTimestamp or e.eventTime or e.firstTimestamp)
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
    w.write(1, "----\t------\t----\t----\t-------\n")
    for e in ordered:
        first = printers.age(e.eventTime, now) if e.eventTime else printers.age(e.firstTimestamp, now)
        if e.count > 1:
            interval = f"{printers.age(e.lastTimestamp, now)} (x{e.count} over {first})"
        else:
            interval = first
        source = e.source.component or e.reportingComponent
        w.write(1, f"{e.type}\t{e.reason}\t{interval}\t{source}\t{e.message.strip()}\n")


def events_for(obj: Message, events: Iterable[Message]) -> list[Message]:
    """The Events about `obj`, as kubectl's field selector on involvedObject picks them."""
    k = objects.kind_of(obj)
    out = []
    for e in events:
        ref = e.involvedObject
        if ref.kind != k.kind or ref.name != obj.metadata.name:
            continue
        if k.namespaced and (ref.namespace or e.metadata.namespace) != obj.metadata.namespace:
            continue
        if ref.uid and obj.metadata.uid and ref.uid != obj.metadata.uid and k.kind != "Node":
            continue
        out.append(e)
    return out


def _controller(obj: Message) -> str:
    for ref in obj.metadata.ownerReferences:
        if ref.controller:
            return f"{ref.kind}/{ref.name}"
    return ""


# ------------------------------------------------------------------ Service

def _ingress_string(ingress: Iterable[Any]) -> str:
    parts = []
    for i in ingress:
        if i.ip:
            parts.append(i.ip + (f" ({i.ipMode})" if i.ipMode else ""))
        else:
            parts.append(i.hostname)
    return ", ".join(parts)


def format_endpoint_slices(slices: list[Message], port_name: str | None) -> str:
    """kubectl's formatEndpointSlices: ready `ip:port` of the named port, three then `+ N more...`."""
    if not slices:
        return "<none>"
    items: list[str] = []
    limit = 3
    more = False
    count = 0
    for s in slices:
        if not s.ports:
            for e in s.endpoints:
                if len(items) == limit:
                    more = True
                if e.conditions.HasField("ready") and not e.conditions.ready:
                    continue
                if not more and e.addresses:
                    items.append(e.addresses[0])
                count += 1
            continue
        for p in s.ports:
            if port_name is not None and p.name != port_name:
                continue
            for e in s.endpoints:
                if len(items) == limit:
                    more = True
                if e.conditions.HasField("ready") and not e.conditions.ready:
                    continue
                if not more and e.addresses:
                    addr = e.addresses[0]
                    host = f"[{addr}]" if ":" in addr else addr
                    items.append(f"{host}:{p.port}")
                count += 1
    ret = ",".join(items)
    if more:
        return f"{ret} + {count - limit} more..."
    return ret


def describe_service(svc: Message, slices: list[Message], events: list[Message] | None,
                     now: datetime.datetime) -> str:
    w = Writer()
    spec = svc.spec
    _meta_header(w, svc)
    w.write(0, f"Selector:\t{printers.format_labels(spec.selector)}\n")
    w.write(0, f"Type:\t{spec.type or 'ClusterIP'}\n")
    if spec.ipFamilyPolicy:
        w.write(0, f"IP Family Policy:\t{spec.ipFamilyPolicy}\n")
    w.write(0, f"IP Families:\t{','.join(spec.ipFamilies) or '<none>'}\n")
    w.write(0, f"IP:\t{spec.clusterIP}\n")
    w.write(0, f"IPs:\t{','.join(spec.clusterIPs) or '<none>'}\n")
    if spec.externalIPs:
        w.write(0, f"External IPs:\t{','.join(spec.externalIPs)}\n")
    if spec.loadBalancerIP:
        w.write(0, f"Desired LoadBalancer IP:\t{spec.loadBalancerIP}\n")
    if spec.externalName:
        w.write(0, f"External Name:\t{spec.externalName}\n")
    if svc.status.loadBalancer.ingress:
        w.write(0, f"LoadBalancer Ingress:\t{_ingress_string(svc.status.loadBalancer.ingress)}\n")
    for p in spec.ports:
        name = p.name or "<unset>"
        proto = p.protocol or "TCP"
        w.write(0, f"Port:\t{name}\t{p.port}/{proto}\n")
        target = objects.ios_value(p.targetPort) if p.HasField("targetPort") else p.port
        w.write(0, f"TargetPort:\t{target}/{proto}\n")
        if p.nodePort:
            w.write(0, f"NodePort:\t{name}\t{p.nodePort}/{proto}\n")
        w.write(0, f"Endpoints:\t{format_endpoint_slices(slices, p.name)}\n")
    w.write(0, f"Session Affinity:\t{spec.sessionAffinity or 'None'}\n")
    if spec.externalTrafficPolicy:
        w.write(0, f"External Traffic Policy:\t{spec.externalTrafficPolicy}\n")
    if spec.internalTrafficPolicy:
        w.write(0, f"Internal Traffic Policy:\t{spec.internalTrafficPolicy}\n")
    if spec.healthCheckNodePort:
        w.write(0, f"HealthCheck NodePort:\t{spec.healthCheckNodePort}\n")
    if spec.loadBalancerSourceRanges:
        w.write(0, f"LoadBalancer Source Ranges:\t{','.join(spec.loadBalancerSourceRanges)}\n")
    _events(w, events, now)
    return w.text()


# ------------------------------------------------------------------ containers and pods

def describe_probe(probe: Any) -> str:
    def num(field: str, default: int) -> int:
        return getattr(probe, field) if probe.HasField(field) else default
    attrs = (f"delay={probe.initialDelaySeconds}s timeout={num('timeoutSeconds', 1)}s "
             f"period={num('periodSeconds', 10)}s #success={num('successThreshold', 1)} "
             f"#failure={num('failureThreshold', 3)}")
    if probe.HasField("exec"):
        return f"exec [{' '.join(probe.exec.command)}] {attrs}"
    if probe.HasField("httpGet"):
        g = probe.httpGet
        port = str(objects.ios_value(g.port)) if g.HasField("port") else ""
        host = g.host
        if port:
            host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return f"http-get {(g.scheme or 'HTTP').lower()}://{host}{g.path} {attrs}"
    if probe.HasField("tcpSocket"):
        port = objects.ios_value(probe.tcpSocket.port) if probe.tcpSocket.HasField("port") else ""
        return f"tcp-socket {probe.tcpSocket.host}:{port} {attrs}"
    return f"unknown {attrs}"


def _container_state(w: Writer, name: str, state: Any) -> None:
    if state.HasField("running"):
        w.write(2, f"{name}:\tRunning\n")
        w.write(3, f"Started:\t{printers.rfc1123z(state.running.startedAt)}\n")
    elif state.HasField("waiting"):
        w.write(2, f"{name}:\tWaiting\n")
        if state.waiting.reason:
            w.write(3, f"Reason:\t{state.waiting.reason}\n")
    elif state.HasField("terminated"):
        t = state.terminated
        w.write(2, f"{name}:\tTerminated\n")
        if t.reason:
            w.write(3, f"Reason:\t{t.reason}\n")
        if t.message:
            w.write(3, f"Message:\t{t.message}\n")
        w.write(3, f"Exit Code:\t{t.exitCode}\n")
        if t.signal > 0:
            w.write(3, f"Signal:\t{t.signal}\n")
        w.write(3, f"Started:\t{printers.rfc1123z(t.startedAt)}\n")
        w.write(3, f"Finished:\t{printers.rfc1123z(t.finishedAt)}\n")
    else:
        w.write(2, f"{name}:\tWaiting\n")


def _env_value(pod: Message | None, field_path: str) -> str:
    if pod is None:
        return ""
    return {
        "metadata.name": pod.metadata.name, "metadata.namespace": pod.metadata.namespace,
        "metadata.uid": pod.metadata.uid, "spec.nodeName": pod.spec.nodeName,
        "spec.serviceAccountName": pod.spec.serviceAccountName, "status.podIP": pod.status.podIP,
        "status.hostIP": pod.status.hostIP,
    }.get(field_path, "")


def _containers(w: Writer, label: str, containers: Iterable[Any], statuses: Iterable[Any] | None,
                pod: Message | None, space: str) -> None:
    containers = list(containers)
    by_name = {s.name: s for s in (statuses or [])}
    w.write(0, f"{space}{label}:{' <none>' if not containers else ''}\n")
    indent = " " if space else ""
    for c in containers:
        st = by_name.get(c.name)
        w.write(1, f"{indent}{c.name}:\n")
        if st is not None:
            w.write(2, f"Container ID:\t{st.containerID}\n")
        w.write(2, f"Image:\t{c.image}\n")
        if st is not None:
            w.write(2, f"Image ID:\t{st.imageID}\n")
        ports = ", ".join(f"{p.containerPort}/{p.protocol or 'TCP'}" for p in c.ports)
        w.write(2, f"Ports:\t{ports}\n" if "," in ports else f"Port:\t{ports or '<none>'}\n")
        hosts = ", ".join(f"{p.hostPort}/{p.protocol or 'TCP'}" for p in c.ports)
        w.write(2, f"Host Ports:\t{hosts}\n" if "," in hosts else f"Host Port:\t{hosts or '<none>'}\n")
        if c.command:
            w.write(2, "Command:\n")
            for arg in c.command:
                for s in arg.split("\n"):
                    w.write(3, f"{s}\n")
        if c.args:
            w.write(2, "Args:\n")
            for arg in c.args:
                for s in arg.split("\n"):
                    w.write(3, f"{s}\n")
        if st is not None:
            _container_state(w, "State", st.state)
            if st.lastState.HasField("terminated"):
                _container_state(w, "Last State", st.lastState)
            w.write(2, f"Ready:\t{'True' if st.ready else 'False'}\n")
            w.write(2, f"Restart Count:\t{st.restartCount}\n")
        for title, values in (("Limits", c.resources.limits), ("Requests", c.resources.requests)):
            if values:
                w.write(2, f"{title}:\n")
                for k in sorted(values):
                    w.write(3, f"{k}:\t{values[k]}\n")
        for title, field in (("Liveness", "livenessProbe"), ("Readiness", "readinessProbe"),
                             ("Startup", "startupProbe")):
            if c.HasField(field):
                w.write(2, f"{title}:\t{describe_probe(getattr(c, field))}\n")
        w.write(2, "Environment:\t<none>\n" if not c.env else "Environment:\n")
        for e in c.env:
            if e.HasField("valueFrom") and e.valueFrom.HasField("fieldRef"):
                ref = e.valueFrom.fieldRef
                w.write(3, f"{e.name}:\t{_env_value(pod, ref.fieldPath)} ({ref.apiVersion or 'v1'}:{ref.fieldPath})\n")
            elif e.HasField("valueFrom") and e.valueFrom.HasField("secretKeyRef"):
                r = e.valueFrom.secretKeyRef
                w.write(3, f"{e.name}:\t<set to the key '{r.key}' in secret '{r.name}'>\tOptional: {'true' if r.optional else 'false'}\n")
            elif e.HasField("valueFrom") and e.valueFrom.HasField("configMapKeyRef"):
                r = e.valueFrom.configMapKeyRef
                w.write(3, f"{e.name}:\t<set to the key '{r.key}' of config map '{r.name}'>\tOptional: {'true' if r.optional else 'false'}\n")
            else:
                for i, s in enumerate(e.value.split("\n")):
                    w.write(3, f"{e.name}:\t{s}\n" if i == 0 else f"\t{s}\n")
        w.write(2, "Mounts:\t<none>\n")


def qos_class(pod: Message) -> str:
    if pod.status.qosClass:
        return pod.status.qosClass
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    guaranteed = True
    any_set = False
    for c in list(pod.spec.containers) + list(pod.spec.initContainers):
        req, lim = dict(c.resources.requests), dict(c.resources.limits)
        requests.update(req)
        limits.update(lim)
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and parse_quantity(req[r]) != parse_quantity(lim[r])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _tolerations(w: Writer, title: str, tolerations: Iterable[Any], initial: str = "") -> None:
    w.write(0, f"{initial}{title}:\t")
    ts = sorted(tolerations, key=lambda t: t.key)
    if not ts:
        w.write(0, "<none>\n")
        return
    for i, t in enumerate(ts):
        if i:
            w.write(0, initial + "\t")
        s = t.key
        if t.value:
            s += "=" + t.value
        if t.effect:
            s += ":" + t.effect
        if t.operator == "Exists" and not t.value:
            s += " op=Exists" if (t.key or t.effect) else "op=Exists"
        if t.HasField("tolerationSeconds"):
            s += f" for {t.tolerationSeconds}s"
        w.write(0, s + "\n")


def describe_pod(pod: Message, events: list[Message] | None, now: datetime.datetime) -> str:
    w = Writer()
    m, spec, st = pod.metadata, pod.spec, pod.status
    w.write(0, f"Name:\t{m.name}\n")
    w.write(0, f"Namespace:\t{m.namespace}\n")
    if spec.HasField("priority"):
        w.write(0, f"Priority:\t{spec.priority}\n")
    if spec.serviceAccountName:
        w.write(0, f"Service Account:\t{spec.serviceAccountName}\n")
    w.write(0, f"Node:\t{spec.nodeName + '/' + st.hostIP if spec.nodeName else '<none>'}\n")
    if st.startTime:
        w.write(0, f"Start Time:\t{printers.rfc1123z(st.startTime)}\n")
    _labels_multiline(w, "Labels", m.labels)
    _annotations_multiline(w, "Annotations", m.annotations)
    if m.deletionTimestamp and st.phase not in ("Failed", "Succeeded"):
        w.write(0, f"Status:\tTerminating (lasts {printers.age(m.deletionTimestamp, now)})\n")
        w.write(0, f"Termination Grace Period:\t{m.deletionGracePeriodSeconds}s\n")
    else:
        w.write(0, f"Status:\t{st.phase}\n")
    if st.reason:
        w.write(0, f"Reason:\t{st.reason}\n")
    if st.message:
        w.write(0, f"Message:\t{st.message}\n")
    w.write(0, f"IP:\t{st.podIP}\n")
    if not st.podIPs:
        w.write(0, "IPs:\t<none>\n")
    else:
        w.write(0, "IPs:\n")
        for ip in st.podIPs:
            w.write(1, f"IP:\t{ip.ip}\n")
    controller = _controller(pod)
    if controller:
        w.write(0, f"Controlled By:\t{controller}\n")
    if st.nominatedNodeName:
        w.write(0, f"NominatedNodeName:\t{st.nominatedNodeName}\n")
    if spec.initContainers:
        _containers(w, "Init Containers", spec.initContainers, st.initContainerStatuses, pod, "")
    _containers(w, "Containers", spec.containers, st.containerStatuses, pod, "")
    if st.conditions:
        w.write(0, "Conditions:\n  Type\tStatus\n")
        for c in st.conditions:
            w.write(1, f"{c.type} \t{c.status} \n")
    w.write(0, "Volumes:\t<none>\n")
    w.write(0, f"QoS Class:\t{qos_class(pod)}\n")
    _labels_multiline(w, "Node-Selectors", spec.nodeSelector)
    _tolerations(w, "Tolerations", spec.tolerations)
    _events(w, events, now)
    return w.text()


def _pod_template(w: Writer, template: Any) -> None:
    w.write(0, "Pod Template:\n")
    _labels_multiline(w, "  Labels", template.metadata.labels)
    if template.metadata.annotations:
        _annotations_multiline(w, "  Annotations", template.metadata.annotations)
    if template.spec.serviceAccountName:
        w.write(1, f"Service Account:\t{template.spec.serviceAccountName}\n")
    if template.spec.initContainers:
        _containers(w, "Init Containers", template.spec.initContainers, None, None, "  ")
    _containers(w, "Containers", template.spec.containers, None, None, "  ")
    w.write(0, "  Volumes:\t<none>\n")
    _labels_multiline(w, "  Node-Selectors", template.spec.nodeSelector)
    _tolerations(w, "  Tolerations", template.spec.tolerations)


def _pods_status(pods: Iterable[Message], owner_uid: str) -> str:
    counts = {"Running": 0, "Pending": 0, "Succeeded": 0, "Failed": 0}
    for p in pods:
        if not any(r.controller and r.uid == owner_uid for r in p.metadata.ownerReferences):
            continue
        if p.status.phase in counts:
            counts[p.status.phase] += 1
    return (f"{counts['Running']} Running / {counts['Pending']} Waiting / "
            f"{counts['Succeeded']} Succeeded / {counts['Failed']} Failed")


# ------------------------------------------------------------------ Deployment, ReplicaSet

def _template_without_hash(rs_or_d: Message) -> dict[str, Any]:
    t = objects.to_dict(rs_or_d.spec.template)
    labels = t.get("metadata", {}).get("labels", {})
    labels.pop("pod-template-hash", None)
    if "metadata" in t and "labels" in t["metadata"] and not labels:
        del t["metadata"]["labels"]
    return t


def deployment_replicasets(d: Message, replicasets: Iterable[Message]) -> tuple[list[Message], Message | None]:
    """(old, new) ReplicaSets of a Deployment, as deploymentutil finds them."""
    owned = [rs for rs in replicasets
             if any(r.controller and r.uid == d.metadata.uid for r in rs.metadata.ownerReferences)]
    owned.sort(key=lambda rs: (rs.metadata.creationTimestamp, rs.metadata.name))
    want = _template_without_hash(d)
    new = next((rs for rs in owned if _template_without_hash(rs) == want), None)
    return [rs for rs in owned if rs is not new], new


def _rs_list(rss: Iterable[Message]) -> str:
    parts = [f"{rs.metadata.name} ({rs.status.replicas}/{rs.spec.replicas if rs.spec.HasField('replicas') else 1} replicas created)"
             for rs in rss]
    return ", ".join(parts) or "<none>"


def describe_deployment(d: Message, replicasets: list[Message], events: list[Message] | None,
                        now: datetime.datetime) -> str:
    w = Writer()
    st = d.status
    w.write(0, f"Name:\t{d.metadata.name}\n")
    w.write(0, f"Namespace:\t{d.metadata.namespace}\n")
    w.write(0, f"CreationTimestamp:\t{printers.rfc1123z(d.metadata.creationTimestamp)}\n")
    _labels_multiline(w, "Labels", d.metadata.labels)
    _annotations_multiline(w, "Annotations", d.metadata.annotations)
    w.write(0, f"Selector:\t{printers.format_label_selector(d.spec.selector)}\n")
    w.write(0, f"Replicas:\t{printers.deployment_replicas(d)} desired | {st.updatedReplicas} updated | "
               f"{st.replicas} total | {st.availableReplicas} available | {st.unavailableReplicas} unavailable\n")
    strategy = d.spec.strategy.type or "RollingUpdate"
    w.write(0, f"StrategyType:\t{strategy}\n")
    w.write(0, f"MinReadySeconds:\t{d.spec.minReadySeconds}\n")
    if strategy == "RollingUpdate":
        ru = d.spec.strategy.rollingUpdate
        mu = objects.ios_value(ru.maxUnavailable) if ru.HasField("maxUnavailable") else "25%"
        ms = objects.ios_value(ru.maxSurge) if ru.HasField("maxSurge") else "25%"
        w.write(0, f"RollingUpdateStrategy:\t{mu} max unavailable, {ms} max surge\n")
    _pod_template(w, d.spec.template)
    if st.conditions:
        w.write(0, "Conditions:\n  Type\tStatus\tReason\n")
        w.write(1, "----\t------\t------\n")
        for c in st.conditions:
            w.write(1, f"{c.type} \t{c.status}\t{c.reason}\n")
    old, new = deployment_replicasets(d, replicasets)
    if old or new:
        w.write(0, f"OldReplicaSets:\t{_rs_list(old)}\n")
        w.write(0, f"NewReplicaSet:\t{_rs_list([new] if new else [])}\n")
    _events(w, events, now)
    return w.text()


def describe_replicaset(rs: Message, pods: list[Message], events: list[Message] | None,
                        now: datetime.datetime) -> str:
    w = Writer()
    w.write(0, f"Name:\t{rs.metadata.name}\n")
    w.write(0, f"Namespace:\t{rs.metadata.namespace}\n")
    w.write(0, f"Selector:\t{printers.format_label_selector(rs.spec.selector)}\n")
    _labels_multiline(w, "Labels", rs.metadata.labels)
    _annotations_multiline(w, "Annotations", rs.metadata.annotations)
    controller = _controller(rs)
    if controller:
        w.write(0, f"Controlled By:\t{controller}\n")
    desired = rs.spec.replicas if rs.spec.HasField("replicas") else 1
    w.write(0, f"Replicas:\t{rs.status.replicas} current / {desired} desired\n")
    w.write(0, f"Pods Status:\t{_pods_status(pods, rs.metadata.uid)}\n")
    _pod_template(w, rs.spec.template)
    if rs.status.conditions:
        w.write(0, "Conditions:\n  Type\tStatus\tReason\n")
        w.write(1, "----\t------\t------\n")
        for c in rs.status.conditions:
            w.write(1, f"{c.type} \t{c.status}\t{c.reason}\n")
    _events(w, events, now)
    return w.text()


# ------------------------------------------------------------------ Node

_SUFFIXES = {"": 1, "m": decimal.Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
             "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[a-zA-Z]*)$")


def parse_quantity(text: str) -> decimal.Decimal:
    m = _QUANTITY.match(text.strip())
    if not m:
        return decimal.Decimal(0)
    number, suffix = m.groups()
    try:
        value = decimal.Decimal(number)
    except decimal.InvalidOperation:
        return decimal.Decimal(0)
    if suffix[:1] in ("e", "E"):
        return value * (decimal.Decimal(10) ** int(suffix[1:]))
    return value * decimal.Decimal(_SUFFIXES.get(suffix, 1))


def format_quantity(value: decimal.Decimal, binary: bool) -> str:
    """resource.Quantity's canonical form: `500m`, `2`, `384Mi`, `1500m`."""
    if value == 0:
        return "0"
    if binary and value >= 1024 and value == value.to_integral_value():
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            unit = _SUFFIXES[suffix]
            if value % unit == 0:
                return f"{int(value // unit)}{suffix}"
        return str(int(value))
    for exp, suffix in ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k"), (0, ""), (-3, "m")):
        scaled = value / (decimal.Decimal(10) ** exp)
        if scaled == scaled.to_integral_value() and (abs(scaled) >= 1 or exp == -3):
            return f"{int(scaled)}{suffix}"
    return f"{int((value * 1000).to_integral_value(decimal.ROUND_CEILING))}m"


def _pod_resources(pod: Message) -> tuple[dict[str, decimal.Decimal], dict[str, decimal.Decimal], set[str]]:
    req: dict[str, decimal.Decimal] = {}
    lim: dict[str, decimal.Decimal] = {}
    binary: set[str] = set()
    for c in pod.spec.containers:
        for target, values in ((req, c.resources.requests), (lim, c.resources.limits)):
            for k, v in values.items():
                target[k] = target.get(k, decimal.Decimal(0)) + parse_quantity(v)
                if v.endswith("i"):
                    binary.add(k)
    return req, lim, binary


def describe_node(node: Message, pods: list[Message] | None, lease: Message | None,
                  lease_error: str, events: list[Message] | None, now: datetime.datetime) -> str:
    w = Writer()
    w.write(0, f"Name:\t{node.metadata.name}\n")
    w.write(0, f"Roles:\t{','.join(printers.node_roles(node)) or '<none>'}\n")
    _labels_multiline(w, "Labels", node.metadata.labels)
    _annotations_multiline(w, "Annotations", node.metadata.annotations)
    w.write(0, f"CreationTimestamp:\t{printers.rfc1123z(node.metadata.creationTimestamp)}\n")
    w.write(0, "Taints:\t")
    taints = sorted(node.spec.taints, key=lambda t: f"{t.effect},{t.key}")
    if not taints:
        w.write(0, "<none>\n")
    for i, t in enumerate(taints):
        if i:
            w.write(0, "\t")
        w.write(0, f"{t.key}{'=' + t.value if t.value else ''}:{t.effect}\n")
    w.write(0, f"Unschedulable:\t{'true' if node.spec.unschedulable else 'false'}\n")
    if lease is not None:
        w.write(0, "Lease:\n")
        s = lease.spec
        w.write(1, f"HolderIdentity:\t{s.holderIdentity if s.HasField('holderIdentity') else '<unset>'}\n")
        w.write(1, f"AcquireTime:\t{printers.rfc1123z(s.acquireTime) if s.acquireTime else '<unset>'}\n")
        w.write(1, f"RenewTime:\t{printers.rfc1123z(s.renewTime) if s.renewTime else '<unset>'}\n")
    else:
        w.write(0, f"Lease:\tFailed to get lease: {lease_error}\n")
    if node.status.conditions:
        w.write(0, "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n")
        w.write(1, "----\t------\t-----------------\t------------------\t------\t-------\n")
        for c in node.status.conditions:
            w.write(1, f"{c.type} \t{c.status} \t{printers.rfc1123z(c.lastHeartbeatTime)} \t"
                       f"{printers.rfc1123z(c.lastTransitionTime)} \t{c.reason} \t{c.message}\n")
    w.write(0, "Addresses:\n")
    for a in node.status.addresses:
        w.write(1, f"{a.type}:\t{a.address}\n")
    for title, values in (("Capacity", node.status.capacity), ("Allocatable", node.status.allocatable)):
        if values:
            w.write(0, f"{title}:\n")
            for k in sorted(values):
                w.write(0, f"  {k}:\t{values[k]}\n")
    info = node.status.nodeInfo
    w.write(0, "System Info:\n")
    for title, value in (("Machine ID", info.machineID), ("System UUID", ""), ("Boot ID", ""),
                         ("Kernel Version", info.kernelVersion), ("OS Image", info.osImage),
                         ("Operating System", info.operatingSystem), ("Architecture", info.architecture),
                         ("Container Runtime Version", info.containerRuntimeVersion),
                         ("Kubelet Version", info.kubeletVersion), ("Kube-Proxy Version", info.kubeProxyVersion)):
        w.write(0, f"  {title}:\t{value}\n")
    if node.spec.podCIDR:
        w.write(0, f"PodCIDR:\t{node.spec.podCIDR}\n")
    if node.spec.podCIDRs:
        w.write(0, f"PodCIDRs:\t{','.join(node.spec.podCIDRs)}\n")
    if node.spec.providerID:
        w.write(0, f"ProviderID:\t{node.spec.providerID}\n")
    if pods is not None:
        _node_resources(w, node, pods, now)
    _events(w, events, now)
    return w.text()


def _node_resources(w: Writer, node: Message, pods: list[Message], now: datetime.datetime) -> None:
    alloc = dict(node.status.allocatable) or dict(node.status.capacity)
    alloc_cpu = parse_quantity(alloc.get("cpu", "0"))
    alloc_mem = parse_quantity(alloc.get("memory", "0"))

    def pct(v: decimal.Decimal, total: decimal.Decimal) -> int:
        return int(v / total * 100) if total else 0

    def fmt(values: dict[str, decimal.Decimal], binary: set[str], name: str) -> str:
        return format_quantity(values.get(name, decimal.Decimal(0)), name in binary or name == "memory")

    w.write(0, f"Non-terminated Pods:\t({len(pods)} in total)\n")
    w.write(1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n")
    w.write(1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n")
    total_req: dict[str, decimal.Decimal] = {}
    total_lim: dict[str, decimal.Decimal] = {}
    binary_all: set[str] = set()
    for p in pods:
        req, lim, binary = _pod_resources(p)
        binary_all |= binary
        for k, v in req.items():
            total_req[k] = total_req.get(k, decimal.Decimal(0)) + v
        for k, v in lim.items():
            total_lim[k] = total_lim.get(k, decimal.Decimal(0)) + v
        cr, cl = req.get("cpu", decimal.Decimal(0)), lim.get("cpu", decimal.Decimal(0))
        mr, ml = req.get("memory", decimal.Decimal(0)), lim.get("memory", decimal.Decimal(0))
        w.write(1, f"{p.metadata.namespace}\t{p.metadata.name}\t\t"
                   f"{fmt(req, binary, 'cpu')} ({pct(cr, alloc_cpu)}%)\t{fmt(lim, binary, 'cpu')} ({pct(cl, alloc_cpu)}%)\t"
                   f"{fmt(req, binary, 'memory')} ({pct(mr, alloc_mem)}%)\t{fmt(lim, binary, 'memory')} ({pct(ml, alloc_mem)}%)\t"
                   f"{printers.age(p.metadata.creationTimestamp, now)}\n")
    w.write(0, "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n")
    w.write(1, "Resource\tRequests\tLimits\n")
    w.write(1, "--------\t--------\t------\n")
    alloc_eph = parse_quantity(alloc.get("ephemeral-storage", "0"))
    for name, total in (("cpu", alloc_cpu), ("memory", alloc_mem), ("ephemeral-storage", alloc_eph)):
        r = total_req.get(name, decimal.Decimal(0))
        li = total_lim.get(name, decimal.Decimal(0))
        w.write(1, f"{name}\t{fmt(total_req, binary_all, name)} ({pct(r, total)}%)\t"
                   f"{fmt(total_lim, binary_all, name)} ({pct(li, total)}%)\n")


# ------------------------------------------------------------------ Namespace, EndpointSlice

def describe_namespace(ns: Message, events: list[Message] | None, now: datetime.datetime) -> str:
    w = Writer()
    w.write(0, f"Name:\t{ns.metadata.name}\n")
    _labels_multiline(w, "Labels", ns.metadata.labels)
    _annotations_multiline(w, "Annotations", ns.metadata.annotations)
    w.write(0, f"Status:\t{printers.namespace_phase(ns)}\n")
    w.write(0, "\nNo resource quota.\n\nNo LimitRange resource.\n")
    return w.text()


def describe_endpointslice(eps: Message, events: list[Message] | None, now: datetime.datetime) -> str:
    w = Writer()
    _meta_header(w, eps)
    w.write(0, f"AddressType:\t{eps.addressType}\n")
    if not eps.ports:
        w.write(0, "Ports: <unset>\n")
    else:
        w.write(0, "Ports:\n")
        w.write(1, "Name\tPort\tProtocol\n")
        w.write(1, "----\t----\t--------\n")
        for p in eps.ports:
            port = str(p.port) if p.HasField("port") else "<unset>"
            w.write(1, f"{p.name or '<unset>'}\t{port}\t{p.protocol or 'TCP'}\n")
    if not eps.endpoints:
        w.write(0, "Endpoints: <none>\n")
    else:
        w.write(0, "Endpoints:\n")
        for e in eps.endpoints:
            w.write(1, f"- Addresses:\t{', '.join(e.addresses) or '<none>'}\n")
            w.write(2, "Conditions:\n")
            ready = ("true" if e.conditions.ready else "false") if e.conditions.HasField("ready") else "<unset>"
            w.write(3, f"Ready:\t{ready}\n")
            w.write(2, f"Hostname:\t{e.hostname if e.HasField('hostname') else '<unset>'}\n")
            if e.HasField("targetRef"):
                w.write(2, f"TargetRef:\t{e.targetRef.kind}/{e.targetRef.name}\n")
            w.write(2, f"NodeName:\t{e.nodeName if e.HasField('nodeName') else '<unset>'}\n")
            w.write(2, f"Zone:\t{e.zone if e.HasField('zone') else '<unset>'}\n")
    _events(w, events, now)
    return w.text()


def describe_secret(secret: Message, events: list[Message] | None, now: datetime.datetime) -> str:
    """kubectl's secret describer: sizes, never values."""
    w = Writer()
    _meta_header(w, secret)
    w.write(0, f"\nType:\t{secret.type or 'Opaque'}\n\n")
    w.write(0, "Data\n====\n")
    sizes = {k: len(v) for k, v in secret.data.items()}
    sizes.update({k: len(v.encode()) for k, v in secret.stringData.items()})
    for k in sorted(sizes):
        w.write(0, f"{k}:\t{sizes[k]} bytes\n")
    return w.text()


# ------------------------------------------------------------------ generic (Lease, Event, ...)

_ACRONYMS = {"API", "URL", "UID", "OSB", "GUID"}


def _camel_split(s: str) -> list[str]:
    runs: list[list[str]] = []
    last = None
    for ch in s:
        cls = "l" if ch.islower() else "u" if ch.isupper() else "d" if ch.isdigit() else "o"
        if cls == last:
            runs[-1].append(ch)
        else:
            runs.append([ch])
        last = cls
    for i in range(len(runs) - 1):
        if runs[i][0].isupper() and runs[i + 1][0].islower():
            runs[i + 1].insert(0, runs[i].pop())
    return ["".join(r) for r in runs if r]


def smart_label(field: str) -> str:
    if any(not (c.isalpha() or c == "-") for c in field):
        return field
    parts = []
    for p in _camel_split(field):
        parts.append(p.upper() if p.upper() in _ACRONYMS else p[:1].upper() + p[1:])
    return " ".join(parts)


def _go_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _unstructured(w: Writer, level: int, content: dict[str, Any], prefix: str, skip: set[str]) -> None:
    for field in sorted(content):
        value = content[field]
        path = f"{prefix}.{field}"
        if path in skip:
            continue
        if isinstance(value, dict):
            w.write(level, f"{smart_label(field)}:\n")
            _unstructured(w, level + 1, value, path, skip)
        elif isinstance(value, list):
            w.write(level, f"{smart_label(field)}:\n")
            for child in value:
                if isinstance(child, dict):
                    _unstructured(w, level + 1, child, path, skip)
                else:
                    w.write(level + 1, f"{_go_scalar(child)}\n")
        else:
            w.write(level, f"{smart_label(field)}:\t{_go_scalar(value)}\n")


def describe_generic(obj: Message, events: list[Message] | None, now: datetime.datetime) -> str:
    w = Writer()
    _meta_header(w, obj)
    _unstructured(w, 0, objects.to_dict(obj), "", {".metadata.managedFields", ".metadata.name",
                                                    ".metadata.namespace", ".metadata.labels",
                                                    ".metadata.annotations"})
    _events(w, events, now)
    return w.text()
