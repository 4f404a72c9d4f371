"""Helpers the benchmark scripts share: load from wrk, CPU and memory of a process from /proc.

Imported as `benchlib` (a script's own folder is first on sys.path when it runs).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys


def wrk(url: str, duration: float, *, connections: int = 50, close: bool = False,
        headers: tuple[str, ...] = ()) -> float:
    """Requests/s from `wrk -t1`, keep-alive or (`close`) a new connection per request. Socket
    errors and non-2xx answers are reported on stderr, not hidden in the figure."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    for h in headers + (("Connection: close",) if close else ()):
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=duration + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk {url}: {out}")
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if (errors and "connect 0, read 0, write 0, timeout 0" not in errors.group(1)) or non2xx:
        print(f"    wrk {url} close={close}: {errors.group(0) if errors else ''} "
              f"{non2xx.group(0) if non2xx else ''}", file=sys.stderr)
    return float(m.group(1))


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()
    except OSError:
        return None


def cpu_seconds(pid: int | None, *, children: bool = False) -> float:
    """User + system CPU seconds of a process (0 if there is none). With `children`, also those
    of its reaped children and of the live ones (socat forks one per connection). CPU per
    operation depends far less on other load on the machine than throughput does."""
    fields = _stat(pid) if pid else None
    if not fields:
        return 0.0
    ticks = sum(int(x) for x in fields[11:15 if children else 13])
    if children:
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (f := _stat(int(entry))) and f[1] == str(pid):
                ticks += sum(int(x) for x in f[11:13])
    return ticks / os.sysconf("SC_CLK_TCK")


def stolen_seconds() -> float:
    """CPU time the hypervisor gave to other guests, over all CPUs (/proc/stat "steal"): on a
    shared VM the reason one run of a benchmark differs from the next."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8]) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB; NaN when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")
