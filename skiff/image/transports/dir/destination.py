"""Writing one image into a ``dir:`` directory.

containers/image's rule decides which directories may be written: a new
or empty one, or one that already holds a ``dir:`` image (it has a
``version`` file); anything else is refused so that ``dir:$HOME`` cannot
wipe a home directory.

Unlike containers/image, which empties the directory when the destination
opens, the previous image stays intact until ``commit``: blobs are written
under temporary names and renamed to their hex digest (content addressing
makes them harmless to a reader of the old image), manifests and
signatures are kept in memory, and ``commit`` writes instance manifests,
signatures and ``version``, replaces ``manifest.json`` atomically, and only
then removes what belongs to the old image. ``close`` without ``commit``
removes the blobs this destination added (and the directory, if it made
it), so an aborted copy leaves the old image as it was.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import DigestMismatch, ImageError, InvalidReference
from skiff.image.transports.dir.layout import (
    MANIFEST_FILE,
    VERSION,
    VERSION_FILE,
    VERSION_PREFIX,
    blob_name,
    label,
    manifest_name,
    signature_name,
)
from skiff.image.transports.localfs import (
    atomic_write,
    copy_stream_to_fd,
    fsync_dir,
    os_error,
    remove_quietly,
    temp_file,
)
from skiff.image.types import BlobInfo, BlobStream, Compression

if TYPE_CHECKING:
    from skiff.image.transports.dir.transport import DirReference
    from skiff.image.types import ImageReference
    from skiff.oci.digest import Digest


class DirDestination:
    def __init__(self, reference: DirReference) -> None:
        self._reference = reference
        self._root = Path(reference.path)
        self._label = label(self._root)
        self._lock = threading.Lock()
        self._created: list[Path] = []
        self._keep: set[str] = set()
        self._added: set[str] = set()
        self._manifests: dict[Digest | None, bytes] = {}
        self._signatures: dict[Digest | None, list[bytes]] = {}
        self._committed = False
        self._closed = False
        self._prepare_directory()

    # --- capabilities --------------------------------------------------------

    @property
    def reference(self) -> ImageReference:
        return self._reference

    def supported_manifest_types(self) -> list[str]:
        return []

    @property
    def desired_layer_compression(self) -> Compression:
        return Compression.PRESERVE

    @property
    def accepts_foreign_layer_urls(self) -> bool:
        return False

    @property
    def must_match_runtime_os(self) -> bool:
        return False

    @property
    def has_thread_safe_put_blob(self) -> bool:
        return True

    def supports_signatures(self) -> bool:
        return True

    # --- setup ---------------------------------------------------------------

    def _prepare_directory(self) -> None:
        root = self._root
        try:
            if not root.exists():
                self._make_dirs(root)
                return
            if not root.is_dir():
                raise InvalidReference(
                    f"cannot write {self._label}: {root} is not a directory",
                    "give a directory path (it is created if missing)",
                )
            if not any(root.iterdir()):
                return
            try:
                version = (root / VERSION_FILE).read_bytes()[:256]
            except FileNotFoundError:
                version = b""
        except OSError as exc:
            raise os_error(exc, f"cannot prepare {root}") from exc
        if not version.startswith(VERSION_PREFIX):
            raise InvalidReference(
                f"refusing to write {self._label}: {root} is not empty and does not hold a "
                "dir: image (no version file)",
                "give an empty or new directory; skiff replaces only what skopeo/skiff wrote",
            )

    def _make_dirs(self, path: Path) -> None:
        missing = []
        current = path
        while not current.exists() and current.parent != current:
            missing.append(current)
            current = current.parent
        for directory in reversed(missing):
            directory.mkdir()
            self._created.append(directory)

    # --- blobs ---------------------------------------------------------------

    def try_reusing_blob(self, info: BlobInfo, can_substitute: bool) -> BlobInfo | None:
        if info.digest is None:
            return None
        name = blob_name(info.digest)
        try:
            size = (self._root / name).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_error(exc, f"cannot look up blob {info.digest} in {self._label}") from exc
        with self._lock:
            self._keep.add(name)
        return BlobInfo(
            digest=info.digest,
            size=size,
            media_type=info.media_type,
            urls=info.urls,
            annotations=info.annotations,
            compression=info.compression,
        )

    def put_blob(self, stream: BlobStream, info: BlobInfo, is_config: bool) -> BlobInfo:
        try:
            fd, tmp = temp_file(self._root, ".put-")
        except OSError as exc:
            raise os_error(exc, f"cannot create a blob file in {self._root}") from exc
        try:
            try:
                copy_stream_to_fd(stream, fd, writeback=True)
                os.fchmod(fd, 0o644)
                os.fsync(fd)
            finally:
                os.close(fd)
            digest, size = stream.digest, stream.size
            if info.digest is not None and info.digest != digest:
                raise DigestMismatch(f"blob announced as {info.digest} was {digest}")
            name = blob_name(digest)
            with self._lock:
                final = self._root / name
                if final.exists():
                    tmp.unlink()
                else:
                    tmp.replace(final)
                    self._added.add(name)
                self._keep.add(name)
        except OSError as exc:
            remove_quietly(tmp)
            raise os_error(exc, f"cannot store a blob in {self._label}") from exc
        except BaseException:
            remove_quietly(tmp)
            raise
        return BlobInfo(
            digest=digest,
            size=size,
            media_type=info.media_type,
            urls=info.urls,
            annotations=info.annotations,
            compression=info.compression,
        )

    # --- manifests, signatures, commit --------------------------------------

    def put_manifest(self, raw: bytes, instance_digest: Digest | None = None) -> None:
        self._manifests[instance_digest] = raw

    def put_signatures(
        self, signatures: list[bytes], instance_digest: Digest | None = None
    ) -> None:
        self._signatures[instance_digest] = list(signatures)

    def commit(self) -> None:
        top = self._manifests.get(None)
        if top is None:
            raise ImageError(f"nothing to commit to {self._label}: no manifest was written")
        root = self._root
        try:
            for instance, raw in self._manifests.items():
                if instance is not None:
                    self._write(manifest_name(instance), raw)
            for instance, signatures in self._signatures.items():
                for index, signature in enumerate(signatures):
                    self._write(signature_name(index, instance), signature)
            self._write(VERSION_FILE, VERSION)
            fsync_dir(root)  # the renamed blobs
            self._write(MANIFEST_FILE, top)  # last: the image appears
            self._committed = True
            self._remove_stale()
        except OSError as exc:
            raise os_error(exc, f"cannot write {self._label}") from exc

    def _write(self, name: str, data: bytes) -> None:
        atomic_write(self._root / name, data)
        self._keep.add(name)

    def _remove_stale(self) -> None:
        """Remove what the previous image left: anything this commit did not write or reuse."""
        for entry in self._root.iterdir():
            if entry.name in self._keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._committed:
            return
        for name in self._added:
            try:
                (self._root / name).unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise os_error(exc, f"cannot remove {self._root / name}") from exc
        for directory in reversed(self._created):
            try:
                directory.rmdir()
            except OSError:
                continue  # no longer empty (not ours) or already gone: keep it
