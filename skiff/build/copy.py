"""``builder copy`` / ``builder add`` (and the executor's COPY/ADD): files into a
working container.

Sources are read from a *source root*: the build context (``context_dir``;
the CLI's default is the host's ``/``, with relative paths taken from the
current directory, as buildah does without ``--contextdir``), or with
``from_`` another working container or an image (mounted for the copy), or
a root directory the executor resolved (``source_root``: a stage).

Safety, both ways:

- Source paths are resolved inside their root one component at a time
  through directory fds with ``O_NOFOLLOW``. In the build context nothing may
  lead outside it: ``../x`` climbing above the root and symlinks pointing
  outside it (absolute targets, or ``..`` above the root) are errors. In a
  container or image root, symlinks are resolved as inside a chroot, as the
  container itself would see them. Trees are read through fds without
  following symlinks (a symlink is copied as a symlink); names beginning
  with ``.wh.`` are refused (layer whiteouts).
- The destination is resolved inside the working container's root with
  symlinks followed *inside* it only (``rootfs.make_dirs``,
  ``copyfs.locate``), and written through ``skiff.storage.archive.apply``
  of a tar built from the sources into that directory's fd: the layer
  extractor's protections (no ``..``, no writing through symlinks, no
  hard links to outside) hold for every file written.

Docker's rules: globs (``*``, ``?``, ``[…]`` per path component) expand in
the source root (no match is an error); a directory source copies its
contents; a destination ending in ``/`` (or an existing directory) is a
directory and a file goes into it under its own name, otherwise the file is
written as the destination; several sources need a directory destination;
a relative destination is relative to the container's WorkingDir; missing
parent directories are created. Copied files keep their mode bits and
mtimes; owners become root (0:0) for files from the build context, and are
kept for files from a container or image, unless ``chown`` says
``USER[:GROUP]`` (names resolved in the working container's /etc/passwd and
/etc/group, read safely; a user alone takes its primary group, a number
without an entry is used as both, as buildah does). ``chmod`` (octal) sets
the permission bits of everything copied.

ADD also extracts local tar archives (plain, gzip, bzip2, xz, zstd) into
the destination directory (owners kept unless ``chown``), and downloads
http(s) URLs (urllib3) as one file, mode 0600, its mtime from
``Last-Modified``, never extracted.

Every copy returns a content digest: sha256 over the destination path and,
for every entry copied, its tar header without the mtime followed by its
content. Touching a file does not change it, editing one does: what the
executor's layer cache keys on.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import os
import posixpath
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from skiff.build.builder import Builder, find_builder, get_builder
from skiff.build.sources import (
    HashingReader,
    SourceTar,
    archive_kind,
    download,
    open_decompressed,
)
from skiff.errors import BuildError, SkiffError, UsageError
from skiff.oci.digest import Digest
from skiff.runtime.engine import Runtime
from skiff.storage.archive.tarheader import (
    TarHeader,
)
from skiff.storage.archive.tarwriter import END_OF_ARCHIVE, encode_header, padding

MAX_SYMLINKS: Final = 40
_O_PATH_DIR: Final = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_FILE: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FLUSH: Final = 256 << 10
_READ: Final = 1 << 20
_GLOB_CHARS: Final = frozenset("*?[")
_MAX_DB: Final = 16 << 20
URL_FILE_MODE: Final = 0o600


class ContextFilter(Protocol):
    """What ``.containerignore`` leaves out (``skiff.build.ignore.IgnoreMatcher``)."""

    def excluded(self, relpath: str, is_dir: bool) -> bool: ...

    def may_descend(self, dir_relpath: str) -> bool: ...


@dataclass
class CopyOptions:
    chown: str | None = None
    chmod: str | None = None
    from_: str | None = None
    """A working container or an image to copy from."""
    source_root: Path | None = None
    """A root directory to copy from (the executor's stage); wins over ``from_``."""
    context_dir: Path | None = None
    """The build context; None: the host's / (relative sources from the cwd)."""
    add: bool = False
    """ADD: extract local archives, download URLs."""
    ignore: ContextFilter | None = None


@dataclass
class CopyReport:
    digest: Digest
    entries: int = 0
    destinations: list[str] = field(default_factory=list)
    """In-container paths written (one per source)."""


def copy_into(
    rt: Runtime, ref: str | Builder, sources: list[str], dest: str, options: CopyOptions
) -> CopyReport:
    """Copy ``sources`` to ``dest`` in the working container (see the module docstring)."""
    if not sources:
        raise UsageError("no source given", "give at least one file to copy")
    if not dest:
        raise UsageError("no destination given")
    builder = ref if isinstance(ref, Builder) else get_builder(rt.store, ref)
    what = "add" if options.add else "copy"
    mode = _parse_chmod(options.chmod)
    urls = [s for s in sources if _is_url(s)]
    if urls and not options.add:
        raise BuildError(f"{what}: source can't be a URL: {urls[0]}", "use add for URLs")
    store = rt.store
    with contextlib.ExitStack() as stack:
        rootfs = store.mount_container(builder.container_id)
        stack.callback(store.unmount_container, builder.container_id)
        chown = resolve_owner(rootfs, options.chown) if options.chown else None
        root, chroot, cwd, from_context = _source_root(rt, options, stack)
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        stack.callback(os.close, root_fd)
        dest_path = _absolute_dest(builder, dest)
        plan: list[_Source] = []
        for text in sources:
            if _is_url(text):
                plan.append(_Source(text, None, url=text))
            else:
                plan.extend(
                    _expand(
                        root_fd, text, cwd=cwd, chroot=chroot, ignore=options.ignore, stack=stack
                    )
                )
        dest_is_dir = dest.endswith(("/", "/.")) or dest in (".", "/")
        if len(plan) > 1 and not dest_is_dir:
            if _is_dir_in(rootfs, dest_path) is not True:
                raise BuildError(
                    f"{what}: when copying more than one source, the destination {dest} must "
                    "be a directory and end with a /",
                    f"write {dest}/",
                )
            dest_is_dir = True
        # files from the build context belong to root unless --chown; files from
        # a container or an image keep their owners
        owner = chown if chown is not None else ((0, 0) if from_context else None)
        attrs = _Attrs(owner, chown, mode)
        hasher = hashlib.sha256()
        entries = 0
        written: list[str] = []
        for source in plan:
            count, path = _copy_one(
                rootfs,
                source,
                dest=dest_path,
                dest_is_dir=dest_is_dir,
                attrs=attrs,
                options=options,
                hasher=hasher,
                stack=stack,
            )
            entries += count
            written.append(path)
        return CopyReport(Digest("sha256", hasher.hexdigest()), entries, written)


# --- the source root --------------------------------------------------------------------


def _source_root(
    rt: Runtime, options: CopyOptions, stack: contextlib.ExitStack
) -> tuple[Path, bool, str, bool]:
    """(root, whether symlinks resolve as in a chroot, where relative sources
    start, whether the root is a build context rather than a container's)."""
    store = rt.store
    if options.source_root is not None:
        return options.source_root, True, "/", False
    if options.from_:
        other = find_builder(store, options.from_)
        if other is not None:
            path = store.mount_container(other.container_id)
            stack.callback(store.unmount_container, other.container_id)
            return path, True, "/", False
        from skiff.libimage.names import find_local_image

        image, _ = find_local_image(rt.ctx, store, options.from_)
        if image.top_layer is None:
            empty = Path(tempfile.mkdtemp(prefix="skiff-empty-", dir=rt.ctx.tmp_dir))
            stack.callback(os.rmdir, empty)
            return empty, True, "/", False
        path = store.mount_image(image.id)
        stack.callback(store.unmount_image, image.id)
        return path, True, "/", False
    if options.context_dir is not None:
        context = options.context_dir
        if not context.is_dir():
            raise BuildError(f"the build context {context} is not a directory")
        return context, False, "/", True
    return Path("/"), True, str(Path.cwd()), True


# --- resolving sources ---------------------------------------------------------------------


@dataclass
class _Source:
    """One source entry: where it is (``parent_fd`` + ``name``), or a URL."""

    text: str
    parent_fd: int | None
    name: str | None = None
    st: os.stat_result | None = None
    rel: str = ""
    """Its path relative to the source root (for .containerignore)."""
    url: str = ""


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def _escape(text: str, why: str) -> BuildError:
    return BuildError(
        f"{text}: {why}, outside the build context",
        "sources must be inside the context directory",
    )


def _resolve(
    root_fd: int, path: str, *, chroot: bool, shown: str
) -> tuple[int, str | None, os.stat_result, str]:
    """Resolve ``path`` in the root: (O_PATH fd of its parent, which the caller
    closes; the final name, or None for a directory reached without one; its
    lstat; its path from the root). Symlinks are followed; in the build
    context one leading outside is an error."""
    fds = [os.dup(root_fd)]
    names: list[str] = []
    pending = _components(path)
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            if name == "..":
                if len(fds) == 1:
                    if not chroot:
                        raise _escape(shown, "the path climbs above the root")
                    continue
                os.close(fds.pop())
                names.pop()
                continue
            try:
                st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
            except FileNotFoundError:
                raise BuildError(
                    f"{shown}: no such file or directory", "check the path in the build context"
                ) from None
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise BuildError(f"{shown}: too many levels of symbolic links")
                target = os.readlink(name, dir_fd=fds[-1])
                if target.startswith("/"):
                    if not chroot:
                        raise _escape(shown, f"the symlink {name} points to {target}")
                    while len(fds) > 1:
                        os.close(fds.pop())
                    names.clear()
                pending[:0] = _components(target)
                continue
            if not pending:
                return fds.pop(), name, st, "/".join([*names, name])
            if not stat.S_ISDIR(st.st_mode):
                raise BuildError(f"{shown}: {'/'.join([*names, name])} is not a directory")
            fds.append(os.open(name, _O_PATH_DIR, dir_fd=fds[-1]))
            names.append(name)
        top = fds.pop()
        return top, None, os.fstat(top), "/".join(names)
    except OSError as exc:
        raise BuildError(f"{shown}: {exc.strerror or exc}") from exc
    finally:
        for fd in fds:
            os.close(fd)


def _expand(
    root_fd: int,
    text: str,
    *,
    cwd: str,
    chroot: bool,
    ignore: ContextFilter | None,
    stack: contextlib.ExitStack,
) -> list[_Source]:
    """The entries ``text`` names (globs expanded), resolved in the root; their
    fds are closed by ``stack``."""
    path = text if text.startswith("/") else posixpath.join(cwd, text)
    if not chroot:
        # lexically first: "../x" is refused even when it would come back in
        depth = 0
        for part in _components(path):
            depth += -1 if part == ".." else 1
            if depth < 0:
                raise _escape(text, "the path climbs above the root")
    concrete = _glob(root_fd, path, chroot, text)
    if not concrete:
        raise BuildError(f"{text}: no files found matching the pattern", "check the path")
    out = []
    for candidate in concrete:
        parent, name, st, rel = _resolve(root_fd, candidate, chroot=chroot, shown=text)
        stack.callback(os.close, parent)
        is_dir = stat.S_ISDIR(st.st_mode)
        excluded = ignore is not None and rel and ignore.excluded(rel, is_dir)
        if excluded and not (is_dir and ignore is not None and ignore.may_descend(rel)):
            raise BuildError(
                f"{text}: excluded by the build context's ignore file",
                "remove the pattern from .containerignore/.dockerignore",
            )
        out.append(_Source(text, parent, name, st, rel))
    return out


def _glob(root_fd: int, path: str, chroot: bool, shown: str) -> list[str]:
    parts = _components(path)
    if not any(_GLOB_CHARS & set(p) for p in parts):
        return ["/" + "/".join(parts)]
    found = [""]
    for index, part in enumerate(parts):
        if not (_GLOB_CHARS & set(part)):
            found = [f"{base}/{part}" for base in found]
            continue
        matches = []
        for base in found:
            try:
                parent, name, st, _ = _resolve(root_fd, base or "/", chroot=chroot, shown=shown)
            except BuildError:
                continue
            try:
                if not stat.S_ISDIR(st.st_mode):
                    continue
                dir_fd = os.open(name if name is not None else ".", _O_READ_DIR, dir_fd=parent)
            finally:
                os.close(parent)
            try:
                with os.scandir(dir_fd) as scan:
                    entries = sorted(e.name for e in scan)
            finally:
                os.close(dir_fd)
            last = index == len(parts) - 1
            for entry in entries:
                if fnmatch.fnmatchcase(entry, part) and (last or entry not in (".", "..")):
                    matches.append(f"{base}/{entry}")
        found = matches
    return found


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


# --- the destination -------------------------------------------------------------------------


def _absolute_dest(builder: Builder, dest: str) -> str:
    if dest.startswith("/"):
        return posixpath.normpath(dest) if dest != "/" else "/"
    workdir = str(builder.container_config.get("WorkingDir") or "/")
    return posixpath.normpath(posixpath.join(workdir, dest))


def _is_dir_in(rootfs: Path, path: str) -> bool | None:
    from skiff.runtime.specgen import rootfs as rootfs_paths

    try:
        return rootfs_paths.is_dir(rootfs, path)
    except OSError:
        return None


def _open_target_dir(rootfs: Path, path: str, owner: tuple[int, int] | None) -> int:
    """An fd of directory ``path`` in the root (created if missing, symlinks
    followed inside the root only)."""
    from skiff.runtime.copyfs import locate
    from skiff.runtime.specgen import rootfs as rootfs_paths

    uid, gid = owner if owner is not None else (0, 0)
    try:
        rootfs_paths.make_dirs(rootfs, path, uid, gid)
        root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with locate(root_fd, path) as found:
                if not found.is_dir:
                    raise OSError(errno.ENOTDIR, "not a directory", path)
                return found.open_dir()
        finally:
            os.close(root_fd)
    except OSError as exc:
        raise BuildError(
            f"cannot create the destination directory {path}: {exc.strerror or exc}",
            "a file is in the way, or the path leads through a non-directory",
        ) from exc


# --- ownership and modes -----------------------------------------------------------------------


def resolve_owner(rootfs: Path, spec: str) -> tuple[int, int]:
    """``USER[:GROUP]`` → (uid, gid), looked up in the container's own files."""
    from skiff.runtime.specgen import rootfs as rootfs_paths
    from skiff.runtime.specgen.user import parse_group, parse_passwd

    user, sep, group = spec.partition(":")
    if not user or (sep and not group):
        raise UsageError(f"invalid --chown {spec!r}", "use USER[:GROUP], names or numbers")

    def read(path: str) -> bytes:
        try:
            return rootfs_paths.read_file(rootfs, path, _MAX_DB) or b""
        except OSError as exc:
            raise BuildError(
                f"--chown {spec}: cannot read {path} in the container: {exc.strerror or exc}"
            ) from exc

    passwd = parse_passwd(read("/etc/passwd"))
    if user.isdigit():
        uid = int(user)
        entry = next((e for e in passwd if e.uid == uid), None)
        gid = entry.gid if entry is not None else uid
    else:
        entry = next((e for e in passwd if e.name == user), None)
        if entry is None:
            raise BuildError(
                f"--chown {spec}: unknown user {user!r} in the container's /etc/passwd",
                "use a user the image defines, or a numeric uid",
            )
        uid, gid = entry.uid, entry.gid
    if sep:
        if group.isdigit():
            gid = int(group)
        else:
            found = next((g for g in parse_group(read("/etc/group")) if g.name == group), None)
            if found is None:
                raise BuildError(
                    f"--chown {spec}: unknown group {group!r} in the container's /etc/group",
                    "use a group the image defines, or a numeric gid",
                )
            gid = found.gid
    return uid, gid


def _parse_chmod(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise UsageError(f"invalid --chmod {text!r}", "give octal permission bits, e.g. 755")
    return mode


@dataclass(frozen=True)
class _Attrs:
    owner: tuple[int, int] | None
    """Owner of copied entries (None: keep the source's)."""
    chown: tuple[int, int] | None
    """What --chown asked for (archives keep their owners without it)."""
    mode: int | None


# --- copying one source ------------------------------------------------------------------------


def _copy_one(
    rootfs: Path,
    source: _Source,
    *,
    dest: str,
    dest_is_dir: bool,
    attrs: _Attrs,
    options: CopyOptions,
    hasher: Any,
    stack: contextlib.ExitStack,
) -> tuple[int, str]:
    """Copy one source entry; returns (entries written, in-container path)."""
    if source.url:
        return _copy_url(
            rootfs,
            source.url,
            dest=dest,
            dest_is_dir=dest_is_dir,
            attrs=attrs,
            hasher=hasher,
            stack=stack,
        )
    assert source.parent_fd is not None and source.st is not None
    is_dir = stat.S_ISDIR(source.st.st_mode)
    if is_dir:
        target_dir, top = dest, b""
        tar = SourceTar(attrs.owner, attrs.mode, options.ignore, hasher)
        members = tar.add_dir(source.parent_fd, source.name, b"", source.rel)
    else:
        if options.add and stat.S_ISREG(source.st.st_mode):
            kind = archive_kind(source.parent_fd, source.name)
            if kind is not None:
                return _extract_archive(
                    rootfs, source, kind=kind, dest=dest, attrs=attrs, hasher=hasher
                )
        if dest_is_dir or _is_dir_in(rootfs, dest) is True:
            target_dir = dest
            top = os.fsencode(source.name or "")
        else:
            target_dir = posixpath.dirname(dest) or "/"
            top = os.fsencode(posixpath.basename(dest))
        if not top:
            raise BuildError(f"{source.text}: cannot copy a file to {dest}")
        tar = SourceTar(attrs.owner, attrs.mode, None, hasher)
        assert source.name is not None
        members = tar.add_entry(source.parent_fd, os.fsencode(source.name), top, source.st)
    hasher.update(os.fsencode(target_dir) + b"\0" + top + b"\0")
    # missing parents belong to --chown's owner, as buildah creates them (else root)
    dir_fd = _open_target_dir(rootfs, target_dir, attrs.owner if is_dir else attrs.chown)
    try:
        _apply(_chain(members, tar), dir_fd, source.text)
    finally:
        os.close(dir_fd)
    written = target_dir if not top else posixpath.join(target_dir, os.fsdecode(top))
    return tar.entries, written


def _chain(members: Iterator[bytes], tar: SourceTar) -> Iterator[bytes]:
    yield from members
    yield from tar.finish()


def _apply(chunks: Iterator[bytes], dir_fd: int, shown: str) -> None:
    from skiff.runtime.copyfs import fd_path
    from skiff.storage.archive import apply
    from skiff.storage.store import ChunkReader

    reader = ChunkReader(chunks)
    try:
        apply(reader, fd_path(dir_fd), whiteout_format="vfs", ignore_xattr_errors=True)
    except BuildError:
        raise
    except SkiffError as exc:
        raise BuildError(f"copying {shown}: {exc.message}", exc.hint) from exc
    finally:
        reader.close()


def _extract_archive(
    rootfs: Path, source: _Source, *, kind: str, dest: str, attrs: _Attrs, hasher: Any
) -> tuple[int, str]:
    from skiff.runtime.copyfs import restream

    assert source.parent_fd is not None and source.name is not None
    fd = os.open(source.name, _O_READ_FILE, dir_fd=source.parent_fd)
    with os.fdopen(fd, "rb") as raw:
        data = HashingReader(raw, hasher)
        stream = open_decompressed(data, kind) if kind in ("bzip2", "xz") else data
        hasher.update(os.fsencode(dest) + b"\0")
        dir_fd = _open_target_dir(rootfs, dest, None)
        try:
            chunks = restream(stream, owner=attrs.chown)
            _apply(chunks, dir_fd, source.text)
        except SkiffError as exc:
            if isinstance(exc, BuildError):
                raise
            raise BuildError(f"extracting {source.text}: {exc.message}", exc.hint) from exc
        finally:
            os.close(dir_fd)
    return 1, dest


def _copy_url(
    rootfs: Path,
    url: str,
    *,
    dest: str,
    dest_is_dir: bool,
    attrs: _Attrs,
    hasher: Any,
    stack: contextlib.ExitStack,
) -> tuple[int, str]:
    spool = stack.enter_context(tempfile.TemporaryFile(prefix="skiff-add-"))  # noqa: SIM115 - closed by the stack
    mtime = download(url, spool, hasher)
    spool.flush()
    if dest_is_dir or _is_dir_in(rootfs, dest) is True:
        target_dir = dest
        name = posixpath.basename(url.split("?", 1)[0].split("#", 1)[0].rstrip("/"))
        if not name or "/" in name or name in (".", ".."):
            raise BuildError(
                f"cannot tell a file name from {url}", "give the destination file's name"
            )
    else:
        target_dir, name = posixpath.dirname(dest) or "/", posixpath.basename(dest)
    size = os.fstat(spool.fileno()).st_size
    uid, gid = attrs.owner if attrs.owner is not None else (0, 0)
    header = TarHeader(
        name=os.fsencode(name),
        mode=attrs.mode if attrs.mode is not None else URL_FILE_MODE,
        uid=uid,
        gid=gid,
        size=size,
        mtime_ns=mtime,
    )
    hasher.update(os.fsencode(target_dir) + b"\0")

    def chunks() -> Iterator[bytes]:
        yield encode_header(header)
        spool.seek(0)
        while data := spool.read(_READ):
            yield data
        yield padding(size) + END_OF_ARCHIVE

    dir_fd = _open_target_dir(rootfs, target_dir, None)
    try:
        _apply(chunks(), dir_fd, url)
    finally:
        os.close(dir_fd)
    return 1, posixpath.join(target_dir, name)
