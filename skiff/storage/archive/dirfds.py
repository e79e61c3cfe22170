"""Reach directories inside a layer without ever following a symlink.

Every path a tar member names is resolved one component at a time with
``openat(parent, name, O_DIRECTORY | O_NOFOLLOW)``: a component that is a
symlink fails with ELOOP instead of being followed, so no member can write
through a symlink, whether it points outside the layer or inside it. The
root is the only path ever opened by name.

Open directory fds are kept in an LRU keyed by their path relative to the
root (``b"usr/share"``): consecutive members of one directory cost no
syscall to find their parent. Whenever something is removed, every cached
fd at or below it is closed (``forget``), so a name cannot keep pointing at
a directory that the archive has since replaced.

Paths are normalised the way containers/storage does it (Go's
``filepath.Clean`` on the member name, then joined to the layer root): a
leading ``/`` is dropped (``/etc/passwd`` means ``etc/passwd``), ``.`` and
empty components vanish, and ``..`` is resolved lexically (``/..`` stays at
the root, as Clean has it); a relative name that would climb above the root
is refused.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections import OrderedDict
from typing import Final

from skiff.errors import InvalidArchive, UnsafeArchive

O_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
IMPLICIT_DIR_MODE: Final = 0o755
"""Mode of a parent directory the archive uses without listing it (as
containers/storage and GNU tar create them)."""


def clean_name(name: bytes, what: str = "member") -> bytes:
    """A member name as a clean relative path (b"" is the root itself).

    Raises UnsafeArchive for names that climb out of the root or contain a
    NUL byte, and for empty names.
    """
    if b"\0" in name:
        raise UnsafeArchive(
            f"{what} name {name!r} contains a NUL byte", "the layer is damaged or hostile"
        )
    if not name:
        raise UnsafeArchive(f"{what} has an empty name", "the layer is damaged or hostile")
    # Fast path: most names are already clean (optionally "./"-prefixed).
    if name.startswith(b"./"):
        name = name[2:]
    if name.endswith(b"/"):
        name = name.rstrip(b"/")
    if name and not name.startswith((b"/", b".")) and b"//" not in name and b"/." not in name:
        return name
    parts: list[bytes] = []
    rooted = name.startswith(b"/")
    for part in name.split(b"/"):
        if not part or part == b".":
            continue
        if part == b"..":
            if not parts:
                if rooted:  # Go's Clean: "/.." is "/"
                    continue
                raise UnsafeArchive(
                    f"{what} {name!r} points outside the layer",
                    "the layer is hostile; refusing to extract it",
                )
            parts.pop()
            continue
        parts.append(part)
    return b"/".join(parts)


def describe(rel: bytes) -> str:
    return "/" + rel.decode("utf-8", "backslashreplace")


class DirTree:
    """The directories of one layer, opened safely and cached.

    ``dir_fd(rel)`` returns an fd for the directory ``rel`` (b"" = root),
    creating missing components when ``create`` is set. The fds belong to
    the tree: callers must not close them and must not keep them across a
    call that removes entries.
    """

    def __init__(self, root: str | os.PathLike[str], capacity: int = 128) -> None:
        self.root_path = os.fspath(root)
        self.root_fd = os.open(self.root_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._cache: OrderedDict[bytes, int] = OrderedDict()
        self._capacity = max(capacity, 2)
        self.created_dirs: list[bytes] = []
        """Parent directories made because members needed them."""

    def close(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()
        os.close(self.root_fd)

    def dir_fd(self, rel: bytes, create: bool = True) -> int:
        """The fd of directory ``rel``; UnsafeArchive if a component is a
        symlink, InvalidArchive if one is not a directory, FileNotFoundError
        if missing and not ``create``."""
        if not rel:
            return self.root_fd
        cache = self._cache
        fd = cache.get(rel)
        if fd is not None:
            cache.move_to_end(rel)
            return fd
        # Start from the deepest cached ancestor.
        base_fd, start = self.root_fd, 0
        cut = rel.rfind(b"/")
        while cut > 0:
            ancestor = cache.get(rel[:cut])
            if ancestor is not None:
                base_fd, start = ancestor, cut + 1
                cache.move_to_end(rel[:cut])
                break
            cut = rel.rfind(b"/", 0, cut)
        # Walk the rest; only the final directory is cached, so one call
        # evicts at most one fd and a caller may hold two results at once.
        current, owned = base_fd, False
        pos = start
        try:
            while True:
                slash = rel.find(b"/", pos)
                end = len(rel) if slash < 0 else slash
                child = self._open_component(current, rel[:end], rel[pos:end], create)
                if owned:
                    os.close(current)
                current, owned = child, True
                if slash < 0:
                    break
                pos = slash + 1
        except BaseException:
            if owned:
                os.close(current)
            raise
        self.remember(rel, current)
        return current

    def open_child(self, parent_fd: int, rel: bytes, name: bytes) -> int:
        """Open (and cache) the directory ``name`` in ``parent_fd`` whose path
        is ``rel``; it must exist."""
        fd = self._cache.get(rel)
        if fd is not None:
            self._cache.move_to_end(rel)
            return fd
        fd = self._open_component(parent_fd, rel, name, create=False)
        self.remember(rel, fd)
        return fd

    def _open_component(self, parent_fd: int, rel: bytes, name: bytes, create: bool) -> int:
        try:
            return os.open(name, O_DIR, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            raise self._not_a_dir(parent_fd, rel, name, exc) from exc
        try:
            os.mkdir(name, IMPLICIT_DIR_MODE, dir_fd=parent_fd)
        except FileExistsError:
            pass  # raced with ourselves? reopen below reports what it is
        else:
            self.created_dirs.append(rel)
        try:
            return os.open(name, O_DIR, dir_fd=parent_fd)
        except OSError as exc:
            raise self._not_a_dir(parent_fd, rel, name, exc) from exc

    def _not_a_dir(self, parent_fd: int, rel: bytes, name: bytes, exc: OSError) -> Exception:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except OSError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode):
                return UnsafeArchive(
                    f"layer writes through the symlink {describe(rel)}",
                    "refusing: a member's parent must be a real directory of the layer",
                )
            return InvalidArchive(
                f"{describe(rel)} is not a directory but the layer puts entries under it",
                "the layer is damaged",
            )
        return exc

    def remember(self, key: bytes, fd: int) -> None:
        cache = self._cache
        old = cache.pop(key, None)
        if old is not None and old != fd:
            os.close(old)
        cache[key] = fd
        while len(cache) > self._capacity:
            _, evicted = cache.popitem(last=False)
            os.close(evicted)

    def forget(self, rel: bytes) -> None:
        """Close cached fds of ``rel`` and everything below it."""
        if not rel:
            stale = list(self._cache)
        else:
            prefix = rel + b"/"
            stale = [key for key in self._cache if key == rel or key.startswith(prefix)]
        for key in stale:
            os.close(self._cache.pop(key))

    def remove(self, parent_fd: int, rel: bytes, name: bytes) -> bool:
        """Remove the entry ``name`` (``rel`` is its path), a directory with
        all it holds; False if there was nothing. Never follows symlinks."""
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            self.forget(rel)
            # rmtree with dir_fd walks by fds and does not follow symlinks.
            shutil.rmtree(os.fsdecode(name), dir_fd=parent_fd)
        else:
            os.unlink(name, dir_fd=parent_fd)
        return True

    def clear_dir(self, dir_fd: int, rel: bytes, keep: set[bytes]) -> None:
        """Remove everything under ``rel`` whose path is not in ``keep``;
        directories that are kept are cleared the same way, recursively."""
        for name in os.listdir(dir_fd):
            child = rel + b"/" + os.fsencode(name) if rel else os.fsencode(name)
            if child not in keep:
                self.remove(dir_fd, child, os.fsencode(name))
                continue
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                self.clear_dir(self.dir_fd(child, create=False), child, keep)
                # clear_dir may have evicted dir_fd from the cache: re-fetch.
                dir_fd = self.dir_fd(rel, create=False)
