"""`kubemu rollout status|restart|history|undo|pause|resume`, as `kubectl rollout`.

The decisions are pure and kubectl's: `status_message` is DeploymentStatusViewer (the words
`rollout status` prints and when it is done), `history_rows` and `revision_template` read the
revision annotations the Deployment controller writes on ReplicaSets, `restart_patch` is the
template annotation `kubectl.kubernetes.io/restartedAt` whose change makes a new ReplicaSet.
Only Deployments roll out here (kubemu has no DaemonSets or StatefulSets).
"""
from __future__ import annotations

import asyncio
import datetime
from typing import Any

import click
import yaml
from google.protobuf.message import Message

from kubemu import errors, objects
from kubemu.cli.kubectl import UserError, client_options, fail, handle_errors, parse_resource_args, run, target
from kubemu.client import Client

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
HASH_LABEL = "pod-template-hash"


# ------------------------------------------------------------------ pure

def _replicas(d: Message) -> int:
    return d.spec.replicas if d.spec.HasField("replicas") else 1


def status_message(d: Message) -> tuple[str, bool]:
    """kubectl's DeploymentStatusViewer.Status: (message, done). Raises UserError when the
    rollout exceeded its progress deadline."""
    name, st = d.metadata.name, d.status
    if d.metadata.generation > st.observedGeneration:
        return "Waiting for deployment spec update to be observed...", False
    for c in st.conditions:
        if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded":
            raise UserError(f'deployment "{name}" exceeded its progress deadline')
    n = _replicas(d)
    if st.updatedReplicas < n:
        return (f'Waiting for deployment "{name}" rollout to finish: {st.updatedReplicas} out of {n} '
                "new replicas have been updated..."), False
    if st.replicas > st.updatedReplicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {st.replicas - st.updatedReplicas} '
                "old replicas are pending termination..."), False
    if st.availableReplicas < st.updatedReplicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {st.availableReplicas} of '
                f"{st.updatedReplicas} updated replicas are available..."), False
    return f'deployment "{name}" successfully rolled out', True


def owned_replicasets(d: Message, rss: list[Message]) -> list[Message]:
    return [r for r in rss if any(ref.uid == d.metadata.uid and ref.controller for ref in r.metadata.ownerReferences)]


def revision_of(rs: Message) -> int:
    try:
        return int(rs.metadata.annotations.get(REVISION, "0"))
    except ValueError:
        return 0


def history_rows(rss: list[Message]) -> list[tuple[int, str]]:
    rows = {revision_of(r): r.metadata.annotations.get(CHANGE_CAUSE, "<none>") for r in rss if revision_of(r)}
    return sorted(rows.items())


def revision_template(rss: list[Message], revision: int) -> Message | None:
    for r in rss:
        if revision_of(r) == revision:
            return r.spec.template
    return None


def restart_patch(now: datetime.datetime) -> dict[str, Any]:
    """The patch `rollout restart` applies (the time in RFC 3339, as kubectl writes it)."""
    stamp = now.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}


def rollback_template(d: Message, rss: list[Message], to_revision: int) -> tuple[Message | None, int]:
    """The template to roll back to (without the hash label) and its revision; revision 0
    means the previous one."""
    revisions = sorted({revision_of(r) for r in rss if revision_of(r)})
    if to_revision == 0:
        if len(revisions) < 2:
            raise UserError("no rollout history found for deployment " + f'"{d.metadata.name}"')
        to_revision = revisions[-2]
    t = revision_template(rss, to_revision)
    if t is None:
        raise UserError(f"unable to find specified revision {to_revision} in history")
    out = type(t)()
    out.CopyFrom(t)
    if HASH_LABEL in out.metadata.labels:
        del out.metadata.labels[HASH_LABEL]
    return out, to_revision


def _duration(text: str) -> float:
    text = (text or "0").strip()
    for suffix, mult in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(suffix):
            try:
                return float(text[:-len(suffix)]) * mult
            except ValueError:
                break
    try:
        return float(text)
    except ValueError:
        fail(f'invalid duration "{text}": use a number of seconds or a value like 5s, 2m')


def _deployment_names(args: tuple[str, ...]) -> list[str]:
    requests, _ = parse_resource_args(args)
    if not requests:
        fail("required resource not specified")
    names = []
    for kind, ns_names in requests:
        if kind.kind != "Deployment":
            fail(f'no rollout support for kind "{kind.kind}": only deployments roll out here')
        if not ns_names:
            fail("resource(s) were provided, but no name was specified")
        names += ns_names
    return names


# ------------------------------------------------------------------ commands

@click.group()
def rollout() -> None:
    """Manage the rollout of a deployment: status, restart, history, undo, pause, resume."""


@rollout.command()
@click.argument("args", nargs=-1, required=True)
@click.option("-w", "--watch/--no-watch", default=True, help="wait until the rollout finishes (default: wait)")
@click.option("--timeout", default="0", help="give up after this long (0: never), e.g. 60s, 5m")
@client_options()
@handle_errors
def status(args, watch, timeout, namespace, server, state_dir, cluster_name):
    """Show the status of a rollout: `rollout status deployment/web`."""
    names = _deployment_names(args)
    if len(names) != 1:
        fail("rollout status takes exactly one deployment")
    name = names[0]
    t = target(server, state_dir, cluster_name, namespace)
    limit = _duration(timeout)

    async def body(c: Client) -> None:
        last = ""

        def show(d: Message) -> bool:
            nonlocal last
            msg, done = status_message(d)
            if msg != last:
                click.echo(msg)
                last = msg
            return done

        d = await c.get("Deployment", name, t.namespace)
        if show(d) or not watch:
            return
        async for batch in c.watch("Deployment", t.namespace, resource_version=int(d.metadata.resourceVersion),
                                   field_selector=f"metadata.name={name}"):
            for ev in batch:
                if ev.type == "DELETED":
                    fail(f'deployment "{name}" was deleted')
                if ev.object is not None and ev.type in ("ADDED", "MODIFIED") and show(ev.object):
                    return

    async def bounded(c: Client) -> None:
        if limit <= 0:
            while True:
                try:
                    return await body(c)
                except errors.TooOld:
                    continue
        try:
            await asyncio.wait_for(body(c), limit)
        except asyncio.TimeoutError:
            fail("timed out waiting for the condition")

    run(t, bounded)


@rollout.command()
@click.argument("args", nargs=-1, required=True)
@client_options()
@handle_errors
def restart(args, namespace, server, state_dir, cluster_name):
    """Restart a deployment's pods by rolling out its template again."""
    names = _deployment_names(args)
    t = target(server, state_dir, cluster_name, namespace)

    async def body(c: Client) -> None:
        for name in names:
            d = await c.get("Deployment", name, t.namespace)
            if d.spec.paused:
                fail(f"deployments.apps \"{name}\" can't restart paused deployment (run rollout resume first)")
            await c.patch("Deployment", name, restart_patch(datetime.datetime.now(datetime.timezone.utc)),
                          t.namespace)
            click.echo(f"deployment.apps/{name} restarted")

    run(t, body)


@rollout.command()
@click.argument("args", nargs=-1, required=True)
@click.option("--revision", type=int, default=0, help="show the pod template of this revision")
@client_options()
@handle_errors
def history(args, revision, namespace, server, state_dir, cluster_name):
    """List a deployment's revisions (from its ReplicaSets), or show one."""
    names = _deployment_names(args)
    t = target(server, state_dir, cluster_name, namespace)

    async def body(c: Client) -> None:
        async for name, d, rss in _with_replicasets(c, names, t.namespace):
            if revision:
                tpl = revision_template(rss, revision)
                if tpl is None:
                    fail(f"unable to find the specified revision {revision}")
                click.echo(f"deployment.apps/{name} with revision #{revision}")
                click.echo(_render_template(tpl), nl=False)
                continue
            click.echo(f"deployment.apps/{name} ")
            rows = [("REVISION", "CHANGE-CAUSE")] + [(str(r), cause) for r, cause in history_rows(rss)]
            width = max(len(r[0]) for r in rows) + 2
            for r, cause in rows:
                click.echo(f"{r:<{width}}{cause}")
            click.echo("")

    run(t, body)


async def _with_replicasets(c: Client, names: list[str], namespace: str):
    """(name, deployment, its ReplicaSets) for each name; the ReplicaSets are listed once."""
    all_rss, _ = await c.list("ReplicaSet", namespace)
    for name in names:
        d = await c.get("Deployment", name, namespace)
        yield name, d, owned_replicasets(d, all_rss)


def _render_template(tpl: Message) -> str:
    try:
        from kubemu.cli import describe as describers
        w = describers.Writer()
        describers._pod_template(w, tpl)
        return w.text()
    except Exception:  # the describe helpers are optional here: fall back to YAML
        return yaml.safe_dump(objects.to_dict(tpl), sort_keys=False)


@rollout.command()
@click.argument("args", nargs=-1, required=True)
@click.option("--to-revision", type=int, default=0, help="the revision to go back to (default: the previous one)")
@client_options()
@handle_errors
def undo(args, to_revision, namespace, server, state_dir, cluster_name):
    """Roll a deployment back to a previous revision's pod template."""
    names = _deployment_names(args)
    t = target(server, state_dir, cluster_name, namespace)

    async def body(c: Client) -> None:
        async for name, d, rss in _with_replicasets(c, names, t.namespace):
            tpl, rev = rollback_template(d, rss, to_revision)
            if tpl == d.spec.template:
                click.echo(f"deployment.apps/{name} skipped rollback (current template already matches revision {rev})")
                continue
            new = type(d)()
            new.CopyFrom(d)
            new.spec.template.CopyFrom(tpl)
            await c.update(new)
            click.echo(f"deployment.apps/{name} rolled back")

    run(t, body)


def _pause(args, paused: bool, namespace, server, state_dir, cluster_name) -> None:
    names = _deployment_names(args)
    t = target(server, state_dir, cluster_name, namespace)
    word = "paused" if paused else "resumed"

    async def body(c: Client) -> None:
        for name in names:
            d = await c.get("Deployment", name, t.namespace)
            if d.spec.paused == paused:
                click.echo(f"deployment.apps/{name} already {word}")
                continue
            await c.patch("Deployment", name, {"spec": {"paused": paused}}, t.namespace)
            click.echo(f"deployment.apps/{name} {word}")

    run(t, body)


@rollout.command()
@click.argument("args", nargs=-1, required=True)
@client_options()
@handle_errors
def pause(args, namespace, server, state_dir, cluster_name):
    """Pause a deployment: template changes wait until it is resumed."""
    _pause(args, True, namespace, server, state_dir, cluster_name)


@rollout.command()
@click.argument("args", nargs=-1, required=True)
@client_options()
@handle_errors
def resume(args, namespace, server, state_dir, cluster_name):
    """Resume a paused deployment."""
    _pause(args, False, namespace, server, state_dir, cluster_name)

