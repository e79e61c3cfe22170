"""Pod networking through CNI plugins, as kubelet's runtimes do it.

The network: the first file in the config directory (``*.conflist``,
``*.conf``, ``*.json``, in lexical order, as libcni and CRI-O pick the
default network) that parses as a network configuration list, or as a
single network configuration (wrapped into a list of one). Files that do
not parse are skipped with a warning; none at all makes the runtime's
``NetworkReady`` condition false, and a sandbox that needs a network fails.

The protocol (CNI spec 0.4.0/1.0.0; 0.3.x results read too): every plugin
is an executable found by its ``type`` in the plugin directories, run with
``CNI_COMMAND`` (ADD, CHECK, DEL), ``CNI_CONTAINERID`` (the sandbox ID),
``CNI_NETNS`` (the namespace's path), ``CNI_IFNAME`` (eth0), ``CNI_PATH``
(the plugin directories) and ``CNI_ARGS`` (``IgnoreUnknown=1`` and
kubelet's ``K8S_POD_*`` keys), its own configuration on stdin with the
list's ``name`` and ``cniVersion``, the previous plugin's result as
``prevResult``, and the ``runtimeConfig`` entries its ``capabilities`` ask
for (``portMappings`` for portmap: the sandbox's hostPort mappings). ADD
runs the chain in order and keeps the last result; CHECK runs it in order
with that result; DEL runs it in reverse with that result. A plugin that
fails answers with a JSON error (``code``, ``msg``, ``details``) on stdout
and a non-zero exit; that becomes the error of the RPC.

Every attachment is recorded in the store's database before ADD runs
(table ``cri_network_attachments``: the namespace, the exact configuration
list used, the arguments and, once ADD succeeded, its result), so DEL runs
with what ADD had — the same plugins, the same ``prevResult`` — even after
the server restarted or the config directory changed; a DEL without a
record does nothing. A DEL that fails keeps the record, so the next
StopPodSandbox tries again.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skiff.errors import ConfigError, ContainerError
from skiff.storage.db import Database

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS cri_network_attachments (
    id TEXT PRIMARY KEY,
    netns TEXT NOT NULL,
    ifname TEXT NOT NULL,
    network TEXT NOT NULL,
    cni_args TEXT NOT NULL,
    runtime_config TEXT NOT NULL,
    result TEXT,
    created REAL NOT NULL
)
"""

DEFAULT_IFNAME = "eth0"
PLUGIN_TIMEOUT = 120.0
"""Seconds one plugin may take (bridge and host-local take milliseconds)."""
CONFIG_SUFFIXES = (".conflist", ".conf", ".json")


class CNIError(ContainerError):
    """A CNI plugin failed, or the network configuration is unusable."""


@dataclass(frozen=True)
class NetworkList:
    """One network configuration list (the plugins of one network, in order)."""

    name: str
    cni_version: str
    plugins: tuple[dict[str, Any], ...]
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cniVersion": self.cni_version,
            "plugins": [dict(p) for p in self.plugins],
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkList:
        return cls(
            name=str(data["name"]),
            cni_version=str(data["cniVersion"]),
            plugins=tuple(dict(p) for p in data["plugins"]),
            source=str(data.get("source", "")),
        )


def parse_network(text: str, source: str) -> NetworkList:
    """A ``.conflist`` (``plugins``) or a single ``.conf`` network; ConfigError if neither."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"CNI config {source} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"CNI config {source} is not a JSON object")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"CNI config {source} has no network name")
    version = data.get("cniVersion", "0.4.0")
    if not isinstance(version, str):
        raise ConfigError(f"CNI config {source}: cniVersion must be a string")
    plugins = data.get("plugins")
    if plugins is None:
        if not isinstance(data.get("type"), str):
            raise ConfigError(f"CNI config {source} has neither plugins nor a type")
        plugins = [{k: v for k, v in data.items() if k not in ("name", "cniVersion")}]
    if not isinstance(plugins, list) or not plugins:
        raise ConfigError(f"CNI config {source}: plugins must be a non-empty list")
    for plugin in plugins:
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
            raise ConfigError(f"CNI config {source}: every plugin needs a type")
    return NetworkList(name, version, tuple(plugins), source)


def find_network(config_dir: Path) -> NetworkList | None:
    """The default network of ``config_dir`` (see the module docstring), or None."""
    try:
        entries = sorted(p for p in config_dir.iterdir() if p.suffix in CONFIG_SUFFIXES)
    except OSError:
        return None
    for path in entries:
        try:
            return parse_network(path.read_text(), str(path))
        except (OSError, ConfigError) as exc:
            log.warning("skipping CNI config %s: %s", path, exc)
    return None


@dataclass
class CNIResult:
    """What ADD answered, reduced to what the CRI reports."""

    raw: dict[str, Any]
    ips: list[str] = field(default_factory=list)

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> CNIResult:
        return cls(raw, result_ips(raw))

    @property
    def primary_ip(self) -> str:
        """The first IPv4 address (the pod IP kubelet reports), else the first address."""
        for ip in self.ips:
            if ipaddress.ip_address(ip).version == 4:
                return ip
        return self.ips[0] if self.ips else ""

    @property
    def additional_ips(self) -> list[str]:
        primary = self.primary_ip
        return [ip for ip in self.ips if ip != primary]


def result_ips(raw: dict[str, Any]) -> list[str]:
    """The addresses of a result: ``ips[].address`` (0.3.0+), or ``ip4``/``ip6`` (0.1/0.2)."""
    out: list[str] = []
    entries = raw.get("ips")
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("address"), str):
                out.append(entry["address"].split("/", 1)[0])
    for key in ("ip4", "ip6"):
        legacy = raw.get(key)
        if isinstance(legacy, dict) and isinstance(legacy.get("ip"), str):
            out.append(legacy["ip"].split("/", 1)[0])
    return [ip for ip in out if _is_ip(ip)]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _version_at_least(version: str, wanted: tuple[int, int, int]) -> bool:
    parts = []
    for piece in version.split(".")[:3]:
        parts.append(int(piece) if piece.isdigit() else 0)
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts) >= wanted


@dataclass(frozen=True)
class PodIdentity:
    """kubelet's CNI_ARGS for one sandbox."""

    name: str = ""
    namespace: str = ""
    uid: str = ""

    def cni_args(self, sandbox_id: str) -> str:
        pairs = [
            ("IgnoreUnknown", "1"),
            ("K8S_POD_NAMESPACE", self.namespace),
            ("K8S_POD_NAME", self.name),
            ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id),
            ("K8S_POD_UID", self.uid),
        ]
        return ";".join(f"{k}={v}" for k, v in pairs)


@dataclass(frozen=True)
class Invocation:
    """One sandbox's attachment: everything every command of the chain is given."""

    container_id: str
    netns: str
    ifname: str
    network: NetworkList
    cni_args: str
    runtime_config: dict[str, Any]


class PluginRunner:
    """Runs CNI plugin executables (the one place they are executed)."""

    def __init__(self, plugin_dirs: Sequence[Path], timeout: float = PLUGIN_TIMEOUT) -> None:
        self.plugin_dirs = tuple(plugin_dirs)
        self.timeout = timeout

    def find(self, plugin_type: str) -> Path:
        if "/" in plugin_type or not plugin_type:
            raise CNIError(f"invalid CNI plugin type {plugin_type!r}")
        for directory in self.plugin_dirs:
            candidate = directory / plugin_type
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        raise CNIError(
            f"CNI plugin {plugin_type!r} not found in {', '.join(map(str, self.plugin_dirs))}",
            "install containernetworking-plugins or set cni_plugin_dirs",
        )

    def argv(self, plugin_type: str) -> list[str]:
        return [str(self.find(plugin_type))]

    def run(self, command: str, inv: Invocation, conf: dict[str, Any]) -> dict[str, Any] | None:
        """Run one plugin; its result (None when it printed nothing, as DEL may)."""
        plugin_type = str(conf["type"])
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": inv.container_id,
            "CNI_NETNS": inv.netns,
            "CNI_IFNAME": inv.ifname,
            "CNI_ARGS": inv.cni_args,
            "CNI_PATH": os.pathsep.join(str(d) for d in self.plugin_dirs),
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        }
        what = f"CNI {command} of plugin {plugin_type} (network {inv.network.name})"
        try:
            proc = subprocess.run(
                self.argv(plugin_type),
                input=json.dumps(conf).encode(),
                capture_output=True,
                env=env,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CNIError(f"{what} did not finish in {self.timeout:g}s") from exc
        except OSError as exc:
            raise CNIError(f"cannot run {what}: {exc.strerror or exc}") from exc
        if proc.returncode != 0:
            raise CNIError(f"{what} failed: {_plugin_error(proc.stdout, proc.stderr)}")
        text = proc.stdout.strip()
        if not text:
            return None
        try:
            result = json.loads(text)
        except ValueError as exc:
            raise CNIError(f"{what} answered with something that is not JSON") from exc
        if not isinstance(result, dict):
            raise CNIError(f"{what} answered with something that is not a JSON object")
        return result


def _plugin_error(stdout: bytes, stderr: bytes) -> str:
    try:
        data = json.loads(stdout)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("msg"):
        message = str(data["msg"])
        if data.get("details"):
            message += f" ({data['details']})"
        return f"{message} (code {data.get('code', '?')})"
    text = (stderr or stdout).decode(errors="replace").strip()
    return text.splitlines()[-1] if text else "no error message"


def plugin_config(
    inv: Invocation, plugin: dict[str, Any], prev_result: dict[str, Any] | None
) -> dict[str, Any]:
    """What one plugin of the chain reads on stdin (libcni's buildOneConfig)."""
    conf = dict(plugin)
    conf["name"] = inv.network.name
    conf["cniVersion"] = inv.network.cni_version
    if prev_result is not None:
        conf["prevResult"] = prev_result
    capabilities = plugin.get("capabilities")
    if isinstance(capabilities, dict):
        runtime = {
            key: value for key, value in inv.runtime_config.items() if capabilities.get(key) is True
        }
        if runtime:
            conf["runtimeConfig"] = runtime
    return conf


class CNI:
    """The CRI server's pod networking (see the module docstring)."""

    def __init__(self, db: Database, config_dir: Path, plugin_dirs: Sequence[Path]) -> None:
        self.db = db
        self.config_dir = config_dir
        self.plugins = PluginRunner(plugin_dirs)
        db.ensure_schema("cri_network_attachments", SCHEMA)

    # --- status ------------------------------------------------------------------

    def network(self) -> NetworkList | None:
        return find_network(self.config_dir)

    def status(self) -> tuple[bool, str]:
        """(ready, why not): kubelet's NetworkReady condition."""
        network = self.network()
        if network is None:
            return False, f"no CNI configuration found in {self.config_dir}"
        try:
            for plugin in network.plugins:
                self.plugins.find(str(plugin["type"]))
        except CNIError as exc:
            return False, str(exc)
        return True, ""

    # --- records ---------------------------------------------------------------------

    def _record(self, inv: Invocation) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO cri_network_attachments"
                "(id, netns, ifname, network, cni_args, runtime_config, result, created) "
                "VALUES (?,?,?,?,?,?,NULL,?)",
                (
                    inv.container_id,
                    inv.netns,
                    inv.ifname,
                    json.dumps(inv.network.to_json()),
                    inv.cni_args,
                    json.dumps(inv.runtime_config),
                    time.time(),
                ),
            )

    def _save_result(self, container_id: str, result: dict[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE cri_network_attachments SET result=? WHERE id=?",
                (json.dumps(result), container_id),
            )

    def _load(self, container_id: str) -> tuple[Invocation, dict[str, Any] | None] | None:
        row = self.db.read_one("SELECT * FROM cri_network_attachments WHERE id=?", (container_id,))
        if row is None:
            return None
        inv = Invocation(
            container_id=container_id,
            netns=str(row["netns"]),
            ifname=str(row["ifname"]),
            network=NetworkList.from_json(json.loads(row["network"])),
            cni_args=str(row["cni_args"]),
            runtime_config=json.loads(row["runtime_config"]),
        )
        result = json.loads(row["result"]) if row["result"] else None
        return inv, result

    def _forget(self, container_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM cri_network_attachments WHERE id=?", (container_id,))

    def result(self, container_id: str) -> CNIResult | None:
        """The recorded result of ADD for a sandbox (None: not attached)."""
        loaded = self._load(container_id)
        if loaded is None or loaded[1] is None:
            return None
        return CNIResult.from_raw(loaded[1])

    def attached(self) -> list[str]:
        """IDs of every sandbox with an attachment record."""
        return [str(r["id"]) for r in self.db.read("SELECT id FROM cri_network_attachments")]

    # --- commands ----------------------------------------------------------------------

    def add(
        self,
        container_id: str,
        netns: Path,
        pod: PodIdentity,
        *,
        port_mappings: Sequence[dict[str, Any]] = (),
        ifname: str = DEFAULT_IFNAME,
    ) -> CNIResult:
        """Attach the sandbox's namespace to the default network (ADD, in order)."""
        network = self.network()
        if network is None:
            raise CNIError(
                f"cannot set up the network of sandbox {container_id}: "
                f"no CNI configuration found in {self.config_dir}",
                "add a network configuration list there, or set cni_config_dir",
            )
        runtime_config: dict[str, Any] = {}
        if port_mappings:
            runtime_config["portMappings"] = list(port_mappings)
        inv = Invocation(
            container_id=container_id,
            netns=str(netns),
            ifname=ifname,
            network=network,
            cni_args=pod.cni_args(container_id),
            runtime_config=runtime_config,
        )
        self._record(inv)
        prev: dict[str, Any] | None = None
        try:
            for plugin in network.plugins:
                result = self.plugins.run("ADD", inv, plugin_config(inv, plugin, prev))
                if result is not None:
                    prev = result
        except CNIError:
            self._delete_chain(inv, prev, quiet=True)
            self._forget(container_id)
            raise
        final = prev or {}
        self._save_result(container_id, final)
        return CNIResult.from_raw(final)

    def check(self, container_id: str) -> None:
        """CHECK the recorded attachment (CNI 0.4.0+; older versions have no CHECK)."""
        loaded = self._load(container_id)
        if loaded is None:
            raise CNIError(f"sandbox {container_id} has no network attachment to check")
        inv, result = loaded
        if not _version_at_least(inv.network.cni_version, (0, 4, 0)):
            return
        for plugin in inv.network.plugins:
            self.plugins.run("CHECK", inv, plugin_config(inv, plugin, result))

    def delete(self, container_id: str) -> None:
        """DEL the recorded attachment (in reverse order) and forget it; nothing
        recorded: nothing to do."""
        loaded = self._load(container_id)
        if loaded is None:
            return
        inv, result = loaded
        self._delete_chain(inv, result, quiet=False)
        self._forget(container_id)

    def _delete_chain(self, inv: Invocation, result: dict[str, Any] | None, *, quiet: bool) -> None:
        prev = result if _version_at_least(inv.network.cni_version, (0, 4, 0)) else None
        errors: list[str] = []
        for plugin in reversed(inv.network.plugins):
            try:
                self.plugins.run("DEL", inv, plugin_config(inv, plugin, prev))
            except CNIError as exc:
                errors.append(exc.message)
        if errors and not quiet:
            raise CNIError(
                f"tearing down the network of sandbox {inv.container_id}: " + "; ".join(errors),
                "the attachment is kept: stopping the sandbox again retries",
            )
        for message in errors:
            log.warning("undoing a failed CNI ADD: %s", message)
