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

import re

MAX_HEAD = 64 * 1024
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization"})
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BODYLESS_STATUS = (204, 304)

# (name as sent, name in lower case, value): the lower-case name is computed once per header,
# since every decision below looks headers up by it (this is the proxy's hot path).
Header = tuple[bytes, bytes, bytes]


class HttpError(Exception):
    """A message the proxy cannot forward; `status` is what to answer the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Message:
    """A parsed head: the headers in order, and an index of their values by lower-case name."""

    __slots__ = ("headers", "index")

    def __init__(self, headers: list[Header], index: dict[bytes, list[bytes]] | None = None):
        self.headers = headers
        if index is None:
            index = {}
            for _, lname, value in headers:
                found = index.get(lname)
                if found is None:
                    index[lname] = [value]
                else:
                    found.append(value)
        self.index = index

    def get(self, lname: bytes) -> bytes | None:
        found = self.index.get(lname)
        return found[0] if found else None

    def get_all(self, lname: bytes) -> list[bytes]:
        return self.index.get(lname, [])

    def tokens(self, lname: bytes) -> set[bytes]:
        """The comma-separated tokens of every `lname` header, lower case (Connection, TE, ...)."""
        found = self.index.get(lname)
        if not found:
            return set()
        out = set()
        for v in found:
            for t in v.split(b","):
                t = t.strip()
                if t:
                    out.add(t.lower())
        return out

    def drop(self, lname: bytes) -> None:
        if lname in self.index:
            del self.index[lname]
            self.headers = [h for h in self.headers if h[1] != lname]


class Request(Message):
    __slots__ = ("method", "target", "version", "path", "host")

    def __init__(self, method: bytes, target: bytes, version: bytes, headers: list[Header],
                 index: dict[bytes, list[bytes]] | None = None):
        Message.__init__(self, headers, index)
        self.method = method
        self.target = target
        self.version = version  # b"HTTP/1.1"
        # The authority of an absolute-form target takes precedence over Host (RFC 9112 3.2.2).
        t = target
        if t.startswith((b"http://", b"https://")):
            rest = t.split(b"://", 1)[1]
            slash = rest.find(b"/")
            self.host = (rest[:slash] if slash >= 0 else rest).decode("latin-1")
            t = rest[slash:] if slash >= 0 else b"/"
        else:
            self.host = (self.get(b"host") or b"").decode("latin-1")
        q = t.find(b"?")
        if q >= 0:
            t = t[:q]
        h = t.find(b"#")
        if h >= 0:
            t = t[:h]
        # the path the rules match: without query and fragment, as sent (no percent-decoding)
        self.path = t.decode("latin-1") or "/"


class Response(Message):
    __slots__ = ("version", "status", "reason")

    def __init__(self, version: bytes, status: int, reason: bytes, headers: list[Header],
                 index: dict[bytes, list[bytes]] | None = None):
        Message.__init__(self, headers, index)
        self.version = version
        self.status = status
        self.reason = reason


def _parse_headers(lines: list[bytes], status: int) -> tuple[list[Header], dict[bytes, list[bytes]]]:
    """Header lines -> (headers, index). A name must be a token right up to the colon: a space
    before it or a folded line is refused, never guessed at (the classic request smuggling)."""
    headers: list[Header] = []
    index: dict[bytes, list[bytes]] = {}
    token = _TOKEN.fullmatch
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not token(name):
            if line[:1] in (b" ", b"\t"):
                raise HttpError(status, "obsolete line folding is not supported")
            raise HttpError(status, f"malformed header line {line[:60]!r}")
        lname = name.lower()
        value = value.strip(b" \t")
        headers.append((name, lname, value))
        found = index.get(lname)
        if found is None:
            index[lname] = [value]
        else:
            found.append(value)
    return headers, index


def parse_request_head(head: bytes) -> Request:
    """`head` ends with the blank line (b"\\r\\n\\r\\n")."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise HttpError(400, f"malformed request line {lines[0][:80]!r}")
    method, target, version = parts
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        raise HttpError(505, f"unsupported version {version[:20]!r}")
    return Request(method, target, version, *_parse_headers(lines[1:], 400))


def parse_response_head(head: bytes) -> Response:
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise HttpError(502, f"malformed status line from the backend {lines[0][:80]!r}")
    return Response(version, int(code), reason, *_parse_headers(lines[1:], 502))


# ------------------------------------------------------------------ framing

# ("length", n), ("chunked", 0), ("close", 0): read to EOF, ("none", 0)
Framing = tuple[str, int]


def _content_length(msg: Message, status: int) -> int | None:
    values = msg.index.get(b"content-length")
    if not values:
        return None
    if len(values) == 1 and values[0].isdigit():
        return int(values[0])
    seen = {v.strip() for value in values for v in value.split(b",")}
    if len(seen) != 1:
        raise HttpError(status, "conflicting Content-Length headers")
    value = seen.pop()
    if not value.isdigit():
        raise HttpError(status, f"invalid Content-Length {value[:20]!r}")
    return int(value)


def _chunked(msg: Message, status: int) -> bool:
    values = msg.index.get(b"transfer-encoding")
    if not values:
        return False
    codings = [t.strip().lower() for v in values for t in v.split(b",") if t.strip()]
    if not codings:
        return False
    if codings[-1] != b"chunked":
        raise HttpError(status if status != 400 else 501, "unsupported Transfer-Encoding")
    return True


def request_framing(req: Request) -> Framing:
    if _chunked(req, 400):
        if b"content-length" in req.index:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        return ("chunked", 0)
    n = _content_length(req, 400)
    return ("length", n) if n else ("none", 0)


def response_framing(method: bytes, resp: Response) -> Framing:
    if method == b"HEAD" or resp.status < 200 or resp.status in _BODYLESS_STATUS:
        return ("none", 0)
    if _chunked(resp, 502):
        return ("chunked", 0)
    n = _content_length(resp, 502)
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
    conn = req.tokens(b"connection")
    if req.version == b"HTTP/1.0":
        return b"keep-alive" in conn
    return b"close" not in conn


def upstream_reusable(resp: Response, framing: Framing) -> bool:
    if framing[0] == "close":
        return False
    conn = resp.tokens(b"connection")
    if resp.version == b"HTTP/1.0":
        return b"keep-alive" in conn
    return b"close" not in conn


# ------------------------------------------------------------------ heads the proxy writes


_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
                        b"x-real-ip"})
_NOT_FORWARDED = HOP_BY_HOP | _FORWARDED


def _end_to_end(msg: Message, drop: frozenset[bytes]) -> list[bytes]:
    """`name: value` lines of the headers that go on to the next hop."""
    named = msg.tokens(b"connection") if b"connection" in msg.index else ()
    return [name + b": " + value for name, lname, value in msg.headers
            if lname not in drop and lname not in named]


def upstream_request_head(req: Request, *, client_ip: str, scheme: str, port: int,
                          framing: Framing, upgrade: bytes | None = None) -> bytes:
    """The request head sent to the backend: hop-by-hop headers dropped, X-Forwarded-* set.

    X-Forwarded-For gets the client's address appended to what the client sent (as Envoy and
    HAProxy do); Proto, Host and Port are set from this hop only, so a client cannot spoof them.
    """
    lines = _end_to_end(req, _NOT_FORWARDED)
    client = client_ip.encode()
    xff = req.index.get(b"x-forwarded-for")
    host = req.host.encode("latin-1")
    if b"host" not in req.index and host:
        lines.insert(0, b"Host: " + host)
    lines += [b"X-Forwarded-For: " + (b", ".join([*xff, client]) if xff else client),
              b"X-Real-IP: " + client, b"X-Forwarded-Proto: " + scheme.encode(),
              b"X-Forwarded-Host: " + host, b"X-Forwarded-Port: " + str(port).encode()]
    if framing[0] == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
    if upgrade is not None:
        lines += [b"Connection: Upgrade", b"Upgrade: " + upgrade]
    target = req.target
    if target.startswith((b"http://", b"https://")):
        target = req.path.encode("latin-1") + (b"?" + target.split(b"?", 1)[1] if b"?" in target else b"")
    return req.method + b" " + target + b" HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"


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
    lines = _end_to_end(resp, HOP_BY_HOP)
    dechunk = dechunk_for(client_version, framing)
    if framing[0] == "chunked" and not dechunk:
        lines.append(b"Transfer-Encoding: chunked")
    if not keep_alive or framing[0] == "close" or dechunk:
        lines.append(b"Connection: close")
    elif client_version == b"HTTP/1.0":
        lines.append(b"Connection: keep-alive")
    return _status_line(resp) + b"\r\n".join(lines) + b"\r\n\r\n"


def _status_line(resp: Response) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)


def interim_response_head(resp: Response) -> bytes:
    """A 1xx response (100 Continue, 103 Early Hints) passed on as the backend sent it."""
    return _status_line(resp) + b"".join(line + b"\r\n" for line in _end_to_end(resp, HOP_BY_HOP)) + b"\r\n"


def switching_protocols_head(resp: Response) -> bytes:
    """101: passed on whole, Connection and Upgrade included (they are the point of it)."""
    return _status_line(resp) + b"".join(n + b": " + v + b"\r\n" for n, _, v in resp.headers) + b"\r\n"


def upgrade_requested(req: Request) -> bytes | None:
    """The protocol a client asks to switch to (WebSocket), or None."""
    if b"connection" in req.index and b"upgrade" in req.tokens(b"connection"):
        return req.get(b"upgrade")
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
