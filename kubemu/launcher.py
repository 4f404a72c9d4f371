"""The local-cluster launcher: what processes a cluster has, and a supervisor that keeps them.

`plan(config)` is pure: from a cluster's configuration (address ranges, ports, node count) it
derives every process to run with its command line. The `Supervisor` runs in a detached
process of its own (`kubemu up` starts it), starts the plan, restarts a control-plane process
that dies unexpectedly (with back-off), leaves a node agent stopped when it was stopped on
purpose, and keeps `cluster.json` current. The CLI changes what should run by editing
`desired.json` and sending the supervisor SIGUSR1; the supervisor is the only one that starts
or stops its children, so there is a single owner for every pid.
"""
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from kubemu import cluster

log = logging.getLogger("kubemu.launcher")

CONTROL_PLANE = ("apiserver", "controller-manager", "dns", "cloud-lb", "ingress-controller")
DESIRED_FILE = "desired.json"
CONFIG_FILE = "config.json"


@dataclasses.dataclass
class Config:
    """Every address range and port of one cluster (DESIGN.md section 2)."""

    name: str = "default"
    nodes: int = 3
    apiserver_port: int = 6443
    service_cidr: str = "127.96.0.0/16"
    node_ip_base: str = "127.10.0.0"
    pod_cidr: str = "127.244.0.0/16"
    lb_pool: str = "127.200.0.0/24"
    node_port_range: str = "30000-32767"
    dns_listen: str = "127.0.0.1:10053"
    kubelet_port: int = 10250
    node_grace: float = 3.0
    eviction_timeout: float = 10.0

    @property
    def apiserver(self) -> str:
        return f"127.0.0.1:{self.apiserver_port}"

    @property
    def dns_service_ip(self) -> str:
        return str(ipaddress.ip_network(self.service_cidr)[10])

    def node_ip(self, n: int) -> str:
        return str(ipaddress.ip_address(self.node_ip_base) + n)

    def node_pod_cidr(self, n: int) -> str:
        return str(list(ipaddress.ip_network(self.pod_cidr).subnets(new_prefix=24))[n])

    @property
    def ingress_ip(self) -> str:
        """The ingress controller's 'pod IP': the last address of the pod CIDR. node-N gets the
        N-th /24, so no node's pods use it unless a node takes the CIDR's very last /24."""
        return str(ipaddress.ip_network(self.pod_cidr)[-2])

    @classmethod
    def load(cls, state_dir: str) -> "Config":
        with open(os.path.join(state_dir, CONFIG_FILE)) as f:
            data = json.load(f)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, state_dir: str) -> None:
        os.makedirs(state_dir, exist_ok=True)
        with open(os.path.join(state_dir, CONFIG_FILE), "w") as f:
            json.dump(dataclasses.asdict(self), f, indent=2)


def validate(cfg: Config) -> list[str]:
    """Problems with a configuration, as messages naming the flag."""
    problems = []
    for flag, value in (("--service-cidr", cfg.service_cidr), ("--pod-cidr", cfg.pod_cidr),
                        ("--lb-pool", cfg.lb_pool)):
        try:
            net = ipaddress.ip_network(value)
        except ValueError as e:
            problems.append(f"{flag}: {e}")
            continue
        if not net.subnet_of(ipaddress.ip_network("127.0.0.0/8")):
            problems.append(f"{flag}: {value} is outside 127.0.0.0/8; kubemu only uses loopback addresses")
    try:
        base = ipaddress.ip_address(cfg.node_ip_base)
        if base not in ipaddress.ip_network("127.0.0.0/8"):
            problems.append(f"--node-ip-base: {base} is outside 127.0.0.0/8")
    except ValueError as e:
        problems.append(f"--node-ip-base: {e}")
    if not 0 <= cfg.nodes <= 250:
        problems.append(f"--nodes: {cfg.nodes} is not between 0 and 250")
    if not problems and cfg.nodes >= len(list(ipaddress.ip_network(cfg.pod_cidr).subnets(new_prefix=24))):
        problems.append(f"--pod-cidr: {cfg.pod_cidr} has no /24 for each of {cfg.nodes} nodes")
    return problems


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    name: str  # "apiserver", "dns", "node-2", ...
    args: tuple[str, ...]
    role: str  # "control-plane" or "node"


def node_number(name: str) -> int:
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"node name {name!r} must end in -N (node-1, node-2, ...)") from None


def available(component_module: str) -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(component_module) is not None
    except ModuleNotFoundError:
        return False


def plan(cfg: Config, state_dir: str, nodes: list[str]) -> list[ProcessSpec]:
    """The processes of a cluster, control plane first. Components not built yet are skipped."""
    server = ("--server", cfg.apiserver)
    specs = [ProcessSpec("apiserver", (
        "apiserver", "--listen", cfg.apiserver, "--state-dir", os.path.join(state_dir, "store"),
        "--service-cidr", cfg.service_cidr, "--node-port-range", cfg.node_port_range), "control-plane")]
    if available("kubemu.controllers.cli"):
        specs.append(ProcessSpec("controller-manager", (
            "controller-manager", *server, "--service-cidr", cfg.service_cidr,
            "--node-monitor-grace-period", str(cfg.node_grace),
            "--pod-eviction-timeout", str(cfg.eviction_timeout)), "control-plane"))
    if available("kubemu.dns.cli"):
        specs.append(ProcessSpec("dns", (
            "dns", *server, "--listen", cfg.dns_listen, "--service-ip", cfg.dns_service_ip),
            "control-plane"))
    if available("kubemu.cloudlb.cli"):
        specs.append(ProcessSpec("cloud-lb", ("cloud-lb", *server, "--pool", cfg.lb_pool),
                                 "control-plane"))
    if available("kubemu.ingress.cli"):
        specs.append(ProcessSpec("ingress-controller", (
            "ingress-controller", *server, "--listen-ip", cfg.ingress_ip, "--http-port", "80",
            "--https-port", "443"), "control-plane"))
    if available("kubemu.nodeagent.cli"):
        for name in nodes:
            n = node_number(name)
            specs.append(ProcessSpec(name, (
                "nodeagent", *server, "--name", name, "--node-ip", cfg.node_ip(n),
                "--pod-cidr", cfg.node_pod_cidr(n), "--kubelet-port", str(cfg.kubelet_port),
                "--state-dir", os.path.join(state_dir, "nodes", name)), "node"))
    return specs


# ------------------------------------------------------------------ desired state

def read_desired(state_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(state_dir, DESIRED_FILE)) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"nodes": {}}


def write_desired(state_dir: str, desired: dict[str, Any]) -> None:
    path = os.path.join(state_dir, DESIRED_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(desired, f, indent=2)
    os.replace(path + ".tmp", path)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    return True


def _set_pdeathsig() -> None:
    """Children die with the supervisor, even when it is killed with SIGKILL (Linux only)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Supervisor:
    def __init__(self, state_dir: str, *, backoff_max: float = 10.0):
        self.state_dir = state_dir
        self.cfg = Config.load(state_dir)
        self.backoff_max = backoff_max
        self.children: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}
        self.next_start: dict[str, float] = {}
        self.exits: dict[str, int] = {}
        self.wake = False
        self.stopping = False
        os.makedirs(os.path.join(state_dir, "logs"), exist_ok=True)

    def _specs(self) -> list[ProcessSpec]:
        desired = read_desired(self.state_dir)
        nodes = sorted(desired.get("nodes", {}), key=node_number)
        return plan(self.cfg, self.state_dir, nodes)

    def _wanted(self, spec: ProcessSpec) -> bool:
        if spec.role != "node":
            return True
        return read_desired(self.state_dir)["nodes"].get(spec.name, "running") == "running"

    def _start(self, spec: ProcessSpec) -> None:
        logf = open(os.path.join(self.state_dir, "logs", f"{spec.name}.log"), "ab")
        self.children[spec.name] = subprocess.Popen(
            [sys.executable, "-m", "kubemu.cli.main", *spec.args], stdout=logf,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_set_pdeathsig)
        logf.close()
        log.info("started %s (pid %d)", spec.name, self.children[spec.name].pid)

    def _stop(self, name: str, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        proc = self.children.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(grace if sig != signal.SIGKILL else 5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def reconcile(self) -> None:
        now = time.monotonic()
        specs = self._specs()
        wanted = {s.name for s in specs if self._wanted(s)}
        desired_nodes = read_desired(self.state_dir)["nodes"]
        for name in list(self.children):
            if name not in wanted:
                mode = desired_nodes.get(name, "removed")
                self._stop(name, signal.SIGKILL if mode == "killed" else signal.SIGTERM)
                log.info("stopped %s (%s)", name, mode)
        for spec in specs:
            if spec.name not in wanted:
                continue
            proc = self.children.get(spec.name)
            if proc is not None and proc.poll() is None:
                continue
            if proc is not None:
                code = proc.returncode
                self.exits[spec.name] = code
                del self.children[spec.name]
                n = self.restarts.get(spec.name, 0) + 1
                self.restarts[spec.name] = n
                delay = min(0.25 * 2 ** (n - 1), self.backoff_max)
                self.next_start[spec.name] = now + delay
                log.warning("%s exited with status %s; restarting in %.2fs (restart %d)",
                            spec.name, code, delay, n)
            if now >= self.next_start.get(spec.name, 0):
                if spec.name != "apiserver" and "apiserver" in wanted and "apiserver" not in self.children:
                    continue  # everything else needs the API server first
                self._start(spec)
        self.write_cluster_json()

    def write_cluster_json(self) -> None:
        cfg = self.cfg
        components = {}
        for name, proc in self.children.items():
            if not name.startswith("node-"):
                components[name] = {"pid": proc.pid, "restarts": self.restarts.get(name, 0),
                                    "log": os.path.join(self.state_dir, "logs", f"{name}.log")}
        desired = read_desired(self.state_dir)["nodes"]
        nodes = {}
        for name in sorted(desired, key=node_number):
            proc = self.children.get(name)
            nodes[name] = {"ip": cfg.node_ip(node_number(name)), "podCIDR": cfg.node_pod_cidr(node_number(name)),
                           "pid": proc.pid if proc else None, "desired": desired[name],
                           "restarts": self.restarts.get(name, 0),
                           "log": os.path.join(self.state_dir, "logs", f"{name}.log")}
        info = {
            "name": cfg.name,
            "stateDir": self.state_dir,
            "supervisor": {"pid": os.getpid()},
            "apiserver": {"address": cfg.apiserver, **components.get("apiserver", {})},
            "dns": {"address": cfg.dns_listen, "serviceIP": cfg.dns_service_ip, **components.get("dns", {})},
            "components": components,
            "nodes": nodes,
            "ranges": {"serviceCIDR": cfg.service_cidr, "podCIDR": cfg.pod_cidr, "lbPool": cfg.lb_pool,
                       "nodePortRange": cfg.node_port_range, "nodeIPBase": cfg.node_ip_base},
            "exits": self.exits,
        }
        old = cluster.read(self.state_dir)
        if old != info:
            cluster.write(self.state_dir, info)

    def run(self) -> None:
        def on_term(signum, frame):
            self.stopping = True

        def on_usr1(signum, frame):
            self.wake = True
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGUSR1, on_usr1)
        while not self.stopping:
            self.reconcile()
            deadline = time.monotonic() + 0.2
            while time.monotonic() < deadline and not self.stopping and not self.wake:
                time.sleep(0.02)
            self.wake = False
        self.shutdown()

    def shutdown(self) -> None:
        # Nodes first (their pods go with them), the API server last.
        order = sorted(self.children, key=lambda n: (n == "apiserver", not n.startswith("node-")))
        procs = [(n, self.children[n]) for n in order]
        for name, proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for name, proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.children.clear()
        info = cluster.read(self.state_dir) or {}
        info["supervisor"] = {"pid": None}
        info["components"] = {}
        for n in info.get("nodes", {}).values():
            n["pid"] = None
        info.get("apiserver", {}).pop("pid", None)
        info.get("dns", {}).pop("pid", None)
        cluster.write(self.state_dir, info)
        log.info("all processes stopped")
