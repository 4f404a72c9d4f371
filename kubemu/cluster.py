"""Where a cluster lives: its state directory and the `cluster.json` that says where it listens.

Every command that concerns a cluster finds it the same way (DESIGN.md section 6):
`--state-dir`, else KUBEMU_STATE_DIR, else $XDG_STATE_HOME/kubemu/<name>
(~/.local/state/kubemu/default); client commands also take `--server`/KUBEMU_SERVER.
"""
from __future__ import annotations

import json
import os
from typing import Any

from kubemu.errors import ApiError

CLUSTER_FILE = "cluster.json"


class NoCluster(ApiError):
    reason, code = "NoCluster", 0


def state_dir(explicit: str | None = None, name: str = "default") -> str:
    if explicit:
        return os.path.abspath(explicit)
    env = os.environ.get("KUBEMU_STATE_DIR")
    if env:
        return os.path.abspath(env)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "kubemu", name)


def read(directory: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(directory, CLUSTER_FILE)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise NoCluster(f"{os.path.join(directory, CLUSTER_FILE)} is not valid JSON: {e}") from None


def write(directory: str, info: dict[str, Any]) -> None:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, CLUSTER_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def server_address(server: str | None = None, directory: str | None = None, name: str = "default") -> str:
    """The API server to talk to: --server / KUBEMU_SERVER, else the cluster's cluster.json."""
    server = server or os.environ.get("KUBEMU_SERVER")
    if server:
        return server
    d = state_dir(directory, name)
    info = read(d)
    if not info or not info.get("apiserver", {}).get("address"):
        raise NoCluster(f"no cluster found in {d} (start one with `kubemu up`, or pass "
                        "--server / set KUBEMU_SERVER)")
    return info["apiserver"]["address"]
