"""ClusterIP and NodePort allocators, after Kubernetes' ipallocator and portallocator.

A range is split in two bands (KEP-3070 for IPs, KEP-3668 for ports): the lower "static" band
is where users are advised to pick explicit values (`clusterIP: 127.96.0.10` for DNS), and
dynamic allocation takes a random free value from the upper band first, falling back to the
lower band only when the upper one is full. So an explicit request rarely collides with an
automatic one. The band size is Kubernetes' calculateRangeOffset,
min(max(min_offset, size/step), max_offset).

Allocators hold state in memory only: the store is the truth, and `reset` rebuilds a bitmap
from the values found in stored objects, as Kubernetes' repair loops do. They are not
transactional themselves; the Service strategy undoes what it allocated when a write fails.
"""
from __future__ import annotations

import ipaddress
import random
from typing import Iterable


class AllocationError(Exception):
    """A value could not be allocated; str() is Kubernetes' message."""


class AlreadyAllocated(AllocationError):
    pass


class NotInRange(AllocationError):
    pass


class RangeFull(AllocationError):
    def __init__(self) -> None:
        super().__init__("range is full")


def calculate_range_offset(size: int, *, minimum: int, maximum: int, step: int) -> int:
    """Size of the static band: ~never less than `minimum` or more than `maximum`, graduated
    by `step` in between; 0 (no static band) for ranges no larger than `minimum`."""
    if size <= minimum:
        return 0
    return max(minimum, min(size // step, maximum))


class _Bitmap:
    """Offsets 0..size-1; `reserved` offsets are never handed out by allocate_next."""

    def __init__(self, size: int, offset: int, rng: random.Random, reserved: frozenset[int]):
        self.size = size
        self.offset = min(offset, size)
        self.rng = rng
        self.reserved = frozenset(r for r in reserved if 0 <= r < size)
        self.used: set[int] = set()

    def allocate(self, i: int) -> bool:
        if i in self.used:
            return False
        self.used.add(i)
        return True

    def allocate_next(self) -> int | None:
        for lo, hi in ((self.offset, self.size), (0, self.offset)):
            found = self._scan(lo, hi)
            if found is not None:
                self.used.add(found)
                return found
        return None

    def _scan(self, lo: int, hi: int) -> int | None:
        """Random start, then forward with wrap-around: randomScanStrategyWithOffset."""
        n = hi - lo
        if n <= 0:
            return None
        start = self.rng.randrange(n)
        for k in range(n):
            at = lo + (start + k) % n
            if at not in self.used and at not in self.reserved:
                return at
        return None

    def free(self) -> int:
        return self.size - len(self.used) - len(self.reserved - self.used)


class _Allocator:
    """What both allocators share: a bitmap of offsets, and a mapping value <-> offset that
    each subclass defines (`_offset` is None outside the range). `what` names the value in
    Kubernetes' messages ("IP", "port")."""

    what = ""
    _bits: _Bitmap

    def _offset(self, value) -> int | None:
        raise NotImplementedError

    def _value(self, offset: int):
        raise NotImplementedError

    def _range(self) -> str:
        raise NotImplementedError

    @property
    def size(self) -> int:
        return self._bits.size

    @property
    def static_band(self) -> tuple | None:
        """First and last value of the lower band, for documentation and tests."""
        if self._bits.offset == 0:
            return None
        return self._value(0), self._value(self._bits.offset - 1)

    def allocate(self, value) -> None:
        off = self._offset(value)
        if off is None:
            raise NotInRange(f"provided {self.what} is not in the valid range. "
                             f"The range of valid {self.what}s is {self._range()}")
        if not self._bits.allocate(off):
            raise AlreadyAllocated(f"provided {self.what} is already allocated")

    def allocate_next(self):
        off = self._bits.allocate_next()
        if off is None:
            raise RangeFull()
        return self._value(off)

    def release(self, value) -> None:
        """Releasing an unallocated or out-of-range value is a no-op, as in Kubernetes."""
        off = self._offset(value)
        if off is not None:
            self._bits.used.discard(off)

    def has(self, value) -> bool:
        off = self._offset(value)
        return off is not None and off in self._bits.used

    def contains(self, value) -> bool:
        return self._offset(value) is not None

    @property
    def used(self) -> int:
        return len(self._bits.used)

    @property
    def free(self) -> int:
        return self._bits.free()

    def allocated(self) -> list:
        return [self._value(o) for o in sorted(self._bits.used)]

    def reset(self, values: Iterable) -> list[tuple]:
        """Rebuild from the values stored objects hold; returns (value, problem) for those that
        are out of range or held twice, which a repair loop would report."""
        self._bits.used.clear()
        problems = []
        for v in values:
            try:
                self.allocate(v)
            except AllocationError as e:
                problems.append((v, str(e)))
        return problems


class IPAllocator(_Allocator):
    """Service IPs from one CIDR. The network address (and for IPv4 the broadcast address)
    are never allocatable. The first usable address is reserved for the `default/kubernetes`
    Service: it is handed out only when asked for by value."""

    what = "IP"

    def __init__(self, cidr: str, *, reserve_first: bool = True, rng: random.Random | None = None):
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.cidr = str(self.network)
        self.family = "IPv4" if self.network.version == 4 else "IPv6"
        total = self.network.num_addresses
        if self.network.version == 4:
            size = total - 2
        else:
            size = min(total, 65536) - 1
        size = max(size, 0)
        self._base = int(self.network.network_address) + 1
        offset = calculate_range_offset(min(total, 1 << 62), minimum=16, maximum=256, step=16)
        reserved = frozenset({0}) if reserve_first else frozenset()
        self._bits = _Bitmap(size, offset, rng or random.Random(), reserved)

    def _range(self) -> str:
        return self.cidr

    def _value(self, offset: int) -> str:
        return str(ipaddress.ip_address(self._base + offset))

    def _offset(self, ip: str) -> int | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if addr.version != self.network.version or addr not in self.network:
            return None
        off = int(addr) - self._base
        return off if 0 <= off < self._bits.size else None


class PortAllocator(_Allocator):
    """Node ports from an inclusive range (30000-32767 by default)."""

    what = "port"

    def __init__(self, first: int, last: int, *, rng: random.Random | None = None):
        if last < first:
            raise ValueError(f"invalid port range {first}-{last}")
        self.first, self.last = first, last
        self.range = f"{first}-{last}"
        size = last - first + 1
        offset = calculate_range_offset(size, minimum=16, maximum=128, step=32)
        self._bits = _Bitmap(size, offset, rng or random.Random(), frozenset())

    def _range(self) -> str:
        return self.range

    def _value(self, offset: int) -> int:
        return self.first + offset

    def _offset(self, port: int) -> int | None:
        return port - self.first if self.first <= port <= self.last else None
