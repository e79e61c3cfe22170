"""Build layer tars member by member, and snapshot directory trees.

Tests of the layer extractor need tars no well-behaved tool writes (``../``
names, links to ``/etc/passwd``, whiteouts of ``..``). ``layer_tar`` builds
them with Python's ``tarfile`` — an implementation independent of skiff's
own writer, so a test does not check skiff against itself — or, with
``writer="skiff"``, with ``skiff.storage.archive.tarwriter`` (for round
trips, binary xattrs, and names ``tarfile`` refuses to write).

``snapshot`` records what a tree holds (type, mode, owner, size, content
digest, link target, device, mtime, xattrs, which names share an inode) in a
form two trees can be compared with ``==``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

KIND_TO_TARFILE = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


@dataclass
class Member:
    """One tar member as a test wants it."""

    name: str | bytes
    kind: str = "file"
    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    linkname: str | bytes = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)

    def default_mode(self) -> int:
        if self.mode is not None:
            return self.mode
        return 0o755 if self.kind == "dir" else 0o644


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")


def _raw(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def layer_tar(
    members: Iterable[Member],
    *,
    writer: str = "tarfile",
    tar_format: int = tarfile.PAX_FORMAT,
    end_marker: bool = True,
) -> bytes:
    """The tar bytes of ``members`` in order (not compressed)."""
    if writer == "skiff":
        return _skiff_tar(members, end_marker)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tar_format) as tar:
        for member in members:
            info = tarfile.TarInfo(_text(member.name))
            info.type = KIND_TO_TARFILE[member.kind]
            info.mode = member.default_mode()
            info.uid, info.gid = member.uid, member.gid
            info.mtime = member.mtime
            info.linkname = _text(member.linkname)
            info.devmajor, info.devminor = member.devmajor, member.devminor
            if member.xattrs:
                info.pax_headers = {
                    "SCHILY.xattr." + key: value.decode("utf-8", "surrogateescape")
                    for key, value in member.xattrs.items()
                }
            if member.kind == "file":
                info.size = len(member.data)
                tar.addfile(info, io.BytesIO(member.data))
            else:
                tar.addfile(info)
    data = buf.getvalue()
    return data if end_marker else data.rstrip(b"\0")


def _skiff_tar(members: Iterable[Member], end_marker: bool) -> bytes:
    from skiff.storage.archive import tarheader as th
    from skiff.storage.archive.tarwriter import END_OF_ARCHIVE, encode_header, padding

    kinds = {
        "file": th.REGTYPE,
        "dir": th.DIRTYPE,
        "symlink": th.SYMTYPE,
        "hardlink": th.LNKTYPE,
        "chr": th.CHRTYPE,
        "blk": th.BLKTYPE,
        "fifo": th.FIFOTYPE,
    }
    out = bytearray()
    for member in members:
        header = th.TarHeader(
            name=_raw(member.name),
            typeflag=kinds[member.kind],
            mode=member.default_mode(),
            uid=member.uid,
            gid=member.gid,
            size=len(member.data) if member.kind == "file" else 0,
            mtime_ns=member.mtime * 1_000_000_000,
            linkname=_raw(member.linkname),
            devmajor=member.devmajor,
            devminor=member.devminor,
            xattrs=dict(member.xattrs),
        )
        out += encode_header(header)
        if member.kind == "file":
            out += member.data + padding(len(member.data))
    if end_marker:
        out += END_OF_ARCHIVE
    return bytes(out)


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zstd_compressed(data: bytes) -> bytes:
    import zstandard

    return bytes(zstandard.ZstdCompressor(write_checksum=True).compress(data))


# --- snapshots ---------------------------------------------------------------


@dataclass(frozen=True)
class EntryInfo:
    kind: str
    mode: int
    uid: int
    gid: int
    size: int | None
    digest: str | None
    link: str | None
    rdev: tuple[int, int] | None
    mtime_ns: int | None
    xattrs: tuple[tuple[str, bytes], ...]
    hardlink_group: str | None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "chr"),
        (stat.S_ISBLK, "blk"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "unknown"


def _readlink(path: Path) -> str:
    # Not Path.readlink(): pathlib drops "." segments of the target.
    return os.readlink(path)  # noqa: PTH115


def snapshot(
    root: Path,
    *,
    mtimes: bool = True,
    xattr_filter: Callable[[str], bool] | None = None,
    dir_sizes: bool = False,
) -> dict[str, EntryInfo]:
    """Everything under ``root`` (not ``root`` itself), keyed by relative path.

    Hard links are recorded as the first path (sorted) of their inode among
    the names in the tree, so two trees with the same link structure compare
    equal. Directory sizes are
    filesystem artefacts and left out unless ``dir_sizes``.
    """
    entries: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            entries[str(path.relative_to(root))] = path.lstat()
    names_of_inode: dict[tuple[int, int], list[str]] = {}
    for rel in sorted(entries):
        st = entries[rel]
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            names_of_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
    result: dict[str, EntryInfo] = {}
    for rel, st in sorted(entries.items()):
        path = root / rel
        kind = _kind(st.st_mode)
        digest = None
        if kind == "file":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        names = os.listxattr(path, follow_symlinks=False)
        xattrs = tuple(
            (name, os.getxattr(path, name, follow_symlinks=False))
            for name in sorted(names)
            if xattr_filter is None or xattr_filter(name)
        )
        group = None
        if kind != "dir" and st.st_nlink > 1:
            linked = names_of_inode[(st.st_dev, st.st_ino)]
            # Only links visible in this tree count (overlayfs shows lower
            # inodes whose other names it hides).
            group = linked[0] if len(linked) > 1 else None
        result[rel] = EntryInfo(
            kind=kind,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            size=st.st_size if kind != "dir" or dir_sizes else None,
            digest=digest,
            link=_readlink(path) if kind == "symlink" else None,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("chr", "blk") else None,
            mtime_ns=st.st_mtime_ns if mtimes else None,
            xattrs=xattrs,
            hardlink_group=group,
        )
    return result
