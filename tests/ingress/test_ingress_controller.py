"""`kubemu ingress-controller` as a real process against a real API server.

No node agents here: each Service gets an explicit cluster IP, and the test's backend listens
on that very address, standing in for the data plane. What is checked is the controller's
side: Ingresses, Services and Secrets read from the API drive the routes and certificates;
the IngressClass, the LoadBalancer Service and its EndpointSlice are published; the Service's
load-balancer address (written here as the cloud-lb would) becomes every Ingress's ADDRESS;
ports refused fall back and say so; SIGTERM ends the process cleanly.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl

import pytest

from ingress_helpers import Backend, Client, get
from kubemu import errors, objects
from kubemu.client import Client as ApiClient
from kubemu.testing import procs

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def controller_env(tmp_path_factory, ingress_slot):
    """API server + ingress controller on the module's slot; yields (api address, listen ip, proc)."""
    tmp = tmp_path_factory.mktemp("ingress-ctl")
    listen_ip = f"127.{ingress_slot.index}.255.254"
    with procs.apiserver(str(tmp / "api"), service_cidr=ingress_slot.service_cidr) as (_, api):
        proc = procs.Proc(procs.kubemu_command("ingress-controller", "--server", api, "--listen-ip", listen_ip,
                                               "--http-port", "0", "--https-port", "0", "--log-level", "debug"),
                          str(tmp / "ingress.log"))
        try:
            yield api, listen_ip, proc
        finally:
            proc.stop()
            out = proc.output()
            assert "Traceback" not in out, out[-3000:]


async def wait(predicate, timeout=15.0, message="condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        try:
            value = await predicate()
            if value:
                return value
        except Exception as e:  # until it holds
            last = e
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {message} (last error: {last!r})")


async def slice_ports(c: ApiClient) -> dict[str, int]:
    sl = await c.get("EndpointSlice", "ingress-kubemu-controller", "kube-system")
    return {p.name: p.port for p in sl.ports}


def test_controller_publishes_routes_and_reports_address(controller_env, ingress_slot, ingress_certs):
    api, listen_ip, proc = controller_env
    svc_ip = f"127.{ingress_slot.index}.96.50"

    async def body():
        backend = await Backend("web", svc_ip).start()
        async with ApiClient(api) as c:
            try:
                # what the controller publishes about itself
                ports = await wait(lambda: slice_ports(c), message="the controller's EndpointSlice")
                ic = await c.get("IngressClass", "kubemu")
                assert ic.spec.controller == "kubemu.io/ingress-controller"
                assert ic.metadata.annotations["ingressclass.kubernetes.io/is-default-class"] == "true"
                svc = await c.get("Service", "ingress-kubemu", "kube-system")
                assert svc.spec.type == "LoadBalancer" and not svc.spec.selector
                assert [(p.name, p.port) for p in svc.spec.ports] == [("http", 80), ("https", 443)]
                assert all(p.nodePort for p in svc.spec.ports)
                sl = await c.get("EndpointSlice", "ingress-kubemu-controller", "kube-system")
                assert list(sl.endpoints[0].addresses) == [listen_ip]
                assert sl.metadata.labels["kubernetes.io/service-name"] == "ingress-kubemu"

                # an app and the docs' TLS example, with a real certificate
                await c.create(objects.from_dict({
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "service1", "namespace": "default"},
                    "spec": {"clusterIP": svc_ip, "ports": [{"port": backend.port, "name": "http"}]}}))
                cert, key = ingress_certs["https-example.foo.com"]
                await c.create(objects.from_dict({
                    "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "metadata": {"name": "testsecret-tls", "namespace": "default"},
                    "stringData": {"tls.crt": cert.decode(), "tls.key": key.decode()}}))
                import yaml
                with open(os.path.join(HERE, "manifests", "tls-example-ingress.yaml")) as f:
                    doc = yaml.safe_load(f)
                # the docs' example names port 80; our stand-in backend listens elsewhere
                doc["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "http"}
                await c.create(objects.from_dict(doc, "Ingress"))

                async def routed():
                    r = await get(listen_ip, ports["http"], "/hello", vhost="https-example.foo.com")
                    return r.status == 200 and r.json()["server"] == "web"
                await wait(routed, message="the Ingress to route")
                r = await get(listen_ip, ports["http"], "/", vhost="nobody.example.com")
                assert r.status == 404

                ctx = ssl.create_default_context(cadata=cert.decode())
                tc = await Client(listen_ip, ports["https"], ssl_ctx=ctx, server_name="https-example.foo.com").connect()
                try:
                    r = await tc.request("GET", "/secure", host="https-example.foo.com")
                    assert r.status == 200 and r.json()["headers"]["x-forwarded-proto"] == "https"
                finally:
                    await tc.close()

                # the cloud-lb's part, played here: an address on the Service becomes the Ingress's
                svc = await c.get("Service", "ingress-kubemu", "kube-system")
                svc.status.loadBalancer.ingress.add().ip = f"127.{ingress_slot.index}.200.7"
                await c.update_status(svc)

                async def address():
                    ing = await c.get("Ingress", "tls-example-ingress", "default")
                    return [i.ip for i in ing.status.loadBalancer.ingress] == [f"127.{ingress_slot.index}.200.7"]
                await wait(address, message="the Ingress's status.loadBalancer")

                # an Ingress of another class is neither served nor given our address
                await c.create(objects.from_dict({
                    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": "other", "namespace": "default"},
                    "spec": {"ingressClassName": "nginx", "rules": [{"host": "other.io", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "service1", "port": {"name": "http"}}}}]}}]}}))
                await asyncio.sleep(0.5)
                r = await get(listen_ip, ports["http"], "/", vhost="other.io")
                assert r.status == 404
                other = await c.get("Ingress", "other", "default")
                assert not other.status.loadBalancer.ingress

                # the Service goes away: 503 with the reason, then it comes back
                await c.delete("Service", "service1", "default")

                async def unavailable():
                    r = await get(listen_ip, ports["http"], "/", vhost="https-example.foo.com")
                    return r.status == 503
                await wait(unavailable, message="503 once the Service is gone")
            finally:
                await backend.stop()
                for kind, name in (("Ingress", "tls-example-ingress"), ("Ingress", "other"),
                                   ("Secret", "testsecret-tls"), ("Service", "service1")):
                    with contextlib.suppress(errors.NotFound):
                        await c.delete(kind, name, "default")

    procs.run(body(), 60)


def test_refused_port_falls_back_and_sigterm_is_clean(tmp_path, ingress_slot):
    """A port taken by someone else: the controller serves on another and reports it."""
    listen_ip = f"127.{ingress_slot.index}.254.1"

    async def body(api):
        blocker = await asyncio.start_server(lambda r, w: w.close(), listen_ip, 0)
        taken = blocker.sockets[0].getsockname()[1]
        proc = procs.Proc(procs.kubemu_command("ingress-controller", "--server", api, "--listen-ip", listen_ip,
                                               "--http-port", str(taken), "--https-port", "0",
                                               "--no-publish-service"), str(tmp_path / "ingress.log"))
        try:
            async def logged():
                return "listens on" in proc.output() and "instead" in proc.output()
            await wait(logged, message="the fallback to be logged")
            assert f"cannot listen on {listen_ip}:{taken}" in proc.output()
            proc.signal(signal.SIGTERM)
            async def exited():
                return not proc.alive()
            await wait(exited, message="exit on SIGTERM")
            assert proc.popen.returncode == 0, proc.output()[-2000:]
            assert "Traceback" not in proc.output()
        finally:
            proc.stop()
            blocker.close()

    with procs.apiserver(str(tmp_path / "api"), service_cidr=ingress_slot.service_cidr) as (_, api):
        procs.run(body(api), 30)
