"""Tar files as blob containers, for the oci-archive: and docker-archive: transports.

Reading: an archive is indexed once (a header read and a seek per member)
and each file is then served by ``pread`` from its offset. Nothing is
extracted, so reading costs no temporary space and no copy, and any number
of threads can read blobs at once. A compressed archive (``docker save |
gzip``) is first decompressed into an anonymous temporary file, because
offsets need an uncompressed, seekable file.

Member names are checked while indexing: absolute names and ``..``
components are refused (UnsafeArchive) even though nothing is extracted,
because a name that escapes means the archive was not written by a
container tool and nothing else in it can be trusted. Symbolic and hard
links are accepted only where a format uses them (``docker save`` links
repeated layers) and are resolved inside the archive, never outside.

Writing: ``TarWriter`` appends members to a file descriptor; file contents
are copied with ``sendfile`` where they come from a file.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

from skiff.errors import ImageError, ImageNotFound, InvalidArchive, ManifestError, UnsafeArchive
from skiff.image.transports.localfs import COPY_CHUNK, os_error, write_all
from skiff.image.types import ClosableReader, Reader

MemberKind = Literal["file", "dir", "symlink", "hardlink"]

_MAX_LINK_HOPS = 40
_BLOCK = tarfile.BLOCKSIZE


# --- compression sniffing ----------------------------------------------------


def sniff_compression(head: bytes) -> str:
    """The compression of a stream from its first bytes: gzip, zstd, bzip2, xz or ""."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return ""


def decompressing_reader(raw: Reader, algorithm: str) -> ClosableReader:
    """A stream of the decompressed content of ``raw``."""
    stream = cast("IO[bytes]", _RawAdapter(raw))
    if algorithm == "gzip":
        from isal import igzip

        return cast(ClosableReader, igzip.IGzipFile(fileobj=stream, mode="rb"))  # type: ignore[no-untyped-call]
    if algorithm == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
    if algorithm == "bzip2":
        import bz2

        return bz2.BZ2File(stream, "rb")
    if algorithm == "xz":
        import lzma

        return lzma.LZMAFile(stream, "rb")
    raise ManifestError(f"unsupported compression {algorithm!r}")


class _RawAdapter(io.RawIOBase):
    """Gives a ``read()``-only stream the ``readinto`` the decompressors call."""

    def __init__(self, stream: Reader) -> None:
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)


class RangeReader:
    """Reads ``size`` bytes at ``offset`` of a shared descriptor with ``pread``.

    Keeps its own position, so readers of one archive do not disturb each
    other; ``close`` does not close the shared descriptor.
    """

    def __init__(self, fd: int, offset: int, size: int, label: str) -> None:
        self._fd = fd
        self._offset = offset
        self._size = size
        self._pos = 0
        self._label = label

    def read(self, size: int = -1, /) -> bytes:
        remaining = self._size - self._pos
        if size < 0 or size > remaining:
            size = remaining
        if size == 0:
            return b""
        data = os.pread(self._fd, size, self._offset + self._pos)
        if not data:
            raise InvalidArchive(
                f"{self._label} is truncated", "the archive file was cut short; write it again"
            )
        self._pos += len(data)
        return data

    def close(self) -> None:
        pass


# --- reading -----------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    name: str
    kind: MemberKind
    offset: int
    size: int
    link: str = ""


def normalize_name(raw: str, archive: str) -> str:
    """An archive member name without "./" and "//", refused if it could escape."""
    if raw.startswith("/"):
        raise UnsafeArchive(
            f"{archive}: member {raw!r} has an absolute path",
            "archives of images hold relative names only; this file was not written by a container tool",
        )
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(
            f"{archive}: member {raw!r} points outside the archive (contains '..')",
            "archives of images hold plain relative names; this file was not written by a container tool",
        )
    return "/".join(parts)


class TarIndex:
    """The member table of an uncompressed tar, serving file contents by offset."""

    def __init__(self, fd: int, label: str, members: dict[str, Member]) -> None:
        self._fd = fd
        self.label = label
        self._members = members

    @classmethod
    def open(cls, path: Path, label: str, *, tmp_dir: Path, links: bool) -> TarIndex:
        """Index the archive at ``path``; ``links`` allows symlinks and hardlinks."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise ImageNotFound(
                f"{label}: no such file", "check the path; it is relative to the current directory"
            ) from exc
        except OSError as exc:
            raise os_error(exc, f"cannot open {label}") from exc
        try:
            try:
                algorithm = sniff_compression(os.pread(fd, 8, 0))
                if algorithm:
                    fd = _decompress_to_anonymous_file(fd, algorithm, tmp_dir, label)
                members = _scan(fd, label, links)
            except OSError as exc:
                raise os_error(exc, f"cannot read {label}") from exc
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, label, members)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def names(self) -> list[str]:
        return list(self._members)

    def lookup(self, name: str) -> Member | None:
        """The regular file ``name`` refers to, following links inside the archive."""
        current = normalize_name(name, self.label)
        for _ in range(_MAX_LINK_HOPS):
            member = self._members.get(current)
            if member is None or member.kind in ("file", "dir"):
                return member
            if member.kind == "hardlink":
                # hardlink targets are named from the archive root
                current = normalize_name(member.link, self.label)
            else:
                current = _resolve_symlink(member, self.label)
        raise UnsafeArchive(
            f"{self.label}: too many links resolving {name!r}",
            "the archive contains a symlink loop",
        )

    def open_member(self, name: str) -> tuple[ClosableReader, int] | None:
        member = self.lookup(name)
        if member is None or member.kind != "file":
            return None
        reader = RangeReader(self._fd, member.offset, member.size, f"{self.label} ({name})")
        return reader, member.size

    def read_member(self, name: str, limit: int) -> bytes | None:
        """The content of a small member (JSON documents), or None if absent."""
        member = self.lookup(name)
        if member is None or member.kind != "file":
            return None
        if member.size > limit:
            raise ManifestError(
                f"{self.label}: {name} is {member.size} bytes, above the {limit}-byte limit"
            )
        reader = RangeReader(self._fd, member.offset, member.size, f"{self.label} ({name})")
        try:
            return _read_exactly(reader, member.size)
        except OSError as exc:
            raise os_error(exc, f"cannot read {name} in {self.label}") from exc

    def read_head(self, name: str, count: int) -> bytes:
        """The first ``count`` bytes of a member (to sniff its compression)."""
        member = self.lookup(name)
        if member is None or member.kind != "file":
            return b""
        try:
            return os.pread(self._fd, min(count, member.size), member.offset)
        except OSError as exc:
            raise os_error(exc, f"cannot read {name} in {self.label}") from exc


def _read_exactly(reader: Reader, size: int) -> bytes:
    chunks = []
    while True:
        chunk = reader.read(COPY_CHUNK)
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    assert len(data) == size
    return data


def _resolve_symlink(member: Member, archive: str) -> str:
    target = member.link
    if target.startswith("/"):
        raise UnsafeArchive(
            f"{archive}: symlink {member.name!r} points to the absolute path {target!r}",
            "links in image archives must stay inside the archive",
        )
    parts = member.name.split("/")[:-1]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafeArchive(
                    f"{archive}: symlink {member.name!r} -> {target!r} points outside the archive",
                    "links in image archives must stay inside the archive",
                )
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def _scan(fd: int, label: str, links: bool) -> dict[str, Member]:
    members: dict[str, Member] = {}
    os.lseek(fd, 0, os.SEEK_SET)  # a dup shares the offset; a decompressed copy is at its end
    with os.fdopen(os.dup(fd), "rb") as stream:
        try:
            archive = tarfile.TarFile(fileobj=stream, mode="r")
            for info in archive:
                _add_member(members, info, label, links)
        except tarfile.TarError as exc:
            raise InvalidArchive(
                f"{label} is not a valid tar archive: {exc}",
                "the file is truncated or not an archive written by save/copy",
            ) from exc
    return members


def _add_member(members: dict[str, Member], info: tarfile.TarInfo, label: str, links: bool) -> None:
    name = normalize_name(info.name, label)
    if info.isdir():
        if name:
            members[name] = Member(name, "dir", 0, 0)
        return
    if not name:
        raise UnsafeArchive(f"{label}: a member has an empty name")
    if info.issparse():
        raise InvalidArchive(
            f"{label}: member {info.name!r} is a sparse file, which skiff does not read"
        )
    if info.isreg():
        members[name] = Member(name, "file", info.offset_data, info.size)
        return
    if (info.issym() or info.islnk()) and links:
        kind: MemberKind = "symlink" if info.issym() else "hardlink"
        members[name] = Member(name, kind, 0, 0, info.linkname)
        return
    what = "a link" if info.issym() or info.islnk() else "a special file"
    raise UnsafeArchive(
        f"{label}: member {info.name!r} is {what}; only regular files and directories belong here",
        "this archive was not written by a container tool",
    )


def _decompress_to_anonymous_file(fd: int, algorithm: str, tmp_dir: Path, label: str) -> int:
    """Decompress the archive on ``fd`` into an unlinked file; returns its descriptor."""
    out = tempfile.TemporaryFile(dir=tmp_dir)  # noqa: SIM115 - handed over as a raw fd
    try:
        out_fd = os.dup(out.fileno())
    finally:
        out.close()
    try:
        with os.fdopen(os.dup(fd), "rb") as raw:
            plain = decompressing_reader(raw, algorithm)
            try:
                while True:
                    chunk = plain.read(COPY_CHUNK)
                    if not chunk:
                        break
                    write_all(out_fd, chunk)
            except OSError as exc:
                if exc.errno is not None:
                    raise  # a real I/O error, reported by the caller
                raise InvalidArchive(
                    f"{label}: cannot decompress ({algorithm}): {exc}",
                    "the archive is truncated or corrupt",
                ) from exc
            except (EOFError, ValueError) as exc:
                # gzip/zstd/lzma report corrupt or truncated input this way
                raise InvalidArchive(
                    f"{label}: cannot decompress ({algorithm}): {exc}",
                    "the archive is truncated or corrupt",
                ) from exc
            finally:
                plain.close()
    except BaseException:
        os.close(out_fd)
        raise
    os.close(fd)
    return out_fd


# --- writing -----------------------------------------------------------------


class TarWriter:
    """Appends members to an uncompressed tar on ``fd`` (owned by the caller).

    Headers are POSIX ustar (pax records only for names too long for it),
    owner 0:0 and mtime 0, so the same content gives the same archive.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def _header(self, info: tarfile.TarInfo) -> None:
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        write_all(self._fd, info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _pad(self, size: int) -> None:
        rest = size % _BLOCK
        if rest:
            write_all(self._fd, b"\0" * (_BLOCK - rest))

    def add_dir(self, name: str, mode: int = 0o755) -> None:
        info = tarfile.TarInfo(name.rstrip("/") + "/")
        info.type = tarfile.DIRTYPE
        info.mode = mode
        self._header(info)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        self._header(info)
        write_all(self._fd, data)
        self._pad(len(data))

    def add_symlink(self, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        self._header(info)

    def add_file(self, name: str, path: Path, mode: int = 0o644) -> None:
        """Append the file at ``path`` (copied in the kernel with sendfile)."""
        with open(path, "rb") as src:
            self.add_fd(name, src.fileno(), os.fstat(src.fileno()).st_size, mode)

    def add_fd(self, name: str, fd: int, size: int, mode: int = 0o644) -> None:
        """Append ``size`` bytes of the open file ``fd``, from its start."""
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = mode
        self._header(info)
        offset = 0
        while offset < size:
            sent = os.sendfile(self._fd, fd, offset, min(size - offset, 1 << 30))
            if sent == 0:
                raise ImageError(f"{name}: the source file shrank while it was being archived")
            offset += sent
        self._pad(size)

    def add_stream(self, name: str, size: int, stream: Reader, mode: int = 0o644) -> None:
        """Append exactly ``size`` bytes read from ``stream``, then read it to its end.

        Reading to the end lets a verifying stream check its digest; a
        stream longer or shorter than ``size`` raises ImageError (the caller
        must then discard the archive, which now holds a broken member).
        """
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = mode
        self._header(info)
        done = 0
        while done < size:
            chunk = stream.read(min(COPY_CHUNK, size - done))
            if not chunk:
                raise ImageError(f"{name}: stream ended after {done} of {size} bytes")
            write_all(self._fd, chunk)
            done += len(chunk)
        if stream.read(1):
            raise ImageError(f"{name}: stream is longer than its announced {size} bytes")
        self._pad(size)

    def finish(self) -> None:
        """Write the end-of-archive marker (two zero blocks)."""
        write_all(self._fd, b"\0" * (2 * _BLOCK))
