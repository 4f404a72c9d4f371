"""The scheduler: filters, scoring, messages, and what a sync writes."""
from __future__ import annotations

from kubemu import objects

from kubemu.controllers.base import copy
from kubemu.events import EventRecorder
from kubemu.controllers.scheduler import Scheduler, filter_node, pick_node, tolerates, unschedulable_message

from ctrl_helpers import FakeClient, informer, node, pod, run


def owned(name: str, node_name: str = "", owner_uid: str = "rs-1"):
    p = pod(name, node=node_name)
    p.metadata.ownerReferences.add(apiVersion="apps/v1", kind="ReplicaSet", name="web", uid=owner_uid,
                                   controller=True)
    return p


def test_filters_in_kube_scheduler_words():
    p = pod("p")
    assert filter_node(p, node("n")) is None
    assert filter_node(p, node("n", ready="False")) == "node(s) were not ready"
    assert filter_node(p, node("n", unschedulable=True)) == "node(s) were unschedulable"
    tainted = node("n", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}])
    assert filter_node(p, tainted) == "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
    soft = node("n", taints=[{"key": "k", "value": "v", "effect": "PreferNoSchedule"}])
    assert filter_node(p, soft) is None
    p.spec.nodeSelector["disk"] = "ssd"
    assert filter_node(p, node("n")) == "node(s) didn't match Pod's node affinity/selector"
    assert filter_node(p, node("n", labels={"disk": "ssd"})) is None


def test_tolerations():
    taint = objects.fill(objects.KINDS["Node"].message().spec.taints.add(), {"key": "k", "value": "v", "effect": "NoSchedule"})
    tol = objects.KINDS["Pod"].message().spec.tolerations
    assert tolerates(objects.fill(tol.add(), {"key": "k", "operator": "Exists"}), taint)
    assert tolerates(objects.fill(tol.add(), {"key": "k", "value": "v"}), taint)
    assert not tolerates(objects.fill(tol.add(), {"key": "k", "value": "w"}), taint)
    assert not tolerates(objects.fill(tol.add(), {"key": "k", "operator": "Exists", "effect": "NoExecute"}), taint)
    assert tolerates(objects.fill(tol.add(), {"operator": "Exists"}), taint)


def test_message_counts_reasons_sorted():
    msg = unschedulable_message(3, ["node(s) were unschedulable",
                                    "node(s) didn't match Pod's node affinity/selector",
                                    "node(s) didn't match Pod's node affinity/selector"])
    assert msg == ("0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match Pod's node "
                   "affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for "
                   "scheduling.")
    assert unschedulable_message(0, []) == "no nodes available to schedule pods"


def test_spread_owner_first_then_least_loaded():
    nodes = [node("node-1"), node("node-2"), node("node-3")]
    load = {"node-1": 0, "node-2": 5, "node-3": 9}
    owner = {"node-1": 2, "node-2": 1, "node-3": 1}
    chosen, _ = pick_node(pod("p"), nodes, load.get, owner.get)
    assert chosen == "node-2"  # fewest replicas of the owner, then least loaded


def make(pods, nodes):
    client = FakeClient()
    recorder = EventRecorder(client)
    s = Scheduler(client, pods=informer("Pod", *pods), nodes=informer("Node", *nodes), recorder=recorder,
                  clock=lambda: 1_800_000_000.0)
    return s, client, recorder


def test_sync_binds_spreading_replicas_and_records_scheduled():
    pods = [owned("a", "node-1"), owned("b", "node-2"), owned("c")]
    s, client, recorder = make(pods, [node("node-1"), node("node-2"), node("node-3")])
    run(s.sync("default/c"))
    assert client.verbs()[0] == ("update", "Pod", "default/c")
    assert client.writes[0][3].spec.nodeName == "node-3"
    assert client.writes[1][0] == "update_status"
    cond = [c for c in client.writes[1][3].status.conditions if c.type == "PodScheduled"]
    assert cond[0].status == "True"
    run(recorder.flush())
    ev = client.writes[-1][3]
    assert (ev.reason, ev.message, ev.source.component) == (
        "Scheduled", "Successfully assigned default/c to node-3", "default-scheduler")


def test_assumed_pods_count_before_the_cache_shows_them():
    pods = [owned("a"), owned("b"), owned("c")]
    s, client, _ = make(pods, [node("node-1"), node("node-2"), node("node-3")])
    for k in ("default/a", "default/b", "default/c"):
        run(s.sync(k))
    chosen = sorted(w[3].spec.nodeName for w in client.writes if w[0] == "update")
    assert chosen == ["node-1", "node-2", "node-3"]


def test_nothing_fits_sets_condition_and_event_once():
    p = pod("p")
    p.spec.nodeSelector["disk"] = "ssd"
    s, client, recorder = make([p], [node("node-1"), node("node-2", ready="False")])
    run(s.sync("default/p"))
    assert client.verbs() == [("update_status", "Pod", "default/p")]
    st = client.writes[0][3].status
    assert st.phase == "Pending"
    cond = st.conditions[0]
    assert (cond.type, cond.status, cond.reason) == ("PodScheduled", "False", "Unschedulable")
    assert cond.message.startswith("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
                                   "1 node(s) were not ready.")
    # the condition is in place: a retry writes no status again, and the event aggregates
    s.pods._replace([client.writes[0][3]], 6000)
    client.writes.clear()
    run(s.sync("default/p"))
    assert client.writes == []
    run(recorder.flush())
    ev = client.writes[0][3]
    assert (ev.type, ev.reason, ev.count) == ("Warning", "FailedScheduling", 2)


def test_bound_or_foreign_pods_are_left_alone():
    bound = pod("a", node="node-1")
    other = pod("b")
    other.spec.schedulerName = "my-scheduler"
    gone = copy(pod("c"))
    gone.metadata.deletionTimestamp = "2026-01-01T00:00:00Z"
    s, client, _ = make([bound, other, gone], [node("node-1")])
    for k in ("default/a", "default/b", "default/c", "default/missing"):
        run(s.sync(k))
    assert client.writes == []
