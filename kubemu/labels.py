"""Label and field selectors, with Kubernetes' string syntax.

`parse("app=web,tier!=db,env in (a,b),!canary,track")` gives requirements that `matches`
evaluates against a label map. `from_label_selector` turns a LabelSelector message
(matchLabels + matchExpressions) into the same form, so one matcher serves both. An empty
selector matches everything; a LabelSelector that is unset matches nothing, as in Kubernetes.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Mapping

from kubemu.errors import BadRequest

_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        # "!=" and "notin" match objects without the key, as Kubernetes does
        return labels.get(self.key) not in self.values

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return "!" + self.key
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


Selector = tuple[Requirement, ...]


def parse(text: str) -> Selector:
    """Parse a label selector string; a syntax error names the offending position."""
    tokens = [t for t in _TOKEN.findall(text or "")]
    if "".join(tokens).replace(" ", "") != (text or "").replace(" ", ""):
        raise BadRequest(f"unable to parse requirement: invalid label selector {text!r}")
    out: list[Requirement] = []
    i = 0

    def err(msg: str) -> BadRequest:
        return BadRequest(f"unable to parse requirement: {msg} in selector {text!r}")

    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            if i + 1 >= len(tokens) or tokens[i + 1] in ("=", "!=", "==", "(", ")", ","):
                raise err("expected a key after '!'")
            out.append(Requirement(tokens[i + 1], "!"))
            i += 2
        elif tok in ("=", "!=", "==", "(", ")", ","):
            raise err(f"unexpected {tok!r}")
        else:
            key = tok
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ","
            if nxt == ",":
                out.append(Requirement(key, "exists"))
                i += 1
            elif nxt in ("=", "==", "!="):
                if i + 2 >= len(tokens) or tokens[i + 2] in ("=", "!=", "==", "(", ")", ","):
                    value, i = "", i + 2
                else:
                    value, i = tokens[i + 2], i + 3
                out.append(Requirement(key, "!=" if nxt == "!=" else "=", (value,)))
            elif nxt in ("in", "notin"):
                if i + 2 >= len(tokens) or tokens[i + 2] != "(":
                    raise err(f"expected '(' after {nxt}")
                j, values = i + 3, []
                while j < len(tokens) and tokens[j] != ")":
                    if tokens[j] != ",":
                        values.append(tokens[j])
                    j += 1
                if j >= len(tokens):
                    raise err("missing ')'")
                if not values:
                    raise err(f"{nxt} needs at least one value")
                out.append(Requirement(key, nxt, tuple(values)))
                i = j + 1
            else:
                raise err(f"unexpected {nxt!r} after {key!r}")
        if i < len(tokens):
            if tokens[i] != ",":
                raise err(f"expected ',' but found {tokens[i]!r}")
            i += 1
            if i >= len(tokens):
                raise err("trailing ','")
    return tuple(out)


def matches(selector: Iterable[Requirement], labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels) for r in selector)


def from_label_selector(sel) -> Selector:
    """A LabelSelector message (matchLabels, matchExpressions) as requirements."""
    reqs = [Requirement(k, "=", (v,)) for k, v in sorted(sel.matchLabels.items())]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in sel.matchExpressions:
        if expr.operator not in ops:
            raise BadRequest(f"{expr.operator!r} is not a valid label selector operator")
        reqs.append(Requirement(expr.key, ops[expr.operator], tuple(expr.values)))
    return tuple(reqs)


def from_map(selector: Mapping[str, str]) -> Selector:
    """A Service's spec.selector (equality only)."""
    return tuple(Requirement(k, "=", (v,)) for k, v in sorted(selector.items()))


def to_string(selector: Iterable[Requirement]) -> str:
    return ",".join(str(r) for r in selector)


@dataclasses.dataclass(frozen=True)
class FieldRequirement:
    path: str
    op: str  # "=" or "!="
    value: str


def parse_fields(text: str) -> tuple[FieldRequirement, ...]:
    """`spec.nodeName=node-1,metadata.name!=x`: field selectors support = == != only."""
    out = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        m = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*)", part)
        if not m:
            raise BadRequest(f"invalid field selector: {part!r}")
        out.append(FieldRequirement(m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
    return tuple(out)
