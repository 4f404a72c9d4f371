"""What a container runs: an emulated image served inside the agent, a real program, or nothing.

Pure: `resolve(container)` maps a container spec onto a `Workload`, and never touches a socket.
Image names match with or without registry and tag (`nginx`, `docker.io/library/nginx:1.27`,
`registry.k8s.io/e2e-test-images/agnhost:2.53@sha256:...` all match by repository name). A
container with a `command` runs that command as a child process, whatever its image; the one
exception is agnhost, whose command is agnhost itself (`command: ["/agnhost", "netexec"]`), so
it stays emulated.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from kubemu.v1 import objects_pb2 as pb

# Repository basename -> emulated image kind.
_IMAGES = {
    "nginx": "nginx", "nginx-unprivileged": "nginx", "nginx-slim": "nginx", "httpd": "nginx",
    "echoserver": "echoserver",
    "agnhost": "agnhost",
    "serve_hostname": "serve-hostname", "serve-hostname": "serve-hostname",
    "pause": "pause",
    "hello-app": "hello-app",
    "echo": "echo", "tcp-echo": "echo", "udp-echo": "echo",
}

# What the waiting message lists, in the order a user meets them.
EMULATED_IMAGES = ("nginx", "registry.k8s.io/echoserver", "registry.k8s.io/e2e-test-images/agnhost "
                   "(netexec, serve-hostname, pause, porter)", "registry.k8s.io/serve_hostname",
                   "registry.k8s.io/pause", "gcr.io/google-samples/hello-app",
                   "kubemu/echo (TCP and UDP echo; also tcp-echo, udp-echo)")

AGNHOST_SUBCOMMANDS = ("netexec", "serve-hostname", "pause", "porter")

# Base images whose entrypoint only runs what it is given: with `args` and no `command`, their
# args are the program, as in a cluster (`image: busybox, args: [sleep, "3600"]`).
_ENTRYPOINTS: dict[str, tuple[str, ...]] = {
    name: () for name in ("busybox", "alpine", "ubuntu", "debian", "fedora", "centos", "rockylinux",
                          "python", "node", "golang", "bash", "perl", "ruby")}
_ENTRYPOINTS["curl"] = ("curl",)

DEFAULT_PORTS = {"nginx": 80, "echoserver": 8080, "hello-app": 8080, "echo": 9000}


@dataclasses.dataclass(frozen=True)
class ImageRef:
    registry: str
    repository: str  # "library/nginx", "e2e-test-images/agnhost"
    tag: str

    @property
    def basename(self) -> str:
        return self.repository.rpartition("/")[2]


def parse_image(image: str) -> ImageRef:
    """Split an image reference as Docker does: [registry/]repository[:tag][@digest]."""
    name, _, _digest = image.partition("@")
    registry = ""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, name = first, rest
    tag = ""
    repo, sep, maybe_tag = name.rpartition(":")
    if sep and "/" not in maybe_tag:
        name, tag = repo, maybe_tag
    return ImageRef(registry, name, tag)


@dataclasses.dataclass(frozen=True)
class Listen:
    """One socket an emulated image opens on the pod IP."""

    port: int
    protocol: str  # "TCP" or "UDP"
    role: str  # what answers: "http", "udp-netexec", "tcp-echo", "udp-echo", "tcp-hostname", "udp-hostname"


@dataclasses.dataclass(frozen=True)
class Emulated:
    kind: str  # nginx, echoserver, agnhost-netexec, serve-hostname, pause, porter, hello-app, echo
    listens: tuple[Listen, ...] = ()
    version: str = ""  # hello-app's "Version:"
    delay_shutdown: float = 0.0  # agnhost netexec --delay-shutdown
    env_ports: tuple[tuple[str, str], ...] = ()  # porter: (SERVE_PORT_x, body)


@dataclasses.dataclass(frozen=True)
class Process:
    argv: tuple[str, ...]  # before $(VAR) expansion


@dataclasses.dataclass(frozen=True)
class NotEmulated:
    reason: str
    message: str


Workload = Emulated | Process | NotEmulated


def not_emulated_message(image: str, detail: str = "") -> str:
    return (f'image "{image}" is not emulated by kubemu{detail}; emulated images: '
            + ", ".join(EMULATED_IMAGES)
            + '. Give the container a "command" to run any program on this machine instead.')


def _flags(args: Iterable[str]) -> dict[str, str]:
    """Go-style flags: --name=value, --name value, -name value, --bool."""
    out: dict[str, str] = {}
    items = list(args)
    i = 0
    while i < len(items):
        a = items[i]
        if a.startswith("-"):
            name = a.lstrip("-")
            if "=" in name:
                k, _, v = name.partition("=")
                out[k] = v
            elif i + 1 < len(items) and not items[i + 1].startswith("-"):
                out[name] = items[i + 1]
                i += 1
            else:
                out[name] = "true"
        i += 1
    return out


def _int_flag(flags: dict[str, str], name: str, default: int) -> int:
    try:
        return int(flags.get(name, default))
    except ValueError:
        return default


def _bool_flag(flags: dict[str, str], name: str, default: bool) -> bool:
    v = flags.get(name)
    if v is None:
        return default
    return v.lower() in ("true", "1", "t", "yes")


def _container_ports(c: pb.Container, protocol: str) -> list[int]:
    return [p.containerPort for p in c.ports if (p.protocol or "TCP").upper() == protocol and p.containerPort]


def resolve(c: pb.Container) -> Workload:
    ref = parse_image(c.image)
    kind = _IMAGES.get(ref.basename)
    argv = list(c.command) + list(c.args)
    if kind == "agnhost" and c.command and c.command[0].rpartition("/")[2] == "agnhost":
        argv = argv[1:]
        return _agnhost(c, argv)
    if c.command:
        return Process(tuple(argv))
    if kind is None and c.args and ref.basename in _ENTRYPOINTS:
        return Process(_ENTRYPOINTS[ref.basename] + tuple(c.args))
    if kind is None:
        return NotEmulated("ImageNotEmulated", not_emulated_message(c.image))
    if kind == "agnhost":
        return _agnhost(c, list(c.args))
    if kind == "pause":
        return Emulated("pause")
    if kind == "serve-hostname":
        return _serve_hostname(list(c.args))
    if kind == "echo":
        tcp = _container_ports(c, "TCP")
        udp = _container_ports(c, "UDP")
        if not tcp and not udp:
            if ref.basename != "udp-echo":
                tcp = [DEFAULT_PORTS["echo"]]
            if ref.basename != "tcp-echo":
                udp = [DEFAULT_PORTS["echo"]]
        return Emulated("echo", tuple([Listen(p, "TCP", "tcp-echo") for p in tcp]
                                      + [Listen(p, "UDP", "udp-echo") for p in udp]))
    if kind == "hello-app":
        port = DEFAULT_PORTS["hello-app"]
        for e in c.env:
            if e.name == "PORT" and e.value.isdigit():
                port = int(e.value)
        return Emulated("hello-app", (Listen(port, "TCP", "http"),), version=_hello_version(ref.tag))
    # nginx and echoserver: HTTP on every declared TCP port, else the image's own port.
    ports = _container_ports(c, "TCP") or [DEFAULT_PORTS[kind]]
    return Emulated(kind, tuple(Listen(p, "TCP", "http") for p in dict.fromkeys(ports)))


def _hello_version(tag: str) -> str:
    """hello-app:2.0 answers "Version: 2.0.0"; an untagged image is 1.0.0."""
    parts = [p for p in (tag or "1.0").split(".") if p.isdigit()]
    if not parts:
        parts = ["1", "0"]
    while len(parts) < 3:
        parts.append("0")
    return ".".join(parts[:3])


def _agnhost(c: pb.Container, argv: list[str]) -> Workload:
    if not argv:
        return NotEmulated("ImageNotEmulated", not_emulated_message(
            c.image, " without a subcommand (give args, e.g. [\"netexec\", \"--http-port=8080\"])"))
    sub, flags = argv[0], _flags(argv[1:])
    if sub == "netexec":
        listens = [Listen(_int_flag(flags, "http-port", 8080), "TCP", "http")]
        udp = _int_flag(flags, "udp-port", 8081)
        if udp != -1:
            listens.append(Listen(udp, "UDP", "udp-netexec"))
        try:
            delay = float(flags.get("delay-shutdown", 0))
        except ValueError:
            delay = 0.0
        return Emulated("agnhost-netexec", tuple(listens), delay_shutdown=delay)
    if sub == "serve-hostname":
        return _serve_hostname(argv[1:])
    if sub == "pause":
        return Emulated("pause")
    if sub == "porter":
        # porter serves the body in env SERVE_PORT_<port> on that port.
        pairs = []
        listens = []
        for e in c.env:
            if e.name.startswith("SERVE_PORT_") and e.name[11:].isdigit():
                pairs.append((e.name, e.value))
                listens.append(Listen(int(e.name[11:]), "TCP", "http"))
        return Emulated("porter", tuple(listens), env_ports=tuple(pairs))
    return NotEmulated("ImageNotEmulated", not_emulated_message(
        c.image, f" with the subcommand {sub!r} (emulated: {', '.join(AGNHOST_SUBCOMMANDS)})"))


def _serve_hostname(args: list[str]) -> Emulated:
    flags = _flags(args)
    port = _int_flag(flags, "port", 9376)
    listens = []
    if _bool_flag(flags, "http", True) and not _bool_flag(flags, "tcp", False):
        listens.append(Listen(port, "TCP", "http"))
    if _bool_flag(flags, "tcp", False):
        listens.append(Listen(port, "TCP", "tcp-hostname"))
    if _bool_flag(flags, "udp", False):
        listens.append(Listen(port, "UDP", "udp-hostname"))
    return Emulated("serve-hostname", tuple(listens))
