"""Reading an image from the local store.

The store keeps layers unpacked, not their compressed blobs, so the source
serves each layer as its uncompressed tar, reassembled byte-for-byte from
the layer's tar-split record (``layer_infos_for_copy`` says so); the copy
engine compresses it for destinations that want that. Manifests and the
config are served exactly as stored.
"""

from __future__ import annotations

import base64
import io
import json

from skiff.config import SystemContext
from skiff.errors import BlobUnknown, ImageNotFound, ImageUnknown
from skiff.image.transports.containers_storage.transport import StorageReference
from skiff.image.types import BlobInfo, ClosableReader
from skiff.oci import mediatypes as mt
from skiff.oci.config import ImageConfig
from skiff.oci.digest import Digest
from skiff.oci.manifest import ImageIndex, ImageManifest, guess_media_type, parse_manifest
from skiff.storage.images import Image
from skiff.storage.store import Store


def open_image(store: Store, ref: StorageReference) -> Image:
    """The stored image a reference names (ID wins; the name must then match)."""
    if ref.image_id is not None:
        try:
            image = store.images.get(ref.image_id)
        except ImageUnknown as exc:
            raise ImageNotFound(
                f"{ref}: no image with ID {ref.image_id[:12]} in the store"
            ) from exc
        return image
    if ref.named is None:
        raise ImageNotFound(f"{ref}: no image name or ID given")
    found = store.images.find(str(ref.named))
    if found is None:
        raise ImageNotFound(
            f"{ref.named.familiar()}: image not known",
            "pull it first, or list local images with 'skiff images'",
        )
    return found


def encode_signatures(signatures: list[bytes]) -> bytes:
    return json.dumps([base64.b64encode(s).decode() for s in signatures]).encode()


def decode_signatures(data: bytes | None) -> list[bytes]:
    if not data:
        return []
    return [base64.b64decode(s) for s in json.loads(data)]


class StorageSource:
    def __init__(self, ref: StorageReference, ctx: SystemContext) -> None:
        self._ref = ref
        self.store = Store.open(ctx)
        try:
            self.image = open_image(self.store, ref)
        except BaseException:
            self.store.close()
            raise

    @property
    def reference(self) -> StorageReference:
        return self._ref

    @property
    def has_thread_safe_get_blob(self) -> bool:
        return True

    def get_manifest(self, instance_digest: Digest | None = None) -> tuple[bytes, str]:
        if instance_digest is not None:
            raw = self.store.images.data(self.image.id, f"manifest-{instance_digest}")
            if raw is None:
                raise ImageNotFound(
                    f"{self._ref}: no manifest {instance_digest} stored with the image"
                )
            return raw, guess_media_type(raw)
        wanted = self._ref.named.digest if self._ref.named is not None else None
        if wanted is not None:
            raw = self.store.images.data(self.image.id, f"manifest-{wanted}")
            if raw is not None:
                return raw, guess_media_type(raw)
        if self.image.manifest is None:
            raise ImageNotFound(f"{self._ref}: the image has no stored manifest")
        return self.image.manifest, self.image.manifest_type or guess_media_type(
            self.image.manifest
        )

    def _config(self) -> ImageConfig:
        return ImageConfig.from_bytes(self.image.config)

    def _uncompressed_type(self, instance_digest: Digest | None) -> str:
        raw, media_type = self.get_manifest(instance_digest)
        if mt.is_index(media_type):
            return mt.OCI_LAYER
        manifest = parse_manifest(raw, media_type)
        if isinstance(manifest, ImageManifest) and not manifest.is_oci:
            return mt.DOCKER_LAYER
        return mt.OCI_LAYER

    def layer_infos_for_copy(self, instance_digest: Digest | None = None) -> list[BlobInfo] | None:
        layer_type = self._uncompressed_type(instance_digest)
        layer_ids = self.store.image_layers(self.image)
        diff_ids = self._config().diff_ids
        infos = []
        for layer_id, diff_id in zip(layer_ids, diff_ids, strict=False):
            layer = self.store.layers.get(layer_id)
            infos.append(
                BlobInfo(
                    digest=diff_id,
                    size=layer.uncompressed_size if layer.diff_id == diff_id else -1,
                    media_type=layer_type,
                    compression="",
                )
            )
        return infos

    def get_blob(self, info: BlobInfo) -> tuple[ClosableReader, int]:
        if info.digest is None:
            raise BlobUnknown(f"{self._ref}: a blob without digest was asked for")
        if info.digest == self.image.config_digest:
            return io.BytesIO(self.image.config), len(self.image.config)
        for layer_id in self.store.image_layers(self.image):
            layer = self.store.layers.get(layer_id)
            if layer.diff_id == info.digest or any(b.digest == info.digest for b in layer.blobs):
                if layer.diff_id != info.digest:
                    break  # a compressed original: the store does not keep those
                return self.store.layer_tar(layer_id), layer.uncompressed_size
        raise BlobUnknown(
            f"{self._ref}: blob {info.digest} is not stored with image {self.image.id[:12]}",
            "the store keeps layers uncompressed; copy by diff ID",
        )

    def get_signatures(self, instance_digest: Digest | None = None) -> list[bytes]:
        key = "signatures" if instance_digest is None else f"signatures-{instance_digest}"
        return decode_signatures(self.store.images.data(self.image.id, key))

    def close(self) -> None:
        self.store.close()


def image_manifest_of(store: Store, image: Image) -> ImageManifest | None:
    """The image manifest of a stored image (the chosen instance when it came from an index)."""
    if image.manifest is None:
        return None
    parsed = parse_manifest(image.manifest, image.manifest_type)
    if isinstance(parsed, ImageIndex):
        for desc in parsed.manifests:
            raw = store.images.data(image.id, f"manifest-{desc.digest}")
            if raw is None:
                continue
            inner = parse_manifest(raw, desc.media_type)
            if isinstance(inner, ImageManifest) and inner.config.digest == image.config_digest:
                return inner
        return None
    return parsed if isinstance(parsed, ImageManifest) else None
