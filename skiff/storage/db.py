"""The store's metadata: one SQLite database per store (WAL, busy timeout).

Every skiff process — CLI, builder, CRI server — opens the same database, so
this is where concurrent processes meet. Writes happen in ``write()``
transactions (``BEGIN IMMEDIATE``: the database write lock is taken at the
start, so a read-modify-write cannot interleave with another process).
Reads outside a transaction see a consistent snapshot per statement.

Tables owned by the runtime (containers' state, pods, networks, volumes) live
in the same database under their own names; they are created by their
modules through ``ensure_schema``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from skiff.errors import StorageError, StoreCorrupt

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000

STORAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS layers (
    id TEXT PRIMARY KEY,
    parent TEXT,
    diff_id TEXT,
    uncompressed_size INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    incomplete INTEGER NOT NULL DEFAULT 0,
    owner_pid INTEGER,
    owner_boot TEXT,
    read_only INTEGER NOT NULL DEFAULT 1,
    mount_count INTEGER NOT NULL DEFAULT 0,
    mount_boot TEXT,
    mount_point TEXT,
    link TEXT
);
CREATE INDEX IF NOT EXISTS layers_by_diff_id ON layers(diff_id);
CREATE INDEX IF NOT EXISTS layers_by_parent ON layers(parent);
CREATE TABLE IF NOT EXISTS layer_blobs (
    layer_id TEXT NOT NULL,
    compressed_digest TEXT NOT NULL,
    compression TEXT NOT NULL,
    compressed_size INTEGER NOT NULL DEFAULT -1,
    PRIMARY KEY (layer_id, compressed_digest)
);
CREATE INDEX IF NOT EXISTS layer_blobs_by_digest ON layer_blobs(compressed_digest);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    top_layer TEXT,
    created REAL NOT NULL,
    added REAL NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    manifest BLOB,
    manifest_type TEXT,
    config BLOB NOT NULL,
    digest TEXT
);
CREATE INDEX IF NOT EXISTS images_by_top_layer ON images(top_layer);
CREATE TABLE IF NOT EXISTS image_names (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    added REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS image_names_by_image ON image_names(image_id);
CREATE TABLE IF NOT EXISTS image_digests (
    digest TEXT NOT NULL,
    image_id TEXT NOT NULL,
    PRIMARY KEY (digest, image_id)
);
CREATE TABLE IF NOT EXISTS image_data (
    image_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (image_id, key)
);
CREATE TABLE IF NOT EXISTS storage_containers (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE,
    image_id TEXT,
    layer_id TEXT NOT NULL,
    created REAL NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS storage_containers_by_image ON storage_containers(image_id);
CREATE TABLE IF NOT EXISTS staging (
    path TEXT PRIMARY KEY,
    parent TEXT,
    pid INTEGER NOT NULL,
    boot TEXT NOT NULL,
    started REAL NOT NULL
);
"""


def boot_id() -> str:
    """This boot's identity: mount counts and staging owners from earlier boots are stale."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Database:
    """A connection per thread to the store's SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._schemas_done: set[str] = set()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=True,
            )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(
                f"cannot open the store database {self.path}: {exc}",
                "check the file system, or move the store aside and start a new one",
            ) from exc
        conn.row_factory = sqlite3.Row
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            self._local.depth = 0
        return conn

    def ensure_schema(self, name: str, script: str) -> None:
        """Create tables once per process (idempotent DDL)."""
        if name in self._schemas_done:
            return
        with self.write() as conn:
            for statement in _split_statements(script):
                conn.execute(statement)
        self._schemas_done.add(name)

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE); nested calls join the outer one."""
        conn = self.conn
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StorageError(
                f"the store database {self.path} is locked: {exc}",
                "another skiff process holds it for too long; retry",
            ) from exc
        self._local.depth = 1
        try:
            yield conn
        except BaseException:
            self._local.depth = 0
            conn.execute("ROLLBACK")
            raise
        else:
            self._local.depth = 0
            conn.execute("COMMIT")

    def read(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreCorrupt(f"store database {self.path}: {exc}") from exc

    def read_one(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Row | None:
        rows = self.read(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _split_statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
