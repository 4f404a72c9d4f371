"""HTTP/1.1 message heads and framing, without I/O (RFC 9110/9112).

Rules of this file: functions take bytes or parsed heads and return parsed heads, bytes or
decisions; nothing here reads a socket. The proxy (proxy.py) does the reading and writing.

What a proxy must get right, and where it is decided here:
  - where a body ends (`request_framing`, `response_framing`): chunked beats Content-Length,
    conflicting or malformed lengths are an error (request smuggling), a response without
    either runs until the connection closes;
  - which headers are hop-by-hop and never forwarded (`HOP_BY_HOP` plus those named in
    Connection), and the X-Forwarded-* headers the backend sees (`upstream_request_head`);
  - whether each side's connection may be kept alive (`client_keep_alive`, `upstream_reusable`).
"""
from __future__ import annotations

import dataclasses
import re

MAX_HEAD = 64 * 1024
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization"})
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BODYLESS_STATUS = (204, 304)

Headers = list[tuple[bytes, bytes]]


class HttpError(Exception):
    """A message the proxy cannot forward; `status` is what to answer the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass
class Request:
    method: bytes
    target: bytes
    version: bytes  # b"HTTP/1.1"
    headers: Headers

    @property
    def path(self) -> str:
        """The path the rules match: origin-form target without the query; absolute-form's path."""
        t = self.target
        if t.startswith((b"http://", b"https://")):
            rest = t.split(b"://", 1)[1]
            slash = rest.find(b"/")
            t = rest[slash:] if slash >= 0 else b"/"
        for sep in (b"?", b"#"):
            t = t.split(sep, 1)[0]
        return t.decode("latin-1") or "/"

    @property
    def host(self) -> str:
        """Host header, or the authority of an absolute-form target (which takes precedence)."""
        t = self.target
        if t.startswith((b"http://", b"https://")):
            return t.split(b"://", 1)[1].split(b"/", 1)[0].decode("latin-1")
        return (get(self.headers, b"host") or b"").decode("latin-1")


@dataclasses.dataclass
class Response:
    version: bytes
    status: int
    reason: bytes
    headers: Headers


def get(headers: Headers, name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def get_all(headers: Headers, name: bytes) -> list[bytes]:
    return [v for k, v in headers if k.lower() == name]


def tokens(headers: Headers, name: bytes) -> set[bytes]:
    """The comma-separated tokens of every `name` header, lower case (Connection, TE, ...)."""
    out = set()
    for v in get_all(headers, name):
        out.update(t.strip().lower() for t in v.split(b",") if t.strip())
    return out


def _parse_headers(lines: list[bytes]) -> Headers:
    headers: Headers = []
    for line in lines:
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            raise HttpError(400, "obsolete line folding is not supported")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HttpError(400, f"malformed header line {line[:60]!r}")
        headers.append((name, value.strip(b" \t")))
    return headers


def parse_request_head(head: bytes) -> Request:
    """`head` ends with the blank line (b"\\r\\n\\r\\n")."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise HttpError(400, f"malformed request line {lines[0][:80]!r}")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(505, f"unsupported version {version[:20]!r}")
    return Request(method, target, version, _parse_headers(lines[1:]))


def parse_response_head(head: bytes) -> Response:
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise HttpError(502, f"malformed status line from the backend {lines[0][:80]!r}")
    return Response(version, int(code), reason, _parse_headers(lines[1:]))


# ------------------------------------------------------------------ framing

# ("length", n), ("chunked", 0), ("close", 0): read to EOF, ("none", 0)
Framing = tuple[str, int]


def _content_length(headers: Headers, status: int) -> int | None:
    values = get_all(headers, b"content-length")
    if not values:
        return None
    seen = {v.strip() for value in values for v in value.split(b",")}
    if len(seen) != 1:
        raise HttpError(status, "conflicting Content-Length headers")
    value = seen.pop()
    if not value.isdigit():
        raise HttpError(status, f"invalid Content-Length {value[:20]!r}")
    return int(value)


def _chunked(headers: Headers, status: int) -> bool:
    codings = [t.strip().lower() for v in get_all(headers, b"transfer-encoding") for t in v.split(b",") if t.strip()]
    if not codings:
        return False
    if codings[-1] != b"chunked":
        raise HttpError(status if status != 400 else 501, "unsupported Transfer-Encoding")
    return True


def request_framing(req: Request) -> Framing:
    if _chunked(req.headers, 400):
        if get(req.headers, b"content-length") is not None:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        return ("chunked", 0)
    n = _content_length(req.headers, 400)
    return ("length", n) if n else ("none", 0)


def response_framing(method: bytes, resp: Response) -> Framing:
    if method == b"HEAD" or resp.status < 200 or resp.status in _BODYLESS_STATUS:
        return ("none", 0)
    if _chunked(resp.headers, 502):
        return ("chunked", 0)
    n = _content_length(resp.headers, 502)
    if n is None:
        return ("close", 0)
    return ("length", n) if n else ("none", 0)


def parse_chunk_size(line: bytes) -> int:
    """The size of a chunk from its size line (extensions ignored)."""
    size = line.split(b";", 1)[0].strip()
    if not size or len(size) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in size):
        raise HttpError(400, f"malformed chunk size {line[:40]!r}")
    return int(size, 16)


# ------------------------------------------------------------------ keep-alive


def client_keep_alive(req: Request) -> bool:
    conn = tokens(req.headers, b"connection")
    if req.version == b"HTTP/1.0":
        return b"keep-alive" in conn
    return b"close" not in conn


def upstream_reusable(resp: Response, framing: Framing) -> bool:
    if framing[0] == "close":
        return False
    conn = tokens(resp.headers, b"connection")
    if resp.version == b"HTTP/1.0":
        return b"keep-alive" in conn
    return b"close" not in conn


# ------------------------------------------------------------------ heads the proxy writes


def _strip_hop_by_hop(headers: Headers) -> Headers:
    named = tokens(headers, b"connection")
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP and k.lower() not in named]


_FORWARDED = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-real-ip"})


def upstream_request_head(req: Request, *, client_ip: str, scheme: str, port: int,
                          framing: Framing, upgrade: bytes | None = None) -> bytes:
    """The request head sent to the backend: hop-by-hop headers dropped, X-Forwarded-* set.

    X-Forwarded-For gets the client's address appended to what the client sent (as Envoy and
    HAProxy do); Proto, Host and Port are set from this hop only, so a client cannot spoof them.
    """
    headers = [(k, v) for k, v in _strip_hop_by_hop(req.headers) if k.lower() not in _FORWARDED]
    xff = get_all(headers, b"x-forwarded-for")
    headers = [(k, v) for k, v in headers if k.lower() != b"x-forwarded-for"]
    chain = b", ".join([*xff, client_ip.encode()])
    host = req.host.encode("latin-1")
    if get(headers, b"host") is None and host:
        headers.insert(0, (b"Host", host))
    headers += [(b"X-Forwarded-For", chain), (b"X-Real-IP", client_ip.encode()),
                (b"X-Forwarded-Proto", scheme.encode()), (b"X-Forwarded-Host", host),
                (b"X-Forwarded-Port", str(port).encode())]
    if framing[0] == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
    if upgrade is not None:
        headers += [(b"Connection", b"Upgrade"), (b"Upgrade", upgrade)]
    target = req.target
    if target.startswith((b"http://", b"https://")):
        target = req.path.encode("latin-1") + (b"?" + target.split(b"?", 1)[1] if b"?" in target else b"")
    lines = [req.method + b" " + target + b" HTTP/1.1"]
    lines += [k + b": " + v for k, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def dechunk_for(client_version: bytes, framing: Framing) -> bool:
    """An HTTP/1.0 client cannot read chunked bodies: the proxy decodes them and closes after."""
    return client_version == b"HTTP/1.0" and framing[0] == "chunked"


def client_response_head(resp: Response, *, keep_alive: bool, framing: Framing,
                         client_version: bytes) -> bytes:
    """The response head sent to the client.

    A body that runs until the backend closes is passed on the same way (the client connection
    closes after it), so no re-framing is needed; neither for chunked bodies, except to an
    HTTP/1.0 client (see `dechunk_for`).
    """
    headers = _strip_hop_by_hop(resp.headers)
    dechunk = dechunk_for(client_version, framing)
    if framing[0] == "chunked" and not dechunk:
        headers.append((b"Transfer-Encoding", b"chunked"))
    if not keep_alive or framing[0] == "close" or dechunk:
        headers.append((b"Connection", b"close"))
    elif client_version == b"HTTP/1.0":
        headers.append((b"Connection", b"keep-alive"))
    lines = [b"HTTP/1.1 " + str(resp.status).encode() + b" " + resp.reason]
    lines += [k + b": " + v for k, v in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def interim_response_head(resp: Response) -> bytes:
    """A 1xx response (100 Continue, 103 Early Hints) passed on as the backend sent it."""
    lines = [b"HTTP/1.1 " + str(resp.status).encode() + b" " + resp.reason]
    lines += [k + b": " + v for k, v in _strip_hop_by_hop(resp.headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def upgrade_requested(req: Request) -> bytes | None:
    """The protocol a client asks to switch to (WebSocket), or None."""
    if b"upgrade" in tokens(req.headers, b"connection"):
        return get(req.headers, b"upgrade")
    return None


REASONS = {400: "Bad Request", 404: "Not Found", 413: "Payload Too Large", 431: "Request Header Fields Too Large",
           501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
           505: "HTTP Version Not Supported"}


def simple_response(status: int, body: str, *, keep_alive: bool, head_only: bool = False) -> bytes:
    """A response the proxy makes itself (default backend 404, 502, 503, ...)."""
    data = body.encode()
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(data)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode()
    return head if head_only else head + data
