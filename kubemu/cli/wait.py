"""`kubemu wait` (kubectl wait): block until objects meet a condition, or time out.

    kubemu wait --for=condition=Ready pod -l app=web
    kubemu wait --for=jsonpath='{.status.loadBalancer.ingress[0].ip}' svc/hello
    kubemu wait --for=jsonpath='{.status.readyReplicas}'=3 deployment/web
    kubemu wait --for=delete pod/web-abc12 --timeout=30s
"""
from __future__ import annotations

import asyncio
import time

import click

from kubemu import errors, objects
from kubemu.cli import jsonpath
from kubemu.cli.kubectl import (_duration, client_options, fail, handle_errors, kind_for, namespace_for,
                                run, target)
from kubemu.client import Client


def parse_for(spec: str):
    """A predicate over an object's dict (None when the object is gone), from --for."""
    if spec == "delete":
        return lambda d: d is None
    kind, _, rest = spec.partition("=")
    if kind == "condition":
        cond, _, want = rest.partition("=")
        if not cond:
            fail("--for=condition=NAME[=VALUE] needs a condition name")
        want = want or "True"

        def has_condition(d):
            if d is None:
                return False
            conds = d.get("status", {}).get("conditions", [])
            return any(c.get("type", "").lower() == cond.lower() and str(c.get("status")) == want
                       for c in conds)
        return has_condition
    if kind == "jsonpath":
        # `{.a.b}=value` or just `{.a.b}` (present and non-empty)
        expr, value = rest, None
        if "}=" in rest:
            expr, value = rest.split("}=", 1)
            expr += "}"
        template = jsonpath.parse(jsonpath.relaxed(expr))

        def matches(d):
            if d is None:
                return False
            try:
                got = jsonpath.render(template, d)
            except jsonpath.JSONPathError:
                return False
            return got != "" if value is None else got == value
        return matches
    fail(f"unrecognized condition: {spec!r} (use condition=NAME, jsonpath='{{...}}'[=VALUE] or delete)")


@click.command()
@click.argument("args", nargs=-1, required=True)
@click.option("--for", "for_", required=True, help="condition=NAME[=VALUE], jsonpath='{...}'[=VALUE] or delete")
@click.option("-l", "--selector", default="", help="label selector")
@click.option("--timeout", default="30s", show_default=True, help="give up after this long (30s, 2m)")
@client_options()
@handle_errors
def wait(args, for_, selector, timeout, namespace, server, state_dir, cluster_name):
    """Wait until objects meet a condition (kubectl wait)."""
    t = target(server, state_dir, cluster_name, namespace)
    predicate = parse_for(for_)
    deadline = time.monotonic() + _duration(timeout)
    wanted: list[tuple[objects.Kind, str]] = []
    kind = None
    for a in args:
        if "/" in a:
            k, _, name = a.partition("/")
            wanted.append((kind_for(k), name))
        elif kind is None:
            kind = kind_for(a)
        else:
            wanted.append((kind, a))
    if not wanted and (kind is None or not selector):
        fail("specify objects as KIND/NAME, KIND NAME..., or KIND with -l SELECTOR")

    async def body(c: Client) -> list[str]:
        targets = list(wanted)
        if kind is not None and selector:
            items, _ = await c.list(kind.kind, namespace_for(kind, t.namespace), label_selector=selector)
            if not items:
                fail("no matching resources found")
            targets += [(kind, i.metadata.name) for i in items]
        done: list[str] = []
        pending = list(targets)
        while pending:
            still = []
            for k, name in pending:
                try:
                    d = objects.to_dict(await c.get(k.kind, name, namespace_for(k, t.namespace)))
                except errors.NotFound:
                    if for_ != "delete" and (k, name) in wanted:
                        raise
                    d = None
                if predicate(d):
                    done.append(f"{k.kind.lower()}{'.' + k.group if k.group else ''}/{name} "
                                + ("deleted" if for_ == "delete" else "condition met"))
                else:
                    still.append((k, name))
            pending = still
            if pending:
                if time.monotonic() > deadline:
                    k, name = pending[0]
                    fail(f"timed out waiting for the condition on {k.plural}/{name}")
                await asyncio.sleep(0.1)
        return done

    for line in run(t, body):
        click.echo(line)
