"""The store's metadata: one SQLite database per store (WAL, busy timeout).

Every skiff process — CLI, builder, CRI server — opens the same database, so
this is where concurrent processes meet. Writes happen in ``write()``
transactions (``BEGIN IMMEDIATE``: the database write lock is taken at the
start, so a read-modify-write cannot interleave with another process).
Reads outside a transaction see a consistent snapshot per statement.

Tables owned by the runtime (containers' state, pods, networks, volumes) live
in the same database under their own names; they are created by their
modules through ``ensure_schema``, which runs its DDL (and takes the write
lock for it) only when an object it names is missing.

Closing does not checkpoint: SQLite's last connection to close normally
copies the WAL into the database file, fsyncs it and deletes the WAL — up
to tens of milliseconds on a journaled disk, at the end of every command.
With ``SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE`` the WAL stays (it is part of the
database: copy ``db.sqlite-wal`` with ``db.sqlite``) and is checkpointed by
SQLite's automatic checkpoints as it grows (every ~1000 pages). Commits
stay as durable as ``synchronous=NORMAL`` makes them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from skiff.errors import StorageError, StoreCorrupt

_NO_CKPT_ON_CLOSE = 1006
"""SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE (sqlite3.h, SQLite 3.16+)."""

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
        self._objects: set[str] | None = None
        """Names in sqlite_master, read once for ``ensure_schema``."""

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=True,
            )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            _switch_to_wal(conn)
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
        """Create tables once per process (idempotent DDL).

        A script of ``CREATE TABLE|INDEX IF NOT EXISTS`` statements whose
        objects all exist is skipped: no write transaction, so opening a
        store does not queue behind another process's writes for nothing.
        """
        if name in self._schemas_done:
            return
        statements = _split_statements(script)
        created = [_created_name(s) for s in statements]
        if all(created):
            if self._objects is None:
                self._objects = {
                    str(r[0])
                    for r in self.read("SELECT name FROM sqlite_master WHERE name IS NOT NULL")
                }
            if all(n in self._objects for n in created):
                self._schemas_done.add(name)
                return
        with self.write() as conn:
            for statement in statements:
                conn.execute(statement)
        if self._objects is not None:
            self._objects.update(n for n in created if n)
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
            _keep_wal_on_close(conn, self.path)
            conn.close()
            self._local.conn = None


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """Put the database in WAL mode (kept in the file, so done once per store).

    The switch needs the database to itself, and SQLite does not wait on its
    busy handler for it when other connections opened the new file at the
    same moment (several threads or processes making one store): it answers
    "database is locked" at once. Those answers are retried here until the
    busy timeout; a database already in WAL mode costs one read.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.001
    while True:
        try:
            row = conn.execute("PRAGMA journal_mode").fetchone()
            if row is not None and str(row[0]).lower() == "wal":
                return
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _split_statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _created_name(statement: str) -> str:
    """The object a ``CREATE [UNIQUE] TABLE|INDEX IF NOT EXISTS NAME ...``
    statement makes; "" for any other statement."""
    words = statement.split(None, 7)
    if words[:2] == ["CREATE", "UNIQUE"]:
        words = words[:1] + words[2:]
    if len(words) < 6 or words[0] != "CREATE" or words[1] not in ("TABLE", "INDEX"):
        return ""
    if words[2:5] != ["IF", "NOT", "EXISTS"]:
        return ""
    return words[5].split("(", 1)[0]


def _keep_wal_on_close(conn: sqlite3.Connection, path: Path) -> None:
    """Set SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE on ``conn`` (see the module docstring).

    Python 3.12 has ``Connection.setconfig``; 3.11 has no API for it, so the
    option is set through ctypes on the connection's ``sqlite3*`` handle
    (the first field after the object header of CPython's connection
    object), and only after SQLite confirmed that the handle is this
    database's. Where that cannot be done the close checkpoints as usual.
    """
    setconfig = getattr(conn, "setconfig", None)
    if setconfig is not None:
        try:
            setconfig(_NO_CKPT_ON_CLOSE, True)
        except sqlite3.Error:
            pass
        return
    if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
        return
    if hasattr(sys, "getobjects"):  # a Py_TRACE_REFS build: another object header
        return
    try:
        import ctypes

        lib = ctypes.CDLL(sys.modules["_sqlite3"].__file__)  # the library sqlite3 uses
        filename = lib.sqlite3_db_filename
        filename.restype = ctypes.c_char_p
        filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        db_config = lib.sqlite3_db_config
        db_config.restype = ctypes.c_int
        handle = ctypes.c_void_p.from_address(id(conn) + object.__basicsize__).value
        if not handle or filename(handle, b"main") not in (
            os.fsencode(os.path.abspath(path)),
            os.fsencode(os.path.realpath(path)),
        ):
            return
        db_config(
            ctypes.c_void_p(handle),
            ctypes.c_int(_NO_CKPT_ON_CLOSE),
            ctypes.c_int(1),
            ctypes.c_void_p(None),
        )
    except (OSError, AttributeError, KeyError):
        return
