"""Compression detection and the threaded decompress-and-hash pipeline."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import threading

import pytest
import zstandard

from skiff.errors import InvalidArchive, UnsafeArchive
from skiff.storage.archive.decompress import DecompressedStream, detect_compression

PAYLOAD = os.urandom(300_000) + bytes(3_000_000) + b"tail" * 1000


def run(blob: bytes, **kw: object) -> tuple[bytes, DecompressedStream]:
    stream = DecompressedStream(io.BytesIO(blob), **kw)  # type: ignore[arg-type]
    try:
        out = b"".join(stream.iter_chunks())
    finally:
        stream.close()
    return out, stream


def test_detection() -> None:
    assert detect_compression(b"\x1f\x8b\x08\x00") == "gzip"
    assert detect_compression(b"\x28\xb5\x2f\xfd\x00") == "zstd"
    assert detect_compression(b"ustar stuff") == ""
    assert detect_compression(b"") == ""
    with pytest.raises(InvalidArchive, match="xz"):
        detect_compression(b"\xfd7zXZ\x00\x00")
    with pytest.raises(InvalidArchive, match="bzip2"):
        detect_compression(b"BZh91AY")


@pytest.mark.parametrize(
    ("compress", "kind"),
    [
        (lambda d: d, ""),
        (lambda d: gzip.compress(d, mtime=0), "gzip"),
        (lambda d: zstandard.ZstdCompressor(write_checksum=True).compress(d), "zstd"),
    ],
)
def test_round_trip_digests_and_sizes(compress: object, kind: str) -> None:
    blob = compress(PAYLOAD)  # type: ignore[operator]
    out, stream = run(blob)
    assert out == PAYLOAD
    assert stream.compression == kind
    assert stream.size == len(PAYLOAD)
    assert stream.compressed_size == len(blob)
    assert stream.diff_id.hex == hashlib.sha256(PAYLOAD).hexdigest()
    assert stream.digest.hex == hashlib.sha256(blob).hexdigest()


def test_chunks_are_bounded_whatever_the_ratio() -> None:
    blob = gzip.compress(bytes(64 << 20), mtime=0)  # 64 MiB of zeros in ~64 KiB
    stream = DecompressedStream(io.BytesIO(blob), chunk_size=1 << 16)
    try:
        sizes = [len(chunk) for chunk in stream.iter_chunks()]
    finally:
        stream.close()
    assert sum(sizes) == 64 << 20
    assert max(sizes) <= 1 << 16


def test_empty_stream() -> None:
    out, stream = run(b"")
    assert out == b""
    assert stream.diff_id.hex == hashlib.sha256(b"").hexdigest()


def test_gzip_multiple_members_and_zero_padding() -> None:
    blob = gzip.compress(b"one", mtime=0) + gzip.compress(b"two", mtime=0) + bytes(100)
    out, stream = run(blob)
    assert out == b"onetwo"
    assert stream.digest.hex == hashlib.sha256(blob).hexdigest()


def test_gzip_trailing_garbage_is_an_error() -> None:
    with pytest.raises(InvalidArchive, match="after the end of the gzip"):
        run(gzip.compress(b"one", mtime=0) + b"garbage")


@pytest.mark.parametrize("cut", [5, 100, -9, -1])
def test_truncated_gzip_is_an_error(cut: int) -> None:
    blob = gzip.compress(PAYLOAD, mtime=0)
    with pytest.raises(InvalidArchive, match=r"truncated|corrupt"):
        run(blob[:cut])


def test_gzip_crc_is_checked() -> None:
    blob = bytearray(gzip.compress(PAYLOAD, mtime=0))
    blob[-6] ^= 0xFF
    with pytest.raises(InvalidArchive, match="corrupt gzip"):
        run(bytes(blob))


def test_zstd_multiple_frames_and_skippable_frames() -> None:
    skippable = (0x184D2A50).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"12345"
    plain = zstandard.ZstdCompressor().compress(b"no checksum, one frame " * 100)
    blob = (
        zstandard.ZstdCompressor(write_checksum=True).compress(b"first ")
        + skippable
        + plain
        + zstandard.ZstdCompressor(write_content_size=False).compress(b"last")
    )
    out, _ = run(blob)
    assert out == b"first " + b"no checksum, one frame " * 100 + b"last"


def test_truncated_zstd_is_an_error_at_every_cut() -> None:
    blob = zstandard.ZstdCompressor(write_checksum=True, level=1).compress(PAYLOAD)
    # (Under four bytes the magic is incomplete: the stream is not zstd.)
    cuts = {4, 5, 6, 8, 13, 20, len(blob) // 3, len(blob) // 2, len(blob) - 5, len(blob) - 1}
    for cut in sorted(cuts):
        with pytest.raises(InvalidArchive, match=r"truncated|corrupt"):
            run(blob[:cut])


def test_zstd_trailing_garbage_is_an_error() -> None:
    blob = zstandard.ZstdCompressor().compress(b"data") + b"junk"
    with pytest.raises(InvalidArchive, match="zstd"):
        run(blob)


def test_size_limit_stops_a_decompression_bomb() -> None:
    blob = gzip.compress(bytes(256 << 20), mtime=0)  # 256 MiB of zeros, ~256 KiB
    with pytest.raises(UnsafeArchive, match="limit of 1048576 bytes"):
        run(blob, max_bytes=1 << 20)


def test_a_failing_source_is_reported() -> None:
    class Broken(io.RawIOBase):
        def read(self, size: int = -1, /) -> bytes:
            raise OSError(5, "Input/output error")

    stream = DecompressedStream(Broken())
    try:
        with pytest.raises(InvalidArchive, match="Input/output error"):
            stream.next_chunk()
    finally:
        stream.close()


def test_close_stops_a_worker_blocked_on_a_full_queue() -> None:
    blob = os.urandom(16 << 20)
    stream = DecompressedStream(io.BytesIO(blob), chunk_size=1 << 16, depth=2)
    assert stream.next_chunk()
    worker = next(t for t in threading.enumerate() if t.name == "skiff-layer-reader")
    stream.close()  # must not hang although the worker has much more to hand over
    assert not worker.is_alive()
    assert stream.next_chunk() == b""  # closed: nothing more, and no hang


def test_reads_run_ahead_of_the_consumer_but_only_by_the_queue_depth() -> None:
    reads: list[int] = []

    class Counting(io.RawIOBase):
        def __init__(self) -> None:
            self.left = 64

        def read(self, size: int = -1, /) -> bytes:
            reads.append(size)
            if not self.left:
                return b""
            self.left -= 1
            return b"x" * 1024

    stream = DecompressedStream(Counting(), chunk_size=1024, depth=4)
    try:
        stream.next_chunk()
        # Wait (with a deadline) until the worker filled the queue.
        import time

        deadline = time.monotonic() + 5
        while len(reads) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert 5 <= len(reads) <= 8
    finally:
        stream.close()
