"""A one-image OCI layout written into a temporary directory.

skiff's own images (``commit``'s, and the pods' pause image) enter the
store as any other image does: through the copy engine, from an ``oci:``
layout, so that digests are verified and layers stored once. This writes
that layout: blobs named by their sha256, an OCI manifest over the
config and layers, ``index.json`` listing it, and ``oci-layout``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest


def write_blob(blobs: Path, data: bytes) -> Digest:
    """``data`` as ``blobs``/HEX (``blobs`` is the layout's blobs/sha256)."""
    digest = Digest.from_bytes(data)
    (blobs / digest.hex).write_bytes(data)
    return digest


def write_image(layout: Path, config: bytes, layers: list[dict[str, Any]]) -> Digest:
    """The image's config blob, its manifest over ``layers`` (descriptors of
    blobs already in ``layout``/blobs/sha256), ``index.json`` and
    ``oci-layout``; returns the config's digest (the image ID)."""
    blobs = layout / "blobs" / "sha256"
    config_digest = write_blob(blobs, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {
            "mediaType": mt.OCI_CONFIG,
            "digest": str(config_digest),
            "size": len(config),
        },
        "layers": layers,
    }
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_digest = write_blob(blobs, manifest_bytes)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": str(manifest_digest),
                "size": len(manifest_bytes),
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return config_digest
