"""Real Distribution registries (Debian's ``docker-registry``) for tests.

A registry is a subprocess on a free loopback port with its storage on the
filesystem under a directory the test owns, so tests can look at (and
corrupt) the blobs the registry serves. Four variants:

``PLAIN``  HTTP, no auth.
``TLS``    HTTPS with a certificate from the session's test CA; clients
           trust it only through ``certs.d`` (``CERTS_D/HOST/ca.crt``).
``BASIC``  TLS + htpasswd (bcrypt) basic auth; one user, full access.
``TOKEN``  TLS + bearer tokens from ``skiff.testing.tokenserver``: a push
           user, a read-only user, and anonymous pull of one public repo.

Starting one takes ~40 ms: the launcher waits until ``/v2/`` answers
(polling under a deadline) and fails with the registry's log if it exits
or never answers. The child gets ``PR_SET_PDEATHSIG`` (through
``setpriv``) so a killed test run leaves no registry behind; that ties its
life to the *thread* that started it, so start registries from a
long-lived thread (pytest's main thread).
"""

from __future__ import annotations

import dataclasses
import enum
import http.client
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from skiff.config import SystemContext
from skiff.oci.digest import Digest
from skiff.testing.network import free_port
from skiff.testing.tlsutil import CertificateAuthority
from skiff.testing.tokenserver import ALL_REPOSITORY_ACTIONS, TokenServer, TokenUser

REGISTRY_BINARY = "docker-registry"
STARTUP_DEADLINE = 10.0
STOP_DEADLINE = 5.0
_PORT_ATTEMPTS = 3


class Variant(enum.Enum):
    PLAIN = "plain"
    TLS = "tls"
    BASIC = "basic"
    TOKEN = "token"  # noqa: S105 - a variant name, not a secret

    @property
    def uses_tls(self) -> bool:
        return self is not Variant.PLAIN


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    @property
    def creds(self) -> str:
        """``USER:PASS`` as ``--creds`` takes it."""
        return f"{self.username}:{self.password}"

    def as_tuple(self) -> tuple[str, str]:
        """As ``SystemContext.credentials`` takes it."""
        return (self.username, self.password)


BASIC_USER = Credentials("skiff", "basic-secret")
TOKEN_PUSHER = Credentials("pusher", "push-secret")
TOKEN_READER = Credentials("reader", "read-secret")
PUBLIC_REPOSITORY = "public/busybox"
TOKEN_SERVICE = "skiff-test-registry"  # noqa: S105 - a service name
TOKEN_ISSUER = "skiff-test-token-issuer"  # noqa: S105 - an issuer name


class RegistryStartError(RuntimeError):
    """The registry process exited or never answered; the message has its log."""


@dataclass
class RunningRegistry:
    """A started registry and everything a test needs to talk to it.

    Fields:
      ``variant``          which of PLAIN/TLS/BASIC/TOKEN.
      ``host``             ``127.0.0.1:PORT`` (use it in references: ``HOST/repo:tag``).
      ``url``              ``http://HOST`` or ``https://HOST``.
      ``root_dir``         everything of this registry lives here (removed on stop).
      ``storage_dir``      the filesystem driver's root; blobs are at
                           ``blob_path(digest)``: corrupt or delete them there.
      ``config_path``      the registry's config.yml.
      ``log_path``         its stdout/stderr (warn level; shown when startup fails).
      ``certs_dir``        TLS variants: a certs.d root holding ``HOST/ca.crt`` (also
                           ``localhost:PORT``); None for PLAIN.
      ``cert_dir``         TLS variants: ``certs_dir/HOST``, for ``--cert-dir``.
      ``ca_cert``          TLS variants: the CA certificate (PEM file).
      ``credentials``      BASIC: the only user; TOKEN: the push user; PLAIN/TLS: None.
      ``readonly_credentials`` TOKEN: a pull-only user; else None.
      ``public_repository``    TOKEN: anonymous pull is allowed here; else None.
      ``users``            every username → password the registry accepts.
      ``registries_conf``  a registries.conf naming this registry (PLAIN: insecure),
                           with no search registries.
      ``auth_file``        a path in ``root_dir`` that does not exist (so the host's
                           auth.json is never read); tests may write one there.
      ``context``          a SystemContext for this registry: its registries.conf,
                           certs.d, the unused auth file and, for PLAIN, ``tls_verify=False``.
                           No credentials: use ``context_with(creds)``.
      ``token_server``     TOKEN: the TokenServer (its ``requests`` log); else None.
    """

    variant: Variant
    host: str
    url: str
    root_dir: Path
    storage_dir: Path
    config_path: Path
    log_path: Path
    registries_conf: Path
    auth_file: Path
    context: SystemContext
    process: subprocess.Popen[bytes]
    certs_dir: Path | None = None
    cert_dir: Path | None = None
    ca_cert: Path | None = None
    credentials: Credentials | None = None
    readonly_credentials: Credentials | None = None
    public_repository: str | None = None
    users: dict[str, str] = field(default_factory=dict)
    token_server: TokenServer | None = None
    ca: CertificateAuthority | None = None
    _log_file: IO[bytes] | None = None

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    def context_with(self, credentials: Credentials | None) -> SystemContext:
        """``context`` carrying ``credentials`` (None: explicitly anonymous)."""
        if credentials is None:
            return dataclasses.replace(self.context, credentials=None, no_creds=True)
        return dataclasses.replace(self.context, credentials=credentials.as_tuple())

    def client_ssl_context(self) -> ssl.SSLContext | None:
        """An SSLContext trusting this registry (None for PLAIN)."""
        return self.ca.client_context() if self.ca is not None else None

    def blob_path(self, digest: Digest | str) -> Path:
        """Where the filesystem driver keeps a blob's content."""
        parsed = digest if isinstance(digest, Digest) else Digest.parse(digest)
        return (
            self.storage_dir
            / "docker/registry/v2/blobs"
            / parsed.algorithm
            / parsed.hex[:2]
            / parsed.hex
            / "data"
        )

    def repository_dir(self, name: str) -> Path:
        """The driver's directory of one repository (links, tags, uploads)."""
        return self.storage_dir / "docker/registry/v2/repositories" / name

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, remove: bool = True) -> None:
        """Terminate (then kill) the registry and its token server; remove ``root_dir``."""
        try:
            _stop_process(self.process)
        finally:
            if self.token_server is not None:
                self.token_server.stop()
                self.token_server = None
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if remove:
                shutil.rmtree(self.root_dir, ignore_errors=True)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _registries_conf(host: str, insecure: bool) -> str:
    alias = "localhost:" + host.rsplit(":", 1)[1]
    lines = ["unqualified-search-registries = []", ""]
    for location in (host, alias):
        lines += [
            "[[registry]]",
            f'location = "{location}"',
            f"insecure = {'true' if insecure else 'false'}",
            "",
        ]
    return "\n".join(lines)


def _htpasswd(users: dict[str, str]) -> str:
    import bcrypt

    # Cost 4 (bcrypt's minimum): Distribution checks the hash on every
    # request, and a test registry needs no work factor.
    return "".join(
        f"{name}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
        for name, pw in users.items()
    )


def _registry_config(
    port: int, storage: Path, tls: tuple[Path, Path] | None, auth: dict[str, Any] | None
) -> dict[str, Any]:
    http_section: dict[str, Any] = {
        "addr": f"127.0.0.1:{port}",
        # a fixed secret: upload state is HMAC'd with it; random per start is
        # fine but the registry warns when it has to make one up
        "secret": "skiff-test-registry-secret",
    }
    if tls is not None:
        http_section["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            # no background upload purging: tests inspect uploads on disk
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http_section,
    }
    if auth is not None:
        config["auth"] = auth
    return config


def _wait_ready(
    process: subprocess.Popen[bytes], port: int, ssl_context: ssl.SSLContext | None
) -> str | None:
    """Poll ``GET /v2/`` until it answers 200/401. Returns None when ready,
    else the reason (process exited, deadline passed)."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    last_error = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with status {process.returncode}"
        conn: http.client.HTTPConnection
        if ssl_context is not None:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=ssl_context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
            if status in (200, 401):
                return None
            last_error = f"GET /v2/ answered {status}"
        except ssl.SSLError as exc:
            return f"TLS handshake failed: {exc}"
        except OSError as exc:
            last_error = str(exc)
        finally:
            conn.close()
        # Polling interval while the port is not yet open (~40 ms total).
        time.sleep(0.005)
    return f"did not answer GET /v2/ within {STARTUP_DEADLINE}s ({last_error})"


class RegistryFactory:
    """Starts registries under ``base_dir`` and stops them all on ``close()``.

    One factory per scope: conftest keeps a session one for the shared
    registries and a function one for tests that need a private registry.
    ``ca`` is the test CA every TLS variant (and token server) uses.
    """

    def __init__(self, base_dir: Path, ca: CertificateAuthority) -> None:
        self.base_dir = base_dir
        self.ca = ca
        self._started: list[RunningRegistry] = []
        self._counter = 0

    def __enter__(self) -> RegistryFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        errors: list[BaseException] = []
        while self._started:
            registry = self._started.pop()
            try:
                registry.stop()
            except Exception as exc:  # stop the rest, then report the first
                errors.append(exc)
        if errors:
            raise errors[0]

    def start(
        self, variant: Variant = Variant.PLAIN, extra_config: dict[str, Any] | None = None
    ) -> RunningRegistry:
        """Start a registry of ``variant``; it is stopped by ``close()``.

        ``extra_config`` adds top-level sections to its config.yml (e.g.
        ``{"compatibility": {"schema1": {"enabled": True}}}`` to accept
        Docker schema 1 pushes).
        """
        self._counter += 1
        root = self.base_dir / f"registry-{variant.value}-{self._counter}"
        root.mkdir(parents=True)
        try:
            registry = self._start(variant, root, extra_config or {})
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        self._started.append(registry)
        return registry

    def _start(self, variant: Variant, root: Path, extra_config: dict[str, Any]) -> RunningRegistry:
        storage = root / "storage"
        storage.mkdir()
        tls_dir = root / "tls"
        tls_files: tuple[Path, Path] | None = None
        if variant.uses_tls:
            server = self.ca.issue_server(("127.0.0.1", "localhost"))
            tls_files = server.write(tls_dir, "registry")

        token_server: TokenServer | None = None
        auth: dict[str, Any] | None = None
        users: dict[str, str] = {}
        credentials = readonly = None
        public = None
        if variant is Variant.BASIC:
            credentials = BASIC_USER
            users = {BASIC_USER.username: BASIC_USER.password}
            htpasswd = root / "htpasswd"
            htpasswd.write_text(_htpasswd(users))
            auth = {"htpasswd": {"realm": "skiff-test-registry", "path": str(htpasswd)}}
        elif variant is Variant.TOKEN:
            credentials, readonly, public = TOKEN_PUSHER, TOKEN_READER, PUBLIC_REPOSITORY
            users = {c.username: c.password for c in (TOKEN_PUSHER, TOKEN_READER)}
            signing = self.ca.issue_signing()
            bundle = tls_dir / "token-root.crt"
            bundle.write_bytes(self.ca.cert_pem)
            token_server = TokenServer(
                signing=signing,
                users={
                    TOKEN_PUSHER.username: TokenUser(
                        TOKEN_PUSHER.password, ALL_REPOSITORY_ACTIONS, catalog=True
                    ),
                    TOKEN_READER.username: TokenUser(TOKEN_READER.password, frozenset({"pull"})),
                },
                issuer=TOKEN_ISSUER,
                service=TOKEN_SERVICE,
                public_repositories=(PUBLIC_REPOSITORY,),
                server_tls=self.ca.issue_server(("127.0.0.1", "localhost")),
                tls_dir=tls_dir,
            ).start()
            auth = {
                "token": {
                    "realm": token_server.realm,
                    "service": TOKEN_SERVICE,
                    "issuer": TOKEN_ISSUER,
                    "rootcertbundle": str(bundle),
                }
            }

        try:
            process, port, log_file = self._launch(
                root, storage, tls_files, auth, variant, extra_config=extra_config
            )
        except BaseException:
            if token_server is not None:
                token_server.stop()
            raise

        host = f"127.0.0.1:{port}"
        certs_dir = cert_dir = ca_cert = None
        if variant.uses_tls:
            certs_dir = root / "certs.d"
            self.ca.install_certs_d(certs_dir, (host, f"localhost:{port}"))
            cert_dir = certs_dir / host
            ca_cert = cert_dir / "ca.crt"
        registries_conf = root / "registries.conf"
        registries_conf.write_text(_registries_conf(host, insecure=not variant.uses_tls))
        auth_file = root / "auth" / "auth.json"
        context = SystemContext(
            registries_conf=registries_conf,
            registries_conf_dir=root / "registries.conf.d",
            auth_file=auth_file,
            certs_dirs=(certs_dir,) if certs_dir is not None else (),
            tls_verify=None if variant.uses_tls else False,
            tmp_dir=root / "tmp",
        )
        (root / "tmp").mkdir()
        return RunningRegistry(
            variant=variant,
            host=host,
            url=f"{'https' if variant.uses_tls else 'http'}://{host}",
            root_dir=root,
            storage_dir=storage,
            config_path=root / "config.yml",
            log_path=root / "registry.log",
            registries_conf=registries_conf,
            auth_file=auth_file,
            context=context,
            process=process,
            certs_dir=certs_dir,
            cert_dir=cert_dir,
            ca_cert=ca_cert,
            credentials=credentials,
            readonly_credentials=readonly,
            public_repository=public,
            users=users,
            token_server=token_server,
            ca=self.ca if variant.uses_tls else None,
            _log_file=log_file,
        )

    def _launch(
        self,
        root: Path,
        storage: Path,
        tls_files: tuple[Path, Path] | None,
        auth: dict[str, Any] | None,
        variant: Variant,
        *,
        extra_config: dict[str, Any],
    ) -> tuple[subprocess.Popen[bytes], int, IO[bytes]]:
        """Start the process on a free port; retry on a lost port race."""
        import yaml

        config_path = root / "config.yml"
        log_path = root / "registry.log"
        ssl_context = self.ca.client_context() if tls_files is not None else None
        binary = shutil.which(REGISTRY_BINARY)
        if binary is None:
            raise RegistryStartError(
                f"{REGISTRY_BINARY} not found on PATH (install the Debian package docker-registry)"
            )
        reason = ""
        for _attempt in range(_PORT_ATTEMPTS):
            port = free_port()
            config = {**_registry_config(port, storage, tls_files, auth), **extra_config}
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))
            log_file = log_path.open("wb")
            process = subprocess.Popen(
                ["setpriv", "--pdeathsig", "TERM", "--", binary, "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            failure = _wait_ready(process, port, ssl_context)
            if failure is None:
                return process, port, log_file
            _stop_process(process)
            log_file.close()
            log = log_path.read_text(errors="replace")
            reason = f"{failure}; log:\n{log[-4000:]}"
            if "address already in use" not in log:
                break
        raise RegistryStartError(f"{variant.value} registry in {root} did not start: {reason}")
