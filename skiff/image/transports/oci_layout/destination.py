"""Writing one image into an OCI layout directory, and deleting one from it.

Blobs (and manifests, which are blobs too) are written to a temporary name
under the layout's blobs directory, fsynced, and renamed to ``ALG/HEX``
once the stream reached its end and the copy engine's digest is known. They
are content-addressed, so they may appear before commit; what names the
image — its index.json entry — appears only in ``commit``: index.json is
re-read under an exclusive lock on the layout directory, the new entry
replaces any entry with the same ref name (and an unnamed entry of the same
digest), and the file is replaced atomically.

``close`` without ``commit`` deletes the blobs this destination added that
no entry of the (re-read) index.json reaches, and the directories it
created if they are empty again. With a shared blob directory nothing is
deleted: other layouts may use the blobs, and they are verified content.

Differences from containers/image: an existing entry with the same ref name
is replaced rather than kept without its name; a non-empty directory that
is not a layout is refused rather than written into; writes are atomic and
serialised by a lock.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import DigestMismatch, ImageError, InvalidReference, UnsupportedConversion
from skiff.image.transports.localfs import (
    atomic_write,
    copy_stream_to_fd,
    fsync_dir,
    locked_dir,
    os_error,
    remove_quietly,
    temp_file,
    write_all,
)
from skiff.image.transports.oci_layout.layout import (
    INDEX_FILE,
    LAYOUT_FILE,
    LAYOUT_FILE_CONTENT,
    REF_NAME_ANNOTATION,
    DirectoryLayout,
    directory_reader,
    dump_index,
    index_descriptors,
    parse_index_json,
    reachable,
    select_descriptor,
)
from skiff.image.types import BlobInfo, BlobStream, Compression
from skiff.oci import mediatypes as mt
from skiff.oci.manifest import Descriptor, guess_media_type, manifest_digest

if TYPE_CHECKING:
    from skiff.image.transports.oci_layout.transport import OCILayoutReference
    from skiff.image.types import ImageReference
    from skiff.oci.digest import Digest


class OCILayoutDestination:
    """An ImageDestination writing one index.json entry of a layout directory.

    ``durable`` False skips fsync: for layouts in a temporary directory that
    is archived (and fsynced) as a whole afterwards.
    """

    def __init__(
        self,
        reference: ImageReference,
        root: Path,
        image: str,
        shared_blob_dir: Path | None = None,
        *,
        durable: bool = True,
    ) -> None:
        self._reference = reference
        self._layout = DirectoryLayout(root, shared_blob_dir)
        self._image = image
        self._durable = durable
        self._lock = threading.Lock()
        self._created: list[Path] = []
        self._added: set[Digest] = set()
        self._dirs_to_sync: set[Path] = set()
        self._pending: Descriptor | None = None
        self._committed = False
        self._closed = False
        self._check_target()
        self._ensure_dir(root)

    # --- capabilities --------------------------------------------------------

    @property
    def reference(self) -> ImageReference:
        return self._reference

    def supported_manifest_types(self) -> list[str]:
        return [mt.OCI_MANIFEST, mt.OCI_INDEX]

    @property
    def desired_layer_compression(self) -> Compression:
        return Compression.PRESERVE

    @property
    def accepts_foreign_layer_urls(self) -> bool:
        return True

    @property
    def must_match_runtime_os(self) -> bool:
        return False

    @property
    def has_thread_safe_put_blob(self) -> bool:
        return True

    def supports_signatures(self) -> bool:
        return False

    # --- setup ---------------------------------------------------------------

    @property
    def label(self) -> str:
        return self._layout.label

    def _check_target(self) -> None:
        root = self._layout.root
        try:
            if not root.exists():
                return
            if not root.is_dir():
                raise InvalidReference(
                    f"cannot write an OCI layout to {root}: it exists and is not a directory",
                    "give a directory path (it is created if missing)",
                )
            names = {entry.name for entry in root.iterdir()}
        except OSError as exc:
            raise os_error(exc, f"cannot inspect {root}") from exc
        if names and not names & {INDEX_FILE, LAYOUT_FILE}:
            raise InvalidReference(
                f"refusing to write an OCI layout into {root}: the directory is not empty and "
                "is not an OCI layout",
                "give an empty or new directory, or an existing layout",
            )
        if INDEX_FILE in names:
            # fail now, not after copying every blob, if index.json is corrupt
            index_descriptors(parse_index_json(self._layout.read_index(), self.label), self.label)

    def _ensure_dir(self, path: Path) -> None:
        missing: list[Path] = []
        current = path
        while not current.exists():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise os_error(exc, f"cannot create {directory}") from exc
            with self._lock:
                self._created.append(directory)
                self._dirs_to_sync.add(directory.parent)

    # --- blobs ---------------------------------------------------------------

    def try_reusing_blob(self, info: BlobInfo, can_substitute: bool) -> BlobInfo | None:
        if info.digest is None:
            return None
        size = self._layout.has_blob(info.digest)
        if size is None:
            return None
        return BlobInfo(
            digest=info.digest,
            size=size,
            media_type=info.media_type,
            urls=info.urls,
            annotations=info.annotations,
            compression=info.compression,
        )

    def put_blob(self, stream: BlobStream, info: BlobInfo, is_config: bool) -> BlobInfo:
        self._store(stream, info)
        return BlobInfo(
            digest=stream.digest,
            size=stream.size,
            media_type=info.media_type,
            urls=info.urls,
            annotations=info.annotations,
            compression=info.compression,
        )

    def _store(self, stream: BlobStream, info: BlobInfo) -> None:
        blobs_root = self._layout.blobs_root
        self._ensure_dir(blobs_root)
        try:
            fd, tmp = temp_file(blobs_root, ".put-")
        except OSError as exc:
            raise os_error(exc, f"cannot create a blob file in {blobs_root}") from exc
        try:
            try:
                copy_stream_to_fd(stream, fd, writeback=self._durable)
                os.fchmod(fd, 0o644)
                if self._durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            digest, size = stream.digest, stream.size
            _check_announced(info, digest, size)
            self._place(tmp, digest)
        except OSError as exc:
            remove_quietly(tmp)
            raise os_error(exc, f"cannot store a blob in {self.label}") from exc
        except BaseException:
            remove_quietly(tmp)
            raise

    def _write_small_blob(self, data: bytes, digest: Digest) -> None:
        blobs_root = self._layout.blobs_root
        self._ensure_dir(blobs_root)
        try:
            fd, tmp = temp_file(blobs_root, ".put-")
        except OSError as exc:
            raise os_error(exc, f"cannot create a blob file in {blobs_root}") from exc
        try:
            try:
                write_all(fd, data)
                os.fchmod(fd, 0o644)
                if self._durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self._place(tmp, digest)
        except OSError as exc:
            remove_quietly(tmp)
            raise os_error(exc, f"cannot store manifest {digest} in {self.label}") from exc
        except BaseException:
            remove_quietly(tmp)
            raise

    def _place(self, tmp: Path, digest: Digest) -> None:
        final = self._layout.blob_path(digest)
        self._ensure_dir(final.parent)
        with self._lock:
            if final.exists():
                tmp.unlink()  # same content already there (content addressing)
                return
            tmp.replace(final)
            self._added.add(digest)
            self._dirs_to_sync.add(final.parent)

    # --- manifests, signatures, commit --------------------------------------

    def put_manifest(self, raw: bytes, instance_digest: Digest | None = None) -> None:
        digest = instance_digest or manifest_digest(raw)
        self._write_small_blob(raw, digest)
        if instance_digest is not None:
            return
        media_type = guess_media_type(raw)
        if not media_type:
            raise UnsupportedConversion(
                f"cannot store a manifest of unknown media type in {self.label}",
                "the manifest declares no mediaType and its shape is not recognised",
            )
        annotations = {REF_NAME_ANNOTATION: self._image} if self._image else {}
        self._pending = Descriptor(media_type, digest, len(raw), annotations=annotations)

    def put_signatures(
        self, signatures: list[bytes], instance_digest: Digest | None = None
    ) -> None:
        if signatures:
            raise UnsupportedConversion(
                f"{self.label} cannot store simple-signing signatures",
                "copy with --remove-signatures, or use a dir: or registry destination",
            )

    def commit(self) -> None:
        if self._pending is None:
            raise ImageError(f"nothing to commit to {self.label}: no manifest was written")
        root = self._layout.root
        try:
            if self._durable:
                for directory in sorted(self._dirs_to_sync):
                    fsync_dir(directory)
            with locked_dir(root):
                if not (root / LAYOUT_FILE).exists():
                    atomic_write(root / LAYOUT_FILE, LAYOUT_FILE_CONTENT, durable=self._durable)
                if (root / INDEX_FILE).exists():
                    obj = parse_index_json(self._layout.read_index(), self.label)
                    index_descriptors(obj, self.label)
                else:
                    obj = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
                obj["manifests"] = _with_entry(obj["manifests"], self._pending)
                atomic_write(root / INDEX_FILE, dump_index(obj), durable=self._durable)
        except OSError as exc:
            raise os_error(exc, f"cannot update {root / INDEX_FILE}") from exc
        self._committed = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._committed:
            return
        if self._added and self._layout.shared_blob_dir is None:
            self._remove_unreferenced_added_blobs()
        for directory in reversed(self._created):
            try:
                directory.rmdir()
            except OSError:
                continue  # not empty (someone else's content) or already gone: keep it

    def _remove_unreferenced_added_blobs(self) -> None:
        root = self._layout.root
        with locked_dir(root):
            keep: set[Digest] = set()
            if (root / INDEX_FILE).exists():
                obj = parse_index_json(self._layout.read_index(), self.label)
                entries = index_descriptors(obj, self.label)
                keep = reachable(entries, directory_reader(self._layout))
            for digest in self._added - keep:
                try:
                    self._layout.blob_path(digest).unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise os_error(exc, f"cannot remove blob {digest} from {self.label}") from exc


def _check_announced(info: BlobInfo, digest: Digest, size: int) -> None:
    """The engine verified the stream; an announced value that differs is a bug upstream."""
    if info.digest is not None and info.digest != digest:
        raise DigestMismatch(f"blob announced as {info.digest} was {digest}")
    if info.size >= 0 and info.size != size:
        raise DigestMismatch(f"blob {digest} announced as {info.size} bytes was {size}")


def _entry_name(entry: Any) -> str:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    if isinstance(annotations, dict):
        name = annotations.get(REF_NAME_ANNOTATION)
        if isinstance(name, str):
            return name
    return ""


def _with_entry(entries: list[Any], new: Descriptor) -> list[Any]:
    """index.json entries with ``new`` in the place of the entries it replaces.

    Replaced: entries with the same ref name, and unnamed entries of the
    same digest (the same image, now named or re-added).
    """
    name = new.annotations.get(REF_NAME_ANNOTATION, "")
    out: list[Any] = []
    position: int | None = None
    for entry in entries:
        entry_name = _entry_name(entry)
        same_name = bool(name) and entry_name == name
        same_unnamed = not entry_name and entry.get("digest") == str(new.digest)
        if same_name or same_unnamed:
            if position is None:
                position = len(out)
            continue
        out.append(entry)
    out.insert(len(out) if position is None else position, new.to_json())
    return out


def delete_image(reference: OCILayoutReference, root: Path, shared_blob_dir: Path | None) -> None:
    """Remove the image's index.json entry, then the blobs only it reached.

    index.json is rewritten first, so an interruption leaves unreferenced
    blobs, never an entry whose blobs are gone. Blobs in a shared blob
    directory are kept: other layouts may use them.
    """
    layout = DirectoryLayout(root, shared_blob_dir)
    shown = str(reference)
    with locked_dir(root):
        obj = parse_index_json(layout.read_index(), layout.label)
        entries = index_descriptors(obj, layout.label)
        chosen = select_descriptor(
            entries, reference.image, reference.source_index, layout.label, shown
        )
        position = next(i for i, entry in enumerate(entries) if entry is chosen)
        remaining = entries[:position] + entries[position + 1 :]
        del obj["manifests"][position]
        atomic_write(layout.index_path, dump_index(obj))
        if shared_blob_dir is not None:
            return
        read = directory_reader(layout)
        doomed = reachable([chosen], read) - reachable(remaining, read)
        for digest in doomed:
            try:
                layout.blob_path(digest).unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise os_error(exc, f"cannot remove blob {digest} from {layout.label}") from exc
