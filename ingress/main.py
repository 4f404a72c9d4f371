"""`kubemu ingress-controller`: informers feed the route table and certificates; listeners serve.

Wiring only. Informer handlers never do work: a change to an Ingress, an IngressClass, or a
Service or Secret some Ingress names schedules one rebuild on the next loop iteration, which
re-reads the caches, compiles a new route table and TLS table (routing.py, tls.py) and swaps
them in at once; a burst of events costs one rebuild. Ingress status is a work queue of
Ingress keys (level-triggered: each sync compares the stored status with the address of our
LoadBalancer Service and writes only a difference). The listeners accept only once the caches
are synced, so the first request is never answered from an empty table; after that the proxy
keeps serving from its last tables while the API server is unreachable.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import signal
import socket

from kubemu import errors, objects
from kubemu.client import Client
from kubemu.events import WARNING, EventRecorder
from kubemu.informer import Informer, wait_synced
from kubemu.ingress import publish, routing, tls
from kubemu.ingress.proxy import Proxy, UpstreamPool
from kubemu.v1 import objects_pb2 as pb
from kubemu.workqueue import WorkQueue, run_worker

log = logging.getLogger("kubemu.ingress")

SHUTDOWN_GRACE = 5.0


@dataclasses.dataclass
class Listener:
    scheme: str
    server: asyncio.base_events.Server
    port: int  # the port actually bound
    requested: int
    error: str = ""  # why the requested port could not be bound


async def bind(scheme: str, handler, host: str, port: int, ssl_ctx=None) -> Listener:
    """Bind `host:port`; when refused (a privileged port without root, or taken), fall back to
    a free port and say so. The EndpointSlice advertises the port really bound, so the
    LoadBalancer path keeps working either way (DESIGN.md section 2: report and keep serving)."""
    kw = dict(limit=64 * 1024, start_serving=False, reuse_address=True)
    if ssl_ctx is not None:
        kw.update(ssl=ssl_ctx, ssl_handshake_timeout=10.0)
    try:
        server = await asyncio.start_server(handler, host, port, **kw)
        error = ""
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EADDRINUSE, errno.EPERM) or port == 0:
            raise
        error = f"cannot listen on {host}:{port} ({e.strerror})"
        server = await asyncio.start_server(handler, host, 0, **kw)
    bound = server.sockets[0].getsockname()[1]
    if error:
        log.warning("%s; %s listens on %s:%d instead", error, scheme, host, bound)
    return Listener(scheme, server, bound, port, error)


class IngressController:
    def __init__(self, client: Client, *, listen_ip: str):
        self.client = client
        self.listen_ip = listen_ip
        self.ingresses = Informer(client, "Ingress")
        self.classes = Informer(client, "IngressClass")
        self.services = Informer(client, "Service")
        self.secrets = Informer(client, "Secret")
        self.routes = routing.RouteTable()
        self.tls_table = tls.TLSTable({}, {}, None)
        self.certs: tls.CertStore | None = None
        self.publisher: publish.Publisher | None = None
        self.status_queue = WorkQueue()
        self.synced = False
        self._rebuild_scheduled = False
        self._named_services: set[str] = set()
        self._named_secrets: set[str] = set()
        self._ours: set[str] = set()
        self.ingresses.add_handler(self._on_ingress)
        self.classes.add_handler(lambda ev, obj, old: self._on_class())
        self.services.add_handler(self._on_service)
        self.secrets.add_handler(self._on_secret)

    # ------------------------------------------------------------ handlers: enqueue only

    def _on_ingress(self, ev: str, obj: pb.Ingress, old: pb.Ingress | None) -> None:
        self.schedule_rebuild()
        if ev != "DELETED":
            self.status_queue.add(objects.key(obj))

    def _on_class(self) -> None:
        self.schedule_rebuild()
        for key in self.ingresses.cache:
            self.status_queue.add(key)

    def _on_service(self, ev: str, obj: pb.Service, old: pb.Service | None) -> None:
        key = objects.key(obj)
        if key in self._named_services:
            self.schedule_rebuild()
        if key == f"{publish.NAMESPACE}/{publish.NAME}":
            if self.publisher is not None:
                self.publisher.kick()
            if old is None or old.status != obj.status or ev == "DELETED":
                for k in self.ingresses.cache:
                    self.status_queue.add(k)

    def _on_secret(self, ev: str, obj: pb.Secret, old: pb.Secret | None) -> None:
        if objects.key(obj) in self._named_secrets:
            self.schedule_rebuild()

    def schedule_rebuild(self) -> None:
        if not self._rebuild_scheduled and self.synced:
            self._rebuild_scheduled = True
            asyncio.get_running_loop().call_soon(self.rebuild)

    # ------------------------------------------------------------ level-triggered work

    def ours(self) -> list[pb.Ingress]:
        names, default = routing.our_classes(self.classes.list())
        return [i for i in self.ingresses.list() if routing.is_ours(i, names, default)]

    def rebuild(self) -> None:
        """Recompile the route and TLS tables from the caches and swap them in."""
        self._rebuild_scheduled = False
        ours = self.ours()
        services = self.services.cache
        self.routes = routing.compile_routes(ours, services)
        self.tls_table = tls.compile_tls(ours)
        self._named_services = routing.services_named(ours)
        self._named_secrets = self.tls_table.secrets()
        if self.certs is not None:
            self.certs.update(self.tls_table, self.secrets.cache)
        keys = {objects.key(i) for i in ours}
        if keys != self._ours:
            log.info("serving %d ingresses: %s", len(keys), ", ".join(sorted(keys)) or "none")
        self._ours = keys
        for b in self.routes.backends():
            if b.address is None:
                log.debug("ingress %s: %s", b.ingress, b.reason)

    async def sync_status(self, key: str) -> None:
        ing = self.ingresses.get(key)
        if ing is None:
            return
        names, default = routing.our_classes(self.classes.list())
        svc = self.services.get(f"{publish.NAMESPACE}/{publish.NAME}")
        now = publish.ingress_status(svc)
        want = now if routing.is_ours(ing, names, default) else None
        update = publish.status_update(ing, want, now)
        if update is None:
            return
        try:
            await self.client.update_status(update)
        except errors.NotFound:
            return
        log.info("ingress %s: address %s", key,
                 ",".join(i.ip or i.hostname for i in update.status.loadBalancer.ingress) or "cleared")

    # ------------------------------------------------------------ running

    async def start(self) -> list[asyncio.Task]:
        informers = (self.ingresses, self.classes, self.services, self.secrets)
        tasks = [asyncio.create_task(i.run(), name=f"informer-{i.kind}") for i in informers]
        await wait_synced(*informers)
        self.synced = True
        self.rebuild()
        tasks.append(asyncio.create_task(run_worker(self.status_queue, self.sync_status, name="ingress-status"),
                                         name="ingress-status"))
        return tasks


async def report_port_fallback(client: Client, listeners: list[Listener]) -> None:
    """An Event on our Service for each listener that could not get its port."""
    recorder = EventRecorder(client)
    svc = objects.new("Service", publish.NAME, publish.NAMESPACE)
    for lst in listeners:
        if lst.error:
            recorder.record(svc, WARNING, "ListenerPortFallback",
                            f"{lst.error}; {lst.scheme} listens on port {lst.port} instead",
                            "ingress-controller")
    with contextlib.suppress(errors.ApiError):
        await recorder.flush()


async def run(*, server: str, listen_ip: str, http_port: int = 80, https_port: int = 443,
              publish_service: bool = True) -> None:
    socket.inet_pton(socket.AF_INET6 if ":" in listen_ip else socket.AF_INET, listen_ip)
    loop = asyncio.get_running_loop()
    cert, key = await loop.run_in_executor(None, tls.generate_self_signed, tls.FAKE_CERT_CN, ["ingress.local"])
    default_ctx = tls.context_from_pem(cert, key)

    client = Client(server)
    ctl = IngressController(client, listen_ip=listen_ip)
    ctl.certs = tls.CertStore(default_ctx)
    pool = UpstreamPool(source=listen_ip)
    http_proxy = Proxy(lambda: ctl.routes, pool, scheme="http", public_port=80)
    https_proxy = Proxy(lambda: ctl.routes, pool, scheme="https", public_port=443)
    listeners = [await bind("http", http_proxy.handle, listen_ip, http_port),
                 await bind("https", https_proxy.handle, listen_ip, https_port, default_ctx)]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(stop.wait(), name="stop")
    tasks: list[asyncio.Task] = []
    reporter: asyncio.Task | None = None
    try:
        starting = asyncio.create_task(ctl.start(), name="ingress-sync")
        done, _ = await asyncio.wait([waiter, starting], return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            return
        tasks = starting.result()
        for lst in listeners:
            await lst.server.start_serving()
        log.info("serving http on %s:%d, https on %s:%d; %d ingresses of class %s",
                 listen_ip, listeners[0].port, listen_ip, listeners[1].port, len(ctl._ours), routing.CLASS_NAME)
        if publish_service:
            ctl.publisher = publish.Publisher(client, listen_ip=listen_ip, http_port=listeners[0].port,
                                              https_port=listeners[1].port)
            tasks.append(asyncio.create_task(ctl.publisher.run(), name="publish"))
            reporter = asyncio.create_task(report_port_fallback(client, listeners), name="report-ports")
        # every task in `tasks` runs forever: one that ends is a failure
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not waiter and not t.cancelled() and t.exception() is not None:
                log.error("%s failed: %r", t.get_name(), t.exception())
    finally:
        log.info("shutting down")
        for lst in listeners:
            lst.server.close()
        await asyncio.gather(http_proxy.shutdown(SHUTDOWN_GRACE), https_proxy.shutdown(SHUTDOWN_GRACE))
        rest = [waiter, *tasks, *([reporter] if reporter else [])]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        ctl.status_queue.shutdown()
        pool.close()
        await client.close()
