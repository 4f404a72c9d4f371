"""The node lifecycle controller with a fake clock: grace period, taints, fencing, eviction."""
from __future__ import annotations

from kubemu import objects

from kubemu.controllers import nodelifecycle as nl
from kubemu.controllers.base import copy
from kubemu.timefmt import rfc3339
from kubemu.controllers.nodelifecycle import NodeLifecycleController

from ctrl_helpers import FakeClient, informer, node, pod, put, run

T0 = 1_800_000_000.0


class Clock:
    def __init__(self):
        self.t = T0

    def __call__(self):
        return self.t


def lease(name: str, renew: str = "2027-01-15T08:00:00.000001Z"):
    return objects.from_dict({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                              "metadata": {"name": name, "namespace": "kube-node-lease", "resourceVersion": "1"},
                              "spec": {"holderIdentity": name, "renewTime": renew, "leaseDurationSeconds": 40}})


def make(nodes, pods=(), leases=None, grace=3.0, eviction=10.0):
    clock = Clock()
    client = FakeClient()
    leases = leases if leases is not None else [lease(n.metadata.name) for n in nodes]
    c = NodeLifecycleController(client, nodes=informer("Node", *nodes), leases=informer("Lease", *leases),
                                pods=informer("Pod", *pods), recorder=None, grace_period=grace,
                                eviction_timeout=eviction, clock=clock)
    c.leases.connected = True
    return c, client, clock


def test_healthy_nodes_write_nothing():
    c, client, clock = make([node("node-1"), node("node-2")], [pod("a", node="node-1", ip="10.0.0.1")])
    run(c.sync("node-1"))
    clock.t += 2.5
    run(c.sync("node-1"))
    assert client.writes == []


def test_lease_renewal_keeps_a_node_alive():
    c, client, clock = make([node("node-1"), node("node-2")])
    run(c.sync("node-1"))
    for i in range(5):
        clock.t += 2
        put(c.leases, lease("node-1", renew=f"2027-01-15T08:00:0{i}.5Z"))
        run(c.sync("node-1"))
    assert client.writes == []


def test_stale_lease_marks_unknown_taints_and_fences_pods_then_evicts():
    pods = [pod("a", node="node-1", ip="10.0.0.1"), pod("b", node="node-1", ip="10.0.0.2", ready=False),
            pod("c", node="node-2", ip="10.0.0.3")]
    tolerant = pod("t", node="node-1", ip="10.0.0.4")
    objects.fill(tolerant.spec.tolerations.add(), {"key": nl.TAINT_UNREACHABLE, "operator": "Exists",
                                                   "effect": "NoExecute", "tolerationSeconds": 60})
    c, client, clock = make([node("node-1"), node("node-2")], pods + [tolerant])
    run(c.sync("node-1"))
    clock.t += 3.5
    run(c.sync("node-1"))
    verbs = client.verbs()
    assert verbs[0] == ("update_status", "Node", "node-1")
    ready = client.writes[0][3].status.conditions[0]
    assert (ready.status, ready.reason, ready.message) == ("Unknown", "NodeStatusUnknown",
                                                          "Kubelet stopped posting node status.")
    assert ready.lastHeartbeatTime == "2026-01-01T00:00:00Z"  # kept
    assert verbs[1] == ("update", "Node", "node-1")
    taints = {(t.key, t.effect) for t in client.writes[1][3].spec.taints}
    assert taints == {(nl.TAINT_UNREACHABLE, "NoSchedule"), (nl.TAINT_UNREACHABLE, "NoExecute")}
    fenced = sorted(w[2] for w in client.writes if w[0] == "update_status" and w[1] == "Pod")
    assert fenced == ["default/a", "default/t"]  # b was not ready; c is elsewhere
    assert not [w for w in client.writes if w[0] == "delete"]

    # the cache catches up with our writes; before the eviction timeout nothing more happens
    tainted = client.writes[1][3]
    put(c.nodes, tainted)
    for w in client.writes[2:]:
        put(c.pods, w[3])
    client.writes.clear()
    clock.t += 9
    run(c.sync("node-1"))
    assert client.writes == []
    clock.t += 2  # 10 s after the taint: evict all but the pod tolerating it for 60 s
    run(c.sync("node-1"))
    deletes = sorted((w[2], w[3]["grace_period_seconds"]) for w in client.writes if w[0] == "delete")
    assert deletes == [("default/a", 0), ("default/b", 0)]


def test_returning_node_loses_taints():
    n = node("node-1", taints=[{"key": nl.TAINT_UNREACHABLE, "effect": "NoSchedule"},
                               {"key": nl.TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": rfc3339(T0)},
                               {"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
    c, client, _ = make([n, node("node-2")])
    run(c.sync("node-1"))
    assert client.verbs() == [("update", "Node", "node-1")]
    assert [(t.key, t.effect) for t in client.writes[0][3].spec.taints] == [("dedicated", "NoSchedule")]


def test_no_eviction_when_every_node_is_down():
    n1 = node("node-1", ready="Unknown", taints=[{"key": nl.TAINT_UNREACHABLE, "effect": "NoSchedule"},
                                                {"key": nl.TAINT_UNREACHABLE, "effect": "NoExecute",
                                                 "timeAdded": rfc3339(T0 - 100)}])
    c, client, _ = make([n1], [pod("a", node="node-1", ip="10.0.0.1", ready=False)])
    run(c.sync("node-1"))
    assert not [w for w in client.writes if w[0] == "delete"]


def test_disconnected_lease_informer_judges_nobody():
    c, client, clock = make([node("node-1"), node("node-2")])
    run(c.sync("node-1"))
    c.leases.connected = False
    clock.t += 30
    run(c.sync("node-1"))
    c.leases.connected = True
    run(c.sync("node-1"))  # reconnected: the grace period starts afresh
    assert client.writes == []
    clock.t += 3.5
    run(c.sync("node-1"))
    assert client.verbs()[0] == ("update_status", "Node", "node-1")


def test_pods_of_a_deleted_node_are_removed():
    c, client, _ = make([node("node-2")], [pod("a", node="node-1", ip="10.0.0.1")])
    run(c.sync("node-1"))
    assert client.verbs() == [("delete", "Pod", "default/a")]
    assert client.writes[0][3]["grace_period_seconds"] == 0


def test_eviction_delay_honours_tolerations():
    taint = node("n", taints=[{"key": nl.TAINT_UNREACHABLE, "effect": "NoExecute"}]).spec.taints[0]
    p = pod("p")
    assert nl.eviction_delay(p, taint, 10) == 10
    objects.fill(p.spec.tolerations.add(), {"key": nl.TAINT_UNREACHABLE, "operator": "Exists"})
    assert nl.eviction_delay(p, taint, 10) is None
    q = copy(pod("q"))
    objects.fill(q.spec.tolerations.add(), {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2})
    assert nl.eviction_delay(q, taint, 10) == 2


def test_never_posted_node_becomes_unknown():
    n = node("node-1")
    n.status.ClearField("conditions")
    c, client, clock = make([n, node("node-2")], leases=[])
    run(c.sync("node-1"))
    clock.t += 4
    run(c.sync("node-1"))
    ready = client.writes[0][3].status.conditions[0]
    assert (ready.type, ready.status, ready.reason) == ("Ready", "Unknown", "NodeStatusNeverUpdated")
