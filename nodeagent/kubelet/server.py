"""The agent's own HTTP port (the "kubelet port", `--kubelet-port`, on the node IP).

- `/healthz`: `ok` once the Node is registered and the kubelet restored its pods and runs.
- `/metrics`: Prometheus text, the kubelet's metrics, the proxy's (whatever `metrics()` returns)
  and the process's own (resident memory, open files).
- `/containerLogs/{namespace}/{pod}/{container}?follow=true&tailLines=N&previous=true`: a
  container's log, as the kubelet serves it to `kubectl logs`; with follow it streams (chunked)
  until the container stops or the client goes away.
- `/pods`: the pods this agent runs, as JSON (like the kubelet's read-only /pods).

Low traffic and never on the data path, so asyncio Streams are fine here.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import time
import urllib.parse
from typing import Callable

from kubemu import objects

from kubemu.nodeagent.kubelet.logs import tail_offset

log = logging.getLogger("kubemu.nodeagent.server")

FOLLOW_POLL = 0.1


def process_metrics(start_time: float) -> str:
    rss = 0
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return "\n".join([
        "# HELP process_resident_memory_bytes Resident memory size in bytes.",
        "# TYPE process_resident_memory_bytes gauge",
        f"process_resident_memory_bytes {rss}",
        "# HELP process_open_fds Number of open file descriptors.",
        "# TYPE process_open_fds gauge",
        f"process_open_fds {fds}",
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
        "# TYPE process_cpu_seconds_total counter",
        f"process_cpu_seconds_total {usage.ru_utime + usage.ru_stime:.2f}",
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
        "# TYPE process_start_time_seconds gauge",
        f"process_start_time_seconds {start_time:.0f}",
    ]) + "\n"


class AgentServer:
    def __init__(self, kubelet, *, host: str, port: int, extra_metrics: Callable[[], str] | None = None,
                 healthy: Callable[[], bool] | None = None):
        self.kubelet = kubelet
        self.healthy = healthy or kubelet.started.is_set
        self.host = host
        self.port = port
        self.extra_metrics = extra_metrics
        self.server: asyncio.AbstractServer | None = None
        self.start_time = time.time()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        log.info("serving /healthz, /metrics and /containerLogs on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    await self._send(writer, 400, "bad request\n", close=True)
                    return
                close = any(l.lower().startswith("connection:") and "close" in l.lower() for l in lines[1:])
                close = close or version == "HTTP/1.0"
                keep = await self._route(method, target, reader, writer, close)
                if not keep or close:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("agent HTTP server")
        finally:
            writer.close()

    async def _send(self, writer, status: int, body: str | bytes, ctype: str = "text/plain; charset=utf-8",
                    close: bool = False) -> None:
        data = body.encode() if isinstance(body, str) else body
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  503: "Service Unavailable"}.get(status, "")
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                + ("Connection: close\r\n" if close else "") + "\r\n")
        writer.write(head.encode() + data)
        await writer.drain()

    async def _route(self, method: str, target: str, reader, writer, close: bool) -> bool:
        url = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(url.query)
        path = url.path
        if method not in ("GET", "HEAD"):
            await self._send(writer, 405, "method not allowed\n", close=close)
            return True
        if path == "/healthz":
            ok = self.healthy()
            await self._send(writer, 200 if ok else 503, "ok" if ok else "starting", close=close)
            return True
        if path == "/metrics":
            text = self.kubelet.render_metrics()
            if self.extra_metrics is not None:
                try:
                    text += self.extra_metrics()
                except Exception:
                    log.exception("proxy metrics")
            text += process_metrics(self.start_time)
            await self._send(writer, 200, text, "text/plain; version=0.0.4; charset=utf-8", close=close)
            return True
        if path == "/pods":
            items = [objects.to_dict(w.pod) for w in list(self.kubelet.workers.values())]
            await self._send(writer, 200, json.dumps({"kind": "PodList", "apiVersion": "v1", "items": items}),
                             "application/json", close=close)
            return True
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[0] == "containerLogs":
            return await self._logs(reader, writer, parts[1], parts[2], parts[3], query, close)
        await self._send(writer, 404, "404 page not found\n", close=close)
        return True

    async def _logs(self, reader, writer, namespace: str, pod: str, container: str, query: dict, close: bool) -> bool:
        def flag(name: str) -> bool:
            return query.get(name, ["false"])[0].lower() in ("true", "1")

        try:
            tail = int(query.get("tailLines", ["-1"])[0])
        except ValueError:
            await self._send(writer, 400, "tailLines must be an integer\n", close=close)
            return True
        try:
            path, alive = self.kubelet.find_log(namespace, pod, container, previous=flag("previous"))
        except LookupError as e:
            await self._send(writer, 404, f"{e.args[0]}\n", close=close)
            return True
        try:
            offset = tail_offset(path, tail) if tail >= 0 else 0
        except FileNotFoundError:
            offset = 0
        if not flag("follow"):
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            await self._send(writer, 200, data, close=close)
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        await writer.drain()
        f = None
        try:
            while True:
                if f is None:
                    try:
                        f = open(path, "rb")
                        f.seek(offset)
                    except FileNotFoundError:
                        f = None
                running = alive()
                data = f.read() if f is not None else b""
                if data:
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                    await writer.drain()
                elif not running:
                    break
                else:
                    if writer.transport.is_closing() or reader.at_eof():
                        break  # the client went away
                    await asyncio.sleep(FOLLOW_POLL)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            if f is not None:
                f.close()
        return False
