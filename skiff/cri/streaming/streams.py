"""The I/O a streaming session hands to the runtime, whatever the transport.

An exec or attach session is served over SPDY or WebSocket; the runtime
side (``runtimehooks``, or a test's fake-free stand-in) sees only a
``SessionIO``:

- ``stdin``: an ``InboundBuffer`` — ``read(n)`` blocks for data and returns
  b"" once the client closed stdin (SPDY FIN on the stdin stream, the v5
  WebSocket CLOSE signal) or went away (``aborted`` tells which);
- ``stdout``/``stderr``: ``OutputStream``s — ``write`` sends at once
  (blocking while the client is slow, which is the back pressure a
  container's output should feel); once the client is gone, writes are
  dropped silently and the session is cancelled, so a runtime relay never
  dies half-way on a client's disconnect;
- ``resize``: ``ResizeEvents`` carrying the terminal sizes the client sent;
- ``cancellation``: fired when the client went away before the session
  ended; the runtime side registers what to do then (kill an exec
  process, end an attach relay).

The transports feed these from their reader threads; ordering between a
resize and later stdin is kept because both are handled by the one thread
that reads the connection.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_BUFFER_LIMIT = 4 << 20
"""Inbound bytes held for a slow consumer before the connection's reader
waits (TCP back pressure on the client)."""


class ByteSource(Protocol):
    """A blocking reader of the upgraded connection (the HTTP handler's rfile):
    ``read(n)`` returns n bytes, or fewer only at the end."""

    def read(self, size: int, /) -> bytes: ...


def read_exact(source: ByteSource, n: int) -> bytes:
    """``n`` bytes of ``source``, fewer only when the connection ended first
    (the frame readers of both transports take this as their input)."""
    chunks = []
    remaining = n
    while remaining:
        chunk = source.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# --- inbound ----------------------------------------------------------------------------


class InboundBuffer:
    """Bytes from the client for one stream, read by the runtime side."""

    def __init__(
        self,
        limit: int = DEFAULT_BUFFER_LIMIT,
        on_consumed: Callable[[int], None] | None = None,
    ) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._limit = limit
        self._ended = False
        self._aborted = False
        self._cond = threading.Condition()
        self._on_consumed = on_consumed

    @property
    def ended(self) -> bool:
        """The client closed the stream (all data was fed)."""
        return self._ended

    @property
    def aborted(self) -> bool:
        """The stream ended without the client closing it (reset, connection lost)."""
        return self._aborted

    @property
    def buffered(self) -> int:
        return self._size

    def feed(self, data: bytes) -> None:
        """Add data (the transport's reader thread); waits while over the limit."""
        if not data:
            return
        with self._cond:
            while self._size >= self._limit and not (self._ended or self._aborted):
                self._cond.wait()
            if self._ended or self._aborted:
                return
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify_all()

    def end(self) -> None:
        """No more data: readers get what is buffered, then b""."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def abort(self) -> None:
        """The stream is gone: readers get b"" at once, buffered data is dropped."""
        with self._cond:
            if not self._ended:
                self._aborted = True
            self._chunks.clear()
            self._size = 0
            self._cond.notify_all()

    def read(self, n: int = 65536, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes; b"" at the end. Raises TimeoutError when
        ``timeout`` passes with nothing to return."""
        if n <= 0:
            return b""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._chunks or self._ended or self._aborted, timeout
            ):
                raise TimeoutError("no data within the timeout")
            if not self._chunks:
                return b""
            out = bytearray()
            while self._chunks and len(out) < n:
                chunk = self._chunks.popleft()
                room = n - len(out)
                if len(chunk) > room:
                    self._chunks.appendleft(chunk[room:])
                    chunk = chunk[:room]
                out += chunk
            self._size -= len(out)
            self._cond.notify_all()
        if self._on_consumed is not None:
            self._on_consumed(len(out))
        return bytes(out)


# --- outbound ---------------------------------------------------------------------------


class OutputStream:
    """A writable end towards the client (see the module docstring)."""

    def __init__(self, send: Callable[[bytes], None], on_failure: Callable[[], None]) -> None:
        self._send = send
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self.failed = False

    def write(self, data: bytes) -> int:
        if not data:
            return 0
        with self._lock:
            if self.failed:
                return len(data)
            try:
                self._send(bytes(data))
            except (OSError, ValueError) as exc:
                self._fail(exc)
            except Exception as exc:  # the transport's own errors (StreamClosed)
                from skiff.errors import SkiffError

                if not isinstance(exc, SkiffError):
                    raise
                self._fail(exc)
        return len(data)

    def _fail(self, exc: BaseException) -> None:
        log.debug("client stream failed: %s", exc)
        self.failed = True
        self._on_failure()

    def flush(self) -> None:
        """Writes are sent at once; nothing is held back."""


# --- terminal sizes -----------------------------------------------------------------------


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


class ResizeDecoder:
    """Terminal sizes from the resize stream: JSON objects ``{"Width": W,
    "Height": H}`` one after another (Go's json.Encoder adds a newline; a
    decoder must not rely on it), possibly split across frames."""

    MAX_PENDING = 4096

    def __init__(self) -> None:
        self._pending = ""
        self._raw = b""
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[TerminalSize]:
        from skiff.cri.streaming.errors import ProtocolViolation

        self._raw += data
        try:
            text = self._raw.decode("utf-8")
            self._raw = b""
        except UnicodeDecodeError as exc:
            if exc.start >= len(self._raw) - 3 and exc.reason == "unexpected end of data":
                text = self._raw[: exc.start].decode("utf-8")
                self._raw = self._raw[exc.start :]
            else:
                raise ProtocolViolation("resize stream is not UTF-8 JSON") from None
        self._pending += text
        sizes = []
        while True:
            stripped = self._pending.lstrip()
            if not stripped:
                self._pending = ""
                break
            try:
                value, end = self._decoder.raw_decode(stripped)
            except json.JSONDecodeError:
                if len(stripped) > self.MAX_PENDING:
                    raise ProtocolViolation("resize message is not JSON") from None
                self._pending = stripped
                break
            self._pending = stripped[end:]
            sizes.append(_terminal_size(value))
        return sizes


def _terminal_size(value: object) -> TerminalSize:
    from skiff.cri.streaming.errors import ProtocolViolation

    if not isinstance(value, dict):
        raise ProtocolViolation(f"resize message {value!r} is not a JSON object")
    width, height = value.get("Width", 0), value.get("Height", 0)
    if not isinstance(width, int) or not isinstance(height, int) or isinstance(width, bool):
        raise ProtocolViolation(f"resize message {value!r} needs integer Width and Height")
    if not (0 <= width <= 0xFFFF and 0 <= height <= 0xFFFF):
        raise ProtocolViolation(f"resize message {value!r} is out of range")
    return TerminalSize(width, height)


class ResizeEvents:
    """Terminal sizes from the client, to whoever serves the session.

    The runtime side ``subscribe``s once it can apply a size (the exec's
    monitor is up); it gets the latest size already received at once, then
    every later one, in the transport's reader thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._latest: TerminalSize | None = None
        self._subscribers: list[Callable[[TerminalSize], None]] = []

    @property
    def latest(self) -> TerminalSize | None:
        return self._latest

    def push(self, size: TerminalSize) -> None:
        with self._lock:
            self._latest = size
            subscribers = list(self._subscribers)
            self._lock.notify_all()
        for fn in subscribers:
            _call_quietly(fn, size)

    def subscribe(self, fn: Callable[[TerminalSize], None]) -> None:
        with self._lock:
            self._subscribers.append(fn)
            latest = self._latest
        if latest is not None:
            _call_quietly(fn, latest)

    def unsubscribe(self, fn: Callable[[TerminalSize], None]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._subscribers.remove(fn)

    def wait_first(self, timeout: float) -> bool:
        """Wait (up to ``timeout``) until a size arrived; whether one did."""
        with self._lock:
            return self._lock.wait_for(lambda: self._latest is not None, timeout)


def _call_quietly(fn: Callable[[TerminalSize], None], size: TerminalSize) -> None:
    from skiff.errors import SkiffError

    try:
        fn(size)
    except (SkiffError, OSError) as exc:
        log.info("cannot apply terminal size %sx%s: %s", size.width, size.height, exc)


# --- cancellation -------------------------------------------------------------------------


class Cancellation:
    """Fired once when the client goes away before the session ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._finished = False

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def add_callback(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on cancellation (at once if it already happened)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(fn)
                return
            if self._finished:
                return
        fn()

    def cancel(self) -> None:
        with self._lock:
            if self._event.is_set() or self._finished:
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn()
            except Exception:
                log.exception("a cancellation callback failed")

    def finish(self) -> None:
        """The session ended: later cancellations do nothing."""
        with self._lock:
            self._finished = True
            self._callbacks = []


# --- the bundle -----------------------------------------------------------------------------


@dataclass
class SessionIO:
    """What an exec or attach handler gets (see the module docstring)."""

    stdin: InboundBuffer | None
    stdout: OutputStream | None
    stderr: OutputStream | None
    tty: bool
    resize: ResizeEvents = field(default_factory=ResizeEvents)
    cancellation: Cancellation = field(default_factory=Cancellation)
