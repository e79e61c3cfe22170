"""Images in the store: ID (config digest), names, digests, manifest, config.

An image's ID is the hex of its config digest. A name (``docker.io/library/
busybox:latest``) belongs to one image at a time: giving it to another image
takes it away from the first (which may then be dangling). Manifests of
every form the image was seen in are kept by digest so that ``name@digest``
lookups and pushes of the original manifest work.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from skiff.errors import ImageUnknown, InvalidReference, StorageError
from skiff.oci.digest import Digest
from skiff.storage.db import Database

_HEX_RE = re.compile(r"\A[0-9a-f]{1,64}\Z")


@dataclass(frozen=True)
class Image:
    id: str
    top_layer: str | None
    created: float
    added: float
    size: int
    manifest: bytes | None
    manifest_type: str
    config: bytes
    digest: Digest | None
    names: tuple[str, ...] = field(default=())
    digests: tuple[Digest, ...] = field(default=())

    @property
    def config_digest(self) -> Digest:
        return Digest("sha256", self.id)


def repository_of(name: str) -> str:
    """``host:5000/a/b:tag`` → ``host:5000/a/b`` (a colon after the last slash is the tag's)."""
    name = name.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


class ImageStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _names(self, image_id: str) -> tuple[str, ...]:
        rows = self.db.read(
            "SELECT name FROM image_names WHERE image_id=? ORDER BY added, name", (image_id,)
        )
        return tuple(r["name"] for r in rows)

    def _digests(self, image_id: str) -> tuple[Digest, ...]:
        rows = self.db.read(
            "SELECT digest FROM image_digests WHERE image_id=? ORDER BY digest", (image_id,)
        )
        return tuple(Digest.parse(r["digest"]) for r in rows)

    def _from_row(
        self,
        row: sqlite3.Row,
        names: tuple[str, ...] | None = None,
        digests: tuple[Digest, ...] | None = None,
    ) -> Image:
        return Image(
            id=row["id"],
            top_layer=row["top_layer"],
            created=row["created"],
            added=row["added"],
            size=row["size"],
            manifest=row["manifest"],
            manifest_type=row["manifest_type"] or "",
            config=row["config"],
            digest=Digest.parse(row["digest"]) if row["digest"] else None,
            names=self._names(row["id"]) if names is None else names,
            digests=self._digests(row["id"]) if digests is None else digests,
        )

    def get(self, image_id: str) -> Image:
        row = self.db.read_one("SELECT * FROM images WHERE id=?", (image_id,))
        if row is None:
            raise ImageUnknown(f"image {image_id} not known")
        return self._from_row(row)

    def exists(self, image_id: str) -> bool:
        return self.db.read_one("SELECT 1 FROM images WHERE id=?", (image_id,)) is not None

    def all(self) -> list[Image]:
        """Every image, newest first, with names and digests (few queries)."""
        names: dict[str, list[str]] = {}
        for r in self.db.read("SELECT name, image_id FROM image_names ORDER BY added, name"):
            names.setdefault(r["image_id"], []).append(r["name"])
        digests: dict[str, list[Digest]] = {}
        for r in self.db.read("SELECT digest, image_id FROM image_digests ORDER BY digest"):
            digests.setdefault(r["image_id"], []).append(Digest.parse(r["digest"]))
        rows = self.db.read("SELECT * FROM images ORDER BY created DESC, id")
        return [
            self._from_row(r, tuple(names.get(r["id"], ())), tuple(digests.get(r["id"], ())))
            for r in rows
        ]

    def by_name(self, name: str) -> Image | None:
        row = self.db.read_one(
            "SELECT i.* FROM images i JOIN image_names n ON n.image_id=i.id WHERE n.name=?", (name,)
        )
        return self._from_row(row) if row is not None else None

    def by_digest(self, digest: Digest) -> list[Image]:
        rows = self.db.read(
            "SELECT i.* FROM images i JOIN image_digests d ON d.image_id=i.id WHERE d.digest=?",
            (str(digest),),
        )
        return [self._from_row(r) for r in rows]

    def by_id_prefix(self, prefix: str) -> list[Image]:
        if not _HEX_RE.match(prefix):
            return []
        rows = self.db.read("SELECT * FROM images WHERE id >= ? AND id < ?", (prefix, prefix + "g"))
        return [self._from_row(r) for r in rows]

    def by_top_layer(self, layer_id: str) -> list[Image]:
        return [
            self._from_row(r)
            for r in self.db.read("SELECT * FROM images WHERE top_layer=?", (layer_id,))
        ]

    def create(
        self,
        image_id: str,
        *,
        top_layer: str | None,
        config: bytes,
        manifest: bytes | None,
        manifest_type: str,
        digest: Digest | None,
        names: Sequence[str] = (),
        created: float | None = None,
        size: int = 0,
        data: dict[str, bytes] | None = None,
    ) -> Image:
        """Record an image, or merge into the existing record with this ID.

        Merging keeps the first manifest as the image's main one and adds the
        new digest, names and data (an image pulled again from elsewhere).
        """
        now = time.time()
        with self.db.write() as conn:
            existing = conn.execute("SELECT id FROM images WHERE id=?", (image_id,)).fetchone()
            if existing is None:
                conn.execute(
                    "INSERT INTO images(id, top_layer, created, added, size, manifest, manifest_type, config, digest) "
                    "VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        image_id,
                        top_layer,
                        created if created is not None else now,
                        now,
                        size,
                        manifest,
                        manifest_type,
                        config,
                        str(digest) if digest else None,
                    ),
                )
            elif manifest is not None:
                conn.execute(
                    "UPDATE images SET manifest=COALESCE(manifest, ?), manifest_type=COALESCE(manifest_type, ?), "
                    "digest=COALESCE(digest, ?) WHERE id=?",
                    (manifest, manifest_type, str(digest) if digest else None, image_id),
                )
            if digest is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO image_digests(digest, image_id) VALUES (?,?)",
                    (str(digest), image_id),
                )
                if manifest is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO image_data(image_id, key, value) VALUES (?,?,?)",
                        (image_id, f"manifest-{digest}", manifest),
                    )
            for key, value in (data or {}).items():
                conn.execute(
                    "INSERT OR REPLACE INTO image_data(image_id, key, value) VALUES (?,?,?)",
                    (image_id, key, value),
                )
            self._add_names(conn, image_id, names, now)
        return self.get(image_id)

    def _add_names(
        self, conn: sqlite3.Connection, image_id: str, names: Iterable[str], now: float
    ) -> None:
        for name in names:
            conn.execute(
                "INSERT INTO image_names(name, image_id, added) VALUES (?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET image_id=excluded.image_id, added=excluded.added",
                (name, image_id, now),
            )

    def add_names(self, image_id: str, names: Iterable[str]) -> None:
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone() is None:
                raise ImageUnknown(f"image {image_id} not known")
            self._add_names(conn, image_id, names, time.time())

    def remove_name(self, image_id: str, name: str) -> bool:
        with self.db.write() as conn:
            cursor = conn.execute(
                "DELETE FROM image_names WHERE name=? AND image_id=?", (name, image_id)
            )
            return cursor.rowcount > 0

    def remove_all_names(self, image_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM image_names WHERE image_id=?", (image_id,))

    def data(self, image_id: str, key: str) -> bytes | None:
        row = self.db.read_one(
            "SELECT value FROM image_data WHERE image_id=? AND key=?", (image_id, key)
        )
        return bytes(row["value"]) if row is not None else None

    def data_keys(self, image_id: str) -> list[str]:
        return [
            r["key"]
            for r in self.db.read(
                "SELECT key FROM image_data WHERE image_id=? ORDER BY key", (image_id,)
            )
        ]

    def set_data(self, image_id: str, key: str, value: bytes) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO image_data(image_id, key, value) VALUES (?,?,?)",
                (image_id, key, value),
            )

    def delete(self, image_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM images WHERE id=?", (image_id,))
            conn.execute("DELETE FROM image_names WHERE image_id=?", (image_id,))
            conn.execute("DELETE FROM image_digests WHERE image_id=?", (image_id,))
            conn.execute("DELETE FROM image_data WHERE image_id=?", (image_id,))

    # --- resolving what users type --------------------------------------
    def lookup(self, text: str, search_registries: Sequence[str] = ()) -> Image:
        """Find an image by ID, ID prefix, name or short name, as podman does.

        Short names (``busybox``) match ``localhost/busybox``, then the
        search registries in order, then any image whose repository ends
        with ``/busybox`` (podman's suffix match); a missing tag means
        ``latest``; ``name@sha256:…`` matches the repository and digest.
        """
        found = self.find(text, search_registries)
        if found is None:
            raise ImageUnknown(f"{text}: image not known")
        return found

    def find(self, text: str, search_registries: Sequence[str] = ()) -> Image | None:
        from skiff.oci.reference import is_short_name, parse_normalized_named

        candidate = text.removeprefix("sha256:")
        if len(candidate) == 64 and _HEX_RE.match(candidate):
            row = self.db.read_one("SELECT * FROM images WHERE id=?", (candidate,))
            if row is not None:
                return self._from_row(row)
        try:
            named = parse_normalized_named(text)
        except InvalidReference:
            named = None
        if named is not None:
            if named.digest is not None:
                with_digest = self.by_digest(named.digest)
                for image in with_digest:
                    if any(repository_of(n) == named.name for n in image.names):
                        return image
                return with_digest[0] if with_digest else None
            full = named.tag_or_latest()
            if not is_short_name(text):
                return self.by_name(str(full))
            tag = full.tag
            short_path = (
                text.split(":", maxsplit=1)[0] if ":" in text.rsplit("/", maxsplit=1)[-1] else text
            )
            candidates = [f"localhost/{short_path}:{tag}"]
            candidates += [f"{reg}/{short_path}:{tag}" for reg in search_registries]
            candidates.append(str(full))
            for name in candidates:
                by_name = self.by_name(name)
                if by_name is not None:
                    return by_name
            rows = self.db.read(
                "SELECT name, image_id FROM image_names WHERE name LIKE ?",
                (f"%/{short_path}:{tag}",),
            )
            matches = {r["image_id"] for r in rows if r["name"].endswith(f"/{short_path}:{tag}")}
            if len(matches) == 1:
                return self.get(matches.pop())
            if len(matches) > 1:
                raise StorageError(
                    f"short name {text!r} matches several images",
                    "use a fully qualified name or an image ID",
                )
        if len(candidate) >= 3 and _HEX_RE.match(candidate):
            prefix_matches = self.by_id_prefix(candidate)
            if len(prefix_matches) == 1:
                return prefix_matches[0]
            if len(prefix_matches) > 1:
                raise StorageError(
                    f"image ID prefix {candidate!r} is ambiguous", "give more characters"
                )
        return None
