"""Routing: which Ingresses are ours, and which backend serves a (host, path).

Pure: `compile_routes(ingresses, services)` turns the Ingresses of our class and the Services
they name into an immutable `RouteTable`; `RouteTable.match(host, path)` answers one request.
The proxy swaps in a new table whenever an Ingress or a Service changes, so a request never
sees half an update.

Matching follows the Kubernetes Ingress documentation ("Path types", "Hostname wildcards",
"Multiple matches"):
  1. The host picks one set of rules: a rule whose host equals the request's Host header
     (port and trailing dot removed, case-folded); else a wildcard rule `*.foo.com`, which
     matches exactly one extra label (`bar.foo.com`, not `foo.com` nor `baz.bar.foo.com`);
     else the rules without a host, which match any host. Like ingress-nginx (one server block
     per host), a request for a host that has rules never falls through to the host-less
     rules when none of its paths match.
  2. Within those rules an Exact path equal to the request path wins; else the longest
     matching Prefix path, matched element-wise: `/foo` matches `/foo`, `/foo/` and `/foo/bar`
     but not `/foobar`, and a trailing slash on either side is ignored. An Exact and a Prefix
     path of the same length both matching is resolved in favour of Exact, as the docs say.
     ImplementationSpecific is matched as Prefix (kubemu's documented choice; ingress-nginx
     does the same unless regexes are enabled), an empty ImplementationSpecific path as `/`.
  3. No path matches: the `defaultBackend` of the Ingress that defines the host's rules, else
     the cluster-wide default backend (the `defaultBackend` of the oldest Ingress of our class
     that has one), else no backend: the proxy answers 404 from its built-in default backend.
When several Ingresses name the same host and path, the oldest Ingress wins (creation time,
then namespace/name), as ingress-nginx resolves such conflicts. Paths are compared as sent,
without the query string and without decoding percent-escapes.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

from kubemu.v1 import objects_pb2 as pb

CONTROLLER = "kubemu.io/ingress-controller"
CLASS_NAME = "kubemu"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

EXACT, PREFIX, IMPLEMENTATION_SPECIFIC = "Exact", "Prefix", "ImplementationSpecific"
_MISSING = object()


# ------------------------------------------------------------------ which Ingresses are ours


def our_classes(classes: Iterable[pb.IngressClass], controller: str = CONTROLLER) -> tuple[set[str], bool]:
    """The names of the IngressClasses handled by `controller`, and whether one is the default.

    Kubernetes marks the default class with an annotation; an Ingress without a class belongs
    to it (the DefaultIngressClass admission plugin would have filled in its name).
    """
    names, default = set(), False
    for c in classes:
        if c.spec.controller == controller:
            names.add(c.metadata.name)
            if c.metadata.annotations.get(DEFAULT_CLASS_ANNOTATION) == "true":
                default = True
    return names, default


def is_ours(ing: pb.Ingress, class_names: set[str], is_default: bool) -> bool:
    if ing.spec.HasField("ingressClassName"):
        return ing.spec.ingressClassName in class_names
    legacy = ing.metadata.annotations.get(LEGACY_CLASS_ANNOTATION)
    if legacy is not None:
        return legacy in class_names
    return is_default


def age_key(ing: pb.Ingress) -> tuple[str, str, str]:
    """Oldest first. RFC 3339 timestamps of one format sort as text."""
    return ing.metadata.creationTimestamp, ing.metadata.namespace, ing.metadata.name


# ------------------------------------------------------------------ backends


@dataclasses.dataclass(frozen=True)
class Backend:
    """Where a matched request goes: `address` (ClusterIP, port), or None and why not."""

    ingress: str  # "namespace/name" of the Ingress that named it
    service: str  # "namespace/name" of the Service, or "" for a resource backend
    port: int | str  # as the Ingress named it: a number or a port name
    address: tuple[str, int] | None
    reason: str = ""  # why address is None; the proxy answers 503 with it

    @property
    def label(self) -> str:
        return f"{self.service}:{self.port}" if self.service else self.reason


def resolve_backend(ing: pb.Ingress, backend: pb.IngressBackend,
                    services: Mapping[str, pb.Service]) -> Backend:
    """An Ingress backend against the Services in the Ingress's namespace."""
    ns, ing_key = ing.metadata.namespace, f"{ing.metadata.namespace}/{ing.metadata.name}"
    if not backend.HasField("service"):
        r = backend.resource
        return Backend(ing_key, "", "", None,
                       f"resource backends ({r.kind} {r.name}) are not supported by kubemu")
    ref = backend.service
    port: int | str = ref.port.name if ref.port.name else ref.port.number
    svc_key = f"{ns}/{ref.name}"
    svc = services.get(svc_key)
    if svc is None:
        return Backend(ing_key, svc_key, port, None, f'service "{svc_key}" not found')
    if svc.spec.type == "ExternalName":
        return Backend(ing_key, svc_key, port, None, f'service "{svc_key}" is of type ExternalName')
    ip = svc.spec.clusterIP
    if not ip or ip == "None":
        return Backend(ing_key, svc_key, port, None, f'service "{svc_key}" has no cluster IP')
    for p in svc.spec.ports:
        if (p.name == port) if isinstance(port, str) else (p.port == port):
            if p.protocol and p.protocol != "TCP":
                continue
            return Backend(ing_key, svc_key, port, (ip, p.port))
    return Backend(ing_key, svc_key, port, None, f'service "{svc_key}" has no TCP port {port!r}')


# ------------------------------------------------------------------ the table


@dataclasses.dataclass
class HostRoutes:
    """The paths of one host (or of the host-less rules)."""

    exact: dict[str, Backend] = dataclasses.field(default_factory=dict)
    prefix: dict[str, Backend] = dataclasses.field(default_factory=dict)  # normalized: no trailing '/'
    default: Backend | None = None  # defaultBackend of the Ingress that defines the host

    def match(self, path: str) -> Backend | None:
        found = self.exact.get(path)
        if found is not None:
            return found
        if self.prefix:
            # Walk the request path's element-wise prefixes, longest first: "/a/b/" -> "/a/b",
            # "/a", "" (root). One dict lookup per path element, whatever the rule count.
            p = path.rstrip("/")
            while True:
                found = self.prefix.get(p)
                if found is not None:
                    return found
                if not p:
                    break
                p = p[:p.rfind("/")]
        return self.default


def normalize_host(host: str) -> str:
    """A Host header as rules compare it: no port, no trailing dot, lower case."""
    host = host.strip()
    if host.startswith("["):  # IPv6 literal, [::1]:80
        end = host.find("]")
        host = host[: end + 1] if end > 0 else host
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host.rstrip(".").lower()


@dataclasses.dataclass
class RouteTable:
    hosts: dict[str, HostRoutes] = dataclasses.field(default_factory=dict)
    wildcards: dict[str, HostRoutes] = dataclasses.field(default_factory=dict)  # "foo.com" for "*.foo.com"
    any_host: HostRoutes | None = None
    default: Backend | None = None  # the cluster-wide default backend
    # Host header as sent -> its rules: the table is immutable once compiled, so this is safe
    _cache: dict[str, HostRoutes | None] = dataclasses.field(default_factory=dict, repr=False)

    def rules_for(self, host: str) -> HostRoutes | None:
        cache = self._cache
        found = cache.get(host, _MISSING)
        if found is _MISSING:
            found = self._rules_for(host)
            if len(cache) >= 4096:  # a client cycling through Host headers cannot grow it
                cache.clear()
            cache[host] = found
        return found  # type: ignore[return-value]

    def _rules_for(self, host: str) -> HostRoutes | None:
        h = normalize_host(host)
        found = self.hosts.get(h)
        if found is None and "." in h:
            first, _, rest = h.partition(".")
            if first:
                found = self.wildcards.get(rest)
        return found if found is not None else self.any_host

    def match(self, host: str, path: str) -> Backend | None:
        """The backend for a request, or None: 404 from the default backend."""
        rules = self.rules_for(host)
        if rules is not None:
            found = rules.match(path or "/")
            if found is not None:
                return found
        return self.default

    def backends(self) -> list[Backend]:
        out = []
        for group in (*self.hosts.values(), *self.wildcards.values(),
                      *([self.any_host] if self.any_host else [])):
            out += [*group.exact.values(), *group.prefix.values()]
            if group.default:
                out.append(group.default)
        if self.default:
            out.append(self.default)
        return out


def compile_routes(ingresses: Iterable[pb.Ingress], services: Mapping[str, pb.Service]) -> RouteTable:
    """The route table for `ingresses` (already filtered to our class), oldest first wins."""
    table = RouteTable()
    for ing in sorted(ingresses, key=age_key):
        if ing.metadata.HasField("deletionTimestamp"):
            continue
        own_default = (resolve_backend(ing, ing.spec.defaultBackend, services)
                       if ing.spec.HasField("defaultBackend") else None)
        if own_default is not None and table.default is None:
            table.default = own_default
        for rule in ing.spec.rules:
            host = rule.host.lower()
            if not host:
                if table.any_host is None:
                    table.any_host = HostRoutes()
                routes = table.any_host
            elif host.startswith("*."):
                routes = table.wildcards.setdefault(host[2:], HostRoutes())
            else:
                routes = table.hosts.setdefault(host, HostRoutes())
            if routes.default is None and own_default is not None:
                routes.default = own_default
            for p in rule.http.paths:
                backend = resolve_backend(ing, p.backend, services)
                if p.pathType == EXACT:
                    routes.exact.setdefault(p.path, backend)
                else:  # Prefix, and ImplementationSpecific treated as Prefix
                    routes.prefix.setdefault(p.path.rstrip("/"), backend)
    return table


def services_named(ingresses: Iterable[pb.Ingress]) -> set[str]:
    """`namespace/name` of every Service the Ingresses refer to (for change filtering)."""
    out = set()
    for ing in ingresses:
        ns = ing.metadata.namespace
        backends = [ing.spec.defaultBackend] if ing.spec.HasField("defaultBackend") else []
        backends += [p.backend for r in ing.spec.rules for p in r.http.paths]
        out.update(f"{ns}/{b.service.name}" for b in backends if b.HasField("service"))
    return out
