"""Containers with a `command`: real child processes that die with the agent, even on kill -9.

Two mechanisms, because each alone leaves a gap:
- Every child is started through `setpriv --pdeathsig KILL` (util-linux), which sets
  PR_SET_PDEATHSIG and then execs the command, so the kernel kills the child the moment the
  agent's main thread dies. (Setting it with a preexec_fn would run Python between fork and
  exec in a process that has gRPC threads, which can deadlock.)
- Every child leads a process group of its own (a new session), and a small reaper process,
  started with the first child, learns each group over a pipe. When the agent dies the pipe
  reaches EOF and the reaper SIGKILLs every group it knows: that also catches grandchildren
  (a shell's background jobs), which the parent-death signal does not reach. The reaper lives
  in a session of its own, so a signal to the agent's process group cannot take it first.

When a container's main process exits, its group is SIGKILLed too, as a container runtime
tears down the container's cgroup: nothing it started outlives it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys

from kubemu.nodeagent.kubelet import logs
from kubemu.nodeagent.kubelet.runtime import ExitInfo, StartError

log = logging.getLogger("kubemu.nodeagent.kubelet.process")

SETPRIV = shutil.which("setpriv")

_REAPER_SCRIPT = r"""
import os
groups = set()
buf = b""
while True:
    try:
        data = os.read(0, 65536)
    except InterruptedError:
        continue
    if not data:
        break
    buf += data
    *lines, buf = buf.split(b"\n")
    for line in lines:
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
for pg in groups:
    try:
        os.killpg(pg, 9)
    except OSError:
        pass
"""


class Reaper:
    """The helper that kills every container's process group when the agent goes away."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _ensure(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen([sys.executable, "-S", "-I", "-c", _REAPER_SCRIPT],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)

    def _send(self, line: str) -> None:
        try:
            self._ensure()
            assert self.proc is not None and self.proc.stdin is not None
            os.write(self.proc.stdin.fileno(), line.encode())
        except OSError as e:
            log.warning("reaper: %s", e)

    def add(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        if self.proc is not None:
            self._send(f"-{pgid}\n")

    def close(self) -> None:
        """Close the pipe: the reaper kills what is still registered, then exits."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.proc = None


def wrap(argv: list[str]) -> list[str]:
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv] if SETPRIV else list(argv)


def check_executable(argv: list[str], env: dict[str, str], cwd: str | None) -> None:
    """Fail as a runtime does before starting: a missing program or working directory."""
    if not argv:
        raise StartError("no command given")
    if cwd is not None and not os.path.isdir(cwd):
        raise StartError(f'failed to start container: chdir to cwd ("{cwd}") set in config.json failed: '
                         "no such file or directory")
    prog = argv[0]
    if "/" in prog:
        path = prog if os.path.isabs(prog) else os.path.join(cwd or os.getcwd(), prog)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise StartError(f'exec: "{prog}": stat {prog}: no such file or directory')
    elif shutil.which(prog, path=env.get("PATH", os.defpath)) is None:
        raise StartError(f'exec: "{prog}": executable file not found in $PATH')


def exit_info(returncode: int) -> ExitInfo:
    if returncode < 0:
        sig = -returncode
        return ExitInfo(128 + sig, "Error", signal=sig)
    return ExitInfo(returncode, "Completed" if returncode == 0 else "Error")


class ProcessInstance:
    """One run of a container's command."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None, log_path: str, reaper: Reaper):
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.reaper = reaper
        self.proc: asyncio.subprocess.Process | None = None
        self.pgid = 0
        self.exited: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Task | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    async def start(self) -> None:
        check_executable(self.argv, self.env, self.cwd)
        fd = logs.open_for_append(self.log_path)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *wrap(self.argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=self.env,
                cwd=self.cwd, start_new_session=True)
        except OSError as e:
            raise StartError(f"failed to start {self.argv[0]!r}: {e.strerror or e}") from None
        finally:
            os.close(fd)
        self.pgid = self.proc.pid
        self.reaper.add(self.pgid)
        self._waiter = asyncio.ensure_future(self._wait())

    async def _wait(self) -> None:
        assert self.proc is not None
        rc = await self.proc.wait()
        # Whatever the main process left behind in its group goes with it.
        with contextlib.suppress(OSError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.reaper.remove(self.pgid)
        if not self.exited.done():
            self.exited.set_result(exit_info(rc))

    def _signal(self, sig: int) -> None:
        if self.pgid and not self.exited.done():
            with contextlib.suppress(OSError):
                os.killpg(self.pgid, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


async def run_command(argv: list[str], *, env: dict[str, str], cwd: str | None, timeout: float,
                      reaper: Reaper) -> tuple[int, bytes]:
    """Run a command to completion (exec probes, preStop hooks, agnhost /shell): (exit code,
    output). On timeout the whole group is killed and the exit code is -1."""
    check_executable(argv, env, cwd)
    proc = await asyncio.create_subprocess_exec(
        *wrap(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=env, cwd=cwd, start_new_session=True)
    reaper.add(proc.pid)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode if proc.returncode is not None else -1, out
    except asyncio.TimeoutError:
        return -1, b""
    finally:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        reaper.remove(proc.pid)
