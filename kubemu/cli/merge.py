"""How `apply` and `patch` compute the object to write, as pure functions on JSON data.

`kubectl apply` is a three-way merge: the manifest applied last time (kept in the
`kubectl.kubernetes.io/last-applied-configuration` annotation), the manifest applied now, and
the live object. Fields the manifest sets win; fields the last manifest set and this one
dropped are removed; everything else on the live object stays, which is what keeps
server-set fields such as `spec.clusterIP` and an allocated `nodePort`. Lists of objects that
Kubernetes merges by key (Service ports by port+protocol, containers and env by name, ...)
merge item by item, so a port's allocated nodePort survives a re-apply; other lists are
replaced whole. The API server speaks JSON merge patch (RFC 7386), so the result is sent as
the merge patch from the live object to the merged one.

`kubectl patch --type strategic` uses the same merge keys; `--type json` is RFC 6902.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from google.protobuf.descriptor import Descriptor

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# (message type, list field) -> the fields that identify an item (Kubernetes' patchMergeKey,
# with listMapKeys where the key is compound)
MERGE_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("ServiceSpec", "ports"): ("port", "protocol"),
    ("PodSpec", "containers"): ("name",),
    ("PodSpec", "initContainers"): ("name",),
    ("Container", "ports"): ("containerPort", "protocol"),
    ("Container", "env"): ("name",),
    ("ObjectMeta", "ownerReferences"): ("uid",),
    ("PodStatus", "conditions"): ("type",),
    ("PodStatus", "podIPs"): ("ip",),
    ("NodeStatus", "conditions"): ("type",),
    ("NodeStatus", "addresses"): ("type",),
    ("DeploymentStatus", "conditions"): ("type",),
    ("ReplicaSetStatus", "conditions"): ("type",),
}
KEY_DEFAULTS = {"protocol": "TCP"}

# Set by the API server, never part of what a user applies.
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp",
                   "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink")


class PatchError(ValueError):
    pass


def _sub(desc: Descriptor | None, name: str) -> tuple[Descriptor | None, tuple[str, ...] | None]:
    """The message type of field `name` (None for maps and scalars) and its merge key."""
    if desc is None:
        return None, None
    field = desc.fields_by_name.get(name)
    if field is None or field.message_type is None or field.message_type.GetOptions().map_entry:
        return None, None
    return field.message_type, MERGE_KEYS.get((desc.name, name))


def _key(item: Any, keys: tuple[str, ...]) -> Any:
    if not isinstance(item, dict):
        return json.dumps(item, sort_keys=True)
    return tuple(item.get(k, KEY_DEFAULTS.get(k)) for k in keys)


# ------------------------------------------------------------------ apply

def applied_configuration(manifest: dict[str, Any]) -> dict[str, Any]:
    """What apply owns of a manifest: no status, no server-set metadata, no annotation loop."""
    m = copy.deepcopy(manifest)
    m.pop("status", None)
    meta = m.get("metadata")
    if isinstance(meta, dict):
        for f in SERVER_METADATA:
            meta.pop(f, None)
        ann = meta.get("annotations")
        if isinstance(ann, dict):
            ann.pop(LAST_APPLIED, None)
            if not ann:
                meta.pop("annotations")
    return m


def annotation_value(applied: dict[str, Any]) -> str:
    return json.dumps(applied, sort_keys=True, separators=(",", ":")) + "\n"


def with_annotation(applied: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(applied)
    out.setdefault("metadata", {}).setdefault("annotations", {})[LAST_APPLIED] = annotation_value(applied)
    return out


def last_applied(live: dict[str, Any]) -> dict[str, Any] | None:
    raw = live.get("metadata", {}).get("annotations", {}).get(LAST_APPLIED)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def three_way(original: Any, modified: dict[str, Any], current: dict[str, Any],
              desc: Descriptor | None) -> dict[str, Any]:
    """The live object after applying `modified` over it, given the last applied `original`."""
    original = original if isinstance(original, dict) else {}
    result = copy.deepcopy(current)
    for k, mv in modified.items():
        cv = current.get(k)
        sub, keys = _sub(desc, k)
        if isinstance(mv, dict) and isinstance(cv, dict):
            result[k] = three_way(original.get(k), mv, cv, sub)
        elif isinstance(mv, list) and isinstance(cv, list) and keys:
            ov = original.get(k)
            result[k] = _three_way_list(ov if isinstance(ov, list) else [], mv, cv, keys, sub)
        else:
            result[k] = copy.deepcopy(mv)
    for k in original:
        if k not in modified:
            result.pop(k, None)
    return result


def _three_way_list(original: list, modified: list, current: list, keys: tuple[str, ...],
                    desc: Descriptor | None) -> list:
    current_by = {_key(x, keys): x for x in current}
    original_by = {_key(x, keys): x for x in original}
    out = []
    for item in modified:
        k = _key(item, keys)
        if isinstance(item, dict) and isinstance(current_by.get(k), dict):
            out.append(three_way(original_by.get(k), item, current_by[k], desc))
        else:
            out.append(copy.deepcopy(item))
    taken = {_key(x, keys) for x in modified}
    # items someone else added (not in this manifest, nor in the last one) stay
    out += [copy.deepcopy(x) for x in current
            if _key(x, keys) not in taken and _key(x, keys) not in original_by]
    return out


def merge_patch(current: Any, desired: Any) -> Any:
    """The RFC 7386 merge patch that turns `current` into `desired` ({} when equal)."""
    if not isinstance(current, dict) or not isinstance(desired, dict):
        return copy.deepcopy(desired)
    patch: dict[str, Any] = {}
    for k, v in desired.items():
        if k not in current:
            patch[k] = copy.deepcopy(v)
        elif current[k] != v:
            patch[k] = merge_patch(current[k], v) if isinstance(v, dict) and isinstance(current[k], dict) \
                else copy.deepcopy(v)
    for k in current:
        if k not in desired:
            patch[k] = None
    return patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 applied client-side (for previews and tests)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = apply_merge_patch(result.get(k), v)
    return result


# ------------------------------------------------------------------ strategic merge patch

def strategic(current: dict[str, Any], patch: dict[str, Any], desc: Descriptor | None) -> dict[str, Any]:
    """A strategic merge patch: a merge patch whose keyed lists merge item by item.

    Supports the directives users write by hand: `$patch: replace` on an object and
    `$patch: delete` on a keyed list item.
    """
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(current)
    for k, pv in patch.items():
        if k.startswith("$"):
            continue
        if pv is None:
            result.pop(k, None)
            continue
        sub, keys = _sub(desc, k)
        cv = result.get(k)
        if isinstance(pv, dict) and isinstance(cv, dict):
            result[k] = strategic(cv, pv, sub)
        elif isinstance(pv, list) and isinstance(cv, list) and keys:
            result[k] = _strategic_list(cv, pv, keys, sub)
        else:
            result[k] = _strip_directives(pv)
    return result


def _strategic_list(current: list, patch: list, keys: tuple[str, ...], desc: Descriptor | None) -> list:
    out = copy.deepcopy(current)
    for item in patch:
        k = _key(item, keys)
        idx = next((i for i, x in enumerate(out) if _key(x, keys) == k), None)
        if isinstance(item, dict) and item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
        elif idx is not None and isinstance(item, dict) and isinstance(out[idx], dict):
            out[idx] = strategic(out[idx], item, desc)
        else:
            out.append(_strip_directives(item))
    return out


def _strip_directives(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_directives(x) for k, x in v.items() if not k.startswith("$")}
    if isinstance(v, list):
        return [_strip_directives(x) for x in v]
    return copy.deepcopy(v)


# ------------------------------------------------------------------ JSON patch (RFC 6902)

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f'invalid JSON pointer "{path}": must start with "/"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    cur = doc
    for p in parts:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise PatchError(f"doc is missing path: \"{path}\"")
    return cur


def _index(container: list, token: str, path: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or int(token) > len(container) - (0 if allow_end else 1):
        raise PatchError(f'index out of range in path "{path}"')
    return int(token)


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation: {json.dumps(op)}")
        kind, path = op["op"], op["path"]
        parts = _pointer(path)
        if kind == "test":
            if _walk(doc, parts, path) != op.get("value"):
                raise PatchError(f'testing value "{path}" failed')
            continue
        if kind in ("move", "copy"):
            src = op.get("from", "")
            value = copy.deepcopy(_walk(doc, _pointer(src), src))
            if kind == "move":
                doc = _remove(doc, _pointer(src), src)
            doc = _add(doc, parts, path, value)
        elif kind == "add":
            doc = _add(doc, parts, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, parts, path)
        elif kind == "replace":
            doc = _remove(doc, parts, path)
            doc = _add(doc, parts, path, copy.deepcopy(op.get("value")))
        else:
            raise PatchError(f'unexpected JSON patch operation "{kind}"')
    return doc


def _add(doc: Any, parts: list[str], path: str, value: Any) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    if isinstance(parent, dict):
        parent[parts[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, parts[-1], path, True), value)
    else:
        raise PatchError(f"doc is missing path: \"{path}\"")
    return doc


def _remove(doc: Any, parts: list[str], path: str) -> Any:
    if not parts:
        return None
    parent = _walk(doc, parts[:-1], path)
    if isinstance(parent, dict) and parts[-1] in parent:
        del parent[parts[-1]]
    elif isinstance(parent, list):
        parent.pop(_index(parent, parts[-1], path, False))
    else:
        raise PatchError(f"doc is missing path: \"{path}\"")
    return doc
