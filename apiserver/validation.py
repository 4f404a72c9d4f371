"""Kubernetes' shared validation rules (k8s.io/apimachinery), as pure functions.

Two layers, as in apimachinery: `is_*` functions take a value and return the reasons it is
invalid as plain strings (Kubernetes' exact wording, regex text included), and `validate_*`
functions take a value and a field path and return `FieldError`s. Nothing here knows about a
kind; the registry strategies compose these.

Where a bad value is not a scalar, Kubernetes prints it with Go's `%#v`
(`map[string]string{"app":"web"}`); `GoValue` carries such a rendering so `FieldError` prints
what kubectl users are used to seeing.
"""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

from kubemu.errors import FieldError, forbidden, invalid, required, too_long
from kubemu.v1 import objects_pb2 as pb

# ------------------------------------------------------------------ Go rendering


class GoValue:
    """A bad value pre-rendered as Go's `%#v` would print it in a field error."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"GoValue({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoValue) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def go_quote(s: str) -> str:
    return json.dumps(s)


def go_strings(items: Sequence[str] | None, type_name: str = "[]string") -> GoValue:
    if not items:
        return GoValue(f"{type_name}(nil)")
    return GoValue(type_name + "{" + ", ".join(go_quote(i) for i in items) + "}")


def go_string_map(m: Mapping[str, str] | None) -> GoValue:
    """Go prints map keys sorted; an empty protobuf map reads as Go's nil map."""
    if not m:
        return GoValue("map[string]string(nil)")
    body = ", ".join(f"{go_quote(k)}:{go_quote(m[k])}" for k in sorted(m))
    return GoValue("map[string]string{" + body + "}")


def go_label_selector(sel: pb.LabelSelector) -> GoValue:
    if sel.matchExpressions:
        reqs = ", ".join(
            "v1.LabelSelectorRequirement{Key:%s, Operator:%s, Values:%s}"
            % (go_quote(r.key), go_quote(r.operator), go_strings(list(r.values)))
            for r in sel.matchExpressions)
        exprs = "[]v1.LabelSelectorRequirement{" + reqs + "}"
    else:
        exprs = "[]v1.LabelSelectorRequirement(nil)"
    return GoValue(f"v1.LabelSelector{{MatchLabels:{go_string_map(dict(sel.matchLabels))}, "
                   f"MatchExpressions:{exprs}}}")


class TooMany(FieldError):
    """Kubernetes' field.TooMany, which kubemu.errors.FieldError does not render."""

    def __str__(self) -> str:
        return f"{self.field}: Too many: {self.value}: {self.detail}"


def too_many(field: str, actual: int, maximum: int) -> FieldError:
    return TooMany("FieldValueTooMany", field, f"must have at most {maximum} items", actual)


def not_supported(field: str, value: Any, supported: Sequence[str]) -> FieldError:
    """field.NotSupported, keeping the caller's order (Kubernetes sorts some lists, not all)."""
    detail = "supported values: " + ", ".join(go_quote(s) for s in supported) if supported else ""
    return FieldError("FieldValueNotSupported", field, detail, value)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", field, "", value)


def internal(field: str, detail: str) -> FieldError:
    return FieldError("InternalError", field, detail)


# ------------------------------------------------------------------ message helpers

FIELD_IMMUTABLE = "field is immutable"
IS_NEGATIVE = "must be greater than or equal to 0"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Go's RegexError, byte for byte: each example is followed by ", ", and the examples
    are joined by " or ", hence Kubernetes' "(e.g. 'my-name',  or '123-abc', ..."."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def empty_error() -> str:
    return "must be non-empty"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


# ------------------------------------------------------------------ names

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_ERR = ("a lowercase RFC 1123 label must consist of lower case alphanumeric "
                     "characters or '-', and must start and end with an alphanumeric character")
DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                         "characters, '-' or '.', and must start and end with an alphanumeric "
                         "character")
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_ERR = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                     "start with an alphabetic character, and end with an alphanumeric character")
DNS1035_LABEL_MAX = 63

_DNS1123_LABEL = re.compile(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL = re.compile(DNS1035_LABEL_FMT)


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(max_len_error(DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL.fullmatch(value):
        if _DNS1123_SUBDOMAIN.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1035_LABEL_MAX:
        errs.append(max_len_error(DNS1035_LABEL_MAX))
    if not _DNS1035_LABEL.fullmatch(value):
        errs.append(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_ERR = ("must consist of alphanumeric characters, '-', '_' or '.', and must start "
                      "and end with an alphanumeric character")
QUALIFIED_NAME_MAX = 63
_QUALIFIED_NAME = re.compile(QUALIFIED_NAME_FMT)


def is_qualified_name(value: str) -> list[str]:
    """A label key: an optional DNS-subdomain prefix and '/', then a 63-character name."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return ["a qualified name " + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName",
                                                  "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part " + empty_error())
    elif len(name) > QUALIFIED_NAME_MAX:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX))
    if not _QUALIFIED_NAME.fullmatch(name):
        errs.append("name part " + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName",
                                               "my.name", "123-abc"))
    return errs


LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
LABEL_VALUE_ERR = ("a valid label must be an empty string or consist of alphanumeric characters, "
                   "'-', '_' or '.', and must start and end with an alphanumeric character")
LABEL_VALUE_MAX = 63
_LABEL_VALUE = re.compile(LABEL_VALUE_FMT)


def is_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > LABEL_VALUE_MAX:
        errs.append(max_len_error(LABEL_VALUE_MAX))
    if not _LABEL_VALUE.fullmatch(value):
        errs.append(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


# Name functions: Kubernetes' ValidateNameFunc. `prefix` is true for a generateName, whose
# trailing dash is masked because random characters will follow it.

NameFn = Callable[[str, bool], list[str]]


def _mask_trailing_dash(name: str) -> str:
    return name[:-2] + "a" if name.endswith("-") else name


def name_is_dns_subdomain(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool = False) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


# ------------------------------------------------------------------ numbers, ports, misc formats


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


_PORT_NAME_CHARSET = re.compile("[-a-z0-9]+")
_PORT_NAME_LETTER = re.compile("[a-z]")


def is_valid_port_name(port: str) -> list[str]:
    """An IANA_SVC_NAME (RFC 6335), lower case only."""
    errs = []
    if len(port) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARSET.fullmatch(port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


PERCENT_FMT = "[0-9]+%"
_PERCENT = re.compile(PERCENT_FMT)


def is_valid_percent(value: str) -> list[str]:
    if _PERCENT.fullmatch(value):
        return []
    return [regex_error("a valid percent string must be a numeric string followed by an ending '%'",
                        PERCENT_FMT, "1%", "93%")]


HTTP_HEADER_NAME_FMT = "[-A-Za-z0-9]+"
_HTTP_HEADER_NAME = re.compile(HTTP_HEADER_NAME_FMT)


def is_http_header_name(value: str) -> list[str]:
    if _HTTP_HEADER_NAME.fullmatch(value):
        return []
    return [regex_error("a valid HTTP header must consist of alphanumeric characters or '-'",
                        HTTP_HEADER_NAME_FMT, "X-Header-Name")]


ENV_VAR_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_VAR_NAME = re.compile(ENV_VAR_NAME_FMT)


def is_env_var_name(value: str) -> list[str]:
    errs = []
    if not _ENV_VAR_NAME.fullmatch(value):
        errs.append(regex_error("a valid environment variable name must consist of alphabetic "
                                "characters, digits, '_', '-', or '.', and must not start with a "
                                "digit", ENV_VAR_NAME_FMT, "my.env-name", "MY_ENV.NAME",
                                "MyEnvName1"))
    errs.extend(_has_chdir_prefix(value))
    return errs


CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_MAP_KEY = re.compile(CONFIG_MAP_KEY_FMT)


def is_config_map_key(value: str) -> list[str]:
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX))
    if not _CONFIG_MAP_KEY.fullmatch(value):
        errs.append(regex_error("a valid config key must consist of alphanumeric characters, '-', "
                                "'_' or '.'", CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME",
                                "key-name"))
    errs.extend(_has_chdir_prefix(value))
    return errs


def _has_chdir_prefix(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


# ------------------------------------------------------------------ IP addresses

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(value: str) -> IPAddress | None:
    """Go's ParseIPSloppy: IPv4 parts may carry leading zeros, and an IPv4-mapped IPv6
    address is the IPv4 address it maps. Zones and CIDR suffixes are not addresses."""
    if not value or "%" in value or "/" in value:
        return None
    if ":" not in value:
        parts = value.split(".")
        if len(parts) != 4 or not all(p.isascii() and p.isdigit() and int(p) <= 255 for p in parts):
            return None
        return ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))
    try:
        ip = ipaddress.IPv6Address(value)
    except ValueError:
        return None
    return ip.ipv4_mapped or ip


def parse_cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Go's ParseCIDRSloppy: host bits may be set; the network is what the mask selects."""
    addr, sep, bits = value.partition("/")
    if not sep or not bits.isascii() or not bits.isdigit():
        return None
    if ":" in addr:
        try:
            return ipaddress.IPv6Network(f"{addr}/{int(bits)}", strict=False)
        except ValueError:
            return None
    ip = parse_ip(addr)
    if ip is None or int(bits) > 32:
        return None
    return ipaddress.IPv4Network(f"{ip}/{int(bits)}", strict=False)


def ip_family(value: str) -> str:
    ip = parse_ip(value)
    if ip is None:
        return "unknown"
    return "IPv4" if ip.version == 4 else "IPv6"


def is_valid_ip(path: str, value: str) -> list[FieldError]:
    if parse_ip(value) is None:
        return [invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    return []


def is_valid_ipv4(path: str, value: str) -> list[FieldError]:
    ip = parse_ip(value)
    if ip is None or ip.version != 4:
        return [invalid(path, value, "must be a valid IPv4 address")]
    return []


def is_valid_ipv6(path: str, value: str) -> list[FieldError]:
    ip = parse_ip(value)
    if ip is None or ip.version != 6:
        return [invalid(path, value, "must be a valid IPv6 address")]
    return []


def is_valid_cidr(path: str, value: str) -> list[FieldError]:
    if parse_cidr(value) is None:
        return [invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
    return []


def validate_non_special_ip(value: str, path: str, *, allow_loopback: bool = True) -> list[FieldError]:
    """Kubernetes' ValidateNonSpecialIP, for endpoint and external IPs.

    Kubernetes also rejects loopback addresses here. kubemu's whole address plan (node IPs, pod
    IPs, the load-balancer pool) lives in 127.0.0.0/8, so loopback is allowed unless a caller
    asks for the Kubernetes rule with allow_loopback=False.
    """
    ip = parse_ip(value)
    if ip is None:
        return [invalid(path, value, "must be a valid IP address")]
    errs = []
    if ip.is_unspecified:
        errs.append(invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback and not allow_loopback:
        errs.append(invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip in (_LINK_LOCAL_V4 if ip.version == 4 else _LINK_LOCAL_V6):
        errs.append(invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if ip in (_LL_MULTICAST_V4 if ip.version == 4 else _LL_MULTICAST_V6):
        errs.append(invalid(path, value, "may not be in the link-local multicast range "
                                         "(224.0.0.0/24, ff02::/10)"))
    return errs


_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")
_LL_MULTICAST_V4 = ipaddress.ip_network("224.0.0.0/24")
_LL_MULTICAST_V6 = ipaddress.ip_network("ff02::/16")


def validate_fully_qualified_domain_name(path: str, name: str) -> list[FieldError]:
    if not name:
        return [required(path)]
    name = name.removesuffix(".")
    if errs := is_dns1123_subdomain(name):
        return [invalid(path, name, ",".join(errs))]
    labels = name.split(".")
    if len(labels) < 2:
        return [invalid(path, name, "should be a domain with at least two segments separated by dots")]
    for label in labels:
        if errs := is_dns1123_label(label):
            return [invalid(path, label, ",".join(errs))]
    return []


# ------------------------------------------------------------------ field-level wrappers


def validate_each(path: str, value: Any, msgs: Iterable[str]) -> list[FieldError]:
    return [invalid(path, value, m) for m in msgs]


def validate_dns1123_label(value: str, path: str) -> list[FieldError]:
    return validate_each(path, value, is_dns1123_label(value))


def validate_dns1123_subdomain(value: str, path: str) -> list[FieldError]:
    return validate_each(path, value, is_dns1123_subdomain(value))


def validate_qualified_name(value: str, path: str) -> list[FieldError]:
    return validate_each(path, value, is_qualified_name(value))


def validate_nonnegative(value: int, path: str) -> list[FieldError]:
    return [invalid(path, value, IS_NEGATIVE)] if value < 0 else []


def validate_port_num_or_name(port: pb.IntOrString, path: str) -> list[FieldError]:
    if port.type == 1:
        return validate_each(path, port.strVal, is_valid_port_name(port.strVal))
    return validate_each(path, port.intVal, is_valid_port_num(port.intVal))


def validate_immutable(new: Any, old: Any, path: str, shown: Any = None) -> list[FieldError]:
    if new != old:
        return [invalid(path, new if shown is None else shown, FIELD_IMMUTABLE)]
    return []


# ------------------------------------------------------------------ labels, annotations, selectors

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * (1 << 10)


def validate_labels(labels: Mapping[str, str], path: str) -> list[FieldError]:
    errs = []
    for k in sorted(labels):
        errs.extend(validate_each(path, k, is_qualified_name(k)))
        errs.extend(validate_each(path, labels[k], is_label_value(labels[k])))
    return errs


def validate_annotations(annotations: Mapping[str, str], path: str) -> list[FieldError]:
    """Annotation keys are qualified names compared case-insensitively; 256 KiB in total."""
    errs = []
    for k in sorted(annotations):
        errs.extend(validate_each(path, k, is_qualified_name(k.lower())))
    if sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items()) > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(sel: pb.LabelSelector, path: str) -> list[FieldError]:
    errs = validate_labels(dict(sel.matchLabels), f"{path}.matchLabels")
    for i, req in enumerate(sel.matchExpressions):
        rpath = f"{path}.matchExpressions[{i}]"
        if req.operator in ("In", "NotIn"):
            if not req.values:
                errs.append(required(f"{rpath}.values",
                                     "must be specified when `operator` is 'In' or 'NotIn'"))
        elif req.operator in ("Exists", "DoesNotExist"):
            if req.values:
                errs.append(forbidden(f"{rpath}.values",
                                      "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(f"{rpath}.operator", req.operator, "not a valid selector operator"))
        errs.extend(validate_qualified_name(req.key, f"{rpath}.key"))
    return errs


def selector_matches(sel: pb.LabelSelector, labels: Mapping[str, str]) -> bool:
    """LabelSelectorAsSelector(sel).Matches(labels); a selector with no terms matches all."""
    for k, v in sel.matchLabels.items():
        if labels.get(k) != v:
            return False
    for req in sel.matchExpressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def selector_is_empty(sel: pb.LabelSelector) -> bool:
    return not sel.matchLabels and not sel.matchExpressions


def map_selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# ------------------------------------------------------------------ ObjectMeta

STANDARD_FINALIZERS = frozenset({"kubernetes", "orphan", "foregroundDeletion"})


def _group_version(api_version: str) -> tuple[str, str] | None:
    """schema.ParseGroupVersion; None when it cannot be parsed."""
    if not api_version:
        return "", ""
    parts = api_version.split("/")
    if len(parts) == 1:
        return ("", "v1") if api_version == "v1" else ("", api_version)
    if len(parts) == 2:
        return parts[0], parts[1]
    return None


def _go_owner_reference(ref: pb.OwnerReference) -> str:
    def opt_bool(msg: pb.OwnerReference, f: str) -> str:
        return f"(*bool)({'true' if getattr(msg, f) else 'false'})" if msg.HasField(f) else "(*bool)(nil)"
    return (f"v1.OwnerReference{{APIVersion:{go_quote(ref.apiVersion)}, Kind:{go_quote(ref.kind)}, "
            f"Name:{go_quote(ref.name)}, UID:{go_quote(ref.uid)}, Controller:{opt_bool(ref, 'controller')}, "
            f"BlockOwnerDeletion:{opt_bool(ref, 'blockOwnerDeletion')}}}")


def validate_owner_references(refs: Sequence[pb.OwnerReference], path: str) -> list[FieldError]:
    """Field paths carry no index, exactly as Kubernetes reports them."""
    errs: list[FieldError] = []
    first_controller = ""
    for ref in refs:
        gv = _group_version(ref.apiVersion)
        group, version = gv if gv is not None else ("", "")
        if not version:
            errs.append(invalid(f"{path}.apiVersion", ref.apiVersion, "version must not be empty"))
        if not ref.kind:
            errs.append(invalid(f"{path}.kind", ref.kind, "must not be empty"))
        if not ref.name:
            errs.append(invalid(f"{path}.name", ref.name, "must not be empty"))
        if not ref.uid:
            errs.append(invalid(f"{path}.uid", ref.uid, "must not be empty"))
        if group == "" and version == "v1" and ref.kind == "Event":
            errs.append(invalid(path, GoValue(_go_owner_reference(ref)),
                                "/v1, Kind=Event is disallowed from being an owner"))
        if ref.controller:
            current = f"{ref.kind}/{ref.name}"
            if first_controller:
                shown = GoValue("[]v1.OwnerReference{" + ", ".join(_go_owner_reference(r) for r in refs) + "}")
                errs.append(invalid(path, shown, "Only one reference can have Controller set to true. "
                                                 f'Found "true" in references for {first_controller} and {current}'))
            else:
                first_controller = current
    return errs


def validate_finalizers(finalizers: Sequence[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, f in enumerate(finalizers):
        errs.extend(validate_each(path, f, is_qualified_name(f)))
        if "/" not in f and f not in STANDARD_FINALIZERS:
            errs.append(invalid(f"{path}[{i}]", f,
                                "name is neither a standard finalizer name nor is it fully qualified"))
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        errs.append(invalid(path, go_strings(list(finalizers)),
                            "finalizer orphan and foregroundDeletion cannot be both set"))
    return errs


def validate_object_meta(meta: pb.ObjectMeta, *, namespaced: bool, name_fn: NameFn,
                         path: str = "metadata") -> list[FieldError]:
    """Kubernetes' ValidateObjectMeta (core flavour, which also checks finalizer names)."""
    errs: list[FieldError] = []
    if meta.generateName:
        errs.extend(validate_each(f"{path}.generateName", meta.generateName,
                                  name_fn(meta.generateName, True)))
    if not meta.name:
        errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs.extend(validate_each(f"{path}.name", meta.name, name_fn(meta.name, False)))
    if namespaced:
        if not meta.namespace:
            errs.append(required(f"{path}.namespace"))
        else:
            errs.extend(validate_each(f"{path}.namespace", meta.namespace,
                                      name_is_dns_label(meta.namespace, False)))
    elif meta.namespace:
        errs.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    errs.extend(validate_nonnegative(meta.generation, f"{path}.generation"))
    errs.extend(validate_labels(dict(meta.labels), f"{path}.labels"))
    errs.extend(validate_annotations(dict(meta.annotations), f"{path}.annotations"))
    errs.extend(validate_owner_references(meta.ownerReferences, f"{path}.ownerReferences"))
    errs.extend(validate_finalizers(list(meta.finalizers), f"{path}.finalizers"))
    return errs


def validate_object_meta_update(new: pb.ObjectMeta, old: pb.ObjectMeta,
                                path: str = "metadata") -> list[FieldError]:
    """The immutable parts of ValidateObjectMetaUpdate; labels and friends are re-checked by
    the full validation that runs on every update, so they are not reported twice."""
    errs: list[FieldError] = []
    if new.generation < old.generation:
        errs.append(invalid(f"{path}.generation", new.generation, "must not be decremented"))
    for f in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
        errs.extend(validate_immutable(getattr(new, f), getattr(old, f), f"{path}.{f}"))
    if (new.HasField("deletionGracePeriodSeconds") != old.HasField("deletionGracePeriodSeconds")
            or new.deletionGracePeriodSeconds != old.deletionGracePeriodSeconds):
        errs.append(invalid(f"{path}.deletionGracePeriodSeconds",
                            new.deletionGracePeriodSeconds if new.HasField("deletionGracePeriodSeconds") else None,
                            FIELD_IMMUTABLE))
    return errs
