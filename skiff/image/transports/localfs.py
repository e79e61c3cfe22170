"""Filesystem rules shared by the local transports (oci:, oci-archive:, docker-archive:, dir:).

All four take paths from users and write content that must never be seen
half-written, so they share three things here:

- path references: the path is kept as typed (relative to the cwd when the
  operation runs) for I/O, and resolved once (absolute, symlinks of existing
  components followed) for policy.json identities and namespaces, as
  containers/image's explicitfilepath does;
- atomic writes: a temporary name in the target's directory, fsync, rename,
  fsync of the directory;
- OSError translation: a message naming the path and the action, with a hint.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skiff.errors import ConfigError, ImageError, InvalidReference
from skiff.image.types import Reader

COPY_CHUNK = 1 << 20


def resolve_path(path: str) -> str:
    """The absolute form of ``path`` with symlinks of its existing part followed."""
    return os.path.realpath(path)


def path_namespaces(resolved: str) -> list[str]:
    """Parent directories of ``resolved``, nearest first, without "/" itself.

    "/" is left out because it would shadow the global default scope "".
    """
    out: list[str] = []
    current = resolved
    while True:
        cut = current.rfind("/")
        if cut <= 0:
            return out
        current = current[:cut]
        out.append(current)


def validate_path_scope(scope: str, transport: str) -> None:
    """Policy scopes of path transports are absolute, canonical, and not "/"."""
    if not scope.startswith("/"):
        raise ConfigError(
            f"invalid {transport}: policy scope {scope!r}: must be an absolute path",
        )
    if scope == "/":
        raise ConfigError(
            f'invalid {transport}: policy scope "/"',
            'use the default scope "" to match every path',
        )
    cleaned = os.path.normpath(scope)
    if cleaned != scope:
        raise ConfigError(
            f"invalid {transport}: policy scope {scope!r}: not in canonical form",
            f"use {cleaned!r}",
        )


def require_path(path: str, transport: str) -> None:
    if not path:
        raise InvalidReference(
            f"invalid {transport}: reference: the path is empty",
            f"write {transport}:PATH, e.g. {transport}:./image",
        )


def os_error(exc: OSError, doing: str) -> ImageError:
    """An ImageError for a failed filesystem call; ``doing`` names action and path."""
    reason = exc.strerror or str(exc)
    hint: str | None = None
    if exc.errno in (errno.EACCES, errno.EPERM):
        hint = "check the permissions of the path and its parent directories"
    elif exc.errno == errno.ENOSPC:
        hint = "free space on that filesystem, or use another location"
    elif exc.errno == errno.EROFS:
        hint = "the filesystem is mounted read-only; choose another location"
    elif exc.errno == errno.ENOTDIR:
        hint = "a component of the path is a file, not a directory"
    elif exc.errno == errno.EISDIR:
        hint = "the path is a directory; give a file name"
    return ImageError(f"{doing}: {reason}", hint)


def fsync_dir(path: Path) -> None:
    """Make a rename or create in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_file(directory: Path, prefix: str) -> tuple[int, Path]:
    """A new file in ``directory`` (so that it renames onto a sibling)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    return fd, Path(name)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data``: readers see the old or the new file, never a mix."""
    try:
        fd, tmp = temp_file(path.parent, f".{path.name}.")
    except OSError as exc:
        raise os_error(exc, f"cannot create a file in {path.parent}") from exc
    try:
        try:
            write_all(fd, data)
            os.fchmod(fd, 0o644)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise os_error(exc, f"cannot write {path}") from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def remove_quietly(path: Path) -> None:
    """Remove a file this process created, when cleaning up after a failure.

    A failure here must not mask the error being reported, so only "already
    gone" is expected; other errors propagate only when nothing else failed.
    """
    _unlink_quietly(path)


WRITEBACK_STEP = 8 << 20
"""Bytes between two writeback kicks of ``copy_stream_to_fd(..., writeback=True)``."""


def copy_stream_to_fd(stream: Reader, fd: int, *, writeback: bool = False) -> int:
    """Copy ``stream`` to ``fd`` until EOF; return the byte count.

    ``writeback``: the caller will fsync the file, so start writing it to
    disk every WRITEBACK_STEP bytes (``POSIX_FADV_DONTNEED`` on the written
    range starts asynchronous writeback of its dirty pages) instead of
    leaving all of it to the final fsync, which then has little left to
    wait for: disk writes overlap with reading, hashing and decompressing.
    A no-op on tmpfs.
    """
    total = 0
    kicked = 0
    while True:
        chunk = stream.read(COPY_CHUNK)
        if not chunk:
            return total
        write_all(fd, chunk)
        total += len(chunk)
        if writeback and total - kicked >= WRITEBACK_STEP:
            try:
                os.posix_fadvise(fd, kicked, total - kicked, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass  # only a hint: the fsync still makes the data durable
            kicked = total


@contextmanager
def locked_dir(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on a directory (writers of one layout serialise)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise os_error(exc, f"cannot open {path}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


class ArchiveOutput:
    """The file an archive transport writes, made visible only by ``commit``.

    The archive is written to a temporary file beside ``target`` and renamed
    onto it, so readers never see half an archive and a failed copy leaves
    the previous file alone. When ``target`` is a pipe or a character device
    (``docker-archive:/dev/stdout``) the temporary file is in ``tmp_dir`` and
    ``commit`` copies it out. ``refuse_existing`` keeps a non-empty regular
    file from being replaced (containers/image's docker-archive rule).
    """

    def __init__(self, target: Path, label: str, tmp_dir: Path, *, refuse_existing: bool) -> None:
        import stat

        self.target = target
        self._label = label
        self._refuse_existing = refuse_existing
        self._direct = False
        try:
            info = target.stat()
        except FileNotFoundError:
            info = None
        except OSError as exc:
            raise os_error(exc, f"cannot inspect {target}") from exc
        if info is not None:
            if stat.S_ISDIR(info.st_mode):
                raise InvalidReference(
                    f"cannot write {label}: {target} is a directory", "give a file name"
                )
            self._direct = stat.S_ISFIFO(info.st_mode) or stat.S_ISCHR(info.st_mode)
        self._check_existing()
        directory = tmp_dir if self._direct else target.parent
        try:
            self.fd, self._tmp = temp_file(directory, f".{target.name}.")
        except FileNotFoundError as exc:
            raise ImageError(
                f"cannot write {label}: directory {directory} does not exist",
                "create the directory first",
            ) from exc
        except OSError as exc:
            raise os_error(exc, f"cannot create a file in {directory}") from exc
        self._done = False

    def _check_existing(self) -> None:
        if not self._refuse_existing or self._direct:
            return
        try:
            size = self.target.stat().st_size
        except FileNotFoundError:
            return
        except OSError as exc:
            raise os_error(exc, f"cannot inspect {self.target}") from exc
        if size > 0:
            raise ImageError(
                f"cannot write {self._label}: {self.target} already exists",
                "remove the file first or choose another name; archives are not modified in place",
            )

    def commit(self) -> None:
        """fsync the archive and put it in place."""
        try:
            os.fsync(self.fd)
            if self._direct:
                with open(self.target, "wb") as out:
                    os.lseek(self.fd, 0, os.SEEK_SET)
                    size = os.fstat(self.fd).st_size
                    offset = 0
                    while offset < size:
                        sent = os.sendfile(out.fileno(), self.fd, offset, size - offset)
                        if sent == 0:
                            break
                        offset += sent
                self._discard()
            else:
                self._check_existing()
                os.fchmod(self.fd, 0o644)
                os.close(self.fd)
                self.fd = -1
                self._tmp.replace(self.target)
                fsync_dir(self._tmp.parent)
        except OSError as exc:
            self._discard()
            raise os_error(exc, f"cannot write {self.target}") from exc
        self._done = True

    def _discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        remove_quietly(self._tmp)

    def close(self) -> None:
        """Remove the temporary file unless it was committed."""
        if not self._done:
            self._discard()
            self._done = True
