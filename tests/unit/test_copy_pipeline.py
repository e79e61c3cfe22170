"""``skiff.image.copy.pipeline.Prefetcher``: a reader fed by a background thread."""

from __future__ import annotations

import io
import threading

import pytest

from skiff.errors import DigestMismatch
from skiff.image.copy.pipeline import Prefetcher
from skiff.oci.digest import VerifyingReader, sha256_of


def test_delivers_every_byte_in_order_whatever_the_read_size() -> None:
    data = bytes(range(256)) * 5000
    reader = Prefetcher(io.BytesIO(data), "t", chunk=4096, depth=2)
    out = bytearray()
    sizes = [1, 7, 4096, 10000, 3]
    i = 0
    while chunk := reader.read(sizes[i % len(sizes)]):
        assert len(chunk) <= sizes[i % len(sizes)]
        out += chunk
        i += 1
    assert bytes(out) == data
    assert reader.read(10) == b""
    reader.close()


def test_read_all() -> None:
    reader = Prefetcher(io.BytesIO(b"abc" * 1000), "t", chunk=10)
    assert reader.read() == b"abc" * 1000
    reader.close()


def test_an_error_below_is_raised_where_the_stream_failed() -> None:
    data = b"x" * 50_000
    wrong = sha256_of(b"something else")
    reader = Prefetcher(VerifyingReader(io.BytesIO(data), wrong), "t", chunk=8192)
    got = bytearray()
    with pytest.raises(DigestMismatch):
        while chunk := reader.read(8192):
            got += chunk
    # everything before the failure was delivered, then the error, then nothing
    assert bytes(got) == data
    with pytest.raises(DigestMismatch):
        reader.read(1)
    reader.close()


class _Endless:
    def __init__(self) -> None:
        self.reads = 0

    def read(self, size: int = -1, /) -> bytes:
        self.reads += 1
        return b"y" * size


def test_close_stops_the_thread_even_when_nobody_reads() -> None:
    source = _Endless()
    reader = Prefetcher(source, "endless", chunk=1024, depth=3)
    assert reader.read(5) == b"yyyyy"
    reader.close()
    assert not any(t.name == "endless" for t in threading.enumerate())
    reads = source.reads
    assert reads <= 3 + 2  # read ahead by at most the queue depth (+ the one in hand)
