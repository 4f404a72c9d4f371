"""kubectl's JSONPath templates (`-o jsonpath=...`) and custom columns, on plain JSON data.

The dialect is Kubernetes' (k8s.io/client-go/util/jsonpath), not Goessner's: text outside
`{...}` is printed as is; inside, `.field`, `..field` (recursive), `[n]`, `[a:b:c]`, `[*]`,
`['key']`, unions `[0,2]`, filters `[?(@.type=="InternalIP")]`, string literals `{"\n"}` and
`{range EXPR}...{end}`. Several results of one action print separated by spaces; maps and
lists print as compact JSON, scalars as text. As `kubectl get` does, a missing key prints
nothing rather than failing.

Custom columns (`NAME:.metadata.name,PORT:.spec.ports[*].port`) print `<none>` for a missing
value and render maps and lists with Go's `%v` (`map[app:web]`, `[80 443]`).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

_STOP = set(".[]()=!<>,}{ \t\n\"'")


class JSONPathError(ValueError):
    pass


@dataclasses.dataclass
class Path:
    steps: list[tuple]  # ("field", name) | ("recursive", name) | ("index", [sel]) | ("filter", ...) | ("wildcard",)
    root: str = ""  # "$" (document root) or "@"/"" (current value)


@dataclasses.dataclass
class Literal:
    value: Any


@dataclasses.dataclass
class Action:
    exprs: list[Path | Literal]


@dataclasses.dataclass
class Range:
    expr: Path
    body: list[Any]


# ------------------------------------------------------------------ parsing

class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.i = 0

    def error(self, msg: str) -> JSONPathError:
        return JSONPathError(f"{msg} at position {self.i}")

    def peek(self, n: int = 1) -> str:
        return self.text[self.i:self.i + n]

    def skip_ws(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self.i += 1

    def string(self) -> str:
        quote = self.text[self.i]
        j = self.i + 1
        buf = []
        while j < len(self.text) and self.text[j] != quote:
            if self.text[j] == "\\" and j + 1 < len(self.text):
                buf.append(self.text[j:j + 2])
                j += 2
                continue
            buf.append(self.text[j])
            j += 1
        if j >= len(self.text):
            raise self.error("unterminated quoted string")
        raw = "".join(buf)
        self.i = j + 1
        if quote == '"':
            try:
                return json.loads('"' + raw + '"', strict=False)
            except ValueError:
                raise self.error(f"invalid string literal \"{raw}\"") from None
        return raw.replace("\\'", "'")

    def name(self) -> str:
        buf = []
        while self.i < len(self.text):
            c = self.text[self.i]
            if c == "\\" and self.i + 1 < len(self.text):
                buf.append(self.text[self.i + 1])
                self.i += 2
                continue
            if c in _STOP:
                break
            buf.append(c)
            self.i += 1
        return "".join(buf)

    def path(self) -> Path:
        root = ""
        if self.peek() in ("$", "@"):
            root = self.peek()
            self.i += 1
        steps: list[tuple] = []
        while self.i < len(self.text):
            if self.peek(2) == "..":
                self.i += 2
                name = self.name()
                if not name:
                    raise self.error("expected a field name after '..'")
                steps.append(("recursive", name))
            elif self.peek() == ".":
                self.i += 1
                if self.peek() == "*":
                    self.i += 1
                    steps.append(("wildcard",))
                    continue
                name = self.name()
                if name:
                    steps.append(("field", name))
            elif self.peek() == "[":
                steps.append(self.bracket())
            else:
                break
        return Path(steps, root)

    def bracket(self) -> tuple:
        self.i += 1  # [
        self.skip_ws()
        if self.peek(2) == "?(":
            self.i += 2
            self.skip_ws()
            left = self.operand()
            self.skip_ws()
            op = ""
            for candidate in ("==", "!=", "<=", ">=", "<", ">"):
                if self.peek(len(candidate)) == candidate:
                    op = candidate
                    self.i += len(candidate)
                    break
            right = None
            if op:
                self.skip_ws()
                right = self.operand()
                self.skip_ws()
            if self.peek(2) != ")]":
                raise self.error("unterminated filter")
            self.i += 2
            return ("filter", left, op, right)
        selectors: list[Any] = []
        while True:
            self.skip_ws()
            c = self.peek()
            if c in ("'", '"'):
                selectors.append(self.string())
            elif c == "*":
                self.i += 1
                selectors.append("*")
            else:
                j = self.i
                while self.i < len(self.text) and self.text[self.i] not in ",]":
                    self.i += 1
                token = self.text[j:self.i].strip()
                try:
                    if ":" in token:
                        parts = [int(p) if p.strip() else None for p in token.split(":")]
                        if len(parts) > 3:
                            raise ValueError
                        selectors.append(slice(*parts))
                    else:
                        selectors.append(int(token))
                except ValueError:
                    raise self.error(f"invalid array index {token!r}") from None
            self.skip_ws()
            if self.peek() == ",":
                self.i += 1
                continue
            if self.peek() == "]":
                self.i += 1
                return ("index", selectors)
            raise self.error("unterminated array index")

    def operand(self) -> Path | Literal:
        c = self.peek()
        if c in ("'", '"'):
            return Literal(self.string())
        if c in ("@", "$", "."):
            return self.path()
        j = self.i
        while self.i < len(self.text) and self.text[self.i] not in " \t)=!<>":
            self.i += 1
        token = self.text[j:self.i]
        if token in ("true", "false"):
            return Literal(token == "true")
        try:
            return Literal(int(token))
        except ValueError:
            try:
                return Literal(float(token))
            except ValueError:
                raise self.error(f"unrecognized operand {token!r}") from None


def parse(template: str) -> list[Any]:
    """Parse a template into text, actions and ranges; errors read as kubectl's."""
    try:
        return _parse(template)
    except JSONPathError as e:
        raise JSONPathError(f"error parsing jsonpath {template}, {e}") from None


def _parse(template: str) -> list[Any]:
    items: list[Any] = []
    stack: list[list[Any]] = [items]
    ranges: list[Range] = []
    i = 0
    while i < len(template):
        j = template.find("{", i)
        if j < 0:
            stack[-1].append(template[i:])
            break
        if j > i:
            stack[-1].append(template[i:j])
        p = _Parser(template)
        p.i = j + 1
        p.skip_ws()
        if template.startswith("range", p.i) and p.i + 5 < len(template) and template[p.i + 5] in " \t":
            p.i += 5
            p.skip_ws()
            expr = p.path()
            rng = Range(expr, [])
            stack[-1].append(rng)
            stack.append(rng.body)
            ranges.append(rng)
        elif template.startswith("end", p.i) and template[p.i + 3:p.i + 4] in ("}", " "):
            p.i += 3
            if len(stack) == 1:
                raise JSONPathError("not in range, nothing to end")
            stack.pop()
        else:
            exprs: list[Path | Literal] = []
            while p.i < len(template) and p.peek() != "}":
                c = p.peek()
                if c in ("'", '"'):
                    exprs.append(Literal(p.string()))
                elif c in (".", "[", "$", "@"):
                    exprs.append(p.path())
                else:
                    raise p.error(f"unrecognized character in action: {c!r}")
                p.skip_ws()
            stack[-1].append(Action(exprs))
        p.skip_ws()
        if p.peek() != "}":
            raise JSONPathError("unclosed action")
        i = p.i + 1
    if len(stack) != 1:
        raise JSONPathError("unclosed range")
    return items


# ------------------------------------------------------------------ evaluation

_MISSING = object()


def _select(value: Any, sel: Any) -> list[Any]:
    if sel == "*":
        if isinstance(value, list):
            return list(value)
        if isinstance(value, dict):
            return [value[k] for k in sorted(value)]
        return []
    if isinstance(sel, str):
        return [value[sel]] if isinstance(value, dict) and sel in value else []
    if not isinstance(value, list):
        return []
    if isinstance(sel, slice):
        return value[sel]
    if -len(value) <= sel < len(value):
        return [value[sel]]
    return []


def _recursive(value: Any, name: str, out: list[Any]) -> None:
    if isinstance(value, dict):
        if name in value:
            out.append(value[name])
        for k in sorted(value):
            _recursive(value[k], name, out)
    elif isinstance(value, list):
        for v in value:
            _recursive(v, name, out)


def _compare(a: Any, op: str, b: Any) -> bool:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    try:
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
    except TypeError:
        return False


def evaluate(path: Path, current: Any, root: Any) -> list[Any]:
    values = [root if path.root == "$" else current]
    for step in path.steps:
        nxt: list[Any] = []
        kind = step[0]
        for v in values:
            if kind == "field":
                if isinstance(v, dict) and step[1] in v:
                    nxt.append(v[step[1]])
            elif kind == "wildcard":
                nxt += _select(v, "*")
            elif kind == "recursive":
                _recursive(v, step[1], nxt)
            elif kind == "index":
                for sel in step[1]:
                    nxt += _select(v, sel)
            elif kind == "filter":
                _, left, op, right = step
                for item in (v if isinstance(v, list) else []):
                    lv = _operand(left, item, root)
                    if not op:
                        if lv:
                            nxt.append(item)
                        continue
                    rv = _operand(right, item, root)
                    if any(_compare(x, op, y) for x in lv for y in rv):
                        nxt.append(item)
        values = nxt
    return values


def _operand(o: Path | Literal, item: Any, root: Any) -> list[Any]:
    if isinstance(o, Literal):
        return [o.value]
    return evaluate(o, item, root)


def text_of(value: Any) -> str:
    """How client-go's jsonpath prints one result."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False) \
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    return str(value)


def _execute(nodes: list[Any], current: Any, root: Any, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, Action):
            results: list[Any] = []
            for e in node.exprs:
                results += [e.value] if isinstance(e, Literal) else evaluate(e, current, root)
            out.append(" ".join(text_of(r) for r in results))
        elif isinstance(node, Range):
            for item in evaluate(node.expr, current, root):
                _execute(node.body, item, root, out)


def render(template: str | list[Any], data: Any) -> str:
    nodes = parse(template) if isinstance(template, str) else template
    out: list[str] = []
    _execute(nodes, data, data, out)
    return "".join(out)


# ------------------------------------------------------------------ custom columns

def relaxed(expr: str) -> str:
    """kubectl's RelaxedJSONPathExpression: `.a.b`, `a.b` and `{.a.b}` all mean `{.a.b}`."""
    e = expr.strip()
    if e.startswith("{") and e.endswith("}"):
        e = e[1:-1]
    if not e.startswith(".") and not e.startswith("["):
        e = "." + e
    return "{" + e + "}"


def parse_custom_columns(spec: str) -> list[tuple[str, list[Any]]]:
    cols = []
    for part in spec.split(","):
        header, sep, expr = part.partition(":")
        if not sep or not header:
            raise JSONPathError(f'unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>')
        cols.append((header, parse(relaxed(expr))))
    return cols


def go_value(value: Any) -> str:
    """Go's %v of decoded JSON."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    return str(value)


def custom_column_cells(cols: list[tuple[str, list[Any]]], data: Any) -> list[str]:
    cells = []
    for _, nodes in cols:
        results: list[Any] = []
        for node in nodes:
            if isinstance(node, Action):
                for e in node.exprs:
                    results += [e.value] if isinstance(e, Literal) else evaluate(e, data, data)
        cells.append(",".join(go_value(r) for r in results) if results else "<none>")
    return cells
