"""certs.d lookup and SSLContexts, checked with real TLS handshakes on 127.0.0.1."""

from __future__ import annotations

import datetime
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from skiff.config import SystemContext
from skiff.errors import ConfigError
from skiff.image.certs import (
    TLSMaterial,
    cert_dir_for,
    read_cert_dir,
    ssl_context_for,
    ssl_context_from,
    tls_material_for,
)
from skiff.testing.tlsutil import CertificateAuthority

HOST = "127.0.0.1"


def self_signed_client() -> tuple[bytes, bytes]:
    """A self-signed client-auth certificate and key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "skiff test client")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture(scope="module")
def client_pem() -> tuple[bytes, bytes]:
    return self_signed_client()


class OneShotServer:
    """A TLS server on 127.0.0.1 that answers each handshake with b"ok"."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.errors: list[Exception] = []
        self.peer_certs: list[dict[str, object] | None] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.settimeout(10)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.peer_certs.append(tls.getpeercert())
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                self.errors.append(exc)

    def talk(self, client: ssl.SSLContext) -> bytes:
        with (
            socket.create_connection((HOST, self.port), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            return tls.recv(2)

    def close(self) -> None:
        # shutdown wakes the thread blocked in accept(); close alone would not
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=10)


@pytest.fixture
def server(ca: CertificateAuthority, tmp_path: Path) -> Iterator[OneShotServer]:
    context = ca.issue_server([HOST]).server_context(tmp_path / "server")
    srv = OneShotServer(context)
    yield srv
    srv.close()


def certs_d_with_ca(ca: CertificateAuthority, root: Path, host: str) -> Path:
    directory = root / "certs.d" / host
    directory.mkdir(parents=True)
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    return root / "certs.d"


# --- lookup ---------------------------------------------------------------------------------


def test_no_directory_means_no_material(tmp_path: Path) -> None:
    ctx = SystemContext(certs_dirs=(tmp_path / "a", tmp_path / "b"))
    assert tls_material_for(ctx, "reg.test:5000") == TLSMaterial()
    assert cert_dir_for(ctx, "reg.test:5000") is None


def test_first_certs_dir_with_the_host_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    (second / "reg.test:5000").mkdir(parents=True)
    (second / "reg.test:5000" / "b.crt").write_text("x")
    (first / "reg.test").mkdir(parents=True)  # no port: not the same registry
    ctx = SystemContext(certs_dirs=(first, second))
    assert cert_dir_for(ctx, "reg.test:5000") == second / "reg.test:5000"
    assert tls_material_for(ctx, "reg.test:5000").ca_files == (second / "reg.test:5000" / "b.crt",)
    (first / "reg.test:5000").mkdir()
    (first / "reg.test:5000" / "a.crt").write_text("x")
    # no merging across directories
    assert tls_material_for(ctx, "reg.test:5000").ca_files == (first / "reg.test:5000" / "a.crt",)
    assert cert_dir_for(ctx, "reg.test") == first / "reg.test"


def test_cert_dir_option_is_the_directory_itself(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("x")
    ctx = SystemContext(cert_dir=tmp_path, certs_dirs=(tmp_path / "ignored",))
    assert tls_material_for(ctx, "any.test").ca_files == (tmp_path / "ca.crt",)


def test_files_are_classified(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("z.crt", "a.crt", "client.cert", "client.key", "b.cert", "b.key", "README"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub.crt").mkdir()
    (tmp_path / "dangling.crt").symlink_to(tmp_path / "missing")
    with caplog.at_level(logging.WARNING, logger="skiff.image.certs"):
        material = read_cert_dir(tmp_path)
    assert material.ca_files == (tmp_path / "a.crt", tmp_path / "z.crt")
    assert material.client_pairs == (
        (tmp_path / "b.cert", tmp_path / "b.key"),
        (tmp_path / "client.cert", tmp_path / "client.key"),
    )
    assert material.directory == tmp_path
    assert "dangling" in caplog.text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("client.cert", r"client\.cert has no key client\.key"),
        ("client.key", r"has no certificate client\.cert"),
    ],
)
def test_half_a_client_pair_is_an_error(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / name).write_text("x")
    with pytest.raises(ConfigError, match=message):
        read_cert_dir(tmp_path)


@pytest.mark.parametrize("host", ["", "a/b", "..", "."])
def test_invalid_host_is_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="invalid registry"):
        tls_material_for(SystemContext(certs_dirs=(tmp_path,)), host)


def test_bad_pem_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"cannot load CA certificate .*bad\.crt"):
        ssl_context_from(TLSMaterial(ca_files=(bad,)), verify=True)


def test_mismatched_client_key_is_an_error(tmp_path: Path, client_pem: tuple[bytes, bytes]) -> None:
    (tmp_path / "c.cert").write_bytes(client_pem[0])
    (tmp_path / "c.key").write_bytes(self_signed_client()[1])
    with pytest.raises(ConfigError, match=r"cannot load client certificate .*c\.cert"):
        ssl_context_from(read_cert_dir(tmp_path), verify=True)


# --- handshakes ---------------------------------------------------------------------------------


def test_certs_d_ca_is_trusted(
    server: OneShotServer, ca: CertificateAuthority, tmp_path: Path
) -> None:
    certs_d = certs_d_with_ca(ca, tmp_path, server.host)
    ctx = SystemContext(certs_dirs=(tmp_path / "empty", certs_d))
    assert server.talk(ssl_context_for(ctx, server.host, verify=True)) == b"ok"


def test_without_the_ca_verification_fails(server: OneShotServer, tmp_path: Path) -> None:
    ctx = SystemContext(certs_dirs=(tmp_path,))
    with pytest.raises(ssl.SSLCertVerificationError):
        server.talk(ssl_context_for(ctx, server.host, verify=True))


def test_ca_for_another_port_is_not_used(
    server: OneShotServer, ca: CertificateAuthority, tmp_path: Path
) -> None:
    certs_d = certs_d_with_ca(ca, tmp_path, f"{HOST}:1")
    with pytest.raises(ssl.SSLCertVerificationError):
        server.talk(ssl_context_for(SystemContext(certs_dirs=(certs_d,)), server.host, verify=True))


def test_verify_false_accepts_an_untrusted_server(server: OneShotServer, tmp_path: Path) -> None:
    context = ssl_context_for(SystemContext(certs_dirs=(tmp_path,)), server.host, verify=False)
    assert not context.check_hostname
    assert server.talk(context) == b"ok"


def test_client_certificate_is_presented(
    ca: CertificateAuthority, client_pem: tuple[bytes, bytes], tmp_path: Path
) -> None:
    server_context = ca.issue_server([HOST]).server_context(tmp_path / "server")
    trusted_client = tmp_path / "trusted-client.pem"
    trusted_client.write_bytes(client_pem[0])
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.load_verify_locations(cafile=str(trusted_client))
    srv = OneShotServer(server_context)
    try:
        certs_d = certs_d_with_ca(ca, tmp_path, srv.host)
        host_dir = certs_d / srv.host
        ctx = SystemContext(certs_dirs=(certs_d,))

        # without a client pair the server refuses us
        with pytest.raises((ssl.SSLError, ConnectionError)):
            srv.talk(ssl_context_for(ctx, srv.host, verify=True))

        (host_dir / "client.cert").write_bytes(client_pem[0])
        (host_dir / "client.key").write_bytes(client_pem[1])
        assert srv.talk(ssl_context_for(ctx, srv.host, verify=True)) == b"ok"
        assert srv.talk(ssl_context_for(ctx, srv.host, verify=False)) == b"ok"
        subject = srv.peer_certs[-1]["subject"]  # type: ignore[index]
        assert subject == ((("commonName", "skiff test client"),),)
    finally:
        srv.close()
