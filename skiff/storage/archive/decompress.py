"""Detect a layer's compression and decompress it on a worker thread.

A layer is applied as one pipeline: a worker thread reads the (possibly
compressed) stream, hashes the compressed bytes, decompresses them, hashes the
tar bytes (the diff ID) and hands 1 MiB chunks through a bounded queue to the
main thread, which parses tar headers and writes files. ISA-L (``isal``),
``zstandard`` and ``hashlib`` release the GIL on large buffers, so the two
threads really run at once; the queue bounds memory to a few MiB whatever the
compression ratio.

Compression is detected by magic number, never trusted from a media type:
gzip (``1f 8b``), zstd (``28 b5 2f fd``) or else plain tar. xz and bzip2 are
recognised only to refuse them by name.

Truncation is an error at this level too: gzip members must end with their
trailer (ISA-L checks CRC and size), and a zstd stream must end on a frame
boundary. ``zstandard``'s streaming readers accept a stream cut inside a frame
silently, so the worker walks the zstd frame and block headers itself
(``_ZstdFrames``) while the bytes pass by.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import IO, Final, Protocol, cast

from skiff.errors import InvalidArchive, UnsafeArchive
from skiff.oci.digest import Digest

GZIP_MAGIC: Final = b"\x1f\x8b"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
XZ_MAGIC: Final = b"\xfd7zXZ\x00"
BZIP2_MAGIC: Final = b"BZh"

CHUNK_SIZE: Final = 1 << 20
"""Size of raw reads and the most a decompressor returns at once."""

QUEUE_DEPTH: Final = 8
"""Chunks the worker may run ahead of the writer (memory bound: ~8 MiB)."""


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def detect_compression(prefix: bytes) -> str:
    """ "gzip", "zstd" or "" (plain) from the first bytes of a stream.

    Raises InvalidArchive for compressions a layer may not use (xz, bzip2):
    the OCI image spec allows only gzip and zstd.
    """
    if prefix.startswith(GZIP_MAGIC):
        return "gzip"
    if prefix.startswith(ZSTD_MAGIC):
        return "zstd"
    if prefix.startswith(XZ_MAGIC) or prefix.startswith(BZIP2_MAGIC):
        kind = "xz" if prefix.startswith(XZ_MAGIC) else "bzip2"
        raise InvalidArchive(
            f"layer is {kind}-compressed, which OCI layers may not be",
            "recompress it with gzip or zstd",
        )
    return ""


class _Stopped(Exception):
    """The consumer went away: the worker ends quietly."""


_EOF: Final = b""


class DecompressedStream:
    """The tar bytes of a layer stream, produced by a worker thread.

    Call ``next_chunk()`` until it returns ``b""``; then ``diff_id``,
    ``digest``, ``size``, ``compressed_size`` and ``compression`` describe
    the whole stream. Always ``close()`` (also after errors): it stops and
    joins the worker. Errors raised by the worker (truncation, corrupt data,
    the size limit, a failing source) are re-raised by ``next_chunk``.
    """

    def __init__(
        self,
        stream: Reader,
        *,
        max_bytes: int | None = None,
        chunk_size: int = CHUNK_SIZE,
        depth: int = QUEUE_DEPTH,
        what: str = "layer",
        stream_digest: Callable[[], Digest] | None = None,
    ) -> None:
        """``stream_digest``: the digest of ``stream`` as its owner computes it
        anyway (the copy engine's verifying stream), valid once the stream
        ended. The stream's bytes are then not hashed a second time here: it
        is ``digest``, and for a plain tar also ``diff_id``."""
        self._stream = stream
        self._stream_digest = stream_digest
        self._max_bytes = max_bytes
        self._chunk_size = chunk_size
        self._what = what
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._compressed_hash = hashlib.sha256()
        self._tar_hash = hashlib.sha256()
        self.compressed_size = 0
        self.size = 0
        self.compression = ""
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="skiff-layer-reader", daemon=True)
        self._thread.start()

    # --- consumer side (main thread) ------------------------------------

    def next_chunk(self) -> bytes:
        """The next piece of tar data, or b"" at the end of the stream."""
        if self._finished:
            return _EOF
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        if not item:
            self._finished = True
        return item

    def iter_chunks(self) -> Iterator[bytes]:
        while chunk := self.next_chunk():
            yield chunk

    @property
    def digest(self) -> Digest:
        """Digest of the stream as read (compressed), valid at end of stream."""
        if self._stream_digest is not None:
            return self._stream_digest()
        return Digest("sha256", self._compressed_hash.hexdigest())

    @property
    def diff_id(self) -> Digest:
        """Digest of the tar bytes (uncompressed), valid at end of stream."""
        if not self.compression:  # plain: the same bytes, hashed once
            return self.digest
        return Digest("sha256", self._tar_hash.hexdigest())

    def close(self) -> None:
        """Stop the worker and wait for it; idempotent."""
        self._stop.set()
        self._finished = True
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()

    # --- worker side ----------------------------------------------------

    def _run(self) -> None:
        try:
            first = self._read_raw()
            if first:
                self.compression = detect_compression(first[:8])
                if self.compression == "gzip":
                    self._gunzip(first)
                elif self.compression == "zstd":
                    self._unzstd(first)
                else:
                    data = first
                    while data:
                        self._emit(data, hashed=True)
                        data = self._read_raw()
            self._put(_EOF)
        except _Stopped:
            return
        except BaseException as exc:  # handed to the consumer, re-raised there
            try:
                self._put(exc)
            except _Stopped:
                return

    def _read_raw(self) -> bytes:
        if self._stop.is_set():
            raise _Stopped
        try:
            data = self._stream.read(self._chunk_size)
        except OSError as exc:
            raise InvalidArchive(
                f"reading {self._what} failed: {exc}", "retry; check the source"
            ) from exc
        if data:
            if self._stream_digest is None:
                self._compressed_hash.update(data)
            self.compressed_size += len(data)
        return data

    def _emit(self, data: bytes, hashed: bool = False) -> None:
        if not hashed:
            self._tar_hash.update(data)
        self.size += len(data)
        if self._max_bytes is not None and self.size > self._max_bytes:
            raise UnsafeArchive(
                f"{self._what} expands to more than the limit of {self._max_bytes} bytes",
                "refusing a possible tar bomb; raise the limit if the layer is genuine",
            )
        self._put(data)

    def _put(self, item: bytes | BaseException) -> None:
        if self._stop.is_set():
            raise _Stopped
        self._queue.put(item)

    def _gunzip(self, first: bytes) -> None:
        from isal import igzip_lib

        # The stub types IsalError as an instance; it is an Exception class.
        isal_error = cast("type[Exception]", igzip_lib.IsalError)
        decomp = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
        pending = first
        limit = self._chunk_size
        try:
            while True:
                if decomp.eof:
                    rest = decomp.unused_data or self._read_raw()
                    if not rest:
                        return
                    if rest.startswith(GZIP_MAGIC):  # another member
                        decomp = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
                        pending = rest
                        continue
                    self._trailing_zeros(rest)
                    return
                if decomp.needs_input:
                    if not pending:
                        pending = self._read_raw()
                        if not pending:
                            raise InvalidArchive(
                                f"{self._what}: gzip stream is truncated",
                                "the download or file was cut short; fetch it again",
                            )
                    out = decomp.decompress(pending, limit)
                    pending = b""
                else:
                    out = decomp.decompress(b"", limit)
                if out:
                    self._emit(out)
        except isal_error as exc:
            raise InvalidArchive(
                f"{self._what}: corrupt gzip data: {exc}", "the blob is damaged; fetch it again"
            ) from exc

    def _trailing_zeros(self, rest: bytes) -> None:
        """Some writers pad gzip files with zeros; anything else is an error."""
        while rest:
            if rest.strip(b"\0"):
                raise InvalidArchive(
                    f"{self._what}: unexpected data after the end of the gzip stream",
                    "the blob is damaged or not a single gzip stream",
                )
            rest = self._read_raw()

    def _unzstd(self, first: bytes) -> None:
        import zstandard

        frames = _ZstdFrames(self._what)
        source = _FeedingReader(self, first, frames)
        reader = zstandard.ZstdDecompressor().stream_reader(
            cast("IO[bytes]", source), read_size=self._chunk_size, read_across_frames=True
        )
        try:
            while out := reader.read(self._chunk_size):
                self._emit(out)
        except zstandard.ZstdError as exc:
            raise InvalidArchive(
                f"{self._what}: corrupt zstd data: {exc}", "the blob is damaged; fetch it again"
            ) from exc
        # The decompressor stops quietly wherever its input ends; the input
        # must end on a frame boundary.
        while source.read(self._chunk_size):
            pass
        frames.finish()


class _FeedingReader:
    """Raw reads for the zstd decompressor, shown to the frame walker."""

    def __init__(self, owner: DecompressedStream, first: bytes, frames: _ZstdFrames) -> None:
        self._owner = owner
        self._pending = first
        self._frames = frames

    def read(self, size: int = -1, /) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
        else:
            data = self._owner._read_raw()
        self._frames.feed(data)
        return data


class _ZstdFrames:
    """Walks zstd frame and block headers (RFC 8878) to see where frames end.

    Only headers are parsed; block contents are skipped by length. At the
    end of the stream ``finish()`` raises unless the last frame was whole.
    """

    _MAGIC, _DESCRIPTOR, _HEADER_REST, _BLOCK, _SKIPPABLE_SIZE = range(5)

    def __init__(self, what: str) -> None:
        self._what = what
        self._state = self._MAGIC
        self._need = 4
        self._header = bytearray()
        self._skip = 0
        self._after_skip = self._MAGIC
        self._checksum = False

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                take = min(self._skip, end - pos)
                self._skip -= take
                pos += take
                if not self._skip:
                    self._enter(self._after_skip)
                continue
            take = min(self._need - len(self._header), end - pos)
            self._header += data[pos : pos + take]
            pos += take
            if len(self._header) == self._need:
                header = bytes(self._header)
                self._header.clear()
                self._parse(header)

    def _enter(self, state: int) -> None:
        self._state = state
        self._need = {
            self._MAGIC: 4,
            self._DESCRIPTOR: 1,
            self._BLOCK: 3,
            self._SKIPPABLE_SIZE: 4,
        }[state]

    def _parse(self, header: bytes) -> None:
        state = self._state
        if state == self._MAGIC:
            if header == ZSTD_MAGIC:
                self._enter(self._DESCRIPTOR)
            elif header[1:] == b"\x2a\x4d\x18" and header[0] & 0xF0 == 0x50:
                self._enter(self._SKIPPABLE_SIZE)
            else:
                raise InvalidArchive(
                    f"{self._what}: unexpected data after a zstd frame",
                    "the blob is damaged or not a zstd stream",
                )
        elif state == self._DESCRIPTOR:
            fhd = header[0]
            single_segment = bool(fhd & 0x20)
            self._checksum = bool(fhd & 0x04)
            rest = (0 if single_segment else 1) + (0, 1, 2, 4)[fhd & 0x03]
            rest += (1 if single_segment else 0, 2, 4, 8)[fhd >> 6]
            if rest:
                self._state, self._need = self._HEADER_REST, rest
            else:
                self._enter(self._BLOCK)
        elif state == self._HEADER_REST:
            self._enter(self._BLOCK)
        elif state == self._BLOCK:
            value = int.from_bytes(header, "little")
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            if kind == 3:
                raise InvalidArchive(
                    f"{self._what}: corrupt zstd data: reserved block type",
                    "the blob is damaged; fetch it again",
                )
            content = 1 if kind == 1 else size
            after = self._BLOCK
            if last:
                after = self._MAGIC
                content += 4 if self._checksum else 0
            self._skip_then(content, after)
        else:  # skippable frame size
            self._skip_then(int.from_bytes(header, "little"), self._MAGIC)

    def _skip_then(self, count: int, state: int) -> None:
        if count:
            self._skip = count
            self._after_skip = state
        else:
            self._enter(state)

    def finish(self) -> None:
        if self._state != self._MAGIC or self._header or self._skip:
            raise InvalidArchive(
                f"{self._what}: zstd stream is truncated",
                "the download or file was cut short; fetch it again",
            )
