"""Layers: records in the database, contents through the driver.

An image layer's ID is its chain ID, so identical stacks are shared. A layer
is born in a *staging* directory (recorded first in the ``staging`` table
with the owner's pid and boot ID), filled outside any lock, then committed:
a row marked incomplete is written, the staged directory is renamed into
place, and the row is marked complete. Whatever an interrupted process left
(staging dirs, incomplete rows) is removed when the store is next opened.

Mount counts live in the layer rows together with the boot ID they were
counted in, so a reboot (which unmounts everything) resets them.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from skiff.errors import LayerUnknown, StorageError
from skiff.oci.digest import Digest
from skiff.storage.db import Database, boot_id, process_alive
from skiff.storage.drivers.base import Driver

log = logging.getLogger(__name__)

TAR_SPLIT_NAME = "tar-split"
"""The file in a staging dir where extraction records the tar's framing."""


def chain_ids(diff_ids: Iterable[Digest]) -> list[str]:
    """Chain IDs (hex) of a layer stack: the OCI image spec's ChainID."""
    import hashlib  # not at the top: most commands open the store without hashing

    out: list[str] = []
    previous: str | None = None
    for diff_id in diff_ids:
        if previous is None:
            current = diff_id.hex
        else:
            current = hashlib.sha256(f"sha256:{previous} {diff_id}".encode()).hexdigest()
        out.append(current)
        previous = current
    return out


def random_id() -> str:
    """64 random hex digits (``secrets.token_hex(32)``, without importing
    secrets: that pulls in hmac and OpenSSL's hashlib on every command)."""
    return os.urandom(32).hex()


@dataclass(frozen=True)
class CompressedBlob:
    digest: Digest
    compression: str
    size: int


@dataclass(frozen=True)
class Layer:
    id: str
    parent: str | None
    diff_id: Digest | None
    uncompressed_size: int
    created: float
    read_only: bool
    link: str
    mount_count: int
    blobs: tuple[CompressedBlob, ...] = field(default=())


@dataclass
class Staging:
    """A directory being filled with a layer's content, owned by this process."""

    path: Path
    content: Path
    parent: str | None


class LayerStore:
    def __init__(self, db: Database, driver: Driver, root: Path) -> None:
        self.db = db
        self.driver = driver
        self.root = root
        self.staging_root = root / "staging"
        self.staging_root.mkdir(parents=True, exist_ok=True)
        self._boot = boot_id()

    # --- reading --------------------------------------------------------
    def _row_to_layer(self, row: sqlite3.Row, blobs: tuple[CompressedBlob, ...] = ()) -> Layer:
        mount_count = row["mount_count"] if row["mount_boot"] == self._boot else 0
        return Layer(
            id=row["id"],
            parent=row["parent"],
            diff_id=Digest.parse(row["diff_id"]) if row["diff_id"] else None,
            uncompressed_size=row["uncompressed_size"],
            created=row["created"],
            read_only=bool(row["read_only"]),
            link=row["link"] or "",
            mount_count=mount_count,
            blobs=blobs,
        )

    def _blobs(self, layer_id: str) -> tuple[CompressedBlob, ...]:
        rows = self.db.read(
            "SELECT compressed_digest, compression, compressed_size FROM layer_blobs WHERE layer_id=?",
            (layer_id,),
        )
        return tuple(
            CompressedBlob(
                Digest.parse(r["compressed_digest"]), r["compression"], r["compressed_size"]
            )
            for r in rows
        )

    def get(self, layer_id: str) -> Layer:
        row = self.db.read_one("SELECT * FROM layers WHERE id=? AND incomplete=0", (layer_id,))
        if row is None:
            raise LayerUnknown(f"layer {layer_id} not known")
        return self._row_to_layer(row, self._blobs(layer_id))

    def exists(self, layer_id: str) -> bool:
        return (
            self.db.read_one("SELECT 1 FROM layers WHERE id=? AND incomplete=0", (layer_id,))
            is not None
        )

    def all(self) -> list[Layer]:
        return [
            self._row_to_layer(r) for r in self.db.read("SELECT * FROM layers WHERE incomplete=0")
        ]

    def by_diff_id(self, diff_id: Digest) -> list[Layer]:
        rows = self.db.read(
            "SELECT * FROM layers WHERE diff_id=? AND incomplete=0", (str(diff_id),)
        )
        return [self._row_to_layer(r) for r in rows]

    def by_compressed_digest(self, digest: Digest) -> list[Layer]:
        rows = self.db.read(
            "SELECT l.* FROM layers l JOIN layer_blobs b ON b.layer_id=l.id "
            "WHERE b.compressed_digest=? AND l.incomplete=0",
            (str(digest),),
        )
        return [self._row_to_layer(r) for r in rows]

    def chain(self, layer_id: str) -> list[Layer]:
        """The layer's ancestors, nearest parent first (not the layer itself)."""
        out = []
        current = self.get(layer_id).parent
        while current:
            layer = self.get(current)
            out.append(layer)
            current = layer.parent
        return out

    def children(self, layer_id: str) -> list[str]:
        return [r["id"] for r in self.db.read("SELECT id FROM layers WHERE parent=?", (layer_id,))]

    def being_built_on(self, layer_id: str) -> bool:
        """Whether a live process is staging a child of this layer (keep it)."""
        for row in self.db.read("SELECT pid, boot FROM staging WHERE parent=?", (layer_id,)):
            if row["boot"] == self._boot and process_alive(row["pid"]):
                return True
        return False

    # --- staging and creation --------------------------------------------
    def begin_staging(self, parent: str | None) -> Staging:
        """Record, then create, a staging dir for a new layer on ``parent``."""
        path = self.staging_root / f"{os.getpid()}-{os.urandom(8).hex()}"
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO staging(path, parent, pid, boot, started) VALUES (?,?,?,?,?)",
                (str(path), parent, os.getpid(), self._boot, time.time()),
            )
        path.mkdir()
        content = self.driver.prepare_staging(
            path, parent if self.driver.apply_needs_parent else None
        )
        return Staging(path, content, parent)

    def discard_staging(self, staging: Staging) -> None:
        if staging.path.exists():
            shutil.rmtree(staging.path)
        with self.db.write() as conn:
            conn.execute("DELETE FROM staging WHERE path=?", (str(staging.path),))

    def commit_staging(
        self,
        staging: Staging,
        layer_id: str,
        diff_id: Digest | None,
        uncompressed_size: int,
        blobs: Iterable[CompressedBlob] = (),
    ) -> Layer:
        """Turn a filled staging dir into layer ``layer_id`` (or reuse an existing one)."""
        parent = staging.parent
        if parent is not None and not self.exists(parent):
            self.discard_staging(staging)
            raise LayerUnknown(
                f"parent layer {parent} of {layer_id} disappeared while it was being created"
            )
        with self.db.write() as conn:
            existing = conn.execute(
                "SELECT incomplete FROM layers WHERE id=?", (layer_id,)
            ).fetchone()
            if existing is not None:
                claimed = False
            else:
                conn.execute(
                    "INSERT INTO layers(id, parent, diff_id, uncompressed_size, created, incomplete, "
                    "owner_pid, owner_boot, read_only) VALUES (?,?,?,?,?,1,?,?,1)",
                    (
                        layer_id,
                        parent,
                        str(diff_id) if diff_id else None,
                        uncompressed_size,
                        time.time(),
                        os.getpid(),
                        self._boot,
                    ),
                )
                claimed = True
        if not claimed:
            # another process made (or is making) the same layer: ours is redundant
            self.discard_staging(staging)
            self._wait_complete(layer_id)
            self.add_blobs(layer_id, blobs)
            return self.get(layer_id)
        parent_links = [p.link for p in self.chain_from(parent)]
        staged_split = staging.path / TAR_SPLIT_NAME
        if staged_split.exists():
            self.tar_split_path(layer_id).parent.mkdir(exist_ok=True)
            os.replace(staged_split, self.tar_split_path(layer_id))
        link = self.driver.adopt(layer_id, staging.path, parent, parent_links)
        with self.db.write() as conn:
            conn.execute(
                "UPDATE layers SET incomplete=0, owner_pid=NULL, link=? WHERE id=?",
                (link, layer_id),
            )
            conn.execute("DELETE FROM staging WHERE path=?", (str(staging.path),))
        if staging.path.exists():
            shutil.rmtree(staging.path)
        self.add_blobs(layer_id, blobs)
        return self.get(layer_id)

    def tar_split_path(self, layer_id: str) -> Path:
        """Where a layer's tar-split record lives (driver independent)."""
        return self.root / "layer-data" / f"{layer_id}.tar-split"

    def chain_from(self, parent: str | None) -> list[Layer]:
        """``parent`` and its ancestors, nearest first."""
        if parent is None:
            return []
        return [self.get(parent), *self.chain(parent)]

    def _wait_complete(self, layer_id: str, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            row = self.db.read_one(
                "SELECT incomplete, owner_pid, owner_boot FROM layers WHERE id=?", (layer_id,)
            )
            if row is None:
                raise LayerUnknown(f"layer {layer_id} was removed while this process waited for it")
            if not row["incomplete"]:
                return
            if row["owner_boot"] != self._boot or not process_alive(row["owner_pid"]):
                raise StorageError(
                    f"layer {layer_id} was left incomplete by process {row['owner_pid']}",
                    "retry: the next open of the store removes it",
                )
            if time.monotonic() > deadline:
                raise StorageError(
                    f"timed out waiting for layer {layer_id} being created by another process"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def add_blobs(self, layer_id: str, blobs: Iterable[CompressedBlob]) -> None:
        items = list(blobs)
        if not items:
            return
        with self.db.write() as conn:
            for blob in items:
                conn.execute(
                    "INSERT OR REPLACE INTO layer_blobs(layer_id, compressed_digest, compression, compressed_size) "
                    "VALUES (?,?,?,?)",
                    (layer_id, str(blob.digest), blob.compression, blob.size),
                )

    def create_writable(self, parent: str | None, layer_id: str | None = None) -> Layer:
        """An empty read-write layer on ``parent`` (a container's layer)."""
        layer_id = layer_id or random_id()
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO layers(id, parent, created, incomplete, owner_pid, owner_boot, read_only) "
                "VALUES (?,?,?,1,?,?,0)",
                (layer_id, parent, time.time(), os.getpid(), self._boot),
            )
        try:
            links = [p.link for p in self.chain_from(parent)]
            link = self.driver.create_empty(layer_id, parent, links)
        except BaseException:
            with self.db.write() as conn:
                conn.execute("DELETE FROM layers WHERE id=?", (layer_id,))
            raise
        with self.db.write() as conn:
            conn.execute(
                "UPDATE layers SET incomplete=0, owner_pid=NULL, link=? WHERE id=?",
                (link, layer_id),
            )
        return self.get(layer_id)

    # --- removal ---------------------------------------------------------
    def delete(self, layer_id: str) -> None:
        """Remove a layer that nothing uses (the caller checked images/containers)."""
        if self.children(layer_id):
            raise StorageError(f"layer {layer_id} has child layers and cannot be removed")
        layer = self.get(layer_id)
        if layer.mount_count > 0:
            self.unmount(layer_id, force=True)
        with self.db.write() as conn:
            conn.execute(
                "UPDATE layers SET incomplete=1, owner_pid=?, owner_boot=? WHERE id=?",
                (os.getpid(), self._boot, layer_id),
            )
        self.driver.remove(layer_id)
        self.tar_split_path(layer_id).unlink(missing_ok=True)
        with self.db.write() as conn:
            conn.execute("DELETE FROM layers WHERE id=?", (layer_id,))
            conn.execute("DELETE FROM layer_blobs WHERE layer_id=?", (layer_id,))

    # --- mounts ----------------------------------------------------------
    def mount(self, layer_id: str, options: list[str] | None = None) -> Path:
        """Mount a layer with its parents; counted, so nested mounts are cheap."""
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT mount_count, mount_boot, read_only FROM layers WHERE id=? AND incomplete=0",
                (layer_id,),
            ).fetchone()
            if row is None:
                raise LayerUnknown(f"layer {layer_id} not known")
            count = row["mount_count"] if row["mount_boot"] == self._boot else 0
            target = self.driver.mount_point(layer_id)
            from skiff.storage.mount import is_mounted

            if count == 0 or (self.driver.name == "overlay" and not is_mounted(target)):
                links = [p.link for p in self.chain(layer_id)]
                target = self.driver.mount(
                    layer_id, links, writable=not row["read_only"], options=options
                )
                count = 0
            conn.execute(
                "UPDATE layers SET mount_count=?, mount_boot=?, mount_point=? WHERE id=?",
                (count + 1, self._boot, str(target), layer_id),
            )
        return target

    def unmount(self, layer_id: str, force: bool = False) -> int:
        """Drop one mount reference (all with ``force``); unmount at zero. Returns the new count."""
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT mount_count, mount_boot FROM layers WHERE id=?", (layer_id,)
            ).fetchone()
            if row is None:
                raise LayerUnknown(f"layer {layer_id} not known")
            count = row["mount_count"] if row["mount_boot"] == self._boot else 0
            count = 0 if force else max(0, count - 1)
            if count == 0:
                self.driver.unmount(layer_id)
            conn.execute(
                "UPDATE layers SET mount_count=?, mount_boot=?, mount_point=? WHERE id=?",
                (
                    count,
                    self._boot,
                    None if count == 0 else str(self.driver.mount_point(layer_id)),
                    layer_id,
                ),
            )
        return count

    def mounted(self) -> list[tuple[str, str, int]]:
        rows = self.db.read(
            "SELECT id, mount_point, mount_count FROM layers WHERE mount_count>0 AND mount_boot=?",
            (self._boot,),
        )
        return [(r["id"], r["mount_point"], r["mount_count"]) for r in rows]

    # --- recovery --------------------------------------------------------
    def remove_leftovers(self) -> list[str]:
        """Remove what interrupted processes left; return what was removed."""
        removed = []
        for row in self.db.read("SELECT path, pid, boot FROM staging"):
            if row["boot"] == self._boot and process_alive(row["pid"]):
                continue
            shutil.rmtree(row["path"], ignore_errors=True)
            with self.db.write() as conn:
                conn.execute("DELETE FROM staging WHERE path=?", (row["path"],))
            removed.append(f"staging {row['path']}")
        for row in self.db.read("SELECT id, owner_pid, owner_boot FROM layers WHERE incomplete=1"):
            if row["owner_boot"] == self._boot and process_alive(row["owner_pid"]):
                continue
            log.warning(
                "removing layer %s left incomplete by process %s", row["id"], row["owner_pid"]
            )
            self.driver.remove(row["id"])
            self.tar_split_path(row["id"]).unlink(missing_ok=True)
            with self.db.write() as conn:
                conn.execute("DELETE FROM layers WHERE id=? AND incomplete=1", (row["id"],))
                conn.execute("DELETE FROM layer_blobs WHERE layer_id=?", (row["id"],))
            removed.append(f"layer {row['id']}")
        return removed
