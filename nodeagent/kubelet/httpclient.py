"""A minimal HTTP/1.1 GET for probes and agnhost's /dial, from a chosen source address.

Probes leave from the node IP and /dial from the pod IP, as they do in a cluster, so the
target's view of its client (agnhost /clientip, echoserver client_address) is the real one.
"""
from __future__ import annotations

import asyncio
import ssl


class HTTPError(Exception):
    pass


def _decode_chunked(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        nl = data.find(b"\r\n", pos)
        if nl < 0:
            break
        size = int(data[pos:nl].split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[nl + 2:nl + 2 + size]
        pos = nl + 2 + size + 2
    return bytes(out)


async def get(host: str, port: int, path: str = "/", *, timeout: float = 1.0, local_ip: str | None = None,
              headers: list[tuple[str, str]] | None = None, scheme: str = "HTTP",
              host_header: str | None = None) -> tuple[int, bytes]:
    """GET and read the whole response; (status, body). Raises OSError/HTTPError/TimeoutError."""
    async def run() -> tuple[int, bytes]:
        ctx = None
        if scheme.upper() == "HTTPS":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # probes do not verify certificates, as the kubelet
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ctx, local_addr=(local_ip, 0) if local_ip else None)
        try:
            hdrs = {"Host": host_header or f"{host}:{port}", "User-Agent": "kube-probe/1.31",
                    "Accept": "*/*", "Connection": "close"}
            for k, v in headers or ():
                hdrs[k] = v
            req = f"GET {path if path.startswith('/') else '/' + path} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
            writer.write(req.encode("latin-1"))
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise HTTPError(f"malformed HTTP response {lines[0]!r}")
            status = int(parts[1])
            length = None
            chunked = False
            for line in lines[1:]:
                k, _, v = line.partition(":")
                k = k.strip().lower()
                if k == "content-length":
                    length = int(v.strip())
                elif k == "transfer-encoding" and "chunked" in v.lower():
                    chunked = True
            if length is not None:
                body = await reader.readexactly(length)
            else:
                body = await reader.read()
                if chunked:
                    body = _decode_chunked(body)
            return status, body
        finally:
            writer.close()

    return await asyncio.wait_for(run(), timeout)
