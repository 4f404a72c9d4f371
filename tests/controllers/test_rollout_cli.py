"""`kubemu rollout`: kubectl's status words, history rows, restart and rollback templates."""
from __future__ import annotations

import datetime

import pytest

from kubemu import objects
from kubemu.cli import rollout as ro
from kubemu.cli.kubectl import UserError

from kubemu.controllers.base import copy

from ctrl_helpers import deployment_manifest


def deploy(generation=2, observed=2, **status):
    d = objects.from_dict(deployment_manifest("web", replicas=3))
    d.metadata.uid = "d-uid"
    d.metadata.generation = generation
    d.status.observedGeneration = observed
    for k, v in status.items():
        setattr(d.status, k, v)
    return d


def test_status_words_follow_kubectl():
    assert ro.status_message(deploy(generation=3, observed=2)) == \
        ("Waiting for deployment spec update to be observed...", False)
    assert ro.status_message(deploy(replicas=3, updatedReplicas=1)) == (
        'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...', False)
    assert ro.status_message(deploy(replicas=4, updatedReplicas=3)) == (
        'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...', False)
    assert ro.status_message(deploy(replicas=3, updatedReplicas=3, availableReplicas=2)) == (
        'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...', False)
    assert ro.status_message(deploy(replicas=3, updatedReplicas=3, availableReplicas=3)) == (
        'deployment "web" successfully rolled out', True)
    d = deploy()
    d.status.conditions.add(type="Progressing", status="False", reason="ProgressDeadlineExceeded")
    with pytest.raises(UserError, match='deployment "web" exceeded its progress deadline'):
        ro.status_message(d)


def rs(revision, image, cause=None):
    d = objects.from_dict(deployment_manifest("web"))
    r = objects.new("ReplicaSet", f"web-{revision}", "default")
    r.metadata.annotations[ro.REVISION] = str(revision)
    if cause:
        r.metadata.annotations[ro.CHANGE_CAUSE] = cause
    r.metadata.ownerReferences.add(kind="Deployment", name="web", uid="d-uid", controller=True)
    r.spec.template.CopyFrom(d.spec.template)
    r.spec.template.metadata.labels[ro.HASH_LABEL] = f"h{revision}"
    r.spec.template.spec.containers[0].image = image
    return r


def test_history_and_rollback_templates():
    rss = [rs(2, "echo:2", "kubemu set image"), rs(1, "echo:1"), rs(3, "echo:3")]
    assert ro.history_rows(rss) == [(1, "<none>"), (2, "kubemu set image"), (3, "<none>")]
    assert ro.revision_template(rss, 2).spec.containers[0].image == "echo:2"
    tpl, rev = ro.rollback_template(deploy(), rss, 0)
    assert rev == 2 and tpl.spec.containers[0].image == "echo:2" and ro.HASH_LABEL not in tpl.metadata.labels
    with pytest.raises(UserError, match="unable to find specified revision 7"):
        ro.rollback_template(deploy(), rss, 7)
    other = copy(rss[0])
    other.metadata.ownerReferences[0].uid = "someone-else"
    assert ro.owned_replicasets(deploy(), [other, rss[1]]) == [rss[1]]


def test_restart_patch_sets_the_template_annotation():
    now = datetime.datetime(2026, 11, 28, 18, 40, 0, 123, tzinfo=datetime.timezone.utc)
    assert ro.restart_patch(now) == {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-11-28T18:40:00Z"}}}}}
