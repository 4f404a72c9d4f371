"""The event recorder: Event shape, aggregation of repeats, bounded queue."""
from __future__ import annotations

from kubemu import errors

from kubemu.events import EventRecorder

from ctrl_helpers import FakeClient, node, pod, run


def test_event_shape_and_aggregation():
    client = FakeClient()
    rec = EventRecorder(client, clock=lambda: 1_800_000_000.5).for_component("replicaset-controller")
    p = pod("web-1")

    async def go():
        rec.normal(p, "SuccessfulCreate", "Created pod: web-1")
        rec.normal(p, "SuccessfulCreate", "Created pod: web-1")  # folded into the pending write
        rec.warning(p, "FailedCreate", "boom")
        await rec.recorder.flush()
        rec.normal(p, "SuccessfulCreate", "Created pod: web-1")  # after the write: a count bump
        await rec.recorder.flush()

    run(go())
    verbs = [w[:2] for w in client.writes]
    assert verbs == [("create", "Event"), ("create", "Event"), ("patch", "Event")]
    ev = client.writes[0][3]
    assert ev.metadata.name == "web-1." + format(int(1_800_000_000.5 * 1e9), "x")
    assert ev.metadata.namespace == "default"
    assert (ev.involvedObject.kind, ev.involvedObject.name, ev.involvedObject.uid) == ("Pod", "web-1", "uid-web-1")
    assert (ev.type, ev.reason, ev.message, ev.count) == ("Normal", "SuccessfulCreate", "Created pod: web-1", 2)
    assert ev.source.component == "replicaset-controller"
    assert ev.firstTimestamp == ev.lastTimestamp == "2027-01-15T08:00:00Z"
    assert client.writes[1][3].type == "Warning"
    assert client.writes[2][3]["count"] == 3 and client.writes[2][2] == f"default/{ev.metadata.name}"


def test_cluster_scoped_objects_get_events_in_default():
    client = FakeClient()
    rec = EventRecorder(client).for_component("node-controller")
    rec.normal(node("node-1"), "NodeReady", "Node node-1 status is now: NodeReady")
    run(rec.recorder.flush())
    assert client.writes[0][3].metadata.namespace == "default"


def test_full_queue_drops_instead_of_growing():
    rec = EventRecorder(FakeClient(), max_pending=2)
    for i in range(5):
        rec.record(pod(f"p{i}"), "Normal", "R", "m", "c")
    assert len(rec._pending) == 2 and rec.dropped == 3


def test_deleted_event_starts_a_new_one():
    client = FakeClient()
    rec = EventRecorder(client)
    p = pod("p")

    async def go():
        rec.record(p, "Normal", "R", "m", "c")
        await rec.flush()
        client.fail["patch"] = errors.NotFound("gone")
        rec.record(p, "Normal", "R", "m", "c")
        await rec.flush()

    run(go())
    assert [w[0] for w in client.writes] == ["create", "create"]
