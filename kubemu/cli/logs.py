"""`kubemu logs POD [-c CONTAINER] [-f] [--tail N] [-p]`: a container's log, from its node agent.

As kubectl does through the API server's proxy to the kubelet, the command finds the pod's
node, reads the Node's InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`, and asks
that node agent for `/containerLogs/<namespace>/<pod>/<container>`; the bytes go to stdout as
they come (with -f, until the container stops or the user interrupts).
"""
from __future__ import annotations

import http.client
import sys
import urllib.parse

import click

from kubemu import errors
from kubemu.cli.kubectl import client_options, handle_errors, run, target
from kubemu.client import Client

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def choose_container(pod, container: str | None) -> tuple[str, str | None]:
    """(container, note for stderr): -c if given, else the default-container annotation, else the
    only or first container (kubectl prints which one it picked when there are several)."""
    names = [c.name for c in pod.spec.containers]
    all_names = names + [c.name for c in pod.spec.initContainers]
    if container:
        if container not in all_names:
            raise errors.BadRequest(f"container {container} is not valid for pod {pod.metadata.name}")
        return container, None
    if not names:
        raise errors.BadRequest(f"pod {pod.metadata.name} has no containers")
    annotated = pod.metadata.annotations.get(DEFAULT_CONTAINER_ANNOTATION)
    if annotated in names:
        return annotated, None
    if len(names) == 1:
        return names[0], None
    return names[0], f'Defaulted container "{names[0]}" out of: {", ".join(names)}'


def node_endpoint(node) -> tuple[str, int]:
    ip = next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")
    port = node.status.daemonEndpoints.kubeletEndpoint.Port
    if not ip or not port:
        raise errors.BadRequest(f"node {node.metadata.name} reports no InternalIP and kubelet port")
    return ip, port


@click.command("logs")
@click.argument("pod")
@click.option("-c", "--container", default=None, help="container name")
@click.option("-f", "--follow", is_flag=True, help="stream the log as it grows")
@click.option("--tail", default=-1, show_default=True, type=int, help="lines from the end (-1: all)")
@click.option("-p", "--previous", is_flag=True, help="the previous instance of the container")
@client_options()
@handle_errors
def logs(pod, container, follow, tail, previous, namespace, server, state_dir, cluster_name):
    """Print the logs of a container in a pod."""
    t = target(server, state_dir, cluster_name, namespace)
    if pod.startswith("pod/") or pod.startswith("pods/"):
        pod = pod.split("/", 1)[1]

    async def locate(client: Client):
        p = await client.get("Pod", pod, t.namespace)
        name, note = choose_container(p, container)
        if not p.spec.nodeName:
            raise errors.BadRequest(f'container "{name}" in pod "{pod}" is waiting to start: '
                                    "the pod is not scheduled to a node yet")
        node = await client.get("Node", p.spec.nodeName)
        return name, note, node_endpoint(node)

    name, note, (ip, port) = run(t, locate)
    if note:
        click.echo(note, err=True)
    query = {"follow": str(follow).lower(), "previous": str(previous).lower()}
    if tail >= 0:
        query["tailLines"] = str(tail)
    path = "/containerLogs/{}/{}/{}?{}".format(*(urllib.parse.quote(x) for x in (t.namespace, pod, name)),
                                                urllib.parse.urlencode(query))
    conn = http.client.HTTPConnection(ip, port, timeout=None if follow else 30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        if resp.status != 200:
            body = resp.read().decode(errors="replace").strip()
            raise errors.BadRequest(body or f"node agent {ip}:{port} answered {resp.status}")
        out = sys.stdout.buffer
        while True:
            chunk = resp.read1(65536) if follow else resp.read(65536)
            if not chunk:
                break
            out.write(chunk)
            if follow:
                out.flush()
        out.flush()
    except OSError as e:
        raise errors.Unavailable(f"cannot reach the node agent of {pod} at {ip}:{port}: {e}") from None
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()
