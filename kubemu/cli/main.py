"""The `kubemu` command: component processes, the launcher and kubectl-style client commands.

A user mistake (bad flag, bad manifest, an error the API returns) ends with a one-line
message in kubectl's words and exit status 1, never a traceback.
"""
from __future__ import annotations

import json
import logging
import sys

import click

from kubemu import errors
from kubemu.process import run_async, setup_logging


# Commands that live in other modules, imported only when used, so `kubemu get` does not pay
# for importing the node agent. name -> "module:attribute" (a click.Command).
LAZY_COMMANDS = {
    # kubectl-style client commands
    "apply": "kubemu.cli.kubectl:apply", "create": "kubemu.cli.kubectl:create",
    "get": "kubemu.cli.kubectl:get", "describe": "kubemu.cli.kubectl:describe",
    "delete": "kubemu.cli.kubectl:delete", "patch": "kubemu.cli.kubectl:patch",
    "expose": "kubemu.cli.kubectl:expose", "scale": "kubemu.cli.kubectl:scale",
    "logs": "kubemu.cli.logs:logs", "rollout": "kubemu.cli.rollout:rollout",
    # the launcher and cluster chaos
    "up": "kubemu.cli.cluster:up", "down": "kubemu.cli.cluster:down",
    "status": "kubemu.cli.cluster:status", "node": "kubemu.cli.cluster:node",
    "supervise": "kubemu.cli.cluster:supervise",
    "proxy": "kubemu.cli.proxy:proxy", "port-forward": "kubemu.cli.proxy:port_forward",
    "completion": "kubemu.cli.completion:completion", "wait": "kubemu.cli.wait:wait",
    # component processes
    "controller-manager": "kubemu.controllers.cli:command",
    "nodeagent": "kubemu.nodeagent.cli:command",
    "dns": "kubemu.dns.cli:command",
    "cloud-lb": "kubemu.cloudlb.cli:command",
    "ingress-controller": "kubemu.ingress.cli:command",
}


class Group(click.Group):
    """Lazily loaded commands; API errors that escape a command become kubectl-style messages."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._available()))

    def _available(self):
        import importlib.util
        out = []
        for name, target in LAZY_COMMANDS.items():
            module = target.partition(":")[0]
            try:
                if importlib.util.find_spec(module) is not None:
                    out.append(name)
            except ModuleNotFoundError:
                pass
        return out

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in LAZY_COMMANDS:
            return cmd
        import importlib
        module, _, attr = LAZY_COMMANDS[name].partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            if name in self._available():
                raise
            return None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except errors.ApiError as e:
            click.echo(format_error(e), err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)


_CAUSE_BODIES = ("Invalid value", "Required value", "Duplicate value", "Unsupported value",
                 "Forbidden", "Too long", "Too many", "Not found", "Internal error")


def _cause(c: errors.FieldError) -> str:
    """`field: message`; a cause decoded from the wire carries its whole message as detail."""
    body = c.detail if c.detail.startswith(_CAUSE_BODIES) else str(c).removeprefix(f"{c.field}: ")
    return f"{c.field}: {body}" if c.field else body


def format_error(e: errors.ApiError) -> str:
    if isinstance(e, errors.Unavailable) or e.reason in ("NoCluster",):
        return f"error: {e.message}"
    if e.reason in ("BadRequest",) and "the server doesn't have a resource type" in e.message:
        return f"error: {e.message}"
    if isinstance(e, errors.Invalid):
        # kubectl (cmdutil.CheckErr) words Invalid from the details, one cause inline, several
        # as a list: `The Service "web" is invalid: spec.ports[0].nodePort: Invalid value: ...`
        head = f"The {e.kind} {json.dumps(e.name)} is invalid" if (e.kind or e.name) else "The request is invalid"
        causes = [_cause(c) for c in e.causes]
        if not causes:
            return head
        if len(causes) == 1:
            return f"{head}: {causes[0]}"
        return f"{head}: \n" + "\n".join(f"* {c}" for c in causes)
    return f"Error from server ({e.reason}): {e.message}"


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kubemu")
def main() -> None:
    """kubemu: Kubernetes Service networking, emulated with real processes and sockets."""


def parse_port_range(value: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in value.split("-"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a port range like 30000-32767") from None
    if not 1 <= lo <= hi <= 65535:
        raise click.BadParameter(f"{value!r} is not a valid port range")
    return lo, hi


@main.command()
@click.option("--listen", default="127.0.0.1:6443", show_default=True, help="gRPC address")
@click.option("--state-dir", required=True, type=click.Path(file_okay=False), help="store location")
@click.option("--service-cidr", default="127.96.0.0/16", show_default=True)
@click.option("--node-port-range", default="30000-32767", show_default=True)
@click.option("--history", default=20000, show_default=True, help="changes kept for watches")
@click.option("--max-pending", default=10000, show_default=True,
              help="events a watcher may fall behind before it is cut off")
@click.option("--bookmark-interval", default=5.0, show_default=True, help="seconds")
@click.option("--log-level", default="info", show_default=True)
def apiserver(listen, state_dir, service_cidr, node_port_range, history, max_pending,
              bookmark_interval, log_level):
    """Run the API server (the only store of objects)."""
    from kubemu.apiserver.main import run
    setup_logging(log_level)
    try:
        run_async(run(listen=listen, state_dir=state_dir, service_cidr=service_cidr,
                      node_port_range=parse_port_range(node_port_range), retain=history,
                      max_pending=max_pending, bookmark_interval=bookmark_interval))
    except OSError as e:
        logging.getLogger("kubemu.apiserver").error("%s", e)
        sys.exit(1)


if __name__ == "__main__":
    main()
