"""The reverse proxy in-process against real HTTP backends on private addresses.

Routing by host and path, the 404 default backend, keep-alive on both sides, X-Forwarded-*,
streamed bodies (Content-Length and chunked, both directions), retries over stale pooled
connections, 502/503, Expect: 100-continue, Upgrade, and TLS with SNI choosing the Secret's
certificate (checked with Python's ssl and with `curl --resolve`).
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import ssl
import tempfile

import pytest

from ingress_helpers import Backend, Client, Harness, backend_ref, get, ingress, service, tls_secret
from kubemu.testing import procs


def addr(slot, n: int) -> str:
    return f"127.{slot.index}.128.{n}"


@contextlib.asynccontextmanager
async def setup(slot, *, secrets=(), extra_ingresses=(), response_timeout: float = 10.0):
    """Two apps (a, b) behind the proxy; ClusterIPs are the backends' own addresses."""
    a = await Backend("a", addr(slot, 1)).start()
    b = await Backend("b", addr(slot, 2)).start()
    h = await Harness(f"127.{slot.index}.255.254", response_timeout=response_timeout).start()
    services = [service("app-a", a.host, [("http", a.port)]), service("app-b", b.host, [("web", b.port)]),
                service("dead", addr(slot, 9), [("http", procs.free_port(addr(slot, 9)))])]
    ing = ingress("apps", {
        "rules": [
            {"host": "a.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": backend_ref("app-a", a.port)}]}},
            {"host": "b.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": backend_ref("app-b", "web")}]}},
            {"http": {"paths": [
                {"path": "/a", "pathType": "Prefix", "backend": backend_ref("app-a", "http")},
                {"path": "/b", "pathType": "Exact", "backend": backend_ref("app-b", b.port)},
                {"path": "/dead", "pathType": "Prefix", "backend": backend_ref("dead", "http")},
                {"path": "/missing", "pathType": "Prefix", "backend": backend_ref("nosuch", 80)}]}}]})
    h.load([ing, *extra_ingresses], services, list(secrets))
    try:
        yield h, a, b
    finally:
        await h.stop()
        await a.stop()
        await b.stop()


def test_routing_by_host_and_path_and_default_404(ingress_slot):
    async def body():
        async with setup(ingress_slot) as (h, a, b):
            p = h.http_port
            assert (await get(h.host, p, "/x", vhost="a.example.com")).json()["server"] == "a"
            assert (await get(h.host, p, "/x", vhost="b.example.com:80")).json()["server"] == "b"
            assert (await get(h.host, p, "/a/deep/path?q=1", vhost="other")).json()["path"] == "/a/deep/path?q=1"
            assert (await get(h.host, p, "/b", vhost="other")).json()["server"] == "b"
            r = await get(h.host, p, "/b/not-exact", vhost="other")
            assert r.status == 404 and r.body == b"default backend - 404\n"
            r = await get(h.host, p, "/missing", vhost="other")
            assert r.status == 503 and b"not found" in r.body
            r = await get(h.host, p, "/dead", vhost="other")
            assert r.status == 502
            # absolute-form request target: its authority is the host
            c = await Client(h.host, p).connect()
            try:
                r = await c.request("GET", "http://b.example.com/abs?x=1")
                assert r.json()["server"] == "b" and r.json()["path"] == "/abs?x=1"
            finally:
                await c.close()
    procs.run(body(), 30)


def test_keep_alive_both_sides_and_forwarded_headers(ingress_slot):
    async def body():
        async with setup(ingress_slot) as (h, a, b):
            client_ip = addr(ingress_slot, 50)
            c = await Client(h.host, h.http_port, source=client_ip).connect()
            try:
                seen = []
                for i in range(20):
                    r = await c.request("GET", f"/r{i}", host="a.example.com",
                                        headers={"X-Forwarded-For": "203.0.113.7", "Connection": "keep-alive",
                                                 "X-Forwarded-Proto": "spoofed"})
                    assert r.status == 200 and r.headers.get("connection") != "close"
                    seen.append(r.json())
            finally:
                await c.close()
            assert a.connections == 1, "20 keep-alive requests should share one pooled backend connection"
            hdrs = seen[0]["headers"]
            assert hdrs["x-forwarded-for"] == f"203.0.113.7, {client_ip}"
            assert hdrs["x-real-ip"] == client_ip
            assert hdrs["x-forwarded-proto"] == "http"
            assert hdrs["x-forwarded-host"] == "a.example.com"
            assert hdrs["x-forwarded-port"] == "80"
            assert "connection" not in hdrs or hdrs["connection"].lower() != "keep-alive"
            assert hdrs["host"] == "a.example.com"
            # HTTP/1.0 without keep-alive: the proxy closes after the response
            c = await Client(h.host, h.http_port).connect()
            try:
                r = await c.request("GET", "/x", host="a.example.com", version="HTTP/1.0")
                assert r.status == 200 and r.headers["connection"] == "close"
                assert await c.reader.read() == b""
            finally:
                await c.close()
    procs.run(body(), 30)


def test_streaming_bodies_both_directions(ingress_slot):
    async def body():
        async with setup(ingress_slot) as (h, a, b):
            c = await Client(h.host, h.http_port).connect()
            try:
                big = os.urandom(5 * 1024 * 1024)
                r = await c.request("POST", "/upload", host="a.example.com", body=big)
                assert r.json()["body_len"] == len(big)
                assert r.json()["body_sha256"] == hashlib.sha256(big).hexdigest()
                chunks = [os.urandom(n) for n in (1, 1000, 70000, 3)]
                r = await c.request("PUT", "/chunked-upload", host="a.example.com", chunks=chunks)
                assert r.json()["body_len"] == sum(map(len, chunks))
                assert r.json()["body_sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()
                r = await c.request("GET", "/chunked/50", host="a.example.com")
                assert r.headers["transfer-encoding"] == "chunked"
                assert r.body == b"".join(f"chunk {i};".encode() for i in range(50))
                r = await c.request("GET", "/big/3000000", host="a.example.com")
                assert len(r.body) == 3000000 and hashlib.sha256(r.body).hexdigest() == r.headers["x-sha256"]
                r = await c.request("HEAD", "/big/3000000", host="a.example.com")
                assert r.headers["content-length"] == "3000000" and r.body == b""
                r = await c.request("GET", "/after", host="a.example.com")  # the connection is still in sync
                assert r.json()["path"] == "/after"
            finally:
                await c.close()
            # an HTTP/1.0 client cannot read chunked: it gets the plain body and a close
            c = await Client(h.host, h.http_port).connect()
            try:
                r = await c.request("GET", "/chunked/3", host="a.example.com", version="HTTP/1.0")
                assert "transfer-encoding" not in r.headers and r.body == b"chunk 0;chunk 1;chunk 2;"
            finally:
                await c.close()
    procs.run(body(), 60)


def test_stale_pooled_connections_are_retried(ingress_slot):
    async def body():
        async with setup(ingress_slot) as (h, a, b):
            c = await Client(h.host, h.http_port).connect()
            try:
                assert (await c.request("GET", "/1", host="a.example.com")).status == 200
                a.close_idle()  # the backend drops its keep-alive connections (idle timeout, pod gone)
                await asyncio.sleep(0)  # the close may or may not have reached the proxy yet
                r = await c.request("GET", "/2", host="a.example.com")
                assert r.status == 200 and r.json()["conn"] == 2
                r = await c.request("GET", "/close", host="a.example.com")  # backend says close
                assert r.status == 200 and r.headers.get("connection") != "close"
                r = await c.request("GET", "/3", host="a.example.com")
                assert r.status == 200 and r.json()["conn"] == 3
            finally:
                await c.close()
    procs.run(body(), 30)


def test_expect_continue_and_upgrade(ingress_slot):
    async def body():
        async with setup(ingress_slot) as (h, a, b):
            c = await Client(h.host, h.http_port).connect()
            try:
                await c.send_raw(b"POST /up HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\n"
                                 b"Expect: 100-continue\r\n\r\n")
                interim = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), 5)
                assert interim.startswith(b"HTTP/1.1 100")
                await c.send_raw(b"hello")
                r = await c.read_reply()
                assert r.json()["body_len"] == 5 and "expect" not in r.json()["headers"]
            finally:
                await c.close()
            c = await Client(h.host, h.http_port).connect()
            try:
                r = await c.request("GET", "/upgrade", host="a.example.com",
                                    headers={"Connection": "Upgrade", "Upgrade": "echo"})
                assert r.status == 101
                await c.send_raw(b"ping")
                assert await asyncio.wait_for(c.reader.readexactly(4), 5) == b"PING"
            finally:
                await c.close()
    procs.run(body(), 30)


def test_malformed_requests(ingress_slot):
    async def body():
        async with setup(ingress_slot) as (h, a, b):
            for raw, status in ((b"GARBAGE\r\n\r\n", 400),
                                (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
                                (b"POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 1\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n", 400),
                                (b"POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 1\r\n"
                                 b"Content-Length: 2\r\n\r\n", 400)):
                c = await Client(h.host, h.http_port).connect()
                try:
                    await c.send_raw(raw)
                    r = await asyncio.wait_for(c.read_reply(), 5)
                    assert r.status == status, raw
                finally:
                    await c.close()
            assert a.requests == 0
    procs.run(body(), 30)


def test_backend_timeout_is_504(ingress_slot):
    async def body():
        silent = await asyncio.start_server(lambda r, w: r.read(), addr(ingress_slot, 20), 0)
        port = silent.sockets[0].getsockname()[1]
        slow = ingress("slow", {"rules": [{"host": "slow.io", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": backend_ref("slow", port)}]}}]})
        try:
            async with setup(ingress_slot, response_timeout=0.3) as (h, a, b):
                h.load([slow], [service("slow", addr(ingress_slot, 20), [("http", port)])])
                r = await get(h.host, h.http_port, "/", vhost="slow.io")
                assert r.status == 504
        finally:
            silent.close()
    procs.run(body(), 30)


# ------------------------------------------------------------------ TLS


def _peer_cn(der: bytes) -> str:
    pem = ssl.DER_cert_to_PEM_cert(der)
    d = tempfile.mkdtemp()
    try:
        path = os.path.join(d, "c.pem")
        with open(path, "w") as f:
            f.write(pem)
        info = ssl._ssl._test_decode_cert(path)  # the stdlib's own PEM reader
        return dict(x[0] for x in info["subject"])["commonName"]
    finally:
        shutil.rmtree(d)


def _tls_setup(ingress_certs):
    secrets = [tls_secret("a-tls", *ingress_certs["a.example.com"]),
               tls_secret("wild-tls", *ingress_certs["wild.example.com"])]
    tls_ing = ingress("tls", {"tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"},
                                      {"hosts": ["*.wild.example.com"], "secretName": "wild-tls"}],
                              "rules": [{"host": "x.wild.example.com", "http": {"paths": [
                                  {"path": "/", "pathType": "Prefix", "backend": backend_ref("app-b", "web")}]}}]},
                      created="2024-02-01T00:00:00Z")
    return secrets, tls_ing


def test_tls_sni_picks_the_secrets_certificate(ingress_slot, ingress_certs):
    async def body():
        secrets, tls_ing = _tls_setup(ingress_certs)
        async with setup(ingress_slot, secrets=secrets, extra_ingresses=[tls_ing]) as (h, a, b):
            async def handshake(server_name):
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                c = await Client(h.host, h.https_port, ssl_ctx=ctx, server_name=server_name).connect()
                try:
                    der = c.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                    r = await c.request("GET", "/tls", host=server_name or "other")
                    return _peer_cn(der), r
                finally:
                    await c.close()
            cn, r = await handshake("a.example.com")
            assert cn == "a.example.com" and r.json()["server"] == "a"
            assert r.json()["headers"]["x-forwarded-proto"] == "https"
            assert r.json()["headers"]["x-forwarded-port"] == "443"
            cn, r = await handshake("x.wild.example.com")
            assert cn == "wild.example.com" and r.json()["server"] == "b"
            cn, _ = await handshake("b.example.com")
            assert cn == "Kubernetes Ingress Controller Fake Certificate"
            cn, _ = await handshake(None)
            assert cn == "Kubernetes Ingress Controller Fake Certificate"
            # a verifying client trusts the Secret's certificate for its host
            ctx = ssl.create_default_context(cadata=ingress_certs["a.example.com"][0].decode())
            c = await Client(h.host, h.https_port, ssl_ctx=ctx, server_name="a.example.com").connect()
            try:
                assert (await c.request("GET", "/v", host="a.example.com")).status == 200
            finally:
                await c.close()
            # a Secret that changes is reloaded; one that disappears falls back to the default
            changed = tls_secret("a-tls", *ingress_certs["https-example.foo.com"], rv="2")
            h.load([tls_ing], [], [changed, secrets[1]])
            cn, _ = await handshake("a.example.com")
            assert cn == "https-example.foo.com"
            h.load([tls_ing], [], [secrets[1]])
            cn, _ = await handshake("a.example.com")
            assert cn == "Kubernetes Ingress Controller Fake Certificate"
    procs.run(body(), 30)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_tls_with_curl_resolve(ingress_slot, ingress_certs, tmp_path):
    async def body():
        secrets, tls_ing = _tls_setup(ingress_certs)
        async with setup(ingress_slot, secrets=secrets, extra_ingresses=[tls_ing]) as (h, a, b):
            ca = tmp_path / "a.crt"
            ca.write_bytes(ingress_certs["a.example.com"][0])
            proc = await asyncio.create_subprocess_exec(
                "curl", "-sS", "--fail", "--cacert", str(ca), "--resolve", f"a.example.com:{h.https_port}:{h.host}",
                f"https://a.example.com:{h.https_port}/curl", stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 0, err.decode()
            assert b'"server": "a"' in out and b'"/curl"' in out
    procs.run(body(), 30)
