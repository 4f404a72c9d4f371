"""Fixtures for the CLI tests: one real API server process, and two ways to run `kubemu`.

`kubemu(...)` runs the command in-process through click's CliRunner (fast; every command
still talks gRPC to the real server); `kubemu_proc(...)` runs it as a real subprocess, for
what only a process shows: exit status, stdin, signals, no traceback.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
from typing import Iterator

import pytest
from click.testing import CliRunner

from kubemu.cli.main import main
from kubemu.testing import procs

MANIFESTS = os.path.join(os.path.dirname(__file__), "manifests")
_counter = itertools.count()


@dataclasses.dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


@dataclasses.dataclass
class Cluster:
    server: str
    slot: procs.Slot

    def kubemu(self, *args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        r = runner.invoke(main, [*args, "--server", self.server], input=input, catch_exceptions=True)
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception  # a traceback is a bug: let pytest show it
        return Result(r.exit_code, r.stdout, r.stderr)

    def ok(self, *args: str, input: str | None = None) -> str:
        r = self.kubemu(*args, input=input)
        assert r.exit_code == 0, f"kubemu {' '.join(args)} failed:\n{r.stdout}{r.stderr}"
        return r.stdout

    def kubemu_proc(self, *args: str, input: str | None = None, timeout: float = 30,
                    env: dict[str, str] | None = None) -> Result:
        full_env = {**os.environ, "KUBEMU_SERVER": self.server, **(env or {})}
        p = subprocess.run(procs.kubemu_command(*args), input=input, capture_output=True, text=True,
                           timeout=timeout, env=full_env)
        return Result(p.returncode, p.stdout, p.stderr)

    def namespace(self, prefix: str = "t") -> str:
        """A fresh namespace, so tests sharing the server do not see each other's objects."""
        name = f"{prefix}-{next(_counter)}"
        self.ok("create", "namespace", name)
        return name


@pytest.fixture(scope="session")
def cli_cluster(tmp_path_factory) -> Iterator[Cluster]:
    slot = procs.claim_slot()
    state = tmp_path_factory.mktemp("cli-apiserver")
    try:
        with procs.apiserver(str(state), "--bookmark-interval", "0.5",
                             service_cidr=slot.service_cidr) as (_, address):
            yield Cluster(address, slot)
    finally:
        slot.release()


@pytest.fixture
def ns(cli_cluster) -> str:
    return cli_cluster.namespace()


def manifest(name: str) -> str:
    return os.path.join(MANIFESTS, name)
