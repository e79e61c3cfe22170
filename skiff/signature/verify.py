"""Checking one signature against a policy requirement, in a fixed order.

Simple signing (``verify_simple``):
1. the cryptographic signature, against a keyring holding only the
   requirement's keys; the signer's fingerprint (or its primary key's) must
   be one of the keys imported — else ``UntrustedSigner``; corrupt bytes, a
   bad or expired signature — ``InvalidSignature``;
2. the payload, parsed strictly only now that it is authenticated;
3. the manifest digest it claims, against the manifest actually fetched
   (hashed with the claimed algorithm; a schema 1 manifest by its JWS
   payload) — else ``SignedDigestMismatch``;
4. the identity it claims, against the image's reference under the
   requirement's ``signedIdentity`` — else ``SignedIdentityMismatch``.

Sigstore (``verify_sigstore``) is the same with an ECDSA (or RSA/Ed25519)
public key in step 1. The first failing step is the reason given, so a
signature by an unknown key for another image reports the key.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from skiff.oci.digest import Digest
from skiff.signature.errors import (
    SignedDigestMismatch,
    SignedIdentityMismatch,
    UntrustedSigner,
)
from skiff.signature.simple import SIGSTORE_TYPE, UntrustedPayload, parse_payload

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from skiff.oci.reference import NamedReference
    from skiff.signature.mechanism import GPGMechanism
    from skiff.signature.policy.identity import IdentityRequirement


def manifest_matches_digest(manifest: bytes, digest: Digest) -> bool:
    """Whether ``manifest`` is the one ``digest`` names (docker/distribution's rule)."""
    from skiff.oci.manifest import manifest_digest

    if digest.algorithm == "sha256":
        return manifest_digest(manifest) == digest
    return hashlib.new(digest.algorithm, manifest).hexdigest() == digest.hex


def check_digest(payload: UntrustedPayload, manifest: bytes) -> None:
    claimed = payload.untrusted_docker_manifest_digest
    if not manifest_matches_digest(manifest, claimed):
        from skiff.oci.manifest import manifest_digest

        raise SignedDigestMismatch(
            f"signs manifest {claimed}, but the manifest fetched is {manifest_digest(manifest)}",
            "the image was changed after it was signed (or the signature belongs to another image)",
        )


def check_identity(
    payload: UntrustedPayload, image: NamedReference | None, identity: IdentityRequirement
) -> None:
    claimed = payload.untrusted_docker_reference
    if not identity.matches(image, claimed):
        target = str(image) if image is not None else "an image without a Docker reference"
        raise SignedIdentityMismatch(
            f"signed for {claimed!r}, which does not match {target} "
            f"under signedIdentity {identity.type}",
        )


def verify_simple(
    signature: bytes,
    *,
    mechanism: GPGMechanism,
    trusted: frozenset[str],
    manifest: bytes,
    image: NamedReference | None,
    identity: IdentityRequirement,
) -> UntrustedPayload:
    """Run the four checks on one simple signature; its payload if all pass."""
    verified = mechanism.verify(signature)
    if not verified.fingerprints & trusted:
        raise UntrustedSigner(
            f"signed by key {verified.primary_fingerprint}, which is not trusted",
            verified.primary_fingerprint,
        )
    payload = parse_payload(verified.payload)
    check_digest(payload, manifest)
    check_identity(payload, image, identity)
    return payload


def verify_sigstore(
    signature: bytes,
    *,
    public_key: PublicKeyTypes,
    manifest: bytes,
    image: NamedReference | None,
    identity: IdentityRequirement,
) -> UntrustedPayload:
    """The same checks for one sigstore signature (in its in-memory blob form)."""
    from skiff.signature.sigstore import from_blob, verify_signature

    authenticated = verify_signature(public_key, from_blob(signature))
    payload = parse_payload(authenticated, SIGSTORE_TYPE, optional_may_be_null=True)
    check_digest(payload, manifest)
    check_identity(payload, image, identity)
    return payload
