"""Tiny in-memory images, and the copy engine's call sequence, for transport tests.

Transport tests must exercise a destination and a source exactly as the
copy engine drives them (see ``skiff.image.types``) without depending on
the engine itself: ``write_image`` makes the same calls in the same order
(reuse check, ``put_blob`` with a verifying stream, ``put_manifest``,
``put_signatures``, ``commit``, ``close``), and ``read_image`` reads every
blob back through ``get_blob`` with verification. ``tiny_image`` builds
images of a few bytes with deterministic tars, so digests are stable.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from skiff.image.types import BlobInfo, ImageDestination, ImageSource
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, VerifyingReader, sha256_of
from skiff.oci.manifest import ImageManifest, parse_manifest


@dataclass(frozen=True)
class TinyImage:
    """One image: config, layer blobs as stored, and its manifest bytes."""

    config: bytes
    layers: tuple[bytes, ...]
    diff_ids: tuple[Digest, ...]
    manifest: bytes
    media_type: str
    layer_media_type: str
    architecture: str = "amd64"
    extra_blobs: dict[Digest, bytes] = field(default_factory=dict, compare=False)

    @property
    def manifest_digest(self) -> Digest:
        return sha256_of(self.manifest)

    @property
    def config_digest(self) -> Digest:
        return sha256_of(self.config)

    @property
    def layer_digests(self) -> tuple[Digest, ...]:
        return tuple(sha256_of(layer) for layer in self.layers)

    def blobs(self) -> dict[Digest, bytes]:
        out = {sha256_of(layer): layer for layer in self.layers}
        out[self.config_digest] = self.config
        return out


def layer_tar(files: Mapping[str, bytes]) -> bytes:
    """A deterministic uncompressed tar of regular files (sorted, mtime 0, 0:0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def tiny_image(
    layers: Sequence[Mapping[str, bytes]],
    *,
    docker: bool = False,
    compress: bool = True,
    architecture: str = "amd64",
    cmd: Sequence[str] = ("/bin/sh",),
) -> TinyImage:
    """An image with one layer per mapping (path → content)."""
    tars = [layer_tar(files) for files in layers]
    diff_ids = tuple(sha256_of(t) for t in tars)
    blobs = tuple(gzip.compress(t, mtime=0) for t in tars) if compress else tuple(tars)
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": list(cmd)},
            "rootfs": {"type": "layers", "diff_ids": [str(d) for d in diff_ids]},
        },
        separators=(",", ":"),
    ).encode()
    layer_type = mt.layer_type(not docker, "gzip" if compress else "")
    media_type = mt.DOCKER_V2S2 if docker else mt.OCI_MANIFEST
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
                "digest": str(sha256_of(config)),
                "size": len(config),
            },
            "layers": [
                {"mediaType": layer_type, "digest": str(sha256_of(b)), "size": len(b)}
                for b in blobs
            ],
        },
        indent=3,
    ).encode()
    return TinyImage(config, blobs, diff_ids, manifest, media_type, layer_type, architecture)


def tiny_index(images: Sequence[TinyImage]) -> bytes:
    """An OCI index over ``images`` (platform linux/ARCH from each image)."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": image.media_type,
                    "digest": str(image.manifest_digest),
                    "size": len(image.manifest),
                    "platform": {"architecture": image.architecture, "os": "linux"},
                }
                for image in images
            ],
        },
        indent=3,
    ).encode()


def put_image_blobs(dest: ImageDestination, image: TinyImage) -> None:
    """Config and layers, as the engine sends them: reuse if possible, else stream."""
    compression = mt.layer_compression(image.layer_media_type)
    items: list[tuple[bytes, str, bool]] = [
        (layer, image.layer_media_type, False) for layer in image.layers
    ]
    config_type = mt.DOCKER_CONFIG if image.media_type == mt.DOCKER_V2S2 else mt.OCI_CONFIG
    items.append((image.config, config_type, True))
    for blob, media_type, is_config in items:
        digest = sha256_of(blob)
        info = BlobInfo(
            digest=digest,
            size=len(blob),
            media_type=media_type,
            compression=None if is_config else compression,
        )
        if dest.try_reusing_blob(info, can_substitute=False) is not None:
            continue
        stream = VerifyingReader(io.BytesIO(blob), digest, len(blob))
        stored = dest.put_blob(stream, info, is_config)
        assert stored.digest == digest, (stored.digest, digest)
        assert stored.size == len(blob)


def write_image(
    dest: ImageDestination,
    image: TinyImage,
    *,
    signatures: Sequence[bytes] = (),
    commit: bool = True,
) -> None:
    """Copy ``image`` into ``dest`` and close it (committing unless told not to)."""
    try:
        put_image_blobs(dest, image)
        dest.put_manifest(image.manifest)
        if signatures or dest.supports_signatures():
            dest.put_signatures(list(signatures))
        if commit:
            dest.commit()
    finally:
        dest.close()


def write_index(
    dest: ImageDestination,
    index: bytes,
    images: Sequence[TinyImage],
    *,
    signatures: Mapping[Digest | None, Sequence[bytes]] | None = None,
) -> None:
    """Copy an index and all its instances into ``dest``, then commit and close."""
    sigs = signatures or {}
    try:
        for image in images:
            put_image_blobs(dest, image)
            dest.put_manifest(image.manifest, image.manifest_digest)
            if image.manifest_digest in sigs:
                dest.put_signatures(list(sigs[image.manifest_digest]), image.manifest_digest)
        dest.put_manifest(index)
        if None in sigs:
            dest.put_signatures(list(sigs[None]))
        dest.commit()
    finally:
        dest.close()


def read_blob(source: ImageSource, info: BlobInfo) -> bytes:
    """One blob read through ``get_blob`` and verified as the engine does."""
    stream, size = source.get_blob(info)
    try:
        expected = info.size if info.size >= 0 else size
        verified = VerifyingReader(stream, info.digest, expected)
        chunks = []
        while chunk := verified.read(65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        stream.close()


@dataclass
class ReadBack:
    manifest: bytes
    media_type: str
    blobs: dict[Digest, bytes]
    layer_infos: list[BlobInfo]


def read_image(source: ImageSource, instance: Digest | None = None) -> ReadBack:
    """Manifest, media type and every blob of one image (not an index)."""
    raw, media_type = source.get_manifest(instance)
    manifest = parse_manifest(raw, media_type)
    assert isinstance(manifest, ImageManifest), type(manifest)
    blobs: dict[Digest, bytes] = {}
    config_info = BlobInfo(manifest.config.digest, manifest.config.size)
    blobs[manifest.config.digest] = read_blob(source, config_info)
    infos = source.layer_infos_for_copy(instance)
    if infos is None:
        infos = [
            BlobInfo(
                layer.digest,
                layer.size,
                layer.media_type,
                compression=mt.layer_compression(layer.media_type),
            )
            for layer in manifest.layers
        ]
    for info in infos:
        assert info.digest is not None
        blobs[info.digest] = read_blob(source, info)
    return ReadBack(raw, media_type, blobs, infos)
