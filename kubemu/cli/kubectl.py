"""kubectl-shaped client commands: apply, create, get, describe, delete, patch, expose, scale.

Each command is a thin shell: it finds the cluster (`--server`/KUBEMU_SERVER, else the
`cluster.json` of `--state-dir`/KUBEMU_STATE_DIR or of the cluster named by `--cluster`),
talks to the API server through the one async Client, and hands objects to pure code for
every decision and every byte printed (printers, describe, merge, manifests, jsonpath).

Output and errors follow kubectl's words: `service/web created`, `service "web" deleted`,
`Error from server (NotFound): services "x" not found`, `The Service "web" is invalid: ...`.
A user mistake ends with such a message and exit status 1, never a traceback; commands that
work through several objects (apply, create, delete) do every object they can and report the
failures at the end, as kubectl does.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import signal
import sys
import time
from typing import Any, Awaitable, Callable, Iterable, NoReturn, TypeVar

import click
import yaml
from google.protobuf.message import Message

from kubemu import cluster, errors, objects
from kubemu.cli import describe as describers
from kubemu.cli import jsonpath, manifests, merge, printers
from kubemu.cli.main import format_error
from kubemu.client import Client

T = TypeVar("T")

DEFAULT_NAMESPACE = "default"
ALL_KINDS = ("Pod", "Service", "Deployment", "ReplicaSet")  # what `get all` shows
SCALABLE = ("Deployment", "ReplicaSet")
EXPOSABLE = ("Deployment", "ReplicaSet", "Pod", "Service")


class UserError(Exception):
    """A mistake on the command line; printed as `error: <message>`."""


def fail(message: str) -> NoReturn:
    raise UserError(message)


def _report(message: str) -> None:
    click.echo(message, err=True)


def handle_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn every user-facing failure into kubectl's one-line message and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (UserError, manifests.ManifestError, merge.PatchError, jsonpath.JSONPathError) as e:
            _report(f"error: {e}")
        except errors.ApiError as e:
            _report(format_error(e))
        sys.exit(1)

    return wrapper


# ------------------------------------------------------------------ cluster and client

@dataclasses.dataclass
class Target:
    """Where a command sends its requests and which namespace it means."""

    server: str | None
    state_dir: str | None
    cluster_name: str | None
    namespace: str
    explicit_namespace: bool

    def address(self) -> str:
        return cluster.server_address(self.server, self.state_dir, self.cluster_name or "default")


def client_options(name_flag: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--server, --state-dir, --cluster (alias --name, except on `expose`), -n/--namespace."""

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        names = ("--cluster", "--name") if name_flag else ("--cluster",)
        f = click.option(*names, "cluster_name", default=None, metavar="NAME",
                         help="cluster name: use ~/.local/state/kubemu/NAME")(f)
        f = click.option("--state-dir", envvar="KUBEMU_STATE_DIR", default=None,
                         type=click.Path(file_okay=False),
                         help="cluster state directory [env KUBEMU_STATE_DIR]")(f)
        f = click.option("--server", "-s", envvar="KUBEMU_SERVER", default=None, metavar="HOST:PORT",
                         help="API server address [env KUBEMU_SERVER]")(f)
        f = click.option("-n", "--namespace", default=None, help="namespace (default: default)")(f)
        return f

    return deco


def target(server: str | None, state_dir: str | None, cluster_name: str | None,
           namespace: str | None) -> Target:
    return Target(server, state_dir, cluster_name, namespace or DEFAULT_NAMESPACE, namespace is not None)


def run(t: Target, body: Callable[[Client], Awaitable[T]]) -> T:
    address = t.address()

    async def main() -> T:
        async with Client(address) as client:
            return await body(client)

    return asyncio.run(main())


def kind_for(name: str) -> objects.Kind:
    return objects.kind_for(name)


def namespace_for(kind: objects.Kind, namespace: str) -> str:
    return namespace if kind.namespaced else ""


def with_source(e: errors.ApiError, verb: str, source: str) -> errors.ApiError:
    """kubectl's AddSourceToErr: `error when creating "svc.yaml": <message>`."""
    if not source:
        return e
    out = type(e)(f'error when {verb} "{source}": {e.message}', kind=e.kind, name=e.name, causes=e.causes)
    return out


def report_all(failures: list[BaseException]) -> None:
    for e in failures:
        if isinstance(e, errors.ApiError):
            _report(format_error(e))
        else:
            _report(f"error: {e}")
    if failures:
        sys.exit(1)


def parse_resource_args(args: Iterable[str]) -> tuple[list[tuple[objects.Kind, list[str]]], bool]:
    """`TYPE[,TYPE...] [NAME...]` or `TYPE/NAME...` -> [(kind, names)], single-item-implied."""
    args = list(args)
    if not args:
        return [], False
    if any("/" in a for a in args):
        if not all("/" in a for a in args):
            fail("there is no need to specify a resource type as a separate argument when passing "
                 "arguments in resource/name form (e.g. 'kubemu get resource/<resource_name>' instead "
                 "of 'kubemu get resource resource/<resource_name>'")
        out: list[tuple[objects.Kind, list[str]]] = []
        for a in args:
            kind_s, _, name = a.partition("/")
            if not name:
                fail(f"arguments in resource/name form must have a single resource and name: {a!r}")
            out.append((kind_for(kind_s), [name]))
        return out, len(args) == 1
    kinds: list[objects.Kind] = []
    for k in args[0].split(","):
        if not k:
            continue
        if k.lower() == "all":
            kinds += [objects.KINDS[n] for n in ALL_KINDS]
        else:
            kinds.append(kind_for(k))
    names = args[1:]
    return [(k, list(names)) for k in kinds], len(kinds) == 1 and len(names) == 1


def _duration(text: str) -> float:
    """`5`, `5s`, `2m`, `1h` -> seconds (0 means no limit)."""
    text = (text or "0").strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            try:
                return float(text[:-len(suffix)]) * units[suffix]
            except ValueError:
                break
    try:
        return float(text)
    except ValueError:
        fail(f'invalid duration "{text}": use a number of seconds or a value like 5s, 2m')


# ------------------------------------------------------------------ apply

@click.command()
@click.option("-f", "--filename", "filenames", multiple=True, required=True,
              help="file, directory or - (stdin) with the manifests to apply")
@click.option("-R", "--recursive", is_flag=True, help="process the directory given with -f recursively")
@click.option("-o", "--output", default="", help="name: print only resource/name")
@client_options()
@handle_errors
def apply(filenames, recursive, output, namespace, server, state_dir, cluster_name):
    """Create or update objects from manifests (YAML or JSON), like `kubectl apply -f`."""
    t = target(server, state_dir, cluster_name, namespace)
    items = manifests.load(list(filenames), recursive)
    if not items:
        fail("no objects passed to apply")
    if output not in ("", "name"):
        fail(f'unable to match a printer suitable for the output format "{output}", allowed formats are: name')

    async def body(c: Client) -> list[BaseException]:
        failures: list[BaseException] = []
        for m in items:
            try:
                result = await apply_manifest(c, m, t)
            except (errors.ApiError, UserError) as e:
                failures.append(e)
                continue
            click.echo(printers.qualified_name(m.obj) + ("" if output == "name" else f" {result}"))
        return failures

    report_all(run(t, body))


def manifest_namespace(m: manifests.Manifest, t: Target) -> str:
    """The namespace an object goes to: its own, else -n, else default; a conflict is an error."""
    if not m.kind.namespaced:
        return ""
    own = m.obj.metadata.namespace
    if own and t.explicit_namespace and own != t.namespace:
        fail(f'the namespace from the provided object "{own}" does not match the namespace '
             f'"{t.namespace}". You must pass \'--namespace={own}\' to perform this operation.')
    return own or t.namespace


async def apply_manifest(c: Client, m: manifests.Manifest, t: Target) -> str:
    """Create the object or three-way-merge it into the live one; `created`/`configured`/`unchanged`."""
    k = m.kind
    ns = manifest_namespace(m, t)
    applied = merge.applied_configuration(objects.to_dict(m.obj))
    meta = applied.setdefault("metadata", {})
    if k.namespaced:
        meta["namespace"] = ns
    name = meta.get("name", "")
    if not name:
        if meta.get("generateName"):
            fail(f'from {m.source}: cannot use generate name with apply')
        fail(f'error when retrieving current configuration of {k.kind} "" from "{m.source}": '
             "resource name may not be empty")
    modified = merge.with_annotation(applied)
    for _ in range(10):
        try:
            live = await c.get(k.kind, name, ns)
        except errors.NotFound:
            try:
                await c.create(objects.from_dict(modified))
            except errors.AlreadyExists:
                continue  # created meanwhile: merge into it
            except errors.ApiError as e:
                raise with_source(e, "creating", m.source) from None
            return "created"
        current = objects.to_dict(live)
        original = merge.last_applied(current)
        if original is None:
            _report(f"Warning: resource {k.resource}/{name} is missing the {merge.LAST_APPLIED} "
                    "annotation which is required by kubemu apply. kubemu apply should only be used "
                    "on resources created declaratively by either kubemu create --save-config or "
                    "kubemu apply. The missing annotation will be patched automatically.")
        desired = merge.three_way(original or {}, modified, current, k.message.DESCRIPTOR)
        patch = merge.merge_patch(current, desired)
        if not patch:
            return "unchanged"
        patch.setdefault("metadata", {})["resourceVersion"] = live.metadata.resourceVersion
        try:
            await c.patch(k.kind, name, patch, ns)
        except errors.Conflict:
            continue  # changed between our read and write: merge again
        except errors.ApiError as e:
            raise with_source(e, "patching", m.source) from None
        return "configured"
    raise errors.Conflict.of(k.resource, name)


# ------------------------------------------------------------------ create

@click.group(invoke_without_command=True)
@click.option("-f", "--filename", "filenames", multiple=True, help="file, directory or - (stdin)")
@click.option("-R", "--recursive", is_flag=True)
@click.option("--save-config", is_flag=True,
              help=f"record the manifest in the {merge.LAST_APPLIED} annotation, for a later apply")
@click.option("-o", "--output", default="", help="name: print only resource/name")
@client_options()
@click.pass_context
@handle_errors
def create(ctx, filenames, recursive, save_config, output, namespace, server, state_dir, cluster_name):
    """Create objects from manifests (`create -f`), or a namespace (`create namespace NAME`)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = (server, state_dir, cluster_name, namespace)
        return
    if not filenames:
        fail("must specify one of -f and -k")
    t = target(server, state_dir, cluster_name, namespace)
    items = manifests.load(list(filenames), recursive)
    if not items:
        fail("no objects passed to create")

    async def body(c: Client) -> list[BaseException]:
        failures: list[BaseException] = []
        for m in items:
            try:
                ns = manifest_namespace(m, t)
                obj = objects.from_dict(merge.with_annotation(merge.applied_configuration(m.data))
                                        if save_config else m.data)
                if m.kind.namespaced:
                    obj.metadata.namespace = ns
                created = await c.create(obj)
            except errors.ApiError as e:
                failures.append(with_source(e, "creating", m.source))
                continue
            except UserError as e:
                failures.append(e)
                continue
            click.echo(printers.qualified_name(created) + ("" if output == "name" else " created"))
        return failures

    report_all(run(t, body))


@create.command("namespace")
@click.argument("name")
@client_options()
@click.pass_context
@handle_errors
def create_namespace(ctx, name, namespace, server, state_dir, cluster_name):
    """Create a namespace."""
    g_server, g_state_dir, g_cluster, _ = ctx.obj or (None, None, None, None)
    t = target(server or g_server, state_dir or g_state_dir, cluster_name or g_cluster, None)
    obj = objects.new("Namespace", name)
    created = run(t, lambda c: c.create(obj))
    click.echo(f"{printers.qualified_name(created)} created")


create.add_command(create_namespace, "ns")


# ------------------------------------------------------------------ get

@dataclasses.dataclass
class OutputFormat:
    mode: str  # table, wide, yaml, json, name, jsonpath, custom-columns
    template: Any = None

    @classmethod
    def parse(cls, output: str) -> "OutputFormat":
        o = output or ""
        if o in ("", "wide", "yaml", "json", "name"):
            return cls(o or "table")
        for prefix in ("jsonpath=", "jsonpath-as-json="):
            if o.startswith(prefix):
                return cls("jsonpath", jsonpath.parse(o[len(prefix):]))
        if o.startswith("custom-columns="):
            return cls("custom-columns", jsonpath.parse_custom_columns(o[len("custom-columns="):]))
        if o in ("jsonpath", "custom-columns"):
            fail(f"{o} format specified but no {'template' if o == 'jsonpath' else 'custom columns'} given")
        fail(f'unable to match a printer suitable for the output format "{o}", allowed formats are: '
             "custom-columns,json,jsonpath,name,wide,yaml")

    @property
    def human(self) -> bool:
        return self.mode in ("table", "wide", "custom-columns")


def _sort_key(kind: str) -> Callable[[Message], Any]:
    if kind == "Event":
        return lambda e: (e.metadata.namespace, e.lastTimestamp or e.eventTime or e.firstTimestamp, e.metadata.name)
    return lambda o: (o.metadata.namespace, o.metadata.name)


def _sort_by(items: list[Message], expr: str) -> list[Message]:
    template = jsonpath.parse(jsonpath.relaxed(expr))
    path = next((e for node in template if isinstance(node, jsonpath.Action) for e in node.exprs), None)

    def key(o: Message) -> Any:
        if not isinstance(path, jsonpath.Path):
            return (0, "")
        values = jsonpath.evaluate(path, objects.to_dict(o), objects.to_dict(o))
        if not values:
            return (0, "")
        v = values[0]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (1, v)
        return (2, jsonpath.text_of(v))

    return sorted(items, key=key)


@dataclasses.dataclass
class TableOptions:
    wide: bool = False
    all_namespaces: bool = False
    with_kind: bool = False
    show_labels: bool = False
    label_columns: tuple[str, ...] = ()
    no_headers: bool = False

    def header(self, kind: str) -> list[str]:
        return printers.table_header(kind, wide=self.wide, all_namespaces=self.all_namespaces,
                                     show_labels=self.show_labels, label_columns=self.label_columns)

    def row(self, obj: Message, now: Any) -> list[str]:
        return printers.table_row(obj, now, wide=self.wide, all_namespaces=self.all_namespaces,
                                  with_kind=self.with_kind, show_labels=self.show_labels,
                                  label_columns=self.label_columns)


def render_tables(groups: list[tuple[objects.Kind, list[Message]]], fmt: OutputFormat,
                  opts: TableOptions, now: Any) -> str:
    """Human-readable output for groups of objects of one kind each, as `kubectl get` prints it."""
    blocks = []
    for kind, items in groups:
        if not items:
            continue
        rows: list[list[str]] = []
        if fmt.mode == "custom-columns":
            if not opts.no_headers:
                rows.append([h for h, _ in fmt.template])
            rows += [jsonpath.custom_column_cells(fmt.template, objects.to_dict(o)) for o in items]
        else:
            if not opts.no_headers:
                rows.append(opts.header(kind.kind))
            rows += [opts.row(o, now) for o in items]
        blocks.append(printers.TableWriter().render(rows))
    return "\n\n".join(blocks)


def render_generic(items: list[Message], single: bool, fmt: OutputFormat) -> str:
    """yaml, json, name and jsonpath output: one object alone, otherwise a `kind: List`."""
    if fmt.mode == "name":
        return "".join(printers.qualified_name(o) + "\n" for o in items)
    data = objects.to_dict(items[0]) if single and len(items) == 1 else printers.as_list(items)
    if fmt.mode == "yaml":
        return printers.to_yaml(data)
    if fmt.mode == "json":
        return printers.to_json(data) + "\n"
    return jsonpath.render(fmt.template, data)


@click.command()
@click.argument("args", nargs=-1)
@click.option("-A", "--all-namespaces", is_flag=True, help="list across all namespaces")
@click.option("-l", "--selector", default="", help="label selector (app=web,tier!=db)")
@click.option("--field-selector", default="", help="field selector (metadata.name=web)")
@click.option("-o", "--output", default="",
              help="wide, yaml, json, name, jsonpath=TEMPLATE, custom-columns=SPEC")
@click.option("-w", "--watch", is_flag=True, help="after listing, print changes as they happen")
@click.option("--watch-only", is_flag=True, help="print changes only")
@click.option("--show-labels", is_flag=True)
@click.option("-L", "--label-columns", multiple=True, help="labels to show as columns")
@click.option("--no-headers", is_flag=True)
@click.option("--sort-by", default="", help="JSONPath to sort by (.metadata.name)")
@click.option("--ignore-not-found", is_flag=True)
@click.option("--request-timeout", default="0", help="end a watch after this long (5s, 2m)")
@client_options()
@handle_errors
def get(args, all_namespaces, selector, field_selector, output, watch, watch_only, show_labels,
        label_columns, no_headers, sort_by, ignore_not_found, request_timeout, namespace, server,
        state_dir, cluster_name):
    """Display objects: `get svc`, `get svc web -o yaml`, `get svc,pods -A`, `get pods -w`."""
    requests, single = parse_resource_args(args)
    if not requests:
        fail('You must specify the type of resource to get. Use "kubemu get svc", "kubemu get pods", ...')
    t = target(server, state_dir, cluster_name, namespace)
    fmt = OutputFormat.parse(output)
    named = any(names for _, names in requests)
    if named and all_namespaces:
        fail("a resource cannot be retrieved by name across all namespaces")
    if named and selector:
        fail("selectors and the all flag cannot be used when passing resource/name arguments")
    if (show_labels or label_columns) and not fmt.human:
        fail(f"--show-labels option cannot be used with {fmt.mode} printer")
    ns = "" if all_namespaces else t.namespace
    now = printers.utcnow()
    if watch or watch_only:
        kinds = {k.kind for k, _ in requests}
        if len(kinds) > 1:
            fail("watch is only supported on individual resources and resource collections - "
                 "more than 1 resource was found")
        return _watch(t, requests[0], ns, selector, field_selector, fmt, sort_by, watch_only,
                      TableOptions(wide=fmt.mode == "wide", all_namespaces=all_namespaces,
                                   show_labels=show_labels, label_columns=label_columns,
                                   no_headers=no_headers), _duration(request_timeout))

    async def body(c: Client) -> tuple[list[tuple[objects.Kind, list[Message]]], list[errors.ApiError]]:
        groups: list[tuple[objects.Kind, list[Message]]] = []
        failures: list[errors.ApiError] = []
        for kind, names in requests:
            kns = namespace_for(kind, ns)
            if names:
                found = []
                for name in names:
                    try:
                        found.append(await c.get(kind.kind, name, kns))
                    except errors.NotFound as e:
                        if not ignore_not_found:
                            failures.append(e)
                groups.append((kind, found))
            else:
                items, _ = await c.list(kind.kind, kns, label_selector=selector, field_selector=field_selector)
                items = sorted(items, key=_sort_key(kind.kind))
                groups.append((kind, _sort_by(items, sort_by) if sort_by else items))
        return groups, failures

    groups, failures = run(t, body)
    # objects of one kind print together, in the order the kinds were asked for
    merged: dict[str, tuple[objects.Kind, list[Message]]] = {}
    for kind, items in groups:
        merged.setdefault(kind.kind, (kind, []))[1].extend(items)
    groups = list(merged.values())
    everything = [o for _, items in groups for o in items]
    kinds_found = {objects.kind_of(o).kind for o in everything}
    if fmt.human:
        opts = TableOptions(wide=fmt.mode == "wide", all_namespaces=all_namespaces,
                            with_kind=len(kinds_found) > 1, show_labels=show_labels,
                            label_columns=label_columns, no_headers=no_headers)
        text = render_tables(groups, fmt, opts, now)
        if text:
            click.echo(text)
        elif not failures and not ignore_not_found:
            namespaced = not all_namespaces and all(k.namespaced for k, _ in groups)
            _report(f"No resources found in {ns} namespace." if namespaced else "No resources found")
    else:
        # a single object that was not found prints only the error; an empty list prints as
        # an empty `kind: List`, unless --ignore-not-found asked for silence
        nothing = not everything and (single or ignore_not_found)
        text = "" if nothing else render_generic(everything, single, fmt)
        if text:
            click.echo(text, nl=False)
    report_all(list(failures))


def _watch(t: Target, request: tuple[objects.Kind, list[str]], ns: str, selector: str,
           field_selector: str, fmt: OutputFormat, sort_by: str, watch_only: bool,
           opts: TableOptions, timeout: float) -> None:
    kind, names = request
    kns = namespace_for(kind, ns)
    if names:
        if len(names) > 1:
            fail("watch is only supported on individual resources and resource collections - "
                 "more than 1 resource was found")
        field_selector = ",".join(s for s in (field_selector, f"metadata.name={names[0]}") if s)
    writer = printers.TableWriter()
    header_printed = False

    def emit(objs: list[Message]) -> None:
        nonlocal header_printed
        if not objs:
            return
        now = printers.utcnow()
        if fmt.human:
            rows = []
            if not header_printed and not opts.no_headers:
                rows.append([h for h, _ in fmt.template] if fmt.mode == "custom-columns"
                            else opts.header(kind.kind))
            header_printed = True
            for o in objs:
                rows.append(jsonpath.custom_column_cells(fmt.template, objects.to_dict(o))
                            if fmt.mode == "custom-columns" else opts.row(o, now))
            click.echo(writer.render(rows))
        elif fmt.mode == "yaml":
            for o in objs:
                click.echo("---\n" + printers.to_yaml(objects.to_dict(o)), nl=False)
        else:
            for o in objs:
                click.echo(render_generic([o], True, fmt), nl=fmt.mode not in ("name", "json", "jsonpath"))

    async def body(c: Client) -> None:
        items, rv = await c.list(kind.kind, kns, label_selector=selector, field_selector=field_selector)
        if not watch_only:
            items = sorted(items, key=_sort_key(kind.kind))
            emit(_sort_by(items, sort_by) if sort_by else items)
        while True:
            try:
                async for batch in c.watch(kind.kind, kns, resource_version=rv, label_selector=selector,
                                           field_selector=field_selector):
                    changed = []
                    for ev in batch:
                        rv = max(rv, ev.resource_version)
                        if ev.type != "BOOKMARK" and ev.object is not None:
                            changed.append(ev.object)
                    emit(changed)
                return
            except errors.TooOld:
                _, rv = await c.list(kind.kind, kns, label_selector=selector, field_selector=field_selector)

    async def bounded(c: Client) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        task = asyncio.ensure_future(body(c))
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, timeout=timeout or None,
                                     return_when=asyncio.FIRST_COMPLETED)
        for f in (task, stopper):
            if not f.done():
                f.cancel()
        if task in done:
            task.result()

    run(t, bounded)


# ------------------------------------------------------------------ describe

async def _events_about(c: Client, obj: Message) -> list[Message]:
    k = objects.kind_of(obj)
    items, _ = await c.list("Event", obj.metadata.namespace if k.namespaced else "")
    return describers.events_for(obj, items)


async def describe_object(c: Client, obj: Message, now: Any, show_events: bool) -> str:
    k = objects.kind_of(obj).kind
    ns = obj.metadata.namespace
    events = await _events_about(c, obj) if show_events else None
    if k == "Service":
        slices, _ = await c.list("EndpointSlice", ns,
                                 label_selector=f"kubernetes.io/service-name={obj.metadata.name}")
        slices.sort(key=lambda s: s.metadata.name)
        return describers.describe_service(obj, slices, events, now)
    if k == "Pod":
        return describers.describe_pod(obj, events, now)
    if k == "Deployment":
        rss, _ = await c.list("ReplicaSet", ns)
        return describers.describe_deployment(obj, rss, events, now)
    if k == "ReplicaSet":
        pods, _ = await c.list("Pod", ns)
        return describers.describe_replicaset(obj, pods, events, now)
    if k == "Node":
        pods, _ = await c.list("Pod", "", field_selector=f"spec.nodeName={obj.metadata.name}")
        pods = sorted((p for p in pods if p.status.phase not in ("Succeeded", "Failed")),
                      key=lambda p: (p.metadata.namespace, p.metadata.name))
        lease, lease_error = None, ""
        try:
            lease = await c.get("Lease", obj.metadata.name, "kube-node-lease")
        except errors.ApiError as e:
            lease_error = e.message
        return describers.describe_node(obj, pods, lease, lease_error, events, now)
    if k == "Namespace":
        return describers.describe_namespace(obj, events, now)
    if k == "EndpointSlice":
        return describers.describe_endpointslice(obj, events, now)
    if k == "Secret":
        return describers.describe_secret(obj, events, now)
    return describers.describe_generic(obj, events, now)


@click.command()
@click.argument("args", nargs=-1, required=True)
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-l", "--selector", default="")
@click.option("--show-events/--no-show-events", default=True, help="list the Events about each object")
@client_options()
@handle_errors
def describe(args, all_namespaces, selector, show_events, namespace, server, state_dir, cluster_name):
    """Show details of objects: `describe svc web`, `describe pods -l app=web`, `describe node node-1`."""
    requests, _ = parse_resource_args(args)
    t = target(server, state_dir, cluster_name, namespace)
    ns = "" if all_namespaces else t.namespace
    now = printers.utcnow()

    async def body(c: Client) -> tuple[list[str], list[errors.ApiError]]:
        texts: list[str] = []
        failures: list[errors.ApiError] = []
        for kind, names in requests:
            kns = namespace_for(kind, ns)
            if names:
                found = []
                for name in names:
                    try:
                        found.append(await c.get(kind.kind, name, kns))
                    except errors.NotFound as e:
                        failures.append(e)
            else:
                found, _ = await c.list(kind.kind, kns, label_selector=selector)
                found.sort(key=_sort_key(kind.kind))
            for obj in found:
                texts.append(await describe_object(c, obj, now, show_events))
        return texts, failures

    texts, failures = run(t, body)
    if texts:
        click.echo("\n\n".join(texts), nl=False)
    elif not failures:
        _report(f"No resources found in {ns} namespace." if ns else "No resources found")
    report_all(list(failures))


# ------------------------------------------------------------------ delete

def _propagation(cascade: str) -> str:
    value = {"background": "Background", "true": "Background", "foreground": "Foreground",
             "orphan": "Orphan", "false": "Orphan"}.get(cascade.lower())
    if value is None:
        fail(f'invalid cascade value ({cascade}). Must be "background", "foreground", or "orphan"')
    return value


@click.command()
@click.argument("args", nargs=-1)
@click.option("-f", "--filename", "filenames", multiple=True, help="delete the objects in these manifests")
@click.option("-R", "--recursive", is_flag=True)
@click.option("-l", "--selector", default="", help="delete objects matching this label selector")
@click.option("--all", "all_objects", is_flag=True, help="delete every object of the type")
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("--cascade", default="background", show_default=True,
              help="background, foreground or orphan (dependents are kept)")
@click.option("--grace-period", default=-1, show_default=True,
              help="seconds a pod gets to stop; -1 uses the pod's own")
@click.option("--now", is_flag=True, help="same as --grace-period=1")
@click.option("--force", is_flag=True, help="same as --grace-period=0: do not wait for the kubelet")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="wait until the objects are gone")
@click.option("--timeout", default="0", help="give up waiting after this long (0: no limit)")
@click.option("--ignore-not-found", is_flag=True)
@click.option("-o", "--output", default="", help="name: print only resource/name")
@client_options()
@handle_errors
def delete(args, filenames, recursive, selector, all_objects, all_namespaces, cascade, grace_period,
           now, force, wait, timeout, ignore_not_found, output, namespace, server, state_dir, cluster_name):
    """Delete objects by name, by label selector, or from manifests."""
    t = target(server, state_dir, cluster_name, namespace)
    propagation = _propagation(cascade)
    grace: int | None = None if grace_period < 0 else grace_period
    if now:
        grace = 1
    if force:
        grace = 0 if grace is None else grace
        _report("Warning: Immediate deletion does not wait for confirmation that the running resource "
                "has been terminated. The resource may continue to run on the cluster indefinitely.")
    limit = _duration(timeout)
    targets: list[tuple[objects.Kind, str | None, str, str]] = []  # kind, name|None, ns, source
    requests: list[tuple[objects.Kind, list[str]]] = []
    if filenames:
        if args:
            fail("there is no need to specify a resource type as a separate argument when passing "
                 "arguments in resource/name form or with -f")
        for m in manifests.load(list(filenames), recursive):
            targets.append((m.kind, m.obj.metadata.name, manifest_namespace(m, t), m.source))
    else:
        requests, _ = parse_resource_args(args)
        if not requests:
            fail("You must provide one or more resources by argument or filename.")
        for kind, names in requests:
            if not names and not selector and not all_objects:
                fail("resource(s) were provided, but no name was specified")
            if names and (selector or all_objects):
                fail("name cannot be provided when a selector or --all is specified")
    ns = "" if all_namespaces else t.namespace

    async def body(c: Client) -> list[BaseException]:
        failures: list[BaseException] = []
        todo = list(targets)
        for kind, names in requests:
            kns = namespace_for(kind, ns)
            if names:
                todo += [(kind, n, kns, "") for n in names]
            else:
                items, _ = await c.list(kind.kind, kns, label_selector=selector)
                todo += [(kind, o.metadata.name, o.metadata.namespace, "")
                         for o in sorted(items, key=_sort_key(kind.kind))]
        if not todo:
            _report("No resources found")
            return failures
        deleted: list[tuple[objects.Kind, str, str, str]] = []
        for kind, name, kns, source in todo:
            try:
                obj = await c.delete(kind.kind, name, kns, grace_period_seconds=grace,
                                     propagation_policy=propagation)
            except errors.NotFound as e:
                if not ignore_not_found:
                    failures.append(with_source(e, "deleting", source))
                continue
            except errors.ApiError as e:
                failures.append(with_source(e, "deleting", source))
                continue
            click.echo(f"{printers.kind_name(obj)}/{name}" if output == "name"
                       else f'{printers.kind_name(obj)} "{name}" deleted')
            deleted.append((kind, name, kns, obj.metadata.uid))
        if wait:
            deadline = time.monotonic() + limit if limit else None
            for kind, name, kns, uid in deleted:
                while True:
                    try:
                        cur = await c.get(kind.kind, name, kns)
                    except errors.NotFound:
                        break
                    if cur.metadata.uid != uid:
                        break
                    if deadline is not None and time.monotonic() > deadline:
                        failures.append(UserError(f"timed out waiting for the condition on {kind.resource}/{name}"))
                        break
                    await asyncio.sleep(0.1)
        return failures

    report_all(run(t, body))


# ------------------------------------------------------------------ patch

def parse_patch(text: str) -> Any:
    """kubectl accepts the patch as JSON or YAML."""
    try:
        return manifests.load_yaml(text)
    except yaml.YAMLError as e:
        fail(f'unable to parse "{text}": {manifests.yaml_error(e)}')


async def patch_object(c: Client, kind: objects.Kind, name: str, ns: str, patch_type: str, body: Any,
                       subresource: str) -> tuple[Message, Message]:
    """(before, after): merge patches go to the server as they are; strategic and JSON patches
    are computed against the live object and sent as a merge patch guarded by its version."""
    for _ in range(10):
        live = await c.get(kind.kind, name, ns)
        if patch_type == "merge":
            if not isinstance(body, dict):
                fail("a merge patch must be a JSON object")
            return live, await c.patch(kind.kind, name, body, ns, subresource=subresource)
        current = objects.to_dict(live)
        if patch_type == "json":
            desired = merge.json_patch(current, body)
        else:
            if not isinstance(body, dict):
                fail("a strategic merge patch must be a JSON object")
            desired = merge.strategic(current, body, kind.message.DESCRIPTOR)
        if not isinstance(desired, dict):
            fail("the patched object is not an object")
        try:
            objects.from_dict(desired, kind.kind)
        except objects.DecodeError as e:
            raise errors.BadRequest(f"{kind.kind} in version \"{kind.api_version}\" cannot be handled "
                                    f"as a {kind.kind}: {e.message}") from None
        mp = merge.merge_patch(current, desired)
        if not mp:
            return live, live
        mp.setdefault("metadata", {})["resourceVersion"] = live.metadata.resourceVersion
        try:
            return live, await c.patch(kind.kind, name, mp, ns, subresource=subresource)
        except errors.Conflict:
            continue
    raise errors.Conflict.of(kind.resource, name)


@click.command()
@click.argument("args", nargs=-1, required=True)
@click.option("-p", "--patch", "patch_text", required=True, help="the patch, as JSON or YAML")
@click.option("--type", "patch_type", type=click.Choice(["strategic", "merge", "json"]),
              default="strategic", show_default=True)
@click.option("--subresource", default="", type=click.Choice(["", "status"]))
@click.option("-o", "--output", default="", help="name, yaml or json")
@client_options()
@handle_errors
def patch(args, patch_text, patch_type, subresource, output, namespace, server, state_dir, cluster_name):
    """Update fields of an object: `patch svc web -p '{"spec":{"type":"NodePort"}}'`."""
    requests, _ = parse_resource_args(args)
    pairs = [(k, n) for k, names in requests for n in names]
    if len(pairs) != 1:
        fail("patch needs exactly one object: TYPE NAME or TYPE/NAME")
    kind, name = pairs[0]
    t = target(server, state_dir, cluster_name, namespace)
    body_value = parse_patch(patch_text)
    ns = namespace_for(kind, t.namespace)
    before, after = run(t, lambda c: patch_object(c, kind, name, ns, patch_type, body_value, subresource))
    if output in ("yaml", "json"):
        click.echo(render_generic([after], True, OutputFormat(output)), nl=False)
        return
    changed = after.metadata.resourceVersion != before.metadata.resourceVersion
    click.echo(printers.qualified_name(after) + ("" if output == "name" else
                                                 " patched" if changed else " patched (no change)"))


# ------------------------------------------------------------------ expose

def parse_map(text: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        k, sep, v = part.partition("=")
        if not sep or not k:
            fail(f"invalid {what} {text!r}: expected key=value pairs separated by commas")
        out[k] = v
    return out


def exposed_selector(obj: Message) -> dict[str, str]:
    """What selector a Service for `obj` gets, as kubectl's mapBasedSelectorForObject decides."""
    kind = objects.kind_of(obj).kind
    if kind in ("Deployment", "ReplicaSet"):
        sel = obj.spec.selector
        if not sel.matchLabels:
            fail(f"couldn't retrieve selectors via --selector flag or introspection: invalid "
                 f"{kind.lower()}: no selectors, therefore cannot be exposed")
        if sel.matchExpressions:
            fail("couldn't retrieve selectors via --selector flag or introspection: couldn't convert "
                 "expressions to map-based selector format")
        return dict(sel.matchLabels)
    if kind == "Pod":
        if not obj.metadata.labels:
            fail("couldn't retrieve selectors via --selector flag or introspection: the pod has no "
                 "labels and cannot be exposed")
        return dict(obj.metadata.labels)
    if not obj.spec.selector:
        fail("couldn't retrieve selectors via --selector flag or introspection: the service has no "
             "pod selector set")
    return dict(obj.spec.selector)


def exposed_ports(obj: Message) -> list[tuple[int, list[str]]]:
    """(port, protocols) the object offers, in order, for a Service without --port."""
    kind = objects.kind_of(obj).kind
    if kind == "Service":
        found = [(p.port, p.protocol or "TCP") for p in obj.spec.ports]
    else:
        spec = obj.spec if kind == "Pod" else obj.spec.template.spec
        found = [(p.containerPort, p.protocol or "TCP") for c in spec.containers for p in c.ports]
    out: dict[int, list[str]] = {}
    for port, proto in found:
        protos = out.setdefault(port, [])
        if proto not in protos:
            protos.append(proto)
    return list(out.items())


def build_exposed_service(obj: Message, *, name: str, port: str, protocol: str, target_port: str,
                          service_type: str, selector: str, labels: str, external_ips: str,
                          session_affinity: str, cluster_ip: str, load_balancer_ip: str) -> Message:
    """The Service `kubectl expose` would create for `obj` (pure)."""
    svc = objects.new("Service", name or obj.metadata.name, obj.metadata.namespace or DEFAULT_NAMESPACE)
    sel = parse_map(selector, "selector") if selector else exposed_selector(obj)
    if labels:
        svc.metadata.labels.update(parse_map(labels, "labels"))
    else:
        svc.metadata.labels.update(dict(obj.metadata.labels))
    if port:
        try:
            ports = [(int(port), [protocol] if protocol else ["TCP"])]
        except ValueError:
            fail(f'invalid --port "{port}": must be a number')
    else:
        ports = exposed_ports(obj)
        if protocol:
            ports = [(p, [protocol]) for p, _ in ports]
    if not ports and service_type != "ExternalName":
        fail("couldn't find port via --port flag or introspection")
    for i, (number, protos) in enumerate(ports):
        for proto in protos:
            p = svc.spec.ports.add()
            if len(protos) > 1:
                p.name = f"port-{i + 1}-{proto.lower()}"
            elif len(ports) > 1:
                p.name = f"port-{i + 1}"
            p.port = number
            p.protocol = proto
            if target_port:
                p.targetPort.CopyFrom(objects.int_or_string(int(target_port) if target_port.isdigit()
                                                            else target_port))
            else:
                p.targetPort.CopyFrom(objects.int_or_string(number))
    svc.spec.selector.update(sel)
    if service_type:
        svc.spec.type = service_type
    if external_ips:
        svc.spec.externalIPs.extend(i.strip() for i in external_ips.split(",") if i.strip())
    if session_affinity:
        svc.spec.sessionAffinity = session_affinity
    if cluster_ip:
        svc.spec.clusterIP = cluster_ip
    if load_balancer_ip:
        svc.spec.loadBalancerIP = load_balancer_ip
    return svc


@click.command()
@click.argument("args", nargs=-1)
@click.option("-f", "--filename", "filenames", multiple=True, help="expose the objects in these manifests")
@click.option("--port", default="", help="the port the Service serves on (default: the object's ports)")
@click.option("--protocol", default="", type=click.Choice(["", "TCP", "UDP", "SCTP"]))
@click.option("--target-port", default="", help="port number or name on the pods (default: --port)")
@click.option("--name", default="", help="name of the Service (default: the object's name)")
@click.option("--type", "service_type", default="",
              type=click.Choice(["", "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]))
@click.option("--selector", default="", help="pod selector k=v,... (default: the object's)")
@click.option("-l", "--labels", default="", help="labels of the Service (default: the object's)")
@click.option("--external-ip", default="", help="external IPs, comma separated")
@click.option("--session-affinity", default="", type=click.Choice(["", "None", "ClientIP"]))
@click.option("--cluster-ip", default="", help="ClusterIP to ask for, or None for headless")
@click.option("--load-balancer-ip", default="")
@click.option("--dry-run", default="none", type=click.Choice(["none", "client", "server"]))
@click.option("-o", "--output", default="", help="name, yaml or json")
@client_options(name_flag=False)
@handle_errors
def expose(args, filenames, port, protocol, target_port, name, service_type, selector, labels,
           external_ip, session_affinity, cluster_ip, load_balancer_ip, dry_run, output, namespace,
           server, state_dir, cluster_name):
    """Create a Service for a deployment, replica set, pod or service, like `kubectl expose`."""
    t = target(server, state_dir, cluster_name, namespace)
    if filenames:
        sources = [(m.kind, m.obj.metadata.name, manifest_namespace(m, t))
                   for m in manifests.load(list(filenames))]
    else:
        requests, _ = parse_resource_args(args)
        sources = [(k, n, namespace_for(k, t.namespace)) for k, names in requests for n in names]
        if not sources:
            fail("You must provide one or more resources by argument or filename.\n"
                 "Example resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n"
                 "   '<resource> <name>'\n   '<resource>'")
    for kind, _, _ in sources:
        if kind.kind not in EXPOSABLE:
            fail(f"cannot expose a {kind.kind}")
    if output not in ("", "name", "yaml", "json"):
        fail(f'unable to match a printer suitable for the output format "{output}", allowed formats are: json,name,yaml')

    async def body(c: Client) -> list[Message]:
        out = []
        for kind, obj_name, ns in sources:
            obj = await c.get(kind.kind, obj_name, ns)
            svc = build_exposed_service(
                obj, name=name, port=port, protocol=protocol, target_port=target_port,
                service_type=service_type, selector=selector, labels=labels, external_ips=external_ip,
                session_affinity=session_affinity, cluster_ip=cluster_ip, load_balancer_ip=load_balancer_ip)
            if dry_run == "client":
                out.append(svc)
            else:
                out.append(await c.create(svc, dry_run=dry_run == "server"))
        return out

    for svc in run(t, body):
        if output in ("yaml", "json"):
            click.echo(render_generic([svc], True, OutputFormat(output)), nl=False)
        else:
            suffix = "" if output == "name" else " exposed" + (f" ({dry_run} dry run)" if dry_run != "none" else "")
            click.echo(printers.qualified_name(svc) + suffix)


# ------------------------------------------------------------------ scale

@click.command()
@click.argument("args", nargs=-1)
@click.option("--replicas", type=int, required=True, help="the new number of replicas")
@click.option("--current-replicas", type=int, default=-1, help="only scale if replicas is this now")
@click.option("--resource-version", default="", help="only scale if the object is at this version")
@click.option("-f", "--filename", "filenames", multiple=True)
@click.option("-l", "--selector", default="")
@click.option("--all", "all_objects", is_flag=True)
@client_options()
@handle_errors
def scale(args, replicas, current_replicas, resource_version, filenames, selector, all_objects,
          namespace, server, state_dir, cluster_name):
    """Set the replicas of a deployment or replica set: `scale deployment web --replicas 3`."""
    if replicas < 0:
        fail("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
    t = target(server, state_dir, cluster_name, namespace)
    pairs: list[tuple[objects.Kind, str | None, str]] = []
    if filenames:
        pairs = [(m.kind, m.obj.metadata.name, manifest_namespace(m, t))
                 for m in manifests.load(list(filenames))]
    else:
        requests, _ = parse_resource_args(args)
        if not requests:
            fail("You must provide one or more resources by argument or filename.")
        for kind, names in requests:
            if names:
                pairs += [(kind, n, namespace_for(kind, t.namespace)) for n in names]
            elif selector or all_objects:
                pairs.append((kind, None, namespace_for(kind, t.namespace)))
            else:
                fail("resource(s) were provided, but no name was specified")

    async def body(c: Client) -> list[BaseException]:
        failures: list[BaseException] = []
        todo: list[tuple[objects.Kind, str, str]] = []
        for kind, obj_name, ns in pairs:
            if obj_name is None:
                items, _ = await c.list(kind.kind, ns, label_selector=selector)
                todo += [(kind, o.metadata.name, ns) for o in sorted(items, key=_sort_key(kind.kind))]
            else:
                todo.append((kind, obj_name, ns))
        for kind, obj_name, ns in todo:
            if kind.kind not in SCALABLE:
                failures.append(errors.NotFound("the server could not find the requested resource"))
                continue
            try:
                live = await c.get(kind.kind, obj_name, ns)
                body_patch: dict[str, Any] = {"spec": {"replicas": replicas}}
                if current_replicas >= 0 or resource_version:
                    have = live.spec.replicas if live.spec.HasField("replicas") else 1
                    if current_replicas >= 0 and have != current_replicas:
                        failures.append(UserError(f"Expected replicas to be {current_replicas}, was {have}"))
                        continue
                    if resource_version and live.metadata.resourceVersion != resource_version:
                        failures.append(UserError(f"Expected resourceVersion to be {resource_version}, "
                                                  f"was {live.metadata.resourceVersion}"))
                        continue
                    body_patch["metadata"] = {"resourceVersion": live.metadata.resourceVersion}
                result = await c.patch(kind.kind, obj_name, body_patch, ns)
            except errors.ApiError as e:
                failures.append(e)
                continue
            click.echo(f"{printers.qualified_name(result)} scaled")
        if not todo:
            _report("No resources found")
        return failures

    report_all(run(t, body))
