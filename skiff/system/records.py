"""System container records in the store's database (table ``system_containers``).

One row per installed system container: the active deployment's
``DeploymentInfo`` (name, image, image ID, rootfs, unit, values …) plus
what is installed on the host right now (``InstalledFile``s) — the list
uninstall removes and the next activation replaces. Indexed scalar
columns (image ID, deployment) beside the JSON, as the other tables do.

The record follows the deployment symlink, never leads it: it is written
after a switch, and ``install.recover`` rewrites it from the symlink when
a crash came in between.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skiff.system.deploy import DeploymentInfo
from skiff.system.hostfiles import InstalledFile

if TYPE_CHECKING:
    from skiff.storage.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS system_containers (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    deployment INTEGER NOT NULL,
    installed REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS system_containers_by_image ON system_containers(image_id);
"""


@dataclass
class SystemContainerRecord:
    info: DeploymentInfo
    """The active deployment."""
    installed_files: list[InstalledFile] = field(default_factory=list)
    installed: float = field(default_factory=time.time)
    """When the container was first installed."""
    updated: float = field(default_factory=time.time)
    slots: dict[int, float] = field(default_factory=dict)
    """The deployments this record knows (slot → its info's ``created``): the
    active one and the one to roll back to. A slot directory that is not
    here was built by an update that never switched to it."""

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def deployment(self) -> int:
        return self.info.index

    def to_json(self) -> dict[str, Any]:
        return {
            "info": self.info.to_json(),
            "installed_files": [f.to_json() for f in self.installed_files],
            "installed": self.installed,
            "updated": self.updated,
            "slots": {str(k): v for k, v in self.slots.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SystemContainerRecord:
        return cls(
            info=DeploymentInfo.from_json(data["info"]),
            installed_files=[InstalledFile.from_json(f) for f in data.get("installed_files", [])],
            installed=float(data.get("installed", 0.0)),
            updated=float(data.get("updated", 0.0)),
            slots={int(k): float(v) for k, v in dict(data.get("slots") or {}).items()},
        )


class Records:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("system_containers", SCHEMA)

    def get(self, name: str) -> SystemContainerRecord | None:
        row = self.db.read_one("SELECT data FROM system_containers WHERE name=?", (name,))
        return SystemContainerRecord.from_json(json.loads(row["data"])) if row else None

    def all(self) -> list[SystemContainerRecord]:
        rows = self.db.read("SELECT data FROM system_containers ORDER BY name")
        return [SystemContainerRecord.from_json(json.loads(r["data"])) for r in rows]

    def put(self, record: SystemContainerRecord) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO system_containers(name, image_id, deployment, installed, "
                "data) VALUES (?, ?, ?, ?, ?)",
                (
                    record.name,
                    record.info.image_id,
                    record.deployment,
                    record.installed,
                    json.dumps(record.to_json()),
                ),
            )

    def delete(self, name: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM system_containers WHERE name=?", (name,))

    def owners(self) -> dict[str, str]:
        """Host path → name of the system container that installed it."""
        out: dict[str, str] = {}
        for record in self.all():
            for f in record.installed_files:
                if f.kind != "dir":
                    out[f.path] = record.name
        return out
