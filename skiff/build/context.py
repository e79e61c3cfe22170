"""The build context: where COPY/ADD read from, and what their cache keys hash.

A context is a directory. A local tar archive (plain, gzip, bzip2, xz or
zstd) or an http(s) URL of one is unpacked first into a private temporary
directory (through the layer extractor, so nothing in it can land outside
that directory); a URL that is no archive is taken as the Containerfile of
an empty context, as ``docker build URL`` does. ``close()`` removes what
was unpacked.

Cache keys (``skiff.build.cache``) need the content of what a COPY would
copy *before* copying it, so that a step whose files did not change is
skipped. ``BuildContext.digest_sources`` resolves the sources exactly as
``skiff.build.copy`` does (globs, ``.containerignore``, symlinks followed
inside the context only; ``../x`` and symlinks leading out are the same
errors) and hashes, for every entry, its path below the source, type,
permission bits, size, link target and content — not its mtime or owner:
touching a file keeps the cache, editing one invalidates it, as in
Docker and buildah.

Hashing is the hot path of a cached build of a large context, so file
digests are remembered in the store's database (``build_file_hashes``),
keyed by device and inode and valid while size, mtime and ctime (which no
user can set back) are unchanged — git's index trick. Files under
``_REMEMBER_MIN`` bytes are cheaper to read than to look up and are
always hashed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from skiff.build.ignore import IgnoreMatcher
from skiff.errors import BuildError

if TYPE_CHECKING:
    from skiff.storage.db import Database

__all__ = ["BuildContext", "FileHashes", "open_context"]

_O_READ_DIR: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_FILE: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_READ: Final = 1 << 20
_REMEMBER_MIN: Final = 64 << 10

FILE_HASH_SCHEMA = """
CREATE TABLE IF NOT EXISTS build_file_hashes (
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (dev, ino)
)
"""


class FileHashes:
    """sha256 of files, remembered by (dev, inode) while their stat is unchanged.

    Lookups read the database; new digests are kept in memory and written in
    one transaction by ``flush()`` (the executor calls it once per build).
    """

    def __init__(self, db: Database | None) -> None:
        self._db = db
        self._known: dict[tuple[int, int], tuple[int, int, int, str]] = {}
        self._new: dict[tuple[int, int], tuple[int, int, int, str]] = {}
        if db is not None:
            db.ensure_schema("build_file_hashes", FILE_HASH_SCHEMA)

    def digest(self, fd: int, st: os.stat_result) -> str:
        """The hex sha256 of the open regular file ``fd`` whose stat is ``st``."""
        key = (st.st_dev, st.st_ino)
        wanted = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        remember = self._db is not None and st.st_size >= _REMEMBER_MIN
        if remember:
            found = self._known.get(key) or self._lookup(key)
            if found is not None and found[:3] == wanted:
                return found[3]
        digest = _hash_fd(fd)
        if remember:
            # the file may have changed while it was read: remember only a
            # digest whose stat held still
            after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == wanted:
                self._new[key] = (*wanted, digest)
                self._known[key] = (*wanted, digest)
        return digest

    def _lookup(self, key: tuple[int, int]) -> tuple[int, int, int, str] | None:
        assert self._db is not None
        row = self._db.read_one(
            "SELECT size, mtime_ns, ctime_ns, digest FROM build_file_hashes WHERE dev=? AND ino=?",
            key,
        )
        if row is None:
            return None
        found = (int(row[0]), int(row[1]), int(row[2]), str(row[3]))
        self._known[key] = found
        return found

    def flush(self) -> None:
        if self._db is None or not self._new:
            return
        with self._db.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO build_file_hashes(dev, ino, size, mtime_ns, ctime_ns, digest)"
                " VALUES (?,?,?,?,?,?)",
                [(*key, *value) for key, value in self._new.items()],
            )
        self._new.clear()


def _hash_fd(fd: int) -> str:
    hasher = hashlib.sha256()
    while True:
        data = os.read(fd, _READ)
        if not data:
            return hasher.hexdigest()
        hasher.update(data)


@dataclass
class BuildContext:
    """A directory COPY/ADD take their sources from, with its ignore rules."""

    root: Path
    """Absolute path of the context directory."""
    ignore: IgnoreMatcher
    containerfile: Path | None = None
    """A Containerfile that came with the context (a URL that was no archive)."""
    hashes: FileHashes = field(default_factory=lambda: FileHashes(None))
    _temporary: Path | None = None

    def close(self) -> None:
        """Write remembered digests; remove what was unpacked for the build."""
        try:
            self.hashes.flush()
        finally:
            if self._temporary is not None:
                shutil.rmtree(self._temporary, ignore_errors=True)
                self._temporary = None

    def __enter__(self) -> BuildContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- cache keys ------------------------------------------------------------------
    def digest_sources(self, sources: list[str], *, use_ignore: bool = True) -> str:
        """A hex digest of what ``COPY sources... DEST`` would copy from here.

        Raises the BuildError ``copy`` raises for a source that is missing,
        matches nothing, is excluded, or leads outside the context.
        ``use_ignore=False`` hashes what a bind mount shows: everything.
        """
        from skiff.build.copy import _expand  # the resolution COPY itself uses

        ignore = self.ignore if use_ignore else IgnoreMatcher()
        hasher = hashlib.sha256()
        with contextlib.ExitStack() as stack:
            root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            stack.callback(os.close, root_fd)
            for text in sources:
                hasher.update(b"S\0" + os.fsencode(text) + b"\0")
                found = _expand(root_fd, text, cwd="/", chroot=False, ignore=ignore, stack=stack)
                for source in found:
                    assert source.parent_fd is not None and source.st is not None
                    hasher.update(b"E\0" + os.fsencode(source.rel) + b"\0")
                    _Walk(self.hashes, ignore).entry(
                        hasher, source.parent_fd, source.name, source.st, source.rel
                    )
        return hasher.hexdigest()

    def digest_path(self, path: str) -> str:
        """A digest of one path of the context as a RUN ``--mount=type=bind``
        shows it (the ignore file does not apply to bind mounts)."""
        return self.digest_sources([path or "."], use_ignore=False)


@dataclass
class _Walk:
    """Hashes entries of the context the way ``SourceTar`` reads them."""

    hashes: FileHashes
    ignore: IgnoreMatcher

    def entry(
        self, hasher: Any, parent_fd: int, name: str | None, st: os.stat_result, rel: str
    ) -> None:
        mode = st.st_mode
        perm = stat.S_IMODE(mode)
        if stat.S_ISDIR(mode):
            hasher.update(f"D {perm:o}\0".encode())
            try:
                fd = os.open(name if name is not None else ".", _O_READ_DIR, dir_fd=parent_fd)
            except OSError as exc:
                raise BuildError(
                    f"cannot read {rel or '.'} in the build context: {exc.strerror}"
                ) from exc
            try:
                self.tree(hasher, fd, rel)
            finally:
                os.close(fd)
        elif stat.S_ISREG(mode):
            assert name is not None
            try:
                fd = os.open(name, _O_READ_FILE, dir_fd=parent_fd)
            except OSError as exc:
                raise BuildError(f"cannot read {rel} in the build context: {exc.strerror}") from exc
            try:
                digest = self.hashes.digest(fd, os.fstat(fd))
            finally:
                os.close(fd)
            hasher.update(f"F {perm:o} {st.st_size} {digest}\0".encode())
        elif stat.S_ISLNK(mode):
            assert name is not None
            target = os.readlink(name, dir_fd=parent_fd)
            hasher.update(b"L\0" + os.fsencode(target) + b"\0")
        else:
            hasher.update(f"O {mode:o} {st.st_rdev}\0".encode())

    def tree(self, hasher: Any, dir_fd: int, rel: str) -> None:
        """A directory's entries, as ``SourceTar`` walks them (ignore rules included)."""
        with os.scandir(dir_fd) as scan:
            listing = sorted((e.name, e.stat(follow_symlinks=False)) for e in scan)
        for base, st in listing:
            child_rel = f"{rel}/{base}" if rel else base
            is_dir = stat.S_ISDIR(st.st_mode)
            if self.ignore.excluded(child_rel, is_dir):
                if not is_dir or not self.ignore.may_descend(child_rel):
                    continue
                hasher.update(b"X\0")  # entered only for what is re-included below
            hasher.update(b"N\0" + os.fsencode(base) + b"\0")
            self.entry(hasher, dir_fd, base, st, child_rel)


# --- opening a context ---------------------------------------------------------------


def open_context(
    source: str,
    *,
    ignorefile: str | Path | None = None,
    tmp_dir: Path | None = None,
    db: Database | None = None,
) -> BuildContext:
    """The context ``source`` names: a directory, a tar archive, or an http(s) URL."""
    hashes = FileHashes(db)
    if source.startswith(("http://", "https://")):
        return _from_url(source, ignorefile, tmp_dir, hashes)
    path = Path(source)
    if path.is_dir():
        root = path.resolve()
        return BuildContext(root, IgnoreMatcher.for_context(root, ignorefile), hashes=hashes)
    if path.is_file():
        unpacked = _unpack_archive(path, tmp_dir, shown=source)
        if unpacked is None:
            raise BuildError(
                f"build context {source} is neither a directory nor a tar archive",
                "give the directory holding the Containerfile, or a tar archive of it",
            )
        return _unpacked(unpacked, ignorefile, hashes)
    raise BuildError(
        f"build context {source} does not exist", "give the directory holding the Containerfile"
    )


def _unpacked(root: Path, ignorefile: str | Path | None, hashes: FileHashes) -> BuildContext:
    try:
        ignore = IgnoreMatcher.for_context(root, ignorefile)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return BuildContext(root, ignore, hashes=hashes, _temporary=root)


def _from_url(
    url: str, ignorefile: str | Path | None, tmp_dir: Path | None, hashes: FileHashes
) -> BuildContext:
    from skiff.build.sources import download

    with tempfile.NamedTemporaryFile(prefix="skiff-context-", dir=tmp_dir) as spool:
        download(url, spool, hashlib.sha256())
        spool.flush()
        unpacked = _unpack_archive(Path(spool.name), tmp_dir, shown=url)
        if unpacked is not None:
            return _unpacked(unpacked, ignorefile, hashes)
        # a plain Containerfile: the context is empty
        root = Path(tempfile.mkdtemp(prefix="skiff-context-", dir=tmp_dir))
        try:
            containerfile = root / ".skiff-containerfile"
            shutil.copyfile(spool.name, containerfile)
        except OSError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise BuildError(f"cannot keep the Containerfile from {url}: {exc.strerror}") from exc
    context = BuildContext(
        root, IgnoreMatcher.from_lines([".skiff-containerfile"]), hashes=hashes, _temporary=root
    )
    context.containerfile = containerfile
    return context


def _unpack_archive(path: Path, tmp_dir: Path | None, *, shown: str) -> Path | None:
    """Unpack a tar archive into a new temporary directory (None: not an archive)."""
    from skiff.build.sources import archive_kind, open_decompressed
    from skiff.errors import SkiffError
    from skiff.storage.archive import apply

    parent = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        kind = archive_kind(parent, path.name)
    finally:
        os.close(parent)
    if kind is None:
        return None
    root = Path(tempfile.mkdtemp(prefix="skiff-context-", dir=tmp_dir))
    try:
        with path.open("rb") as raw:
            stream = open_decompressed(raw, kind)
            apply(stream, root, whiteout_format="vfs", ignore_xattr_errors=True)
    except SkiffError as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise BuildError(
            f"cannot unpack the build context {shown}: {exc.message}", exc.hint
        ) from exc
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return root
