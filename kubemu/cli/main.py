"""The `kubemu` command: component processes, the launcher and kubectl-style client commands.

A user mistake (bad flag, bad manifest, an error the API returns) ends with a one-line
message in kubectl's words and exit status 1, never a traceback.
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys

import click

from kubemu import errors


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_async(coro):
    """Run a component's main coroutine on uvloop when available."""
    try:
        import uvloop
        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


class Group(click.Group):
    """Turn API errors that escape a command into kubectl-style messages."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except errors.ApiError as e:
            click.echo(format_error(e), err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)


def format_error(e: errors.ApiError) -> str:
    if isinstance(e, errors.Unavailable) or e.reason in ("NoCluster",):
        return f"error: {e.message}"
    if e.reason in ("BadRequest",) and "the server doesn't have a resource type" in e.message:
        return f"error: {e.message}"
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
    run_async(run(listen=listen, state_dir=state_dir, service_cidr=service_cidr,
                  node_port_range=parse_port_range(node_port_range), retain=history,
                  max_pending=max_pending, bookmark_interval=bookmark_interval))


if __name__ == "__main__":
    main()
