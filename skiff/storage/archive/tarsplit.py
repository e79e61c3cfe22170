"""Tar-split: keep a layer tar's framing so the very same tar can be rebuilt.

A pulled layer is stored unpacked; pushing or saving it needs the tar it came
as, byte for byte, or its diff ID (and the digests in the manifest) would
change. containers/storage keeps a "tar-split" for that: everything of the
tar except file contents, which are read back from the layer directory.

skiff's record is its own (the consumer is skiff): a zstd stream holding a
magic line, then records in stream order:

    b"R" <u64 length> <bytes>             raw tar bytes: headers, PAX and
                                          GNU records, padding, the end of
                                          archive and whatever follows it
    b"F" <u64 size> <u32 n> <n bytes>     ``size`` bytes of content from the
                                          layer file at that relative path

``apply`` writes it (``tar_split=PATH``): what its reader consumes with
``read``/``skip`` is raw, what it writes to a file is a file reference.
``iter_layer_tar``/``open_layer_tar`` rebuild the tar, reading files with the
same symlink-proof resolution as extraction. A layer whose files changed or
vanished since (including a tar that wrote one path twice: only the last
content is on disk) fails with StoreCorrupt; the caller should also verify
the rebuilt tar's digest against the layer's diff ID.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Final, cast

from skiff.errors import StorageError, StoreCorrupt
from skiff.storage.archive.dirfds import DirTree, describe

MAGIC: Final = b"skiff-tar-split/1\n"
_RAW_FLUSH: Final = 1 << 20
_CHUNK: Final = 1 << 20
_OUT_CHUNK: Final = 256 << 10
_U64: Final = struct.Struct("<Q")
_FILE: Final = struct.Struct("<QI")


class TarSplitWriter:
    """Writes a tar-split record to a temporary name; ``finish`` renames it
    into place (after fsync), ``abort`` removes it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import zstandard

        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._file = self._tmp.open("xb")
        self._zstd = cast(
            "IO[bytes]",
            zstandard.ZstdCompressor(level=3).stream_writer(self._file, closefd=False),
        )
        self._zstd.write(MAGIC)
        self._raw = bytearray()

    def raw(self, data: bytes) -> None:
        """Tar bytes to keep verbatim (the BlockReader's tap)."""
        self._raw += data
        if len(self._raw) >= _RAW_FLUSH:
            self._flush_raw()

    def file(self, rel: bytes, size: int) -> None:
        """The next ``size`` bytes of the tar are the content of ``rel``."""
        self._flush_raw()
        self._zstd.write(b"F" + _FILE.pack(size, len(rel)) + rel)

    def _flush_raw(self) -> None:
        if self._raw:
            self._zstd.write(b"R" + _U64.pack(len(self._raw)))
            self._zstd.write(self._raw)
            self._raw.clear()

    def finish(self) -> None:
        self._flush_raw()
        self._zstd.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        try:
            self._zstd.close()
        finally:
            self._file.close()
            self._tmp.unlink(missing_ok=True)


class _Records:
    """Reads the decompressed record stream exactly."""

    def __init__(self, stream: IO[bytes], where: Path) -> None:
        self._stream = stream
        self._where = where

    def read(self, size: int, *, eof_ok: bool = False) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < size:
            data = self._stream.read(size - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        out = b"".join(parts)
        if len(out) < size and not (eof_ok and not out):
            raise self.corrupt("it ends in the middle of a record")
        return out

    def corrupt(self, why: str) -> StoreCorrupt:
        return StoreCorrupt(
            f"tar-split record {self._where} is damaged: {why}",
            "the layer cannot be exported as it was pulled; pull the image again",
        )


def iter_layer_tar(
    layer_dir: str | os.PathLike[str], tar_split: str | os.PathLike[str]
) -> Generator[bytes, None, None]:
    """The layer's original tar, rebuilt from its directory and tar-split.

    A missing record raises at once; everything else as the chunks are
    read.
    """
    where = Path(tar_split)
    if not where.is_file():
        raise StorageError(
            f"layer {os.fspath(layer_dir)} has no tar-split record ({where})",
            "the layer was not extracted from a tar; produce its tar with diff()",
        )
    return _rebuild(layer_dir, where)


def _rebuild(layer_dir: str | os.PathLike[str], where: Path) -> Generator[bytes, None, None]:
    import zstandard

    raw_file = where.open("rb")
    tree: DirTree | None = None
    try:
        tree = DirTree(layer_dir)
        stream = cast("IO[bytes]", zstandard.ZstdDecompressor().stream_reader(raw_file))
        records = _Records(stream, where)
        if records.read(len(MAGIC)) != MAGIC:
            raise records.corrupt("it does not start with the tar-split magic")
        out = bytearray()
        while kind := records.read(1, eof_ok=True):
            if kind == b"R":
                (length,) = _U64.unpack(records.read(_U64.size))
                while length:
                    piece = records.read(min(length, _CHUNK))
                    length -= len(piece)
                    out += piece
                    if len(out) >= _OUT_CHUNK:
                        yield bytes(out)
                        out.clear()
            elif kind == b"F":
                size, name_len = _FILE.unpack(records.read(_FILE.size))
                rel = records.read(name_len)
                if len(out) + size > _OUT_CHUNK and out:
                    yield bytes(out)
                    out.clear()
                for piece in _file_content(tree, rel, size):
                    if len(piece) >= _OUT_CHUNK:
                        yield piece
                    else:
                        out += piece
            else:
                raise records.corrupt(f"unknown record type {kind!r}")
        if out:
            yield bytes(out)
    except zstandard.ZstdError as exc:
        raise StoreCorrupt(
            f"tar-split record {where} is damaged: {exc}",
            "the layer cannot be exported as it was pulled; pull the image again",
        ) from exc
    finally:
        raw_file.close()
        if tree is not None:
            tree.close()


def _file_content(tree: DirTree, rel: bytes, size: int) -> Iterator[bytes]:
    cut = rel.rfind(b"/")
    parent, base = (rel[:cut], rel[cut + 1 :]) if cut >= 0 else (b"", rel)
    try:
        fd = os.open(
            base,
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            dir_fd=tree.dir_fd(parent, create=False),
        )
    except (OSError, StorageError) as exc:
        raise _changed(tree, rel, "is missing") from exc
    try:
        if os.fstat(fd).st_size != size:
            raise _changed(tree, rel, "has a different size")
        left = size
        while left:
            piece = os.read(fd, min(left, _CHUNK))
            if not piece:
                raise _changed(tree, rel, "shrank")
            left -= len(piece)
            yield piece
    finally:
        os.close(fd)


def _changed(tree: DirTree, rel: bytes, what: str) -> StoreCorrupt:
    return StoreCorrupt(
        f"layer {tree.root_path}: {describe(rel)} {what} since the layer was applied",
        "the layer's files were modified; pull the image again",
    )


class LayerTarReader:
    """``iter_layer_tar`` as a file-like object (``read``/``close``), for
    image sources that hand out streams."""

    def __init__(
        self, layer_dir: str | os.PathLike[str], tar_split: str | os.PathLike[str]
    ) -> None:
        self._chunks = iter_layer_tar(layer_dir, tar_split)
        self._buf = b""
        self._done = False

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            parts = [self._buf, *self._chunks]
            self._buf = b""
            self._done = True
            return b"".join(parts)
        while len(self._buf) < size and not self._done:
            chunk = next(self._chunks, b"")
            if not chunk:
                self._done = True
                break
            self._buf = self._buf + chunk if self._buf else chunk
        out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def close(self) -> None:
        self._chunks.close()
        self._done = True


def open_layer_tar(
    layer_dir: str | os.PathLike[str], tar_split: str | os.PathLike[str]
) -> LayerTarReader:
    return LayerTarReader(layer_dir, tar_split)
