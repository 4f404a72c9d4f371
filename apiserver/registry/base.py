"""What the API server asks of each kind: defaulting, validation and allocation.

The write path (apiserver/store.py) calls, for a create:
    prepare_for_create(obj)           defaulting; status cleared
    errs = validate(obj)              static rules -> Invalid if any
    allocate(obj)                     inside the write transaction (ClusterIP, NodePort, ...);
                                      raises errors.Invalid with field paths when it cannot
and for an update (old is the stored object, new has its status copied from old, or the other
way round for a status update):
    prepare_for_update(new, old)      defaulting, immutable fields carried over where Kubernetes does
    errs = validate(new) + validate_update(new, old)
    reallocate(new, old)              allocate what is new, release what is gone
and on removal from the store:
    release(obj)
At start, rebuild(all stored objects of the kind) re-derives allocator state, so nothing leaks.
Every method is pure with respect to the store: it only reads and changes its arguments and
the strategy's own allocators. If allocate/reallocate raises, it must leave the allocators as
they were (all or nothing).
"""
from __future__ import annotations

from typing import Iterable

from google.protobuf.message import Message

from kubemu.errors import FieldError


class Strategy:
    kind: str = ""

    def prepare_for_create(self, obj: Message) -> None:
        pass

    def validate(self, obj: Message) -> list[FieldError]:
        return []

    def prepare_for_update(self, new: Message, old: Message) -> None:
        pass

    def validate_update(self, new: Message, old: Message) -> list[FieldError]:
        return []

    def allocate(self, obj: Message) -> None:
        pass

    def reallocate(self, new: Message, old: Message) -> None:
        pass

    def release(self, obj: Message) -> None:
        pass

    def rebuild(self, objects: Iterable[Message]) -> None:
        pass
