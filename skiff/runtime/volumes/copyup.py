"""Filling a volume from the image the first time a container mounts it.

podman's rules (libpod, 4.x), which skiff follows:

- *chown* (once per volume, unless it was created with ``o=uid=``/``gid=``):
  the volume's root becomes the container user's, then, if the image has
  something at the mount's destination, takes that directory's owner,
  mode and times — so a volume at /var/lib/mysql looks like the image's
  /var/lib/mysql.
- *copy-up* (once per volume, unless the mount says ``nocopy``): if the
  image has a directory at the destination and the volume is empty, the
  directory's content is copied in with owners, modes, times, xattrs,
  hardlinks and device nodes (``skiff.storage.treecopy``). A volume that
  already holds data is left alone and not offered again; a destination
  the image does not have leaves the volume waiting for one that does.
- ``U`` on the mount: the whole volume is chowned to the container user
  at every start.

The destination is resolved inside the container's root file system with
every symlink taken relative to that root (``secure_join``), so an image
whose ``/data`` is a link to ``/etc`` copies the image's /etc, never the
host's. The copy is made in a hidden directory inside the volume and moved
into place entry by entry; a copy interrupted half-way leaves only that
hidden directory, which the next attempt removes before deciding whether
the volume is empty.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections import deque
from pathlib import Path

from skiff.errors import StorageError

COPY_PREFIX = ".skiff-copyup-"
MAX_SYMLINKS = 255


def secure_join(root: Path, path: str) -> Path:
    """``root/path`` with symlinks resolved as if ``root`` were ``/``.

    Components after the first missing one are joined lexically (``..``
    never climbs above ``root``). Raises StorageError on a symlink loop.
    """
    parts = deque(p for p in path.split("/") if p)
    current: list[str] = []
    links = 0
    while parts:
        part = parts.popleft()
        if part == ".":
            continue
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = os.path.join(root, *current, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            current.append(part)
            for rest in parts:
                if rest == "..":
                    if current:
                        current.pop()
                elif rest != ".":
                    current.append(rest)
            break
        except OSError as exc:
            raise StorageError(
                f"cannot look up {path} in the container's root file system: {exc.strerror}"
            ) from exc
        if not stat.S_ISLNK(st.st_mode):
            current.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise StorageError(
                f"too many symbolic links resolving {path} in the container's root file system"
            )
        target = os.readlink(candidate)
        if target.startswith("/"):
            current = []
        parts.extendleft(reversed([p for p in target.split("/") if p]))
    return Path(root, *current)


def _entries(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError as exc:
        raise StorageError(f"cannot read the volume directory {path}: {exc.strerror}") from exc


def remove_partial_copies(data_dir: Path) -> None:
    """Delete what an interrupted copy-up left in the volume."""
    for entry in _entries(data_dir):
        if entry.startswith(COPY_PREFIX):
            shutil.rmtree(data_dir / entry, ignore_errors=True)


def is_empty(data_dir: Path) -> bool:
    return not _entries(data_dir)


def _take_attributes(target: Path, st: os.stat_result) -> None:
    os.chown(target, st.st_uid, st.st_gid)
    os.chmod(target, stat.S_IMODE(st.st_mode))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def fix_permissions(data_dir: Path, image_dir: Path, uid: int, gid: int) -> None:
    """The first-use chown: to the container user, then to the image directory's
    owner, mode and times when the image has one at the destination."""
    try:
        os.chown(data_dir, uid, gid)
        try:
            st = os.stat(image_dir)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            _take_attributes(data_dir, st)
    except OSError as exc:
        raise StorageError(
            f"cannot set the owner of the volume directory {data_dir}: {exc.strerror}",
            "check the volume's file system",
        ) from exc


def copy_up(source: Path, data_dir: Path) -> bool:
    """Copy the content of the image directory ``source`` into the empty volume.

    Returns False (and copies nothing) when ``source`` is not a directory.
    The volume's root takes ``source``'s owner, mode and times, as a tar
    copy of ``source/.`` would give it.
    """
    from skiff.storage.treecopy import copy_tree

    try:
        st = os.stat(source)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    staging = data_dir / f"{COPY_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        copy_tree(source, staging)
        for entry in os.listdir(staging):
            moved = os.lstat(staging / entry)
            os.rename(staging / entry, data_dir / entry)
            if stat.S_ISDIR(moved.st_mode):  # a moved directory's ".." changed: keep its times
                os.utime(data_dir / entry, ns=(moved.st_atime_ns, moved.st_mtime_ns))
        os.rmdir(staging)
        _take_attributes(data_dir, st)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StorageError(
            f"cannot copy {source} into the volume at {data_dir}: {exc.strerror}",
            "check the free space of the volume's file system",
        ) from exc
    return True


def chown_tree(data_dir: Path, uid: int, gid: int) -> None:
    """``U``: everything in the volume to ``uid:gid``, symlinks themselves, not
    their targets; file systems mounted beneath are not entered."""
    try:
        device = os.lstat(data_dir).st_dev
        os.lchown(data_dir, uid, gid)
        for top, dirs, files in os.walk(data_dir):
            keep = []
            for name in dirs:
                path = os.path.join(top, name)
                st = os.lstat(path)
                os.lchown(path, uid, gid)
                if st.st_dev == device and not stat.S_ISLNK(st.st_mode):
                    keep.append(name)
            dirs[:] = keep
            for name in files:
                os.lchown(os.path.join(top, name), uid, gid)
    except OSError as exc:
        raise StorageError(
            f"cannot change the owner of the volume at {data_dir}: {exc.strerror}"
        ) from exc
