"""``skiff cp``: copy files between a container and the host (or a tar stream),
or between two containers, with podman's rules for names and destinations.

Where the files are: a running container is reached through
``/proc/PID/root`` (its own view: volumes, tmpfs and the /etc files it
mounts are there, and the path is checked to be the container's root
before use); a stopped one through its storage, mounted for the copy and
unmounted after, with paths at or below a named volume's or bind mount's
destination taken from that volume's or host directory (as podman does),
so what the container wrote to ``/data`` is there when it has stopped.
The container's lock is held throughout, so it cannot be started,
stopped or removed half-way through a copy.

How names are resolved and files moved safely is in ``copyfs``: every path
inside a container is resolved with symlinks followed *inside* its root,
trees are read through directory fds without following symlinks, and
writes go through the layer extractor into a directory fd.

Destination rules (podman's, which are docker's):

- SRC is a file: DEST missing → written as DEST (its parent must exist;
  DEST ending in ``/`` must be an existing directory); DEST an existing
  file → replaced; DEST a directory → ``DEST/basename(SRC)``.
- SRC is a directory: DEST missing → created with SRC's contents; DEST a
  file → error; DEST a directory → ``DEST/basename(SRC)``, or SRC's
  contents straight into DEST when SRC ends in ``/.``.
- ``-`` as SRC: a tar (plain, gzip or zstd) from standard input, extracted
  into the directory DEST. ``-`` as DEST: a tar of SRC to standard output.
- SRC's last component is followed when it is a symlink (inside the
  container's root for a container), and the copy takes SRC's name.
- Replacing a directory by a non-directory or the reverse needs
  ``--overwrite``.

Ownership (podman's ``--archive``, default true): files copied into a
container belong to the container's user (its ``--user`` or the image's
``User``, resolved in the container's /etc/passwd); files copied to the
host belong to the caller. ``--archive=false`` keeps the owners of the
source. A tar written to standard output keeps the container's owners.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from skiff.errors import (
    ContainerError,
    ContainerStateError,
    InvalidArchive,
    SkiffError,
    UnsafeArchive,
    UsageError,
)
from skiff.runtime.copyfs import (
    Located,
    OverwriteCheck,
    Owner,
    TreeTar,
    fd_path,
    locate,
    restream,
)
from skiff.runtime.engine import Runtime
from skiff.runtime.records import Container, Status

_O_ROOT = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_LIVE = (Status.RUNNING, Status.PAUSED, Status.INITIALIZED)


@dataclass(frozen=True)
class CopyOptions:
    archive: bool = True
    """Chown to the destination's user (podman's default); False keeps owners."""
    overwrite: bool = False
    """Allow replacing directories by non-directories and the reverse."""


@dataclass(frozen=True)
class Location:
    """One side of a copy: ``container`` None is the host (``path`` "-" is a stream)."""

    container: str | None
    path: str

    @property
    def is_stream(self) -> bool:
        return self.container is None and self.path == "-"


@dataclass
class CopyReport:
    entries: int = 0
    """Members copied (0 when the extractor does not count them)."""
    warnings: list[str] = field(default_factory=list)


def parse_location(text: str) -> Location:
    """``CTR:PATH`` names a container; a path starting with ``/`` or ``.``
    (or without a ``:``) is on the host, as podman splits them."""
    if text == "-" or text.startswith(("/", ".")):
        return Location(None, text)
    name, sep, path = text.partition(":")
    if not sep or not name:
        return Location(None, text)
    if not path:
        raise UsageError(
            f"invalid copy location {text!r}: no path after the container name",
            "write CONTAINER:PATH, e.g. ctr:/tmp",
        )
    return Location(name, path)


# --- the two sides ----------------------------------------------------------------------


@dataclass
class _Side:
    root_fd: int
    container: Container | None
    runtime_devices: frozenset[int] = frozenset()
    """Devices of the mounts the runtime made in a running container (its
    /proc, /sys, /dev and what is below them): copied as empty directories."""
    mounts: tuple[tuple[str, int], ...] = ()
    """(destination, fd of the host directory) of a stopped container's
    volumes and bind mounts, longest destination first."""

    def locate(self, path: str) -> Located:
        """``path`` found on this side, symlinks followed inside its root
        (or inside the volume the path is in)."""
        root_fd, inner = self._root_of(self.absolute(path))
        return locate(root_fd, inner)

    def _root_of(self, path: str) -> tuple[int, str]:
        if not self.mounts or not path.startswith("/"):
            return self.root_fd, path
        clean = posixpath.normpath(path)
        for destination, fd in self.mounts:
            if clean == destination or clean.startswith(destination + "/"):
                inner = clean[len(destination) :] or "/"
                if _is_contents(path):
                    inner = inner.rstrip("/") + "/."
                elif path.endswith("/"):
                    inner = inner.rstrip("/") + "/"
                return fd, inner
        return self.root_fd, path

    @property
    def label(self) -> str:
        return "the host" if self.container is None else f"container {self.container.name}"

    def absolute(self, path: str) -> str:
        if self.container is None and not path.startswith("/"):
            return os.getcwd().rstrip("/") + "/" + path
        return path

    def not_found(self, path: str, why: str = "no such file or directory") -> ContainerError:
        return ContainerError(f'"{path}" could not be found on {self.label}: {why}')


def _proc_root(container: Container) -> int:
    """An fd of the running container's root, checked to be its root filesystem."""
    state = container.state
    try:
        fd = os.open(f"/proc/{state.pid}/root", _O_ROOT)
    except OSError as exc:
        raise ContainerStateError(
            f"cannot reach the root filesystem of container {container.name}: {exc.strerror}",
            "the container may have just exited; retry",
        ) from exc
    if state.mount_point:
        try:
            expected = os.stat(state.mount_point)
            actual = os.fstat(fd)
            same = (actual.st_dev, actual.st_ino) == (expected.st_dev, expected.st_ino)
        except OSError:
            same = False
        if not same:
            os.close(fd)
            raise ContainerStateError(
                f"process {state.pid} is no longer in the root filesystem of container "
                f"{container.name}",
                "the container may have just exited; retry",
            )
    return fd


def _open_container(rt: Runtime, container: Container, stack: contextlib.ExitStack) -> _Side:
    from skiff.runtime import lifecycle

    stack.enter_context(rt.lock(container.id))
    container = lifecycle.sync(rt, container)
    state = container.state
    if state.status == Status.REMOVING:
        raise ContainerStateError(f"container {container.name} is being removed")
    if state.status in _LIVE and state.pid:
        fd = _proc_root(container)
        stack.callback(os.close, fd)
        return _Side(fd, container, runtime_devices=_runtime_mount_devices(state.pid))
    if rt.store.containers.find(container.id) is None:
        raise ContainerStateError(f"container {container.name} has no storage to copy from")
    mount_point = rt.store.mount_container(container.id)
    stack.callback(rt.store.unmount_container, container.id)
    fd = os.open(mount_point, _O_ROOT)
    stack.callback(os.close, fd)
    return _Side(fd, container, mounts=_volume_dirs(rt, container, stack))


def _volume_dirs(
    rt: Runtime, container: Container, stack: contextlib.ExitStack
) -> tuple[tuple[str, int], ...]:
    """The host directories behind a stopped container's volumes and bind
    mounts (those its last start set up; a tmpfs has nothing left)."""
    from skiff.runtime.volumes.lifecycle import recorded_mounts
    from skiff.runtime.volumes.resolved import KIND_BIND, KIND_VOLUME

    found: list[tuple[str, int]] = []
    for mount in recorded_mounts(rt.store, container.id):
        if mount.kind not in (KIND_VOLUME, KIND_BIND):
            continue
        try:
            fd = os.open(mount.source, _O_ROOT)
        except OSError:  # a file bind mount, or a source gone since
            continue
        stack.callback(os.close, fd)
        found.append((posixpath.normpath(mount.destination), fd))
    return tuple(sorted(found, key=lambda m: len(m[0]), reverse=True))


_PSEUDO_FS = frozenset(
    ("proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs")
)
_RUNTIME_DIRS = ("/proc", "/sys", "/dev")


def _runtime_mount_devices(pid: int) -> frozenset[int]:
    """st_dev of the mounts at or below /proc, /sys and /dev (and of any pseudo
    filesystem) in the mount namespace of ``pid``."""
    try:
        text = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return frozenset()
    devices = set()
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or ":" not in fields[2]:
            continue
        point = fields[4].replace("\\040", " ")
        fstype = right.split()[0] if right.split() else ""
        under = any(point == d or point.startswith(d + "/") for d in _RUNTIME_DIRS)
        if under or fstype in _PSEUDO_FS:
            major, _, minor = fields[2].partition(":")
            devices.add(os.makedev(int(major), int(minor)))
    return frozenset(devices)


def _open_host(stack: contextlib.ExitStack) -> _Side:
    fd = os.open("/", _O_ROOT)
    stack.callback(os.close, fd)
    return _Side(fd, None)


def _container_owner(rt: Runtime, container: Container, root_fd: int) -> Owner:
    """The container's primary uid/gid (its user, resolved in its own /etc/passwd)."""
    from skiff.oci.config import ImageConfig
    from skiff.runtime.create import spec_of
    from skiff.runtime.specgen.user import resolve_user

    sg = spec_of(container)
    user = sg.security.user
    if user is None:
        image_id = container.config.image_id
        user = ImageConfig.from_bytes(rt.store.images.get(image_id).config).user if image_id else ""
    resolved = resolve_user(Path(fd_path(root_fd)), user)
    return resolved.uid, resolved.gid


# --- copying ------------------------------------------------------------------------------


def copy(
    rt: Runtime,
    source: Location | str,
    dest: Location | str,
    options: CopyOptions | None = None,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> CopyReport:
    """Copy ``source`` to ``dest`` (see the module docstring for the rules)."""
    options = options or CopyOptions()
    src = parse_location(source) if isinstance(source, str) else source
    dst = parse_location(dest) if isinstance(dest, str) else dest
    if src.container is None and dst.container is None:
        raise UsageError(
            "invalid arguments: one of the paths must be in a container (CONTAINER:PATH)",
            "podman cp copies between a container and the host, or between containers",
        )
    if src.is_stream and stdin is None:
        raise UsageError("copying from standard input needs a tar stream on standard input")
    if dst.is_stream and stdout is None:
        raise UsageError("copying to standard output needs somewhere to write")
    found = {
        c.id: c for c in (rt.records.get(ref) for ref in (src.container, dst.container) if ref)
    }
    with contextlib.ExitStack() as stack:
        sides: dict[str, _Side] = {}
        for cid in sorted(found):  # lock order: by ID, so two copies cannot deadlock
            sides[cid] = _open_container(rt, found[cid], stack)
        host = _open_host(stack)

        def side(ref: str | None) -> _Side:
            if ref is None:
                return host
            return sides[rt.records.get(ref).id]

        try:
            return _copy(
                rt,
                src=src,
                src_side=side(src.container),
                dst=dst,
                dst_side=side(dst.container),
                options=options,
                stdin=stdin,
                stdout=stdout,
            )
        except OSError as exc:
            raise ContainerError(
                f"copying {_shown(src)} to {_shown(dst)}: {exc.strerror or exc}",
                "if a running container changed the path meanwhile, retry",
            ) from exc


def _copy(
    rt: Runtime,
    *,
    src: Location,
    src_side: _Side,
    dst: Location,
    dst_side: _Side,
    options: CopyOptions,
    stdin: IO[bytes] | None,
    stdout: IO[bytes] | None,
) -> CopyReport:
    with contextlib.ExitStack() as stack:
        source: Located | None = None
        contents_only = False
        src_name = b""
        if not src.is_stream:
            source = _locate_source(src, src_side)
            stack.enter_context(source)
            # a root has no name to copy under: "/" is its contents; a
            # volume's root (a stopped container's /data) keeps its name
            contents_only = _is_contents(src.path) or (
                source.name is None and posixpath.normpath(src_side.absolute(src.path)) == "/"
            )
            src_name = _source_name(src.path, source)
        if dst.is_stream:
            assert source is not None and stdout is not None
            _refuse_terminal(stdout)
            tar = TreeTar(skip_devices=src_side.runtime_devices)
            chunks = _chain(
                tar.add(
                    source.parent_fd,
                    source.name,
                    b"" if contents_only else src_name,
                    source.st,
                ),
                tar,
            )
            for chunk in chunks:
                stdout.write(chunk)
            stdout.flush()
            return CopyReport(entries=tar.entries)

        dir_fd, top, dir_shown = _destination(dst, dst_side, source, contents_only, src_name)
        stack.callback(os.close, dir_fd)
        owner: Owner | None = None
        if options.archive:
            if dst_side.container is not None:
                owner = _container_owner(rt, dst_side.container, dst_side.root_fd)
            else:
                owner = (os.getuid(), os.getgid())
        check = OverwriteCheck(dir_fd, options.overwrite, lambda rel: _join(dir_shown, rel))
        stack.callback(check.close)
        if source is None:
            assert stdin is not None
            chunks = restream(stdin, owner, check)
            return _extract(chunks, dir_fd, dst_side, None)
        tar = TreeTar(owner, check, src_side.runtime_devices)
        if source.name is None or (contents_only and source.is_dir and top == b""):
            src_dir = source.open_dir()
            stack.callback(os.close, src_dir)
            members = tar.add(src_dir, None, top, source.st)
        else:
            members = tar.add(source.parent_fd, source.name, top, source.st)
        return _extract(_chain(members, tar), dir_fd, dst_side, tar)


def _shown(location: Location) -> str:
    if location.container is None:
        return location.path
    return f"{location.container}:{location.path}"


def _chain(members: Iterator[bytes], tar: TreeTar) -> Iterator[bytes]:
    yield from members
    yield from tar.finish()


def _is_contents(path: str) -> bool:
    """``DIR/.`` (and ``.``): the directory's contents, not the directory."""
    return path == "." or path.endswith("/.")


def _last_component(path: str) -> str:
    stripped = path.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else ""


def _source_name(path: str, source: Located) -> bytes:
    """The name the copy takes: SRC's last component as given (a symlink's own
    name), else the name it resolved to."""
    last = _last_component(path)
    if last in ("", ".", ".."):
        return os.fsencode(source.name or "")
    return os.fsencode(last)


def _locate_source(src: Location, side: _Side) -> Located:
    path = src.path
    try:
        found = side.locate(path)
    except NotADirectoryError as exc:
        raise side.not_found(path, "not a directory") from exc
    except OSError as exc:
        raise side.not_found(path, exc.strerror or str(exc)) from exc
    if not found.exists or found.missing:
        found.close()
        raise side.not_found(path)
    if (path.endswith("/") or _is_contents(path)) and not found.is_dir:
        found.close()
        raise side.not_found(path, "not a directory")
    return found


def _destination(
    dst: Location, side: _Side, source: Located | None, contents_only: bool, src_name: bytes
) -> tuple[int, bytes, str]:
    """The directory fd to write into, the name of the top entry there (b"":
    the entries go straight into that directory), and that directory as the
    user named it (for messages)."""
    path = dst.path
    try:
        found = side.locate(path)
    except NotADirectoryError as exc:
        raise side.not_found(path, "not a directory") from exc
    except OSError as exc:
        raise side.not_found(path, exc.strerror or str(exc)) from exc
    with found:
        source_is_dir = source is None or source.is_dir
        if found.exists and found.is_dir:
            top = b"" if source is None or contents_only else src_name
            return found.open_dir(), top, path
        if found.exists:
            if source_is_dir:
                what = "from standard input" if source is None else "a directory"
                raise ContainerError(
                    f"destination must be a directory when copying {what}",
                    f"{path!r} on {side.label} is a file",
                )
            if path.endswith("/"):
                raise side.not_found(path, "not a directory")
            assert found.name is not None
            return os.dup(found.parent_fd), os.fsencode(found.name), _parent_text(path)
        if len(found.missing) > 1 or path.endswith("/") or source is None:
            raise side.not_found(path)
        return os.dup(found.parent_fd), os.fsencode(found.missing[0]), _parent_text(path)


def _parent_text(path: str) -> str:
    head = path.rstrip("/").rpartition("/")[0]
    return head or ("/" if path.startswith("/") else ".")


def _join(base: str, rel: bytes) -> str:
    return base.rstrip("/") + "/" + os.fsdecode(rel)


def _refuse_terminal(stream: IO[bytes]) -> None:
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        raise UsageError(
            "refusing to write a tar archive to a terminal",
            "redirect standard output to a file or a pipe",
        )


def _extract(chunks: Iterator[bytes], dir_fd: int, side: _Side, tar: TreeTar | None) -> CopyReport:
    from skiff.storage.archive import apply
    from skiff.storage.store import ChunkReader

    reader = ChunkReader(chunks)
    try:
        result = apply(
            reader,
            fd_path(dir_fd),
            whiteout_format="vfs",
            ignore_xattr_errors=True,
        )
    except (UnsafeArchive, InvalidArchive) as exc:
        raise ContainerError(f"copying to {side.label}: {exc.message}", exc.hint) from exc
    except SkiffError:
        raise
    finally:
        reader.close()
    return CopyReport(
        entries=tar.entries if tar is not None else result.entries,
        warnings=list(result.warnings),
    )
