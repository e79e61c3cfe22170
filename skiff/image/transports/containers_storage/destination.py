"""Writing an image into the local store.

Layers are unpacked while they stream in (``put_blob``): decompressing,
hashing and writing run together, and with the overlay driver several
layers unpack in parallel, each into its own staging directory (an overlay
layer's content does not depend on its parent). vfs layers are full copies
of their parent, so their blobs are spooled to disk and applied in order at
commit. ``commit`` then orders the layers by the config's diff IDs, checks
each unpacked layer's diff ID against the config, creates the layers by
chain ID (reusing any that exist), and records the image — only then does
the image's name appear. ``close`` without ``commit`` discards everything.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from skiff.config import SystemContext
from skiff.errors import (
    DigestMismatch,
    ImageError,
    InvalidArchive,
    LayerUnknown,
    ManifestError,
    StorageError,
)
from skiff.image.transports.containers_storage.source import encode_signatures
from skiff.image.transports.containers_storage.transport import StorageReference
from skiff.image.types import BlobInfo, BlobStream, Compression
from skiff.oci import mediatypes as mt
from skiff.oci.config import ImageConfig
from skiff.oci.digest import Digest
from skiff.oci.manifest import ImageIndex, ImageManifest, manifest_digest, parse_manifest
from skiff.oci.platform import wanted_platform
from skiff.storage.archive import apply as apply_layer_tar
from skiff.storage.layers import CompressedBlob, Staging, chain_ids
from skiff.storage.store import Store

log = logging.getLogger(__name__)


class LayerVanished(ImageError):
    """A layer the copy skipped because the store had it was removed before commit
    (another process deleted the image using it); copying again fetches it."""


@dataclass
class _Unpacked:
    """A layer blob already unpacked into a staging dir (overlay)."""

    staging: Staging
    diff_id: Digest
    size: int
    compression: str
    compressed_size: int


@dataclass
class _Spooled:
    """A layer blob saved to a file, to be applied at commit (vfs)."""

    path: Path
    diff_id: Digest | None
    compression: str


class StorageDestination:
    def __init__(self, ref: StorageReference, ctx: SystemContext) -> None:
        self._ref = ref
        self._ctx = ctx
        self.store = Store.open(ctx)
        self._lock = threading.Lock()
        self._unpacked: dict[Digest, _Unpacked] = {}
        self._spooled: dict[Digest, _Spooled] = {}
        self._configs: dict[Digest, bytes] = {}
        self._manifest: bytes | None = None
        self._instances: dict[Digest, bytes] = {}
        self._signatures: dict[Digest | None, list[bytes]] = {}
        self._spool: Staging | None = None
        """vfs: where blobs wait for commit; a recorded staging dir, so that a
        killed process's spool is removed by the next open of the store."""
        self.image_id: str | None = None
        self.committed = False

    @property
    def reference(self) -> StorageReference:
        return self._ref

    def supported_manifest_types(self) -> list[str]:
        return [mt.OCI_MANIFEST, mt.DOCKER_V2S2, mt.OCI_INDEX, mt.DOCKER_LIST]

    @property
    def desired_layer_compression(self) -> Compression:
        return Compression.PRESERVE

    @property
    def accepts_foreign_layer_urls(self) -> bool:
        return False

    @property
    def must_match_runtime_os(self) -> bool:
        return True

    @property
    def has_thread_safe_put_blob(self) -> bool:
        return True

    def supports_signatures(self) -> bool:
        return True

    # --- blobs ------------------------------------------------------------
    def try_reusing_blob(self, info: BlobInfo, can_substitute: bool) -> BlobInfo | None:
        if info.digest is None or info.media_type in (mt.OCI_CONFIG, mt.DOCKER_CONFIG):
            return None
        if self.store.layers.by_compressed_digest(info.digest) or self.store.layers.by_diff_id(
            info.digest
        ):
            return info
        return None

    def put_blob(self, stream: BlobStream, info: BlobInfo, is_config: bool) -> BlobInfo:
        if is_config:
            chunks = []
            while chunk := stream.read(1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
            with self._lock:
                self._configs[stream.digest] = data
            return BlobInfo(stream.digest, stream.size, info.media_type)
        with self._host_errors(f"storing layer {info.digest or '(converted)'}"):
            if self.store.driver.apply_needs_parent:
                return self._spool_blob(stream, info)
            return self._unpack(stream, info)

    @contextlib.contextmanager
    def _host_errors(self, doing: str) -> Iterator[None]:
        """OS and database failures (a full disk above all) as one-line storage errors."""
        try:
            yield
        except OSError as exc:
            reason = exc.strerror or str(exc)
            hint = "free some space, or use --root on a bigger file system"
            if exc.errno != errno.ENOSPC:
                hint = "check the store's file system and permissions"
            raise StorageError(
                f"{doing} in {self.store.root} failed: {reason.lower()}", hint
            ) from exc
        except sqlite3.Error as exc:
            hint = "free some space, or use --root on a bigger file system"
            if "full" not in str(exc):
                hint = "check the store's file system"
            raise StorageError(f"{doing} in {self.store.root} failed: {exc}", hint) from exc

    def _unpack(self, stream: BlobStream, info: BlobInfo) -> BlobInfo:
        staging = self.store.layers.begin_staging(None)
        try:
            result = apply_layer_tar(
                stream,
                staging.content,
                whiteout_format="overlay",
                tar_split=staging.path / "tar-split",
                # the engine hashes (and verifies) the blob: not twice
                stream_digest=lambda: stream.digest,
            )
        except InvalidArchive as exc:
            self.store.layers.discard_staging(staging)
            # name the blob, not the staging directory the user never sees
            detail = exc.message.removeprefix(f"layer for {staging.content}: ")
            raise InvalidArchive(f"layer {info.digest}: {detail}", exc.hint) from exc
        except BaseException:
            self.store.layers.discard_staging(staging)
            raise
        digest = stream.digest
        unpacked = _Unpacked(staging, result.diff_id, result.size, result.compression, stream.size)
        with self._lock:
            previous = self._unpacked.get(digest)
            self._unpacked[digest] = unpacked
        if previous is not None:
            self.store.layers.discard_staging(previous.staging)
        return BlobInfo(digest, stream.size, info.media_type, compression=result.compression)

    def _spool_dir(self) -> Path:
        with self._lock:
            if self._spool is None:
                self._spool = self.store.layers.begin_staging(None)
            return self._spool.path

    def _spool_blob(self, stream: BlobStream, info: BlobInfo) -> BlobInfo:
        spool_dir = self._spool_dir()
        tmp = spool_dir / f"blob-{threading.get_ident()}-{id(stream)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            while chunk := stream.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        digest = stream.digest
        final = spool_dir / digest.hex
        tmp.replace(final)
        from skiff.image.copy.compression import detect

        with open(final, "rb") as f:
            compression = detect(f.read(8))
        with self._lock:
            self._spooled[digest] = _Spooled(final, None, compression)
        return BlobInfo(digest, stream.size, info.media_type, compression=compression)

    # --- manifests and signatures -------------------------------------------
    def put_manifest(self, raw: bytes, instance_digest: Digest | None = None) -> None:
        with self._lock:
            if instance_digest is None:
                self._manifest = raw
            else:
                self._instances[instance_digest] = raw

    def put_signatures(
        self, signatures: list[bytes], instance_digest: Digest | None = None
    ) -> None:
        with self._lock:
            self._signatures[instance_digest] = list(signatures)

    # --- commit -------------------------------------------------------------
    def _image_manifest(self) -> tuple[ImageManifest, bytes]:
        if self._manifest is None:
            raise ManifestError(f"{self._ref}: no manifest was written before commit")
        top = parse_manifest(self._manifest)
        if isinstance(top, ImageManifest):
            return top, self._manifest
        if isinstance(top, ImageIndex):
            desc = top.choose(
                wanted_platform(
                    self._ctx.override_os, self._ctx.override_arch, self._ctx.override_variant
                )
            )
            raw = self._instances.get(desc.digest)
            if raw is None:
                raise ManifestError(
                    f"{self._ref}: the index's image for this platform was not copied"
                )
            inner = parse_manifest(raw, desc.media_type)
            if not isinstance(inner, ImageManifest):
                raise ManifestError(f"{self._ref}: instance {desc.digest} is not an image manifest")
            return inner, raw
        raise ManifestError(
            f"{self._ref}: Docker schema 1 manifests cannot be stored; convert them"
        )

    def commit(self) -> None:
        with self._host_errors(f"storing image {self._ref}"):
            self._commit()

    def _commit(self) -> None:
        manifest, raw_image_manifest = self._image_manifest()
        config_raw = self._configs.get(manifest.config.digest)
        if config_raw is None:
            raise ManifestError(f"{self._ref}: config {manifest.config.digest} was not written")
        config = ImageConfig.from_bytes(config_raw)
        diff_ids = config.diff_ids
        if len(diff_ids) != len(manifest.layers):
            raise ManifestError(
                f"{self._ref}: the manifest has {len(manifest.layers)} layers but the config "
                f"lists {len(diff_ids)} diff IDs"
            )
        ids = chain_ids(diff_ids)
        parent: str | None = None
        for desc, diff_id, layer_id in zip(manifest.layers, diff_ids, ids, strict=True):
            try:
                self._ensure_layer(layer_id, parent, desc.digest, diff_id)
            except LayerUnknown as exc:
                raise LayerVanished(
                    f"{self._ref}: {exc.message}", "another process removed it; pull again"
                ) from exc
            parent = layer_id
        top_layer = ids[-1] if ids else None
        assert self._manifest is not None
        top_digest = manifest_digest(self._manifest)
        data: dict[str, bytes] = {}
        for digest, raw in self._instances.items():
            data[f"manifest-{digest}"] = raw
        if raw_image_manifest is not self._manifest:
            data[f"manifest-{manifest_digest(raw_image_manifest)}"] = raw_image_manifest
            data[f"manifest-{top_digest}"] = self._manifest
        for instance, signatures in self._signatures.items():
            if signatures:
                key = "signatures" if instance is None else f"signatures-{instance}"
                data[key] = encode_signatures(signatures)
        names = []
        if self._ref.named is not None and self._ref.named.digest is None:
            names.append(str(self._ref.named))
        created = _parse_created(config.created)
        size = sum(self.store.layers.get(i).uncompressed_size for i in ids)
        image_id = manifest.config.digest.hex
        if self._ref.image_id is not None and self._ref.image_id != image_id:
            raise DigestMismatch(
                f"{self._ref}: the image written has ID {image_id}, not {self._ref.image_id}"
            )
        self.store.images.create(
            image_id,
            top_layer=top_layer,
            config=config_raw,
            manifest=raw_image_manifest,
            manifest_type=manifest.media_type,
            digest=manifest_digest(raw_image_manifest),
            names=names,
            created=created,
            size=size,
            data=data,
        )
        if top_digest != manifest_digest(raw_image_manifest):
            with self.store.db.write() as conn:
                conn.execute(
                    "INSERT OR IGNORE INTO image_digests(digest, image_id) VALUES (?,?)",
                    (str(top_digest), image_id),
                )
        self.image_id = image_id
        self.committed = True

    def _ensure_layer(
        self, layer_id: str, parent: str | None, blob: Digest, diff_id: Digest
    ) -> None:
        layers = self.store.layers
        if layers.exists(layer_id):
            return
        unpacked = self._unpacked.pop(blob, None)
        if unpacked is not None:
            if unpacked.diff_id != diff_id:
                self._unpacked[blob] = unpacked
                raise DigestMismatch(
                    f"layer {blob} unpacks to {unpacked.diff_id}, but the config says {diff_id}",
                    "the image is corrupt; nothing was stored",
                )
            unpacked.staging.parent = parent
            layers.commit_staging(
                unpacked.staging,
                layer_id,
                diff_id,
                unpacked.size,
                [CompressedBlob(blob, unpacked.compression, unpacked.compressed_size)]
                if blob != diff_id
                else [],
            )
            return
        spooled = self._spooled.get(blob)
        staging = layers.begin_staging(parent)
        try:
            if spooled is not None:
                with open(spooled.path, "rb") as f:
                    result = apply_layer_tar(
                        f,
                        staging.content,
                        whiteout_format=self.store.driver.whiteout_format,
                        expected_diff_id=diff_id,
                        tar_split=staging.path / "tar-split",
                        # spooled under the digest the engine verified
                        stream_digest=lambda: blob,
                    )
                compression = spooled.compression
            else:
                source_layer = self._existing_with_diff_id(diff_id, blob)
                reader = self.store.layer_tar(source_layer)
                try:
                    result = apply_layer_tar(
                        reader,
                        staging.content,
                        whiteout_format=self.store.driver.whiteout_format,
                        expected_diff_id=diff_id,
                        tar_split=staging.path / "tar-split",
                    )
                finally:
                    reader.close()
                compression = ""
        except BaseException:
            layers.discard_staging(staging)
            raise
        blobs = [CompressedBlob(blob, compression, -1)] if blob != diff_id else []
        layers.commit_staging(staging, layer_id, diff_id, result.size, blobs)

    def _existing_with_diff_id(self, diff_id: Digest, blob: Digest) -> str:
        candidates = self.store.layers.by_diff_id(
            diff_id
        ) or self.store.layers.by_compressed_digest(blob)
        for layer in candidates:
            if layer.diff_id == diff_id:
                return layer.id
        raise LayerVanished(
            f"layer {blob} was neither sent nor found in the store",
            "the copy engine skipped a blob the store does not have; retry the copy",
        )

    def close(self) -> None:
        for unpacked in list(self._unpacked.values()):
            self.store.layers.discard_staging(unpacked.staging)
        self._unpacked.clear()
        if self._spool is not None:
            self.store.layers.discard_staging(self._spool)
            self._spool = None
        self.store.close()


def _parse_created(text: str) -> float | None:
    if not text:
        return None
    from datetime import datetime

    try:
        value = text.replace("Z", "+00:00")
        if "." in value:
            head, _, rest = value.partition(".")
            frac = "".join(ch for ch in rest if ch.isdigit())
            tz = rest[len(frac) :]
            value = f"{head}.{frac[:6]}{tz}"
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        log.debug("unparsable created time %r", text)
        return None
