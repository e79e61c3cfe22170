"""Where system containers live on disk, and the one lock that orders their changes.

    ROOT/system-containers/
        lock                 flock(2): held by every command that changes anything
        objects/ab/cdef….file  content-addressed files (``objects``), hard-linked
                             into every deployment that has them
        deployments/
            NAME -> NAME.1   the active deployment (a relative symlink)
            NAME.0/          a deployment: rootfs/, config.json, NAME.service,
            NAME.1/          tmpfiles.conf, hostfs/, info.json (``deploy``)
            .staging-NAME.1-… a deployment being built; renamed to NAME.1
                             only when complete

ROOT is the store's root, so objects and deployments are on one file
system (hard links need that) next to the layers they are made from.

Names are restricted (``units.check_name``) so that ``NAME`` can never be
mistaken for ``OTHER.k``: a name may not end in ``.<digits>``.

The symlink is the single source of truth for which deployment is active:
switching is one ``rename(2)`` of a new symlink over the old one, so after
a crash it points at the old deployment or at the new, complete one —
never at a half-built one. Everything else (the database record, the unit
on the host) is brought in line with the symlink by ``install.recover``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import SystemContainerError

SLOTS = (0, 1)
"""Deployments per system container: the active one and the one to roll back to."""

_DEPLOYMENT_RE = re.compile(r"\A(?P<name>.+)\.(?P<index>[01])\Z")
STAGING_PREFIX = ".staging-"
_LINK_TMP_PREFIX = ".link-"


def fsync_dir(path: Path) -> None:
    """Make renames and creations in ``path`` durable (power loss, not just kill -9)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """syncfs(2) of the file system holding ``path``: a new deployment's
    files are on disk before the symlink switch makes it the active one."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise SystemContainerError(f"syncfs of {path} failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a deployment or staging directory (or a stray file of that name).

    Deployments are read-only trees of hard links: removing them only drops
    link counts, the objects stay until ``ObjectStore.collect_garbage``.
    """
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            return
    except FileNotFoundError:
        return
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise SystemContainerError(
            f"cannot remove {path}: {exc.strerror or exc}",
            "is something mounted below it? unmount it and run the command again",
        ) from exc


@dataclass(frozen=True)
class SystemPaths:
    """The system-containers directories of one store."""

    base: Path

    @classmethod
    def for_store_root(cls, storage_root: Path) -> SystemPaths:
        return cls(storage_root / "system-containers")

    @property
    def objects(self) -> Path:
        return self.base / "objects"

    @property
    def deployments(self) -> Path:
        return self.base / "deployments"

    @property
    def lock_file(self) -> Path:
        return self.base / "lock"

    def ensure(self) -> None:
        try:
            for path in (self.base, self.objects, self.deployments):
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SystemContainerError(
                f"cannot create {self.base}: {exc.strerror or exc}",
                "use --root to choose a writable store",
            ) from exc

    # --- deployments ---------------------------------------------------------------
    def link(self, name: str) -> Path:
        return self.deployments / name

    def deployment(self, name: str, index: int) -> Path:
        return self.deployments / f"{name}.{index}"

    def active_index(self, name: str) -> int | None:
        """The slot the symlink ``NAME`` points at, or None when there is none."""
        try:
            target = os.readlink(self.link(name))
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # not a symlink: not ours
                raise SystemContainerError(
                    f"{self.link(name)} is not a symlink",
                    "something else wrote there; move it away",
                ) from exc
            raise
        match = _DEPLOYMENT_RE.match(target)
        if match is None or match["name"] != name:
            raise SystemContainerError(
                f"{self.link(name)} points at {target!r}, not at a deployment of {name}",
                "remove the symlink and install again",
            )
        return int(match["index"])

    def existing_slots(self, name: str) -> list[int]:
        return [i for i in SLOTS if self.deployment(name, i).is_dir()]

    def names(self) -> list[str]:
        """Names with an active-deployment symlink or a deployment directory."""
        try:
            entries = list(os.scandir(self.deployments))
        except FileNotFoundError:
            return []
        found = set()
        for e in entries:
            if e.name.startswith("."):
                continue
            match = _DEPLOYMENT_RE.match(e.name)
            if e.is_symlink():
                found.add(e.name)
            elif match is not None and e.is_dir(follow_symlinks=False):
                found.add(match["name"])
        return sorted(found)

    def switch(self, name: str, index: int) -> None:
        """Point ``NAME`` at ``NAME.index`` atomically (the commit point)."""
        tmp = self.deployments / f"{_LINK_TMP_PREFIX}{name}-{secrets.token_hex(4)}"
        os.symlink(f"{name}.{index}", tmp)
        try:
            os.rename(tmp, self.link(name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(self.deployments)

    def unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.link(name))
        fsync_dir(self.deployments)

    def new_staging(self, name: str, index: int) -> Path:
        path = self.deployments / f"{STAGING_PREFIX}{name}.{index}-{secrets.token_hex(4)}"
        path.mkdir(mode=0o755)
        return path

    def stale_entries(self) -> list[Path]:
        """Staging directories and temporary symlinks: all stale under the lock."""
        try:
            entries = list(os.scandir(self.deployments))
        except FileNotFoundError:
            return []
        return [
            Path(e.path) for e in entries if e.name.startswith((STAGING_PREFIX, _LINK_TMP_PREFIX))
        ]

    # --- the lock --------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the system-containers lock; yields False when ``wait`` is off
        and another process holds it (the caller then only reads)."""
        self.ensure()
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing releases the lock (and a kill -9 does too)
