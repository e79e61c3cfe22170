"""Streaming compression and decompression for layer blobs.

Hot path of every pull, push and conversion: gzip goes through ``isal``
(measured here ~590 MB/s inflate, twice stdlib zlib; ~360 MB/s deflate at
levels 1-2 against ~28 MB/s for zlib level 6) and zstd through ``zstandard``
(faster than the zstd CLI, multi-threaded compression). Both release the GIL,
so parallel layers use both cores.

Everything here is a pull-based reader (``read(n) -> bytes``) so that the
copy engine can chain: source → verify → decompress → compress → hash → dest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from skiff.errors import ImageError
from skiff.image.types import Reader

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"

CHUNK = 1 << 20

ALGORITHMS = ("gzip", "zstd")


class CompressionError(ImageError):
    """A compressed stream is corrupt, or an algorithm is not supported."""


def detect(prefix: bytes) -> str:
    """ "gzip", "zstd", "bzip2", "xz" or "" (not compressed) from the first bytes."""
    if prefix.startswith(GZIP_MAGIC):
        return "gzip"
    if prefix.startswith(ZSTD_MAGIC):
        return "zstd"
    if prefix.startswith(BZIP2_MAGIC):
        return "bzip2"
    if prefix.startswith(XZ_MAGIC):
        return "xz"
    return ""


class PeekReader:
    """A reader that lets the caller look at the first bytes without consuming them."""

    def __init__(self, stream: Reader) -> None:
        self._stream = stream
        self._buffer = b""

    def peek(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self._stream.read(size - len(self._buffer))
            if not data:
                break
            self._buffer += data
        return self._buffer[:size]

    def read(self, size: int = -1, /) -> bytes:
        if self._buffer:
            if size < 0 or size >= len(self._buffer):
                data, self._buffer = self._buffer, b""
                if size < 0:
                    return data + self._stream.read()
                return data
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        return self._stream.read(size)


class _IterReader:
    """Adapts an iterator of byte chunks to ``read(n)``."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._offset = 0
        self._eof = False

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            parts = [self._chunk[self._offset :]]
            self._chunk, self._offset = b"", 0
            parts.extend(self._chunks)
            self._eof = True
            return b"".join(parts)
        while self._offset >= len(self._chunk) and not self._eof:
            try:
                self._chunk, self._offset = next(self._chunks), 0
            except StopIteration:
                self._eof = True
        if self._offset == 0 and size >= len(self._chunk):
            # the common case (callers read CHUNK at a time): no copy
            data, self._chunk = self._chunk, b""
            return data
        data = self._chunk[self._offset : self._offset + size]
        self._offset += len(data)
        return data


def _gunzip_chunks(stream: Reader) -> Iterator[bytes]:
    from isal import isal_zlib

    decomp = isal_zlib.decompressobj(wbits=47)  # 32+15: auto-detect gzip/zlib header
    pending = b""
    while True:
        data = pending or stream.read(CHUNK)
        pending = b""
        if not data:
            if not decomp.eof:
                raise CompressionError("gzip stream is truncated")
            return
        try:
            out = decomp.decompress(data)
        except (isal_zlib.error, ValueError) as exc:  # type: ignore[misc]
            raise CompressionError(f"corrupt gzip stream: {exc}") from exc
        if out:
            yield out
        if decomp.eof:
            rest = decomp.unused_data
            if rest.strip(b"\x00"):
                # another gzip member follows (pigz -i, concatenated streams)
                decomp = isal_zlib.decompressobj(wbits=47)
                pending = rest
            else:
                # drain and ignore trailing zero padding
                while stream.read(CHUNK):
                    pass
                return


def _unzstd_chunks(stream: Reader) -> Iterator[bytes]:
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    try:
        yield from dctx.read_to_iter(stream, read_size=CHUNK, write_size=CHUNK)  # type: ignore[arg-type]
    except zstandard.ZstdError as exc:
        raise CompressionError(f"corrupt zstd stream: {exc}") from exc


def decompressing_reader(stream: Reader, algorithm: str) -> Reader:
    """A reader of the decompressed bytes of ``stream``."""
    if algorithm == "gzip":
        return _IterReader(_gunzip_chunks(stream))
    if algorithm == "zstd":
        return _IterReader(_unzstd_chunks(stream))
    if algorithm == "":
        return stream
    raise CompressionError(f"unsupported compression {algorithm!r}", "supported: gzip, zstd")


def auto_decompressing_reader(stream: Reader) -> tuple[Reader, str]:
    """Detect the compression from the magic bytes; return (plain reader, algorithm)."""
    peek = PeekReader(stream)
    algorithm = detect(peek.peek(8))
    if algorithm in ("bzip2", "xz"):
        raise CompressionError(f"{algorithm}-compressed layers are not supported")
    return decompressing_reader(peek, algorithm), algorithm


def gzip_level(level: int | None) -> int:
    """Map gzip's 1-9 scale onto isal's 0-3 (isal 1-2 already beats zlib 6 on speed)."""
    if level is None:
        return 1
    if level <= 0:
        return 0
    return min(3, (level + 2) // 3)


def _gzip_chunks(stream: Reader, level: int | None) -> Iterator[bytes]:
    from isal import isal_zlib

    comp = isal_zlib.compressobj(gzip_level(level), isal_zlib.DEFLATED, 31)
    while True:
        data = stream.read(CHUNK)
        if not data:
            break
        out = comp.compress(data)
        if out:
            yield out
    yield comp.flush()


def zstd_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _zstd_chunks(stream: Reader, level: int | None) -> Iterator[bytes]:
    import zstandard

    cctx = zstandard.ZstdCompressor(level=3 if level is None else level, threads=zstd_threads())
    yield from cctx.read_to_iter(stream, read_size=CHUNK, write_size=CHUNK)  # type: ignore[arg-type]


def compressing_reader(stream: Reader, algorithm: str, level: int | None = None) -> Reader:
    """A reader of ``stream`` compressed with ``algorithm`` (deterministic output)."""
    if algorithm == "gzip":
        return _IterReader(_gzip_chunks(stream, level))
    if algorithm == "zstd":
        return _IterReader(_zstd_chunks(stream, level))
    raise CompressionError(f"unsupported compression {algorithm!r}", "supported: gzip, zstd")


class IncrementalDecompressor:
    """Push-style decompression (``feed`` compressed bytes, get plain bytes).

    Used where bytes pass through on their way elsewhere and their
    uncompressed digest is wanted too (diff IDs of schema 1 layers).
    """

    def __init__(self, algorithm: str) -> None:
        self._algorithm = algorithm
        if algorithm == "gzip":
            from isal import isal_zlib

            self._gzip = isal_zlib.decompressobj(wbits=47)
        elif algorithm == "zstd":
            import zstandard

            self._zstd = zstandard.ZstdDecompressor().decompressobj()
        elif algorithm != "":
            raise CompressionError(f"unsupported compression {algorithm!r}")

    def feed(self, data: bytes) -> bytes:
        if self._algorithm == "gzip":
            out: bytes = self._gzip.decompress(data)
            rest = self._gzip.unused_data if self._gzip.eof else b""
            if rest.strip(b"\x00"):
                from isal import isal_zlib

                self._gzip = isal_zlib.decompressobj(wbits=47)
                out += self.feed(rest)
            return out
        if self._algorithm == "zstd":
            result: bytes = self._zstd.decompress(data)
            return result
        return data
