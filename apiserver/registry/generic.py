"""What every kind's strategy shares: ObjectMeta rules, status reset, generation.

Kubernetes spreads this over each kind's strategy (PrepareForCreate clears status and sets
generation 1; PrepareForUpdate bumps generation when the spec changed) and over
ValidateObjectMeta/ValidateObjectMetaUpdate. Kinds override the `default`, `validate_spec`,
`validate_spec_update` and `validate_status_update` hooks; the Strategy methods the store
calls stay here.
"""
from __future__ import annotations

from google.protobuf.message import Message

from kubemu import objects
from kubemu.apiserver import validation as v
from kubemu.apiserver.registry.base import Strategy
from kubemu.errors import FieldError


class ObjectStrategy(Strategy):
    kind = ""
    # Kubernetes' ValidateNameFunc for this kind's metadata.name.
    name_fn: v.NameFn = staticmethod(v.name_is_dns_subdomain)
    # Top-level fields whose change bumps metadata.generation; empty: the kind has none.
    generation_fields: tuple[str, ...] = ()
    # Whether a create starts with an empty status (the status subresource owns it).
    resets_status = False

    # -- hooks for kinds

    def default(self, obj: Message) -> None:
        """Kubernetes' SetDefaults_<Kind>: runs on every create and update."""

    def initial_status(self, obj: Message) -> None:
        """The status a new object starts with, after the reset."""

    def prepare_update(self, new: Message, old: Message) -> None:
        """Kind-specific PrepareForUpdate, after defaulting."""

    def validate_spec(self, obj: Message) -> list[FieldError]:
        return []

    def validate_spec_update(self, new: Message, old: Message) -> list[FieldError]:
        return []

    def validate_status_update(self, new: Message, old: Message) -> list[FieldError]:
        """Runs when the status changed (a status update, or a kubelet-style full write)."""
        return []

    # -- Strategy

    def prepare_for_create(self, obj: Message) -> None:
        if self.resets_status and "status" in obj.DESCRIPTOR.fields_by_name:
            obj.ClearField("status")
            self.initial_status(obj)
        self.default(obj)
        if self.generation_fields:
            obj.metadata.generation = 1

    def prepare_for_update(self, new: Message, old: Message) -> None:
        self.default(new)
        self.prepare_update(new, old)
        if self.generation_fields:
            generation = old.metadata.generation
            if self.spec_changed(new, old):
                generation += 1
            new.metadata.generation = generation

    def spec_changed(self, new: Message, old: Message) -> bool:
        return any(_field(new, f) != _field(old, f) for f in self.generation_fields)

    def validate(self, obj: Message) -> list[FieldError]:
        kind = objects.KINDS[self.kind]
        errs = v.validate_object_meta(obj.metadata, namespaced=kind.namespaced, name_fn=self.name_fn)
        return errs + self.validate_spec(obj)

    def validate_update(self, new: Message, old: Message) -> list[FieldError]:
        errs = v.validate_object_meta_update(new.metadata, old.metadata)
        errs += self.validate_spec_update(new, old)
        if "status" in new.DESCRIPTOR.fields_by_name and _field(new, "status") != _field(old, "status"):
            errs += self.validate_status_update(new, old)
        return errs


def _field(msg: Message, name: str) -> object:
    """A comparable view of one top-level field; unset and empty compare equal."""
    value = getattr(msg, name)
    if isinstance(value, Message):
        return value.SerializeToString(deterministic=True)
    if hasattr(value, "items"):
        return dict(value.items())
    return list(value) if hasattr(value, "__len__") and not isinstance(value, str) else value
