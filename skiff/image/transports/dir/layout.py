"""File names of skopeo's ``dir:`` layout (containers/image's directory transport).

version                      "Directory Transport Version: 1.1\\n"
manifest.json                the (top-level) manifest, raw
<hex>.manifest.json          an instance of an index, by its digest
<hex>                        a blob (config or layer), by the hex of its digest
signature-N                  simple-signing signatures of the image, N from 1
<hex>.signature-N            signatures of an instance
"""

from __future__ import annotations

from pathlib import Path

from skiff.oci.digest import Digest

VERSION_FILE = "version"
VERSION = b"Directory Transport Version: 1.1\n"
VERSION_PREFIX = b"Directory Transport Version: "
MANIFEST_FILE = "manifest.json"


def manifest_name(instance: Digest | None) -> str:
    return MANIFEST_FILE if instance is None else f"{instance.hex}.{MANIFEST_FILE}"


def blob_name(digest: Digest) -> str:
    return digest.hex


def signature_name(index: int, instance: Digest | None) -> str:
    """Name of signature ``index`` (from 0) of the image or of one instance."""
    base = f"signature-{index + 1}"
    return base if instance is None else f"{instance.hex}.{base}"


def label(root: Path) -> str:
    return f"dir:{root}"
