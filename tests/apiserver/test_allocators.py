"""IP and port allocators: bands, reservations, exhaustion and Kubernetes' messages."""
import ipaddress
import random

import pytest

from kubemu.apiserver.allocators import (AlreadyAllocated, IPAllocator, NotInRange, PortAllocator, RangeFull,
                                         calculate_range_offset)


@pytest.mark.parametrize("size,expected", [
    (16, 0),        # a /28: too small for a static band
    (256, 16),      # a /24: the minimum
    (1024, 64),     # a /22: size / 16
    (4096, 256),    # a /20: the maximum
    (65536, 256),   # a /16 (kubemu's default Service CIDR): capped
])
def test_ip_range_offset(size, expected):
    assert calculate_range_offset(size, minimum=16, maximum=256, step=16) == expected


@pytest.mark.parametrize("size,expected", [
    (10, 0),
    (16, 0),
    (100, 16),
    (2768, 86),     # 30000-32767
    (5000, 128),
])
def test_port_range_offset(size, expected):
    assert calculate_range_offset(size, minimum=16, maximum=128, step=32) == expected


# ------------------------------------------------------------------ IPs


def test_default_service_cidr_geometry():
    a = IPAllocator("127.96.0.0/16")
    assert a.cidr == "127.96.0.0/16"
    assert a.size == 65534
    assert a.static_band == ("127.96.0.1", "127.96.1.0")
    assert a.family == "IPv4"


@pytest.mark.parametrize("ip", ["127.96.0.0", "127.96.255.255", "10.0.0.1", "127.97.0.1", "::1", "garbage"])
def test_ip_not_in_range(ip):
    a = IPAllocator("127.96.0.0/16")
    with pytest.raises(NotInRange) as e:
        a.allocate(ip)
    assert str(e.value) == "provided IP is not in the valid range. The range of valid IPs is 127.96.0.0/16"


def test_ip_already_allocated():
    a = IPAllocator("127.96.0.0/16")
    a.allocate("127.96.0.10")
    with pytest.raises(AlreadyAllocated) as e:
        a.allocate("127.96.0.10")
    assert str(e.value) == "provided IP is already allocated"
    assert a.has("127.96.0.10") and a.used == 1


def test_dynamic_ips_come_from_the_upper_band():
    a = IPAllocator("127.96.0.0/16", rng=random.Random(1))
    lower_end = ipaddress.ip_address("127.96.1.0")
    for _ in range(500):
        assert ipaddress.ip_address(a.allocate_next()) > lower_end


def test_dynamic_falls_back_to_the_lower_band_but_never_the_first_address():
    a = IPAllocator("127.96.0.0/24", rng=random.Random(2))  # 254 usable, static band of 16
    assert a.static_band == ("127.96.0.1", "127.96.0.16")
    upper = {a.allocate_next() for _ in range(254 - 16)}
    assert all(int(ip.rsplit(".", 1)[1]) > 16 for ip in upper)
    lower = {a.allocate_next() for _ in range(15)}
    assert lower == {f"127.96.0.{i}" for i in range(2, 17)}
    with pytest.raises(RangeFull) as e:
        a.allocate_next()
    assert str(e.value) == "range is full"
    a.allocate("127.96.0.1")  # reserved for default/kubernetes: only on request
    assert a.free == 0 and a.used == 254


def test_first_address_is_allocatable_on_request():
    a = IPAllocator("127.96.0.0/16")
    a.allocate("127.96.0.1")
    assert a.has("127.96.0.1")


def test_tiny_range_has_no_static_band_and_fills_up():
    a = IPAllocator("127.96.0.0/30", rng=random.Random(3))  # .1 and .2 usable, .1 reserved
    assert a.static_band is None
    assert a.allocate_next() == "127.96.0.2"
    with pytest.raises(RangeFull):
        a.allocate_next()


def test_ip_release_and_reuse():
    a = IPAllocator("127.96.0.0/28", rng=random.Random(4))
    ips = [a.allocate_next() for _ in range(13)]
    with pytest.raises(RangeFull):
        a.allocate_next()
    a.release(ips[5])
    assert a.allocate_next() == ips[5]
    a.release("10.1.2.3")  # out of range: a no-op, as in Kubernetes
    a.release("127.96.0.1")  # never allocated: a no-op


def test_ip_reset_reports_problems():
    a = IPAllocator("127.96.0.0/16")
    a.allocate("127.96.0.77")
    problems = a.reset(["127.96.0.10", "127.96.0.10", "10.0.0.1"])
    assert a.allocated() == ["127.96.0.10"]
    assert problems == [("127.96.0.10", "provided IP is already allocated"),
                        ("10.0.0.1", "provided IP is not in the valid range. The range of valid IPs is 127.96.0.0/16")]


# ------------------------------------------------------------------ ports


def test_default_node_port_range_geometry():
    p = PortAllocator(30000, 32767)
    assert p.size == 2768
    assert p.static_band == (30000, 30085)


@pytest.mark.parametrize("port", [29999, 32768, 40000, 80])
def test_port_not_in_range(port):
    p = PortAllocator(30000, 32767)
    with pytest.raises(NotInRange) as e:
        p.allocate(port)
    assert str(e.value) == "provided port is not in the valid range. The range of valid ports is 30000-32767"


def test_port_already_allocated():
    p = PortAllocator(30000, 32767)
    p.allocate(30080)
    with pytest.raises(AlreadyAllocated) as e:
        p.allocate(30080)
    assert str(e.value) == "provided port is already allocated"


def test_dynamic_ports_prefer_upper_band_then_lower_then_full():
    p = PortAllocator(30000, 30099, rng=random.Random(5))  # 100 ports, static band of 16
    assert p.static_band == (30000, 30015)
    upper = [p.allocate_next() for _ in range(84)]
    assert min(upper) == 30016 and len(set(upper)) == 84
    lower = {p.allocate_next() for _ in range(16)}
    assert lower == set(range(30000, 30016))
    with pytest.raises(RangeFull):
        p.allocate_next()
    assert p.used == 100 and p.free == 0


def test_port_release_reset_and_has():
    p = PortAllocator(30000, 32767)
    p.allocate(30001)
    p.release(30001)
    assert not p.has(30001)
    p.release(12)  # out of range: no-op
    problems = p.reset([30001, 30002, 30002, 1])
    assert p.allocated() == [30001, 30002]
    assert [port for port, _ in problems] == [30002, 1]


def test_invalid_port_range():
    with pytest.raises(ValueError):
        PortAllocator(10, 5)
