"""The netavark wrapper: a typed argv builder, the JSON it reads, the status it prints.

    netavark --config RUNROOT/networks --aardvark-binary AARDVARK setup|teardown NETNS

reads the request on stdin — ``container_id``, ``container_name``,
``networks`` (per network: ``static_ips``, ``aliases``, ``interface_name``),
``network_info`` (the network objects as podman writes them),
``port_mappings`` and ``dns_servers`` — and, for ``setup``, prints the
status per network (``interfaces`` with ``mac_address`` and ``subnets``,
``dns_server_ips``, ``dns_search_domains``). On failure it exits non-zero
and prints ``{"error": "..."}`` on stdout. netavark takes its own lock in
the config directory, so concurrent skiff processes are safe; the config
directory also holds aardvark-dns's records and pid file.

netavark 1.4 (Debian 12) is the reference; later versions read the same
request. The firewall driver is netavark's choice (iptables here, firewalld
when it runs).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from skiff.errors import ContainerError
from skiff.runtime.network.model import Network, NetworkResult, PerNetworkOptions, PortMapping

log = logging.getLogger(__name__)

LIBEXEC_DIRS = (
    Path("/usr/local/libexec/podman"),
    Path("/usr/local/lib/podman"),
    Path("/usr/libexec/podman"),
    Path("/usr/lib/podman"),
)
TIMEOUT = 120.0
"""netavark waits for its lock and for iptables; far more than this is a hang."""


def find_helper(name: str, env_var: str) -> Path:
    """A podman helper binary: $ENV_VAR, else podman's helper dirs, else PATH."""
    explicit = os.environ.get(env_var)
    if explicit:
        return Path(explicit)
    for directory in LIBEXEC_DIRS:
        candidate = directory / name
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ContainerError(
        f"{name} is not installed (looked in {', '.join(map(str, LIBEXEC_DIRS))} and $PATH)",
        f"install the {name} package, or set ${env_var} to its path",
    )


class NetavarkFailed(ContainerError):
    """netavark ran and reported an error (it undoes a failed setup itself)."""


@dataclass(frozen=True)
class NetavarkRequest:
    """The JSON netavark reads for one setup or teardown of one container."""

    container_id: str
    container_name: str
    networks: Mapping[str, PerNetworkOptions]
    network_info: Mapping[str, Network]
    port_mappings: Sequence[PortMapping] = ()
    dns_servers: Sequence[str] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "container_id": self.container_id,
            "container_name": self.container_name,
            "networks": {name: opts.to_json() for name, opts in self.networks.items()},
            "network_info": {name: net.to_json() for name, net in self.network_info.items()},
        }
        if self.port_mappings:
            out["port_mappings"] = [p.to_json() for p in self.port_mappings]
        if self.dns_servers:
            out["dns_servers"] = list(self.dns_servers)
        return out


@dataclass(frozen=True)
class Netavark:
    binary: Path
    config_dir: Path
    aardvark_binary: Path
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_run_root(cls, run_root: Path) -> Netavark:
        """netavark as skiff runs it: state (and aardvark-dns's) under RUNROOT/networks."""
        return cls(
            binary=find_helper("netavark", "SKIFF_NETAVARK"),
            config_dir=run_root / "networks",
            aardvark_binary=find_helper("aardvark-dns", "SKIFF_AARDVARK_DNS"),
        )

    def argv(self, command: Literal["setup", "teardown"], netns: Path) -> list[str]:
        return [
            str(self.binary),
            "--config",
            str(self.config_dir),
            "--aardvark-binary",
            str(self.aardvark_binary),
            command,
            str(netns),
        ]

    def _run(
        self, command: Literal["setup", "teardown"], netns: Path, request: NetavarkRequest
    ) -> bytes:
        self.config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        argv = self.argv(command, netns)
        payload = json.dumps(request.to_json()).encode()
        log.debug("running %s with %s", argv, payload.decode())
        env = dict(os.environ)
        env.update(self.extra_env)
        try:
            # aardvark-dns, started by netavark, detaches with its stdio on
            # /dev/null, so reading stdout to EOF does not wait for it
            proc = subprocess.run(
                argv,
                input=payload,
                capture_output=True,
                close_fds=True,
                timeout=TIMEOUT,
                env=env,
                check=False,
            )
        except FileNotFoundError as exc:
            raise ContainerError(
                f"cannot run netavark {self.binary}: not found", "install netavark"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise ContainerError(
                f"netavark {command} for container {request.container_name} did not finish "
                f"within {TIMEOUT:.0f} s",
                "check for a stuck netavark or iptables process",
            ) from exc
        if proc.returncode != 0:
            message = _error_message(proc.stdout, proc.stderr)
            raise NetavarkFailed(
                f"netavark {command} failed for container {request.container_name}: {message}",
                _hint(message),
            )
        return proc.stdout

    def setup(self, netns: Path, request: NetavarkRequest) -> dict[str, NetworkResult]:
        """Configure ``netns``; the status netavark reports, per network name."""
        out = self._run("setup", netns, request)
        try:
            data = json.loads(out)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            return {str(name): NetworkResult.from_json(block) for name, block in data.items()}
        except (ValueError, TypeError, KeyError) as exc:
            raise ContainerError(
                f"netavark setup for container {request.container_name} printed an unreadable "
                f"status: {exc}: {out[:200]!r}",
                "check that netavark is version 1.x",
            ) from exc

    def teardown(self, netns: Path, request: NetavarkRequest) -> None:
        """Undo ``setup`` for the networks (and ports) of ``request``."""
        self._run("teardown", netns, request)


def _error_message(stdout: bytes, stderr: bytes) -> str:
    """netavark's own message ({"error": ...} on stdout), else its stderr."""
    text = stdout.decode(errors="replace").strip()
    if text:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return _one_line(str(data["error"]))
    lines = [
        line
        for line in stderr.decode(errors="replace").splitlines()
        if line.strip() and "failed to connect to syslog" not in line
    ]
    return "; ".join(lines[-3:]) or text or "no message"


def _one_line(message: str) -> str:
    """netavark lists several errors on indented lines; the CLI prints one line."""
    parts = [p.strip().lstrip("- ").strip() for p in message.splitlines()]
    return "; ".join(p for p in parts if p).replace(":;", ":")


def _hint(message: str) -> str:
    lowered = message.lower()
    if "iptables" in lowered or "nft" in lowered:
        return "check the host firewall (iptables-save) and that netavark may change it (root)"
    if "address already in use" in lowered or "port" in lowered:
        return "another process or container already uses that host port; choose another -p"
    if "permission" in lowered or "operation not permitted" in lowered:
        return "container networking needs root"
    return "run with --log-level=debug to see the request sent to netavark"
