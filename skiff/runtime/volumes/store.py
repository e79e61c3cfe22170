"""Volume records in the store database, their directories, and who uses them.

Tables (created here through ``Database.ensure_schema``):

    volumes         one row per volume: name, driver, anonymous flag, creation
                    time, uid/gid, copy-up and chown flags, the driver's mount
                    count (valid for the boot in ``mount_boot``), and a JSON
                    column with labels and options
    volume_users    (volume, container_id): which containers use a volume. The
                    container code fills it through ``resolve_mounts`` (or
                    ``add_user``) and empties it with ``release`` (or
                    ``remove_users``); ``volume rm`` and ``prune`` read it.
    volume_mounts   per container: the resolved mount list (JSON) and whether
                    its volumes are activated (mounted) in this boot; see
                    lifecycle.py.

Directories: ``ROOT/volumes/NAME`` (0700) holding ``_data`` (0755), podman's
layout. A directory is created under a temporary name and renamed into
place in the same database transaction that inserts the row; removal
deletes the row and renames the directory aside in one transaction, then
deletes it. A directory without a row (a process died between the two) is
a leftover: the next ``create`` of that name removes it, with a warning.
Directories are only ever deleted after every mount beneath them is gone,
so a bind-type volume never takes its host directory with it.

Lock order: a volume's lock (``flock`` on its directory, see ``locked``)
before the database write lock, never the other way round. Work that
takes time (mounting, copying) happens under the volume lock only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import StorageError, StoreCorrupt, VolumeUnknown
from skiff.runtime.volumes.model import (
    DATA_DIR,
    DRIVER_LOCAL,
    Volume,
    VolumeExists,
    VolumeInUse,
    check_driver,
    check_name,
    parse_local_options,
)
from skiff.storage.db import Database, boot_id, process_alive

if TYPE_CHECKING:
    from skiff.storage.store import Store

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    anonymous INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL,
    uid INTEGER,
    gid INTEGER,
    needs_copy_up INTEGER NOT NULL DEFAULT 1,
    needs_chown INTEGER NOT NULL DEFAULT 1,
    mount_count INTEGER NOT NULL DEFAULT 0,
    mount_boot TEXT,
    config TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS volume_users (
    volume TEXT NOT NULL,
    container_id TEXT NOT NULL,
    PRIMARY KEY (volume, container_id)
);
CREATE INDEX IF NOT EXISTS volume_users_by_container ON volume_users(container_id);
CREATE TABLE IF NOT EXISTS volume_mounts (
    container_id TEXT PRIMARY KEY,
    mounts TEXT NOT NULL,
    active_boot TEXT
);
"""

_CREATING = ".creating-"
_REMOVING = ".removing-"


@dataclass(frozen=True)
class CreateOptions:
    """``skiff volume create``'s flags."""

    name: str | None = None
    driver: str = DRIVER_LOCAL
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    anonymous: bool = False


def unknown(name: str) -> VolumeUnknown:
    return VolumeUnknown(
        f'no volume with name "{name}" found: no such volume',
        "list volumes with 'skiff volume ls'",
    )


def in_use(name: str, users: Iterable[str]) -> VolumeInUse:
    return VolumeInUse(
        f"volume {name} is being used by the following container(s): "
        f"{', '.join(users)}: volume is being used",
        "remove those containers first, or use --force",
    )


def mounts_beneath(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    from skiff.storage.mount import mount_points

    prefix = str(path).rstrip("/") + "/"
    found = [p for p in mount_points() if p == str(path) or p.startswith(prefix)]
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Delete a volume's directory, never through a mount point.

    Whatever is still mounted beneath it (a leftover driver mount) is
    detached first; if anything remains mounted the tree is left alone.
    """
    from skiff.storage.mount import unmount

    if not os.path.lexists(path):
        return
    for point in mounts_beneath(path):
        unmount(point, detach=True)
    remaining = mounts_beneath(path)
    if remaining:
        raise StorageError(
            f"cannot delete {path}: {remaining[0]} is still mounted",
            "unmount it (umount -l) and retry",
        )
    shutil.rmtree(path)


class VolumeStore:
    """The volumes of one store."""

    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = root / "volumes"
        self._boot = boot_id()
        db.ensure_schema("volumes", SCHEMA)

    @classmethod
    def of(cls, store: Store) -> VolumeStore:
        return cls(store.db, store.root)

    # --- paths and locks ------------------------------------------------------------

    def volume_dir(self, name: str) -> Path:
        return self.root / name

    def mountpoint(self, name: str) -> Path:
        return self.root / name / DATA_DIR

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold the volume's lock (``flock`` on its directory) across processes."""
        try:
            fd = os.open(self.volume_dir(name), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if self.exists(name):
                raise StoreCorrupt(
                    f"the directory of volume {name} is missing ({self.volume_dir(name)})",
                    f"remove the volume with 'skiff volume rm -f {name}' and create it again",
                ) from None
            raise unknown(name) from None
        except OSError as exc:
            raise StorageError(
                f"cannot open the directory of volume {name}: {exc.strerror}",
                "check the store's permissions",
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- reading --------------------------------------------------------------------

    def _volume(self, row: sqlite3.Row) -> Volume:
        config = json.loads(row["config"])
        return Volume(
            name=row["name"],
            driver=row["driver"],
            mountpoint=self.mountpoint(row["name"]),
            created_ns=row["created_ns"],
            labels=dict(config.get("labels") or {}),
            options=dict(config.get("options") or {}),
            uid=row["uid"],
            gid=row["gid"],
            anonymous=bool(row["anonymous"]),
            mount_count=row["mount_count"] if row["mount_boot"] == self._boot else 0,
            needs_copy_up=bool(row["needs_copy_up"]),
            needs_chown=bool(row["needs_chown"]),
        )

    def find(self, name: str) -> Volume | None:
        row = self.db.read_one("SELECT * FROM volumes WHERE name=?", (name,))
        return self._volume(row) if row is not None else None

    def get(self, name: str) -> Volume:
        found = self.find(name)
        if found is None:
            raise unknown(name)
        return found

    def exists(self, name: str) -> bool:
        return self.db.read_one("SELECT 1 FROM volumes WHERE name=?", (name,)) is not None

    def all(self) -> list[Volume]:
        """Every volume, sorted by name (podman lists them so)."""
        return [self._volume(r) for r in self.db.read("SELECT * FROM volumes ORDER BY name")]

    # --- users ----------------------------------------------------------------------

    def users(self, name: str) -> list[str]:
        """IDs of the containers using the volume, sorted."""
        rows = self.db.read(
            "SELECT container_id FROM volume_users WHERE volume=? ORDER BY container_id", (name,)
        )
        return [r["container_id"] for r in rows]

    def used_by(self, container_id: str) -> list[str]:
        """Names of the volumes a container uses, sorted."""
        rows = self.db.read(
            "SELECT volume FROM volume_users WHERE container_id=? ORDER BY volume", (container_id,)
        )
        return [r["volume"] for r in rows]

    def in_use(self) -> set[str]:
        return {r["volume"] for r in self.db.read("SELECT DISTINCT volume FROM volume_users")}

    def add_user(self, name: str, container_id: str) -> None:
        """Record that ``container_id`` uses the volume (which must exist)."""
        with self.db.write() as conn:
            if not self.exists(name):
                raise unknown(name)
            conn.execute(
                "INSERT OR IGNORE INTO volume_users(volume, container_id) VALUES (?, ?)",
                (name, container_id),
            )

    def remove_users(self, container_id: str) -> list[str]:
        """Forget every use by ``container_id``; the volumes it used."""
        with self.db.write() as conn:
            names = self.used_by(container_id)
            conn.execute("DELETE FROM volume_users WHERE container_id=?", (container_id,))
        return names

    # --- creating -------------------------------------------------------------------

    def _clean_leftovers(self, name: str) -> None:
        """Remove a directory without a row, and dead processes' temp dirs."""
        path = self.volume_dir(name)
        if os.path.lexists(path):
            log.warning("removing %s: no volume record (left by an interrupted process)", path)
            remove_tree(path)
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return
        for entry in entries:
            if not entry.startswith((_CREATING, _REMOVING)):
                continue
            pid_text = entry.rsplit("-", 2)[-2] if entry.count("-") >= 3 else ""
            if pid_text.isdecimal() and process_alive(int(pid_text)):
                continue
            log.warning("removing %s left by an interrupted process", self.root / entry)
            remove_tree(self.root / entry)

    def _temp_name(self, kind: str, name: str) -> Path:
        return self.root / f"{kind}{name}-{os.getpid()}-{secrets.token_hex(4)}"

    def create(self, options: CreateOptions) -> Volume:
        """Create a volume; its name (a random 64-hex one when not given).

        Raises VolumeExists (podman's wording) when the name is taken, and
        UsageError for invalid names, drivers and options.
        """
        name = options.name or secrets.token_hex(32)
        check_name(name)
        driver = check_driver(name, options.driver)
        local = parse_local_options(name, dict(options.options))
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = self._temp_name(_CREATING, name)
        try:
            os.mkdir(staging, 0o700)
            os.mkdir(staging / DATA_DIR, 0o755)
            os.chmod(staging / DATA_DIR, 0o755)  # noqa: S103 - podman's mode for _data, whatever the umask
            if local.uid is not None or local.gid is not None:
                os.chown(
                    staging / DATA_DIR,
                    -1 if local.uid is None else local.uid,
                    -1 if local.gid is None else local.gid,
                )
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise StorageError(
                f"cannot create the directory of volume {name}: {exc.strerror}",
                f"check that {self.root} is writable",
            ) from exc
        volume = Volume(
            name=name,
            driver=driver,
            mountpoint=self.mountpoint(name),
            created_ns=time.time_ns(),
            labels=dict(options.labels),
            options=local.options,
            uid=local.uid,
            gid=local.gid,
            anonymous=options.anonymous,
            needs_chown=local.uid is None and local.gid is None,
        )
        try:
            with self.db.write() as conn:
                if self.exists(name):
                    raise VolumeExists(
                        f"volume with name {name} already exists: volume already exists",
                        "choose another name, or use --ignore",
                    )
                self._clean_leftovers(name)
                os.rename(staging, self.volume_dir(name))
                try:
                    conn.execute(
                        "INSERT INTO volumes(name, driver, anonymous, created_ns, uid, gid,"
                        " needs_copy_up, needs_chown, config) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                        (
                            name,
                            driver,
                            int(volume.anonymous),
                            volume.created_ns,
                            volume.uid,
                            volume.gid,
                            int(volume.needs_chown),
                            volume.config_json(),
                        ),
                    )
                except BaseException:
                    os.rename(self.volume_dir(name), staging)
                    raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return volume

    # --- removing -------------------------------------------------------------------

    def remove(self, name: str, *, force: bool = False) -> Volume:
        """Remove a volume that no container uses.

        With ``force``, a volume still recorded as used is removed anyway
        (the caller removed or is removing those containers) and a driver
        mount still counted is unmounted first. Without it: VolumeInUse.
        """
        from skiff.runtime.volumes.driver import unmount_driver

        if force and self.exists(name) and not self.volume_dir(name).is_dir():
            log.warning("volume %s had no directory; removing its record", name)
            volume = self.get(name)
            with self.db.write() as conn:
                conn.execute("DELETE FROM volumes WHERE name=?", (name,))
                conn.execute("DELETE FROM volume_users WHERE volume=?", (name,))
            return volume
        with self.locked(name):
            volume = self.get(name)
            users = self.users(name)
            if users and not force:
                raise in_use(name, users)
            if volume.mount_count and not force:
                raise VolumeInUse(
                    f"volume {name} is mounted ({volume.mount_count} reference(s))",
                    f"unmount it with 'skiff volume unmount {name}', or use --force",
                )
            if volume.needs_mount:
                unmount_driver(volume)
            aside = self._temp_name(_REMOVING, name)
            with self.db.write() as conn:
                conn.execute("DELETE FROM volumes WHERE name=?", (name,))
                conn.execute("DELETE FROM volume_users WHERE volume=?", (name,))
                os.rename(self.volume_dir(name), aside)
        remove_tree(aside)
        return volume

    # --- flags and counts (called under the volume's lock) -------------------------------

    def set_flags(
        self, name: str, *, needs_copy_up: bool | None = None, needs_chown: bool | None = None
    ) -> None:
        with self.db.write() as conn:
            if needs_copy_up is not None:
                conn.execute(
                    "UPDATE volumes SET needs_copy_up=? WHERE name=?", (int(needs_copy_up), name)
                )
            if needs_chown is not None:
                conn.execute(
                    "UPDATE volumes SET needs_chown=? WHERE name=?", (int(needs_chown), name)
                )

    def set_mount_count(self, name: str, count: int) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE volumes SET mount_count=?, mount_boot=? WHERE name=?",
                (count, self._boot if count else None, name),
            )

    @property
    def boot(self) -> str:
        return self._boot
