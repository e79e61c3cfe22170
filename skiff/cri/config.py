"""The CRI server's configuration: a small TOML file and command-line flags.

    listen = "unix:///run/skiff/cri.sock"   # the gRPC socket kubelet connects to
    streaming_address = "127.0.0.1"         # where Exec/Attach/PortForward URLs point
    streaming_port = 0                      # 0: any free port
    cni_config_dir = "/etc/cni/net.d"       # the first *.conflist/*.conf/*.json is used
    cni_plugin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
    pod_log_root = "/var/log/skiff/pods"    # logs of sandboxes without a log_directory
    default_runtime = ""                    # "runc", "crun", or "" (skiff's choice)
    pause_image = ""                        # "" is skiff's own catatonit image
    workers = 16                            # RPCs served at once
    certs_dirs = []                         # certs.d roots for registries ([]: the system's)

Flags given to ``skiff cri serve`` override the file; the file overrides
the defaults. Unknown keys and wrong types are refused by name, so a typo
does not silently fall back to a default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from skiff.errors import ConfigError

DEFAULT_SOCKET = "unix:///run/skiff/cri.sock"
DEFAULT_CNI_CONFIG_DIR = Path("/etc/cni/net.d")
DEFAULT_CNI_PLUGIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
DEFAULT_POD_LOG_ROOT = Path("/var/log/skiff/pods")
RUNTIMES = ("runc", "crun")


@dataclass(frozen=True)
class CRIConfig:
    listen: str = DEFAULT_SOCKET
    streaming_address: str = "127.0.0.1"
    streaming_port: int = 0
    cni_config_dir: Path = DEFAULT_CNI_CONFIG_DIR
    cni_plugin_dirs: tuple[Path, ...] = field(default=DEFAULT_CNI_PLUGIN_DIRS)
    pod_log_root: Path = DEFAULT_POD_LOG_ROOT
    default_runtime: str = ""
    pause_image: str = ""
    workers: int = 16
    certs_dirs: tuple[Path, ...] = ()
    """certs.d roots (HOST/ca.crt ...) for pulls; () keeps the system's."""

    @property
    def socket_path(self) -> Path:
        return socket_path(self.listen)

    @property
    def streaming_bind(self) -> str:
        host = self.streaming_address
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.streaming_port}"

    def with_overrides(self, **values: Any) -> CRIConfig:
        """A copy with the values that are not None (the flags given)."""
        chosen = {k: v for k, v in values.items() if v is not None}
        return check(replace(self, **chosen))


def socket_path(listen: str) -> Path:
    """``unix:///run/x.sock`` or ``/run/x.sock`` → the socket's path."""
    text = listen.removeprefix("unix://")
    if not text.startswith("/"):
        raise ConfigError(
            f"invalid CRI listen address {listen!r}",
            "give a unix socket: unix:///run/skiff/cri.sock",
        )
    return Path(text)


_KINDS: dict[str, type] = {
    "listen": str,
    "streaming_address": str,
    "streaming_port": int,
    "cni_config_dir": str,
    "cni_plugin_dirs": list,
    "pod_log_root": str,
    "default_runtime": str,
    "pause_image": str,
    "workers": int,
    "certs_dirs": list,
}


def load(path: Path | None) -> CRIConfig:
    """The configuration in ``path`` (None: the defaults)."""
    if path is None:
        return CRIConfig()
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(
            f"cannot read the CRI config {path}: {exc.strerror}", "check --config"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the CRI config {path} is not valid TOML: {exc}") from exc
    return check(from_mapping(data, str(path)))


def from_mapping(data: dict[str, Any], origin: str) -> CRIConfig:
    values: dict[str, Any] = {}
    known = {f.name for f in fields(CRIConfig)}
    for key, raw in data.items():
        if key not in known:
            raise ConfigError(
                f"unknown key {key!r} in the CRI config {origin}",
                "known keys: " + ", ".join(sorted(known)),
            )
        kind = _KINDS[key]
        if not isinstance(raw, kind) or isinstance(raw, bool):
            raise ConfigError(f"{key} in the CRI config {origin} must be a {kind.__name__}")
        value: Any = raw
        if key in ("cni_plugin_dirs", "certs_dirs"):
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{key} in the CRI config {origin} must list paths")
            values[key] = tuple(Path(v) for v in value)
        elif key in ("cni_config_dir", "pod_log_root"):
            values[key] = Path(value)
        else:
            values[key] = value
    return CRIConfig(**values)


def check(config: CRIConfig) -> CRIConfig:
    socket_path(config.listen)
    if not 0 <= config.streaming_port <= 65535:
        raise ConfigError(f"invalid streaming_port {config.streaming_port}", "use 0-65535")
    if config.default_runtime and config.default_runtime not in RUNTIMES:
        raise ConfigError(
            f"unknown default_runtime {config.default_runtime!r}",
            "use runc, crun or leave it empty",
        )
    if config.workers < 1:
        raise ConfigError(f"invalid workers {config.workers}", "at least 1")
    for name in ("cni_config_dir", "pod_log_root"):
        if not getattr(config, name).is_absolute():
            raise ConfigError(f"{name} must be an absolute path, not {getattr(config, name)}")
    return config
