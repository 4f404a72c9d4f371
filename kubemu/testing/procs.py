"""Start and stop real kubemu processes for tests, on addresses and ports of their own.

Every process started here is stopped by the test that started it (SIGTERM, then SIGKILL),
even when the test fails. Clusters get a "slot": a /16 of their own inside 127.0.0.0/8
(127.S.0.0/16), so suites can run side by side without sharing a VIP, a node IP or a port.
Slots are claimed with a lock file, so separate pytest processes do not collide either.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")

SLOT_DIR = os.path.join(tempfile.gettempdir(), "kubemu-slots")
SLOT_RANGE = range(20, 90)  # 127.20.0.0/16 .. 127.89.0.0/16, clear of DESIGN.md's defaults


# Test ports come from below the kernel's ephemeral range (32768-60999 by default) and the
# NodePort range: a port found free there stays free until the test binds it, whereas an
# ephemeral port can be taken meanwhile by any outgoing connection or UDP socket.
TEST_PORTS = range(20000, 29990)


def _free(host: str, port: int) -> bool:
    """Free for TCP and UDP alike (a DNS server needs both)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]
    try:
        for s in socks:
            s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


_handed_out: collections.deque[int] = collections.deque(maxlen=2000)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for TCP and UDP; not one this process handed out recently (two calls before
    either port is bound must not get the same one)."""
    for _ in range(500):
        port = random.choice(TEST_PORTS)
        if port not in _handed_out and _free(host, port):
            _handed_out.append(port)
            return port
    with socket.socket() as s:  # a crowded range: fall back to one the kernel picks
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
             message: str = "condition") -> T:
    """Poll until predicate returns a truthy value; fail with `message` at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the condition may raise until it holds
            last_exc = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}"
                               + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


@dataclasses.dataclass
class Slot:
    """A cluster's private address plan (DESIGN.md section 2, moved into 127.S.0.0/16)."""

    index: int
    _lock: object = None

    @property
    def service_cidr(self) -> str:
        return f"127.{self.index}.96.0/20"

    @property
    def dns_vip(self) -> str:
        return f"127.{self.index}.96.10"

    def node_ip(self, n: int) -> str:
        return f"127.{self.index}.10.{n}"

    @property
    def pod_cidr(self) -> str:
        return f"127.{self.index}.128.0/17"

    @property
    def lb_pool(self) -> str:
        return f"127.{self.index}.200.0/24"

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def claim_slot() -> Slot:
    os.makedirs(SLOT_DIR, exist_ok=True)
    candidates = list(SLOT_RANGE)
    random.shuffle(candidates)
    for i in candidates:
        f = open(os.path.join(SLOT_DIR, f"{i}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        return Slot(i, f)
    raise RuntimeError("no free kubemu test slot")


class Proc:
    """A child process with its output in a log file; `stop()` is idempotent."""

    def __init__(self, args: list[str], log_path: str, env: dict[str, str] | None = None):
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, sig)

    def stop(self, grace: float = 5.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def kill(self) -> None:
        if self.alive():
            # the whole session: a node agent's pod processes go with it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


def kubemu_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubemu.cli.main", *args]


def wait_port(host: str, port: int, timeout: float = 10.0, proc: Proc | None = None) -> None:
    def check() -> bool:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"process exited: {proc.args}\n{proc.output()[-2000:]}")
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex((host, port)) == 0
    wait_for(check, timeout, message=f"{host}:{port} to accept connections")


@contextlib.contextmanager
def apiserver(state_dir: str, *extra: str, port: int | None = None,
              service_cidr: str = "127.96.0.0/16") -> Iterator[tuple[Proc, str]]:
    """A real API server process; yields (proc, address)."""
    port = port or free_port()
    address = f"127.0.0.1:{port}"
    os.makedirs(state_dir, exist_ok=True)
    proc = Proc(kubemu_command("apiserver", "--listen", address, "--state-dir", state_dir,
                               "--service-cidr", service_cidr, *extra),
                os.path.join(state_dir, "apiserver.log"))
    try:
        wait_port("127.0.0.1", port, 15, proc)
        yield proc, address
    finally:
        proc.stop()


def run(coro, timeout: float = 60.0):
    """Run an async test body with a deadline, so a hang fails the test instead of the suite."""
    import asyncio
    return asyncio.run(asyncio.wait_for(coro, timeout))
