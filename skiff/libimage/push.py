"""``push``: copy an image from the store to a registry (or any transport).

The store keeps layers uncompressed, so a push to a registry compresses
them — unless the registry already has a compressed form of the layer:
the docker destination looks for the blob by its diff ID and, through the
blob-info cache, for the compressed blobs of that layer it has been seen
as (``blobhints``), in the target repository (HEAD) or elsewhere on the
same registry (cross-repository mount). Pushing an image back to the
registry it was pulled from therefore uploads nothing, and writes the
original manifest, byte for byte: same digest, signatures still valid.

Compression: ``--compression-format`` if given; otherwise the compression
the image's layers were pulled in (so a zstd image stays zstd, and its
original blobs can stand in), else gzip, as podman. zstd needs an OCI
manifest, which is chosen unless ``--format`` says otherwise. Other
destinations (``oci:``, ``dir:``, archives) get the layers as they are,
unless ``--compress`` (or a compression format) is asked for.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skiff.errors import UsageError
from skiff.image.copy import CopyOptions, copy_image
from skiff.libimage.names import (
    docker_reference,
    find_local_image,
    parse_transport_reference,
    registry_name,
    storage_reference,
    transport_of,
)
from skiff.oci import mediatypes as mt

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.types import ImageReference
    from skiff.oci.digest import Digest
    from skiff.oci.reference import NamedReference
    from skiff.storage.images import Image
    from skiff.storage.store import Store


@dataclass
class PushOptions:
    copy: CopyOptions = field(default_factory=CopyOptions)
    """``--format`` (manifest_format), ``--compression-format`` (compress_format),
    ``--remove-signatures``, progress, policy and signers."""
    compress: bool = False
    """``--compress``: compress layers for destinations that do not by themselves."""


@dataclass(frozen=True)
class PushReport:
    image_id: str
    destination: str
    """``transport:reference`` that was written."""
    manifest_digest: Digest
    uploaded: int
    """Layers whose bytes were sent (the rest the destination had already)."""


def push_image(
    ctx: SystemContext,
    image_text: str,
    destination: str | None = None,
    options: PushOptions | None = None,
) -> PushReport:
    """Push the local image ``image_text`` to ``destination`` (default: its own name)."""
    from skiff.libimage.blobhints import record_push
    from skiff.storage.store import Store

    options = options or PushOptions()
    store = Store.open(ctx)
    try:
        image, named = find_local_image(ctx, store, image_text)
        dest_ref = _destination(image_text, named, destination)
        copy_options = _copy_options(store, image, dest_ref, options)
    finally:
        store.close()
    source = storage_reference(named, image.id)
    report = copy_image(source, dest_ref, copy_options, ctx, ctx)
    record_push(ctx, dest_ref, report)
    return PushReport(
        image_id=image.id,
        destination=f"{dest_ref.transport.name}:{dest_ref.string_within_transport()}",
        manifest_digest=report.manifest_digest,
        uploaded=sum(1 for blob in report.blobs if not blob.reused),
    )


def _destination(
    image_text: str, named: NamedReference | None, destination: str | None
) -> ImageReference:
    if destination is None:
        if named is None:
            raise UsageError(
                f"cannot push {image_text}: an image ID has no registry to push to",
                "give a destination: skiff push IMAGE REGISTRY/REPOSITORY[:TAG]",
            )
        return docker_reference(named)
    if transport_of(destination) is not None:
        return parse_transport_reference(destination)
    return docker_reference(registry_name(destination))


def original_compression(store: Store, image: Image) -> str | None:
    """The compression the image's layers were pulled in, if they agree."""
    seen: Counter[str] = Counter()
    layers = store.image_layers(image)
    for layer_id in layers:
        kinds = {blob.compression for blob in store.layers.get(layer_id).blobs}
        kinds.discard("")
        if len(kinds) != 1:
            return None
        seen[kinds.pop()] += 1
    if len(seen) != 1:
        return None
    return next(iter(seen))


def _copy_options(
    store: Store, image: Image, dest_ref: ImageReference, options: PushOptions
) -> CopyOptions:
    copy = options.copy
    if copy.manifest_format == mt.DOCKER_V2S1:
        raise UsageError(
            "pushing Docker schema 1 manifests is not supported", "use --format v2s2 or oci"
        )
    compression = copy.compress_format
    if compression is None and dest_ref.transport.name == "docker":
        compression = original_compression(store, image) or "gzip"
    elif compression is None and options.compress:
        compression = "gzip"
    manifest_format = copy.manifest_format
    if compression == "zstd" and manifest_format is None:
        manifest_format = mt.OCI_MANIFEST
    return dataclasses.replace(copy, compress_format=compression, manifest_format=manifest_format)
