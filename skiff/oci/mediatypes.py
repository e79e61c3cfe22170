"""Media types of the OCI image spec and the Docker registry formats."""

from __future__ import annotations

# OCI image spec
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_VERSION = "1.0.0"

# Docker registry formats
DOCKER_V2S2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_V2S1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_V2S1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_V2S2, DOCKER_V2S1_SIGNED, DOCKER_V2S1)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ALL_MANIFEST_TYPES = MANIFEST_TYPES + INDEX_TYPES

# What a registry client asks for in Accept, most preferred first.
ACCEPT_MANIFEST = ", ".join(
    (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_V2S2, DOCKER_V2S1_SIGNED, DOCKER_V2S1)
)


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest_type(media_type: str) -> bool:
    return media_type in ALL_MANIFEST_TYPES


def layer_compression(media_type: str) -> str | None:
    """ "gzip", "zstd", "" (uncompressed), or None if not a known layer type."""
    if media_type in (
        OCI_LAYER_GZIP,
        OCI_LAYER_NONDIST_GZIP,
        DOCKER_LAYER_GZIP,
        DOCKER_FOREIGN_LAYER,
    ):
        return "gzip"
    if media_type in (OCI_LAYER_ZSTD, OCI_LAYER_NONDIST_ZSTD, DOCKER_LAYER_ZSTD):
        return "zstd"
    if media_type in (OCI_LAYER, OCI_LAYER_NONDIST, DOCKER_LAYER):
        return ""
    return None


def layer_type(oci: bool, compression: str) -> str:
    """The layer media type for a manifest flavour and a compression."""
    if oci:
        return {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "": OCI_LAYER}[compression]
    return {"gzip": DOCKER_LAYER_GZIP, "zstd": DOCKER_LAYER_ZSTD, "": DOCKER_LAYER}[compression]
