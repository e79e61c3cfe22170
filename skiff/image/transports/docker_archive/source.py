"""Reading images from ``docker save`` archives, without extracting them.

``DockerArchiveReader`` indexes the archive once (``tarstream``; links are
allowed because ``docker save`` symlinks repeated layers) and parses
manifest.json; any number of sources can share it. A source selects its
image when it opens and, on first use, reads the config and inspects each
layer file: an uncompressed layer is served as it is (its digest is the
config's diff ID, which the copy engine verifies), a compressed one (gzip
or zstd, as some non-Docker writers store them) is hashed once so that
``layer_infos_for_copy`` can offer it as the compressed blob it is, while
a request by diff ID gets it decompressed.
"""

from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import BlobUnknown, ImageError, ImageNotFound, ManifestError
from skiff.image.transports.docker_archive.format import (
    MANIFEST_FILE,
    MAX_MANIFEST_JSON,
    ManifestItem,
    choose_item,
    normalized_tag,
    parse_manifest_json,
    synthesised_manifest,
)
from skiff.image.transports.localfs import COPY_CHUNK, os_error
from skiff.image.transports.tarstream import TarIndex, decompressing_reader, sniff_compression
from skiff.image.types import BlobInfo
from skiff.oci import mediatypes as mt
from skiff.oci.config import ImageConfig
from skiff.oci.digest import Digest, sha256_of
from skiff.oci.manifest import MAX_CONFIG_SIZE

if TYPE_CHECKING:
    from types import TracebackType

    from skiff.config import SystemContext
    from skiff.image.transports.docker_archive.transport import DockerArchiveReference
    from skiff.image.types import ClosableReader, ImageReference

_LAYER_TYPES = {"gzip": mt.DOCKER_LAYER_GZIP, "zstd": mt.DOCKER_LAYER_ZSTD}


class DockerArchiveReader:
    """An opened archive: its member index and its manifest.json items."""

    def __init__(self, path: str, ctx: SystemContext) -> None:
        self.path = path
        self.label = f"docker archive {path}"
        self.tar = TarIndex.open(Path(path), self.label, tmp_dir=ctx.tmp_dir, links=True)
        try:
            raw = self.tar.read_member(MANIFEST_FILE, MAX_MANIFEST_JSON)
            if raw is None:
                raise ImageNotFound(
                    f"{self.label} is not a docker archive: it has no {MANIFEST_FILE}",
                    "for an archive of an OCI layout use oci-archive:",
                )
            self.items = parse_manifest_json(raw, self.label)
        except BaseException:
            self.tar.close()
            raise

    def list(self) -> list[list[DockerArchiveReference]]:
        """References to every image, bound to this reader: one per RepoTag, or ``@N``."""
        from skiff.image.transports.docker_archive.transport import DockerArchiveReference

        out = []
        for position, item in enumerate(self.items):
            where = f"manifest.json of {self.label}"
            refs = [
                DockerArchiveReference(self.path, tag=normalized_tag(text, where), reader=self)
                for text in item.repo_tags
            ]
            if not refs:
                refs = [DockerArchiveReference(self.path, source_index=position, reader=self)]
            out.append(refs)
        return out

    def close(self) -> None:
        self.tar.close()

    def __enter__(self) -> DockerArchiveReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class _Layer:
    member: str
    diff_id: Digest
    size: int
    """Size of the member (compressed size if compressed)."""
    compression: str
    """"" for an uncompressed tar, else the algorithm the member is compressed with."""
    stored_digest: Digest | None = None
    """Digest of the compressed member."""
    plain_size: int = -1
    """Size after decompression."""

    @property
    def uncompressed_size(self) -> int:
        return self.plain_size if self.compression else self.size


@dataclass(frozen=True)
class _Prepared:
    config: bytes
    config_digest: Digest
    layers: tuple[_Layer, ...]
    manifest: bytes


class DockerArchiveSource:
    """An ImageSource for one image of an archive."""

    def __init__(
        self, reference: DockerArchiveReference, reader: DockerArchiveReader, *, owns_reader: bool
    ) -> None:
        self._reference = reference
        self._reader = reader
        self._owns_reader = owns_reader
        self._item, _ = choose_item(
            reader.items, reference.tag, reference.source_index, reader.label
        )
        self._lock = threading.Lock()
        self._prepared: _Prepared | None = None

    @property
    def reference(self) -> ImageReference:
        return self._reference

    def _prepare(self) -> _Prepared:
        with self._lock:
            if self._prepared is None:
                self._prepared = _prepare(self._reader, self._item)
            return self._prepared

    def get_manifest(self, instance_digest: Digest | None = None) -> tuple[bytes, str]:
        if instance_digest is not None:
            raise ManifestError(
                f"{self._reader.label} holds single images, not manifest lists "
                f"(asked for instance {instance_digest})"
            )
        return self._prepare().manifest, mt.DOCKER_V2S2

    def get_blob(self, info: BlobInfo) -> tuple[ClosableReader, int]:
        prepared = self._prepare()
        if info.digest == prepared.config_digest:
            return io.BytesIO(prepared.config), len(prepared.config)
        tar = self._reader.tar
        for layer in prepared.layers:
            if info.digest in (layer.diff_id, layer.stored_digest):
                found = tar.open_member(layer.member)
                if found is None:  # indexed moments ago; the index does not change
                    raise BlobUnknown(f"layer {layer.member} vanished from {self._reader.label}")
                stream, size = found
                if layer.compression and info.digest == layer.diff_id:
                    return decompressing_reader(stream, layer.compression), layer.plain_size
                return stream, size
        raise BlobUnknown(
            f"blob {info.digest} is not part of image {self._item.config} in {self._reader.label}"
        )

    @property
    def has_thread_safe_get_blob(self) -> bool:
        return True

    def get_signatures(self, instance_digest: Digest | None = None) -> list[bytes]:
        return []

    def layer_infos_for_copy(self, instance_digest: Digest | None = None) -> list[BlobInfo] | None:
        """Compressed layers offered as stored, so copying them does not recompress."""
        prepared = self._prepare()
        if not any(layer.compression in _LAYER_TYPES for layer in prepared.layers):
            return None
        infos = []
        for layer in prepared.layers:
            if layer.compression in _LAYER_TYPES:
                infos.append(
                    BlobInfo(
                        digest=layer.stored_digest,
                        size=layer.size,
                        media_type=_LAYER_TYPES[layer.compression],
                        compression=layer.compression,
                    )
                )
            else:
                infos.append(
                    BlobInfo(
                        digest=layer.diff_id,
                        size=layer.uncompressed_size,
                        media_type=mt.DOCKER_LAYER,
                        compression="",
                    )
                )
        return infos

    def close(self) -> None:
        if self._owns_reader:
            self._reader.close()


def _prepare(reader: DockerArchiveReader, item: ManifestItem) -> _Prepared:
    tar = reader.tar
    config = tar.read_member(item.config, MAX_CONFIG_SIZE)
    if config is None:
        raise BlobUnknown(
            f"config {item.config} is missing from {reader.label}",
            "the archive is incomplete; save the image again",
        )
    diff_ids = ImageConfig.from_bytes(config).diff_ids
    if len(diff_ids) != len(item.layers):
        raise ManifestError(
            f"image {item.config} in {reader.label} lists {len(item.layers)} layers but its "
            f"config has {len(diff_ids)} diff IDs",
            "the archive is corrupt",
        )
    layers = tuple(
        _inspect_layer(reader, member, diff_id)
        for member, diff_id in zip(item.layers, diff_ids, strict=True)
    )
    config_digest = sha256_of(config)
    manifest = synthesised_manifest(
        config_digest,
        len(config),
        [(layer.diff_id, layer.uncompressed_size) for layer in layers],
    )
    return _Prepared(config, config_digest, layers, manifest)


def _inspect_layer(reader: DockerArchiveReader, member: str, diff_id: Digest) -> _Layer:
    found = reader.tar.open_member(member)
    if found is None:
        raise BlobUnknown(
            f"layer {member} (diff ID {diff_id}) is missing from {reader.label}",
            "the archive is incomplete; save the image again",
        )
    stream, size = found
    compression = sniff_compression(reader.tar.read_head(member, 8))
    if not compression:
        return _Layer(member, diff_id, size, "")
    # one pass: digest of the stored bytes, size of the decompressed ones
    hashing = _Hashing(stream)
    plain = decompressing_reader(hashing, compression)
    plain_size = 0
    try:
        while chunk := plain.read(COPY_CHUNK):
            plain_size += len(chunk)
        hashing.drain()
    except OSError as exc:
        if exc.errno is not None:
            raise os_error(exc, f"cannot read layer {member} in {reader.label}") from exc
        raise _corrupt(member, compression, reader.label, exc) from exc
    except (EOFError, ValueError) as exc:
        raise _corrupt(member, compression, reader.label, exc) from exc
    finally:
        plain.close()
    return _Layer(member, diff_id, size, compression, hashing.digest, plain_size)


def _corrupt(member: str, compression: str, label: str, exc: Exception) -> ImageError:
    return ManifestError(
        f"layer {member} in {label} is {compression}-compressed but does not decompress: {exc}",
        "the archive is corrupt",
    )


class _Hashing:
    """A pass-through reader that hashes what it reads."""

    def __init__(self, stream: ClosableReader) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        self._hash.update(data)
        return data

    def drain(self) -> None:
        """Hash what the decompressor did not need (trailing padding)."""
        while self.read(COPY_CHUNK):
            pass

    @property
    def digest(self) -> Digest:
        return Digest("sha256", self._hash.hexdigest())
