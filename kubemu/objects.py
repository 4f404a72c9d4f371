"""The kinds kubemu serves, and conversion between their messages and Kubernetes JSON/YAML.

A manifest (a dict from YAML or JSON) decodes into the kind's protobuf message field for field;
an unknown field or a value of the wrong type is an error that names the field path
(`spec.ports[0].port`), as Kubernetes' strict decoding does. Encoding emits only the fields
that are set, in declaration order, so what a user applied reads back unchanged.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any, Iterable

from google.protobuf import any_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf import message as message_module
from google.protobuf.message import Message

from kubemu.errors import BadRequest
from kubemu.v1 import objects_pb2 as pb

TYPE_URL_PREFIX = "type.googleapis.com/kubemu.v1."


@dataclasses.dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str
    namespaced: bool
    plural: str
    short_names: tuple[str, ...]
    message: type[Message]

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def resource(self) -> str:
        """The name Kubernetes uses in messages: `services`, `deployments.apps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS: dict[str, Kind] = {
    k.kind: k
    for k in [
        Kind("Namespace", "v1", False, "namespaces", ("ns",), pb.Namespace),
        Kind("Node", "v1", False, "nodes", ("no",), pb.Node),
        Kind("Lease", "coordination.k8s.io/v1", True, "leases", (), pb.Lease),
        Kind("Pod", "v1", True, "pods", ("po",), pb.Pod),
        Kind("Service", "v1", True, "services", ("svc",), pb.Service),
        Kind("EndpointSlice", "discovery.k8s.io/v1", True, "endpointslices", (), pb.EndpointSlice),
        Kind("Deployment", "apps/v1", True, "deployments", ("deploy",), pb.Deployment),
        Kind("ReplicaSet", "apps/v1", True, "replicasets", ("rs",), pb.ReplicaSet),
        Kind("Event", "v1", True, "events", ("ev",), pb.Event),
        Kind("Secret", "v1", True, "secrets", (), pb.Secret),
        Kind("Ingress", "networking.k8s.io/v1", True, "ingresses", ("ing",), pb.Ingress),
        Kind("IngressClass", "networking.k8s.io/v1", False, "ingressclasses", (), pb.IngressClass),
    ]
}

_BY_NAME: dict[str, Kind] = {}
for _k in KINDS.values():
    for _alias in (_k.kind.lower(), _k.plural, *_k.short_names, _k.resource):
        _BY_NAME[_alias] = _k
    if _k.group:
        _BY_NAME[f"{_k.kind.lower()}.{_k.group}"] = _k


def kind_for(name: str) -> Kind:
    """Resolve a kind from what a user types: `svc`, `services`, `Service`, `deploy`, ..."""
    found = _BY_NAME.get(name.lower()) or KINDS.get(name)
    if found is None:
        raise BadRequest(f'the server doesn\'t have a resource type "{name}"')
    return found


def kind_of(msg: Message) -> Kind:
    return KINDS[msg.DESCRIPTOR.name]


def new(kind: str, name: str = "", namespace: str = "", **_: Any) -> Message:
    """An empty object of `kind` with apiVersion, kind and the given name set."""
    k = KINDS[kind]
    msg = k.message()
    msg.apiVersion = k.api_version
    msg.kind = k.kind
    if name:
        msg.metadata.name = name
    if namespace and k.namespaced:
        msg.metadata.namespace = namespace
    return msg


def pack(msg: Message) -> any_pb2.Any:
    return pack_serialized(msg.DESCRIPTOR.name, msg.SerializeToString())


def pack_serialized(kind: str, value: bytes) -> any_pb2.Any:
    """An Any around an object of `kind` that is already serialized."""
    out = any_pb2.Any()
    out.type_url = TYPE_URL_PREFIX + kind
    out.value = value
    return out


def unpack(packed: any_pb2.Any) -> Message:
    name = packed.type_url.rpartition(".")[2]
    kind = KINDS.get(name)
    if kind is None or not packed.type_url.startswith(TYPE_URL_PREFIX):
        raise BadRequest(f"unknown object type {packed.type_url!r}")
    msg = kind.message()
    try:
        msg.ParseFromString(packed.value)
    except message_module.DecodeError as e:
        raise BadRequest(f"malformed {kind.kind} object: {e}") from None
    return msg


def key(msg: Message) -> str:
    """`namespace/name`, or `name` for a cluster-scoped object: the work-queue key."""
    ns = msg.metadata.namespace
    return f"{ns}/{msg.metadata.name}" if ns else msg.metadata.name


# ------------------------------------------------------------------ dict <-> message

_QUANTITY_MAPS = {("ResourceRequirements", "limits"), ("ResourceRequirements", "requests"),
                  ("NodeStatus", "capacity"), ("NodeStatus", "allocatable")}

_INT_TYPES = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
              FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64}


class DecodeError(BadRequest):
    """A manifest that does not fit the kind's schema; `field` is the path to the culprit."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field}: {detail}" if field else detail)
        self.field = field
        self.detail = detail


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


def _scalar(field: FieldDescriptor, value: Any, path: str, container: str = "") -> Any:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            return value
        if container in _QUANTITY_MAPS and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise DecodeError(path, f"expected string, got {_type_name(value)} {value!r}")
    if t == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        raise DecodeError(path, f"expected boolean, got {_type_name(value)} {value!r}")
    if t in _INT_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise DecodeError(path, f"expected integer, got {_type_name(value)} {value!r}")
        limit = 2**31 if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32) else 2**63
        if not -limit <= int(value) < limit:
            raise DecodeError(path, f"integer {value} out of range")
        return int(value)
    if t == FieldDescriptor.TYPE_BYTES:
        # bytes travel base64-encoded in JSON (Secret.data), as Go's encoding/json does; its
        # decoder skips line breaks, so a YAML block of wrapped base64 decodes too
        if not isinstance(value, str):
            raise DecodeError(path, f"expected base64 string, got {_type_name(value)} {value!r}")
        try:
            return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
        except (binascii.Error, ValueError) as e:
            raise DecodeError(path, f"illegal base64 data: {e}") from None
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeError(path, f"expected number, got {_type_name(value)} {value!r}")
        return float(value)
    raise DecodeError(path, "unsupported field type")


def _fill(msg: Message, data: Any, path: str) -> None:
    desc = msg.DESCRIPTOR
    if desc.name == "IntOrString":
        _fill_int_or_string(msg, data, path)
        return
    if not isinstance(data, dict):
        raise DecodeError(path, f"expected object, got {_type_name(data)}")
    for name, value in data.items():
        fpath = f"{path}.{name}" if path else str(name)
        field = desc.fields_by_name.get(name) if isinstance(name, str) else None
        if field is None:
            raise DecodeError("", f'unknown field "{fpath}"')
        if value is None:
            continue  # JSON null: the field is unset, as Kubernetes treats it
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if not isinstance(value, dict):
                raise DecodeError(fpath, f"expected object, got {_type_name(value)}")
            target = getattr(msg, name)
            vfield = field.message_type.fields_by_name["value"]
            for k, v in value.items():
                if not isinstance(k, str):
                    raise DecodeError(fpath, f"expected string key, got {_type_name(k)} {k!r}")
                if vfield.message_type is not None:
                    _fill(target[k], v, f"{fpath}.{k}")
                else:
                    target[k] = _scalar(vfield, v, f"{fpath}.{k}", (desc.name, name))
        elif field.is_repeated:
            if not isinstance(value, list):
                raise DecodeError(fpath, f"expected array, got {_type_name(value)}")
            target = getattr(msg, name)
            for i, item in enumerate(value):
                if field.message_type is not None:
                    _fill(target.add(), item, f"{fpath}[{i}]")
                else:
                    target.append(_scalar(field, item, f"{fpath}[{i}]"))
        elif field.message_type is not None:
            sub = getattr(msg, name)
            sub.SetInParent()
            _fill(sub, value, fpath)
        else:
            setattr(msg, name, _scalar(field, value, fpath))


def _fill_int_or_string(msg: Message, data: Any, path: str) -> None:
    if isinstance(data, bool) or not isinstance(data, (int, str)):
        raise DecodeError(path, f"expected integer or string, got {_type_name(data)} {data!r}")
    if isinstance(data, int):
        if not -2**31 <= data < 2**31:
            raise DecodeError(path, f"integer {data} out of range")
        msg.type, msg.intVal = 0, data
    else:
        msg.type, msg.strVal = 1, data


def from_dict(data: Any, kind: str | None = None) -> Message:
    """Decode a manifest. Without `kind`, the manifest's own `kind` and `apiVersion` decide."""
    if not isinstance(data, dict):
        raise DecodeError("", f"expected an object, got {_type_name(data)}")
    kind_name = data.get("kind") or kind
    if not kind_name:
        raise DecodeError("kind", "Required value: the object has no kind")
    k = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if k is None:
        raise DecodeError("kind", f'no kind "{kind_name}" is served; known kinds: '
                          + ", ".join(KINDS))
    api_version = data.get("apiVersion", k.api_version)
    if api_version != k.api_version:
        raise DecodeError("apiVersion", f'no matches for kind "{k.kind}" in version '
                          f'"{api_version}" (kubemu serves {k.kind} as {k.api_version})')
    msg = k.message()
    _fill(msg, data, "")
    msg.apiVersion, msg.kind = k.api_version, k.kind
    return msg


def fill(msg: Message, data: Any, path: str = "") -> Message:
    """Decode `data` into an existing message of any type (a template, a sub-object)."""
    _fill(msg, data, path)
    return msg


def to_dict(msg: Message) -> dict[str, Any]:
    """Encode the set fields of a message as Kubernetes JSON (a plain dict)."""
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        out[field.name] = _encode(field, value)
    return out


def _encode(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        vfield = field.message_type.fields_by_name["value"]
        if vfield.message_type is not None:
            return {k: _encode_message(v) for k, v in value.items()}
        if vfield.type == FieldDescriptor.TYPE_BYTES:
            return {k: base64.b64encode(v).decode() for k, v in value.items()}
        return dict(value)
    if field.is_repeated:
        if field.message_type is not None:
            return [_encode_message(v) for v in value]
        return list(value)
    if field.message_type is not None:
        return _encode_message(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def _encode_message(msg: Message) -> Any:
    if msg.DESCRIPTOR.name == "IntOrString":
        return msg.strVal if msg.type == 1 else msg.intVal
    return to_dict(msg)


def int_or_string(value: int | str) -> pb.IntOrString:
    out = pb.IntOrString()
    _fill_int_or_string(out, value, "")
    return out


def ios_value(v: pb.IntOrString) -> int | str:
    return v.strVal if v.type == 1 else v.intVal


def field_value(msg: Message, path: str) -> str:
    """The value at a dotted field path (`spec.nodeName`), as a field selector compares it."""
    cur: Any = msg
    for part in path.split("."):
        if not isinstance(cur, Message) or part not in cur.DESCRIPTOR.fields_by_name:
            raise BadRequest(f'field label not supported: "{path}"')
        cur = getattr(cur, part)
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, Message):
        raise BadRequest(f'field label not supported: "{path}"')
    return str(cur)


def iter_kinds() -> Iterable[Kind]:
    return KINDS.values()
