"""Multi-platform test images: an OCI index over small per-platform images.

``--all``, platform choice (``--override-arch/-variant``) and index
conversion need an index whose instances really differ. Each instance
here is a one-layer image (``/platform.txt`` naming its platform, no
busybox: the content is never run) with the platform in its config, all
in one OCI layout; the index is tagged in index.json like any image, so
``oci:LAYOUT:TAG`` names it for skiff and skopeo alike. Deterministic:
the same platforms give the same digests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, sha256_of
from skiff.oci.manifest import dumps_json
from skiff.testing.busybox import REF_NAME_ANNOTATION, BusyboxImage, build_layered_layout

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v6")


@dataclass(frozen=True)
class MultiArchImage:
    """``layout`` holds ``images`` (platform string → image) and an index tagged ``tag``."""

    layout: Path
    tag: str
    index_digest: Digest
    index_bytes: bytes
    images: dict[str, BusyboxImage]

    @property
    def reference(self) -> str:
        return f"oci:{self.layout}:{self.tag}"


def build_multiarch_layout(
    dest: Path, platforms: Sequence[str] = DEFAULT_PLATFORMS, tag: str = "multi"
) -> MultiArchImage:
    """Write one image per ``OS/ARCH[/VARIANT]`` and an OCI index over them into ``dest``."""
    images: dict[str, BusyboxImage] = {}
    manifests: list[dict[str, Any]] = []
    for text in platforms:
        os_name, arch, *rest = text.split("/")
        platform: dict[str, str] = {"architecture": arch, "os": os_name}
        if rest:
            platform["variant"] = rest[0]
        image = build_layered_layout(
            dest,
            [{"platform.txt": text.encode() + b"\n"}],
            tag=text.replace("/", "-"),
            with_busybox=False,
            config_overrides=platform,
        )
        images[text] = image
        manifests.append(
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": str(image.manifest_digest),
                "size": image.manifest_size,
                "platform": platform,
            }
        )
    raw = dumps_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests})
    digest = sha256_of(raw)
    (dest / "blobs" / "sha256" / digest.hex).write_bytes(raw)
    index_path = dest / "index.json"
    index = json.loads(index_path.read_text())
    index["manifests"] = [
        m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
    ]
    index["manifests"].append(
        {
            "mediaType": mt.OCI_INDEX,
            "digest": str(digest),
            "size": len(raw),
            "annotations": {REF_NAME_ANNOTATION: tag},
        }
    )
    index_path.write_text(json.dumps(index))
    return MultiArchImage(dest, tag, digest, raw, images)
