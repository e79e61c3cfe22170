"""Files a system container puts on the host: its unit, its tmpfiles.d file, hostfs.

Every deployment keeps the exact files it will install (``deploy`` renders
them into the deployment directory: ``NAME.service``, ``tmpfiles.conf``,
``hostfs/…``) and lists them as ``HostFile``s. Activating a deployment
(install, update, rollback, and the roll-forward after a crash) is one
idempotent sync from that list:

- each file is written to a temporary name beside its target, fsynced and
  renamed over it, so the host never sees half a unit;
- directories created for hostfs files are recorded and removed again
  (when empty) with the last file that needed them;
- what the previous deployment installed and this one does not is removed
  — except a hostfs file whose content changed since skiff wrote it: that
  is the administrator's now, so it is kept and a note says so.

``InstalledFile``s (in the database record) say what is on the host now.
Before a deployment is activated, ``conflicts`` lists targets that exist
and are not this container's: installing over them needs ``--force``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skiff.errors import SystemContainerError
from skiff.system.layout import fsync_dir
from skiff.system.templates import TemplateError, substitute

KINDS = ("unit", "tmpfiles", "file", "symlink")
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_HOSTFS_TEMPLATE = 1 << 20


@dataclass(frozen=True)
class HostFile:
    """One file of a deployment to install on the host."""

    target: str
    """Absolute host path."""
    source: str
    """Path inside the deployment directory."""
    kind: str
    sha256: str
    """Of the content (of the link target for a symlink)."""
    mode: int = 0o644

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostFile:
        return cls(
            str(data["target"]),
            str(data["source"]),
            str(data["kind"]),
            str(data["sha256"]),
            int(data.get("mode", 0o644)),
        )


@dataclass(frozen=True)
class InstalledFile:
    """One path on the host that a system container owns."""

    path: str
    kind: str
    """One of KINDS, or "dir" for a directory skiff created."""
    sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InstalledFile:
        return cls(str(data["path"]), str(data["kind"]), str(data.get("sha256", "")))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _current_hash(path: str) -> str | None:
    """The hash of what is at ``path`` now (link target for symlinks), None if absent."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return sha256_hex(os.readlink(path).encode())
    if not stat.S_ISREG(st.st_mode):
        return ""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --- rendering hostfs into a deployment ---------------------------------------------------


def render_hostfs(
    source: Path, dest: Path, templated: Sequence[str], values: Mapping[str, str]
) -> list[tuple[str, str, str, int]]:
    """Copy the image's hostfs tree ``source`` to ``dest``, substituting the
    files ``templated`` names; return (relative path, kind, sha256, mode) for
    each file and symlink. Nothing is followed: symlinks are copied as links."""
    wanted = {p.lstrip("/") for p in templated}
    out: list[tuple[str, str, str, int]] = []
    dest.mkdir(mode=0o755)
    top = os.open(source, _O_DIR)
    try:
        _render_dir(top, "", dest, wanted=wanted, values=values, out=out)
    finally:
        os.close(top)
    missing = sorted(wanted - {rel for rel, kind, _, _ in out if kind == "file"})
    if missing:
        raise TemplateError(
            "the image's manifest.json lists installedFilesTemplate "
            + ", ".join("/" + m for m in missing)
            + ", not regular files in /exports/hostfs"
        )
    return out


def _render_dir(
    dfd: int,
    rel: str,
    dest: Path,
    *,
    wanted: set[str],
    values: Mapping[str, str],
    out: list[tuple[str, str, str, int]],
) -> None:
    with os.scandir(dfd) as it:
        names = sorted(e.name for e in it)
    for name in names:
        path = f"{rel}/{name}" if rel else name
        st = os.lstat(name, dir_fd=dfd)
        target = dest / path
        if stat.S_ISDIR(st.st_mode):
            target.mkdir(mode=0o755)
            sub = os.open(name, _O_DIR, dir_fd=dfd)
            try:
                _render_dir(sub, path, dest, wanted=wanted, values=values, out=out)
            finally:
                os.close(sub)
        elif stat.S_ISLNK(st.st_mode):
            link = os.readlink(name, dir_fd=dfd)
            os.symlink(link, target)
            out.append((path, "symlink", sha256_hex(link.encode()), 0o777))
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            with os.fdopen(fd, "rb") as f:
                data = f.read()
            if path in wanted:
                try:
                    text = data.decode()
                except UnicodeDecodeError as exc:
                    raise TemplateError(
                        f"the image's /exports/hostfs/{path} is a template but not UTF-8 text"
                    ) from exc
                data = substitute(text, values, what=f"/exports/hostfs/{path}").encode()
            mode = stat.S_IMODE(st.st_mode) & 0o7777
            target.write_bytes(data)
            os.chmod(target, mode)
            out.append((path, "file", sha256_hex(data), mode))
        else:
            raise TemplateError(
                f"the image's /exports/hostfs/{path} is not a file, directory or symlink",
                "hostfs may hold only those",
            )


# --- installing on the host ---------------------------------------------------------------


def conflicts(files: Iterable[HostFile], owned: Iterable[str]) -> list[str]:
    """Targets that exist on the host and are not in ``owned``."""
    mine = set(owned)
    return [f.target for f in files if f.target not in mine and os.path.lexists(f.target)]


def _make_parents(directory: Path, created: list[str]) -> None:
    missing: list[Path] = []
    current = directory
    while not os.path.lexists(current):
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir(mode=0o755)
        created.append(str(path))


def _write(target: Path, source: Path, kind: str, mode: int) -> None:
    tmp = target.parent / f".{target.name[:100]}.skiff-{secrets.token_hex(4)}"
    try:
        if kind == "symlink":
            os.symlink(os.readlink(source), tmp)
        else:
            data = source.read_bytes()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
        if os.path.isdir(target) and not os.path.islink(target):
            raise SystemContainerError(
                f"cannot install {target}: a directory is in the way", "move it away"
            )
        os.rename(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def install_files(
    deployment: Path,
    files: Sequence[HostFile],
    previous: Sequence[InstalledFile],
    notes: list[str],
) -> list[InstalledFile]:
    """Make the host hold exactly ``files`` of ``deployment`` (module docstring);
    return what is installed now."""
    created: list[str] = []
    installed: list[InstalledFile] = []
    try:
        for f in files:
            target = Path(f.target)
            _make_parents(target.parent, created)
            _write(target, deployment / f.source, f.kind, f.mode)
            installed.append(InstalledFile(f.target, f.kind, f.sha256))
    except OSError as exc:
        raise SystemContainerError(
            f"cannot install {deployment.name}'s files on the host: {exc.strerror or exc} "
            f"({exc.filename or ''})",
            "check that the target directories are writable, then run the command again",
        ) from exc
    keep = {f.target for f in files}
    old_dirs = [p for p in previous if p.kind == "dir"]
    remove_files([p for p in previous if p.kind != "dir" and p.path not in keep], notes)
    needed = {str(Path(f.target).parent) for f in files}
    still: list[InstalledFile] = []
    for d in old_dirs:
        if any(n == d.path or n.startswith(d.path + "/") for n in needed):
            still.append(d)
        else:
            _remove_dir(d.path)
    return installed + still + [InstalledFile(d, "dir") for d in created]


def remove_files(installed: Sequence[InstalledFile], notes: list[str]) -> None:
    """Remove what ``installed`` lists; hostfs files changed since are kept."""
    for item in installed:
        if item.kind == "dir":
            continue
        current = _current_hash(item.path)
        if current is None:
            continue
        if current == "":
            notes.append(f"kept {item.path}: it is no longer a file")
            continue
        if item.kind in ("file", "symlink") and current != item.sha256:
            notes.append(f"kept {item.path}: it was changed after it was installed")
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(item.path)
    dirs = sorted((i.path for i in installed if i.kind == "dir"), key=len, reverse=True)
    for d in dirs:
        _remove_dir(d)


def _remove_dir(path: str) -> None:
    """Remove a directory skiff created, if nothing else was put in it."""
    with contextlib.suppress(OSError):  # gone, or not empty: either way not ours to remove
        os.rmdir(path)
