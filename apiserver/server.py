"""The gRPC face of the store: translate messages to store calls and errors to statuses.

Nothing here decides anything; every rule lives in the store or a kind's strategy. A bad
request, or a bug hit by one request, fails that request with a status and never the server.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kubemu import objects, wire
from kubemu.errors import ApiError, BadRequest
from kubemu.v1 import api_pb2, api_pb2_grpc
from kubemu.apiserver.store import Store, Watcher, encode_varint, length_delimited

log = logging.getLogger("kubemu.apiserver")

MAX_EVENTS_PER_RESPONSE = 1000
MAX_BATCH_BYTES = 4 << 20
# Streaming messages cost the server a fixed amount each (a grpcio aio fan-out of one event per
# message tops out near 5,000 messages/s here; pre-encoded bytes about twice that), so a stream
# that just sent waits this long per open stream before sending again, and what arrives
# meanwhile goes out as one batch. One watcher sends at once; 50 watchers batch over 5 ms, at
# most 10,000 messages/s in all. (0.2 ms per stream doubled the base delay and gave no lower
# p99 in runs of `scripts/bench apiserver`.)
COALESCE_PER_STREAM = 0.0001
# Requests of one Call stream served at once; a client further ahead waits (HTTP/2 flow control).
MAX_CALLS_PER_STREAM = 256


def batched(responses: list[bytes]) -> Iterator[bytes]:
    """Encoded WatchResponses as few messages: alone, or as `batch` entries of one response,
    up to MAX_BATCH_BYTES a message (see WatchResponse.batch in api.proto)."""
    if len(responses) == 1:
        yield responses[0]
        return
    parts: list[bytes] = []
    size = 0
    for r in responses:
        entry = length_delimited(api_pb2.WatchResponse.BATCH_FIELD_NUMBER, r)
        if parts and size + len(entry) > MAX_BATCH_BYTES:
            yield b"".join(parts)
            parts, size = [], 0
        parts.append(entry)
        size += len(entry)
    if parts:
        yield b"".join(parts)


async def _each_request(request_iterator, handle, stream: str) -> None:
    """Hand each request of a bidirectional stream to `handle` until the client stops sending
    or goes away; a bug in `handle` ends the stream's reading, logged, not the server."""
    try:
        async for req in request_iterator:
            await handle(req)
    except (asyncio.CancelledError, grpc.RpcError):
        pass
    except Exception:
        log.exception("%s request stream failed", stream)


def _kind(name: str) -> str:
    try:
        return objects.kind_for(name).kind
    except ApiError:
        raise BadRequest(f'the server doesn\'t have a resource type "{name}"') from None


async def _abort(context: grpc.aio.ServicerContext, e: ApiError) -> None:
    code = wire.GRPC_CODES.get(e.reason, grpc.StatusCode.INTERNAL)
    await context.abort(code, e.message,
                        trailing_metadata=((wire.STATUS_KEY, wire.to_status(e).SerializeToString()),))


def _api_error(e: Exception) -> ApiError:
    """The error a failed request reports; a bug (not an ApiError) is logged, never raised on."""
    if isinstance(e, ApiError):
        return e
    log.error("request failed", exc_info=e)
    return ApiError(f"internal error: {e}")


def _unary(op):
    """A unary method from an operation: its object as an ObjectResponse, its error as the
    call's status. A bad request, or a bug hit by one, fails that call and never the server."""
    async def handler(self, request, context):
        try:
            return api_pb2.ObjectResponse(object=objects.pack(await op(self, request)))
        except Exception as e:
            await _abort(context, _api_error(e))
    handler.__name__ = op.__name__
    return handler


class APIServicer(api_pb2_grpc.APIServicer):
    def __init__(self, store: Store, bookmark_interval: float = 5.0):
        self.store = store
        self.bookmark_interval = bookmark_interval
        self.streams = 0

    # ------------------------------------------------------------ single-object operations
    # Each takes its request message and returns the object; the unary methods and the Call
    # stream both serve them.

    async def create(self, request):
        return await self.store.create(objects.unpack(request.object), request.dry_run)

    async def get(self, request):
        return self.store.get(_kind(request.kind), request.namespace, request.name)

    async def update(self, request):
        return await self.store.update(objects.unpack(request.object), False, request.dry_run)

    async def update_status(self, request):
        return await self.store.update(objects.unpack(request.object), True, request.dry_run)

    async def patch(self, request):
        if request.subresource not in ("", "status"):
            raise BadRequest(f"unknown subresource {request.subresource!r}")
        return await self.store.patch(_kind(request.kind), request.namespace, request.name,
                                      request.patch, request.subresource)

    async def delete(self, request):
        grace = request.grace_period_seconds if request.has_grace_period else None
        return await self.store.delete(
            _kind(request.kind), request.namespace, request.name, grace=grace,
            propagation=request.propagation_policy, uid=request.precondition_uid,
            resource_version=request.precondition_resource_version)

    Create = _unary(create)
    Get = _unary(get)
    Update = _unary(update)
    UpdateStatus = _unary(update_status)
    Patch = _unary(patch)
    Delete = _unary(delete)

    async def List(self, request, context):
        try:
            items, rev = self.store.list_encoded(_kind(request.kind), request.namespace,
                                                 request.label_selector, request.field_selector)
        except Exception as e:
            await _abort(context, _api_error(e))
        return items + b"\x10" + encode_varint(rev)  # field 2: resource_version

    async def Call(self, request_iterator, context):
        """Single-object calls multiplexed over one stream; see api.proto. Each request is
        served in a task of its own, so concurrent writes of one stream share a commit."""
        done: collections.deque[bytes] = collections.deque()  # encoded responses to write
        wakeup = asyncio.Event()
        slots = asyncio.Semaphore(MAX_CALLS_PER_STREAM)
        running: set[asyncio.Task] = set()

        async def serve(req) -> None:
            try:
                which = req.WhichOneof("request")
                if which is None:
                    raise BadRequest("the call names no request (create, get, update, ...)")
                obj = await getattr(self, which)(getattr(req, which))
                resp = api_pb2.CallResponse(id=req.id, object=objects.pack(obj))
            except Exception as e:
                resp = api_pb2.CallResponse(id=req.id, error=wire.to_status(_api_error(e)))
            finally:
                running.discard(asyncio.current_task())
            done.append(resp.SerializeToString())
            wakeup.set()

        async def accept(req) -> None:
            # A slot is held until the response is written: a client that sends without
            # reading stops being read, and nothing here grows without bound.
            await slots.acquire()
            running.add(asyncio.create_task(serve(req)))

        reader = asyncio.create_task(_each_request(request_iterator, accept, "call"))
        reader.add_done_callback(lambda _: wakeup.set())
        try:
            while not reader.done() or running or done:
                await wakeup.wait()
                wakeup.clear()
                while done:
                    await context.write(done.popleft())
                    slots.release()
        finally:
            reader.cancel()

    async def Watch(self, request_iterator, context):
        """Many watches multiplexed over one stream; see api.proto."""
        wakeup = asyncio.Event()
        watches: dict[int, tuple[Watcher, bool]] = {}
        control: list[api_pb2.WatchResponse] = []

        async def handle(req) -> None:
            if req.HasField("create"):
                c = req.create
                try:
                    if c.watch_id in watches:
                        raise BadRequest(f"watch id {c.watch_id} is already in use")
                    w = self.store.watch(_kind(c.kind), c.namespace, c.resource_version,
                                         c.label_selector, c.field_selector, wakeup)
                    watches[c.watch_id] = (w, c.allow_bookmarks)
                    control.append(api_pb2.WatchResponse(watch_id=c.watch_id, created=True))
                except ApiError as e:
                    control.append(api_pb2.WatchResponse(
                        watch_id=c.watch_id, canceled=True, status=wire.to_status(e)))
            elif req.HasField("cancel"):
                entry = watches.pop(req.cancel.watch_id, None)
                if entry:
                    self.store.unwatch(entry[0])
                control.append(api_pb2.WatchResponse(watch_id=req.cancel.watch_id, canceled=True))
            wakeup.set()

        reader = asyncio.create_task(_each_request(request_iterator, handle, "watch"))
        reader.add_done_callback(lambda _: wakeup.set())
        loop = asyncio.get_running_loop()
        last_bookmark = last_send = loop.time()

        def tick() -> None:  # bookmarks are due even when nothing happens
            nonlocal ticker
            wakeup.set()
            ticker = loop.call_later(self.bookmark_interval, tick)
        ticker = loop.call_later(self.bookmark_interval, tick)
        self.streams += 1
        try:
            while not reader.done():
                # One timer per stream, not one per wait: wait_for would build a task and a
                # timer for every batch of events.
                await wakeup.wait()
                pause = last_send + COALESCE_PER_STREAM * self.streams - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                last_send = loop.time()
                wakeup.clear()
                out = [c.SerializeToString() for c in control]
                control.clear()
                bookmark_due = loop.time() - last_bookmark >= self.bookmark_interval
                if bookmark_due:
                    last_bookmark = loop.time()
                for wid, (w, bookmarks) in list(watches.items()):
                    out.extend(self._drain(wid, w, bookmarks and bookmark_due))
                    if w.closed:
                        watches.pop(wid, None)
                        self.store.unwatch(w)
                for message in batched(out):
                    await context.write(message)
        finally:
            self.streams -= 1
            ticker.cancel()
            reader.cancel()
            for w, _ in watches.values():
                self.store.unwatch(w)

    def _drain(self, wid: int, w: Watcher, bookmark: bool):
        """Encoded WatchResponses for what the watcher has pending (see Event.frame)."""
        pending = w.take()
        head = b"\x08" + encode_varint(wid)  # field 1: watch_id
        for i in range(0, len(pending), MAX_EVENTS_PER_RESPONSE):
            chunk = pending[i:i + MAX_EVENTS_PER_RESPONSE]
            w.last_sent = chunk[-1][1].rev
            yield head + b"".join(ev.frame(t) for t, ev in chunk)
        if w.closed:
            yield api_pb2.WatchResponse(watch_id=wid, canceled=True,
                                        status=wire.to_status(w.closed)).SerializeToString()
        elif bookmark and not pending and w.last_sent < self.store.revision:
            # Every event up to the current revision has been offered to this watcher already
            # (publishing is synchronous), so the client may resume from here.
            w.last_sent = self.store.revision
            yield api_pb2.WatchResponse(watch_id=wid, events=[
                api_pb2.WatchEvent(type="BOOKMARK", resource_version=self.store.revision)]).SerializeToString()


async def serve(store: Store, listen: str, bookmark_interval: float = 5.0) -> grpc.aio.Server:
    server = grpc.aio.server(options=wire.CHANNEL_OPTIONS)
    servicer = APIServicer(store, bookmark_interval)
    handlers = {}
    for method in api_pb2.DESCRIPTOR.services_by_name["API"].methods:
        request_type = getattr(api_pb2, method.input_type.name)
        response_type = getattr(api_pb2, method.output_type.name)
        if method.name == "Watch":
            # Watch responses are encoded by hand from shared event frames (see _drain).
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                servicer.Watch, request_deserializer=request_type.FromString,
                response_serializer=bytes)
        elif method.name == "Call":
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                servicer.Call, request_deserializer=request_type.FromString,
                response_serializer=bytes)
        elif method.name == "List":
            # Encoded by hand from each object's bytes, made once per write (Store.encoded).
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                servicer.List, request_deserializer=request_type.FromString,
                response_serializer=bytes)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                getattr(servicer, method.name), request_deserializer=request_type.FromString,
                response_serializer=response_type.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("kubemu.v1.API", handlers),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (api_pb2.DESCRIPTOR.services_by_name["API"].full_name,
             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    try:
        bound = server.add_insecure_port(listen)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {listen}: the address is in use or not local")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(names[0], health_pb2.HealthCheckResponse.SERVING)
    return server
