"""Why one signature was not accepted.

A policy requirement looks at every signature of an image; each one it
refuses gets a reason, and the image is rejected (``PolicyRejected``, in
skiff.errors) with all of them. The reasons are distinct types so that a
caller — and a test — can tell an untrusted signer from a signature for
another manifest or another name:

    SignatureError
    └── SignatureRejected          one signature does not satisfy a requirement
        ├── InvalidSignature       not a valid signed message / payload
        ├── UntrustedSigner        made by a key the policy does not trust
        ├── SignedDigestMismatch   signed for another manifest
        └── SignedIdentityMismatch signed for another name
    PolicyRejected
    └── ImageRejected              the verdict, with every signature's reason
"""

from __future__ import annotations

from skiff.errors import PolicyRejected, SignatureError


class SignatureRejected(SignatureError):
    """One signature does not satisfy a requirement (a reason, not the verdict)."""


class InvalidSignature(SignatureRejected):
    """Corrupt bytes, a bad cryptographic signature, or a malformed payload."""


class UntrustedSigner(SignatureRejected):
    """A cryptographically valid signature by a key the policy does not list."""

    def __init__(self, message: str, key: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.key = key


class SignedDigestMismatch(SignatureRejected):
    """The signature names a manifest digest other than the manifest fetched."""


class SignedIdentityMismatch(SignatureRejected):
    """The signature names an image identity the policy does not accept here."""


class ImageRejected(PolicyRejected):
    """The policy refuses an image; ``reasons`` holds why each signature failed."""

    def __init__(
        self, message: str, hint: str | None = None, reasons: list[SignatureRejected] | None = None
    ) -> None:
        super().__init__(message, hint)
        self.reasons = list(reasons or [])
