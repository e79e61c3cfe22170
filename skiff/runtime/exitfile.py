"""Exit code files written by conmon, and waiting for them.

When a container's main process ends, its conmon writes the exit code as
decimal text to ``EXIT_DIR/<container id>`` (128+N when signal N killed
it) before it runs the exit command. conmon writes the file atomically
(glib's ``g_file_set_contents``: a temporary ``ID.XXXXXX`` beside it,
renamed into place), so a file that exists is complete; its mtime is when
the container finished. For an exec session conmon names the file after
the *container* id too, which is why every exec session gets an exit
directory of its own.

Waiting uses inotify on the exit directory (no polling loop, no fixed
sleeps) and, when the caller knows conmon's pid, a pidfd: if conmon dies
without writing the file (killed, OOM) the wait ends at once with an error
instead of running into its timeout. Where inotify is unavailable the wait
falls back to polling with a short exponential backoff.

The inotify wrapper (``DirectoryWatch``) lives here because exit files
are its main user; ``skiff.runtime.logs`` reuses it to follow log files.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from skiff.errors import ContainerError
from skiff.libc import open_libc

# inotify(7) event bits
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT_HEADER = struct.Struct("iIII")

_MAX_BACKOFF = 0.1
"""Longest sleep of the polling fallback: an exit is noticed within 0.1 s."""


# --- inotify -------------------------------------------------------------------------


class _Libc:
    """The three inotify calls, loaded once on first use."""

    _lib: ctypes.CDLL | None = None

    @classmethod
    def get(cls) -> ctypes.CDLL:
        if cls._lib is None:
            lib = open_libc()
            lib.inotify_init1.argtypes = [ctypes.c_int]
            lib.inotify_init1.restype = ctypes.c_int
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            lib.inotify_add_watch.restype = ctypes.c_int
            cls._lib = lib
            return lib
        return cls._lib


class DirectoryWatch:
    """An inotify watch on one directory: which names changed, and a poll fd.

    Raises OSError when inotify cannot be used (no such directory, no more
    watches, a kernel without inotify); callers fall back to polling.
    """

    def __init__(
        self, directory: Path | str, mask: int = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE
    ) -> None:
        lib = _Libc.get()
        fd = int(lib.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self._fd = fd
        wd = int(lib.inotify_add_watch(fd, os.fsencode(os.fspath(directory)), mask | IN_ONLYDIR))
        if wd < 0:
            err = ctypes.get_errno()
            os.close(fd)
            self._fd = -1
            raise OSError(err, os.strerror(err), os.fspath(directory))
        self.overflowed = False
        self.gone = False
        """The directory itself was deleted or moved: no more events will come."""

    def fileno(self) -> int:
        return self._fd

    def read(self) -> list[tuple[int, str]]:
        """Pending events as (mask, name); [] when there are none."""
        events: list[tuple[int, str]] = []
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return events
            except InterruptedError:
                continue
            offset = 0
            while offset + _EVENT_HEADER.size <= len(data):
                _wd, mask, _cookie, length = _EVENT_HEADER.unpack_from(data, offset)
                offset += _EVENT_HEADER.size
                raw = data[offset : offset + length].split(b"\0", 1)[0]
                offset += length
                if mask & IN_Q_OVERFLOW:
                    self.overflowed = True
                if mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    self.gone = True
                events.append((mask, os.fsdecode(raw)))

    def wait(self, timeout: float | None) -> bool:
        """Block until an event is pending or ``timeout`` seconds pass."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        ms = None if timeout is None else max(0, int(timeout * 1000))
        return bool(poller.poll(ms))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> DirectoryWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- exit files ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExitRecord:
    """A container's (or exec session's) recorded end."""

    code: int
    finished_at: datetime
    """The exit file's mtime (UTC): when conmon saw the process end."""


def exit_file_path(exit_dir: Path, container_id: str) -> Path:
    if not container_id or "/" in container_id or container_id in (".", ".."):
        raise ContainerError(f"invalid container id {container_id!r} for an exit file")
    return exit_dir / container_id


def read_exit_record(exit_dir: Path, container_id: str) -> ExitRecord | None:
    """The exit code and time, or None while the file does not exist."""
    path = exit_file_path(exit_dir, container_id)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ContainerError(
            f"cannot read the exit file {path} of container {container_id}: {exc.strerror}"
        ) from exc
    try:
        st = os.fstat(fd)
        raw = os.read(fd, 64)
    finally:
        os.close(fd)
    text = raw.decode("ascii", errors="replace").strip()
    try:
        code = int(text)
    except ValueError:
        raise ContainerError(
            f"the exit file {path} of container {container_id} holds {text!r}, not an exit code",
            "remove the file; the container's exit code is lost",
        ) from None
    return ExitRecord(code, datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC))


def read_exit_code(exit_dir: Path, container_id: str) -> int | None:
    """The container's exit code, or None while it has not exited."""
    record = read_exit_record(exit_dir, container_id)
    return None if record is None else record.code


def remove_exit_file(exit_dir: Path, container_id: str) -> None:
    """Forget a recorded exit (before a restart, or once it is in the database)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(exit_file_path(exit_dir, container_id))


def _pidfd(pid: int | None) -> int | None:
    """A pidfd for ``pid`` (-1 when the process is already gone, None if not asked)."""
    if pid is None:
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return -1
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):
            return None
        raise


def _monitor_died(exit_dir: Path, container_id: str, pid: int) -> ContainerError:
    return ContainerError(
        f"conmon (pid {pid}) of container {container_id} exited without writing "
        f"{exit_file_path(exit_dir, container_id)}",
        "the exit code is lost; the container was probably killed along with its monitor",
    )


def wait_exit_record(
    exit_dir: Path,
    container_id: str,
    timeout: float | None = None,
    *,
    conmon_pid: int | None = None,
) -> ExitRecord | None:
    """Wait for the exit file; None if ``timeout`` seconds pass first.

    With ``conmon_pid``, a monitor that ends without writing the file raises
    ContainerError right away.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        watch: DirectoryWatch | None = DirectoryWatch(exit_dir)
    except OSError:
        watch = None
    pidfd = _pidfd(conmon_pid)
    try:
        while True:
            record = read_exit_record(exit_dir, container_id)
            if record is not None:
                return record
            if pidfd == -1 and conmon_pid is not None:
                # conmon writes the file before it exits: look once more
                record = read_exit_record(exit_dir, container_id)
                if record is not None:
                    return record
                raise _monitor_died(exit_dir, container_id, conmon_pid)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            if watch is None or watch.gone or watch.overflowed:
                # polling fallback (no inotify, or the watch became useless)
                _poll_until_change(exit_dir, container_id, remaining, pidfd)
                if watch is not None:
                    watch.overflowed = False
            else:
                poller = select.poll()
                poller.register(watch.fileno(), select.POLLIN)
                if pidfd is not None and pidfd >= 0:
                    poller.register(pidfd, select.POLLIN)
                ms = None if remaining is None else max(1, int(remaining * 1000))
                ready = poller.poll(ms)
                watch.read()
                if pidfd is not None and pidfd >= 0 and any(fd == pidfd for fd, _ in ready):
                    os.close(pidfd)
                    pidfd = -1
            if pidfd is not None and pidfd >= 0 and _pidfd_exited(pidfd):
                os.close(pidfd)
                pidfd = -1
    finally:
        if watch is not None:
            watch.close()
        if pidfd is not None and pidfd >= 0:
            os.close(pidfd)


def _pidfd_exited(pidfd: int) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def _poll_until_change(
    exit_dir: Path, container_id: str, remaining: float | None, pidfd: int | None
) -> None:
    """Sleep with backoff until the file exists, conmon exits, or time is up."""
    delay = 0.001
    end = None if remaining is None else time.monotonic() + remaining
    path = exit_file_path(exit_dir, container_id)
    while not path.exists():
        if pidfd is not None and pidfd >= 0 and _pidfd_exited(pidfd):
            return
        now = time.monotonic()
        if end is not None and now >= end:
            return
        step = delay if end is None else min(delay, end - now)
        time.sleep(step)
        delay = min(delay * 2, _MAX_BACKOFF)


def wait_exit(
    exit_dir: Path,
    container_id: str,
    timeout: float | None = None,
    *,
    conmon_pid: int | None = None,
) -> int | None:
    """Wait for the container's exit code; None if ``timeout`` passes first."""
    record = wait_exit_record(exit_dir, container_id, timeout, conmon_pid=conmon_pid)
    return None if record is None else record.code
