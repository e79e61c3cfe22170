"""The ``docker save`` archive format: manifest.json, legacy metadata, the synthesised manifest.

An archive holds, for each image, an item of ``manifest.json``::

    [{"Config": "<hex>.json", "RepoTags": ["docker.io/library/busybox:latest"],
      "Layers": ["<hex>.tar", ...]}]

Paths are relative to the archive root and may be ``<id>/layer.tar``
(docker before 25), ``<hex>.tar`` (containers/image: skopeo, podman) or
``blobs/sha256/<hex>`` (docker 25+, which also adds an OCI index.json).
Layers are uncompressed tars, though archives written by other tools may
hold gzip- or zstd-compressed ones.

The legacy metadata (``repositories``, and ``<id>/VERSION``, ``<id>/json``,
``<id>/layer.tar`` per layer) is still written for old consumers: layer IDs
are chain IDs of the layer digests, as containers/image computes them, and
``<id>/layer.tar`` is a symlink to the layer file.

An archive has no registry manifest, so the source synthesises a Docker
schema 2 manifest from the config: layer digests are the config's diff IDs
(digests of the uncompressed tars). It is serialised as Go's json.Marshal
does (compact, fields in containers/image's order). Unlike containers/image,
which labels these layers ``.tar.gzip``, skiff gives the truthful
``application/vnd.docker.image.rootfs.diff.tar``; the manifest digest
therefore differs from ``skopeo inspect docker-archive:…`` (config and
layer digests are the same).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skiff.errors import ImageError, InvalidReference, ManifestError
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest
from skiff.oci.reference import NamedReference, parse_normalized_named

MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
LEGACY_LAYER_FILE = "layer.tar"
LEGACY_VERSION_FILE = "VERSION"
LEGACY_CONFIG_FILE = "json"
MAX_MANIFEST_JSON = 64 * 1024 * 1024

# config fields copied into the top layer's legacy ``json`` (containers/image's list)
_LEGACY_TOP_FIELDS = (
    "architecture",
    "config",
    "container",
    "container_config",
    "created",
    "docker_version",
    "os",
)


@dataclass(frozen=True)
class ManifestItem:
    """One image of an archive, as manifest.json lists it."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


def parse_manifest_json(raw: bytes, label: str) -> list[ManifestItem]:
    where = f"manifest.json of {label}"
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"{where} is not valid JSON: {exc}", "the archive is corrupt or truncated"
        ) from exc
    if not isinstance(obj, list):
        raise ManifestError(f"invalid {where}: not a JSON list", "the archive is corrupt")
    items = []
    for position, entry in enumerate(obj):
        if not isinstance(entry, dict):
            raise ManifestError(f"invalid {where}: item {position} is not an object")
        config = entry.get("Config")
        tags = entry.get("RepoTags") or []
        layers = entry.get("Layers") or []
        if not isinstance(config, str) or not config:
            raise ManifestError(f"invalid {where}: item {position} has no Config path")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ManifestError(f"invalid {where}: RepoTags of item {position} is not a list")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise ManifestError(f"invalid {where}: Layers of item {position} is not a list")
        items.append(ManifestItem(config, tuple(tags), tuple(layers)))
    return items


def normalized_tag(text: str, where: str) -> NamedReference:
    """A RepoTags entry as a normalized NAME:TAG reference."""
    try:
        ref = parse_normalized_named(text)
    except InvalidReference as exc:
        raise ManifestError(f"invalid tag {text!r} in {where}: {exc.message}") from exc
    return ref.tag_or_latest()


def choose_item(
    items: Sequence[ManifestItem],
    tag: NamedReference | None,
    source_index: int | None,
    label: str,
) -> tuple[ManifestItem, int]:
    """The image a reference selects: by tag, by ``@N``, or the only one."""
    from skiff.errors import ImageNotFound

    if tag is not None:
        wanted = str(tag)
        for position, item in enumerate(items):
            for text in item.repo_tags:
                if str(normalized_tag(text, f"manifest.json of {label}")) == wanted:
                    return item, position
        known = sorted({t for item in items for t in item.repo_tags})
        raise ImageNotFound(
            f"no image tagged {tag.familiar()} in {label}",
            f"tags in the archive: {', '.join(known)}" if known else "the archive has no tags",
        )
    if source_index is not None:
        if source_index >= len(items):
            raise ImageNotFound(
                f"no image @{source_index} in {label}: it holds {len(items)} images",
                "images are numbered from 0",
            )
        return items[source_index], source_index
    if len(items) != 1:
        known = sorted({t for item in items for t in item.repo_tags})
        raise ImageNotFound(
            f"{label} holds {len(items)} images; choose one",
            f"append :NAME:TAG ({', '.join(known) or 'no tags'}) or :@N for image N",
        )
    return items[0], 0


def go_json(value: Any) -> bytes:
    """Compact JSON as Go's encoding/json writes it (for byte-compatible output)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def synthesised_manifest(
    config_digest: Digest, config_size: int, layers: Sequence[tuple[Digest, int]]
) -> bytes:
    """The Docker schema 2 manifest of an archived image (layers uncompressed)."""
    return go_json(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_V2S2,
            "config": {
                "mediaType": mt.DOCKER_CONFIG,
                "size": config_size,
                "digest": str(config_digest),
            },
            "layers": [
                {"mediaType": mt.DOCKER_LAYER, "size": size, "digest": str(digest)}
                for digest, size in layers
            ],
        }
    )


def config_member(digest: Digest) -> str:
    return f"{digest.hex}.json"


def layer_member(digest: Digest) -> str:
    return f"{digest.hex}.tar"


def legacy_layer_ids(layer_digests: Sequence[Digest]) -> list[str]:
    """Chain IDs of the layers (hex), unique per layer stack, used as legacy IDs."""
    ids = []
    chain: Digest | None = None
    for digest in layer_digests:
        if chain is None:
            chain = digest
        else:
            chain = Digest("sha256", hashlib.sha256(f"{chain} {digest}".encode()).hexdigest())
        ids.append(chain.hex)
    return ids


def legacy_layer_json(layer_id: str, parent: str, config: dict[str, Any] | None) -> bytes:
    """``<id>/json``: id, parent, and for the top layer a subset of the config."""
    obj: dict[str, Any] = {}
    if parent:
        obj["parent"] = parent
    if config is not None:
        for key in _LEGACY_TOP_FIELDS:
            obj[key] = config.get(key)
    obj["id"] = layer_id
    return go_json(dict(sorted(obj.items())))


def manifest_item_json(
    config: Digest, tags: Sequence[str], layers: Sequence[Digest]
) -> dict[str, Any]:
    return {
        "Config": config_member(config),
        "RepoTags": list(tags),
        "Layers": [layer_member(d) for d in layers],
    }


def repo_tag(tag: NamedReference) -> str:
    """A RepoTags entry: the fully qualified NAME:TAG (containers/image writes these)."""
    if tag.tag is None:
        raise ImageError(f"internal error: {tag} has no tag")
    return f"{tag.name}:{tag.tag}"
