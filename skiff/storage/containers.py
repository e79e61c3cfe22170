"""Storage-level containers: a read-write layer over an image, with a name.

This is containers/storage's notion of a container (its filesystem), not
the runtime's (process, state, config): the runtime keeps its own records
and refers to these by ID.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from skiff.errors import ContainerUnknown, NameInUse
from skiff.storage.db import Database


@dataclass(frozen=True)
class StorageContainer:
    id: str
    name: str
    image_id: str | None
    layer_id: str
    created: float
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class ContainerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _from_row(row: sqlite3.Row) -> StorageContainer:
        return StorageContainer(
            id=row["id"],
            name=row["name"] or "",
            image_id=row["image_id"],
            layer_id=row["layer_id"],
            created=row["created"],
            metadata=json.loads(row["metadata"] or "{}"),
        )

    def get(self, ref: str) -> StorageContainer:
        found = self.find(ref)
        if found is None:
            raise ContainerUnknown(f"no container with name or ID {ref!r} found")
        return found

    def find(self, ref: str) -> StorageContainer | None:
        row = self.db.read_one("SELECT * FROM storage_containers WHERE id=? OR name=?", (ref, ref))
        if row is not None:
            return self._from_row(row)
        if len(ref) >= 3 and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.read(
                "SELECT * FROM storage_containers WHERE id >= ? AND id < ?", (ref, ref + "g")
            )
            if len(rows) == 1:
                return self._from_row(rows[0])
        return None

    def all(self) -> list[StorageContainer]:
        return [
            self._from_row(r)
            for r in self.db.read("SELECT * FROM storage_containers ORDER BY created")
        ]

    def by_image(self, image_id: str) -> list[StorageContainer]:
        rows = self.db.read("SELECT * FROM storage_containers WHERE image_id=?", (image_id,))
        return [self._from_row(r) for r in rows]

    def create(
        self,
        container_id: str,
        name: str,
        image_id: str | None,
        layer_id: str,
        metadata: dict[str, Any] | None = None,
    ) -> StorageContainer:
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM storage_containers WHERE name=?", (name,)).fetchone():
                raise NameInUse(
                    f"the container name {name!r} is already in use",
                    "remove that container or choose another name",
                )
            conn.execute(
                "INSERT INTO storage_containers(id, name, image_id, layer_id, created, metadata) "
                "VALUES (?,?,?,?,?,?)",
                (container_id, name, image_id, layer_id, time.time(), json.dumps(metadata or {})),
            )
        return self.get(container_id)

    def rename(self, container_id: str, name: str) -> None:
        with self.db.write() as conn:
            if conn.execute(
                "SELECT 1 FROM storage_containers WHERE name=? AND id<>?", (name, container_id)
            ).fetchone():
                raise NameInUse(f"the container name {name!r} is already in use")
            conn.execute("UPDATE storage_containers SET name=? WHERE id=?", (name, container_id))

    def set_metadata(self, container_id: str, metadata: dict[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE storage_containers SET metadata=? WHERE id=?",
                (json.dumps(metadata), container_id),
            )

    def delete(self, container_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM storage_containers WHERE id=?", (container_id,))
