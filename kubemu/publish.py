"""A component publishing itself as the backend of a Service it owns (kube-dns, ingress-kubemu).

The Service is selector-less, so the EndpointSlice controller leaves it alone, and the
component writes the one EndpointSlice that points at its own listener (labelled as managed by
it, owned by the Service so garbage collection removes it with the Service). Every node agent's
data plane then forwards the Service's cluster IP (and NodePorts) to the component like to any
pod. `ensure` is level-triggered: it compares what exists with what should and writes only the
difference; `Publisher` runs a sync whenever kicked (an informer saw either object change) and
on a periodic resync, with backoff while the API server is away.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Iterable

from google.protobuf.message import Message

from kubemu import errors, objects
from kubemu.client import Client

log = logging.getLogger("kubemu.publish")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"


def own_slice(service: Message, *, name: str, manager: str, address: str,
              ports: Iterable[tuple[str, str, int, str]], labels: dict[str, str] | None = None) -> Message:
    """The EndpointSlice of `service` with one ready endpoint, `address`, serving `ports`
    given as (name, protocol, port, appProtocol)."""
    sl = objects.new("EndpointSlice", name, service.metadata.namespace)
    sl.metadata.labels.update(labels or {})
    sl.metadata.labels[SERVICE_NAME_LABEL] = service.metadata.name
    sl.metadata.labels[MANAGED_BY_LABEL] = manager
    ref = sl.metadata.ownerReferences.add()
    ref.apiVersion, ref.kind, ref.name, ref.uid = "v1", "Service", service.metadata.name, service.metadata.uid
    ref.controller, ref.blockOwnerDeletion = True, True
    sl.addressType = "IPv6" if ":" in address else "IPv4"
    ep = sl.endpoints.add()
    ep.addresses.append(address)
    ep.conditions.ready = ep.conditions.serving = True
    ep.conditions.terminating = False
    for port_name, protocol, port, app_protocol in ports:
        p = sl.ports.add()
        p.name, p.protocol, p.port = port_name, protocol, port
        if app_protocol:
            p.appProtocol = app_protocol
    return sl


def _port_view(ports) -> list[tuple]:
    return [(p.name, p.protocol or "TCP", p.port, objects.ios_value(p.targetPort)) for p in ports]


def service_differs(current: Message, want: Message) -> bool:
    """Ports, type and the absence of a selector are ours; everything else (cluster IP, node
    ports, policies, annotations) is left as users and allocators set it."""
    return (_port_view(current.spec.ports) != _port_view(want.spec.ports)
            or current.spec.type != want.spec.type or bool(current.spec.selector))


def update_service(current: Message, want: Message) -> Message:
    """`current` with our ports and type, keeping the node ports already allocated."""
    node_ports = {p.name: p.nodePort for p in current.spec.ports if p.nodePort}
    del current.spec.ports[:]
    for p in want.spec.ports:
        q = current.spec.ports.add()
        q.CopyFrom(p)
        if p.name in node_ports:
            q.nodePort = node_ports[p.name]
    current.spec.type = want.spec.type
    current.spec.selector.clear()
    return current


def slice_differs(current: Message, want: Message) -> bool:
    return (list(current.endpoints) != list(want.endpoints) or list(current.ports) != list(want.ports)
            or current.addressType != want.addressType
            or list(current.metadata.ownerReferences) != list(want.metadata.ownerReferences)
            or any(current.metadata.labels.get(k) != v for k, v in want.metadata.labels.items()))


def update_slice(current: Message, want: Message) -> Message:
    for field in ("endpoints", "ports"):
        del getattr(current, field)[:]
        getattr(current, field).extend(getattr(want, field))
    current.addressType = want.addressType
    current.metadata.labels.update(want.metadata.labels)
    del current.metadata.ownerReferences[:]
    current.metadata.ownerReferences.extend(want.metadata.ownerReferences)
    return current


async def ensure(client: Client, want: Message, *,
                 differs: Callable[[Message, Message], bool] | None = None,
                 update: Callable[[Message, Message], Message] | None = None) -> Message:
    """Create `want` if missing; else, when `differs(live, want)`, write `update(live, want)`.
    Without `differs` an existing object is left as it is."""
    kind = objects.kind_of(want).kind
    ns, name = want.metadata.namespace, want.metadata.name
    try:
        live = await client.get(kind, name, ns)
    except errors.NotFound:
        try:
            created = await client.create(want)
            log.info("created %s %s", kind, objects.key(created))
            return created
        except errors.AlreadyExists:
            live = await client.get(kind, name, ns)
    if differs is not None and update is not None and differs(live, want):
        live = await client.update(update(live, want))
        log.info("updated %s %s", kind, objects.key(live))
    return live


class Publisher:
    """Runs `sync` now, when kicked, and every `resync` seconds; retries with backoff."""

    def __init__(self, what: str, sync: Callable[[], Awaitable[None]]):
        self.what = what
        self._sync = sync
        self._kick = asyncio.Event()
        self.synced = asyncio.Event()

    def kick(self) -> None:
        """Ask for a sync soon (from an informer handler)."""
        self._kick.set()

    async def run(self, resync: float = 30.0) -> None:
        backoff = 0.1
        while True:
            self._kick.clear()
            try:
                await self._sync()
                self.synced.set()
                backoff, wait = 0.1, resync
            except errors.ApiError as e:
                # Unavailable is expected while the API server starts alongside us
                level = logging.DEBUG if isinstance(e, errors.Unavailable) else logging.WARNING
                log.log(level, "publishing %s: %s; retrying in %.1fs", self.what, e, backoff)
                wait, backoff = backoff, min(backoff * 2, 5.0)
            try:
                await asyncio.wait_for(self._kick.wait(), wait)
            except asyncio.TimeoutError:
                pass
