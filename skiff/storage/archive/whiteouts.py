"""Whiteouts: how a layer deletes what the layers below it hold.

In a layer tar (the OCI image spec's form), ``DIR/.wh.NAME`` deletes
``DIR/NAME`` from the lower layers, and ``DIR/.wh..wh..opq`` makes ``DIR``
opaque: nothing of the lower layers shows beneath it. Other ``.wh..wh.``
names are AUFS bookkeeping and carry no meaning.

On disk the two drivers differ:

- overlay: a whiteout is a character device 0/0 named ``NAME`` and an opaque
  directory carries the xattr ``trusted.overlay.opaque=y``, which is what
  the kernel's overlayfs reads. Lower layers are separate directories; the
  helpers here resolve a path through them the way overlayfs merges them
  (topmost first, stopping at whiteouts, opaque directories and
  non-directories).
- vfs: each layer directory is a full copy of its parent, so a whiteout is
  applied by deleting ``NAME`` and an opaque marker by emptying ``DIR`` of
  whatever this layer did not itself write.

This module holds the names and the overlay on-disk primitives; the
extractor (``apply``) and the differ (``diff``) use them in both directions.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from skiff.errors import UnsafeArchive
from skiff.storage.archive.dirfds import DirTree, describe

WHITEOUT_PREFIX: Final = b".wh."
WHITEOUT_META_PREFIX: Final = b".wh..wh."
OPAQUE_MARKER: Final = b".wh..wh..opq"
OVERLAY_OPAQUE_XATTR: Final = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX: Final = "trusted.overlay."
OVERLAY_XATTR_PREFIXES: Final = ("trusted.overlay.", "user.overlay.")
"""overlayfs metadata: ``trusted.`` for root mounts, ``user.`` for rootless
(``userxattr``) ones. Never layer content: a layer setting them could change
what the kernel shows."""


def whiteout_target(parent: bytes, base: bytes) -> bytes:
    """The path ``parent/.wh.NAME`` deletes; refuses names that are not one
    plain component (``.wh.``, ``.wh..``, ``.wh...``)."""
    name = base[len(WHITEOUT_PREFIX) :]
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise UnsafeArchive(
            f"whiteout {describe(parent + b'/' + base if parent else base)} names no valid entry",
            "the layer is damaged or hostile; refusing to extract it",
        )
    return parent + b"/" + name if parent else name


def is_overlay_whiteout(st: os.stat_result) -> bool:
    """overlayfs marks a deleted entry with a character device 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def make_overlay_whiteout(parent_fd: int, name: bytes, uid: int, gid: int, chown: bool) -> None:
    os.mknod(name, stat.S_IFCHR, 0, dir_fd=parent_fd)
    if chown:
        os.chown(name, uid, gid, dir_fd=parent_fd, follow_symlinks=False)


def set_overlay_opaque(dir_fd: int) -> None:
    os.setxattr(dir_fd, OVERLAY_OPAQUE_XATTR, b"y")


def is_overlay_opaque(dir_fd: int) -> bool:
    try:
        return os.getxattr(dir_fd, OVERLAY_OPAQUE_XATTR) == b"y"
    except OSError:
        return False


@dataclass(frozen=True)
class LowerEntry:
    """Where a path shows in the merged view of lower layers."""

    tree: DirTree
    parent_fd: int
    name: bytes
    st: os.stat_result


def lookup_lower(rel: bytes, lowers: Sequence[DirTree]) -> LowerEntry | None:
    """Resolve ``rel`` through lower layers (topmost first) as overlayfs does.

    None when no layer has it, when a whiteout deletes it or an ancestor, or
    when an ancestor is opaque, a non-directory or a symlink in the layer
    that has it (a path through a symlink is not followed).
    The returned ``parent_fd`` belongs to ``tree``'s cache: use it at once.
    """
    parts = rel.split(b"/")
    last = len(parts) - 1
    for tree in lowers:
        fd = tree.root_fd
        opaque_above = False
        for index, part in enumerate(parts):
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                break
            if is_overlay_whiteout(st):
                return None
            if index == last:
                return LowerEntry(tree, fd, part, st)
            if not stat.S_ISDIR(st.st_mode):
                return None
            fd = tree.dir_fd(b"/".join(parts[: index + 1]), create=False)
            if is_overlay_opaque(fd):
                opaque_above = True
        if opaque_above:
            return None
    return None


def list_lower(rel: bytes, lowers: Sequence[DirTree]) -> set[bytes]:
    """Names the directory ``rel`` shows in the merged view of the lower
    layers (topmost first): entries of every layer down to the first one
    where ``rel`` or an ancestor is opaque, minus whited-out names."""
    visible: set[bytes] = set()
    hidden: set[bytes] = set()
    parts = rel.split(b"/") if rel else []
    for tree in lowers:
        fd = tree.root_fd
        opaque = False
        present = True
        for index, part in enumerate(parts):
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                present = False
                break
            if is_overlay_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                return visible
            fd = tree.dir_fd(b"/".join(parts[: index + 1]), create=False)
            opaque = opaque or is_overlay_opaque(fd)
        if present:
            with os.scandir(fd) as entries:
                for entry in entries:
                    name = os.fsencode(entry.name)
                    if name in hidden or name in visible:
                        continue
                    if is_overlay_whiteout(entry.stat(follow_symlinks=False)):
                        hidden.add(name)
                    else:
                        visible.add(name)
        if opaque:
            break
    return visible
