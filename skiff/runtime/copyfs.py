"""``skiff cp`` at the file-descriptor level: paths inside a root, trees as tar.

A container's root filesystem belongs to whoever controls the container.
Any of its paths may be a symlink to ``/``, to ``../../..`` or to a host
path, and a running container can swap a directory for such a symlink
while a copy is in progress (CVE-2018-15664, CVE-2019-10152). So nothing
here ever hands the kernel a path string that crosses the container's root:

- ``locate(root_fd, path)`` walks ``path`` one component at a time with
  ``openat(parent, name, O_PATH|O_NOFOLLOW)`` from a directory fd of the
  root. A symlink is read with ``readlinkat`` and resolved as inside a
  chroot: an absolute target restarts at the root, ``..`` pops back to a
  directory fd already held and never climbs above the root. What comes
  back is a directory fd plus a name, never a path.
- ``TreeTar`` turns an entry and everything under it into a tar stream,
  opening every directory and file relative to its parent's fd with
  ``O_NOFOLLOW`` (a symlink is archived as a symlink, never followed), and
  checking that a file opened is the inode that was listed. Directories on
  the pseudo filesystems a runtime mounts (a running container's /proc,
  /sys, /dev) are archived empty.
- Writing goes through ``skiff.storage.archive.apply`` into a directory fd
  (``/proc/self/fd/N``), which creates every entry relative to its parent's
  fd and refuses to write through a symlink.

The host side of a copy uses the same functions with the host's ``/`` as
the root, so one set of rules covers both directions.

Names beginning with ``.wh.`` are refused: they are layer whiteout markers,
and the extractor would delete files for them instead of copying them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from skiff.errors import ContainerError, StorageError
from skiff.storage.archive.decompress import DecompressedStream, Reader
from skiff.storage.archive.diff import keep_xattr
from skiff.storage.archive.dirfds import DirTree, clean_name
from skiff.storage.archive.tarheader import (
    BLKTYPE,
    CHRTYPE,
    DIRTYPE,
    FIFOTYPE,
    LNKTYPE,
    REGTYPE,
    SYMTYPE,
    BlockReader,
    TarHeader,
    iter_headers,
)
from skiff.storage.archive.tarwriter import END_OF_ARCHIVE, encode_header, padding
from skiff.storage.archive.whiteouts import WHITEOUT_PREFIX

MAX_SYMLINKS: Final = 40
_O_PATH_DIR: Final = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_FILE: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FLUSH: Final = 256 << 10
_READ: Final = 1 << 20

Owner = tuple[int, int]
MemberCheck = Callable[[bytes, bool], None]
"""Called with each member's name and whether it is a directory, before it is emitted."""


def fd_path(fd: int) -> str:
    """A path that reopens ``fd`` (the magic link of procfs), for APIs taking paths."""
    return f"/proc/self/fd/{fd}"


def components(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


# --- resolving paths inside a root ----------------------------------------------------


@dataclass
class Located:
    """Where a path landed inside a root. Owns ``parent_fd``: call ``close``.

    ``parent_fd`` is an O_PATH fd of the directory holding the final entry
    ``name``; when the path is a directory reached without a final name
    (``/``, ``a/..``), ``name`` is None and ``parent_fd`` is that directory.
    ``st`` is the final entry's lstat (None when it does not exist);
    ``missing`` the components from the first one that does not exist;
    ``path`` the resolved path inside the root, for messages.
    """

    parent_fd: int
    name: str | None
    st: os.stat_result | None
    missing: tuple[str, ...]
    path: str

    @property
    def exists(self) -> bool:
        return self.st is not None

    @property
    def is_dir(self) -> bool:
        return self.st is not None and stat.S_ISDIR(self.st.st_mode)

    def open_dir(self) -> int:
        """An O_PATH fd of the final directory (the caller closes it)."""
        if self.name is None:
            return os.dup(self.parent_fd)
        return os.open(self.name, _O_PATH_DIR, dir_fd=self.parent_fd)

    def close(self) -> None:
        if self.parent_fd >= 0:
            os.close(self.parent_fd)
            self.parent_fd = -1

    def __enter__(self) -> Located:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def locate(root_fd: int, path: str, *, follow_final: bool = True) -> Located:
    """Resolve ``path`` inside the directory ``root_fd`` (see the module docstring).

    Raises OSError (ENOTDIR, ELOOP) for paths that cannot be walked; a
    missing component is not an error (see ``Located.missing``).
    """
    stack = [os.dup(root_fd)]
    names: list[str] = []
    pending = deque(components(path))
    links = 0

    def where(name: str | None = None) -> str:
        return "/" + "/".join([*names, name] if name else names)

    try:
        while pending:
            name = pending.popleft()
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    names.pop()
                continue
            last = not pending
            try:
                st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                missing = (name, *pending)
                return Located(stack.pop(), name, None, missing, where(name))
            if stat.S_ISLNK(st.st_mode) and (follow_final or not last):
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                    names.clear()
                pending.extendleft(reversed(components(target)))
                continue
            if last:
                return Located(stack.pop(), name, st, (), where(name))
            if not stat.S_ISDIR(st.st_mode):
                raise OSError(errno.ENOTDIR, "not a directory", where(name))
            stack.append(os.open(name, _O_PATH_DIR, dir_fd=stack[-1]))
            names.append(name)
        top = stack.pop()
        return Located(top, None, os.fstat(top), (), where())
    finally:
        for fd in stack:
            os.close(fd)


# --- trees as tar streams ---------------------------------------------------------------


def refuse_whiteout_name(base: bytes, rel: bytes) -> None:
    if base.startswith(WHITEOUT_PREFIX):
        shown = rel.decode("utf-8", "backslashreplace")
        raise ContainerError(
            f"cannot copy {shown!r}: names beginning with .wh. are layer whiteout markers",
            "rename the file before copying it",
        )


def _changed(rel: bytes) -> ContainerError:
    shown = rel.decode("utf-8", "backslashreplace")
    return ContainerError(
        f"{shown!r} changed while it was being copied",
        "retry, or stop the container first",
    )


class TreeTar:
    """Tar bytes of directory trees read through fds, never following a symlink.

    ``owner`` replaces every member's uid/gid (None keeps them); ``check``
    sees every member before it is emitted (the destination's overwrite
    rules). Hard links among the emitted entries become link members to the
    first name emitted.
    """

    def __init__(
        self,
        owner: Owner | None = None,
        check: MemberCheck | None = None,
        skip_devices: frozenset[int] = frozenset(),
    ) -> None:
        self.owner = owner
        self.check = check
        self.skip_devices = skip_devices
        """Directories on these devices are archived without their contents
        (a running container's /proc, /sys and /dev, which the runtime made)."""
        self.entries = 0
        self._buf = bytearray()
        self._links: dict[tuple[int, int], bytes] = {}

    def add(
        self,
        parent_fd: int,
        name: str | None,
        as_name: bytes,
        expected: os.stat_result | None = None,
    ) -> Iterator[bytes]:
        """The entry ``name`` of directory ``parent_fd`` (None: that directory
        itself) named ``as_name`` in the tar, with all it holds; ``as_name``
        b"" puts a directory's contents at the top of the tar. ``expected``:
        the entry as it was located; another inode there now (a running
        container swapped it) is an error, not a different copy."""
        try:
            if name is None:
                dir_fd = os.open(".", _O_READ_DIR, dir_fd=parent_fd)
                try:
                    st = os.fstat(dir_fd)
                    if expected is not None and _identity(st) != _identity(expected):
                        raise _changed(as_name or b".")
                    if as_name:
                        yield from self._header(as_name, st, dir_fd)
                    yield from self._tree(dir_fd, as_name)
                finally:
                    os.close(dir_fd)
                return
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            if expected is not None and _identity(st) != _identity(expected):
                raise _changed(as_name or os.fsencode(name))
            if stat.S_ISDIR(st.st_mode):
                dir_fd = os.open(name, _O_READ_DIR, dir_fd=parent_fd)
                try:
                    st = os.fstat(dir_fd)
                    if expected is not None and _identity(st) != _identity(expected):
                        raise _changed(as_name or os.fsencode(name))
                    if as_name:
                        yield from self._header(as_name, st, dir_fd)
                    yield from self._tree(dir_fd, as_name)
                finally:
                    os.close(dir_fd)
                return
            if not as_name:
                raise ContainerError(f"{name!r} is not a directory")
            yield from self._entry(parent_fd, os.fsencode(name), as_name, st)
        except OSError as exc:
            raise self._os_error(exc, as_name or b".") from exc

    def finish(self) -> Iterator[bytes]:
        self._buf += END_OF_ARCHIVE
        yield bytes(self._buf)
        self._buf.clear()

    # --- walking --------------------------------------------------------------------

    def _tree(self, top_fd: int, top_rel: bytes) -> Iterator[bytes]:
        """Everything under the open directory ``top_fd`` (depth first, sorted)."""
        stack: list[tuple[int, bytes, Iterator[tuple[bytes, os.stat_result]]]] = [
            (top_fd, top_rel, iter(_listing(top_fd)))
        ]
        try:
            while stack:
                dir_fd, rel, items = stack[-1]
                item = next(items, None)
                if item is None:
                    stack.pop()
                    if dir_fd != top_fd:
                        os.close(dir_fd)
                    continue
                base, st = item
                child = rel + b"/" + base if rel else base
                if stat.S_ISDIR(st.st_mode):
                    refuse_whiteout_name(base, child)
                    try:
                        sub = os.open(base, _O_READ_DIR, dir_fd=dir_fd)
                    except OSError as exc:
                        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                            raise _changed(child) from exc
                        raise
                    try:
                        sub_st = os.fstat(sub)
                        yield from self._header(child, sub_st, sub)
                        if sub_st.st_dev in self.skip_devices:
                            os.close(sub)
                            continue
                        stack.append((sub, child, iter(_listing(sub))))
                    except BaseException:
                        os.close(sub)
                        raise
                    continue
                yield from self._entry(dir_fd, base, child, st)
        finally:
            for dir_fd, _, _ in stack:
                if dir_fd != top_fd:
                    os.close(dir_fd)

    def _entry(self, dir_fd: int, base: bytes, rel: bytes, st: os.stat_result) -> Iterator[bytes]:
        """One non-directory entry."""
        refuse_whiteout_name(base, rel)
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return  # tar cannot hold a socket (GNU tar skips them too)
        if st.st_nlink > 1:
            first = self._links.get((st.st_dev, st.st_ino))
            if first is not None:
                header = self._new_header(rel, st)
                header.typeflag = LNKTYPE
                header.linkname = first
                yield from self._emit(header, False)
                return
            self._links[(st.st_dev, st.st_ino)] = rel
        if stat.S_ISREG(mode):
            yield from self._file(dir_fd, base, rel, st)
            return
        header = self._new_header(rel, st)
        if stat.S_ISLNK(mode):
            header.typeflag = SYMTYPE
            try:
                header.linkname = os.readlink(base, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.ENOENT):
                    raise _changed(rel) from exc
                raise
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            header.typeflag = CHRTYPE if stat.S_ISCHR(mode) else BLKTYPE
            header.devmajor = os.major(st.st_rdev)
            header.devminor = os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            header.typeflag = FIFOTYPE
        else:
            return
        yield from self._emit(header, False)

    def _file(
        self, dir_fd: int, base: bytes, rel: bytes, listed: os.stat_result
    ) -> Iterator[bytes]:
        try:
            fd = os.open(base, _O_READ_FILE, dir_fd=dir_fd)  # ELOOP if now a symlink
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO):
                raise _changed(rel) from exc
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (
                listed.st_dev,
                listed.st_ino,
            ):
                raise _changed(rel)
            header = self._new_header(rel, st)
            header.size = st.st_size
            header.xattrs = _fd_xattrs(fd)
            yield from self._emit(header, False)
            remaining = st.st_size
            while remaining:
                chunk = os.read(fd, min(_READ, remaining))
                if not chunk:
                    raise _changed(rel)  # shrank: the header already promised more
                remaining -= len(chunk)
                self._buf += chunk
                if len(self._buf) >= _FLUSH:
                    yield bytes(self._buf)
                    self._buf.clear()
            self._buf += padding(st.st_size)
        finally:
            os.close(fd)

    def _header(self, rel: bytes, st: os.stat_result, dir_fd: int) -> Iterator[bytes]:
        header = self._new_header(rel + b"/", st)
        header.typeflag = DIRTYPE
        header.xattrs = _fd_xattrs(dir_fd)
        yield from self._emit(header, True)

    def _new_header(self, rel: bytes, st: os.stat_result) -> TarHeader:
        uid, gid = self.owner if self.owner is not None else (st.st_uid, st.st_gid)
        return TarHeader(
            name=rel, mode=stat.S_IMODE(st.st_mode), uid=uid, gid=gid, mtime_ns=st.st_mtime_ns
        )

    def _emit(self, header: TarHeader, is_dir: bool) -> Iterator[bytes]:
        if self.check is not None:
            self.check(header.name.rstrip(b"/"), is_dir)
        self.entries += 1
        self._buf += encode_header(header)
        if len(self._buf) >= _FLUSH:
            yield bytes(self._buf)
            self._buf.clear()

    @staticmethod
    def _os_error(exc: OSError, rel: bytes) -> ContainerError:
        shown = rel.decode("utf-8", "backslashreplace")
        return ContainerError(
            f"cannot read {shown!r} for copying: {exc.strerror or exc}",
            "check that the source is readable",
        )


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode)


def _listing(dir_fd: int) -> list[tuple[bytes, os.stat_result]]:
    with os.scandir(dir_fd) as entries:
        found = [(os.fsencode(e.name), e.stat(follow_symlinks=False)) for e in entries]
    found.sort(key=lambda item: item[0])
    return found


def _fd_xattrs(fd: int) -> dict[str, bytes]:
    """The xattrs a layer would carry (``user.*``, ``security.capability``)."""
    try:
        names = os.listxattr(fd)
    except OSError:
        return {}
    out: dict[str, bytes] = {}
    for key in sorted(names):
        if keep_xattr(key):
            try:
                out[key] = os.getxattr(fd, key)
            except OSError:
                continue
    return out


# --- a tar stream from outside (``skiff cp - CTR:DIR``) -------------------------------


def restream(
    stream: Reader, owner: Owner | None = None, check: MemberCheck | None = None
) -> Iterator[bytes]:
    """A tar read from ``stream`` (plain, gzip or zstd), re-encoded member by
    member: names cleaned (nothing may climb out), whiteout names refused,
    owners replaced when ``owner`` is given, ``check`` called per member."""
    source = DecompressedStream(stream, what="the tar stream on standard input")
    try:
        reader = BlockReader(source.next_chunk)
        buf = bytearray()
        for header in iter_headers(reader):
            rel = clean_name(header.name)
            if not rel:
                continue  # the directory itself: its attributes are not changed
            refuse_whiteout_name(rel.rpartition(b"/")[2], rel)
            is_dir = header.typeflag == DIRTYPE
            if check is not None:
                check(rel, is_dir)
            header.name = rel + b"/" if is_dir else rel
            if owner is not None:
                header.uid, header.gid = owner
                header.uname = header.gname = b""
            size = header.size if header.typeflag == REGTYPE else 0
            header.size = size
            buf += encode_header(header)
            remaining = size
            while remaining:
                chunk = reader.read(min(_READ, remaining))
                if not chunk:
                    break  # iter_headers reports the truncation
                remaining -= len(chunk)
                buf += chunk
                if len(buf) >= _FLUSH:
                    yield bytes(buf)
                    buf.clear()
            buf += padding(size)
            if len(buf) >= _FLUSH:
                yield bytes(buf)
                buf.clear()
        buf += END_OF_ARCHIVE
        yield bytes(buf)
    finally:
        source.close()


# --- the destination's rules -------------------------------------------------------------


class OverwriteCheck:
    """Refuses to replace a directory by a non-directory, or the reverse, unless
    ``overwrite`` (podman's ``--overwrite``); entries are looked up below
    ``dir_fd`` without following symlinks."""

    def __init__(self, dir_fd: int, overwrite: bool, describe: Callable[[bytes], str]) -> None:
        self.overwrite = overwrite
        self.describe = describe
        self.tree: DirTree | None = None if overwrite else DirTree(fd_path(dir_fd))

    def __call__(self, rel: bytes, is_dir: bool) -> None:
        if self.tree is None:
            return
        parent, _, base = rel.rpartition(b"/")
        try:
            pfd = self.tree.dir_fd(parent, create=False)
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except (OSError, StorageError):
            # missing, or below a symlink or file: nothing to replace here, or
            # the check of that parent already decided
            return
        if stat.S_ISDIR(st.st_mode) == is_dir:
            return
        what = "directory" if is_dir else "non-directory"
        existing = "directory" if stat.S_ISDIR(st.st_mode) else "non-directory"
        raise ContainerError(
            f"cannot overwrite {existing} {self.describe(rel)!r} with {what}",
            "use --overwrite to replace it",
        )

    def close(self) -> None:
        if self.tree is not None:
            self.tree.close()
            self.tree = None
