"""The content-addressed object store: every distinct file once, hard-linked everywhere.

This is ostree's model for checkouts. A regular file of a deployment is
identified by the sha256 of its metadata and content::

    "skiff-object-v1\\0" + "MODE UID GID\\0" + (NAME\\0 LEN\\0 VALUE for each xattr, sorted)
    + "\\0" + content

and kept once under ``objects/<2 hex>/<62 hex>.file``; each deployment's
copy is a hard link to it. Ten system containers from one base image, or
two deployments of one container that differ in a layer, therefore share
their files on disk and in the page cache (same inode).

Consequences, as in ostree:

- Files sharing an inode share all its metadata, so metadata is part of
  the key, and the modification time is canonicalised to 0 (the epoch) for
  every interned file: otherwise identical files from two builds would
  differ by mtime and never be shared. Directories and symlinks are not
  interned and keep their times.
- An object must never be written through a deployment: the container's
  root file system is mounted read-only (``specs`` and ``deploy`` force
  ``root.readonly``), and nothing of skiff writes into a deployment after it
  was built.
- Garbage: an object whose link count is 1 is referenced only by the store
  itself; ``collect_garbage`` removes those (after an uninstall, or after
  an update replaced the older deployment). It runs under the
  system-containers lock, so no checkout can be about to link to one.

Files the file system will not link (``EMLINK``: too many links to one
inode) stay separate copies and are counted as unshared.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import SystemContainerError

OBJECT_MAGIC = b"skiff-object-v1\0"
OBJECT_SUFFIX = ".file"
CANONICAL_MTIME_NS = 0
_CHUNK = 1 << 20
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass
class InternStats:
    """What ``intern_tree`` did: regular files seen, new objects made, files
    that became links to objects already stored, files left as copies."""

    files: int = 0
    new_objects: int = 0
    shared: int = 0
    unshared: int = 0
    new_bytes: int = 0


@dataclass
class GarbageStats:
    removed: int = 0
    removed_bytes: int = 0
    kept: int = 0


def _xattrs(fd: int) -> list[tuple[str, bytes]]:
    try:
        names = os.listxattr(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise
    return sorted((name, os.getxattr(fd, name)) for name in names)


def object_digest(fd: int, st: os.stat_result) -> str:
    """The object name of the open regular file ``fd`` (see the module docstring)."""
    h = hashlib.sha256(OBJECT_MAGIC)
    h.update(f"{stat.S_IMODE(st.st_mode):o} {st.st_uid} {st.st_gid}\0".encode())
    for name, value in _xattrs(fd):
        h.update(name.encode() + b"\0" + str(len(value)).encode() + b"\0" + value)
    h.update(b"\0")
    while True:
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            break
        h.update(chunk)
    return h.hexdigest()


class ObjectStore:
    """``objects/`` of one store's system containers."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / (digest[2:] + OBJECT_SUFFIX)

    # --- interning ------------------------------------------------------------------
    def intern_tree(self, tree: Path) -> InternStats:
        """Replace every regular file below ``tree`` by a hard link to its object.

        ``tree`` is a directory this process built and nobody else uses (a
        staging deployment). It is walked through directory fds, never
        following a symlink. Directory times are restored after their
        entries were replaced.
        """
        stats = InternStats()
        seen: dict[tuple[int, int], str] = {}
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        top = os.open(tree, _O_DIR)
        try:
            self._intern_dir(top, str(tree), stats, seen)
        finally:
            os.close(top)
        return stats

    def _intern_dir(
        self, dfd: int, where: str, stats: InternStats, seen: dict[tuple[int, int], str]
    ) -> None:
        before = os.fstat(dfd)
        with os.scandir(dfd) as it:
            entries = [
                (e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False))
                for e in it
            ]
        for name, is_dir, is_file in entries:
            if is_dir:
                sub = os.open(name, _O_DIR, dir_fd=dfd)
                try:
                    self._intern_dir(sub, f"{where}/{name}", stats, seen)
                finally:
                    os.close(sub)
            elif is_file:
                self._intern_file(dfd, name, f"{where}/{name}", stats, seen)
        os.utime(dfd, ns=(before.st_atime_ns, before.st_mtime_ns))

    def _intern_file(
        self,
        dfd: int,
        name: str,
        where: str,
        stats: InternStats,
        seen: dict[tuple[int, int], str],
    ) -> None:
        stats.files += 1
        fd = os.open(name, _O_FILE, dir_fd=dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SystemContainerError(f"{where} changed while it was being checked out")
            key = (st.st_dev, st.st_ino)
            digest = seen.get(key)
            if digest is None:
                digest = object_digest(fd, st)
                seen[key] = digest
        finally:
            os.close(fd)
        target = self.path_for(digest)
        try:
            obj = os.lstat(target)
        except FileNotFoundError:
            obj = None
        if obj is not None and obj.st_ino == st.st_ino and obj.st_dev == st.st_dev:
            stats.shared += 1  # a second name of an inode interned just now
            return
        if obj is None:
            os.utime(
                name, ns=(CANONICAL_MTIME_NS, CANONICAL_MTIME_NS), dir_fd=dfd, follow_symlinks=False
            )
            target.parent.mkdir(mode=0o700, exist_ok=True)
            try:
                os.link(name, target, src_dir_fd=dfd, follow_symlinks=False)
            except FileExistsError:
                obj = os.lstat(target)
            except OSError as exc:
                if exc.errno != errno.EMLINK:
                    raise
                stats.unshared += 1
                return
            else:
                stats.new_objects += 1
                stats.new_bytes += st.st_size
                return
        self._check_object(target, obj, st)
        tmp = f".{name[:100]}.obj-{secrets.token_hex(4)}"
        try:
            os.link(target, tmp, dst_dir_fd=dfd, follow_symlinks=False)
        except OSError as exc:
            if exc.errno != errno.EMLINK:
                raise
            stats.unshared += 1
            return
        try:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        stats.shared += 1

    @staticmethod
    def _check_object(target: Path, obj: os.stat_result, st: os.stat_result) -> None:
        """An object whose metadata or size is not what its name says was changed
        after it was stored (written through a deployment): linking more files to
        it would spread the damage."""
        if (
            stat.S_IMODE(obj.st_mode) != stat.S_IMODE(st.st_mode)
            or obj.st_uid != st.st_uid
            or obj.st_gid != st.st_gid
            or obj.st_size != st.st_size
            or not stat.S_ISREG(obj.st_mode)
        ):
            raise SystemContainerError(
                f"object {target} does not match its name (modified after it was stored)",
                "a deployment was written to; uninstall the system containers that use it "
                "or remove the object, then install again",
            )

    # --- garbage ----------------------------------------------------------------------
    def _entries(self) -> Iterator[os.DirEntry[str]]:
        try:
            fanout = [e for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return
        for directory in fanout:
            with os.scandir(directory.path) as it:
                yield from it

    def collect_garbage(self) -> GarbageStats:
        """Remove objects no deployment links to (link count 1), stray temp files
        and empty fan-out directories.

        Call only under the system-containers lock (``SystemPaths.locked``).
        """
        stats = GarbageStats()
        for entry in self._entries():
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if (
                entry.name.endswith(OBJECT_SUFFIX)
                and not entry.name.startswith(".")
                and (st.st_nlink > 1)
            ):
                stats.kept += 1
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            stats.removed += 1
            stats.removed_bytes += st.st_size
        self._remove_empty_fanout()
        return stats

    def _remove_empty_fanout(self) -> None:
        try:
            fanout = [e.path for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return
        for path in fanout:
            with contextlib.suppress(OSError):  # not empty: still in use
                os.rmdir(path)

    def count(self) -> int:
        return sum(1 for e in self._entries() if e.name.endswith(OBJECT_SUFFIX))
