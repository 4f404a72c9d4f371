"""A stand-in for a node agent's data plane, as the cloud LB sees it: NodePort listeners and a
health-check node port, on the node's IP. Run as its own process so a test can `kill -9` it:

    python tests/cloudlb/lb_fake_node.py --name node-1 --ip 127.30.10.1 \
        --http 30080 [--udp 30053] [--healthz 32000=200]

Each HTTP listener answers every request with `node=<name> port=<port> client=<ip>:<port>`
(the address it saw, like agnhost's /clientip) and closes; `--delay S` holds the answer S
seconds (a request in flight). A UDP listener answers `node=<name> client=<ip>:<port>`.
The health-check port answers `/healthz` with the given status code. It prints `ready` once
every socket is bound.
"""
from __future__ import annotations

import argparse
import asyncio
import signal


class Http(asyncio.Protocol):
    def __init__(self, name: str, port: int, delay: float):
        self.name, self.port, self.delay = name, port, delay
        self.buf = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if b"\r\n\r\n" not in self.buf:
            return
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, self.answer)
        else:
            self.answer()

    def answer(self):
        if self.transport.is_closing():
            return
        ip, port = self.transport.get_extra_info("peername")[:2]
        body = f"node={self.name} port={self.port} client={ip}:{port}\n".encode()
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.transport.close()


class Healthz(asyncio.Protocol):
    def __init__(self, code: int):
        self.code = code

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        body = b'{"localEndpoints": %d}' % (1 if self.code == 200 else 0)
        reason = b"OK" if self.code == 200 else b"Service Unavailable"
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (self.code, reason, len(body), body))
        self.transport.close()


class Udp(asyncio.DatagramProtocol):
    def __init__(self, name: str):
        self.name = name

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(f"node={self.name} client={addr[0]}:{addr[1]}".encode(), addr)


async def main(args) -> None:
    loop = asyncio.get_running_loop()
    for port in args.http:
        await loop.create_server(lambda port=port: Http(args.name, port, args.delay), args.ip, port,
                                 reuse_address=True)
    for port in args.udp:
        await loop.create_datagram_endpoint(lambda: Udp(args.name), local_addr=(args.ip, port))
    for spec in args.healthz:
        port, _, code = spec.partition("=")
        await loop.create_server(lambda code=int(code or 200): Healthz(code), args.ip, int(port),
                                 reuse_address=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--ip", required=True)
    p.add_argument("--http", type=int, action="append", default=[])
    p.add_argument("--udp", type=int, action="append", default=[])
    p.add_argument("--healthz", action="append", default=[])
    p.add_argument("--delay", type=float, default=0.0)
    asyncio.run(main(p.parse_args()))
