"""The system context: everything an operation needs to know about its host.

One frozen ``SystemContext`` is built by the CLI (from global flags and the
environment) or by the CRI server (from its config) and passed down; library
code never reads global flags or environment variables itself except through
the ``default_*`` helpers here. Per-side variations (skopeo's
``--src-tls-verify`` vs ``--dest-tls-verify``) are ``dataclasses.replace``
copies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_STORAGE_ROOT = Path("/var/lib/skiff/storage")
DEFAULT_RUN_ROOT = Path("/run/skiff")
SYSTEM_REGISTRIES_CONF = Path("/etc/containers/registries.conf")
SYSTEM_REGISTRIES_CONF_DIR = Path("/etc/containers/registries.conf.d")
SYSTEM_REGISTRIES_D = Path("/etc/containers/registries.d")
SYSTEM_POLICY = Path("/etc/containers/policy.json")
SYSTEM_CERTS_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))
SECCOMP_PROFILE = Path("/usr/share/containers/seccomp.json")


def default_auth_file() -> Path:
    """Where podman/skopeo keep credentials: $REGISTRY_AUTH_FILE, else
    $XDG_RUNTIME_DIR/containers/auth.json, else /run/containers/$UID/auth.json."""
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        return Path(explicit)
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return Path(runtime_dir) / "containers" / "auth.json"
    return Path(f"/run/containers/{os.getuid()}/auth.json")


def default_registries_conf() -> Path:
    explicit = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    if explicit:
        return Path(explicit)
    if os.getuid() != 0:
        user = Path.home() / ".config" / "containers" / "registries.conf"
        if user.exists():
            return user
    return SYSTEM_REGISTRIES_CONF


def default_policy_path() -> Path:
    user = Path.home() / ".config" / "containers" / "policy.json"
    if user.exists():
        return user
    return SYSTEM_POLICY


def default_auth_fallback_files() -> tuple[Path, ...]:
    """Read-only credential files podman/skopeo consult after the auth file, in
    their order: $XDG_CONFIG_HOME/containers/auth.json (default ~/.config),
    $DOCKER_CONFIG/config.json (else ~/.docker/config.json), and ~/.dockercfg
    (legacy format: the "auths" map at top level)."""
    home = Path.home()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    docker_config = os.environ.get("DOCKER_CONFIG")
    docker_dir = Path(docker_config) if docker_config else home / ".docker"
    return (
        Path(config_home) / "containers" / "auth.json",
        docker_dir / "config.json",
        home / ".dockercfg",
    )


def default_registries_d() -> Path:
    user = Path.home() / ".config" / "containers" / "registries.d"
    if user.is_dir():
        return user
    return SYSTEM_REGISTRIES_D


@dataclass(frozen=True)
class SystemContext:
    """Host configuration for one operation (or one side of a copy)."""

    # registries and authentication
    registries_conf: Path | None = None
    """None: $CONTAINERS_REGISTRIES_CONF or the system file."""
    registries_conf_dir: Path | None = None
    """None: the ``.d`` directory beside the registries.conf in use (see
    ``registries_conf_dir_paths``)."""
    auth_file: Path | None = None
    """None: ``default_auth_file()``; also read: $HOME/.docker/config.json."""
    credentials: tuple[str, str] | None = None
    """``--creds USER:PASS``: overrides the auth file."""
    registry_token: str | None = None
    """``--registry-token``: a bearer token used as is."""
    no_creds: bool = False
    tls_verify: bool | None = None
    """None: verify unless registries.conf marks the registry insecure."""
    cert_dir: Path | None = None
    """``--cert-dir``: replaces the certs.d lookup for this operation."""
    certs_dirs: tuple[Path, ...] = SYSTEM_CERTS_DIRS
    user_agent: str = "skiff"
    retry_times: int = 3
    retry_delay: float = 0.0
    """0: exponential backoff starting at 1 s."""

    # platform choice from an index
    override_os: str | None = None
    override_arch: str | None = None
    override_variant: str | None = None

    # trust
    policy_path: Path | None = None
    insecure_policy: bool = False
    registries_d: Path | None = None
    lookaside_timeout: float = 30.0
    """Seconds to wait for an http(s) lookaside server to answer."""

    # local store
    storage_root: Path = DEFAULT_STORAGE_ROOT
    run_root: Path = DEFAULT_RUN_ROOT
    storage_driver: str | None = None

    # local transports
    oci_shared_blob_dir: Path | None = None
    """``--src-shared-blob-dir``/``--dest-shared-blob-dir``: ``oci:`` layouts
    keep blobs here (``ALG/HEX``) instead of in their own ``blobs/``."""

    blob_info_cache: Path | None = None
    """None: ``blob-info-cache.sqlite`` in the storage root."""

    tmp_dir: Path = field(default_factory=lambda: Path(os.environ.get("TMPDIR", "/var/tmp")))

    def registries_conf_path(self) -> Path:
        return self.registries_conf or default_registries_conf()

    def auth_file_path(self) -> Path:
        return self.auth_file or default_auth_file()

    def policy_file_path(self) -> Path:
        return self.policy_path or default_policy_path()

    def auth_fallback_paths(self) -> tuple[Path, ...]:
        """Credential files read after ``auth_file_path()``; none when the auth
        file was chosen explicitly (``--authfile`` or $REGISTRY_AUTH_FILE), as
        podman does."""
        if self.auth_file is not None or os.environ.get("REGISTRY_AUTH_FILE"):
            return ()
        return default_auth_fallback_files()

    def registries_conf_dir_paths(self) -> tuple[Path, ...]:
        """Drop-in directories for registries.conf, in loading order.

        ``registries_conf_dir`` if set; else the ``.d`` directory beside the
        registries.conf in use, followed (when that is the system file) by
        ~/.config/containers/registries.conf.d, as containers/image does.
        """
        if self.registries_conf_dir is not None:
            return (self.registries_conf_dir,)
        conf = self.registries_conf_path()
        dirs = [conf.with_name(conf.name + ".d")]
        if conf == SYSTEM_REGISTRIES_CONF:
            user = Path.home() / ".config" / "containers" / "registries.conf.d"
            if user != dirs[0]:
                dirs.append(user)
        return tuple(dirs)

    def blob_info_cache_path(self) -> Path:
        return self.blob_info_cache or self.storage_root / "blob-info-cache.sqlite"

    def registries_d_path(self) -> Path:
        return self.registries_d or default_registries_d()
