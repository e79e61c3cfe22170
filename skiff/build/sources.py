"""Reading copy sources: trees as tar streams, archives, downloads.

The pieces ``skiff.build.copy`` builds COPY and ADD from:

- ``SourceTar``: tar bytes of source entries read through directory fds
  (a symlink is archived as a symlink, never followed; a file opened is
  checked to be the inode that was listed), with the owner and mode a copy
  asks for, ``.containerignore`` applied, and every entry fed to the
  copy's content digest as it goes (its header without the mtime, then its
  content).
- ``archive_kind``: whether a file ADD would extract is a tar archive
  (plain, gzip, bzip2, xz or zstd): its first block must be a ustar header
  with a valid checksum, as Docker decides.
- ``download``: an http(s) URL into a file, with the mtime of its
  ``Last-Modified``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, Final, cast

from skiff.errors import BuildError
from skiff.storage.archive.decompress import Reader
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

if TYPE_CHECKING:
    from skiff.build.copy import ContextFilter

_O_READ_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_FILE: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FLUSH: Final = 256 << 10
_READ: Final = 1 << 20


class SourceTar:
    """Tar bytes of source entries read through fds (symlinks never followed),
    hashed for the content digest as they are produced."""

    def __init__(
        self,
        owner: tuple[int, int] | None,
        mode: int | None,
        ignore: ContextFilter | None,
        hasher: Any,
    ) -> None:
        self.owner = owner
        self.mode = mode
        self.ignore = ignore
        self.hasher = hasher
        self.entries = 0
        self._buf = bytearray()
        self._links: dict[tuple[int, int], bytes] = {}

    def add_dir(
        self, parent_fd: int, name: str | None, as_name: bytes, rel: str
    ) -> Iterator[bytes]:
        """The contents of directory ``name`` in ``parent_fd`` (None: that directory)."""
        try:
            fd = os.open(name if name is not None else ".", _O_READ_DIR, dir_fd=parent_fd)
        except OSError as exc:
            raise BuildError(f"cannot read {rel or '/'}: {exc.strerror or exc}") from exc
        try:
            yield from self._tree(fd, as_name, rel)
        finally:
            os.close(fd)

    def add_entry(
        self, parent_fd: int, base: bytes, as_name: bytes, st: os.stat_result
    ) -> Iterator[bytes]:
        yield from self._entry(parent_fd, base, as_name, st)

    def finish(self) -> Iterator[bytes]:
        self._buf += END_OF_ARCHIVE
        yield bytes(self._buf)
        self._buf.clear()

    def _tree(self, dir_fd: int, prefix: bytes, rel: str) -> Iterator[bytes]:
        with os.scandir(dir_fd) as scan:
            listing = sorted((os.fsencode(e.name), e.stat(follow_symlinks=False)) for e in scan)
        for base, st in listing:
            child = prefix + b"/" + base if prefix else base
            child_rel = f"{rel}/{os.fsdecode(base)}" if rel else os.fsdecode(base)
            is_dir = stat.S_ISDIR(st.st_mode)
            emit = True
            if self.ignore is not None and self.ignore.excluded(child_rel, is_dir):
                if not is_dir or not self.ignore.may_descend(child_rel):
                    continue
                emit = False  # excluded itself, but something below is included
            if not is_dir:
                yield from self._entry(dir_fd, base, child, st)
                continue
            refuse_whiteout(base, child)
            try:
                sub = os.open(base, _O_READ_DIR, dir_fd=dir_fd)
            except OSError as exc:
                raise BuildError(
                    f"{os.fsdecode(child)} changed while it was being copied: {exc.strerror}"
                ) from exc
            try:
                if emit:
                    header = self._header(child + b"/", os.fstat(sub), DIRTYPE)
                    header.xattrs = _xattrs(sub)
                    self._emit(header)
                    if len(self._buf) >= _FLUSH:
                        yield self._flush()
                yield from self._tree(sub, child, child_rel)
            finally:
                os.close(sub)

    def _entry(self, dir_fd: int, base: bytes, rel: bytes, st: os.stat_result) -> Iterator[bytes]:
        refuse_whiteout(base, rel)
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return
        if st.st_nlink > 1 and not stat.S_ISDIR(mode):
            first = self._links.get((st.st_dev, st.st_ino))
            if first is not None:
                header = self._header(rel, st, LNKTYPE)
                header.linkname = first
                self._emit(header)
                return
            self._links[(st.st_dev, st.st_ino)] = rel
        if stat.S_ISREG(mode):
            yield from self._file(dir_fd, base, rel, st)
            return
        if stat.S_ISLNK(mode):
            header = self._header(rel, st, SYMTYPE)
            header.linkname = os.fsencode(os.readlink(base, dir_fd=dir_fd))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            header = self._header(rel, st, CHRTYPE if stat.S_ISCHR(mode) else BLKTYPE)
            header.devmajor, header.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            header = self._header(rel, st, FIFOTYPE)
        else:
            return
        self._emit(header)
        if len(self._buf) >= _FLUSH:
            yield self._flush()

    def _file(
        self, dir_fd: int, base: bytes, rel: bytes, listed: os.stat_result
    ) -> Iterator[bytes]:
        try:
            fd = os.open(base, _O_READ_FILE, dir_fd=dir_fd)
        except OSError as exc:
            raise BuildError(
                f"cannot read {os.fsdecode(rel)}: {exc.strerror or exc}",
                "check that the source is readable",
            ) from exc
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (listed.st_dev, listed.st_ino):
                raise BuildError(f"{os.fsdecode(rel)} changed while it was being copied")
            header = self._header(rel, st, REGTYPE)
            header.size = st.st_size
            header.xattrs = _xattrs(fd)
            self._emit(header)
            remaining = st.st_size
            while remaining:
                chunk = os.read(fd, min(_READ, remaining))
                if not chunk:
                    raise BuildError(f"{os.fsdecode(rel)} shrank while it was being copied")
                remaining -= len(chunk)
                self.hasher.update(chunk)
                self._buf += chunk
                if len(self._buf) >= _FLUSH:
                    yield self._flush()
            self._buf += padding(st.st_size)
        finally:
            os.close(fd)

    def _header(self, rel: bytes, st: os.stat_result, typeflag: int) -> TarHeader:
        uid, gid = self.owner if self.owner is not None else (st.st_uid, st.st_gid)
        mode = (
            self.mode if self.mode is not None and typeflag != SYMTYPE else stat.S_IMODE(st.st_mode)
        )
        return TarHeader(
            name=rel, typeflag=typeflag, mode=mode, uid=uid, gid=gid, mtime_ns=st.st_mtime_ns
        )

    def _emit(self, header: TarHeader) -> None:
        self.entries += 1
        mtime = header.mtime_ns
        header.mtime_ns = 0
        self.hasher.update(encode_header(header))
        header.mtime_ns = mtime
        self._buf += encode_header(header)

    def _flush(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data


def refuse_whiteout(base: bytes, rel: bytes) -> None:
    if base.startswith(b".wh."):
        raise BuildError(
            f"cannot copy {os.fsdecode(rel)!r}: names beginning with .wh. are layer whiteouts",
            "rename the file",
        )


def _xattrs(fd: int) -> dict[str, bytes]:
    from skiff.storage.archive.diff import keep_xattr

    try:
        names = os.listxattr(fd)
    except OSError:
        return {}
    out = {}
    for key in sorted(names):
        if keep_xattr(key):
            with contextlib.suppress(OSError):
                out[key] = os.getxattr(fd, key)
    return out


# --- ADD: archives and URLs --------------------------------------------------------------------------


_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def open_decompressed(raw: Reader, kind: str) -> Reader:
    """``raw`` decompressed as ``kind`` says ("": as it is)."""
    import bz2
    import gzip
    import lzma

    fileobj = cast(IO[bytes], raw)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=fileobj, mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(fileobj, mode="rb")
    if kind == "xz":
        return lzma.LZMAFile(fileobj, mode="rb")
    if kind == "zstd":
        import zstandard

        reader: Reader = zstandard.ZstdDecompressor().stream_reader(fileobj)
        return reader
    return raw


def archive_kind(parent_fd: int, name: str | None) -> str | None:
    """ "" (plain tar), a compression name, or None when the file is no tar archive."""
    assert name is not None
    fd = os.open(name, _O_READ_FILE, dir_fd=parent_fd)
    with os.fdopen(fd, "rb") as raw:
        head = raw.read(8)
        kind = next((k for magic, k in _MAGIC if head.startswith(magic)), "")
        raw.seek(0)
        try:
            block = read_up_to(open_decompressed(raw, kind), 512)
        except (OSError, EOFError, ValueError, ImportError):
            return None
        except Exception as exc:  # zstandard's ZstdError is no OSError
            if type(exc).__name__ != "ZstdError":
                raise
            return None
    if len(block) < 512 or block[257:262] != b"ustar":
        return None
    checksum = block[148:156].split(b"\0", 1)[0].strip()
    try:
        expected = int(checksum or b"-1", 8)
    except ValueError:
        return None
    actual = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return kind if expected == actual else None


def read_up_to(stream: Reader, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class HashingReader:
    def __init__(self, raw: IO[bytes], hasher: Any) -> None:
        self.raw = raw
        self.hasher = hasher

    def read(self, size: int = -1, /) -> bytes:
        data = self.raw.read(size)
        self.hasher.update(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        return None


def download(url: str, out: IO[bytes], hasher: Any) -> int:
    """Fetch ``url`` into ``out``; returns the mtime (ns) from Last-Modified (else now)."""
    import time
    from email.utils import parsedate_to_datetime

    import urllib3

    http = urllib3.PoolManager()
    try:
        try:
            response = http.request("GET", url, preload_content=False, timeout=60.0, retries=3)
        except urllib3.exceptions.HTTPError as exc:
            raise BuildError(f"cannot download {url}: {exc}", "check the URL") from exc
        try:
            if response.status != 200:
                raise BuildError(
                    f"cannot download {url}: the server answered {response.status}",
                    "check the URL",
                )
            for chunk in response.stream(_READ):
                hasher.update(chunk)
                out.write(chunk)
        except urllib3.exceptions.HTTPError as exc:
            raise BuildError(f"downloading {url} failed: {exc}", "retry") from exc
        finally:
            response.release_conn()
        modified = response.headers.get("Last-Modified")
    finally:
        http.clear()
    if modified:
        try:
            return int(parsedate_to_datetime(modified).timestamp()) * 1_000_000_000
        except (TypeError, ValueError):
            pass
    return time.time_ns()
