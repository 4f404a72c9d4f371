"""TLS termination: which certificate answers a TLS hello, and the SSL contexts that hold them.

`compile_tls(ingresses)` is pure: from the `tls` sections of our Ingresses it derives which
Secret serves which server name (SNI). `CertStore` turns Secrets of type kubernetes.io/tls
(any Secret with `tls.crt` and `tls.key`, as ingress-nginx accepts) into `ssl.SSLContext`s,
rebuilt only when a Secret's resourceVersion changes, and its `sni_callback` swaps the
context of each handshake: exact name, then a wildcard name (`*.foo.com`, one label), then a
`tls` section without hosts, else the controller's own self-signed certificate (the role of
ingress-nginx's "Kubernetes Ingress Controller Fake Certificate"). A client sending no SNI
(curl to an IP) gets that default certificate.

The proxy speaks HTTP/1.1 only, so ALPN offers just `http/1.1`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import ssl
import subprocess
import tempfile
from typing import Iterable, Mapping

from kubemu.ingress.routing import age_key
from kubemu.v1 import objects_pb2 as pb

log = logging.getLogger("kubemu.ingress.tls")

TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY = "tls.crt", "tls.key"
FAKE_CERT_CN = "Kubernetes Ingress Controller Fake Certificate"


@dataclasses.dataclass(frozen=True)
class TLSTable:
    exact: Mapping[str, str]  # server name -> "namespace/secret"
    wildcard: Mapping[str, str]  # "foo.com" (from "*.foo.com") -> "namespace/secret"
    any_host: str | None  # a tls section without hosts

    def secret_for(self, server_name: str | None) -> str | None:
        if server_name:
            name = server_name.rstrip(".").lower()
            found = self.exact.get(name)
            if found is not None:
                return found
            first, _, rest = name.partition(".")
            if first and rest:
                found = self.wildcard.get(rest)
                if found is not None:
                    return found
        return self.any_host

    def secrets(self) -> set[str]:
        return {*self.exact.values(), *self.wildcard.values(), *([self.any_host] if self.any_host else [])}


def compile_tls(ingresses: Iterable[pb.Ingress]) -> TLSTable:
    """Server name -> Secret from our Ingresses' tls sections; the oldest Ingress wins a name."""
    exact: dict[str, str] = {}
    wildcard: dict[str, str] = {}
    any_host: str | None = None
    for ing in sorted(ingresses, key=age_key):
        for t in ing.spec.tls:
            if not t.secretName:
                continue  # no secret: the default certificate, as ingress-nginx does
            secret = f"{ing.metadata.namespace}/{t.secretName}"
            if not t.hosts and any_host is None:
                any_host = secret
            for host in t.hosts:
                host = host.lower()
                if host.startswith("*."):
                    wildcard.setdefault(host[2:], secret)
                else:
                    exact.setdefault(host, secret)
    return TLSTable(exact, wildcard, any_host)


# ------------------------------------------------------------------ SSL contexts


def server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def context_from_pem(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """An SSL context serving this certificate chain. ssl only loads files, so the PEM goes
    through a private temporary directory that is removed at once."""
    ctx = server_context()
    d = tempfile.mkdtemp(prefix="kubemu-ingress-tls-")
    try:
        cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        for path, data in ((cert, cert_pem), (key, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert, key)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return ctx


def generate_self_signed(common_name: str, hosts: Iterable[str] = (), days: int = 3650) -> tuple[bytes, bytes]:
    """A self-signed certificate and its key (PEM): with `cryptography` when installed, else
    with the openssl command line."""
    hosts = list(hosts)
    try:
        return _generate_with_cryptography(common_name, hosts, days)
    except ImportError:
        pass
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("cannot make a certificate: neither the `cryptography` package nor "
                           "the openssl command is available")
    d = tempfile.mkdtemp(prefix="kubemu-ingress-cert-")
    try:
        cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        args = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", key, "-out", cert, "-days", str(days), "-subj", f"/CN={common_name}"]
        if hosts:
            args += ["-addext", "subjectAltName=" + ",".join(f"DNS:{h}" for h in hosts)]
        subprocess.run(args, check=True, capture_output=True)
        with open(cert, "rb") as c, open(key, "rb") as k:
            return c.read(), k.read()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _generate_with_cryptography(common_name: str, hosts: list[str], days: int) -> tuple[bytes, bytes]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days)))
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


class CertStore:
    """SSL contexts for the Secrets our Ingresses name, and the SNI callback that picks one."""

    def __init__(self, default: ssl.SSLContext):
        self.default = default
        self.table = TLSTable({}, {}, None)
        self.contexts: dict[str, tuple[str, ssl.SSLContext | None]] = {}  # secret -> (rv, ctx)
        self.errors: dict[str, str] = {}  # secret -> why it cannot serve
        default.sni_callback = self._sni

    def update(self, table: TLSTable, secrets: Mapping[str, pb.Secret]) -> None:
        """Load what changed; drop contexts no Ingress needs any more."""
        wanted = table.secrets()
        for key in list(self.contexts):
            if key not in wanted:
                del self.contexts[key]
                self.errors.pop(key, None)
        for key in wanted:
            secret = secrets.get(key)
            if secret is None:
                self.contexts.pop(key, None)
                self.errors[key] = f'secret "{key}" not found'
                continue
            rv = secret.metadata.resourceVersion
            if key in self.contexts and self.contexts[key][0] == rv:
                continue
            ctx, error = None, ""
            cert, pkey = secret.data.get(TLS_CERT_KEY), secret.data.get(TLS_PRIVATE_KEY_KEY)
            if not cert or not pkey:
                error = f'secret "{key}" has no {TLS_CERT_KEY} and {TLS_PRIVATE_KEY_KEY}'
            else:
                try:
                    ctx = context_from_pem(cert, pkey)
                except (ssl.SSLError, OSError, ValueError) as e:
                    error = f'secret "{key}" holds no usable certificate and key: {e}'
            self.contexts[key] = (rv, ctx)
            if error:
                self.errors[key] = error
                log.warning("%s; serving the default certificate instead", error)
            else:
                self.errors.pop(key, None)
        self.table = table

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        key = self.table.secret_for(server_name)
        if key is not None:
            entry = self.contexts.get(key)
            if entry is not None and entry[1] is not None:
                return entry[1]
        return self.default

    def _sni(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        with contextlib.suppress(Exception):  # an exception here would abort the handshake
            ctx = self.context_for(server_name)
            if ctx is not self.default:
                sslobj.context = ctx
        return None
