"""Reading what an image is without copying it (``skiff image inspect``, skopeo inspect).

Fetches the top-level manifest, picks the instance for this platform when it
is an index, and reads the config blob; every byte is verified against its
digest before it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skiff.config import SystemContext
from skiff.image.copy.single import read_config
from skiff.image.types import ImageReference, ImageSource
from skiff.oci import mediatypes as mt
from skiff.oci.config import ImageConfig
from skiff.oci.digest import Digest
from skiff.oci.manifest import (
    ImageIndex,
    ImageManifest,
    Schema1Manifest,
    guess_media_type,
    manifest_digest,
    parse_manifest,
)
from skiff.oci.platform import wanted_platform


@dataclass
class InspectedImage:
    """The top-level manifest and the chosen image's manifest and config."""

    reference: ImageReference
    raw_manifest: bytes
    manifest_type: str
    digest: Digest
    image_manifest: ImageManifest | Schema1Manifest
    raw_config: bytes | None
    config: ImageConfig


def fetch_manifest(source: ImageSource, ctx: SystemContext) -> tuple[bytes, str]:
    raw, media_type = source.get_manifest()
    media_type = media_type or guess_media_type(raw)
    named = source.reference.docker_reference()
    if named is not None and named.digest is not None:
        named.digest.verify_bytes(raw, what=f"manifest of {named}")
    return raw, media_type


def inspect_source(source: ImageSource, ctx: SystemContext) -> InspectedImage:
    raw, media_type = fetch_manifest(source, ctx)
    top_digest = manifest_digest(raw)
    chosen_raw, chosen_type = raw, media_type
    if mt.is_index(media_type):
        index = parse_manifest(raw, media_type)
        assert isinstance(index, ImageIndex)
        desc = index.choose(
            wanted_platform(ctx.override_os, ctx.override_arch, ctx.override_variant)
        )
        chosen_raw, chosen_type = source.get_manifest(desc.digest)
        desc.digest.verify_bytes(chosen_raw, what=f"manifest {desc.digest}")
        chosen_type = chosen_type or desc.media_type or guess_media_type(chosen_raw)
    manifest = parse_manifest(chosen_raw, chosen_type)
    assert not isinstance(manifest, ImageIndex)
    raw_config: bytes | None = None
    if isinstance(manifest, ImageManifest):
        raw_config = read_config(source, manifest.config)
        config = ImageConfig.from_bytes(raw_config)
    else:
        config = ImageConfig(dict(manifest.v1_compat[0]))
    return InspectedImage(
        reference=source.reference,
        raw_manifest=raw,
        manifest_type=media_type,
        digest=top_digest,
        image_manifest=manifest,
        raw_config=raw_config,
        config=config,
    )


def inspect_reference(ref: ImageReference, ctx: SystemContext) -> InspectedImage:
    source = ref.new_image_source(ctx)
    try:
        return inspect_source(source, ctx)
    finally:
        source.close()


def raw_manifest(ref: ImageReference, ctx: SystemContext) -> bytes:
    source = ref.new_image_source(ctx)
    try:
        return fetch_manifest(source, ctx)[0]
    finally:
        source.close()


def skopeo_inspect_output(info: InspectedImage, repo_tags: list[str] | None) -> dict[str, Any]:
    """The JSON object ``skopeo inspect`` prints, field for field."""
    named = info.reference.docker_reference()
    manifest = info.image_manifest
    config = info.config
    if isinstance(manifest, ImageManifest):
        layers = [str(d.digest) for d in manifest.layers]
        layers_data: list[dict[str, Any]] = [
            {
                "MIMEType": d.media_type,
                "Digest": str(d.digest),
                "Size": d.size,
                "Annotations": dict(d.annotations) or None,
            }
            for d in manifest.layers
        ]
    else:
        pairs = manifest.layers_oldest_first()
        layers = [str(d) for d, _ in pairs]
        layers_data = [
            {"MIMEType": mt.DOCKER_LAYER_GZIP, "Digest": str(d), "Size": -1, "Annotations": None}
            for d, _ in pairs
        ]
    labels = config.labels or None
    output: dict[str, Any] = {}
    if named is not None:
        # skopeo's Name is `omitempty`: absent for transports without a Docker name
        output["Name"] = named.name
    output.update(
        {
            "Digest": str(info.digest),
            "RepoTags": repo_tags if repo_tags is not None else [],
            "Created": config.created or None,
            "DockerVersion": str(config.data.get("docker_version") or ""),
            "Labels": labels,
            "Architecture": config.architecture,
            "Os": config.os,
            "Layers": layers,
            "LayersData": layers_data,
            "Env": config.env or None,
        }
    )
    return output
