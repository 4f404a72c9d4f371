"""`kubemu completion bash|zsh|fish`: print a shell completion script (click's own)."""
from __future__ import annotations

import click
from click.shell_completion import get_completion_class


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell):
    """Print the completion script for SHELL; e.g. `source <(kubemu completion bash)`."""
    from kubemu.cli.main import main
    cls = get_completion_class(shell)
    comp = cls(main, {}, "kubemu", "_KUBEMU_COMPLETE")
    click.echo(comp.source())
