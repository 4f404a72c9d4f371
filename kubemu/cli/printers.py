"""What `kubemu get` prints: kubectl's tables, names, YAML and JSON, byte for byte.

Everything here is pure: objects (protobuf messages) and a clock go in, text comes out, so
the exact column layout is tested without a server. The rules are kubectl's own
(k8s.io/kubernetes/pkg/printers/internalversion/printers.go and kubectl's tab writer): headers
are the column names upper-cased, cells are aligned by Go's text/tabwriter algorithm with
minimum width 6 and padding 3, the last column is never padded, AGE is
apimachinery's HumanDuration.

Where kubectl relies on server-side defaulting that a kubemu object may lack (a Service
without `type`, a port without `protocol`, a Deployment without `replicas`), the printer shows
the default the API server would have filled in.
"""
from __future__ import annotations

import datetime
import json
from typing import Any, Callable, Iterable, Sequence

import yaml
from google.protobuf.message import Message

from kubemu import objects

# kubectl's tab writer (k8s.io/cli-runtime/pkg/printers/tabwriter.go)
TABLE_MIN_WIDTH = 6
TABLE_PADDING = 3
# kubectl describe's tab writer (k8s.io/kubectl/pkg/describe tabbedString)
DESCRIBE_MIN_WIDTH = 0
DESCRIBE_PADDING = 2

LOAD_BALANCER_WIDTH = 16
NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
NODE_ROLE_LABEL = "kubernetes.io/role"


# ------------------------------------------------------------------ time

def parse_time(value: str) -> datetime.datetime | None:
    """An RFC 3339 timestamp as the API writes it (`2024-05-01T10:00:00Z`), or None."""
    if not value:
        return None
    try:
        t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=datetime.timezone.utc)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: `5s`, `3m2s`, `4h`, `2d`, `3y`."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str, now: datetime.datetime) -> str:
    """translateTimestampSince: `<unknown>` for a missing timestamp."""
    t = parse_time(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def rfc1123z(timestamp: str) -> str:
    """Go's time.RFC1123Z (`Mon, 02 Jan 2006 15:04:05 -0700`), as describe prints times."""
    t = parse_time(timestamp)
    return t.strftime("%a, %d %b %Y %H:%M:%S %z") if t else "<unknown>"


# ------------------------------------------------------------------ Go's text/tabwriter

def tabwrite(text: str, minwidth: int, padding: int) -> str:
    """Align tab-separated cells exactly as Go's text/tabwriter (padchar ' ', no flags) does.

    A cell is text terminated by a tab; the last cell of a line is not part of any column.
    A column block is a run of consecutive lines that all have a cell in that column; its
    width is the widest cell plus padding, at least `minwidth`.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for i in range(line0, line1):
            cells = lines[i]
            parts = []
            for j, cell in enumerate(cells):
                parts.append(cell.ljust(widths[j]) if j < len(widths) else cell)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out)


class TableWriter:
    """Rows of cells aligned as kubectl aligns them; widths are remembered between writes.

    kubectl's tab writer keeps column widths across flushes (RememberWidths), so rows that
    `get -w` prints later line up with the table printed first.
    """

    def __init__(self) -> None:
        self.widths: list[int] = []

    def render(self, rows: Sequence[Sequence[str]]) -> str:
        for row in rows:
            for j, cell in enumerate(row[:-1]):
                w = max(TABLE_MIN_WIDTH, len(cell) + TABLE_PADDING)
                if j >= len(self.widths):
                    self.widths.append(w)
                elif w > self.widths[j]:
                    self.widths[j] = w
        out = []
        for row in rows:
            out.append("".join(c.ljust(self.widths[j]) if j < len(row) - 1 else c
                               for j, c in enumerate(row)))
        return "\n".join(out)


def render_table(rows: Sequence[Sequence[str]]) -> str:
    return tabwrite("\n".join("\t".join(r) for r in rows), TABLE_MIN_WIDTH, TABLE_PADDING)


# ------------------------------------------------------------------ small formatters

def format_labels(labels: Any) -> str:
    """labels.FormatLabels: sorted `k=v` joined by commas, `<none>` when empty."""
    items = sorted(dict(labels).items())
    return ",".join(f"{k}={v}" for k, v in items) if items else "<none>"


def format_label_selector(sel: Any) -> str:
    """metav1.LabelSelectorAsSelector(sel).String(): requirements sorted by key."""
    reqs: list[tuple[str, str]] = []
    for k, v in dict(sel.matchLabels).items():
        reqs.append((k, f"{k}={v}"))
    for e in sel.matchExpressions:
        op = e.operator
        vals = ",".join(sorted(e.values))
        if op == "In":
            reqs.append((e.key, f"{e.key} in ({vals})"))
        elif op == "NotIn":
            reqs.append((e.key, f"{e.key} notin ({vals})"))
        elif op == "Exists":
            reqs.append((e.key, e.key))
        elif op == "DoesNotExist":
            reqs.append((e.key, "!" + e.key))
    return ",".join(r for _, r in sorted(reqs, key=lambda kv: kv[0]))


def kind_name(msg: Message) -> str:
    """The resource name kubectl prints before a slash: `service`, `deployment.apps`."""
    k = objects.kind_of(msg)
    return f"{k.kind.lower()}.{k.group}" if k.group else k.kind.lower()


def qualified_name(msg: Message) -> str:
    """`-o name` output: `service/web`, `deployment.apps/web`."""
    return f"{kind_name(msg)}/{msg.metadata.name}"


def layout_containers(containers: Iterable[Any]) -> tuple[str, str]:
    cs = list(containers)
    return ",".join(c.name for c in cs), ",".join(c.image for c in cs)


# ------------------------------------------------------------------ per-kind rows

def _service_type(svc: Any) -> str:
    return svc.spec.type or "ClusterIP"


def _protocol(p: Any) -> str:
    return p.protocol or "TCP"


def load_balancer_status(status: Any, wide: bool) -> str:
    ips = sorted({i.ip or i.hostname for i in status.ingress if i.ip or i.hostname})
    r = ",".join(ips)
    if not wide and len(r) > LOAD_BALANCER_WIDTH:
        r = r[:LOAD_BALANCER_WIDTH - 3] + "..."
    return r


def service_external_ip(svc: Any, wide: bool) -> str:
    t = _service_type(svc)
    if t in ("ClusterIP", "NodePort"):
        return ",".join(svc.spec.externalIPs) if svc.spec.externalIPs else "<none>"
    if t == "LoadBalancer":
        lb = load_balancer_status(svc.status.loadBalancer, wide)
        if svc.spec.externalIPs:
            return ",".join(([*lb.split(",")] if lb else []) + list(svc.spec.externalIPs))
        return lb or "<pending>"
    if t == "ExternalName":
        return svc.spec.externalName
    return "<unknown>"


def service_ports(svc: Any) -> str:
    pieces = []
    for p in svc.spec.ports:
        if p.nodePort > 0:
            pieces.append(f"{p.port}:{p.nodePort}/{_protocol(p)}")
        else:
            pieces.append(f"{p.port}/{_protocol(p)}")
    return ",".join(pieces) or "<none>"


def service_row(svc: Any, now: datetime.datetime, wide: bool) -> list[str]:
    cluster_ip = (svc.spec.clusterIPs[0] if svc.spec.clusterIPs
                  else svc.spec.clusterIP or "<none>")
    row = [svc.metadata.name, _service_type(svc), cluster_ip, service_external_ip(svc, wide),
           service_ports(svc), age(svc.metadata.creationTimestamp, now)]
    if wide:
        row.append(format_labels(svc.spec.selector))
    return row


def pod_status(pod: Any) -> tuple[int, int, str, int, str]:
    """printPod's READY counts, STATUS reason, restarts and last restart time."""
    total = len(pod.spec.containers)
    ready = 0
    restarts = 0
    last_restart = ""
    phase = pod.status.phase
    reason = pod.status.reason or phase
    for c in pod.status.conditions:
        if c.type == "PodScheduled" and c.reason == "SchedulingGated":
            reason = "SchedulingGated"
    initializing = False
    n_init = len(pod.spec.initContainers)
    for i, cs in enumerate(pod.status.initContainerStatuses):
        restarts += cs.restartCount
        t = cs.lastState.terminated
        if cs.lastState.HasField("terminated") and t.finishedAt > last_restart:
            last_restart = t.finishedAt
        st = cs.state
        if st.HasField("terminated") and st.terminated.exitCode == 0:
            continue
        if st.HasField("terminated"):
            if st.terminated.reason:
                reason = "Init:" + st.terminated.reason
            elif st.terminated.signal:
                reason = f"Init:Signal:{st.terminated.signal}"
            else:
                reason = f"Init:ExitCode:{st.terminated.exitCode}"
        elif st.HasField("waiting") and st.waiting.reason and st.waiting.reason != "PodInitializing":
            reason = "Init:" + st.waiting.reason
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break
    initialized = any(c.type == "Initialized" and c.status == "True" for c in pod.status.conditions)
    if not initializing or initialized:
        restarts = 0
        last_restart = ""
        has_running = False
        for cs in reversed(pod.status.containerStatuses):
            restarts += cs.restartCount
            if cs.lastState.HasField("terminated") and cs.lastState.terminated.finishedAt > last_restart:
                last_restart = cs.lastState.terminated.finishedAt
            st = cs.state
            if st.HasField("waiting") and st.waiting.reason:
                reason = st.waiting.reason
            elif st.HasField("terminated") and st.terminated.reason:
                reason = st.terminated.reason
            elif st.HasField("terminated"):
                reason = (f"Signal:{st.terminated.signal}" if st.terminated.signal
                          else f"ExitCode:{st.terminated.exitCode}")
            elif cs.ready and st.HasField("running"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            ready_cond = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
            reason = "Running" if ready_cond else "NotReady"
    if pod.metadata.deletionTimestamp and pod.status.reason == "NodeLost":
        reason = "Unknown"
    elif pod.metadata.deletionTimestamp and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return ready, total, reason, restarts, last_restart


def pod_row(pod: Any, now: datetime.datetime, wide: bool) -> list[str]:
    ready, total, reason, restarts, last_restart = pod_status(pod)
    restarts_s = str(restarts)
    if restarts and last_restart:
        restarts_s = f"{restarts} ({age(last_restart, now)} ago)"
    row = [pod.metadata.name, f"{ready}/{total}", reason, restarts_s,
           age(pod.metadata.creationTimestamp, now)]
    if wide:
        ip = pod.status.podIPs[0].ip if pod.status.podIPs else pod.status.podIP
        gates = "<none>"
        row += [ip or "<none>", pod.spec.nodeName or "<none>",
                pod.status.nominatedNodeName or "<none>", gates]
    return row


def deployment_replicas(d: Any) -> int:
    return d.spec.replicas if d.spec.HasField("replicas") else 1


def deployment_row(d: Any, now: datetime.datetime, wide: bool) -> list[str]:
    st = d.status
    row = [d.metadata.name, f"{st.readyReplicas}/{deployment_replicas(d)}",
           str(st.updatedReplicas), str(st.availableReplicas),
           age(d.metadata.creationTimestamp, now)]
    if wide:
        names, images = layout_containers(d.spec.template.spec.containers)
        row += [names, images, format_label_selector(d.spec.selector)]
    return row


def replicaset_row(rs: Any, now: datetime.datetime, wide: bool) -> list[str]:
    desired = rs.spec.replicas if rs.spec.HasField("replicas") else 1
    row = [rs.metadata.name, str(desired), str(rs.status.replicas), str(rs.status.readyReplicas),
           age(rs.metadata.creationTimestamp, now)]
    if wide:
        names, images = layout_containers(rs.spec.template.spec.containers)
        row += [names, images, format_label_selector(rs.spec.selector)]
    return row


def node_roles(node: Any) -> list[str]:
    roles = set()
    for k, v in node.metadata.labels.items():
        if k.startswith(NODE_ROLE_PREFIX) and k[len(NODE_ROLE_PREFIX):]:
            roles.add(k[len(NODE_ROLE_PREFIX):])
        elif k == NODE_ROLE_LABEL and v:
            roles.add(v)
    return sorted(roles)


def node_status(node: Any) -> str:
    status = []
    for c in node.status.conditions:
        if c.type == "Ready":
            status = ["Ready" if c.status == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if node.spec.unschedulable:
        status.append("SchedulingDisabled")
    return ",".join(status)


def node_address(node: Any, kind: str) -> str:
    for a in node.status.addresses:
        if a.type == kind:
            return a.address
    return "<none>"


def node_row(node: Any, now: datetime.datetime, wide: bool) -> list[str]:
    row = [node.metadata.name, node_status(node), ",".join(node_roles(node)) or "<none>",
           age(node.metadata.creationTimestamp, now), node.status.nodeInfo.kubeletVersion]
    if wide:
        info = node.status.nodeInfo
        row += [node_address(node, "InternalIP"), node_address(node, "ExternalIP"),
                info.osImage or "<unknown>", info.kernelVersion or "<unknown>",
                info.containerRuntimeVersion or "<unknown>"]
    return row


def _list_with_more(items: list[str], more: bool, count: int, limit: int) -> str:
    ret = ",".join(items)
    if more:
        return f"{ret} + {count - limit} more..."
    return ret or "<unset>"


def endpointslice_ports(eps: Any) -> str:
    items: list[str] = []
    more = False
    for p in eps.ports:
        if len(items) < 3:
            items.append(str(p.port) if p.HasField("port") else (p.name if p.HasField("name") else "*"))
        elif len(items) == 3:
            more = True
    return _list_with_more(items, more, len(eps.ports), 3)


def endpointslice_endpoints(eps: Any) -> str:
    items: list[str] = []
    more = False
    count = 0
    for e in eps.endpoints:
        for a in e.addresses:
            if len(items) < 3:
                items.append(a)
            elif len(items) == 3:
                more = True
            count += 1
    return _list_with_more(items, more, count, 3)


def endpointslice_row(eps: Any, now: datetime.datetime, wide: bool) -> list[str]:
    return [eps.metadata.name, eps.addressType, endpointslice_ports(eps),
            endpointslice_endpoints(eps), age(eps.metadata.creationTimestamp, now)]


def namespace_phase(ns: Any) -> str:
    if ns.status.phase:
        return ns.status.phase
    return "Terminating" if ns.metadata.deletionTimestamp else "Active"


def namespace_row(ns: Any, now: datetime.datetime, wide: bool) -> list[str]:
    return [ns.metadata.name, namespace_phase(ns), age(ns.metadata.creationTimestamp, now)]


def event_times(ev: Any, now: datetime.datetime) -> tuple[str, str]:
    """(last seen, first seen) as printEvent words them."""
    first = age(ev.firstTimestamp, now) if ev.firstTimestamp else age(ev.eventTime, now)
    last = age(ev.lastTimestamp, now) if ev.lastTimestamp else first
    if ev.count > 1:
        last = f"{last} (x{ev.count} over {first})"
    return last, first


def event_source(ev: Any) -> str:
    comp = ev.source.component or ev.reportingComponent
    if ev.source.host:
        return f"{comp}, {ev.source.host}"
    return comp


def event_object(ev: Any) -> str:
    kind = ev.involvedObject.kind.lower()
    return f"{kind}/{ev.involvedObject.name}" if ev.involvedObject.name else kind


def event_row(ev: Any, now: datetime.datetime, wide: bool) -> list[str]:
    last, first = event_times(ev, now)
    if wide:
        return [last, ev.type, ev.reason, event_object(ev), ev.involvedObject.fieldPath,
                event_source(ev), ev.message.strip(), first, str(ev.count), ev.metadata.name]
    return [last, ev.type, ev.reason, event_object(ev), ev.message.strip()]


def lease_row(lease: Any, now: datetime.datetime, wide: bool) -> list[str]:
    return [lease.metadata.name, lease.spec.holderIdentity, age(lease.metadata.creationTimestamp, now)]


def secret_row(secret: Any, now: datetime.datetime, wide: bool) -> list[str]:
    keys = set(secret.data) | set(secret.stringData)
    return [secret.metadata.name, secret.type or "Opaque", str(len(keys)),
            age(secret.metadata.creationTimestamp, now)]


def ingress_hosts(rules: Iterable[Any]) -> str:
    rules = list(rules)
    hosts: list[str] = []
    more = False
    for r in rules:
        if len(hosts) == 3:
            more = True
        if not more and r.host:
            hosts.append(r.host)
    if not hosts:
        return "*"
    return ",".join(hosts) + (f" + {len(rules) - 3} more..." if more else "")


def ingress_row(ing: Any, now: datetime.datetime, wide: bool) -> list[str]:
    address = load_balancer_status(ing.status.loadBalancer, wide)
    return [ing.metadata.name, ing.spec.ingressClassName or "<none>", ingress_hosts(ing.spec.rules),
            address, "80, 443" if ing.spec.tls else "80", age(ing.metadata.creationTimestamp, now)]


def ingressclass_row(ic: Any, now: datetime.datetime, wide: bool) -> list[str]:
    params = "<none>"
    p = ic.spec.parameters
    if ic.spec.HasField("parameters"):
        params = p.kind + (f".{p.apiGroup}" if p.apiGroup else "") + "/" + p.name
    return [ic.metadata.name, ic.spec.controller, params, age(ic.metadata.creationTimestamp, now)]


def generic_row(obj: Any, now: datetime.datetime, wide: bool) -> list[str]:
    return [obj.metadata.name, age(obj.metadata.creationTimestamp, now)]


# kind -> (columns, wide-only columns, row function)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable[[Any, datetime.datetime, bool], list[str]]]] = {
    "Service": (("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"), ("SELECTOR",), service_row),
    "Pod": (("NAME", "READY", "STATUS", "RESTARTS", "AGE"),
            ("IP", "NODE", "NOMINATED NODE", "READINESS GATES"), pod_row),
    "Deployment": (("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"),
                   ("CONTAINERS", "IMAGES", "SELECTOR"), deployment_row),
    "ReplicaSet": (("NAME", "DESIRED", "CURRENT", "READY", "AGE"),
                   ("CONTAINERS", "IMAGES", "SELECTOR"), replicaset_row),
    "Node": (("NAME", "STATUS", "ROLES", "AGE", "VERSION"),
             ("INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"), node_row),
    "EndpointSlice": (("NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"), (), endpointslice_row),
    "Namespace": (("NAME", "STATUS", "AGE"), (), namespace_row),
    "Event": (("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"), (), event_row),
    "Lease": (("NAME", "HOLDER", "AGE"), (), lease_row),
    "Secret": (("NAME", "TYPE", "DATA", "AGE"), (), secret_row),
    "Ingress": (("NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"), (), ingress_row),
    "IngressClass": (("NAME", "CONTROLLER", "PARAMETERS", "AGE"), (), ingressclass_row),
}
GENERIC_TABLE = (("NAME", "AGE"), (), generic_row)

EVENT_WIDE_COLUMNS = ("LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE",
                      "FIRST SEEN", "COUNT", "NAME")


def table_header(kind: str, *, wide: bool = False, all_namespaces: bool = False,
                 show_labels: bool = False, label_columns: Sequence[str] = ()) -> list[str]:
    cols, wide_cols, _ = TABLES.get(kind, GENERIC_TABLE)
    header = list(EVENT_WIDE_COLUMNS if (kind == "Event" and wide) else
                  cols + (wide_cols if wide else ()))
    header += [c.rpartition("/")[2].upper() for c in label_columns]
    if show_labels:
        header.append("LABELS")
    if all_namespaces and objects.KINDS[kind].namespaced:
        header.insert(0, "NAMESPACE")
    return header


def table_row(msg: Message, now: datetime.datetime, *, wide: bool = False,
              all_namespaces: bool = False, with_kind: bool = False, show_labels: bool = False,
              label_columns: Sequence[str] = ()) -> list[str]:
    kind = objects.kind_of(msg).kind
    _, _, fn = TABLES.get(kind, GENERIC_TABLE)
    row = fn(msg, now, wide)
    if with_kind:
        # the column of format "name" carries the kind; a narrow event table has none
        i = 0 if kind != "Event" else (len(row) - 1 if wide else None)
        if i is not None:
            row[i] = f"{kind_name(msg)}/{row[i]}"
    labels = dict(msg.metadata.labels)
    row += [labels.get(c, "") for c in label_columns]
    if show_labels:
        row.append(",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>")
    if all_namespaces and objects.KINDS[kind].namespaced:
        row.insert(0, msg.metadata.namespace)
    return row


# ------------------------------------------------------------------ YAML and JSON

class _Dumper(yaml.SafeDumper):
    """Emit YAML the way kubectl's go-yaml does: block style, sorted keys, no line folding,
    double quotes for strings that would otherwise read back as another type."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    if value == "" or dumper.resolve(yaml.ScalarNode, value, (True, False)) != "tag:yaml.org,2002:str":
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)


def to_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=True, width=1 << 30)


def to_json(data: Any) -> str:
    """encoding/json's MarshalIndent as kubectl uses it: 4 spaces, HTML characters escaped."""
    text = json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def as_list(items: Iterable[Message]) -> dict[str, Any]:
    """kubectl's `kind: List` wrapper for several objects."""
    return {"apiVersion": "v1", "items": [objects.to_dict(o) for o in items], "kind": "List",
            "metadata": {"resourceVersion": ""}}
