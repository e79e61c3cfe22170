"""Signed Docker schema 1 manifests, as old registries served them.

Schema 1 is read-only history in skiff (the copy engine converts it), but
testing that needs a registry that serves one, and Distribution only
accepts a schema 1 push (with ``compatibility.schema1.enabled``) when it is
signed: a libtrust "pretty JWS", the manifest JSON with a ``signatures``
member spliced in before its closing brace. Each signature's protected
header records ``formatLength`` and ``formatTail``, from which a reader
recovers the signed payload (the manifest without ``signatures``); the
payload's sha256 is the manifest's digest.

``signed_schema1`` builds one with a fresh ECDSA P-256 key (ES256), the
only algorithm needed here; the key ID is libtrust's fingerprint, which
Distribution checks against the embedded JWK.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skiff.oci.digest import Digest, sha256_of

SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
FIXED_TIME = "2023-11-14T22:13:20Z"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _key_id(der: bytes) -> str:
    """libtrust's key ID: base32 of the first 240 bits of sha256(DER), in groups of 4."""
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


@dataclass(frozen=True)
class Schema1Layer:
    """One v1 layer: its blob (gzip) and its v1Compatibility document."""

    blob: bytes
    v1_compatibility: dict[str, Any]

    @property
    def digest(self) -> Digest:
        return sha256_of(self.blob)


def signed_schema1(name: str, tag: str, architecture: str, layers: Sequence[Schema1Layer]) -> bytes:
    """A signed schema 1 manifest; ``layers`` newest first, as schema 1 lists them."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    manifest = {
        "schemaVersion": 1,
        "name": name,
        "tag": tag,
        "architecture": architecture,
        "fsLayers": [{"blobSum": str(layer.digest)} for layer in layers],
        "history": [
            {"v1Compatibility": json.dumps(layer.v1_compatibility, separators=(",", ":"))}
            for layer in layers
        ],
    }
    payload = json.dumps(manifest, indent=3).encode()
    close = payload.rstrip().rfind(b"}")
    format_length = len(payload[:close].rstrip())
    format_tail = payload[format_length:]
    protected = _b64url(
        json.dumps(
            {"formatLength": format_length, "formatTail": _b64url(format_tail), "time": FIXED_TIME}
        ).encode()
    )

    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der_signature = key.sign(f"{protected}.{_b64url(payload)}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der_signature)
    signature = {
        "header": {
            "jwk": {
                "crv": "P-256",
                "kid": _key_id(der),
                "kty": "EC",
                "x": _b64url(numbers.x.to_bytes(32, "big")),
                "y": _b64url(numbers.y.to_bytes(32, "big")),
            },
            "alg": "ES256",
        },
        "signature": _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big")),
        "protected": protected,
    }
    signatures = json.dumps([signature], indent=3).replace("\n", "\n   ")
    return payload[:format_length] + f',\n   "signatures": {signatures}\n}}\n'.encode()
