"""API semantics against a real API server process: revisions, conflicts, watch, errors."""
from __future__ import annotations

import asyncio

import pytest

from kubemu import errors, objects
from kubemu.client import Client
from kubemu.testing import procs
from kubemu.testing.procs import run


def cm(name: str, ns: str = "default", **labels) -> object:
    """A small object to write: a Lease carries no allocation rules."""
    obj = objects.new("Lease", name, ns)
    obj.metadata.labels.update(labels)
    obj.spec.holderIdentity = name
    return obj


async def collect(watch, n: int, timeout: float = 5.0) -> list:
    out = []

    async def go():
        async for batch in watch:
            out.extend(batch)
            if len(out) >= n:
                return
    await asyncio.wait_for(go(), timeout)
    return out


def test_system_namespaces_exist_from_the_start(apiserver):
    async def body():
        async with Client(apiserver) as c:
            items, rev = await c.list("Namespace")
            assert {"default", "kube-system", "kube-node-lease", "kube-public"} <= {i.metadata.name for i in items}
            assert rev >= 4
    run(body())


def test_revisions_increase_and_stale_update_conflicts(apiserver):
    async def body():
        async with Client(apiserver) as c:
            a = await c.create(cm("a"))
            b = await c.create(cm("b"))
            assert int(b.metadata.resourceVersion) == int(a.metadata.resourceVersion) + 1
            a.spec.holderIdentity = "changed"
            a2 = await c.update(a)
            assert int(a2.metadata.resourceVersion) > int(b.metadata.resourceVersion)
            a.spec.holderIdentity = "stale"  # still carries the old resourceVersion
            with pytest.raises(errors.Conflict) as e:
                await c.update(a)
            assert 'Operation cannot be fulfilled on leases.coordination.k8s.io "a"' in str(e.value)
            # a no-op update writes nothing and keeps the revision
            same = await c.update(a2)
            assert same.metadata.resourceVersion == a2.metadata.resourceVersion
    run(body())


def test_errors_carry_reasons(apiserver):
    async def body():
        async with Client(apiserver) as c:
            await c.create(cm("x"))
            with pytest.raises(errors.AlreadyExists, match='leases.coordination.k8s.io "x" already exists'):
                await c.create(cm("x"))
            with pytest.raises(errors.NotFound, match='leases.coordination.k8s.io "nope" not found'):
                await c.get("Lease", "nope", "default")
            with pytest.raises(errors.NotFound, match='namespaces "ghost" not found'):
                await c.create(cm("y", "ghost"))
            with pytest.raises(errors.BadRequest, match="resource type"):
                await c.list("Gadget")
            with pytest.raises(errors.Forbidden, match="may not be deleted"):
                await c.delete("Namespace", "kube-system")
            with pytest.raises(errors.BadRequest):
                await c.patch("Lease", "x", "{not json", "default")
    run(body())


def test_list_selectors(apiserver):
    async def body():
        async with Client(apiserver) as c:
            await c.create(cm("p1", app="web", tier="fe"))
            await c.create(cm("p2", app="web", tier="be"))
            await c.create(cm("p3", app="db"))
            names = lambda items: sorted(i.metadata.name for i in items)
            assert names((await c.list("Lease", "default", label_selector="app=web"))[0]) == ["p1", "p2"]
            assert names((await c.list("Lease", "default", label_selector="app=web,tier!=fe"))[0]) == ["p2"]
            assert names((await c.list("Lease", "default", label_selector="app in (db, x)"))[0]) == ["p3"]
            assert names((await c.list("Lease", "default", label_selector="app notin (web)"))[0]) == ["p3"]
            assert names((await c.list("Lease", "default", label_selector="tier"))[0]) == ["p1", "p2"]
            assert names((await c.list("Lease", "default", label_selector="!tier"))[0]) == ["p3"]
            assert names((await c.list("Lease", "default", field_selector="metadata.name=p2"))[0]) == ["p2"]
            assert names((await c.list("Lease", "", field_selector="metadata.name!=p2"))[0]) == ["p1", "p3"]
            with pytest.raises(errors.BadRequest, match="field label not supported"):
                await c.list("Lease", "default", field_selector="spec.bogus=1")
            with pytest.raises(errors.BadRequest, match="unable to parse"):
                await c.list("Lease", "default", label_selector="a in b")
    run(body())


def test_watch_replays_exactly_the_later_events(apiserver):
    async def body():
        async with Client(apiserver) as c:
            first = await c.create(cm("w0"))
            start = int(first.metadata.resourceVersion)
            for i in range(1, 6):
                await c.create(cm(f"w{i}"))
            await c.delete("Lease", "w2", "default")
            events = await collect(c.watch("Lease", "default", resource_version=start), 6)
            assert [(e.type, e.object.metadata.name) for e in events] == [
                ("ADDED", "w1"), ("ADDED", "w2"), ("ADDED", "w3"), ("ADDED", "w4"), ("ADDED", "w5"),
                ("DELETED", "w2")]
            revs = [e.resource_version for e in events]
            assert revs == sorted(revs) and revs[0] == start + 1
    run(body())


def test_watch_label_selector_sees_objects_leave_and_enter(apiserver):
    async def body():
        async with Client(apiserver) as c:
            o = await c.create(cm("sel", app="web"))
            w = c.watch("Lease", "default", resource_version=int(o.metadata.resourceVersion),
                        label_selector="app=web")
            await c.patch("Lease", "sel", {"metadata": {"labels": {"app": "db"}}}, "default")
            await c.patch("Lease", "sel", {"metadata": {"labels": {"app": "web"}}}, "default")
            events = await collect(w, 2)
            assert [e.type for e in events] == ["DELETED", "ADDED"]
    run(body())


def test_bookmarks_arrive_for_idle_watchers(apiserver):
    async def body():
        async with Client(apiserver) as c:
            _, rev = await c.list("Pod")
            w = c.watch("Pod", "", resource_version=rev)
            # changes of another kind move the revision; the pod watcher learns it by bookmark
            last = await c.create(cm("bm"))

            async def bookmark():
                async for batch in w:
                    for e in batch:
                        if e.type == "BOOKMARK" and e.resource_version >= int(last.metadata.resourceVersion):
                            return e
            ev = await asyncio.wait_for(bookmark(), 5)
            assert ev.object is None
    run(body())


def test_too_old_after_compaction(tmp_path):
    with procs.apiserver(str(tmp_path / "s"), "--history", "20") as (_, address):
        async def body():
            async with Client(address) as c:
                first = await c.create(cm("old"))
                for i in range(40):
                    await c.create(cm(f"o{i}"))
                with pytest.raises(errors.TooOld, match="too old resource version"):
                    async for _ in c.watch("Lease", "default", resource_version=int(first.metadata.resourceVersion)):
                        pass
                # a fresh list gives a revision one can watch from
                _, rev = await c.list("Lease", "default")
                w = c.watch("Lease", "default", resource_version=rev)
                await c.create(cm("new"))
                events = await collect(w, 1)
                assert events[0].object.metadata.name == "new"
        run(body())


def test_slow_watcher_is_cut_off_while_others_continue(tmp_path):
    from kubemu.v1 import api_pb2, api_pb2_grpc
    import grpc
    with procs.apiserver(str(tmp_path / "s"), "--max-pending", "1000") as (_, address):
        async def body():
            async with Client(address) as writer, Client(address) as fast_client, \
                    grpc.aio.insecure_channel(address) as raw:
                _, rev = await writer.list("Lease", "default")
                # The slow watcher opens a watch and then never reads its stream.
                requests: asyncio.Queue = asyncio.Queue()
                await requests.put(api_pb2.WatchRequest(create=api_pb2.WatchCreate(
                    watch_id=1, kind="Lease", namespace="default", resource_version=rev)))

                async def request_stream():
                    while True:
                        yield await requests.get()
                slow = api_pb2_grpc.APIStub(raw).Watch(request_stream())
                fast = fast_client.watch("Lease", "default", resource_version=rev)
                fast_seen = []

                async def read_fast():
                    async for batch in fast:
                        fast_seen.extend(batch)
                        if len(fast_seen) >= 3000:
                            return
                reader = asyncio.create_task(read_fast())
                payload = "x" * 2000
                for chunk in range(30):
                    await asyncio.gather(*(writer.create(_big(f"s{chunk}-{i}", payload)) for i in range(100)))
                await asyncio.wait_for(reader, 30)
                assert len(fast_seen) == 3000
                # Reading the slow stream now: what was in flight, then the cut-off.
                received, status = 0, None
                async for msg in slow:
                    for resp in msg.batch or [msg]:
                        received += len(resp.events)
                        if resp.canceled:
                            status = resp.status
                    if status is not None:
                        break
                assert status is not None and status.reason == "TooOld"
                assert "fell too far behind" in status.message
                assert received < 3000
                slow.cancel()
        run(body(), 120)


def test_watches_of_one_stream_get_their_events_in_one_message(apiserver):
    """Two watches on one stream that both see a write: one message, a `batch` entry each."""
    from kubemu.v1 import api_pb2, api_pb2_grpc
    import grpc

    async def body():
        async with Client(apiserver) as writer, grpc.aio.insecure_channel(apiserver) as raw:
            requests: asyncio.Queue = asyncio.Queue()
            for wid in (1, 2):
                requests.put_nowait(api_pb2.WatchRequest(create=api_pb2.WatchCreate(
                    watch_id=wid, kind="Lease", namespace="default")))

            async def request_stream():
                while True:
                    yield await requests.get()
            stream = api_pb2_grpc.APIStub(raw).Watch(request_stream()).__aiter__()
            created = set()
            while created != {1, 2}:
                msg = await asyncio.wait_for(stream.__anext__(), 5)
                created |= {r.watch_id for r in msg.batch or [msg] if r.created}
            obj = await writer.create(cm("both"))
            msg = await asyncio.wait_for(stream.__anext__(), 5)
            assert [r.watch_id for r in msg.batch] == [1, 2] and not msg.events
            for r in msg.batch:
                assert [(e.type, e.resource_version) for e in r.events] == [
                    ("ADDED", int(obj.metadata.resourceVersion))]
                assert objects.unpack(r.events[0].object).metadata.name == "both"
            # the client library hands each watch its own
            w1 = writer.watch("Lease", "default", resource_version=int(obj.metadata.resourceVersion))
            w2 = writer.watch("Lease", "default", resource_version=int(obj.metadata.resourceVersion))
            await writer.create(cm("again"))
            for w in (w1, w2):
                assert [e.object.metadata.name for e in await collect(w, 1)] == ["again"]
    run(body())


def _big(name: str, payload: str):
    obj = cm(name)
    obj.metadata.annotations["payload"] = payload
    return obj


def test_a_burst_of_concurrent_writes_from_one_client_all_succeed(apiserver):
    """grpcio's aio stack cancels calls when thousands start at once on one channel; the
    client bounds its calls in flight so a burst (a controller creating many pods) succeeds."""
    async def body():
        async with Client(apiserver) as c:
            results = await asyncio.gather(*(c.create(cm(f"burst-{i}")) for i in range(1500)),
                                           return_exceptions=True)
            failures = [r for r in results if isinstance(r, Exception)]
            assert not failures, f"{len(failures)} failed, e.g. {failures[0]!r}"
            items, _ = await c.list("Lease", "default")
            assert len(items) == 1500
    run(body(), 120)


def test_health_checking_and_reflection_are_served(apiserver):
    """What grpcurl needs: `grpcurl -plaintext ADDR list` and `grpc.health.v1.Health/Check`."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async def body():
        async with grpc.aio.insecure_channel(apiserver) as ch:
            health = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="kubemu.v1.API"))
            assert health.status == health_pb2.HealthCheckResponse.SERVING

            async def requests():
                yield reflection_pb2.ServerReflectionRequest(list_services="")
                yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="kubemu.v1.Service")
            answers = [r async for r in reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(requests())]
            names = {s.name for s in answers[0].list_services_response.service}
            assert {"kubemu.v1.API", "grpc.health.v1.Health"} <= names
            assert answers[1].file_descriptor_response.file_descriptor_proto  # objects.proto
    run(body())


def test_malformed_requests_are_bad_requests_and_the_server_goes_on(apiserver):
    import grpc
    from google.protobuf import any_pb2
    from kubemu.v1 import api_pb2, api_pb2_grpc

    async def body():
        async with grpc.aio.insecure_channel(apiserver) as ch:
            stub = api_pb2_grpc.APIStub(ch)
            for obj in (any_pb2.Any(type_url="type.googleapis.com/kubemu.v1.Service", value=b"\xff\xff\xff"),
                        any_pb2.Any(type_url="type.googleapis.com/kubemu.v1.Gadget", value=b""),
                        any_pb2.Any()):
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await stub.Create(api_pb2.CreateRequest(object=obj))
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
            # raw garbage instead of a request message
            garbage = ch.unary_unary("/kubemu.v1.API/Get")
            with pytest.raises(grpc.aio.AioRpcError):
                await garbage(b"\xff\xfe\xfd")
        async with Client(apiserver) as c:
            assert (await c.create(cm("still-serving"))).metadata.name == "still-serving"
    run(body())


def test_calls_on_one_stream_are_answered_by_id_and_a_bad_one_fails_alone(apiserver):
    """The Call stream as a raw gRPC client sees it: each response repeats its request's id,
    an error comes back as that call's Status, and the stream goes on serving."""
    import grpc
    from kubemu.v1 import api_pb2, api_pb2_grpc

    async def body():
        async with grpc.aio.insecure_channel(apiserver) as ch:
            call = api_pb2_grpc.APIStub(ch).Call()
            bad = objects.new("Service", "Bad_Name", "default")
            requests = {
                1: api_pb2.CallRequest(id=1, create=api_pb2.CreateRequest(object=objects.pack(cm("via-stream")))),
                2: api_pb2.CallRequest(id=2, get=api_pb2.GetRequest(kind="Lease", namespace="default", name="absent")),
                3: api_pb2.CallRequest(id=3, create=api_pb2.CreateRequest(object=objects.pack(bad))),
                4: api_pb2.CallRequest(id=4),  # names no operation
                5: api_pb2.CallRequest(id=5, delete=api_pb2.DeleteRequest(kind="Gadget", name="x")),
            }
            for r in requests.values():
                await call.write(r)
            answers = {}
            while len(answers) < len(requests):
                resp = await call.read()
                answers[resp.id] = resp
            assert objects.unpack(answers[1].object).metadata.name == "via-stream"
            assert answers[1].object.type_url.endswith("kubemu.v1.Lease")
            assert answers[2].error.reason == "NotFound"
            assert answers[3].error.reason == "Invalid"
            assert "metadata.name" in {c.field for c in answers[3].error.details.causes}
            assert answers[4].error.reason == "BadRequest"
            assert answers[5].error.reason == "BadRequest"
            assert 'resource type "Gadget"' in answers[5].error.message
            # the same stream still serves
            await call.write(requests[2])
            assert (await call.read()).error.reason == "NotFound"
            await call.done_writing()
            assert await call.read() is grpc.aio.EOF
            assert await call.code() == grpc.StatusCode.OK
    run(body())


def test_a_cancelled_call_leaves_the_other_calls_of_its_client_alone(apiserver):
    """Calls of one client share a stream; a caller that gives up (a task cancelled, a
    wait_for that expired) must not take the stream, and so its neighbours, down with it."""
    async def body():
        async with Client(apiserver) as c:
            others = [asyncio.create_task(c.create(cm(f"neighbour-{i}"))) for i in range(50)]
            doomed = [asyncio.create_task(c.create(cm(f"doomed-{i}"))) for i in range(50)]
            await asyncio.sleep(0)  # let them start and queue their requests
            for t in doomed:
                t.cancel()
            made = await asyncio.gather(*others)
            assert sorted(o.metadata.name for o in made) == sorted(f"neighbour-{i}" for i in range(50))
            assert (await c.get("Lease", "neighbour-0", "default")).spec.holderIdentity == "neighbour-0"
    run(body())


def test_a_client_outlives_an_api_server_restart(tmp_path):
    """While the server is down calls fail with Unavailable (never hang); once it is back the
    same client works again on a new stream."""
    state, port = str(tmp_path / "state"), procs.free_port()

    async def call(c: Client):
        return await c.get("Namespace", "default")

    async def body():
        async with Client(f"127.0.0.1:{port}", timeout=10) as c:
            with procs.apiserver(state, port=port):
                await c.create(cm("before"))
            with pytest.raises(errors.Unavailable):
                await call(c)
            with procs.apiserver(state, port=port):
                async def back():
                    while True:
                        try:
                            return await call(c)
                        except errors.Unavailable:
                            await asyncio.sleep(0.05)
                await asyncio.wait_for(back(), 20)
                assert (await c.get("Lease", "before", "default")).metadata.name == "before"
                await c.create(cm("after"))
    run(body())


def test_a_client_that_sends_many_calls_before_reading_gets_every_answer(apiserver):
    """The server stops reading a stream while 256 of its calls are unanswered or unread; a
    client that sends 2,000 before reading any answer is held back, and gets every answer."""
    import grpc
    from kubemu.v1 import api_pb2, api_pb2_grpc

    async def body():
        async with grpc.aio.insecure_channel(apiserver) as ch:
            call = api_pb2_grpc.APIStub(ch).Call()
            n = 2000

            async def send():
                for i in range(1, n + 1):
                    await call.write(api_pb2.CallRequest(
                        id=i, create=api_pb2.CreateRequest(object=objects.pack(cm(f"flood-{i}")))))
                await call.done_writing()
            sender = asyncio.create_task(send())
            await asyncio.sleep(0.5)  # let the server fill up before anything is read
            ids = set()
            while (resp := await call.read()) is not grpc.aio.EOF:
                assert not resp.HasField("error"), resp.error
                ids.add(resp.id)
            await sender
            assert ids == set(range(1, n + 1))
        async with Client(apiserver) as c:
            items, _ = await c.list("Lease", "default")
            assert len(items) == n
    run(body(), 120)


def test_a_new_client_reaches_a_restarted_server_at_once(tmp_path):
    """A client made after the API server came back connects afresh: it does not inherit an
    older client's failed connection to the same address, still waiting out its backoff."""
    state, port = str(tmp_path / "state"), procs.free_port()

    async def body():
        async with Client(f"127.0.0.1:{port}") as old:
            with procs.apiserver(state, port=port):
                await old.get("Namespace", "default")
            for _ in range(20):  # fail for a while, so its connection backs off the longest
                with pytest.raises(errors.Unavailable):
                    await old.get("Namespace", "default")
                await asyncio.sleep(0.1)
            with procs.apiserver(state, port=port):
                async with Client(f"127.0.0.1:{port}") as new:
                    assert (await new.get("Namespace", "default")).metadata.name == "default"
    run(body())


def test_the_unary_methods_serve_raw_grpc_clients(apiserver):
    """The unary methods (what grpcurl and other gRPC clients call; the client library uses
    the Call stream) do the same work, and a failure is the call's status with the Status
    message in the trailing metadata."""
    import grpc
    from kubemu import wire
    from kubemu.v1 import api_pb2, api_pb2_grpc

    async def body():
        async with grpc.aio.insecure_channel(apiserver) as ch:
            stub = api_pb2_grpc.APIStub(ch)
            made = objects.unpack((await stub.Create(api_pb2.CreateRequest(object=objects.pack(cm("raw"))))).object)
            got = objects.unpack((await stub.Get(api_pb2.GetRequest(kind="Lease", namespace="default", name="raw"))).object)
            assert got.metadata.uid == made.metadata.uid
            got.spec.holderIdentity = "someone"
            updated = objects.unpack((await stub.Update(api_pb2.UpdateRequest(object=objects.pack(got)))).object)
            assert int(updated.metadata.resourceVersion) > int(made.metadata.resourceVersion)
            patched = objects.unpack((await stub.Patch(api_pb2.PatchRequest(
                kind="Lease", namespace="default", name="raw", patch='{"spec":{"leaseTransitions":3}}'))).object)
            assert (patched.spec.holderIdentity, patched.spec.leaseTransitions) == ("someone", 3)
            await stub.Delete(api_pb2.DeleteRequest(kind="Lease", namespace="default", name="raw"))
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.Get(api_pb2.GetRequest(kind="Lease", namespace="default", name="raw"))
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            status = dict(e.value.trailing_metadata())[wire.STATUS_KEY]
            assert api_pb2.Status.FromString(status).reason == "NotFound"
    run(body())
