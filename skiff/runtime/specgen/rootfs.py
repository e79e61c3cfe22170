"""Paths inside an untrusted root filesystem, resolved without ever leaving it.

An image's rootfs is written by whoever built the image. Its ``/etc/passwd``
may be a symlink to ``/etc/shadow`` *of the host* (CVE-2024-9676), its
``WorkingDir`` may be a symlink to ``/usr/lib``, its ``/etc`` a symlink to
``../../../..``. A plain ``open(rootfs / "etc/passwd")`` follows those links
on the host. Here every component is opened relative to the directory file
descriptor of its parent with ``O_NOFOLLOW``; a symlink is read with
``readlinkat`` and resolved as the kernel would *inside a chroot*: an
absolute target restarts at the rootfs, ``..`` never climbs above it.

The walk keeps an fd for every directory on the current path, so ``..``
pops back to an fd already held instead of reopening a path a concurrent
writer (a running container sharing this rootfs) could have swapped. An
entry replaced by a symlink between ``fstatat`` and ``openat`` makes the
open fail (``O_NOFOLLOW``); nothing ever resolves on the host.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MAX_SYMLINKS = 40
"""The kernel's limit (ELOOP) on symlinks followed during one lookup."""

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


@dataclass(frozen=True)
class Resolved:
    """Where a path landed inside the root: ``path`` is the resolved absolute
    in-root path (symlinks followed inside the root), ``missing`` the trailing
    components that do not exist (empty when the whole path exists)."""

    path: str
    missing: tuple[str, ...]


class _Walk:
    """One lookup: a stack of directory fds from the root down."""

    def __init__(self, root_fd: int) -> None:
        self.fds = [os.dup(root_fd)]
        self.names: list[str] = []

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    @property
    def dir_fd(self) -> int:
        return self.fds[-1]

    def to_root(self) -> None:
        while len(self.fds) > 1:
            os.close(self.fds.pop())
        self.names.clear()

    def up(self) -> None:
        if len(self.fds) > 1:
            os.close(self.fds.pop())
            self.names.pop()

    def down(self, name: str) -> None:
        fd = os.open(name, _DIR_FLAGS, dir_fd=self.dir_fd)
        self.fds.append(fd)
        self.names.append(name)

    def current(self) -> str:
        return "/" + "/".join(self.names)


def _lookup(
    walk: _Walk, path: str, *, follow_final: bool, create: int | None = None
) -> tuple[str | None, list[str]]:
    """Walk ``path``; leave ``walk`` at the final component's parent.

    Returns ``(final_name, missing)``: ``final_name`` is the last component
    (None when the path resolves to a directory already pushed, e.g. "/" or
    "a/.."), ``missing`` the components from the first one that does not
    exist (not created when ``create`` is None; else directories are made
    with mode ``create``).
    """
    pending = deque(_components(path))
    links = 0
    while pending:
        name = pending.popleft()
        if name == "..":
            walk.up()
            continue
        last = not pending
        try:
            st = os.stat(name, dir_fd=walk.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            if create is None:
                return name, [name, *pending]
            os.mkdir(name, create, dir_fd=walk.dir_fd)
            st = os.stat(name, dir_fd=walk.dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            if last and not follow_final:
                return name, []
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
            target = os.readlink(name, dir_fd=walk.dir_fd)
            if target.startswith("/"):
                walk.to_root()
            pending.extendleft(reversed(_components(target)))
            continue
        if last:
            if stat.S_ISDIR(st.st_mode):
                walk.down(name)
                return None, []
            return name, []
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, "not a directory", walk.current() + "/" + name)
        walk.down(name)
    return None, []


@contextmanager
def _root(root: Path) -> Iterator[int]:
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def resolve(root: Path, path: str) -> Resolved:
    """Resolve ``path`` inside ``root`` (symlinks followed, all inside root)."""
    with _root(root) as root_fd:
        walk = _Walk(root_fd)
        try:
            final, missing = _lookup(walk, path, follow_final=True)
            base = walk.current()
            if final is not None and not missing:
                base = base.rstrip("/") + "/" + final
            if missing:
                # lexically: a ".." after a missing directory is what creating
                # the path will meet
                base = posixpath.normpath(base.rstrip("/") + "/" + "/".join(missing))
            return Resolved(base if base != "" else "/", tuple(missing))
        finally:
            walk.close()


def read_file(root: Path, path: str, limit: int) -> bytes | None:
    """The content of the regular file at ``path`` inside ``root``.

    None when it (or a directory on the way) does not exist. Raises OSError
    when it is not a regular file (a FIFO, a device, a directory), when a
    component is not a directory, and when it is larger than ``limit``.
    """
    with _root(root) as root_fd:
        walk = _Walk(root_fd)
        try:
            final, missing = _lookup(walk, path, follow_final=True)
            if missing:
                return None
            if final is None:
                raise OSError(errno.EISDIR, "is a directory", path)
            # O_NONBLOCK: a FIFO planted as /etc/passwd must not hang us; the
            # S_ISREG check below refuses it anyway.
            fd = os.open(
                final,
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                dir_fd=walk.dir_fd,
            )
        except FileNotFoundError:
            return None
        finally:
            walk.close()
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
        return data
    finally:
        os.close(fd)


def is_dir(root: Path, path: str) -> bool | None:
    """True: a directory; False: exists but is not one; None: missing."""
    with _root(root) as root_fd:
        walk = _Walk(root_fd)
        try:
            final, missing = _lookup(walk, path, follow_final=True)
        except NotADirectoryError:
            return False
        finally:
            walk.close()
    if missing:
        return None
    return final is None


def make_dirs(root: Path, path: str, uid: int, gid: int, mode: int = 0o755) -> bool:
    """Create the directory ``path`` inside ``root`` and any missing parents.

    Symlinks on the way are followed inside the root. The last directory,
    when it had to be created, is owned by ``uid:gid`` (as podman chowns a
    created working directory to the container user); parents stay root's.
    Returns whether anything was created.
    """
    with _root(root) as root_fd:
        walk = _Walk(root_fd)
        try:
            final, missing = _lookup(walk, path, follow_final=True)
            if not missing:
                if final is not None:
                    raise OSError(errno.ENOTDIR, "not a directory", path)
                return False
            # Create from the first missing component on, relative to the fd
            # where the walk stopped (never re-resolving the prefix).
            _lookup(walk, "/".join(missing), follow_final=True, create=mode)
            # An O_PATH fd takes no fchown/fchmod; its /proc/self/fd link
            # names exactly the directory it holds, whatever its path now.
            held = f"/proc/self/fd/{walk.dir_fd}"
            os.chown(held, uid, gid)
            os.chmod(held, mode)
            return True
        finally:
            walk.close()
