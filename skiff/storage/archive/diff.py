"""Produce layer tars from directories, and list what changed.

- ``diff(layer_dir, whiteout_format="overlay")``: the changes of an overlay
  upper directory as a layer tar. Everything in the upper directory is a
  change; whiteout devices become ``.wh.NAME`` and opaque directories get a
  ``.wh..wh..opq`` member right after their own header.
- ``diff(layer_dir, whiteout_format="vfs", parent_dir=old)``: the changes
  between two full trees. Entries are compared by type, permission bits,
  owner, device number, link target, xattrs and, for non-directories, size
  and mtime (containers/storage's rule: a directory's size and mtime are no
  measure of change). Added and changed entries are emitted, deleted ones as
  whiteouts, and every directory holding a change is emitted too, so its
  attributes survive (as containers/storage does).
- ``tar_directory(root)``: a whole tree, for ``skiff export``.
- ``changes(...)``: the same comparison as (kind, path) pairs, kind being
  "A", "C" or "D", for ``skiff diff``.

The output is deterministic: entries in depth-first order, names sorted
bytewise within each directory; whiteout and opaque markers have fixed
attributes (mode 0600, root, mtime 0); times are whole seconds. Hard links
among the emitted entries become link members pointing at the first name
emitted (by device and inode). Xattrs emitted are ``user.*`` and
``security.capability`` (what containers/storage carries), as PAX
``SCHILY.xattr.*``; long names and large numbers go to PAX records.
Sockets are not representable in tar and are left out, as GNU tar does.

Trees are walked by directory fds with ``O_NOFOLLOW`` (``dirfds``) and files
are opened with ``O_NOFOLLOW`` and checked against the inode first seen, so
a container swapping a file for a symlink while its layer is archived cannot
make host files appear in the tar.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Final, NamedTuple

from skiff.errors import StorageError
from skiff.storage.archive import whiteouts as wh
from skiff.storage.archive.apply import WhiteoutFormat
from skiff.storage.archive.dirfds import DirTree, describe
from skiff.storage.archive.tarheader import (
    BLKTYPE,
    CHRTYPE,
    DIRTYPE,
    FIFOTYPE,
    LNKTYPE,
    REGTYPE,
    SYMTYPE,
    TarHeader,
)
from skiff.storage.archive.tarwriter import END_OF_ARCHIVE, encode_header, padding

_FLUSH: Final = 256 << 10
_READ: Final = 1 << 20
_O_READ: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_UNSUPPORTED_OVERLAY_XATTRS: Final = ("trusted.overlay.redirect", "trusted.overlay.metacopy")


class Change(NamedTuple):
    """One entry of ``skiff diff``: kind "A" (added), "C" (changed), "D" (deleted)."""

    kind: str
    path: str
    """Absolute inside the container: ``/etc/hosts``."""


def keep_xattr(name: str) -> bool:
    """The xattrs a layer carries (containers/storage's choice), never
    overlayfs's own metadata."""
    if name.startswith(wh.OVERLAY_XATTR_PREFIXES):
        return False
    return name.startswith("user.") or name == "security.capability"


# --- public API ------------------------------------------------------------


def diff(
    layer_dir: str | os.PathLike[str],
    *,
    whiteout_format: WhiteoutFormat = "overlay",
    parent_dir: str | os.PathLike[str] | None = None,
) -> Iterator[bytes]:
    """The layer tar of ``layer_dir`` as chunks of bytes.

    overlay: ``layer_dir`` is the upper directory; ``parent_dir`` is unused.
    vfs: ``layer_dir`` is the full tree and ``parent_dir`` the parent
    layer's full tree (None: no parent, everything is added).
    """
    if whiteout_format == "overlay":
        return _overlay_tar(layer_dir)
    if parent_dir is None:
        return tar_directory(layer_dir)
    return _dirs_tar(parent_dir, layer_dir)


def tar_directory(root: str | os.PathLike[str]) -> Iterator[bytes]:
    """Every entry under ``root`` (not ``root`` itself) as a tar stream."""
    tree = _open_tree(root)
    try:
        out = _TarOut()
        for rel, name, pfd, st in _walk(tree, b""):
            yield from out.entry(rel, name, pfd, st)
        yield from out.finish()
    finally:
        tree.close()


def changes(
    layer_dir: str | os.PathLike[str],
    *,
    whiteout_format: WhiteoutFormat = "overlay",
    parent_dir: str | os.PathLike[str] | None = None,
    lower_dirs: Sequence[str | os.PathLike[str]] = (),
) -> list[Change]:
    """What ``layer_dir`` changed, in tree order.

    overlay: ``layer_dir`` is the upper directory and ``lower_dirs`` the
    lower layers, topmost first (they tell added from changed).
    vfs: compares ``layer_dir`` with ``parent_dir`` (None: all added).
    """
    if whiteout_format == "overlay":
        return _overlay_changes(layer_dir, lower_dirs)
    new = _open_tree(layer_dir)
    old = _open_tree(parent_dir) if parent_dir is not None else None
    try:
        return [Change(kind, describe(rel)) for kind, rel in _compare_trees(old, new)]
    finally:
        new.close()
        if old is not None:
            old.close()


def write_tar(chunks: Iterable[bytes], fileobj: IO[bytes]) -> int:
    """Write a tar stream to a file object; returns the bytes written."""
    total = 0
    for chunk in chunks:
        fileobj.write(chunk)
        total += len(chunk)
    return total


# --- walking ---------------------------------------------------------------


def _open_tree(root: str | os.PathLike[str]) -> DirTree:
    try:
        return DirTree(root)
    except OSError as exc:
        raise StorageError(
            f"cannot open directory {os.fspath(root)!s}: {exc.strerror}",
            "the layer directory is missing or unreadable",
        ) from exc


def _scan(tree: DirTree, rel: bytes) -> list[tuple[bytes, os.stat_result]]:
    """The entries of directory ``rel``, sorted by name, with their lstat."""
    fd = tree.dir_fd(rel, create=False)
    with os.scandir(fd) as entries:
        found = [(os.fsencode(e.name), e.stat(follow_symlinks=False)) for e in entries]
    found.sort(key=lambda item: item[0])
    return found


def _join(rel: bytes, name: bytes) -> bytes:
    return rel + b"/" + name if rel else name


def _walk(tree: DirTree, rel: bytes) -> Iterator[tuple[bytes, bytes, int, os.stat_result]]:
    """(path, name, parent fd, lstat) depth first; the fd is valid until the
    next item."""
    for name, st in _scan(tree, rel):
        child = _join(rel, name)
        yield child, name, tree.dir_fd(rel, create=False), st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(tree, child)


def _xattrs(pfd: int, name: bytes) -> dict[str, bytes]:
    path = f"/proc/self/fd/{pfd}/{os.fsdecode(name)}"
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    return {
        key: os.getxattr(path, key, follow_symlinks=False)
        for key in sorted(names)
        if keep_xattr(key)
    }


def _overlay_xattr_names(pfd: int, name: bytes) -> list[str]:
    path = f"/proc/self/fd/{pfd}/{os.fsdecode(name)}"
    try:
        return [
            key
            for key in os.listxattr(path, follow_symlinks=False)
            if key.startswith(wh.OVERLAY_XATTR_PREFIX)
        ]
    except OSError:
        return []


# --- tar output --------------------------------------------------------------


def _marker(rel: bytes) -> TarHeader:
    """A whiteout or opaque marker: fixed attributes, so diffs reproduce."""
    return TarHeader(name=rel, typeflag=REGTYPE, mode=0o600)


class _TarOut:
    """Turns entries into tar bytes, buffering small pieces into big chunks."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._links: dict[tuple[int, int], bytes] = {}

    def marker(self, rel: bytes) -> Iterator[bytes]:
        self._buf += encode_header(_marker(rel))
        yield from self._maybe_flush()

    def entry(self, rel: bytes, name: bytes, pfd: int, st: os.stat_result) -> Iterator[bytes]:
        try:
            yield from self._entry(rel, name, pfd, st)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINVAL, errno.ELOOP):  # replaced or gone
                raise _changed(rel) from exc
            raise StorageError(
                f"cannot archive {describe(rel)}: {exc.strerror}",
                "check the layer directory's permissions and filesystem",
            ) from exc

    def _entry(self, rel: bytes, name: bytes, pfd: int, st: os.stat_result) -> Iterator[bytes]:
        mode = st.st_mode
        header = TarHeader(
            name=rel,
            mode=stat.S_IMODE(mode),
            uid=st.st_uid,
            gid=st.st_gid,
            mtime_ns=st.st_mtime_ns,
        )
        data = False
        if stat.S_ISDIR(mode):
            header.typeflag = DIRTYPE
            header.name = rel + b"/"
        else:
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self._links.get(key)
                if first is not None:
                    header.typeflag = LNKTYPE
                    header.linkname = first
                    self._buf += encode_header(header)
                    yield from self._maybe_flush()
                    return
                self._links[key] = rel
            if stat.S_ISREG(mode):
                header.typeflag = REGTYPE
                header.size = st.st_size
                data = st.st_size > 0
            elif stat.S_ISLNK(mode):
                header.typeflag = SYMTYPE
                header.linkname = os.readlink(name, dir_fd=pfd)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                header.typeflag = CHRTYPE if stat.S_ISCHR(mode) else BLKTYPE
                header.devmajor = os.major(st.st_rdev)
                header.devminor = os.minor(st.st_rdev)
            elif stat.S_ISFIFO(mode):
                header.typeflag = FIFOTYPE
            else:
                return  # a socket: tar cannot hold it
        header.xattrs = _xattrs(pfd, name)
        self._buf += encode_header(header)
        if data:
            yield from self._file_data(rel, name, pfd, st)
        else:
            yield from self._maybe_flush()

    def _file_data(self, rel: bytes, name: bytes, pfd: int, st: os.stat_result) -> Iterator[bytes]:
        fd = os.open(name, _O_READ, dir_fd=pfd)  # ELOOP if now a symlink
        try:
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise _changed(rel)
            remaining = st.st_size
            if remaining <= _FLUSH:
                data = os.read(fd, remaining)
                while len(data) < remaining:
                    more = os.read(fd, remaining - len(data))
                    if not more:
                        raise _shrank(rel)
                    data += more
                self._buf += data
                self._buf += padding(st.st_size)
                yield from self._maybe_flush()
                return
            if self._buf:
                yield bytes(self._buf)
                self._buf.clear()
            while remaining:
                chunk = os.read(fd, min(_READ, remaining))
                if not chunk:
                    raise _shrank(rel)
                remaining -= len(chunk)
                yield chunk
            self._buf += padding(st.st_size)
        finally:
            os.close(fd)

    def _maybe_flush(self) -> Iterator[bytes]:
        if len(self._buf) >= _FLUSH:
            yield bytes(self._buf)
            self._buf.clear()

    def finish(self) -> Iterator[bytes]:
        self._buf += END_OF_ARCHIVE
        yield bytes(self._buf)
        self._buf.clear()


def _changed(rel: bytes) -> StorageError:
    return StorageError(
        f"{describe(rel)} changed while its layer was being archived",
        "stop the container and try again",
    )


def _shrank(rel: bytes) -> StorageError:
    return StorageError(
        f"{describe(rel)} shrank while its layer was being archived",
        "stop the container and try again",
    )


# --- overlay upper directories ---------------------------------------------


def _overlay_tar(upper: str | os.PathLike[str]) -> Iterator[bytes]:
    tree = _open_tree(upper)
    try:
        out = _TarOut()
        for rel, name, pfd, st in _walk(tree, b""):
            if wh.is_overlay_whiteout(st):
                parent, _, base = rel.rpartition(b"/")
                yield from out.marker(_join(parent, wh.WHITEOUT_PREFIX + base))
                continue
            if stat.S_ISDIR(st.st_mode):
                _check_overlay_dir(pfd, name, rel)
            yield from out.entry(rel, name, pfd, st)
            if stat.S_ISDIR(st.st_mode) and wh.is_overlay_opaque(tree.dir_fd(rel, create=False)):
                yield from out.marker(_join(rel, wh.OPAQUE_MARKER))
        yield from out.finish()
    finally:
        tree.close()


def _check_overlay_dir(pfd: int, name: bytes, rel: bytes) -> None:
    for key in _overlay_xattr_names(pfd, name):
        if key in _UNSUPPORTED_OVERLAY_XATTRS:
            raise StorageError(
                f"{describe(rel)} in the upper directory carries {key}",
                "skiff mounts overlay with redirect_dir and metacopy off; "
                "this upper directory was written by another mount",
            )


def _overlay_changes(
    upper: str | os.PathLike[str], lower_dirs: Sequence[str | os.PathLike[str]]
) -> list[Change]:
    tree = _open_tree(upper)
    lowers = [_open_tree(p) for p in lower_dirs]
    found: list[tuple[str, bytes]] = []
    try:
        _overlay_changes_in(tree, lowers, b"", False, found)
    finally:
        tree.close()
        for lower in lowers:
            lower.close()
    found.sort(key=lambda item: item[1].split(b"/"))
    return [Change(kind, describe(rel)) for kind, rel in found]


def _overlay_changes_in(
    tree: DirTree,
    lowers: list[DirTree],
    rel: bytes,
    added: bool,
    found: list[tuple[str, bytes]],
) -> None:
    entries = _scan(tree, rel)
    for name, st in entries:
        child = _join(rel, name)
        if wh.is_overlay_whiteout(st):
            found.append(("D", child))
            continue
        in_lower = not added and wh.lookup_lower(child, lowers) is not None
        found.append(("C" if in_lower else "A", child))
        if not stat.S_ISDIR(st.st_mode):
            continue
        if in_lower and wh.is_overlay_opaque(tree.dir_fd(child, create=False)):
            mine = {n for n, _ in _scan(tree, child)}
            for gone in sorted(wh.list_lower(child, lowers) - mine):
                found.append(("D", _join(child, gone)))
        _overlay_changes_in(tree, lowers, child, not in_lower, found)


# --- two full trees (vfs) --------------------------------------------------


def _dirs_tar(
    old_root: str | os.PathLike[str], new_root: str | os.PathLike[str]
) -> Iterator[bytes]:
    old = _open_tree(old_root)
    new = _open_tree(new_root)
    try:
        out = _TarOut()
        for kind, rel in _compare_trees(old, new):
            parent, _, base = rel.rpartition(b"/")
            if kind == "D":
                yield from out.marker(_join(parent, wh.WHITEOUT_PREFIX + base))
                continue
            pfd = new.dir_fd(parent, create=False)
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            yield from out.entry(rel, base, pfd, st)
        yield from out.finish()
    finally:
        old.close()
        new.close()


def _compare_trees(old: DirTree | None, new: DirTree) -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    _compare_dir(old, new, b"", found)
    return found


def _compare_dir(
    old: DirTree | None, new: DirTree, rel: bytes, found: list[tuple[str, bytes]]
) -> None:
    new_entries = _scan(new, rel)
    old_entries = dict(_scan(old, rel)) if old is not None else {}
    new_names = {name for name, _ in new_entries}
    gone = [name for name in old_entries if name not in new_names]
    merged = sorted(
        [(name, st) for name, st in new_entries] + [(name, None) for name in gone],
        key=lambda item: item[0],
    )
    for name, new_st in merged:
        child = _join(rel, name)
        if new_st is None:
            found.append(("D", child))
            continue
        old_st = old_entries.get(name)
        new_is_dir = stat.S_ISDIR(new_st.st_mode)
        if old_st is None or old is None:
            found.append(("A", child))
            if new_is_dir:
                _all_added(new, child, found)
            continue
        if new_is_dir and stat.S_ISDIR(old_st.st_mode):
            mark = len(found)
            changed = _differs(old, new, rel, name, old_st=old_st, new_st=new_st)
            if changed:
                found.append(("C", child))
            _compare_dir(old, new, child, found)
            if not changed and len(found) > mark:
                # A change inside: emit the directory too, so its attributes
                # travel with it.
                found.insert(mark, ("C", child))
            continue
        if stat.S_IFMT(old_st.st_mode) != stat.S_IFMT(new_st.st_mode) or _differs(
            old, new, rel, name, old_st=old_st, new_st=new_st
        ):
            found.append(("C", child))
            if new_is_dir:
                _all_added(new, child, found)


def _all_added(tree: DirTree, rel: bytes, found: list[tuple[str, bytes]]) -> None:
    for child, _name, _pfd, _st in _walk(tree, rel):
        found.append(("A", child))


def _differs(
    old: DirTree,
    new: DirTree,
    rel: bytes,
    name: bytes,
    *,
    old_st: os.stat_result,
    new_st: os.stat_result,
) -> bool:
    if (
        old_st.st_mode != new_st.st_mode
        or old_st.st_uid != new_st.st_uid
        or old_st.st_gid != new_st.st_gid
        or old_st.st_rdev != new_st.st_rdev
    ):
        return True
    if not stat.S_ISDIR(new_st.st_mode) and (
        old_st.st_mtime_ns != new_st.st_mtime_ns or old_st.st_size != new_st.st_size
    ):
        return True
    old_fd = old.dir_fd(rel, create=False)
    if stat.S_ISLNK(new_st.st_mode):
        old_link = os.readlink(name, dir_fd=old_fd)
        if old_link != os.readlink(name, dir_fd=new.dir_fd(rel, create=False)):
            return True
    old_xattrs = _xattrs(old.dir_fd(rel, create=False), name)
    return old_xattrs != _xattrs(new.dir_fd(rel, create=False), name)
