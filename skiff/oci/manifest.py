"""Typed manifests: OCI manifest and index, Docker schema 2 and list, schema 1.

Manifests travel as raw bytes plus a media type; the digest is always
computed over those exact bytes (see ``skiff.oci.digest``). ``parse_manifest``
turns them into one of the typed classes below only after that check. The
typed classes serialise back (``to_bytes``) when a manifest is converted or
edited; an unchanged manifest is never re-serialised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from skiff.errors import ManifestError
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, sha256_of
from skiff.oci.jsondoc import MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE, dumps_json, loads_json
from skiff.oci.platform import Platform

__all__ = [  # the JSON helpers live in skiff.oci.jsondoc; importing them from here still works
    "MAX_CONFIG_SIZE",
    "MAX_MANIFEST_SIZE",
    "dumps_json",
    "loads_json",
]


def _err(what: str, detail: str) -> ManifestError:
    return ManifestError(f"invalid {what}: {detail}")


def _obj(value: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _err(what, f"{where} is not a JSON object")
    return value


def _str(obj: dict[str, Any], key: str, what: str, required: bool = True) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise _err(what, f"missing {key!r}")
        return ""
    if not isinstance(value, str):
        raise _err(what, f"{key!r} is not a string")
    return value


def _str_map(value: Any, where: str, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _err(what, f"{where} is not a map of strings")
    return dict(value)


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest says about one blob."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = None
    artifact_type: str = ""

    @classmethod
    def from_json(cls, value: Any, what: str = "descriptor") -> Descriptor:
        obj = _obj(value, "descriptor", what)
        media_type = _str(obj, "mediaType", what, required=False)
        digest_text = _str(obj, "digest", what)
        digest = Digest.parse(digest_text)
        size = obj.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _err(what, f"descriptor {digest_text} has an invalid size {size!r}")
        urls = obj.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise _err(what, f"descriptor {digest_text} has invalid urls")
        platform = Platform.from_json(obj["platform"]) if obj.get("platform") else None
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            urls=tuple(urls),
            annotations=_str_map(obj.get("annotations"), "annotations", what),
            platform=platform,
            artifact_type=_str(obj, "artifactType", what, required=False),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.media_type:
            out["mediaType"] = self.media_type
        out["digest"] = str(self.digest)
        out["size"] = self.size
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out


@dataclass
class ImageManifest:
    """An OCI image manifest or a Docker schema 2 manifest (same shape)."""

    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str = ""
    explicit_media_type: bool = True
    """Whether the JSON carried ``mediaType`` (old OCI manifests omit it)."""

    @property
    def is_oci(self) -> bool:
        return self.media_type == mt.OCI_MANIFEST

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2}
        if self.explicit_media_type or self.media_type != mt.OCI_MANIFEST:
            out["mediaType"] = self.media_type
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_json()
        out["layers"] = [layer.to_json() for layer in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return dumps_json(self.to_json())

    def convert(self, media_type: str) -> ImageManifest:
        """The same image as an OCI or Docker v2s2 manifest.

        Config bytes stay unchanged (as containers/image does); layer media
        types are mapped by their compression. Raises UnsupportedConversion
        semantics as ManifestError when a layer type has no equivalent.
        """
        if media_type == self.media_type:
            return self
        to_oci = media_type == mt.OCI_MANIFEST
        if media_type not in (mt.OCI_MANIFEST, mt.DOCKER_V2S2):
            raise ManifestError(f"cannot convert a manifest to {media_type}")
        layers = []
        for layer in self.layers:
            if layer.media_type == mt.DOCKER_FOREIGN_LAYER and to_oci:
                new_type = mt.OCI_LAYER_NONDIST_GZIP
            elif (
                layer.media_type
                in (
                    mt.OCI_LAYER_NONDIST_GZIP,
                    mt.OCI_LAYER_NONDIST,
                )
                and not to_oci
            ):
                new_type = mt.DOCKER_FOREIGN_LAYER
            else:
                compression = mt.layer_compression(layer.media_type)
                if compression is None:
                    raise ManifestError(
                        f"cannot convert layer {layer.digest} of type {layer.media_type!r}",
                        "the destination needs a manifest format this layer type has no equivalent in",
                    )
                if compression == "zstd" and not to_oci:
                    raise ManifestError(
                        f"layer {layer.digest} is zstd-compressed, which Docker v2s2 manifests cannot carry",
                        "use --dest-compress-format gzip or an OCI destination",
                    )
                new_type = mt.layer_type(to_oci, compression)
            layers.append(replace(layer, media_type=new_type))
        config_type = mt.OCI_CONFIG if to_oci else mt.DOCKER_CONFIG
        return ImageManifest(
            media_type=media_type,
            config=replace(self.config, media_type=config_type),
            layers=layers,
            annotations=dict(self.annotations) if to_oci else {},
            subject=self.subject if to_oci else None,
            explicit_media_type=True,
        )


@dataclass
class ImageIndex:
    """An OCI image index or a Docker manifest list."""

    media_type: str
    manifests: list[Descriptor]
    annotations: dict[str, str] = field(default_factory=dict)
    explicit_media_type: bool = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": 2}
        if self.explicit_media_type or self.media_type != mt.OCI_INDEX:
            out["mediaType"] = self.media_type
        out["manifests"] = [m.to_json() for m in self.manifests]
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return dumps_json(self.to_json())

    def choose(self, wanted: Platform) -> Descriptor:
        """The instance for a platform, by the containers/image rules.

        Exact os/architecture match is required; among those, a matching
        variant wins over an instance without variant, and the order of the
        index breaks ties.
        """
        candidates = [
            d
            for d in self.manifests
            if d.platform is not None
            and d.platform.os == wanted.os
            and d.platform.architecture == wanted.architecture
            and mt.is_manifest_type(d.media_type or mt.OCI_MANIFEST)
        ]
        for variant in wanted.variant_preference():
            for desc in candidates:
                assert desc.platform is not None
                if desc.platform.variant == variant:
                    return desc
        available = (
            ", ".join(str(d.platform) for d in self.manifests if d.platform is not None) or "none"
        )
        raise ManifestError(
            f"no image found in manifest list for platform {wanted}",
            f"available: {available}; choose one with --override-os/--override-arch/--override-variant",
        )

    def convert(self, media_type: str) -> ImageIndex:
        if media_type == self.media_type:
            return self
        to_oci = media_type == mt.OCI_INDEX
        items = []
        for d in self.manifests:
            if d.media_type in (mt.OCI_MANIFEST, mt.DOCKER_V2S2):
                items.append(replace(d, media_type=mt.OCI_MANIFEST if to_oci else mt.DOCKER_V2S2))
            else:
                items.append(d)
        return ImageIndex(media_type, items, dict(self.annotations) if to_oci else {})


@dataclass
class Schema1Manifest:
    """A Docker schema 1 manifest (read-only support).

    Layers are stored newest first in ``fsLayers``; ``history`` holds the
    matching v1Compatibility JSON strings. Entries marked ``throwaway`` are
    empty layers.
    """

    name: str
    tag: str
    architecture: str
    fs_layers: list[Digest]
    v1_compat: list[dict[str, Any]]
    media_type: str = mt.DOCKER_V2S1_SIGNED

    def layers_oldest_first(self) -> list[tuple[Digest, bool]]:
        """(blob digest, is_empty) pairs from the base layer up."""
        out = []
        for blob, compat in zip(reversed(self.fs_layers), reversed(self.v1_compat), strict=True):
            out.append((blob, bool(compat.get("throwaway"))))
        return out


Manifest = ImageManifest | ImageIndex | Schema1Manifest


def guess_media_type(raw: bytes) -> str:
    """Media type of a manifest whose container did not say (oci/dir)."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(obj, dict):
        return ""
    declared = obj.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    version = obj.get("schemaVersion")
    if version == 1:
        return mt.DOCKER_V2S1_SIGNED if "signatures" in obj else mt.DOCKER_V2S1
    if version == 2:
        if "manifests" in obj:
            return mt.OCI_INDEX
        if "config" in obj:
            config = obj["config"]
            if isinstance(config, dict) and config.get("mediaType") == mt.DOCKER_CONFIG:
                return mt.DOCKER_V2S2
            return mt.OCI_MANIFEST
    return ""


def parse_manifest(raw: bytes, media_type: str = "") -> Manifest:
    """Parse manifest bytes into a typed manifest.

    ``media_type`` is what the source said (Content-Type, index entry);
    empty means "guess from content". A declared ``mediaType`` inside the
    JSON must agree with it.
    """
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ManifestError(
            f"manifest is {len(raw)} bytes, above the {MAX_MANIFEST_SIZE}-byte limit"
        )
    obj = _obj(loads_json(raw, "manifest"), "manifest", "manifest")
    guessed = guess_media_type(raw)
    kind = media_type or guessed
    if media_type in ("text/plain", "application/json", "application/octet-stream"):
        kind = guessed
    declared = obj.get("mediaType")
    if isinstance(declared, str) and declared and kind and declared != kind:
        raise ManifestError(f"manifest declares media type {declared!r} but was served as {kind!r}")
    if kind in (mt.OCI_MANIFEST, mt.DOCKER_V2S2):
        return _parse_image_manifest(obj, kind)
    if kind in (mt.OCI_INDEX, mt.DOCKER_LIST):
        return _parse_index(obj, kind)
    if kind in (mt.DOCKER_V2S1, mt.DOCKER_V2S1_SIGNED):
        return _parse_schema1(obj, kind)
    raise ManifestError(
        f"unsupported manifest media type {kind or 'unknown'!r}",
        "supported: OCI manifest/index, Docker schema 2 manifest/list, Docker schema 1",
    )


def _check_schema_version(obj: dict[str, Any], expected: int, what: str) -> None:
    version = obj.get("schemaVersion")
    if version != expected:
        raise _err(what, f"schemaVersion is {version!r}, expected {expected}")


def _parse_image_manifest(obj: dict[str, Any], kind: str) -> ImageManifest:
    what = "OCI manifest" if kind == mt.OCI_MANIFEST else "Docker manifest"
    _check_schema_version(obj, 2, what)
    config = Descriptor.from_json(obj.get("config"), what)
    layers_json = obj.get("layers")
    if not isinstance(layers_json, list):
        raise _err(what, "'layers' is missing or not a list")
    layers = [Descriptor.from_json(layer, what) for layer in layers_json]
    subject = Descriptor.from_json(obj["subject"], what) if obj.get("subject") else None
    return ImageManifest(
        media_type=kind,
        config=config,
        layers=layers,
        annotations=_str_map(obj.get("annotations"), "annotations", what),
        subject=subject,
        artifact_type=_str(obj, "artifactType", what, required=False),
        explicit_media_type="mediaType" in obj,
    )


def _parse_index(obj: dict[str, Any], kind: str) -> ImageIndex:
    what = "OCI index" if kind == mt.OCI_INDEX else "Docker manifest list"
    _check_schema_version(obj, 2, what)
    items = obj.get("manifests")
    if not isinstance(items, list):
        raise _err(what, "'manifests' is missing or not a list")
    return ImageIndex(
        media_type=kind,
        manifests=[Descriptor.from_json(item, what) for item in items],
        annotations=_str_map(obj.get("annotations"), "annotations", what),
        explicit_media_type="mediaType" in obj,
    )


def _parse_schema1(obj: dict[str, Any], kind: str) -> Schema1Manifest:
    what = "Docker schema 1 manifest"
    _check_schema_version(obj, 1, what)
    fs_layers = obj.get("fsLayers")
    history = obj.get("history")
    if not isinstance(fs_layers, list) or not isinstance(history, list):
        raise _err(what, "'fsLayers' or 'history' missing")
    if len(fs_layers) != len(history) or not fs_layers:
        raise _err(what, "'fsLayers' and 'history' differ in length or are empty")
    digests = [Digest.parse(_str(_obj(x, "fsLayer", what), "blobSum", what)) for x in fs_layers]
    compat = []
    for entry in history:
        text = _str(_obj(entry, "history entry", what), "v1Compatibility", what)
        compat.append(_obj(loads_json(text.encode(), what), "v1Compatibility", what))
    return Schema1Manifest(
        name=_str(obj, "name", what, required=False),
        tag=_str(obj, "tag", what, required=False),
        architecture=_str(obj, "architecture", what, required=False),
        fs_layers=digests,
        v1_compat=compat,
        media_type=kind,
    )


def manifest_digest(raw: bytes) -> Digest:
    """Digest of manifest bytes, as registries compute it.

    For a signed schema 1 manifest the registry's digest covers the JWS
    payload (the bytes without the ``signatures`` member), recovered from
    ``formatLength``/``formatTail`` in the protected header; every other
    manifest is hashed exactly as served.
    """
    if b'"signatures"' in raw and guess_media_type(raw) == mt.DOCKER_V2S1_SIGNED:
        payload = _schema1_payload(raw)
        if payload is not None:
            return sha256_of(payload)
    return sha256_of(raw)


def _schema1_payload(raw: bytes) -> bytes | None:
    import base64

    try:
        obj = json.loads(raw)
        protected = obj["signatures"][0]["protected"]
        header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
        length = int(header["formatLength"])
        tail_text = header["formatTail"]
        tail = base64.urlsafe_b64decode(tail_text + "=" * (-len(tail_text) % 4))
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if not 0 <= length <= len(raw):
        return None
    return raw[:length] + tail
