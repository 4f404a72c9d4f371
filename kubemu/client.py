"""The one client of the API server: every kubemu process talks to it through this module.

`Client` is asyncio-native. Errors come back as kubemu.errors.ApiError subclasses (NotFound,
Conflict, Invalid with field causes, ...); an unreachable server raises errors.Unavailable.
Single-object calls (create, get, update, patch, delete) share one gRPC stream per client, and
so do watches (etcd's model): `watch()` yields batches of events and ends with an ApiError
(TooOld: list again) or Unavailable. List is a unary call.
"""
from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any, AsyncIterator

import grpc
from google.protobuf.message import Message

from kubemu import errors, objects, wire
from kubemu.v1 import api_pb2, api_pb2_grpc

DEFAULT_TIMEOUT = 30.0
MAX_IN_FLIGHT = 64


def _translate(e: grpc.aio.AioRpcError) -> errors.ApiError:
    for key, value in e.trailing_metadata() or ():
        if key == wire.STATUS_KEY:
            st = api_pb2.Status()
            st.ParseFromString(value)
            return wire.from_status(st)
    if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.CANCELLED):
        return errors.Unavailable(f"the API server is not reachable: {e.details()}")
    return errors.ApiError(f"{e.code().name}: {e.details()}")


async def _stop(*tasks: asyncio.Task) -> None:
    """Cancel a stream's tasks and wait for them; how they ended no longer matters."""
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class WatchEvent:
    __slots__ = ("type", "object", "resource_version")

    def __init__(self, type: str, object: Message | None, resource_version: int):
        self.type = type
        self.object = object
        self.resource_version = resource_version

    def __repr__(self) -> str:
        name = objects.key(self.object) if self.object is not None else ""
        return f"WatchEvent({self.type} {name} @{self.resource_version})"


class _WatchMux:
    """One bidirectional stream carrying every watch of a client."""

    def __init__(self, stub: api_pb2_grpc.APIStub):
        self.stub = stub
        self.ids = itertools.count(1)
        self.queues: dict[int, asyncio.Queue] = {}
        self.outbox: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    def _ensure(self) -> None:
        if self.task is None or self.task.done():
            self.outbox = asyncio.Queue()
            self.task = asyncio.create_task(self._run(self.outbox), name="watch-mux")

    async def _run(self, outbox: asyncio.Queue) -> None:
        async def requests():
            while True:
                item = await outbox.get()
                if item is None:
                    return
                yield item

        call = self.stub.Watch(requests())
        error: errors.ApiError = errors.Unavailable("watch stream closed")
        try:
            async for msg in call:
                for resp in msg.batch or (msg,):  # several watches' responses in one message
                    q = self.queues.get(resp.watch_id)
                    if q is not None:
                        q.put_nowait(resp)
        except grpc.aio.AioRpcError as e:
            error = _translate(e)
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            for q in self.queues.values():
                q.put_nowait(error)
            self.queues.clear()

    async def watch(self, create: api_pb2.WatchCreate) -> AsyncIterator[api_pb2.WatchResponse]:
        self._ensure()
        wid = next(self.ids)
        create.watch_id = wid
        q: asyncio.Queue = asyncio.Queue()
        self.queues[wid] = q
        assert self.outbox is not None
        outbox = self.outbox
        outbox.put_nowait(api_pb2.WatchRequest(create=create))
        try:
            while True:
                item = await q.get()
                if isinstance(item, errors.ApiError):
                    raise item
                yield item
                if item.canceled:
                    return
        finally:
            if self.queues.pop(wid, None) is not None:
                outbox.put_nowait(api_pb2.WatchRequest(cancel=api_pb2.WatchCancel(watch_id=wid)))

    async def close(self) -> None:
        if self.task is not None:
            await _stop(self.task)


class _CallStream:
    """One open Call stream (see api.proto) and the requests awaiting their responses.

    Requests go out through one writer task: grpcio allows one write at a time, and a caller
    cancelled in the middle of a write would cancel the whole stream."""

    def __init__(self, stub: api_pb2_grpc.APIStub):
        self.call = stub.Call()
        self.pending: dict[int, asyncio.Future] = {}
        self.outbox: asyncio.Queue[api_pb2.CallRequest] = asyncio.Queue()
        self.error: errors.ApiError | None = None
        self.tasks = (asyncio.create_task(self._write(), name="call-stream-writer"),
                      asyncio.create_task(self._read(), name="call-stream-reader"))

    async def _write(self) -> None:
        try:
            while True:
                request = await self.outbox.get()
                if request.id in self.pending:  # not given up on while it waited
                    await self.call.write(request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the stream ended (a write after its end is InvalidStateError); the reader
            # reports it to the requests

    async def _read(self) -> None:
        error: errors.ApiError = errors.Unavailable("the API server closed the call stream")
        try:
            async for resp in self.call:
                fut = self.pending.pop(resp.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(resp)
        except grpc.aio.AioRpcError as e:
            error = _translate(e)
        finally:
            self.error = error
            self.tasks[0].cancel()
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(error)
            self.pending.clear()

    async def request(self, request: api_pb2.CallRequest) -> api_pb2.CallResponse:
        fut = asyncio.get_running_loop().create_future()
        self.pending[request.id] = fut
        self.outbox.put_nowait(request)
        try:
            return await fut
        finally:
            self.pending.pop(request.id, None)

    async def close(self) -> None:
        self.call.cancel()
        await _stop(*self.tasks)


class Client:
    def __init__(self, server: str, *, timeout: float = DEFAULT_TIMEOUT):
        self.server = server
        self.timeout = timeout
        self.channel = grpc.aio.insecure_channel(server, options=wire.CHANNEL_OPTIONS + [
            ("grpc.keepalive_time_ms", 10000),
            ("grpc.keepalive_timeout_ms", 5000),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            # grpcio shares connections between channels to one address by default: a new
            # client made just after the API server came back would inherit the old client's
            # failed connection, still in backoff, and fail at once with "connection refused".
            ("grpc.use_local_subchannel_pool", 1),
        ])
        self.stub = api_pb2_grpc.APIStub(self.channel)
        self._mux = _WatchMux(self.stub)
        self._calls: _CallStream | None = None
        self._ids = itertools.count(1)
        # A bound on the calls in flight per client: a burst (a thousand pods created by one
        # controller sync) waits here, not in the server's Call stream (which serves 256 at a
        # time) or in grpcio (whose aio stack cancels some unary calls, status CANCELLED, when
        # thousands start at once on one channel).
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._mux.close()
        if self._calls is not None:
            await self._calls.close()
        await self.channel.close()

    async def _call(self, method, request):
        async with self._in_flight:
            try:
                return await method(request, timeout=self.timeout)
            except grpc.aio.AioRpcError as e:
                raise _translate(e) from None

    async def _request(self, **request: Message) -> Message:
        """One single-object call over the client's Call stream; returns the object."""
        async with self._in_flight:
            stream = self._calls
            if stream is None or stream.error is not None:  # none yet, or it broke: open one
                stream = self._calls = _CallStream(self.stub)
            rid = next(self._ids)
            try:
                resp = await asyncio.wait_for(
                    stream.request(api_pb2.CallRequest(id=rid, **request)), self.timeout)
            except asyncio.TimeoutError:
                raise errors.Unavailable(
                    f"the API server at {self.server} did not answer within {self.timeout:g}s") from None
        if resp.HasField("error"):
            raise wire.from_status(resp.error)
        return objects.unpack(resp.object)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the server answers (gRPC connectivity), or raise Unavailable."""
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            raise errors.Unavailable(f"the API server at {self.server} did not answer within {timeout:g}s") from None

    # ------------------------------------------------------------ CRUD

    async def create(self, obj: Message, *, dry_run: bool = False) -> Message:
        return await self._request(create=api_pb2.CreateRequest(object=objects.pack(obj), dry_run=dry_run))

    async def get(self, kind: str, name: str, namespace: str = "") -> Message:
        return await self._request(get=api_pb2.GetRequest(kind=kind, namespace=namespace, name=name))

    async def list(self, kind: str, namespace: str = "", *, label_selector: str = "",
                   field_selector: str = "") -> tuple[list[Message], int]:
        resp = await self._call(self.stub.List, api_pb2.ListRequest(
            kind=kind, namespace=namespace, label_selector=label_selector, field_selector=field_selector))
        return [objects.unpack(a) for a in resp.items], resp.resource_version

    async def update(self, obj: Message, *, dry_run: bool = False) -> Message:
        return await self._request(update=api_pb2.UpdateRequest(object=objects.pack(obj), dry_run=dry_run))

    async def update_status(self, obj: Message) -> Message:
        return await self._request(update_status=api_pb2.UpdateRequest(object=objects.pack(obj)))

    async def patch(self, kind: str, name: str, patch: dict | str, namespace: str = "", *,
                    subresource: str = "") -> Message:
        body = patch if isinstance(patch, str) else json.dumps(patch)
        return await self._request(patch=api_pb2.PatchRequest(
            kind=kind, namespace=namespace, name=name, patch=body, subresource=subresource))

    async def delete(self, kind: str, name: str, namespace: str = "", *,
                     grace_period_seconds: int | None = None, propagation_policy: str = "",
                     precondition_uid: str = "", precondition_resource_version: str = "") -> Message:
        req = api_pb2.DeleteRequest(kind=kind, namespace=namespace, name=name,
                                    propagation_policy=propagation_policy,
                                    precondition_uid=precondition_uid,
                                    precondition_resource_version=precondition_resource_version)
        if grace_period_seconds is not None:
            req.grace_period_seconds, req.has_grace_period = grace_period_seconds, True
        return await self._request(delete=req)

    # ------------------------------------------------------------ watch

    async def watch(self, kind: str, namespace: str = "", *, resource_version: int = 0,
                    label_selector: str = "", field_selector: str = "",
                    allow_bookmarks: bool = True) -> AsyncIterator[list[WatchEvent]]:
        """Yield batches of events after `resource_version` (0: from now).

        Ends by raising: TooOld when the revision left the server's history or this watcher
        fell behind (list again), Unavailable when the stream broke (retry with backoff).
        """
        create = api_pb2.WatchCreate(kind=kind, namespace=namespace, resource_version=resource_version,
                                     label_selector=label_selector, field_selector=field_selector,
                                     allow_bookmarks=allow_bookmarks)
        async for resp in self._mux.watch(create):
            if resp.canceled:
                if resp.HasField("status") and resp.status.reason:
                    raise wire.from_status(resp.status)
                return
            if resp.events:
                yield [WatchEvent(e.type, objects.unpack(e.object) if e.HasField("object") else None,
                                  e.resource_version) for e in resp.events]
