"""The simple-signing payload: what an "atomic container signature" claims.

    {"critical": {"type": "atomic container signature",
                  "image": {"docker-manifest-digest": "sha256:…"},
                  "identity": {"docker-reference": "host/repo:tag"}},
     "optional": {"creator": "…", "timestamp": 1700000000}}

(container-signature(5)). The same JSON, with ``critical.type`` "cosign
container image signature", is the sigstore payload, so one parser serves
both with the expected type as a parameter.

Parsing is strict as the format demands: duplicate members anywhere are
refused (a JSON parser keeping the last one would let two readers disagree),
the top level must be exactly ``critical`` and ``optional``, and
``critical`` and its sub-objects must have exactly the known members with
the right types. ``optional`` may carry anything, but ``creator`` and
``timestamp`` must have their types if present.

Values come out as ``untrusted_…``: a payload is only parsed after its
cryptographic signature verified, and even then the digest and identity
it claims must still be checked against the image (skiff.signature.verify).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from skiff import __version__
from skiff.oci.digest import Digest, InvalidDigest
from skiff.signature.errors import InvalidSignature

SIMPLE_SIGNING_TYPE = "atomic container signature"
SIGSTORE_TYPE = "cosign container image signature"
CREATOR = f"skiff {__version__}"

_INT64 = (-(1 << 63), (1 << 63) - 1)


@dataclass(frozen=True)
class UntrustedPayload:
    """A parsed payload; nothing in it is vouched for until verify.py checks it."""

    untrusted_docker_manifest_digest: Digest
    untrusted_docker_reference: str
    untrusted_creator: str | None = None
    untrusted_timestamp: int | None = None


def make_payload(
    manifest_digest: Digest,
    docker_reference: str,
    *,
    signature_type: str = SIMPLE_SIGNING_TYPE,
    creator: str | None = CREATOR,
    timestamp: int | None = None,
) -> bytes:
    """The JSON payload to sign for ``docker_reference`` at ``manifest_digest``."""
    optional: dict[str, Any] = {}
    if creator is not None:
        optional["creator"] = creator
    optional["timestamp"] = int(time.time()) if timestamp is None else timestamp
    document = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": str(manifest_digest)},
            "type": signature_type,
        },
        "optional": optional,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidSignature(f"the signature payload has a duplicate member {key!r}")
        out[key] = value
    return out


def loads_strict(data: bytes, what: str) -> Any:
    """JSON with duplicate members refused (as InvalidSignature naming ``what``)."""
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except InvalidSignature:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidSignature(f"{what} is not valid JSON: {exc}") from exc


def _reject_constant(name: str) -> Any:
    raise InvalidSignature(f"the signature payload contains the non-JSON constant {name}")


def _exact_object(value: Any, members: set[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidSignature(f"{where} in the signature payload is not a JSON object")
    missing = members - value.keys()
    if missing:
        raise InvalidSignature(f"{where} in the signature payload lacks {sorted(missing)}")
    unknown = value.keys() - members
    if unknown:
        raise InvalidSignature(
            f"{where} in the signature payload has unknown members {sorted(unknown)}",
            "this signature uses a format skiff does not know; it cannot be accepted",
        )
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidSignature(f"{where} in the signature payload is not a string")
    return value


def parse_payload(
    data: bytes, signature_type: str = SIMPLE_SIGNING_TYPE, *, optional_may_be_null: bool = False
) -> UntrustedPayload:
    """Parse a verified payload strictly; InvalidSignature when it breaks the format.

    ``optional_may_be_null``: cosign writes ``"optional": null`` (sigstore only).
    """
    document = loads_strict(data, "the signature payload")
    if not isinstance(document, dict):
        raise InvalidSignature("the signature payload is not a JSON object")
    if optional_may_be_null:
        document = dict(document)
        if document.get("optional", {}) is None or "optional" not in document:
            document["optional"] = {}
    top = _exact_object(document, {"critical", "optional"}, "the top level")
    critical = _exact_object(top["critical"], {"type", "image", "identity"}, "critical")
    kind = _string(critical["type"], "critical.type")
    if kind != signature_type:
        raise InvalidSignature(
            f"the signature payload has type {kind!r}, expected {signature_type!r}"
        )
    image = _exact_object(critical["image"], {"docker-manifest-digest"}, "critical.image")
    digest_text = _string(image["docker-manifest-digest"], "critical.image.docker-manifest-digest")
    try:
        digest = Digest.parse(digest_text)
    except InvalidDigest as exc:
        raise InvalidSignature(f"the signed manifest digest is invalid: {exc.message}") from exc
    identity = _exact_object(critical["identity"], {"docker-reference"}, "critical.identity")
    reference = _string(identity["docker-reference"], "critical.identity.docker-reference")

    optional = top["optional"]
    if not isinstance(optional, dict):
        raise InvalidSignature("optional in the signature payload is not a JSON object")
    creator = optional.get("creator")
    if creator is not None and not isinstance(creator, str):
        raise InvalidSignature("optional.creator in the signature payload is not a string")
    timestamp = optional.get("timestamp")
    if timestamp is not None:
        if isinstance(timestamp, float) and timestamp.is_integer():
            timestamp = int(timestamp)
        if (
            not isinstance(timestamp, int)
            or isinstance(timestamp, bool)
            or not _INT64[0] <= timestamp <= _INT64[1]
        ):
            raise InvalidSignature("optional.timestamp in the signature payload is not an integer")
    return UntrustedPayload(digest, reference, creator, timestamp)
