"""Sigstore signatures attached in the registry, beside the image they sign.

For an image with manifest digest ``sha256:HEX`` the signatures are an OCI
image tagged ``sha256-HEX.sig`` in the same repository (cosign's
convention, which containers/image follows): one layer per signature, each
layer the payload JSON (media type
``application/vnd.dev.cosign.simplesigning.v1+json``) with the
cryptographic signature in its ``dev.cosignproject.cosign/signature``
annotation. The config is a minimal image config listing the layers.

Reading verifies every layer against its digest before it is used (the
registry is not trusted). Writing merges: signatures already attached stay,
a byte-identical one is not added twice, and the manifest is replaced under
the tag with the longer list.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from skiff.errors import ImageNotFound, SignatureError
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, sha256_of
from skiff.signature.sigstore import SigstoreSignature

if TYPE_CHECKING:
    from skiff.image.transports.docker.client import RegistryClient

MAX_LAYER_SIZE = 4 << 20
MAX_LAYERS = 128


def signature_tag(digest: Digest) -> str:
    return f"{digest.algorithm}-{digest.hex}.sig"


def _read_blob(client: RegistryClient, digest: Digest, size: int) -> bytes:
    from skiff.image.transports.docker import api

    if size > MAX_LAYER_SIZE:
        raise SignatureError(f"sigstore signature blob {digest} is larger than 4 MiB")
    body = api.open_blob(client, digest, size)
    parts: list[bytes] = []
    total = 0
    try:
        while total <= MAX_LAYER_SIZE:
            chunk = body.read(MAX_LAYER_SIZE + 1 - total)
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
    finally:
        body.close()
    data = b"".join(parts)
    if len(data) > MAX_LAYER_SIZE:
        raise SignatureError(f"sigstore signature blob {digest} is larger than 4 MiB")
    digest.verify_bytes(data, what=f"sigstore signature blob {digest}")
    return data


def read_attachments(client: RegistryClient, digest: Digest) -> list[SigstoreSignature]:
    """The sigstore signatures attached to the manifest ``digest`` ([] if none)."""
    from skiff.image.transports.docker import api
    from skiff.oci.manifest import ImageManifest, parse_manifest

    tag = signature_tag(digest)
    try:
        raw, media_type = api.get_manifest(client, tag)
    except ImageNotFound:
        return []
    manifest = parse_manifest(raw, media_type)
    if not isinstance(manifest, ImageManifest):
        raise SignatureError(
            f"{client.registry}/{client.repository}:{tag} is not an image manifest",
            "it cannot hold sigstore signatures; remove or retag it",
        )
    if len(manifest.layers) > MAX_LAYERS:
        raise SignatureError(f"{client.registry}/{client.repository}:{tag} has too many layers")
    out = []
    for layer in manifest.layers:
        payload = _read_blob(client, layer.digest, layer.size)
        out.append(SigstoreSignature(layer.media_type, payload, dict(layer.annotations)))
    return out


def _descriptor(
    media_type: str, data: bytes, annotations: dict[str, str] | None = None
) -> dict[str, object]:
    out: dict[str, object] = {
        "mediaType": media_type,
        "size": len(data),
        "digest": str(sha256_of(data)),
    }
    if annotations:
        out["annotations"] = annotations
    return out


def _upload(client: RegistryClient, data: bytes) -> None:
    from skiff.image.transports.docker import api

    digest = sha256_of(data)
    if api.blob_size(client, digest) is not None:
        return
    upload = api.start_upload(client)
    try:
        api.put_blob_monolithic(client, upload, data, digest)
    except BaseException:
        api.cancel_upload(client, upload)
        raise


def write_attachments(
    client: RegistryClient, digest: Digest, signatures: list[SigstoreSignature]
) -> int:
    """Attach ``signatures`` to manifest ``digest``, keeping those already there.

    Returns how many were added. ``client`` needs push access.
    """
    from skiff.image.transports.docker import api

    existing = read_attachments(client, digest)
    merged = list(existing)
    for signature in signatures:
        if signature not in merged:
            merged.append(signature)
    added = len(merged) - len(existing)
    if not added:
        return 0
    layers = []
    for signature in merged:
        _upload(client, signature.untrusted_payload)
        layers.append(
            _descriptor(
                signature.untrusted_mime_type,
                signature.untrusted_payload,
                signature.untrusted_annotations,
            )
        )
    config = json.dumps(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        },
        separators=(",", ":"),
    ).encode()
    _upload(client, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": _descriptor(mt.OCI_CONFIG, config),
            "layers": layers,
        },
        separators=(",", ":"),
    ).encode()
    api.put_manifest(client, signature_tag(digest), manifest, mt.OCI_MANIFEST)
    return added
