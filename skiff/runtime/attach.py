"""Attaching to a container (or exec session) through conmon's attach socket.

The socket (``attach``, SOCK_SEQPACKET, reached through conmon's
``SOCKDIR/<id>`` symlink to the bundle) carries, from conmon to us, one
packet per read conmon made from the container: a stream byte (2 stdout,
3 stderr; with a terminal everything is stdout) followed by up to 8192
bytes of data. From us to conmon, packets are raw stdin bytes with no
prefix; shutting down our write side closes the container's stdin (when
conmon runs with ``-i`` and without ``--leave-stdin-open``). The end of the
stream (EOF on the socket) means the container's output ended: it exited.

Resize messages go to the ``ctl`` fifo beside the socket: ``1 HEIGHT
WIDTH\\n`` (conmon accepts 0-1000 for each).

Detach keys (default ctrl-p,ctrl-q, podman's ``--detach-keys`` syntax) are
looked for in the stdin byte stream, across reads, as Docker does (podman
only sees them when each key is a read of its own, i.e. typed); bytes that
only began the sequence are sent on once it breaks. Detaching closes our
connection and leaves the container running. With a terminal, stdin goes
through the pty (conmon gets no ``-i``), so detaching does not close it.

The relay is one thread around ``poll``: the socket is non-blocking and
stdin is read only while nothing waits to be sent, because conmon writes
output to us with blocking writes — a blocking ``send`` here while conmon
blocks writing to us would deadlock both. A stdin that is not a file
descriptor (a BytesIO, say) is pumped into a pipe by a helper thread.

When ``tty`` is set and our stdin is a terminal, it is put in raw mode for
the duration (restored on every exit path) and SIGWINCH becomes a resize
message (only from the main thread, where Python lets us set handlers).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import termios
import threading
import tty as ttymod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, BinaryIO

from skiff.errors import ContainerError, ContainerStateError, UsageError
from skiff.runtime.conmon import attach_dir

STREAM_STDIN = 1
STREAM_STDOUT = 2
STREAM_STDERR = 3
SEND_CHUNK = 4096
"""Largest stdin packet we send: far below what conmon reads in one go."""
RECV_SIZE = 65536
RESIZE_EVENT = 1
REOPEN_LOGS_EVENT = 2
MAX_TERMINAL_SIZE = 1000
DEFAULT_DETACH_KEYS = b"\x10\x11"
"""ctrl-p, ctrl-q."""


# --- detach keys -----------------------------------------------------------------------

_CTRL_SPECIALS = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(text: str) -> bytes:
    """podman's ``--detach-keys`` syntax: comma-separated keys, each a single
    character or ``ctrl-X`` (X in a-z, @, [, \\, ], ^, _). "" disables."""
    if text == "":
        return b""
    out = bytearray()
    for part in text.split(","):
        key = part.strip()
        if len(key) == 1 and key.isascii():
            out.append(ord(key))
            continue
        lowered = key.lower()
        if lowered.startswith("ctrl-") and len(key) == 6:
            ch = lowered[5]
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
                continue
            if ch in _CTRL_SPECIALS:
                out.append(_CTRL_SPECIALS[ch])
                continue
        raise UsageError(
            f"invalid detach key {key!r} in {text!r}",
            "use comma-separated keys like ctrl-p,ctrl-q (a letter, or ctrl- and a-z @ [ \\ ] ^ _)",
        )
    return bytes(out)


class DetachScanner:
    """Finds the detach sequence in a byte stream fed in arbitrary pieces."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = 0
        """How many bytes of ``keys`` the stream ended with (not yet passed on)."""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, detach seen). After a detach the rest is dropped."""
        if not self.keys:
            return data, False
        out = bytearray()
        for byte in data:
            if byte == self.keys[self._held]:
                self._held += 1
                if self._held == len(self.keys):
                    self._held = 0
                    return bytes(out), True
                continue
            if self._held:
                out += self.keys[: self._held]
                self._held = 0
                if byte == self.keys[0]:
                    self._held = 1
                    if len(self.keys) == 1:
                        self._held = 0
                        return bytes(out), True
                    continue
            out.append(byte)
        return bytes(out), False

    def flush(self) -> bytes:
        """Held bytes, at end of input (an unfinished sequence is plain input)."""
        held = self.keys[: self._held]
        self._held = 0
        return held


# --- results and helpers ---------------------------------------------------------------


@dataclass(frozen=True)
class AttachResult:
    detached: bool
    """True: the detach keys ended the session (the container keeps running);
    False: the container's output ended (it exited, or closed its stdio)."""


def send_resize(directory: Path, height: int, width: int) -> None:
    """Tell conmon the terminal is ``height`` rows by ``width`` columns."""
    if not (0 <= height <= MAX_TERMINAL_SIZE and 0 <= width <= MAX_TERMINAL_SIZE):
        raise UsageError(
            f"terminal size {height}x{width} out of range", "rows and columns must be 0-1000"
        )
    _write_ctl(directory, f"{RESIZE_EVENT} {height} {width}\n")


def reopen_logs(directory: Path) -> None:
    """Ask conmon to reopen its log file (after the caller rotated it)."""
    _write_ctl(directory, f"{REOPEN_LOGS_EVENT} 0 0\n")


def _write_ctl(directory: Path, message: str) -> None:
    path = directory / "ctl"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ContainerStateError(
            f"cannot open the control fifo {path}: {exc.strerror}",
            "the container's monitor is not running",
        ) from exc
    try:
        os.write(fd, message.encode())
    except OSError as exc:
        raise ContainerError(f"cannot write to the control fifo {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def connect_attach_socket(directory: Path) -> socket.socket:
    """A connection to ``directory/attach``, made through an O_PATH fd of the
    directory so that its length never matters."""
    try:
        dir_fd = os.open(directory, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ContainerStateError(
            f"no attach socket for {directory.name}: {directory} does not exist",
            "the container is not running under a monitor",
        ) from None
    except OSError as exc:
        raise ContainerError(f"cannot open {directory}: {exc.strerror}") from exc
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/attach")
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise ContainerStateError(
            f"cannot attach to {directory.name}: its monitor is not listening ({exc.strerror})",
            "the container is not running",
        ) from exc
    except OSError as exc:
        sock.close()
        raise ContainerError(
            f"cannot connect to the attach socket in {directory}: {exc.strerror}"
        ) from exc
    finally:
        os.close(dir_fd)
    return sock


def _fileno(stream: Any) -> int | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


class _StdinSource:
    """A readable fd for ``stdin``: its own, or a pipe a thread fills from it."""

    def __init__(self, stdin: BinaryIO | IO[bytes]) -> None:
        self._thread: threading.Thread | None = None
        self._pipe_w = -1
        fd = _fileno(stdin)
        if fd is not None:
            self.fd = fd
            self._own = False
            return
        r, w = os.pipe2(os.O_CLOEXEC)
        self.fd, self._pipe_w, self._own = r, w, True
        self._thread = threading.Thread(target=self._pump, args=(stdin, w), daemon=True)
        self._thread.start()

    @staticmethod
    def _pump(stdin: BinaryIO | IO[bytes], w: int) -> None:
        try:
            while True:
                chunk = stdin.read(SEND_CHUNK)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(w, view) :]
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                os.close(w)

    def close(self) -> None:
        if self._own:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self._own = False


class _RawTerminal:
    """Raw mode for a terminal fd, restored on exit."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd
        self._saved: list[Any] | None = None

    def __enter__(self) -> _RawTerminal:
        if self._fd is not None:
            self._saved = termios.tcgetattr(self._fd)
            ttymod.setraw(self._fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None and self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)


class _WinchPipe:
    """SIGWINCH → a byte on a pipe the relay polls (main thread only)."""

    def __init__(self, enabled: bool) -> None:
        self.fd = -1
        self._w = -1
        self._previous: Any = None
        if not enabled or threading.current_thread() is not threading.main_thread():
            return
        self.fd, self._w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._previous = signal.signal(signal.SIGWINCH, self._handler)

    def _handler(self, _signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(OSError):
            os.write(self._w, b"\0")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self.fd, 64):
                pass

    def close(self) -> None:
        if self.fd >= 0:
            signal.signal(signal.SIGWINCH, self._previous)
            os.close(self.fd)
            os.close(self._w)
            self.fd = self._w = -1


def terminal_size(*fds: int | None) -> tuple[int, int] | None:
    """(rows, columns) of the first of ``fds`` that is a terminal; None if none is."""
    for fd in fds:
        if fd is None:
            continue
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        return size.lines, size.columns
    return None


def _write_out(stream: IO[bytes] | BinaryIO | None, data: bytes) -> None:
    if stream is None or not data:
        return
    try:
        stream.write(data)
        stream.flush()
    except BrokenPipeError:
        pass


# --- the relay -------------------------------------------------------------------------


def attach(
    socket_dir: Path,
    container_id: str,
    *,
    stdin: BinaryIO | IO[bytes] | None = None,
    stdout: BinaryIO | IO[bytes] | None = None,
    stderr: BinaryIO | IO[bytes] | None = None,
    tty: bool = False,
    detach_keys: bytes = DEFAULT_DETACH_KEYS,
    resize: tuple[int, int] | None = None,
    start: Callable[[], object] | None = None,
) -> AttachResult:
    """Relay the streams of container (or exec session) ``container_id``.

    ``stdin`` None: nothing is sent (the container's stdin stays as it is).
    ``resize`` (rows, columns) is sent first when ``tty``; without it the
    size of our terminal is used, if stdin or stdout is one. ``start`` runs
    once the socket is connected — ``OCIRuntime.start`` or
    ``ExecMonitor.start`` — so that no early output is missed. Returns when
    the output ends or the detach keys are read.
    """
    directory = attach_dir(socket_dir, container_id)
    sock = connect_attach_socket(directory)
    source: _StdinSource | None = None
    winch: _WinchPipe | None = None
    try:
        in_fd = _fileno(stdin) if stdin is not None else None
        out_fd = _fileno(stdout) if stdout is not None else None
        term_fd = in_fd if tty and in_fd is not None and os.isatty(in_fd) else None
        if tty:
            size = resize or terminal_size(term_fd, out_fd)
            if size is not None:
                send_resize(directory, *size)
        winch = _WinchPipe(
            tty and resize is None and (term_fd is not None or bool(out_fd and os.isatty(out_fd)))
        )
        with _RawTerminal(term_fd):
            if start is not None:
                start()
            if stdin is not None:
                source = _StdinSource(stdin)
            return _Relay(
                sock,
                source,
                stdout,
                stderr,
                DetachScanner(detach_keys),
                winch,
                lambda: _resize_from(directory, term_fd, out_fd),
            ).run()
    finally:
        if winch is not None:
            winch.close()
        if source is not None:
            source.close()
        sock.close()


def _resize_from(directory: Path, *fds: int | None) -> None:
    size = terminal_size(*fds)
    if size is not None:
        with contextlib.suppress(ContainerError, UsageError):
            send_resize(directory, *size)


@dataclass
class _Relay:
    """The poll loop of one attach session (see the module docstring)."""

    sock: socket.socket
    source: _StdinSource | None
    stdout: IO[bytes] | BinaryIO | None
    stderr: IO[bytes] | BinaryIO | None
    scanner: DetachScanner
    winch: _WinchPipe
    on_resize: Callable[[], None]

    def run(self) -> AttachResult:
        sock, source = self.sock, self.source
        sock.setblocking(False)
        pending = bytearray()
        stdin_open = source is not None
        write_shut = False
        detached = False
        while True:
            if detached and not pending:
                return AttachResult(detached=True)
            if not stdin_open and not pending and not write_shut and source is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                write_shut = True
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN | (select.POLLOUT if pending else 0))
            if stdin_open and not pending and source is not None and not detached:
                poller.register(source.fd, select.POLLIN)
            if self.winch.fd >= 0:
                poller.register(self.winch.fd, select.POLLIN)
            try:
                ready = poller.poll()
            except InterruptedError:
                continue
            for fd, events in ready:
                if fd == self.winch.fd:
                    self.winch.drain()
                    self.on_resize()
                elif fd == sock.fileno():
                    if events & select.POLLOUT and pending:
                        _send_pending(sock, pending)
                    if events & (select.POLLIN | select.POLLHUP | select.POLLERR) and not _receive(
                        sock, self.stdout, self.stderr
                    ):
                        return AttachResult(detached=detached)
                elif source is not None and fd == source.fd:
                    data = _read_stdin(source.fd)
                    if data is None:
                        continue
                    if not data:
                        pending += self.scanner.flush()
                        stdin_open = False
                        continue
                    passed, detached = self.scanner.feed(data)
                    pending += passed
                    if pending:
                        _send_pending(sock, pending)


def _read_stdin(fd: int) -> bytes | None:
    """Up to one chunk; b"" at end of input, None if nothing after all."""
    try:
        return os.read(fd, SEND_CHUNK)
    except BlockingIOError:
        return None
    except InterruptedError:
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:  # a terminal that went away
            return b""
        raise ContainerError(f"cannot read stdin: {exc.strerror}") from exc


def _send_pending(sock: socket.socket, pending: bytearray) -> None:
    while pending:
        chunk = bytes(pending[:SEND_CHUNK])
        try:
            sent = sock.send(chunk)
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            pending.clear()  # conmon closed our side: the container is gone
            return
        del pending[:sent]


def _receive(
    sock: socket.socket, stdout: IO[bytes] | BinaryIO | None, stderr: IO[bytes] | BinaryIO | None
) -> bool:
    """Handle every packet waiting; False at end of stream."""
    while True:
        try:
            packet = sock.recv(RECV_SIZE)
        except BlockingIOError:
            return True
        except InterruptedError:
            continue
        except ConnectionResetError:
            return False
        if not packet:
            return False
        stream, data = packet[0], packet[1:]
        if stream == STREAM_STDERR:
            _write_out(stderr, data)
        elif stream in (STREAM_STDOUT, STREAM_STDIN):
            _write_out(stdout, data)
