"""Writing images as a ``docker save`` archive, one or several per file.

``DockerArchiveWriter`` owns the file being written: a tar streamed into a
temporary file beside FILE (``localfs.ArchiveOutput``), renamed onto FILE
when the writer commits. Blobs go into the tar as they arrive — layers as
``<hex>.tar``, configs as ``<hex>.json``, as containers/image names them —
and each image's manifest.json item and legacy metadata are added when its
destination commits; manifest.json and ``repositories`` are written last.

Single image: ``DockerArchiveReference.new_image_destination`` makes a
writer the destination owns; the destination's commit commits the file.
Several images (``skiff save -m``)::

    with DockerArchiveWriter(path, ctx) as writer:
        for tags in images:
            copy_image(src, writer.new_reference(tags), ...)   # each commits its item
        writer.commit()                                        # the file appears

A tar member's size precedes its data, so a layer whose digest and size
are announced (``BlobInfo``) is streamed straight into the archive; one the
copy engine is decompressing (size unknown) is first spooled to an
anonymous file in ``ctx.tmp_dir``. A stream that fails halfway leaves a
broken member, so the writer is then marked failed and refuses to commit.
A blob already in the archive (a layer shared by two images) is written once.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import (
    BlobUnknown,
    DigestMismatch,
    ImageError,
    InvalidReference,
    ManifestError,
    UnsupportedConversion,
)
from skiff.image.transports.docker_archive.format import (
    LEGACY_CONFIG_FILE,
    LEGACY_LAYER_FILE,
    LEGACY_VERSION_FILE,
    MANIFEST_FILE,
    REPOSITORIES_FILE,
    config_member,
    go_json,
    layer_member,
    legacy_layer_ids,
    legacy_layer_json,
    manifest_item_json,
    repo_tag,
)
from skiff.image.transports.localfs import ArchiveOutput, copy_stream_to_fd, os_error
from skiff.image.transports.tarstream import TarWriter
from skiff.image.types import BlobInfo, BlobStream, Compression
from skiff.oci import mediatypes as mt
from skiff.oci.manifest import MAX_CONFIG_SIZE, ImageManifest, parse_manifest

if TYPE_CHECKING:
    from types import TracebackType

    from skiff.config import SystemContext
    from skiff.image.transports.docker_archive.transport import DockerArchiveReference
    from skiff.image.types import ImageReference
    from skiff.oci.digest import Digest
    from skiff.oci.reference import NamedReference


class DockerArchiveWriter:
    """One archive file being written; shared by the destinations of its images."""

    def __init__(self, path: str, ctx: SystemContext) -> None:
        self.path = path
        self.label = f"docker archive {path}"
        self._tmp_dir = ctx.tmp_dir
        self._output = ArchiveOutput(Path(path), self.label, ctx.tmp_dir, refuse_existing=True)
        self._tar = TarWriter(self._output.fd)
        self._lock = threading.Lock()
        self._sizes: dict[Digest, int] = {}
        self._configs: dict[Digest, bytes] = {}
        self._items: list[dict[str, Any]] = []
        self._item_by_config: dict[Digest, int] = {}
        self._repositories: dict[str, dict[str, str]] = {}
        self._legacy_written: set[str] = set()
        self._failed: BaseException | None = None
        self._finished = False

    # --- references ----------------------------------------------------------

    def new_reference(self, tags: Sequence[NamedReference] = ()) -> DockerArchiveReference:
        """A reference whose destination adds one image (with ``tags``) to this file."""
        from skiff.image.transports.docker_archive.transport import DockerArchiveReference

        tagged = [t.tag_or_latest() for t in tags]
        for tag in tagged:
            if tag.tag is None:
                raise InvalidReference(
                    f"{self.label}: {tag} has a digest but no tag",
                    "archives record NAME:TAG; give a tag",
                )
        first = tagged[0] if tagged else None
        return DockerArchiveReference(
            self.path, tag=first, extra_tags=tuple(tagged[1:]), writer=self
        )

    # --- blobs ---------------------------------------------------------------

    def has_blob(self, digest: Digest) -> int | None:
        with self._lock:
            return self._sizes.get(digest)

    def add_blob(self, stream: BlobStream, info: BlobInfo, is_config: bool) -> tuple[Digest, int]:
        with self._lock:
            self._check_usable()
            try:
                if is_config:
                    return self._add_config(stream)
                if info.digest is not None and info.size >= 0:
                    return self._add_announced_layer(stream, info.digest, info.size)
                return self._add_spooled_layer(stream)
            except OSError as exc:
                self._failed = exc
                raise os_error(exc, f"cannot write {self.path}") from exc
            except BaseException as exc:
                self._failed = exc
                raise

    def _check_usable(self) -> None:
        if self._finished:
            raise ImageError(f"{self.label} is already committed or closed")
        if self._failed is not None:
            raise ImageError(
                f"{self.label} cannot be completed: writing a blob failed earlier ({self._failed})",
                "write the archive again",
            )

    def _add_config(self, stream: BlobStream) -> tuple[Digest, int]:
        data = stream.read(MAX_CONFIG_SIZE + 1)
        if len(data) > MAX_CONFIG_SIZE:
            raise ManifestError(f"image config is above the {MAX_CONFIG_SIZE}-byte limit")
        while chunk := stream.read(MAX_CONFIG_SIZE):  # to EOF, so the stream verifies
            data += chunk
        digest, size = stream.digest, stream.size
        if digest not in self._sizes:
            self._tar.add_bytes(config_member(digest), data, mode=0o444)
            self._sizes[digest] = size
        self._configs[digest] = data
        return digest, size

    def _add_announced_layer(
        self, stream: BlobStream, digest: Digest, size: int
    ) -> tuple[Digest, int]:
        if digest in self._sizes:
            while stream.read(1 << 20):  # verify and discard: the archive has it
                pass
        else:
            self._tar.add_stream(layer_member(digest), size, stream, mode=0o444)
            self._sizes[digest] = size
        if stream.digest != digest:
            raise DigestMismatch(f"layer announced as {digest} was {stream.digest}")
        return digest, size

    def _add_spooled_layer(self, stream: BlobStream) -> tuple[Digest, int]:
        with tempfile.TemporaryFile(dir=self._tmp_dir) as spool:
            copy_stream_to_fd(stream, spool.fileno())
            digest, size = stream.digest, stream.size
            if digest not in self._sizes:
                self._tar.add_fd(layer_member(digest), spool.fileno(), size, mode=0o444)
                self._sizes[digest] = size
        return digest, size

    # --- images --------------------------------------------------------------

    def add_image(
        self, config: Digest, layers: Sequence[Digest], tags: Sequence[NamedReference]
    ) -> None:
        """Record a complete image: its manifest.json item and legacy metadata."""
        with self._lock:
            self._check_usable()
            config_json = self._configs.get(config)
            if config_json is None:
                raise BlobUnknown(f"config {config} was not written to {self.label}")
            for digest in layers:
                if digest not in self._sizes:
                    raise BlobUnknown(f"layer {digest} was not written to {self.label}")
            try:
                top = self._write_legacy_layers(layers, config_json)
            except OSError as exc:
                self._failed = exc
                raise os_error(exc, f"cannot write {self.path}") from exc
            self._add_item(config, layers, [repo_tag(t) for t in tags])
            if top:
                for tag in tags:
                    assert tag.tag is not None
                    self._repositories.setdefault(tag.name, {})[tag.tag] = top

    def _write_legacy_layers(self, layers: Sequence[Digest], config_json: bytes) -> str:
        try:
            config_obj = json.loads(config_json)
        except ValueError as exc:
            raise ManifestError(f"image config in {self.label} is not JSON: {exc}") from exc
        ids = legacy_layer_ids(layers)
        parent = ""
        for position, (layer_id, digest) in enumerate(zip(ids, layers, strict=True)):
            if layer_id not in self._legacy_written:
                top = position == len(ids) - 1 and isinstance(config_obj, dict)
                self._tar.add_symlink(
                    f"{layer_id}/{LEGACY_LAYER_FILE}", f"../{layer_member(digest)}"
                )
                self._tar.add_bytes(f"{layer_id}/{LEGACY_VERSION_FILE}", b"1.0", mode=0o444)
                self._tar.add_bytes(
                    f"{layer_id}/{LEGACY_CONFIG_FILE}",
                    legacy_layer_json(layer_id, parent, config_obj if top else None),
                    mode=0o444,
                )
                self._legacy_written.add(layer_id)
            parent = layer_id
        return parent

    def _add_item(self, config: Digest, layers: Sequence[Digest], tags: list[str]) -> None:
        position = self._item_by_config.get(config)
        if position is None:
            self._item_by_config[config] = len(self._items)
            self._items.append(manifest_item_json(config, tags, layers))
            return
        item = self._items[position]
        if item["Layers"] != manifest_item_json(config, [], layers)["Layers"]:
            raise ImageError(f"{self.label}: two images share config {config} but not their layers")
        for tag in tags:
            if tag not in item["RepoTags"]:
                item["RepoTags"].append(tag)

    # --- the file ------------------------------------------------------------

    def commit(self) -> None:
        """Write manifest.json and repositories and put the archive in place."""
        with self._lock:
            self._check_usable()
            try:
                self._tar.add_bytes(MANIFEST_FILE, go_json(self._items), mode=0o444)
                self._tar.add_bytes(REPOSITORIES_FILE, go_json(self._repositories), mode=0o444)
                self._tar.finish()
            except OSError as exc:
                self._failed = exc
                raise os_error(exc, f"cannot write {self.path}") from exc
            self._output.commit()
            self._finished = True

    def close(self) -> None:
        """Discard the file unless it was committed."""
        with self._lock:
            self._finished = True
            self._output.close()

    def __enter__(self) -> DockerArchiveWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class DockerArchiveDestination:
    """An ImageDestination adding one image to a DockerArchiveWriter."""

    def __init__(
        self, reference: DockerArchiveReference, writer: DockerArchiveWriter, *, owns_writer: bool
    ) -> None:
        self._reference = reference
        self._writer = writer
        self._owns_writer = owns_writer
        self._image: ImageManifest | None = None

    @property
    def reference(self) -> ImageReference:
        return self._reference

    def supported_manifest_types(self) -> list[str]:
        return [mt.DOCKER_V2S2]

    @property
    def desired_layer_compression(self) -> Compression:
        return Compression.DECOMPRESS

    @property
    def accepts_foreign_layer_urls(self) -> bool:
        return False

    @property
    def must_match_runtime_os(self) -> bool:
        return False

    @property
    def has_thread_safe_put_blob(self) -> bool:
        return False

    def supports_signatures(self) -> bool:
        return False

    def try_reusing_blob(self, info: BlobInfo, can_substitute: bool) -> BlobInfo | None:
        if info.digest is None:
            return None
        size = self._writer.has_blob(info.digest)
        if size is None:
            return None
        return BlobInfo(
            digest=info.digest, size=size, media_type=info.media_type, compression=info.compression
        )

    def put_blob(self, stream: BlobStream, info: BlobInfo, is_config: bool) -> BlobInfo:
        digest, size = self._writer.add_blob(stream, info, is_config)
        return BlobInfo(
            digest=digest, size=size, media_type=info.media_type, compression=info.compression
        )

    def put_manifest(self, raw: bytes, instance_digest: Digest | None = None) -> None:
        if instance_digest is not None:
            raise UnsupportedConversion(
                f"{self._writer.label} cannot hold manifest lists",
                "copy a single image (choose the platform), not the whole list",
            )
        manifest = parse_manifest(raw)
        if not isinstance(manifest, ImageManifest) or manifest.media_type != mt.DOCKER_V2S2:
            raise UnsupportedConversion(
                f"{self._writer.label} needs a Docker schema 2 manifest, got "
                f"{getattr(manifest, 'media_type', 'another kind')}",
            )
        self._image = manifest

    def put_signatures(
        self, signatures: list[bytes], instance_digest: Digest | None = None
    ) -> None:
        if signatures:
            raise UnsupportedConversion(
                f"{self._writer.label} cannot store signatures",
                "copy with --remove-signatures",
            )

    def commit(self) -> None:
        if self._image is None:
            raise ImageError(f"nothing to commit to {self._writer.label}: no manifest was written")
        self._writer.add_image(
            self._image.config.digest,
            [layer.digest for layer in self._image.layers],
            self._reference.tags,
        )
        if self._owns_writer:
            self._writer.commit()

    def close(self) -> None:
        if self._owns_writer:
            self._writer.close()
