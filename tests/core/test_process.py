"""kubemu.process.FreezeSurvivors: the cyclic collector's full passes skip long-lived data."""
from __future__ import annotations

import gc
import weakref

from kubemu.process import FreezeSurvivors


class Node:
    def __init__(self):
        self.other = None


def test_survivors_are_frozen_and_a_review_collects_what_then_became_garbage():
    policy = FreezeSurvivors().install()
    try:
        frozen_at_start = gc.get_freeze_count()
        kept = [Node() for _ in range(1000)]  # long-lived data made after the start
        gc.collect(1)  # a second-generation pass: what survived it is frozen
        assert gc.get_freeze_count() >= frozen_at_start + 1000

        # a cycle frozen while in use, then dropped: full passes no longer look at it ...
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        gc.collect(1)
        del a, b
        gc.collect()
        assert ref() is not None, "a full pass looked at a frozen object"
        # ... the periodic review does, and freezes what is still in use again
        assert policy.review() >= 2
        assert ref() is None
        assert gc.get_freeze_count() >= 1000
        del kept
    finally:
        policy.uninstall()
    assert policy not in gc.callbacks and gc.get_freeze_count() == 0
