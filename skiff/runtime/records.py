"""Container records: immutable config and mutable state, in the store's database.

A container's *config* is fixed at create (what to run and how: the
SpecGenerator the CLI built, the image, networks, restart policy); its
*state* changes with every lifecycle step (status, pids, exit code, times,
network status). They are kept apart, as libpod does, so a state update
never rewrites the intent. Both are JSON columns of ``runtime_containers``;
scalar columns (name, pod, image) are indexed for lookups.

Any skiff process may change a container, so every read-modify-write of a
container's state happens under its lock (``locks.container_lock``) and in
a database transaction.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from skiff.errors import ContainerUnknown, NameInUse
from skiff.storage.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS runtime_containers (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    pod_id TEXT,
    image_id TEXT,
    created REAL NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runtime_containers_by_pod ON runtime_containers(pod_id);
CREATE INDEX IF NOT EXISTS runtime_containers_by_image ON runtime_containers(image_id)
"""


class Status(StrEnum):
    """podman's container states (lower case, as ``ps --format {{.State}}`` prints them)."""

    CONFIGURED = "configured"
    CREATED = "created"
    INITIALIZED = "initialized"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXITED = "exited"
    REMOVING = "removing"


@dataclass
class RestartPolicy:
    name: str = "no"
    """no, on-failure, always, unless-stopped."""
    max_retries: int = 0


@dataclass
class ContainerConfig:
    """What the container is: fixed at create."""

    image_id: str | None
    image_name: str
    rootfs_image: bool = True
    """False for --rootfs containers (no image)."""
    spec: dict[str, Any] = field(default_factory=dict)
    """The SpecGenerator (dataclasses.asdict form)."""
    command: list[str] = field(default_factory=list)
    """The full argv that runs (entrypoint + cmd), for ps and inspect."""
    networks: list[str] = field(default_factory=list)
    network_mode: str = "bridge"
    """bridge, none, host, container:ID, ns:PATH, pod."""
    network_aliases: dict[str, list[str]] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)
    publish_all: bool = False
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    """Resolved named/anonymous volume mounts (name, destination, options)."""
    volumes_from: list[str] = field(default_factory=list)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    auto_remove: bool = False
    stop_signal: int = 15
    stop_timeout: int = 10
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    stdin: bool = False
    runtime: str = ""
    """The OCI runtime chosen at create (name or path)."""
    pod_id: str | None = None
    infra: bool = False
    """The pod's infra container."""
    log_driver: str = "k8s-file"
    log_path: str = ""
    hostname: str = ""
    created_by: str = "cli"
    """cli or cri: who made it (the CRI server's containers are listed by the CLI too)."""
    cri: dict[str, Any] = field(default_factory=dict)
    """CRI metadata (attempt, sandbox, log dir) for containers the CRI server made."""
    create_command: list[str] = field(default_factory=list)
    """The command line that created the container (inspect's Config.CreateCommand)."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerConfig:
        data = dict(data)
        restart = data.pop("restart", None) or {}
        known = set(cls.__dataclass_fields__)
        config = cls(**{k: v for k, v in data.items() if k in known and k != "restart"})
        config.restart = RestartPolicy(**restart)
        return config


@dataclass
class ContainerState:
    """Where the container is now: changes with every lifecycle step."""

    status: Status = Status.CREATED
    pid: int = 0
    conmon_pid: int = 0
    exit_code: int | None = None
    started_at: float = 0.0
    finished_at: float = 0.0
    oom_killed: bool = False
    restart_count: int = 0
    mount_point: str = ""
    netns: str = ""
    network_status: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    stopped_by_user: bool = False
    """A stop/kill from skiff (restart policies do not restart it then)."""
    exec_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    boot_id: str = ""
    """The boot the pids belong to; after a reboot they mean nothing."""
    checked: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerState:
        known = set(cls.__dataclass_fields__)
        state = cls(**{k: v for k, v in data.items() if k in known})
        state.status = Status(state.status)
        return state


@dataclass
class Container:
    id: str
    name: str
    created: float
    config: ContainerConfig
    state: ContainerState

    @property
    def pod_id(self) -> str | None:
        return self.config.pod_id

    @property
    def short_id(self) -> str:
        return self.id[:12]


class ContainerRecords:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("runtime_containers", SCHEMA)

    @staticmethod
    def _row(row: Any) -> Container:
        return Container(
            id=row["id"],
            name=row["name"],
            created=row["created"],
            config=ContainerConfig.from_json(json.loads(row["config"])),
            state=ContainerState.from_json(json.loads(row["state"])),
        )

    def add(
        self, container_id: str, name: str, config: ContainerConfig, state: ContainerState
    ) -> Container:
        created = time.time()
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM runtime_containers WHERE name=?", (name,)).fetchone():
                raise NameInUse(
                    f"the container name {name!r} is already in use by another container",
                    "remove that container or choose another name",
                )
            conn.execute(
                "INSERT INTO runtime_containers(id, name, pod_id, image_id, created, config, state) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    container_id,
                    name,
                    config.pod_id,
                    config.image_id,
                    created,
                    json.dumps(asdict(config)),
                    json.dumps(asdict(state)),
                ),
            )
        return Container(container_id, name, created, config, state)

    def find(self, ref: str) -> Container | None:
        """By full ID, name, or unique ID prefix (podman's order)."""
        row = self.db.read_one("SELECT * FROM runtime_containers WHERE id=?", (ref,))
        if row is None:
            row = self.db.read_one("SELECT * FROM runtime_containers WHERE name=?", (ref,))
        if row is None and len(ref) >= 1 and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.read(
                "SELECT * FROM runtime_containers WHERE id >= ? AND id < ?", (ref, ref + "g")
            )
            if len(rows) > 1:
                from skiff.errors import ContainerError

                raise ContainerError(
                    f"more than one result for container ID prefix {ref!r}",
                    "give more characters of the ID, or the name",
                )
            row = rows[0] if rows else None
        return self._row(row) if row is not None else None

    def get(self, ref: str) -> Container:
        found = self.find(ref)
        if found is None:
            raise ContainerUnknown(f"no container with name or ID {ref!r} found: no such container")
        return found

    def all(self) -> list[Container]:
        return [
            self._row(r) for r in self.db.read("SELECT * FROM runtime_containers ORDER BY created")
        ]

    def by_pod(self, pod_id: str) -> list[Container]:
        rows = self.db.read(
            "SELECT * FROM runtime_containers WHERE pod_id=? ORDER BY created", (pod_id,)
        )
        return [self._row(r) for r in rows]

    def by_image(self, image_id: str) -> list[Container]:
        rows = self.db.read("SELECT * FROM runtime_containers WHERE image_id=?", (image_id,))
        return [self._row(r) for r in rows]

    def save_state(self, container: Container) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE runtime_containers SET state=? WHERE id=?",
                (json.dumps(asdict(container.state)), container.id),
            )

    def save_config(self, container: Container) -> None:
        """Rewrite a container's config: only for what podman lets change after
        create (``update``'s resource limits), under the container's lock."""
        with self.db.write() as conn:
            conn.execute(
                "UPDATE runtime_containers SET config=? WHERE id=?",
                (json.dumps(asdict(container.config)), container.id),
            )

    def reload(self, container: Container) -> Container:
        row = self.db.read_one("SELECT * FROM runtime_containers WHERE id=?", (container.id,))
        if row is None:
            raise ContainerUnknown(f"container {container.short_id} was removed")
        return self._row(row)

    def rename(self, container_id: str, name: str) -> None:
        with self.db.write() as conn:
            if conn.execute(
                "SELECT 1 FROM runtime_containers WHERE name=? AND id<>?", (name, container_id)
            ).fetchone():
                raise NameInUse(
                    f"the container name {name!r} is already in use by another container"
                )
            conn.execute("UPDATE runtime_containers SET name=? WHERE id=?", (name, container_id))

    def delete(self, container_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM runtime_containers WHERE id=?", (container_id,))
