"""Pod records in the store's database (table ``pods``).

One row per pod: ID, unique name, creation time, the config as JSON
(``serde``: typed round trip of ``PodConfig``) and the small mutable
state. Members are found through ``runtime_containers.pod_id`` (indexed),
so a pod row never lists its containers and cannot disagree with them.

Any skiff process may change a pod; pod-wide operations (start, stop,
remove) hold the pod's lock (``locks.pod_lock``), taken before any of its
containers' locks.
"""

from __future__ import annotations

import time
from typing import Any

from skiff.errors import NameInUse, StorageError
from skiff.runtime import serde
from skiff.runtime.pods.model import Pod, PodConfig, PodState, unknown_pod
from skiff.storage.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS pods (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    created REAL NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL
)
"""


def _dumps(value: Any) -> str:
    import json

    return json.dumps(serde.to_data(value), separators=(",", ":"))


def _loads(cls: type[Any], text: str) -> Any:
    import json

    return serde.from_data(cls, json.loads(text))


class PodRecords:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema("pods", SCHEMA)

    @staticmethod
    def _row(row: Any) -> Pod:
        return Pod(
            id=row["id"],
            name=row["name"],
            created=row["created"],
            config=_loads(PodConfig, row["config"]),
            state=_loads(PodState, row["state"]),
        )

    def add(self, pod_id: str, name: str, config: PodConfig) -> Pod:
        created = time.time()
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM pods WHERE name=?", (name,)).fetchone():
                raise NameInUse(
                    f'adding pod to state: name "{name}" is in use: pod already exists',
                    "remove that pod or choose another name (or use --replace)",
                )
            if conn.execute("SELECT 1 FROM pods WHERE id=?", (pod_id,)).fetchone():
                raise NameInUse(f"a pod with ID {pod_id} already exists")
            conn.execute(
                "INSERT INTO pods(id, name, created, config, state) VALUES (?,?,?,?,?)",
                (pod_id, name, created, _dumps(config), _dumps(PodState())),
            )
        return Pod(pod_id, name, created, config, PodState())

    def find(self, ref: str) -> Pod | None:
        """By full ID, name, or unique ID prefix (podman's order)."""
        row = self.db.read_one("SELECT * FROM pods WHERE id=?", (ref,))
        if row is None:
            row = self.db.read_one("SELECT * FROM pods WHERE name=?", (ref,))
        if row is None and ref and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.read("SELECT * FROM pods WHERE id >= ? AND id < ?", (ref, ref + "g"))
            if len(rows) > 1:
                raise StorageError(
                    f"more than one result for pod ID prefix {ref!r}",
                    "give more characters of the ID, or the name",
                )
            row = rows[0] if rows else None
        return self._row(row) if row is not None else None

    def get(self, ref: str) -> Pod:
        found = self.find(ref)
        if found is None:
            raise unknown_pod(ref)
        return found

    def all(self) -> list[Pod]:
        return [self._row(r) for r in self.db.read("SELECT * FROM pods ORDER BY created")]

    def names(self) -> dict[str, str]:
        """Pod ID → name, for listings of containers."""
        return {str(r["id"]): str(r["name"]) for r in self.db.read("SELECT id, name FROM pods")}

    def reload(self, pod: Pod) -> Pod:
        row = self.db.read_one("SELECT * FROM pods WHERE id=?", (pod.id,))
        if row is None:
            raise unknown_pod(pod.id)
        return self._row(row)

    def save_state(self, pod: Pod) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE pods SET state=? WHERE id=?", (_dumps(pod.state), pod.id))

    def save_config(self, pod: Pod) -> None:
        """Only at create (the infra ID is known once the infra exists)."""
        with self.db.write() as conn:
            conn.execute("UPDATE pods SET config=? WHERE id=?", (_dumps(pod.config), pod.id))

    def delete(self, pod_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM pods WHERE id=?", (pod_id,))
