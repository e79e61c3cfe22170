"""TLS material and loopback HTTP(S) servers for the test fixtures.

Tests must prove that skiff trusts a registry through ``certs.d`` and not
through the system store, so every TLS endpoint the fixtures start (the
registries, the token service, the fault proxy) presents a certificate from
a CA made here, per test session, that nothing else on the machine trusts.

Keys are ECDSA P-256: generating one takes about a millisecond (RSA-2048
takes ~50 ms), and Go's TLS stack and Distribution's token verifier
(libtrust) both accept it.

``LoopbackServer`` is the small threaded ``http.server`` the token service
and the fault proxy share: bound to 127.0.0.1 on a free port, optionally
TLS, with the handshake done in the connection's own thread so a stuck
client cannot block the accept loop.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(hours=1)
"""Certificates start an hour in the past so clock skew cannot reject them."""


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "skiff tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@dataclass(frozen=True)
class IssuedCert:
    """A certificate issued by a test CA, with its private key.

    ``cert_pem``/``key_pem`` are PEM bytes; ``certificate`` and ``key`` the
    parsed objects (the token service signs JWTs with ``key``).
    """

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write ``STEM.crt`` and ``STEM.key`` (mode 0600) into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{stem}.crt"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(self.key_pem)
        return cert_path, key_path

    def server_context(self, directory: Path, stem: str = "server") -> ssl.SSLContext:
        """A server-side SSLContext presenting this certificate.

        ``ssl`` loads certificates only from files, so they are written to
        ``directory`` first.
        """
        cert_path, key_path = self.write(directory, stem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context


_SIGNATURE_ONLY = (
    x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    ),
    True,
)
"""KeyUsage of the leaf certificates (critical): an ECDSA key that only signs,
for a TLS handshake or a bearer token alike."""


class CertificateAuthority:
    """A self-signed CA that issues server and signing certificates.

    One is made per test session; it is trusted only where a test installs
    it (``install_certs_d``, ``client_context``).
    """

    def __init__(self, common_name: str = "skiff test CA") -> None:
        now = datetime.datetime.now(datetime.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = _name(common_name)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def _issue(
        self,
        common_name: str,
        extensions: Iterable[tuple[x509.ExtensionType, bool]],
    ) -> IssuedCert:
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return IssuedCert(builder.sign(self._key, hashes.SHA256()), key)

    def issue_server(self, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> IssuedCert:
        """A TLS server certificate whose SANs are ``hosts`` (IPs or DNS names).

        Go refuses certificates that name their host only in the CN, so the
        SANs are what counts.
        """
        return self._issue(
            hosts[0],
            [
                (x509.SubjectAlternativeName([_san(h) for h in hosts]), False),
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
                _SIGNATURE_ONLY,
            ],
        )

    def issue_signing(self, common_name: str = "skiff test token signer") -> IssuedCert:
        """A certificate for signing bearer tokens (its chain goes in ``x5c``)."""
        return self._issue(common_name, [_SIGNATURE_ONLY])

    def install_certs_d(self, certs_d: Path, hosts: Iterable[str]) -> list[Path]:
        """Write ``CERTS_D/HOST/ca.crt`` for each ``host`` ("127.0.0.1:PORT").

        That is the layout containers/image (and skiff) look up per registry.
        """
        written = []
        for host in hosts:
            host_dir = certs_d / host
            host_dir.mkdir(parents=True, exist_ok=True)
            path = host_dir / "ca.crt"
            path.write_bytes(self.cert_pem)
            written.append(path)
        return written

    def client_context(self) -> ssl.SSLContext:
        """A client SSLContext trusting only this CA (for urllib3/http.client)."""
        return ssl.create_default_context(cadata=self.cert_pem.decode())


# --- loopback servers -------------------------------------------------------


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP(S) server on 127.0.0.1, on a free port.

    ``handler`` instances reach the server through ``self.server`` as
    usual. ``start()`` serves in a daemon thread; ``stop()`` shuts the loop
    down, closes the listening socket and waits for the thread.
    """

    daemon_threads = True
    allow_reuse_address = False
    handshake_timeout = 10.0

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.ssl_context = ssl_context
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as registries are named."""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.ssl_context is None:
            return sock, address
        wrapped = self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(self.handshake_timeout)
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):
                # The client refused our certificate or went away: that is
                # its answer (tests assert on the client side), not ours.
                return
            request.settimeout(None)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are routine here; anything else is printed."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | ssl.SSLError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"{type(self).__name__}-{self.port}",
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
