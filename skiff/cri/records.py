"""The CRI's own records: what a sandbox is to kubelet, and the server's settings.

A sandbox is a skiff pod (table ``pods``: its infra container, members,
cgroup); what only the CRI knows about it — its metadata (name, uid,
namespace, attempt), the log directory, the runtime handler, the
namespace options and port mappings it was asked for, its network
namespace and pod IP, and whether StopPodSandbox was called — lives in
``cri_sandboxes``, one row per pod the CRI made, under the pod's ID. The
pod's name is the sandbox's CRI name (``names.sandbox_name``), so the
``pods`` table's unique name is what refuses a duplicate.

``cri_settings`` keeps what UpdateRuntimeConfig sets (the pod CIDR), so a
restarted server reports what kubelet last told it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from skiff.storage.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS cri_sandboxes (
    id TEXT PRIMARY KEY,
    created_ns INTEGER NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cri_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
"""


@dataclass
class SandboxConfig:
    """What RunPodSandbox was asked, as the status RPCs report it back."""

    name: str
    uid: str = ""
    namespace: str = ""
    attempt: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    log_directory: str = ""
    runtime_handler: str = ""
    hostname: str = ""
    network_mode: int = 0
    """NamespaceMode of the network: 0 POD, 2 NODE."""
    pid_mode: int = 1
    ipc_mode: int = 0
    target_id: str = ""
    port_mappings: list[dict[str, Any]] = field(default_factory=list)
    """CNI ``portMappings`` entries (hostPort, containerPort, protocol, hostIP)."""
    cgroup_parent: str = ""
    privileged: bool = False


@dataclass
class SandboxState:
    stopped: bool = False
    """StopPodSandbox was called: the sandbox stays NotReady until removed."""
    netns: str = ""
    """The network namespace made for it ("" for the node's network)."""
    ip: str = ""
    additional_ips: list[str] = field(default_factory=list)


@dataclass
class Sandbox:
    id: str
    created_ns: int
    config: SandboxConfig
    state: SandboxState


def _load(cls: type[Any], text: str) -> Any:
    data = json.loads(text)
    known = set(cls.__dataclass_fields__)
    return cls(**{k: v for k, v in data.items() if k in known})


class SandboxRecords:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("cri_sandboxes", SCHEMA)

    @staticmethod
    def _row(row: Any) -> Sandbox:
        return Sandbox(
            id=str(row["id"]),
            created_ns=int(row["created_ns"]),
            config=_load(SandboxConfig, row["config"]),
            state=_load(SandboxState, row["state"]),
        )

    def add(self, sandbox_id: str, config: SandboxConfig, state: SandboxState) -> Sandbox:
        created = time.time_ns()
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO cri_sandboxes(id, created_ns, config, state) VALUES (?,?,?,?)",
                (sandbox_id, created, json.dumps(asdict(config)), json.dumps(asdict(state))),
            )
        return Sandbox(sandbox_id, created, config, state)

    def find(self, sandbox_id: str) -> Sandbox | None:
        row = self.db.read_one("SELECT * FROM cri_sandboxes WHERE id=?", (sandbox_id,))
        return self._row(row) if row is not None else None

    def by_prefix(self, prefix: str) -> list[Sandbox]:
        rows = self.db.read(
            "SELECT * FROM cri_sandboxes WHERE id >= ? AND id < ? ORDER BY created_ns",
            (prefix, prefix + "\uffff"),
        )
        return [self._row(r) for r in rows]

    def all(self) -> list[Sandbox]:
        rows = self.db.read("SELECT * FROM cri_sandboxes ORDER BY created_ns")
        return [self._row(r) for r in rows]

    def save_state(self, sandbox: Sandbox) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE cri_sandboxes SET state=? WHERE id=?",
                (json.dumps(asdict(sandbox.state)), sandbox.id),
            )

    def delete(self, sandbox_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM cri_sandboxes WHERE id=?", (sandbox_id,))

    # --- settings ------------------------------------------------------------------

    def setting(self, key: str) -> str | None:
        row = self.db.read_one("SELECT value FROM cri_settings WHERE key=?", (key,))
        return str(row["value"]) if row is not None else None

    def set_setting(self, key: str, value: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO cri_settings(key, value) VALUES (?,?)", (key, value)
            )
