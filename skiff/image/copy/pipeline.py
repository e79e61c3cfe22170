"""Running the stages of a blob's reader chain on separate threads.

A recompressed layer passes four CPU-heavy stages: hashing what the
source sends (verification), decompressing, compressing, hashing what the
destination receives. Chained as pull readers they all run on the thread
that calls ``put_blob``, one after another, so a gzip → zstd conversion
uses one core while the other waits. ``Prefetcher`` moves the stages
below it onto a thread of their own, a few chunks ahead of the reader: the
hash functions, isal and zstandard release the GIL on large buffers, so
the stages really overlap (measured in bench/copy: see BENCHMARKS.md).

Errors raised below a prefetcher (a digest mismatch at the end of the
source, a corrupt gzip stream, a cancelled copy) reach the reader at the
point of the stream where they happened, as they would without the
thread. ``close`` stops the thread and waits for it, so the caller may
close the underlying stream afterwards.
"""

from __future__ import annotations

import queue
import threading

from skiff.image.types import Reader

CHUNK = 1 << 20
DEPTH = 4
"""Chunks read ahead: enough to absorb jitter, little memory (4 MiB per stage)."""


class _End:
    """Queue marker: the stream ended (``error`` None) or failed."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Prefetcher:
    """A reader whose data is read from ``stream`` by a background thread."""

    def __init__(self, stream: Reader, name: str, chunk: int = CHUNK, depth: int = DEPTH) -> None:
        self._stream = stream
        self._chunk = chunk
        self._queue: queue.Queue[bytes | _End] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._current = b""
        self._offset = 0
        self._end: _End | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._stream.read(self._chunk)
                if not data:
                    self._put(_End(None))
                    return
                self._put(data)
        except BaseException as exc:  # handed to the reader, raised there
            self._put(_End(exc))

    def _put(self, item: bytes | _End) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(self._chunk), b""))
        if size == 0:
            return b""
        while self._offset >= len(self._current):
            if self._end is not None:
                if self._end.error is not None:
                    raise self._end.error
                return b""
            item = self._queue.get()
            if isinstance(item, _End):
                self._end = item
                continue
            self._current, self._offset = item, 0
        if self._offset == 0 and size >= len(self._current):
            data = self._current
        else:
            data = self._current[self._offset : self._offset + size]
        self._offset += len(data)
        return data

    def close(self) -> None:
        """Stop reading ahead and wait for the thread (it finishes its current read)."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()
