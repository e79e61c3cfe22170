"""What pulls and pushes teach the blob-info cache (``skiff.image.blobinfocache``).

The store keeps layers unpacked, so a push serves each layer as its
uncompressed tar, by diff ID. For the registry to be spared that upload,
the push must know which compressed blob of that layer the registry
already has, and where. A pull records exactly that: where each blob was
seen (``docker``, registry, repository) and which compressed blob is which
diff ID, in which compression; a push records where its blobs now are and
the compressed digests it produced. The docker destination reads these
facts back through its ``blob_hints`` (opened from the same file).

Everything recorded is a hint: the destination verifies with HEAD or a
mount before it relies on one, and a cache that cannot be written only
costs a later upload.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from skiff.image.blobinfocache import BlobInfoCache, open_cache
from skiff.oci import mediatypes as mt

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.copy import CopyReport
    from skiff.image.copy.options import BlobResult
    from skiff.image.types import ImageReference
    from skiff.oci.digest import Digest
    from skiff.oci.reference import NamedReference
    from skiff.storage.store import Store

DOCKER = "docker"


def _registry_name(ref: ImageReference) -> NamedReference | None:
    if ref.transport.name != DOCKER:
        return None
    return ref.docker_reference()


def _all_blobs(report: CopyReport) -> Iterable[BlobResult]:
    yield from report.blobs
    for instance in report.instances:
        yield from _all_blobs(instance)


def _configs(report: CopyReport) -> Iterable[Digest]:
    if report.config_digest is not None:
        yield report.config_digest
    for instance in report.instances:
        yield from _configs(instance)


def _layer_types(report: CopyReport) -> dict[Digest, str]:
    """Layer digest → media type, from the manifests the copy wrote (they say
    what each layer became; a blob's own record keeps the source's type)."""
    from skiff.oci.manifest import ImageManifest, parse_manifest

    out: dict[Digest, str] = {}
    for one in (report, *report.instances):
        if one.config_digest is None:
            continue
        manifest = parse_manifest(one.manifest, one.manifest_type)
        if isinstance(manifest, ImageManifest):
            out.update((layer.digest, layer.media_type) for layer in manifest.layers)
    return out


def cache_for(ctx: SystemContext) -> BlobInfoCache:
    return open_cache(ctx.blob_info_cache_path())


def record_pull(
    ctx: SystemContext, source: ImageReference, report: CopyReport, store: Store, image_id: str
) -> None:
    """After a pull into ``store``: where the blobs were, and which diff ID each one is."""
    cache = cache_for(ctx)
    named = _registry_name(source)
    if named is not None:
        for blob in _all_blobs(report):
            cache.record_location(DOCKER, named.domain, blob.source_digest, named.name)
        if report.config_digest is not None:
            cache.record_location(DOCKER, named.domain, report.config_digest, named.name)
    image = store.images.get(image_id)
    for layer_id in store.image_layers(image):
        layer = store.layers.get(layer_id)
        if layer.diff_id is None:
            continue
        for compressed in layer.blobs:
            cache.record_uncompressed(compressed.digest, layer.diff_id)
            cache.record_compression(compressed.digest, compressed.compression)


def record_push(ctx: SystemContext, destination: ImageReference, report: CopyReport) -> None:
    """After a push from the store: where the blobs are now, and what was compressed from what.

    The source was the store, so each layer's source digest is its diff ID;
    a layer stored under another digest was compressed by this copy (or is a
    compressed variant the registry already had).
    """
    cache = cache_for(ctx)
    named = _registry_name(destination)
    written = _layer_types(report)
    for blob in _all_blobs(report):
        compression = mt.layer_compression(written.get(blob.digest, blob.media_type))
        if blob.digest != blob.source_digest and compression:
            cache.record_uncompressed(blob.digest, blob.source_digest)
            cache.record_compression(blob.digest, compression)
        if named is not None:
            cache.record_location(DOCKER, named.domain, blob.digest, named.name)
    if named is not None:
        for config in _configs(report):
            cache.record_location(DOCKER, named.domain, config, named.name)
