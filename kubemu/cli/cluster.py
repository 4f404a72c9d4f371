"""`kubemu up | down | status | node ...`: one-command local clusters and node chaos."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import click

from kubemu import cluster, launcher
from kubemu.launcher import Config


def _state_options(f):
    f = click.option("--state-dir", envvar="KUBEMU_STATE_DIR", type=click.Path(file_okay=False),
                     help="cluster state directory [env KUBEMU_STATE_DIR]")(f)
    f = click.option("--name", default="default", show_default=True,
                     help="cluster name (selects ~/.local/state/kubemu/NAME)")(f)
    return f


def _running(state_dir: str) -> dict | None:
    info = cluster.read(state_dir)
    if info and launcher.pid_alive(info.get("supervisor", {}).get("pid")):
        return info
    return None


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(1)


def _tail(path: str, n: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join("    " + line for line in lines[-n:])
    except OSError:
        return "    (no log)"


async def _cluster_health(address: str, expected_nodes: list[str]) -> tuple[bool, dict, bool]:
    """(API server answers, {node: Ready?}, the default/kubernetes Service exists)"""
    from kubemu.client import Client
    from kubemu.errors import ApiError
    async with Client(address, timeout=2.0) as c:
        try:
            nodes, _ = await c.list("Node")
            services, _ = await c.list("Service", "default", field_selector="metadata.name=kubernetes")
        except ApiError:
            return False, {}, False
    ready = {}
    for n in nodes:
        cond = next((c for c in n.status.conditions if c.type == "Ready"), None)
        ready[n.metadata.name] = cond is not None and cond.status == "True"
    return True, {name: ready.get(name, False) for name in expected_nodes}, bool(services)


def _signal_supervisor(info: dict, sig: int = signal.SIGUSR1) -> None:
    pid = info.get("supervisor", {}).get("pid")
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@click.command()
@_state_options
@click.option("--nodes", default=3, show_default=True, help="node agents to start")
@click.option("--apiserver-port", default=6443, show_default=True)
@click.option("--service-cidr", default="127.96.0.0/16", show_default=True)
@click.option("--node-ip-base", default="127.10.0.0", show_default=True, help="node-N gets base+N")
@click.option("--pod-cidr", default="127.244.0.0/16", show_default=True, help="node-N gets its Nth /24")
@click.option("--lb-pool", default="127.200.0.0/24", show_default=True)
@click.option("--node-port-range", default="30000-32767", show_default=True)
@click.option("--dns-listen", default="127.0.0.1:10053", show_default=True)
@click.option("--kubelet-port", default=10250, show_default=True)
@click.option("--node-grace", default=3.0, show_default=True, help="seconds without a Lease renewal before a node is NotReady")
@click.option("--eviction-timeout", default=10.0, show_default=True, help="seconds before pods of a NotReady node are replaced")
@click.option("-f", "--filename", "manifests", multiple=True, type=click.Path(exists=True),
              help="manifests to apply once the cluster is up")
@click.option("--timeout", default=60.0, show_default=True, help="seconds to wait for the cluster")
@click.option("--tcp-migrate-req", is_flag=True,
              help="set net.ipv4.tcp_migrate_req=1 (needs root), so connections queued on a "
                   "killed node agent's ClusterIP listener move to a surviving one instead of being reset")
def up(name, state_dir, nodes, apiserver_port, service_cidr, node_ip_base, pod_cidr, lb_pool,
       node_port_range, dns_listen, kubelet_port, node_grace, eviction_timeout, manifests, timeout,
       tcp_migrate_req):
    """Start a local cluster in the background and wait until it is ready: the API server
    answers, every node is Ready, the `kubernetes` Service exists and DNS answers."""
    started = time.monotonic()
    if tcp_migrate_req:
        _enable_tcp_migrate_req()
    state_dir = cluster.state_dir(state_dir, name)
    info = _running(state_dir)
    if info:
        click.echo(f'cluster "{info.get("name", name)}" is already running (state {state_dir}); '
                   "`kubemu status` shows it, `kubemu down` stops it")
        return
    cfg = Config(name=name, nodes=nodes, apiserver_port=apiserver_port, service_cidr=service_cidr,
                 node_ip_base=node_ip_base, pod_cidr=pod_cidr, lb_pool=lb_pool,
                 node_port_range=node_port_range, dns_listen=dns_listen, kubelet_port=kubelet_port,
                 node_grace=node_grace, eviction_timeout=eviction_timeout)
    problems = launcher.validate(cfg) + _ports_in_use(cfg)
    if problems:
        _fail("; ".join(problems))
    os.makedirs(os.path.join(state_dir, "logs"), exist_ok=True)
    cfg.save(state_dir)
    node_names = [f"node-{i}" for i in range(1, nodes + 1)]
    launcher.write_desired(state_dir, {"nodes": {n: "running" for n in node_names}})
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(state_dir, cluster.CLUSTER_FILE))
    logf = open(os.path.join(state_dir, "logs", "supervisor.log"), "ab")
    subprocess.Popen([sys.executable, "-m", "kubemu.cli.main", "supervise", "--state-dir", state_dir],
                     stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                     start_new_session=True)
    logf.close()
    click.echo(f'Starting cluster "{name}" ({nodes} nodes, state {state_dir})', err=True)
    deadline = time.monotonic() + timeout
    shown: set[str] = set()
    while True:
        info = cluster.read(state_dir) or {}
        failed = {n: c for n, c in info.get("exits", {}).items()}
        if failed:
            comp = next(iter(failed))
            log_path = os.path.join(state_dir, "logs", f"{comp}.log")
            _stop_supervisor(state_dir)
            _fail(f"{comp} exited with status {failed[comp]} while starting; last lines of {log_path}:\n"
                  + _tail(log_path))
        ok, ready, api_service = False, {}, False
        if info.get("apiserver", {}).get("pid"):
            try:
                ok, ready, api_service = asyncio.run(_cluster_health(cfg.apiserver, node_names))
            except Exception:
                ok = False
        for comp in info.get("components", {}):
            if comp not in shown and ok:
                shown.add(comp)
                click.echo(f" ✓ {comp}", err=True)
        for node, is_ready in ready.items():
            if is_ready and node not in shown:
                shown.add(node)
                click.echo(f" ✓ {node} Ready ({cfg.node_ip(launcher.node_number(node))})", err=True)
        has_agents = launcher.available("kubemu.nodeagent.cli")
        # As in Kubernetes, where the API server makes it, the `kubernetes` Service is there
        # once the cluster is up (here the controller manager makes it).
        has_controllers = launcher.available("kubemu.controllers.cli")
        if ok and (not has_agents or all(ready.values())) and (api_service or not has_controllers) \
                and _dns_ready(cfg, info):
            break
        if time.monotonic() > deadline:
            waiting = [n for n, r in ready.items() if not r] or ["the API server"]
            if ok and has_controllers and not api_service:
                waiting.append("controller-manager")
            _stop_supervisor(state_dir)
            logs = "\n".join(f"  {w}:\n" + _tail(os.path.join(state_dir, "logs", f"{w if w != 'the API server' else 'apiserver'}.log"))
                             for w in waiting[:2])
            _fail(f"cluster not ready after {timeout:g}s; waiting for {', '.join(waiting)}\n{logs}")
        time.sleep(0.05)
    for path in manifests:
        subprocess.run([sys.executable, "-m", "kubemu.cli.main", "apply", "--server", cfg.apiserver,
                        "-f", path], check=False)
    elapsed = time.monotonic() - started
    dns_host, _, dns_port = cfg.dns_listen.rpartition(":")
    click.echo(f'Cluster "{name}" is up in {elapsed:.1f}s.')
    click.echo(f"  API server  {cfg.apiserver}")
    click.echo(f"  DNS         {cfg.dns_listen} (Service IP {cfg.dns_service_ip})")
    for node in node_names:
        n = launcher.node_number(node)
        click.echo(f"  {node:<11} {cfg.node_ip(n)}  pods {cfg.node_pod_cidr(n)}")
    where = "" if state_dir == cluster.state_dir(None, name) else f" --state-dir {state_dir}"
    svc = _example_service(cfg.apiserver)
    click.echo("Try:")
    click.echo(f"  kubemu get nodes,svc -o wide{where}")
    click.echo(f"  dig @{dns_host} -p {dns_port} {svc[0] if svc else 'kubernetes'}.default.svc.cluster.local +short")
    if svc:
        click.echo(f"  curl http://{svc[1]}:{svc[2]}/")
    else:
        click.echo("  curl http://<CLUSTER-IP>:<PORT>/   (see `kubemu get svc`)")


def _example_service(address: str) -> tuple[str, str, int] | None:
    """(name, clusterIP, port) of a Service the user applied, for the summary's curl line."""
    from kubemu.client import Client

    async def first():
        async with Client(address, timeout=2.0) as c:
            items, _ = await c.list("Service", "default")
        for s in items:
            if s.metadata.name != "kubernetes" and s.spec.ports and s.spec.clusterIP not in ("", "None"):
                return s.metadata.name, s.spec.clusterIP, s.spec.ports[0].port
        return None
    try:
        return asyncio.run(first())
    except Exception:  # only a hint: never fail `up` over it
        return None


def _ports_in_use(cfg: Config) -> list[str]:
    """The fixed ports of the cluster that something else already holds."""
    import socket
    out = []
    dns_host, _, dns_port = cfg.dns_listen.rpartition(":")
    for flag, host, port in (("--apiserver-port", "127.0.0.1", cfg.apiserver_port),
                             ("--dns-listen", dns_host, int(dns_port))):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                out.append(f"{flag}: {host}:{port} is not available ({e.strerror}); is another "
                           "cluster using it? Pick another port, or `kubemu down` that cluster")
    return out


def _dns_ready(cfg: Config, info: dict) -> bool:
    if "dns" not in info.get("components", {}):
        return True
    import socket
    host, _, port = cfg.dns_listen.rpartition(":")
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, int(port))) == 0


def _stop_supervisor(state_dir: str, timeout: float = 20.0) -> bool:
    """SIGTERM the supervisor (which stops its children), then SIGKILL whatever is left."""
    info = cluster.read(state_dir) or {}
    pid = info.get("supervisor", {}).get("pid")
    if pid and launcher.pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while launcher.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    # stragglers: anything cluster.json still names
    info = cluster.read(state_dir) or {}
    pids = [c.get("pid") for c in info.get("components", {}).values()]
    pids += [n.get("pid") for n in info.get("nodes", {}).values()]
    pids.append(info.get("supervisor", {}).get("pid"))
    killed = False
    for p in filter(None, pids):
        if launcher.pid_alive(p):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p, signal.SIGKILL)
            killed = True
    return killed


@click.command()
@_state_options
@click.option("--purge", is_flag=True, help="also remove the state directory")
def down(name, state_dir, purge):
    """Stop every process of the cluster (SIGTERM, then SIGKILL after a grace period)."""
    state_dir = cluster.state_dir(state_dir, name)
    if not os.path.isdir(state_dir):
        _fail(f"no cluster in {state_dir}")
    was_running = _running(state_dir) is not None
    _stop_supervisor(state_dir)
    if purge:
        shutil.rmtree(state_dir, ignore_errors=True)
    click.echo(f'cluster "{name}" ' + ("stopped" if was_running else "was not running")
               + (" and its state removed" if purge else ""))


def _dollars(values) -> float:
    """Sum cost annotations such as "$0.000417" (cloud-lb writes them; missing ones count 0)."""
    total = 0.0
    for v in values:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            total += float(v.lstrip("$"))
    return total


def _enable_tcp_migrate_req() -> None:
    try:
        with open("/proc/sys/net/ipv4/tcp_migrate_req", "w") as f:
            f.write("1\n")
    except PermissionError:
        _fail("--tcp-migrate-req needs root (or run: sudo sysctl -w net.ipv4.tcp_migrate_req=1)")
    except OSError as e:
        _fail(f"--tcp-migrate-req: cannot set net.ipv4.tcp_migrate_req ({e.strerror}; Linux 5.14 or newer has it)")


def _tcp_migrate_req() -> str:
    try:
        with open("/proc/sys/net/ipv4/tcp_migrate_req") as f:
            return "on" if f.read().strip() == "1" else "off"
    except OSError:
        return "unknown"


async def _live_status(info: dict) -> dict:
    from kubemu.client import Client
    from kubemu.errors import ApiError
    out: dict = {"apiserverReachable": False, "nodes": {}, "loadBalancers": []}
    async with Client(info["apiserver"]["address"], timeout=2.0) as c:
        try:
            nodes, _ = await c.list("Node")
            pods, _ = await c.list("Pod")
            services, _ = await c.list("Service")
        except ApiError:
            return out
    out["apiserverReachable"] = True
    per_node: dict[str, int] = {}
    for p in pods:
        if p.spec.nodeName:
            per_node[p.spec.nodeName] = per_node.get(p.spec.nodeName, 0) + 1
    for n in nodes:
        cond = next((c for c in n.status.conditions if c.type == "Ready"), None)
        out["nodes"][n.metadata.name] = {"ready": cond.status if cond else "Unknown",
                                         "pods": per_node.get(n.metadata.name, 0)}
    for s in services:
        if s.spec.type == "LoadBalancer":
            out["loadBalancers"].append({
                "service": f"{s.metadata.namespace}/{s.metadata.name}",
                "ingress": [i.ip for i in s.status.loadBalancer.ingress],
                "ports": [p.port for p in s.spec.ports],
                "hourlyCost": s.metadata.annotations.get("kubemu.io/hourly-cost"),
                "cost": s.metadata.annotations.get("kubemu.io/cost"),
            })
    return out


@click.command()
@_state_options
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def status(name, state_dir, output):
    """What runs where: components, nodes, LoadBalancers."""
    state_dir = cluster.state_dir(state_dir, name)
    info = cluster.read(state_dir)
    if info is None:
        _fail(f"no cluster in {state_dir} (start one with `kubemu up`)")
    running = _running(state_dir) is not None
    live = {"apiserverReachable": False, "nodes": {}, "loadBalancers": []}
    if running:
        with contextlib.suppress(Exception):
            live = asyncio.run(_live_status(info))
    for comp in info.get("components", {}).values():
        comp["alive"] = launcher.pid_alive(comp.get("pid"))
    for node_name, node in info.get("nodes", {}).items():
        node["alive"] = launcher.pid_alive(node.get("pid"))
        node.update({k: v for k, v in live["nodes"].get(node_name, {}).items()})
    info["running"] = running
    info["apiserver"]["reachable"] = live["apiserverReachable"]
    info["loadBalancers"] = live["loadBalancers"]
    info["loadBalancerTotalCost"] = f"${_dollars(lb.get('cost') for lb in live['loadBalancers']):.6f}"
    info["tcpMigrateReq"] = _tcp_migrate_req()
    if output == "json":
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    click.echo(f'Cluster "{info.get("name")}" ({"running" if running else "stopped"}), state {state_dir}')
    click.echo(f"{'COMPONENT':<20} {'PID':<8} {'STATUS':<10} ADDRESS")
    for comp, c in sorted(info.get("components", {}).items()):
        addr = info["apiserver"]["address"] if comp == "apiserver" else info["dns"]["address"] if comp == "dns" else ""
        state = "running" if c["alive"] else "dead"
        if comp == "apiserver" and c["alive"] and not live["apiserverReachable"]:
            state = "unhealthy"
        click.echo(f"{comp:<20} {c.get('pid') or '-':<8} {state:<10} {addr}")
    click.echo(f"\n{'NODE':<10} {'IP':<15} {'PID':<8} {'AGENT':<9} {'READY':<8} PODS")
    for node_name, n in info.get("nodes", {}).items():
        agent = "running" if n["alive"] else n.get("desired", "stopped")
        click.echo(f"{node_name:<10} {n['ip']:<15} {n.get('pid') or '-':<8} {agent:<9} "
                   f"{n.get('ready', '-'):<8} {n.get('pods', '-')}")
    if info["loadBalancers"]:
        click.echo(f"\n{'LOADBALANCER':<30} {'EXTERNAL-IP':<16} {'PORTS':<12} {'PER HOUR':<10} COST")
        for lb in info["loadBalancers"]:
            click.echo(f"{lb['service']:<30} {','.join(lb['ingress']) or '<pending>':<16} "
                       f"{','.join(map(str, lb['ports'])):<12} {lb.get('hourlyCost') or '-':<10} "
                       f"{lb.get('cost') or '-'}")
        click.echo(f"{'total':<30} {'':<16} {'':<12} ${_dollars(lb.get('hourlyCost') for lb in info['loadBalancers']):<9.4f} "
                   f"${_dollars(lb.get('cost') for lb in info['loadBalancers']):.6f}")
    click.echo(f"\ntcp_migrate_req: {info['tcpMigrateReq']}")


# ------------------------------------------------------------------ node chaos

@click.group()
def node():
    """Node chaos: kill, stop, start, restart, pause, resume, add, remove."""


def _node_cmd(fn):
    fn = click.argument("node_name", metavar="NAME")(fn)
    return _state_options(fn)


def _load(name: str, state_dir: str | None, node_name: str | None = None) -> tuple[str, dict]:
    """The running cluster's state directory and cluster.json; with a node name, the node
    must be one of the cluster's."""
    state_dir = cluster.state_dir(state_dir, name)
    info = _running(state_dir)
    if info is None:
        _fail(f"no running cluster in {state_dir}")
    if node_name is not None:
        _known(state_dir, node_name)
    return state_dir, info


def _known(state_dir: str, node_name: str) -> dict:
    desired = launcher.read_desired(state_dir)
    if node_name not in desired["nodes"]:
        _fail(f'node "{node_name}" not found (nodes: {", ".join(sorted(desired["nodes"])) or "none"})')
    return desired


def _set_node(state_dir: str, info: dict, node_name: str, mode: str, wait_gone: bool = False) -> None:
    desired = launcher.read_desired(state_dir)
    old_pid = (cluster.read(state_dir) or {}).get("nodes", {}).get(node_name, {}).get("pid")
    desired["nodes"][node_name] = mode
    launcher.write_desired(state_dir, desired)
    _signal_supervisor(info)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        cur = (cluster.read(state_dir) or {}).get("nodes", {}).get(node_name, {})
        if mode == "running" and cur.get("pid") and cur.get("pid") != old_pid:
            return
        if mode != "running" and not cur.get("pid") and not launcher.pid_alive(old_pid):
            return
        time.sleep(0.02)
    _fail(f"node {node_name} did not reach state {mode} within 15s")


@node.command("kill")
@_node_cmd
def node_kill(name, state_dir, node_name):
    """SIGKILL the node agent: its pods and listeners vanish with it."""
    state_dir, info = _load(name, state_dir, node_name)
    _set_node(state_dir, info, node_name, "killed")
    click.echo(f"node/{node_name} killed")


@node.command("stop")
@_node_cmd
def node_stop(name, state_dir, node_name):
    """SIGTERM the node agent (a clean shutdown)."""
    state_dir, info = _load(name, state_dir, node_name)
    _set_node(state_dir, info, node_name, "stopped")
    click.echo(f"node/{node_name} stopped")


@node.command("start")
@_node_cmd
def node_start(name, state_dir, node_name):
    """Start a stopped or killed node agent."""
    state_dir, info = _load(name, state_dir, node_name)
    cur = info.get("nodes", {}).get(node_name, {})
    if launcher.pid_alive(cur.get("pid")):
        click.echo(f"node/{node_name} is already running")
        return
    _set_node(state_dir, info, node_name, "running")
    click.echo(f"node/{node_name} started")


@node.command("restart")
@_node_cmd
def node_restart(name, state_dir, node_name):
    """Stop (SIGTERM) and start the node agent again."""
    state_dir, info = _load(name, state_dir, node_name)
    _set_node(state_dir, info, node_name, "stopped")
    _set_node(state_dir, info, node_name, "running")
    click.echo(f"node/{node_name} restarted")


def _pause(name, state_dir, node_name, sig, verb):
    state_dir, info = _load(name, state_dir, node_name)
    pid = info.get("nodes", {}).get(node_name, {}).get("pid")
    if not launcher.pid_alive(pid):
        _fail(f"node {node_name} is not running")
    os.killpg(pid, sig)
    click.echo(f"node/{node_name} {verb}")


@node.command("pause")
@_node_cmd
def node_pause(name, state_dir, node_name):
    """SIGSTOP the node agent and its pods: a hung node."""
    _pause(name, state_dir, node_name, signal.SIGSTOP, "paused")


@node.command("resume")
@_node_cmd
def node_resume(name, state_dir, node_name):
    """SIGCONT a paused node agent."""
    _pause(name, state_dir, node_name, signal.SIGCONT, "resumed")


@node.command("add")
@_state_options
@click.argument("node_name", metavar="[NAME]", required=False)
def node_add(name, state_dir, node_name):
    """Grow the cluster by one node (node-<next> unless NAME is given)."""
    state_dir, info = _load(name, state_dir)
    desired = launcher.read_desired(state_dir)
    if node_name is None:
        n = max([launcher.node_number(x) for x in desired["nodes"]] or [0]) + 1
        node_name = f"node-{n}"
    try:
        launcher.node_number(node_name)
    except ValueError as e:
        _fail(str(e))
    if node_name in desired["nodes"]:
        _fail(f'node "{node_name}" already exists')
    _set_node(state_dir, info, node_name, "running")
    click.echo(f"node/{node_name} added")


@node.command("remove")
@_node_cmd
def node_remove(name, state_dir, node_name):
    """Stop the node agent and delete its Node (its pods are rescheduled)."""
    state_dir, info = _load(name, state_dir, node_name)
    _set_node(state_dir, info, node_name, "stopped")
    desired = launcher.read_desired(state_dir)
    desired["nodes"].pop(node_name, None)
    launcher.write_desired(state_dir, desired)
    _signal_supervisor(info)

    async def delete():
        from kubemu.client import Client
        from kubemu.errors import NotFound
        async with Client(info["apiserver"]["address"]) as c:
            with contextlib.suppress(NotFound):
                await c.delete("Node", node_name)
    asyncio.run(delete())
    click.echo(f"node/{node_name} removed")


@click.command(hidden=True)
@click.option("--state-dir", required=True)
def supervise(state_dir):
    """Run the supervisor of a cluster (started by `kubemu up`)."""
    from kubemu.cli.main import setup_logging
    setup_logging("info")
    launcher.Supervisor(state_dir).run()
