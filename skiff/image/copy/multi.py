"""Copying a whole index (``--all``): every instance, then the index itself."""

from __future__ import annotations

from dataclasses import replace

from skiff.errors import ManifestError, UnsupportedConversion
from skiff.image.copy.options import CopyOptions, CopyReport
from skiff.image.copy.single import copy_single_image
from skiff.image.types import ImageDestination, ImageSource
from skiff.oci import mediatypes as mt
from skiff.oci.manifest import ImageIndex, manifest_digest, parse_manifest


def copy_index(
    source: ImageSource,
    dest: ImageDestination,
    raw_index: bytes,
    index_type: str,
    options: CopyOptions,
) -> CopyReport:
    index = parse_manifest(raw_index, index_type)
    if not isinstance(index, ImageIndex):
        raise ManifestError("expected an image index")
    supported = dest.supported_manifest_types()
    if supported and not any(t in supported for t in mt.INDEX_TYPES):
        raise UnsupportedConversion(
            f"destination {dest.reference.transport.name}: cannot store an index of several images",
            "copy one platform (drop --all) or use oci:, dir: or a registry",
        )
    forced_child = None
    if options.manifest_format:
        forced_child = options.manifest_format
    elif supported and index.media_type not in supported:
        forced_child = mt.OCI_MANIFEST if mt.OCI_INDEX in supported else mt.DOCKER_V2S2

    reports = []
    new_descriptors = []
    for desc in index.manifests:
        raw, media_type = source.get_manifest(desc.digest)
        desc.digest.verify_bytes(raw, what=f"manifest {desc.digest}")
        media_type = media_type or desc.media_type
        if mt.is_index(media_type):
            raise ManifestError(f"nested index {desc.digest} is not supported")
        report = copy_single_image(
            source,
            dest,
            raw,
            media_type,
            options,
            instance_digest=desc.digest,
            forced_type=forced_child,
        )
        reports.append(report)
        new_descriptors.append(
            replace(
                desc,
                digest=report.manifest_digest,
                size=len(report.manifest),
                media_type=report.manifest_type,
            )
        )

    changed = any(r.manifest_digest != r.source_manifest_digest for r in reports)
    target_index_type = index.media_type
    child_types = {r.manifest_type for r in reports}
    if options.manifest_format == mt.OCI_MANIFEST or child_types == {mt.OCI_MANIFEST}:
        target_index_type = mt.OCI_INDEX if changed or options.manifest_format else index.media_type
    elif options.manifest_format == mt.DOCKER_V2S2 or child_types == {mt.DOCKER_V2S2}:
        target_index_type = (
            mt.DOCKER_LIST if changed or options.manifest_format else index.media_type
        )
    if supported and target_index_type not in supported:
        target_index_type = mt.OCI_INDEX if mt.OCI_INDEX in supported else mt.DOCKER_LIST
    if not changed and target_index_type == index.media_type:
        out_raw = raw_index
    else:
        new_index = ImageIndex(
            target_index_type,
            new_descriptors,
            dict(index.annotations) if target_index_type == mt.OCI_INDEX else {},
        )
        out_raw = new_index.to_bytes()
    dest.put_manifest(out_raw)
    return CopyReport(
        manifest=out_raw,
        manifest_type=target_index_type,
        manifest_digest=manifest_digest(out_raw),
        source_manifest_digest=manifest_digest(raw_index),
        config_digest=None,
        instances=reports,
    )
