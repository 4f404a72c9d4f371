"""End to end: changes written to the API server show in DNS answers within a second; the
process publishes itself as kube-dns, answers SERVFAIL until synced, survives API server
outages, and exits cleanly on SIGTERM."""
from __future__ import annotations

import signal
import time

from dnslib import QTYPE, RCODE

from kubemu.client import Client
from kubemu.dns import testing as t
from kubemu.testing import procs

DEADLINE = 1.0


def ask(c, name, qtype="A", tcp=False):
    return t.query(c.host, c.port, name, qtype, tcp=tcp, timeout=1.0)


def within(c, name, predicate, qtype="A", deadline=DEADLINE) -> float:
    """Seconds until the answer for `name` satisfies `predicate`; fails after `deadline`."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < deadline:
        last = ask(c, name, qtype)
        if predicate(last):
            return time.monotonic() - t0
        time.sleep(0.005)
    raise AssertionError(f"{name}: not reflected within {deadline}s; last answer:\n{last}")


def test_service_created_changed_and_deleted_are_reflected_within_a_second(dns_cluster):
    c = dns_cluster
    s = c.slot.index
    name = "shape.default.svc.cluster.local"

    async def create():
        async with Client(c.api) as cl:
            return await cl.create(t.service("shape", type="ExternalName", external_name="example.test"))
    assert ask(c, name).header.rcode == RCODE.NXDOMAIN
    procs.run(create())
    within(c, name, lambda r: [QTYPE.get(x.rtype) for x in r.rr][:1] == ["CNAME"], "CNAME")

    async def change():
        async with Client(c.api) as cl:
            cur = await cl.get("Service", "shape", "default")
            want = t.service("shape", cluster_ip=f"127.{s}.96.77")
            cur.spec.CopyFrom(want.spec)
            return await cl.update(cur)
    procs.run(change())
    within(c, name, lambda r: t.addresses(r) == [f"127.{s}.96.77"]
           and all(x.rtype != QTYPE.CNAME for x in r.rr))

    async def delete():
        async with Client(c.api) as cl:
            await cl.delete("Service", "shape", "default")
    procs.run(delete())
    within(c, name, lambda r: r.header.rcode == RCODE.NXDOMAIN)


def test_pod_replaced_under_headless_service_within_a_second(dns_cluster):
    c = dns_cluster
    s = c.slot.index
    old_ip, new_ip = f"127.{s}.130.1", f"127.{s}.130.2"
    name = "stateful.default.svc.cluster.local"

    async def setup():
        async with Client(c.api) as cl:
            await cl.create(t.service("stateful", headless=True))
            p = await cl.create(t.pod("w-1"))
            p.status.podIP = old_ip
            p.status.podIPs.add().ip = old_ip
            p.status.phase = "Running"
            await cl.update_status(p)
            await cl.create(t.endpoint_slice("stateful-a", "stateful", endpoints=[(old_ip, "w", True)]))
    procs.run(setup())
    within(c, name, lambda r: t.addresses(r) == [old_ip], deadline=5)
    assert t.addresses(ask(c, f"127-{s}-130-1.default.pod.cluster.local")) == [old_ip]

    async def replace():
        async with Client(c.api) as cl:
            await cl.delete("Pod", "w-1", "default", grace_period_seconds=0)
            p = await cl.create(t.pod("w-2"))
            p.status.podIP = new_ip
            p.status.podIPs.add().ip = new_ip
            p.status.phase = "Running"
            await cl.update_status(p)
            sl = await cl.get("EndpointSlice", "stateful-a", "default")
            sl.endpoints[0].addresses[:] = [new_ip]
            await cl.update(sl)
    procs.run(replace())
    within(c, name, lambda r: t.addresses(r) == [new_ip])
    within(c, "w.stateful.default.svc.cluster.local", lambda r: t.addresses(r) == [new_ip])
    within(c, f"127-{s}-130-1.default.pod.cluster.local", lambda r: r.header.rcode == RCODE.NXDOMAIN)
    within(c, f"127-{s}-130-2.default.pod.cluster.local", lambda r: t.addresses(r) == [new_ip])


def test_publishes_itself_as_kube_dns_and_repairs_it(dns_cluster, tmp_path):
    c = dns_cluster
    vip = c.slot.dns_vip
    with t.dns_process(c.api, str(tmp_path), "--service-ip", vip, "--upstream", "none") as (proc, port):
        async def check():
            async with Client(c.api) as cl:
                svc = await cl.get("Service", "kube-dns", "kube-system")
                sl = await cl.get("EndpointSlice", "kube-dns-kubemu", "kube-system")
                return svc, sl

        def published():
            svc, sl = procs.run(check())
            return (svc.spec.clusterIP == vip and not svc.spec.selector
                    and sorted((p.name, p.protocol, p.port) for p in svc.spec.ports) == [
                        ("dns", "UDP", 53), ("dns-tcp", "TCP", 53)]
                    and list(sl.endpoints[0].addresses) == ["127.0.0.1"]
                    and sorted((p.name, p.protocol, p.port) for p in sl.ports) == [
                        ("dns", "UDP", port), ("dns-tcp", "TCP", port)]
                    and sl.metadata.labels["kubernetes.io/service-name"] == "kube-dns"
                    and sl.metadata.labels["endpointslice.kubernetes.io/managed-by"] == "kubemu-dns")
        procs.wait_for(published, 10, message="kube-dns Service and EndpointSlice")
        r = t.query("127.0.0.1", port, "cluster.local", "NS")
        assert [str(x.rdata) for x in r.ar] == [vip]
        assert t.addresses(t.query("127.0.0.1", port, "kube-dns.kube-system.svc.cluster.local")) == [vip]

        async def remove_slice():
            async with Client(c.api) as cl:
                await cl.delete("EndpointSlice", "kube-dns-kubemu", "kube-system")
        procs.run(remove_slice())
        procs.wait_for(published, 5, message="the EndpointSlice to be recreated")
        assert "Traceback" not in proc.output()


def test_servfail_before_first_sync_then_answers_and_survives_api_outage(tmp_path):
    slot = procs.claim_slot()
    try:
        api_port = procs.free_port()
        api = f"127.0.0.1:{api_port}"
        with t.dns_process(api, str(tmp_path), "--upstream", "none") as (proc, port):
            # no API server yet: the zone is SERVFAIL, never a wrong NXDOMAIN
            for name in ("kubernetes.default.svc.cluster.local", "nope.default.svc.cluster.local"):
                assert t.query("127.0.0.1", port, name).header.rcode == RCODE.SERVFAIL
            assert t.query("127.0.0.1", port, "example.com").header.rcode == RCODE.REFUSED
            with procs.apiserver(str(tmp_path / "api"), port=api_port,
                                 service_cidr=slot.service_cidr) as (api_proc, _):
                async def create():
                    async with Client(api) as cl:
                        await cl.create(t.service("web", cluster_ip=f"127.{slot.index}.96.20"))
                procs.run(create())
                procs.wait_for(lambda: t.addresses(t.query("127.0.0.1", port, "web.default.svc.cluster.local"))
                               == [f"127.{slot.index}.96.20"], 10, message="answers after the first sync")
                api_proc.kill()
            # the API server is gone: the last snapshot keeps being served
            r = t.query("127.0.0.1", port, "web.default.svc.cluster.local")
            assert t.addresses(r) == [f"127.{slot.index}.96.20"]
            assert t.query("127.0.0.1", port, "nope.default.svc.cluster.local").header.rcode == RCODE.NXDOMAIN
            proc.signal(signal.SIGTERM)
            assert proc.popen.wait(10) == 0
            assert "Traceback" not in proc.output()
    finally:
        slot.release()


def test_sigterm_exits_cleanly(dns_cluster, tmp_path):
    with t.dns_process(dns_cluster.api, str(tmp_path)) as (proc, port):
        procs.wait_for(lambda: t.query("127.0.0.1", port, "default.svc.cluster.local").header.rcode
                       == RCODE.NOERROR, 10, message="synced")
        proc.signal(signal.SIGTERM)
        assert proc.popen.wait(10) == 0
        assert "Traceback" not in proc.output()


def test_bad_flags_are_one_line_errors(tmp_path):
    import subprocess
    out = subprocess.run(procs.kubemu_command("dns", "--server", "127.0.0.1:1", "--listen", "nope"),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--listen" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(procs.kubemu_command("dns", "--server", "127.0.0.1:1", "--upstream", "dns.google"),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--upstream" in out.stderr and "Traceback" not in out.stderr


def test_sigterm_before_first_sync_exits_cleanly(tmp_path):
    api = f"127.0.0.1:{procs.free_port()}"   # nothing listens there
    with t.dns_process(api, str(tmp_path), "--upstream", "none") as (proc, port):
        assert t.query("127.0.0.1", port, "default.svc.cluster.local").header.rcode == RCODE.SERVFAIL
        proc.signal(signal.SIGTERM)
        assert proc.popen.wait(10) == 0
        assert "Traceback" not in proc.output()


def test_a_busy_port_is_a_one_line_error():
    import socket
    import subprocess
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        out = subprocess.run(procs.kubemu_command("dns", "--server", "127.0.0.1:1", "--listen",
                                                  f"127.0.0.1:{port}"),
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "cannot listen on" in out.stderr and "Traceback" not in out.stderr
