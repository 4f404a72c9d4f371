"""Pod IPs from the node's pod CIDR, handed out round-robin so a freed address is not reused at once.

Like the host-local CNI plugin, the allocator remembers where it last allocated and continues
after it: an address a deleted pod gave back comes around again only after the rest of the
range was used, so churn is visible (a replaced pod has a new IP) and a connection still in
flight to the old pod cannot reach its successor. The first host address is left out, as CNI
keeps it for the bridge (gateway). Pure: no sockets, no clock.
"""
from __future__ import annotations

import ipaddress


class RangeFull(Exception):
    pass


class PodIPAllocator:
    def __init__(self, cidr: str):
        self.network = ipaddress.ip_network(cidr, strict=False)
        base = int(self.network.network_address)
        size = self.network.num_addresses
        if size >= 4:
            self.first, self.last = base + 2, base + size - 2  # skip network, gateway, broadcast
        else:  # /31, /32: every address is usable
            self.first, self.last = base, base + size - 1
        self.used: dict[int, str] = {}  # address -> owner (pod uid)
        self.cursor = self.first - 1  # last handed out

    @property
    def capacity(self) -> int:
        return self.last - self.first + 1

    def __len__(self) -> int:
        return len(self.used)

    def __contains__(self, ip: str) -> bool:
        try:
            return int(ipaddress.ip_address(ip)) in self.used
        except ValueError:
            return False

    def owner(self, ip: str) -> str | None:
        try:
            return self.used.get(int(ipaddress.ip_address(ip)))
        except ValueError:
            return None

    def allocate(self, owner: str) -> str:
        """The next free address after the last one handed out."""
        n = self.capacity
        if len(self.used) >= n:
            raise RangeFull(f"no IP addresses available in range {self.network} "
                            f"({len(self.used)} of {n} in use)")
        addr = self.cursor
        for _ in range(n):
            addr = addr + 1 if addr < self.last else self.first
            if addr not in self.used:
                self.used[addr] = owner
                self.cursor = addr
                return str(ipaddress.ip_address(addr))
        raise RangeFull(f"no IP addresses available in range {self.network}")  # unreachable

    def reserve(self, ip: str, owner: str) -> str | None:
        """Claim a known address (a pod restored after a restart). Returns why not, or None."""
        try:
            addr = int(ipaddress.ip_address(ip))
        except ValueError:
            return f"{ip!r} is not an IP address"
        if not self.first <= addr <= self.last:
            return f"{ip} is outside this node's pod CIDR {self.network}"
        holder = self.used.get(addr)
        if holder is not None and holder != owner:
            return f"{ip} is already assigned to another pod"
        self.used[addr] = owner
        if addr > self.cursor:
            self.cursor = addr  # continue after the highest address in use
        return None

    def release(self, ip: str, owner: str | None = None) -> None:
        try:
            addr = int(ipaddress.ip_address(ip))
        except ValueError:
            return
        if owner is None or self.used.get(addr) == owner:
            self.used.pop(addr, None)
