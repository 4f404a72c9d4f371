"""HTTP/1.1 heads and framing (kubemu.ingress.http1), without sockets."""
from __future__ import annotations

import pytest

from kubemu.ingress import http1
from kubemu.ingress.http1 import HttpError


def req(head: str) -> http1.Request:
    return http1.parse_request_head(head.replace("\n", "\r\n").encode() + b"\r\n")


def resp(head: str) -> http1.Response:
    return http1.parse_response_head(head.replace("\n", "\r\n").encode() + b"\r\n")


def test_request_target_forms():
    r = req("GET /a/b?x=1#frag HTTP/1.1\nHost: Foo.com:8080\n")
    assert (r.method, r.path, r.host, r.version) == (b"GET", "/a/b", "Foo.com:8080", b"HTTP/1.1")
    r = req("GET http://other.io/p?q HTTP/1.1\nHost: ignored\n")
    assert (r.host, r.path) == ("other.io", "/p")
    assert req("OPTIONS * HTTP/1.1\nHost: h\n").path == "*"


@pytest.mark.parametrize("head,status", [
    ("GET / HTTP/1.1\nHost: a\n folded\n", 400),  # obsolete line folding
    ("GET / HTTP/1.1\nHost : a\n", 400),  # whitespace before the colon
    ("GET / HTTP/1.1\nno colon\n", 400),
    ("GET / HTTP/2.0\nHost: a\n", 505),
    ("GET /\n", 400),
])
def test_malformed_requests(head, status):
    with pytest.raises(HttpError) as e:
        req(head)
    assert e.value.status == status


@pytest.mark.parametrize("head,framing", [
    ("POST / HTTP/1.1\nContent-Length: 10\n", ("length", 10)),
    ("POST / HTTP/1.1\nContent-Length: 10\nContent-Length: 10\n", ("length", 10)),
    ("POST / HTTP/1.1\nContent-Length: 0\n", ("none", 0)),
    ("GET / HTTP/1.1\n", ("none", 0)),
    ("POST / HTTP/1.1\nTransfer-Encoding: gzip, chunked\n", ("chunked", 0)),
])
def test_request_framing(head, framing):
    assert http1.request_framing(req(head)) == framing


@pytest.mark.parametrize("head,status", [
    ("POST / HTTP/1.1\nContent-Length: 10\nContent-Length: 11\n", 400),
    ("POST / HTTP/1.1\nContent-Length: -1\n", 400),
    ("POST / HTTP/1.1\nContent-Length: 1\nTransfer-Encoding: chunked\n", 400),  # smuggling
    ("POST / HTTP/1.1\nTransfer-Encoding: chunked, gzip\n", 501),
])
def test_request_framing_errors(head, status):
    with pytest.raises(HttpError) as e:
        http1.request_framing(req(head))
    assert e.value.status == status


def test_response_framing():
    get = req("GET / HTTP/1.1\n")
    assert http1.response_framing(b"HEAD", resp("HTTP/1.1 200 OK\nContent-Length: 5\n")) == ("none", 0)
    assert http1.response_framing(b"GET", resp("HTTP/1.1 204 No Content\n")) == ("none", 0)
    assert http1.response_framing(b"GET", resp("HTTP/1.1 304 Not Modified\nContent-Length: 5\n")) == ("none", 0)
    assert http1.response_framing(b"GET", resp("HTTP/1.1 200 OK\n")) == ("close", 0)
    assert http1.response_framing(b"GET", resp("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n")) == ("chunked", 0)
    assert get.method == b"GET"


def test_keep_alive_rules():
    assert http1.client_keep_alive(req("GET / HTTP/1.1\n"))
    assert not http1.client_keep_alive(req("GET / HTTP/1.1\nConnection: close\n"))
    assert not http1.client_keep_alive(req("GET / HTTP/1.0\n"))
    assert http1.client_keep_alive(req("GET / HTTP/1.0\nConnection: Keep-Alive\n"))
    assert http1.upstream_reusable(resp("HTTP/1.1 200 OK\nContent-Length: 1\n"), ("length", 1))
    assert not http1.upstream_reusable(resp("HTTP/1.1 200 OK\nConnection: close\n"), ("length", 1))
    assert not http1.upstream_reusable(resp("HTTP/1.1 200 OK\n"), ("close", 0))
    assert not http1.upstream_reusable(resp("HTTP/1.0 200 OK\nContent-Length: 1\n"), ("length", 1))


def test_upstream_head_drops_hop_by_hop_and_sets_forwarded_headers():
    r = req("POST /x?y HTTP/1.1\nHost: app.io\nConnection: keep-alive, X-Secret\nX-Secret: 1\n"
            "Keep-Alive: timeout=5\nTE: trailers\nX-Forwarded-For: 10.0.0.1\nX-Forwarded-Proto: https\n"
            "X-Real-IP: 6.6.6.6\nTransfer-Encoding: chunked\nAccept: */*\n")
    head = http1.upstream_request_head(r, client_ip="127.1.2.3", scheme="http", port=80,
                                       framing=http1.request_framing(r)).decode()
    lines = head.split("\r\n")
    assert lines[0] == "POST /x?y HTTP/1.1"
    names = [line.split(":")[0].lower() for line in lines[1:] if line]
    for gone in ("connection", "x-secret", "keep-alive", "te"):
        assert gone not in names, head
    assert names.count("transfer-encoding") == 1 and names.count("x-forwarded-proto") == 1
    assert "X-Forwarded-For: 10.0.0.1, 127.1.2.3" in lines
    assert "X-Forwarded-Proto: http" in lines and "X-Forwarded-Host: app.io" in lines
    assert "X-Real-IP: 127.1.2.3" in lines and "Accept: */*" in lines and "Host: app.io" in lines
    assert head.endswith("\r\n\r\n")
    # absolute form becomes origin form, and the Host comes from the target
    r = req("GET http://abs.io/p?q=1 HTTP/1.1\n")
    head = http1.upstream_request_head(r, client_ip="1.1.1.1", scheme="http", port=80, framing=("none", 0))
    assert head.startswith(b"GET /p?q=1 HTTP/1.1\r\nHost: abs.io\r\n")


def test_client_response_head():
    r = resp("HTTP/1.1 200 OK\nConnection: keep-alive\nKeep-Alive: timeout=5\nTransfer-Encoding: chunked\n"
             "Content-Type: text/plain\n")
    out = http1.client_response_head(r, keep_alive=True, framing=("chunked", 0), client_version=b"HTTP/1.1")
    assert out == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    # to an HTTP/1.0 client a chunked body is decoded, and the connection closes after it
    assert http1.dechunk_for(b"HTTP/1.0", ("chunked", 0))
    out = http1.client_response_head(r, keep_alive=True, framing=("chunked", 0), client_version=b"HTTP/1.0")
    assert b"Transfer-Encoding" not in out and b"Connection: close" in out
    out = http1.client_response_head(resp("HTTP/1.1 200 OK\nContent-Length: 2\n"), keep_alive=True,
                                     framing=("length", 2), client_version=b"HTTP/1.0")
    assert b"Connection: keep-alive" in out


def test_upgrade_and_chunk_sizes():
    assert http1.upgrade_requested(req("GET / HTTP/1.1\nConnection: Upgrade\nUpgrade: websocket\n")) == b"websocket"
    assert http1.upgrade_requested(req("GET / HTTP/1.1\nUpgrade: websocket\n")) is None
    assert http1.parse_chunk_size(b"1aF;ext=1") == 0x1AF
    for bad in (b"", b"xyz", b"-1", b"1" * 17):
        with pytest.raises(HttpError):
            http1.parse_chunk_size(bad)
