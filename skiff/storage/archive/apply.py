"""Extract a layer tar into a layer directory: safely, exactly, and fast.

``apply(stream, layer_dir)`` reads a gzip, zstd or plain layer tar and writes
its members into ``layer_dir`` (which must exist): regular files, directories,
symlinks (targets kept verbatim, absolute or relative), hard links, device
nodes and fifos, with owner, permission bits (setuid/setgid/sticky set after
chown, since chown clears them), extended attributes (``SCHILY.xattr.*``,
``security.capability`` included) and times (directories' mtimes are fixed
after their contents are written). Whiteouts become overlay whiteouts or are
applied to the vfs copy (see ``whiteouts``).

Safety: nothing is ever reached through a joined path string. Parents are
opened component by component with ``O_NOFOLLOW`` from the layer root (see
``dirfds``), entries are created with ``O_EXCL``/``mkdirat``/``symlinkat``/
``linkat`` relative to their parent's fd, and metadata is set on fds or with
``AT_SYMLINK_NOFOLLOW``. A member that would escape (``..``), pass through a
symlink or link to something outside the layer raises UnsafeArchive; a
damaged or truncated stream raises InvalidArchive. Either way the layer
directory holds partial content and the caller discards it.

Replacement follows tar and containers/storage: a later member at the same
path wins (the old entry is removed, a directory with all it holds), except
that a directory over a directory merges. The root itself (``./``) keeps its
own attributes, as containers/storage does.

Hard links: the target must be in this layer directory. For vfs that
includes everything of the lower layers (the layer is a full copy). For
overlay the lower layers are separate directories: pass them as
``lower_dirs`` (topmost first) and a target that only a lower layer has is
copied up into this layer first, as overlayfs itself would do; without them,
or when this layer whited the target out, the link is an error.

Speed: one worker thread reads, decompresses and hashes while this thread
parses and writes (``decompress``); headers are parsed by ``tarheader``
without ``tarfile``; files are created without a prior stat (``O_EXCL``
first, handle EEXIST when it happens) and written from the decompressor's
buffers.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from skiff.errors import (
    ArchiveWriteDenied,
    DigestMismatch,
    InvalidArchive,
    StorageError,
    UnsafeArchive,
)
from skiff.oci.digest import Digest
from skiff.storage.archive import whiteouts as wh
from skiff.storage.archive.decompress import DecompressedStream, Reader
from skiff.storage.archive.dirfds import DirTree, clean_name, describe
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
    truncated,
)
from skiff.storage.archive.tarsplit import TarSplitWriter

WhiteoutFormat = Literal["overlay", "vfs"]

_O_NEWFILE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_O_PATH: Final = getattr(os, "O_PATH", 0) | os.O_NOFOLLOW | os.O_CLOEXEC
_XATTR_REFUSED: Final = (errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.EINVAL)


@dataclass(frozen=True)
class ApplyResult:
    """What was applied: digests and sizes of the stream, counts of the tar."""

    diff_id: Digest
    """sha256 of the uncompressed tar: the layer's diff ID."""
    digest: Digest
    """sha256 of the stream as it was read (the compressed blob)."""
    compression: str
    """"gzip", "zstd" or "" (plain), detected from the stream."""
    size: int
    """Uncompressed tar bytes."""
    compressed_size: int
    entries: int
    """Members applied, whiteouts included."""
    warnings: tuple[str, ...] = ()
    """Things applied differently than the tar asked, by the caller's choice
    (skipped devices, xattrs the filesystem refused) or AUFS metadata skipped."""


def apply(
    stream: Reader,
    layer_dir: str | os.PathLike[str],
    *,
    whiteout_format: WhiteoutFormat = "overlay",
    expected_diff_id: Digest | None = None,
    expected_digest: Digest | None = None,
    lower_dirs: Sequence[str | os.PathLike[str]] = (),
    max_bytes: int | None = None,
    max_entries: int | None = None,
    preserve_owner: bool = True,
    skip_denied_devices: bool = False,
    ignore_xattr_errors: bool = False,
    tar_split: str | os.PathLike[str] | None = None,
    stream_digest: Callable[[], Digest] | None = None,
) -> ApplyResult:
    """Extract the layer ``stream`` into the existing directory ``layer_dir``.

    ``expected_diff_id``/``expected_digest``: checked after the whole stream
    was read; a mismatch raises DigestMismatch (discard the directory).
    ``max_bytes``/``max_entries``: limits on uncompressed size and member
    count; exceeding one raises UnsafeArchive (tar bomb).
    ``preserve_owner``: chown to the tar's uid/gid (needs CAP_CHOWN).
    ``skip_denied_devices``: when mknod is refused, skip the device with a
    warning instead of raising ArchiveWriteDenied.
    ``ignore_xattr_errors``: when the filesystem refuses an xattr, warn
    instead of raising ArchiveWriteDenied.
    ``tar_split``: write the tar's framing there (see ``tarsplit``), so
    ``tarsplit.iter_layer_tar`` can rebuild the exact tar later; the file
    appears only when the whole stream was applied.
    ``stream_digest``: the stream's digest as the caller computes it anyway
    (the copy engine verifies every blob while it streams), valid at its
    end; the stream is then not hashed again here (see ``DecompressedStream``).
    """
    if whiteout_format not in ("overlay", "vfs"):
        raise StorageError(f"unknown whiteout format {whiteout_format!r}", "use 'overlay' or 'vfs'")
    source = DecompressedStream(
        stream, max_bytes=max_bytes, what=f"layer for {layer_dir}", stream_digest=stream_digest
    )
    split: TarSplitWriter | None = None
    try:
        applier = _Applier(
            Path(layer_dir),
            vfs=whiteout_format == "vfs",
            lower_dirs=lower_dirs,
            chown=preserve_owner,
            skip_denied_devices=skip_denied_devices,
            ignore_xattr_errors=ignore_xattr_errors,
        )
        try:
            if tar_split is not None:
                split = applier.split = TarSplitWriter(tar_split)
            reader = BlockReader(source.next_chunk, split.raw if split is not None else None)
            entries = applier.run(reader, max_entries)
        finally:
            applier.close()
        if split is not None:
            split.finish()
            split = None
    finally:
        if split is not None:
            split.abort()
        source.close()
    if expected_digest is not None and source.digest != expected_digest:
        raise DigestMismatch(
            f"layer blob digest mismatch: expected {expected_digest}, got {source.digest}",
            "the blob is damaged or not the one the manifest names; discard the layer",
        )
    if expected_diff_id is not None and source.diff_id != expected_diff_id:
        raise DigestMismatch(
            f"layer diff ID mismatch: expected {expected_diff_id}, got {source.diff_id}",
            "the layer is not the one the image config names; discard it",
        )
    return ApplyResult(
        diff_id=source.diff_id,
        digest=source.digest,
        compression=source.compression,
        size=source.size,
        compressed_size=source.compressed_size,
        entries=entries,
        warnings=tuple(applier.warnings),
    )


def _times(header: TarHeader) -> tuple[int, int]:
    """(atime, mtime) in ns; atime never earlier than mtime (containers/storage)."""
    mtime = header.mtime_ns
    atime = header.atime_ns
    return (mtime if atime is None or atime < mtime else atime, mtime)


class _Applier:
    """One extraction: the layer's directory tree and what was done to it."""

    def __init__(
        self,
        root: Path,
        *,
        vfs: bool,
        lower_dirs: Sequence[str | os.PathLike[str]],
        chown: bool,
        skip_denied_devices: bool,
        ignore_xattr_errors: bool,
    ) -> None:
        self.root = root
        try:
            self.tree = DirTree(root)
        except OSError as exc:
            raise StorageError(
                f"cannot open layer directory {root}: {exc.strerror}",
                "the caller must create the layer directory first",
            ) from exc
        self.vfs = vfs
        self.lower_paths = [Path(p) for p in lower_dirs]
        self.lowers: list[DirTree] | None = None
        self.chown = chown
        self.skip_denied_devices = skip_denied_devices
        self.ignore_xattr_errors = ignore_xattr_errors
        self.warnings: list[str] = []
        self.written: set[bytes] = set()
        """vfs: every path this layer wrote, and their ancestors (an opaque
        marker keeps only these)."""
        self.whiteouts: set[bytes] = set()
        """overlay: whiteout devices this layer made (not valid link targets)."""
        self.dir_times: dict[bytes, tuple[int, int]] = {}
        self.split: TarSplitWriter | None = None

    def close(self) -> None:
        self.tree.close()
        for lower in self.lowers or ():
            lower.close()

    # --- the member loop ------------------------------------------------

    def run(self, reader: BlockReader, max_entries: int | None) -> int:
        count = 0
        tree = self.tree
        vfs = self.vfs
        written = self.written
        limit = max_entries if max_entries is not None else 1 << 62
        for header in iter_headers(reader):
            count += 1
            if count > limit:
                raise UnsafeArchive(
                    f"layer has more than the limit of {max_entries} entries",
                    "refusing a possible tar bomb; raise the limit if the layer is genuine",
                )
            rel = clean_name(header.name)
            cut = rel.rfind(b"/")
            parent = rel[:cut] if cut >= 0 else b""
            base = rel[cut + 1 :]
            try:
                if not rel:
                    self._root_member(header)
                    continue
                if base.startswith(wh.WHITEOUT_PREFIX):
                    self._whiteout(parent, base, header)
                    continue
                pfd = tree.dir_fd(parent)
                kind = header.typeflag
                if kind == REGTYPE:
                    self._file(pfd, rel, base, header, reader)
                elif kind == DIRTYPE:
                    self._dir(pfd, rel, base, header)
                elif kind == SYMTYPE:
                    self._symlink(pfd, rel, base, header)
                elif kind == LNKTYPE:
                    self._hardlink(parent, rel, base, header)
                else:
                    self._special(pfd, rel, base, header)
            except OSError as exc:
                raise self._os_error(exc, rel) from exc
            if vfs and rel not in written:
                # Keep the path and its ancestors: an opaque marker later in
                # the layer must not remove a lower directory this layer
                # wrote into (it empties it of lower entries instead).
                written.add(rel)
                while parent and parent not in written:
                    written.add(parent)
                    parent = parent.rpartition(b"/")[0]
        reader.drain()
        self._fix_dir_times()
        return count

    def _root_member(self, header: TarHeader) -> None:
        if header.typeflag != DIRTYPE:
            raise UnsafeArchive(
                f"member {header.name!r} would replace the layer root with a non-directory",
                "the layer is damaged or hostile",
            )
        # containers/storage leaves the root's own attributes alone.

    # --- member kinds ---------------------------------------------------

    def _file(
        self, pfd: int, rel: bytes, base: bytes, header: TarHeader, reader: BlockReader
    ) -> None:
        try:
            fd = os.open(base, _O_NEWFILE, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._make_room(pfd, rel, base)
            fd = os.open(base, _O_NEWFILE, 0o600, dir_fd=pfd)
        try:
            size = header.size
            if size:
                if self.split is not None:
                    self.split.file(rel, size)
                if reader.write_to(fd, size) < size:
                    raise truncated(reader.position)
            if self.chown:
                os.fchown(fd, header.uid, header.gid)
            os.fchmod(fd, header.mode)
            if header.xattrs:
                self._xattrs(fd, rel, header.xattrs, True)
            mtime = header.mtime_ns
            atime = header.atime_ns
            os.utime(fd, ns=(mtime if atime is None or atime < mtime else atime, mtime))
        finally:
            os.close(fd)

    def _dir(self, pfd: int, rel: bytes, base: bytes, header: TarHeader) -> None:
        opaque = False
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):  # a directory over a directory merges
                opaque = self._make_room(pfd, rel, base)
                os.mkdir(base, 0o700, dir_fd=pfd)
        dfd = self.tree.open_child(pfd, rel, base)
        if self.chown:
            os.fchown(dfd, header.uid, header.gid)
        os.fchmod(dfd, header.mode)
        if header.xattrs:
            self._xattrs(dfd, rel, header.xattrs, True)
        if opaque:
            # The layer deleted the lower entry and made a new directory:
            # nothing of the lower one may show through it.
            wh.set_overlay_opaque(dfd)
        self.dir_times[rel] = _times(header)

    def _symlink(self, pfd: int, rel: bytes, base: bytes, header: TarHeader) -> None:
        target = header.linkname
        if not target or b"\0" in target:
            raise InvalidArchive(
                f"symlink {describe(rel)} has an invalid target {target!r}", "the layer is damaged"
            )
        try:
            os.symlink(target, base, dir_fd=pfd)
        except FileExistsError:
            self._make_room(pfd, rel, base)
            os.symlink(target, base, dir_fd=pfd)
        if self.chown:
            os.chown(base, header.uid, header.gid, dir_fd=pfd, follow_symlinks=False)
        if header.xattrs:
            self._xattrs(f"/proc/self/fd/{pfd}/{os.fsdecode(base)}", rel, header.xattrs, False)
        os.utime(base, ns=_times(header), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, parent: bytes, rel: bytes, base: bytes, header: TarHeader) -> None:
        target = clean_name(header.linkname, "hard link target")
        if not target:
            raise UnsafeArchive(
                f"hard link {describe(rel)} points at the layer root", "the layer is hostile"
            )
        if target == rel:
            return  # a link to itself: the entry is already there
        if target in self.whiteouts:
            raise InvalidArchive(
                f"hard link {describe(rel)} points at {describe(target)}, "
                "which this layer deletes (whites out)",
                "the layer is damaged",
            )
        cut = target.rfind(b"/")
        tparent = target[:cut] if cut >= 0 else b""
        tbase = target[cut + 1 :]
        try:
            tfd = self.tree.dir_fd(tparent, create=False)
        except FileNotFoundError:
            tfd = -1
        if tfd < 0 or not _exists(tfd, tbase):
            self._copy_up(target, rel)
            tfd = self.tree.dir_fd(tparent, create=False)
        pfd = self.tree.dir_fd(parent)  # after tfd: both stay cached
        try:
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileExistsError:
            self._make_room(pfd, rel, base)
            tfd = self.tree.dir_fd(tparent, create=False)
            pfd = self.tree.dir_fd(parent)
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise self._missing_link_target(rel, target) from exc
        except PermissionError as exc:
            raise InvalidArchive(
                f"hard link {describe(rel)} points at {describe(target)}, which is a directory",
                "the layer is damaged",
            ) from exc

    def _special(self, pfd: int, rel: bytes, base: bytes, header: TarHeader) -> None:
        kind = header.typeflag
        try:
            self._mknod(pfd, base, header)
        except FileExistsError:
            self._make_room(pfd, rel, base)
            self._mknod(pfd, base, header)
        except PermissionError as exc:
            if kind == FIFOTYPE or not self.skip_denied_devices:
                raise ArchiveWriteDenied(
                    f"cannot create device node {describe(rel)} in {self.root}: {exc.strerror}",
                    "creating device nodes needs CAP_MKNOD (run as root), "
                    "or apply with skip_denied_devices",
                ) from exc
            self.warnings.append(f"skipped device node {describe(rel)}: {exc.strerror}")
            return
        # Metadata through an O_PATH fd of the node itself: race-free, and
        # opening a fifo or device for real could block or have effects.
        fd = os.open(base, _O_PATH, dir_fd=pfd)
        try:
            path = f"/proc/self/fd/{fd}"
            if self.chown:
                os.chown(path, header.uid, header.gid)
            os.chmod(path, header.mode)
            if header.xattrs:
                self._xattrs(path, rel, header.xattrs, True)
            os.utime(path, ns=_times(header))
        finally:
            os.close(fd)

    @staticmethod
    def _mknod(pfd: int, base: bytes, header: TarHeader) -> None:
        kind = header.typeflag
        if kind == FIFOTYPE:
            os.mkfifo(base, 0o600, dir_fd=pfd)
            return
        file_type = stat.S_IFCHR if kind == CHRTYPE else stat.S_IFBLK
        assert kind in (CHRTYPE, BLKTYPE)
        device = os.makedev(header.devmajor, header.devminor)
        os.mknod(base, file_type | 0o600, device, dir_fd=pfd)

    # --- whiteouts ------------------------------------------------------

    def _whiteout(self, parent: bytes, base: bytes, header: TarHeader) -> None:
        if base == wh.OPAQUE_MARKER:
            dfd = self.tree.dir_fd(parent)
            if self.vfs:
                self.tree.clear_dir(dfd, parent, self.written)
            else:
                wh.set_overlay_opaque(dfd)
            return
        if base.startswith(wh.WHITEOUT_META_PREFIX):
            self.warnings.append(
                f"skipped AUFS metadata {describe(parent + b'/' + base if parent else base)}"
            )
            return
        target = wh.whiteout_target(parent, base)
        name = base[len(wh.WHITEOUT_PREFIX) :]
        pfd = self.tree.dir_fd(parent)
        if self.tree.remove(pfd, target, name):
            self._forget_times(target)
        if self.vfs:
            self.written.discard(target)
            return
        try:
            wh.make_overlay_whiteout(pfd, name, header.uid, header.gid, self.chown)
        except PermissionError as exc:
            raise ArchiveWriteDenied(
                f"cannot create the overlay whiteout {describe(target)} in {self.root}: "
                f"{exc.strerror}",
                "overlay whiteouts are device nodes and need CAP_MKNOD (run as root) "
                "or use the vfs driver",
            ) from exc
        self.whiteouts.add(target)

    # --- helpers --------------------------------------------------------

    def _make_room(self, pfd: int, rel: bytes, base: bytes) -> bool:
        """Remove the entry at ``rel`` so a later member can take its place.
        True if it was a whiteout this layer had made."""
        self.tree.remove(pfd, rel, base)
        self._forget_times(rel)
        if rel in self.whiteouts:
            self.whiteouts.discard(rel)
            return True
        return False

    def _forget_times(self, rel: bytes) -> None:
        """Drop pending directory times at and below a removed entry."""
        if not self.dir_times:
            return
        prefix = rel + b"/"
        stale = [key for key in self.dir_times if key == rel or key.startswith(prefix)]
        for key in stale:
            del self.dir_times[key]

    def _fix_dir_times(self) -> None:
        """Directories' times last: writing their contents changed them."""
        for rel, times in self.dir_times.items():
            try:
                os.utime(self.tree.dir_fd(rel, create=False), ns=times)
            except OSError as exc:
                raise self._os_error(exc, rel) from exc

    def _xattrs(
        self, target: int | str, rel: bytes, xattrs: dict[str, bytes], follow: bool
    ) -> None:
        for name, value in xattrs.items():
            if name.startswith(wh.OVERLAY_XATTR_PREFIXES):
                raise UnsafeArchive(
                    f"{describe(rel)} carries the overlayfs attribute {name}",
                    "a layer may not set overlay metadata itself; refusing it",
                )
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno not in _XATTR_REFUSED:
                    raise
                message = f"cannot set xattr {name} on {describe(rel)}: {exc.strerror}"
                if not self.ignore_xattr_errors:
                    raise ArchiveWriteDenied(
                        message,
                        "the layer directory's filesystem or privileges do not allow it; "
                        "apply with ignore_xattr_errors to skip such attributes",
                    ) from exc
                self.warnings.append(message)

    def _missing_link_target(self, rel: bytes, target: bytes) -> InvalidArchive:
        where = "this layer" if self.vfs else "this layer or its lower layers"
        return InvalidArchive(
            f"hard link {describe(rel)} points at {describe(target)}, which is not in {where}",
            "the layer is damaged or needs its parent layers"
            + ("" if self.vfs else " (pass lower_dirs for overlay)"),
        )

    def _copy_up(self, target: bytes, rel: bytes) -> None:
        """overlay: bring ``target`` from the lower layers into this one so a
        hard link can point at it (parents copied with their attributes)."""
        if self.vfs or not self.lower_paths:
            raise self._missing_link_target(rel, target)
        if self.lowers is None:
            self.lowers = [DirTree(p) for p in self.lower_paths]
        parts = target.split(b"/")
        made: list[tuple[bytes, tuple[int, int]]] = []
        for depth in range(1, len(parts)):
            prefix = b"/".join(parts[:depth])
            pfd = self.tree.dir_fd(b"/".join(parts[: depth - 1]))
            if _exists(pfd, parts[depth - 1]):
                continue
            lower = wh.lookup_lower(prefix, self.lowers)
            if lower is None or not stat.S_ISDIR(lower.st.st_mode):
                raise self._missing_link_target(rel, target)
            os.mkdir(parts[depth - 1], 0o700, dir_fd=pfd)
            dfd = self.tree.open_child(pfd, prefix, parts[depth - 1])
            self._copy_attrs(dfd, lower.st)
            made.append((prefix, (lower.st.st_atime_ns, lower.st.st_mtime_ns)))
        lower = wh.lookup_lower(target, self.lowers)
        if lower is None:
            raise self._missing_link_target(rel, target)
        pfd = self.tree.dir_fd(b"/".join(parts[:-1]))
        st = lower.st
        if stat.S_ISREG(st.st_mode):
            src = os.open(
                lower.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=lower.parent_fd
            )
            try:
                dst = os.open(parts[-1], _O_NEWFILE, 0o600, dir_fd=pfd)
                try:
                    _copy_fd(src, dst)
                    self._copy_attrs(dst, st)
                    _copy_xattrs(src, dst)
                    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(dst)
            finally:
                os.close(src)
        elif stat.S_ISLNK(st.st_mode):
            link = os.readlink(lower.name, dir_fd=lower.parent_fd)
            os.symlink(link, parts[-1], dir_fd=pfd)
            os.chown(parts[-1], st.st_uid, st.st_gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(
                parts[-1], ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=pfd, follow_symlinks=False
            )
        else:
            raise InvalidArchive(
                f"hard link {describe(rel)} points at {describe(target)} in a lower layer, "
                "which skiff copies up only for regular files and symlinks",
                "the layer needs the vfs driver",
            )
        for prefix, times in reversed(made):
            os.utime(self.tree.dir_fd(prefix, create=False), ns=times)

    def _copy_attrs(self, fd: int, st: os.stat_result) -> None:
        if self.chown:
            os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))

    def _os_error(self, exc: OSError, rel: bytes) -> StorageError:
        if exc.errno == errno.ENOSPC:
            return StorageError(
                f"no space left on device writing {describe(rel)} into {self.root}",
                "free space in the storage root and pull again",
            )
        if exc.errno == errno.EPERM and self.chown:
            return ArchiveWriteDenied(
                f"cannot set owner or mode of {describe(rel)} in {self.root}: {exc.strerror}",
                "keeping the layer's owners needs CAP_CHOWN (run as root) "
                "or apply with preserve_owner=False",
            )
        return StorageError(
            f"cannot extract {describe(rel)} into {self.root}: {exc.strerror or exc}",
            "check the storage root's filesystem and permissions",
        )


def _exists(dir_fd: int, name: bytes) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _copy_fd(src: int, dst: int) -> None:
    try:
        while os.copy_file_range(src, dst, 1 << 30):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    while data := os.read(src, 1 << 20):
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view) :]


def _copy_xattrs(src: int, dst: int) -> None:
    for name in os.listxattr(src):
        if name.startswith(wh.OVERLAY_XATTR_PREFIXES):
            continue
        os.setxattr(dst, name, os.getxattr(src, name))
