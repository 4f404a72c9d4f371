"""Reading `-f FILE|DIR|-` into objects, with errors that say where the mistake is.

A source is a file, every `.yaml`/`.yml`/`.json` file of a directory (`-R` to descend), or
stdin (named `STDIN` in messages, as kubectl does). A source holds one JSON object, several
concatenated JSON objects, or a multi-document YAML stream; a `kind: List` contributes its
items. YAML is parsed by libyaml (the parser behind go-yaml, so syntax errors read the same)
with two changes that match kubectl's YAML-to-JSON step: timestamps stay strings, and a key
given twice in one mapping is an error instead of a silent overwrite.

Every problem is a ManifestError naming the source, the line (syntax) or the document and
field (schema), never a traceback.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Iterator

import yaml
from google.protobuf.message import Message

from kubemu import objects

EXTENSIONS = (".yaml", ".yml", ".json")
STDIN = "STDIN"


class ManifestError(Exception):
    """A user mistake in a manifest or a path; printed as `error: <message>`."""


@dataclasses.dataclass
class Manifest:
    source: str  # as kubectl names it in messages: the path given, or STDIN
    document: int  # 1-based position in its source
    data: dict[str, Any]
    obj: Message

    @property
    def kind(self) -> objects.Kind:
        return objects.kind_of(self.obj)


# ------------------------------------------------------------------ YAML loader

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    pass


# Timestamps stay strings: go-yaml feeds JSON, and JSON has no time type.
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class DuplicateKey(yaml.MarkedYAMLError):
    pass


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise DuplicateKey(problem=f"invalid map key: {key!r}", problem_mark=key_node.start_mark) from None
        if key in seen:
            raise DuplicateKey(problem=f'mapping key "{key}" already defined at line {seen[key]}',
                               problem_mark=key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_error(e: yaml.YAMLError) -> str:
    """go-yaml's wording: `yaml: line 7: mapping values are not allowed in this context`."""
    if not isinstance(e, yaml.MarkedYAMLError):
        return f"yaml: {e}"
    # A missing ':' is found on the line after the culprit; the scanner's context (the key
    # it was reading) points at the line to fix.
    simple_key = e.context == "while scanning a simple key" and e.context_mark is not None
    mark = e.context_mark if simple_key else (e.problem_mark or e.context_mark)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"yaml: {where}{e.problem or e.context or 'invalid YAML'}"


def load_yaml(text: str) -> Any:
    """One YAML (or JSON) value, parsed as manifests are; raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)


def _yaml_documents(source: str, text: str) -> Iterator[Any]:
    try:
        yield from yaml.load_all(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise ManifestError(f"error parsing {source}: error converting YAML to JSON: "
                            f"{yaml_error(e)}") from None


def _json_documents(source: str, text: str) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return
        try:
            doc, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise ManifestError(f"error parsing {source}: line {e.lineno}, column {e.colno}: "
                                f"{e.msg}") from None
        yield doc


def documents(source: str, text: str) -> list[tuple[int, Any]]:
    """(document number, decoded data) for every non-empty document of a source."""
    docs = _json_documents(source, text) if text.lstrip().startswith("{") \
        else _yaml_documents(source, text)
    return [(n, d) for n, d in enumerate(docs, 1) if d is not None]


# ------------------------------------------------------------------ sources

def read_sources(paths: list[str], recursive: bool = False) -> list[tuple[str, str]]:
    """(name, text) of every source the `-f` arguments denote, in order."""
    out: list[tuple[str, str]] = []
    for path in paths:
        if path == "-":
            out.append((STDIN, sys.stdin.read()))
            continue
        if path.startswith(("http://", "https://")):
            raise ManifestError(f'unable to read URL "{path}": kubemu reads local files only')
        if not os.path.exists(path):
            raise ManifestError(f'the path "{path}" does not exist')
        if os.path.isdir(path):
            found = []
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                found += [os.path.join(dirpath, f) for f in sorted(filenames)
                          if f.endswith(EXTENSIONS)]
                if not recursive:
                    break
            for f in found:
                out.append((f, _read(f)))
        else:
            out.append((path, _read(path)))
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"error reading {path}: {e}") from None


# ------------------------------------------------------------------ decoding

def _schema_error(source: str, document: int, data: dict[str, Any], e: objects.DecodeError) -> ManifestError:
    kind = data.get("kind") if isinstance(data.get("kind"), str) else ""
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    if e.field in ("kind", "apiVersion") and "no " in e.detail:
        return ManifestError(
            f'resource mapping not found for name: "{meta.get("name", "")}" namespace: '
            f'"{meta.get("namespace", "")}" from "{source}": {e.detail}')
    where = f'"{source}" (document {document})'
    if e.field:
        path, detail = e.field, e.detail
    elif e.detail.startswith('unknown field "'):
        full = e.detail[len('unknown field "'):-1]
        parent, _, leaf = full.rpartition(".")
        if "[" in leaf and not parent:
            parent, leaf = "", full
        path, detail = parent, f'unknown field "{leaf}"'
    else:
        path, detail = "", e.detail
    location = ".".join(p for p in (kind, path) if p)
    return ManifestError(f"error validating {where}: error validating data: "
                         f"ValidationError({location}): {detail}")


def decode(source: str, document: int, data: Any) -> list[Manifest]:
    """One document to manifests; `kind: List` yields its items."""
    if not isinstance(data, dict):
        raise ManifestError(f'error validating "{source}" (document {document}): '
                            f"expected an object, got {type(data).__name__}")
    if data.get("kind") == "List" or (isinstance(data.get("kind"), str) and data["kind"].endswith("List")
                                      and isinstance(data.get("items"), list)):
        out = []
        for item in data.get("items") or []:
            out += decode(source, document, item)
        return out
    try:
        msg = objects.from_dict(data)
    except objects.DecodeError as e:
        raise _schema_error(source, document, data, e) from None
    return [Manifest(source, document, data, msg)]


def load(paths: list[str], recursive: bool = False) -> list[Manifest]:
    """Every object the `-f` arguments hold, in order; the first mistake raises."""
    out: list[Manifest] = []
    for source, text in read_sources(paths, recursive):
        for n, data in documents(source, text):
            out += decode(source, n, data)
    return out
