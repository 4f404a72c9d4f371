"""Where container logs live, and reading them back (tail, follow).

Layout as the kubelet's /var/log/pods: `<state-dir>/pods/<ns>_<name>_<uid>/<container>/<n>.log`,
one file per container instance (`n` is its restartCount), so `--previous` is the file before.
A child process writes straight into its file (its stdout and stderr are the file), so the
agent copies nothing and the log survives the agent.
"""
from __future__ import annotations

import os
import shutil


def pod_dir(root: str, namespace: str, name: str, uid: str) -> str:
    return os.path.join(root, "pods", f"{namespace}_{name}_{uid}")


def container_log(root: str, namespace: str, name: str, uid: str, container: str, instance: int) -> str:
    return os.path.join(pod_dir(root, namespace, name, uid), container, f"{instance}.log")


def open_for_append(path: str) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)


def append_line(path: str, line: str) -> None:
    """One line from the agent on behalf of an emulated container (its startup message)."""
    try:
        fd = open_for_append(path)
    except OSError:
        return
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)


def remove_pod(root: str, namespace: str, name: str, uid: str) -> None:
    shutil.rmtree(pod_dir(root, namespace, name, uid), ignore_errors=True)


def tail_offset(path: str, lines: int, chunk: int = 65536) -> int:
    """The byte offset where the last `lines` lines of the file begin (0: the whole file)."""
    if lines < 0:
        return 0
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        if lines == 0:
            return end
        pos = end
        # A trailing newline ends the last line; it does not start another one.
        seen = 0
        if end > 0:
            f.seek(end - 1)
            if f.read(1) == b"\n":
                seen = -1
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step)
            i = len(data)
            while True:
                i = data.rfind(b"\n", 0, i)
                if i < 0:
                    break
                seen += 1
                if seen == lines:
                    return pos + i + 1
        return 0
