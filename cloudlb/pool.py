"""The external IP pool: which address each LoadBalancer Service holds.

Pure bookkeeping, no I/O: the controller decides, this module only remembers. Rules:
- An address belongs to at most one Service (one IP per LoadBalancer, like a cloud provider's
  static IP; no sharing).
- Allocation hands out the lowest free address, so a cluster that is rebuilt from the same
  manifests gets the same IPs in the same order, and tests can predict them.
- A Service may ask for an address (`spec.loadBalancerIP` or the annotation
  `kubemu.io/load-balancer-ip`); it gets it only if the address is in the pool and free. What is
  wrong is raised as a PoolError whose message goes into an Event verbatim.
- `adopt` takes back what a previous run handed out (from `status.loadBalancer`), before any new
  allocation happens, so a restart never gives a provisioned Service's address to another.
"""
from __future__ import annotations

import ipaddress


class PoolError(Exception):
    """Why a Service cannot get an address now; `reason` is the Event reason."""

    reason = "AllocationFailed"


class Exhausted(PoolError):
    pass


class Unavailable(PoolError):
    pass


class Pool:
    def __init__(self, cidr: str):
        self.network = ipaddress.ip_network(cidr, strict=False)
        if self.network.version != 4:
            raise ValueError(f"{cidr}: only IPv4 pools are supported")
        first, last = int(self.network.network_address), int(self.network.broadcast_address)
        if self.network.prefixlen <= 30:
            # Network and broadcast addresses are bindable on loopback, but a cloud never hands
            # them out and MetalLB avoids them too; skipping them keeps addresses familiar.
            first, last = first + 1, last - 1
        self._first, self._last = first, last
        self._by_key: dict[str, int] = {}
        self._by_ip: dict[int, str] = {}
        self._cursor = first  # every address below it is taken (a hint, reset on release)

    # ------------------------------------------------------------ reading

    @property
    def cidr(self) -> str:
        return str(self.network)

    @property
    def size(self) -> int:
        return self._last - self._first + 1

    def __len__(self) -> int:
        return len(self._by_key)

    def contains(self, ip: str) -> bool:
        n = _to_int(ip)
        return n is not None and self._first <= n <= self._last

    def ip_of(self, key: str) -> str | None:
        n = self._by_key.get(key)
        return None if n is None else str(ipaddress.IPv4Address(n))

    def holder(self, ip: str) -> str | None:
        n = _to_int(ip)
        return None if n is None else self._by_ip.get(n)

    def assignments(self) -> dict[str, str]:
        return {k: str(ipaddress.IPv4Address(n)) for k, n in self._by_key.items()}

    # ------------------------------------------------------------ changing

    def allocate(self, key: str, requested: str | None = None) -> str:
        """The address `key` holds after this call; raises PoolError when it can have none.

        With `requested`, an address held before is given up for the requested one; without,
        an address held before is kept.
        """
        held = self._by_key.get(key)
        if requested:
            n = _to_int(requested)
            if n is None:
                raise Unavailable(f'requested IP "{requested}" is not a valid IPv4 address')
            if not self._first <= n <= self._last:
                raise Unavailable(f'requested IP "{requested}" is not in the pool {self.cidr}')
            owner = self._by_ip.get(n)
            if owner is not None and owner != key:
                raise Unavailable(f'requested IP "{requested}" is already in use by "{owner}"')
            if held is not None and held != n:
                self.release(key)
            self._assign(key, n)
            return requested
        if held is not None:
            return str(ipaddress.IPv4Address(held))
        n = self._cursor
        while n <= self._last and n in self._by_ip:
            n += 1
        self._cursor = n
        if n > self._last:
            raise Exhausted(f"no available IPs in pool {self.cidr} ({self.size} of {self.size} in use)")
        self._assign(key, n)
        return str(ipaddress.IPv4Address(n))

    def adopt(self, key: str, ip: str) -> bool:
        """Take back an address a previous run gave `key`; False if it is not ours to take."""
        n = _to_int(ip)
        if n is None or not self._first <= n <= self._last:
            return False
        owner = self._by_ip.get(n)
        if owner is not None and owner != key:
            return False
        if self._by_key.get(key, n) != n:
            self.release(key)
        self._assign(key, n)
        return True

    def release(self, key: str) -> str | None:
        n = self._by_key.pop(key, None)
        if n is None:
            return None
        self._by_ip.pop(n, None)
        self._cursor = min(self._cursor, n)
        return str(ipaddress.IPv4Address(n))

    def _assign(self, key: str, n: int) -> None:
        self._by_key[key] = n
        self._by_ip[n] = key


def _to_int(ip: str) -> int | None:
    try:
        return int(ipaddress.IPv4Address(ip))
    except ValueError:
        return None
