"""The blob-info cache: which compressed blob is which layer, and where it was seen.

Facts learned while copying, kept across runs so later copies can skip work
(containers/image's BlobInfoCache):
- compressed digest → uncompressed digest (a layer's diff ID), and its
  compression algorithm;
- (transport, scope, digest) → locations where that blob exists (for the
  docker transport: scope = registry host, location = repository), so a push
  can HEAD or cross-repository-mount instead of uploading.

Only hints: every use is verified (HEAD, mount answer, digest checks).
One SQLite file; ``SystemContext.blob_info_cache`` names it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from skiff.oci.digest import Digest

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uncompressed (
    digest TEXT PRIMARY KEY,
    uncompressed TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS uncompressed_by_value ON uncompressed(uncompressed);
CREATE TABLE IF NOT EXISTS compression (
    digest TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS locations (
    transport TEXT NOT NULL,
    scope TEXT NOT NULL,
    digest TEXT NOT NULL,
    location TEXT NOT NULL,
    seen REAL NOT NULL,
    PRIMARY KEY (transport, scope, digest, location)
);
"""


@dataclass(frozen=True)
class Candidate:
    """A blob that may stand in for the one asked about, and where it was seen."""

    digest: Digest
    compression: str | None
    location: str


class BlobInfoCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._ready = False
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            with self._lock:
                if not self._ready:
                    conn.executescript(_SCHEMA)
                    self._ready = True
        except (OSError, sqlite3.Error) as exc:
            # a cache that cannot be opened only costs speed: run without it
            log.info("blob-info cache %s unavailable: %s", self.path, exc)
            return None
        self._local.conn = conn
        return conn

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        conn = self._conn()
        if conn is None:
            return
        try:
            conn.execute(sql, params)
        except sqlite3.Error as exc:
            log.info("blob-info cache %s: write failed: %s", self.path, exc)

    def _read(self, sql: str, params: tuple[object, ...]) -> list[tuple[str, ...]]:
        conn = self._conn()
        if conn is None:
            return []
        try:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]
        except sqlite3.Error as exc:
            log.info("blob-info cache %s: read failed: %s", self.path, exc)
            return []

    def record_uncompressed(self, digest: Digest, uncompressed: Digest) -> None:
        self._write(
            "INSERT OR REPLACE INTO uncompressed(digest, uncompressed) VALUES (?,?)",
            (str(digest), str(uncompressed)),
        )
        if digest == uncompressed:
            self.record_compression(digest, "")

    def uncompressed_of(self, digest: Digest) -> Digest | None:
        rows = self._read("SELECT uncompressed FROM uncompressed WHERE digest=?", (str(digest),))
        return Digest.parse(rows[0][0]) if rows else None

    def record_compression(self, digest: Digest, algorithm: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO compression(digest, algorithm) VALUES (?,?)",
            (str(digest), algorithm),
        )

    def compression_of(self, digest: Digest) -> str | None:
        rows = self._read("SELECT algorithm FROM compression WHERE digest=?", (str(digest),))
        return rows[0][0] if rows else None

    def record_location(self, transport: str, scope: str, digest: Digest, location: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO locations(transport, scope, digest, location, seen) VALUES (?,?,?,?,?)",
            (transport, scope, str(digest), location, time.time()),
        )

    def variants(self, digest: Digest) -> list[Digest]:
        """Other blobs with the same uncompressed content (including the plain one)."""
        plain = self.uncompressed_of(digest) or digest
        rows = self._read("SELECT digest FROM uncompressed WHERE uncompressed=?", (str(plain),))
        out = [plain] if plain != digest else []
        out += [Digest.parse(r[0]) for r in rows if r[0] != str(digest) and r[0] != str(plain)]
        return out

    def candidates(
        self, transport: str, scope: str, digest: Digest, can_substitute: bool
    ) -> list[Candidate]:
        """Known locations of ``digest`` (and of its variants when allowed), newest first."""
        digests = [digest, *(self.variants(digest) if can_substitute else [])]
        out = []
        for d in digests:
            rows = self._read(
                "SELECT location FROM locations WHERE transport=? AND scope=? AND digest=? ORDER BY seen DESC",
                (transport, scope, str(d)),
            )
            compression = self.compression_of(d)
            out += [Candidate(d, compression, r[0]) for r in rows]
        return out


def open_cache(path: Path) -> BlobInfoCache:
    """A cache over ``path``; cheap to create (connections open lazily, per thread)."""
    return BlobInfoCache(path)
