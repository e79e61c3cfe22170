"""Registry answers turned into skiff errors.

A registry explains a failure twice: in the HTTP status, and in a JSON body
``{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "...", "detail": ...}]}``
(distribution spec, "Error Codes"). The status picks the skiff error class
(so the CLI and the copy engine can react to it), the body gives the words a
user needs; both end up in the message. What a 404 means depends on what was
asked for, so callers say which kind of object they addressed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

from skiff.errors import (
    AuthenticationError,
    BlobUnknown,
    ImageNotFound,
    RegistryError,
    RegistryUnavailable,
    SkiffError,
    TooManyRequests,
)

LOGIN_HINT = "log in with `skiff login {registry}` or pass --creds USER:PASSWORD"


class Target(Enum):
    """What a request addressed: decides which error a 404 becomes."""

    MANIFEST = "manifest"
    BLOB = "blob"
    UPLOAD = "upload"
    REPOSITORY = "repository"
    REGISTRY = "registry"


@dataclass(frozen=True)
class RegistryErrorDetail:
    """One entry of a distribution error body."""

    code: str
    message: str


def parse_error_body(body: bytes) -> list[RegistryErrorDetail]:
    """The ``errors`` entries of a registry error body; [] if it has none.

    Bodies that are not the documented JSON (HTML from a proxy, plain text)
    are not an error here: the status alone still classifies the failure.
    """
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(obj, dict) or not isinstance(obj.get("errors"), list):
        return []
    out = []
    for entry in obj["errors"]:
        if not isinstance(entry, dict):
            continue
        code = entry.get("code")
        message = entry.get("message")
        out.append(
            RegistryErrorDetail(
                code=code if isinstance(code, str) else "",
                message=message if isinstance(message, str) else "",
            )
        )
    return out


def describe_body(status: int, reason: str, body: bytes) -> str:
    """Short text for an error answer: the registry's own words if it gave any.

    ``manifest unknown`` for a distribution error, else the first line of a
    short plain-text body, else ``HTTP 404 Not Found``.
    """
    details = parse_error_body(body)
    if details:
        parts = []
        for detail in details:
            text = detail.message or detail.code.lower().replace("_", " ")
            if detail.code and detail.message and detail.code.lower().replace("_", " ") != text:
                text = f"{text} ({detail.code})"
            parts.append(text)
        return "; ".join(parts)
    lines = body[:200].decode("utf-8", "replace").strip().splitlines()
    if lines and not lines[0].lstrip().startswith("<"):
        return f"HTTP {status} {reason}: {lines[0]}".rstrip(": ")
    return f"HTTP {status} {reason}".rstrip()


def error_from_status(
    status: int,
    reason: str,
    body: bytes,
    *,
    context: str,
    target: Target,
    registry: str,
) -> SkiffError:
    """The skiff error for an unexpected status.

    ``context`` says what we were doing, e.g. ``reading manifest latest in
    127.0.0.1:5000/busybox``; the result reads ``CONTEXT: REGISTRY'S WORDS``.
    """
    text = f"{context}: {describe_body(status, reason, body)}"
    codes = {d.code for d in parse_error_body(body)}
    if status in (401, 403):
        return AuthenticationError(text, LOGIN_HINT.format(registry=registry), status=status)
    if status == 404 or codes & {"MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN"}:
        if target in (Target.MANIFEST, Target.REPOSITORY):
            return ImageNotFound(text, "check the repository name and tag")
        if target is Target.BLOB:
            return BlobUnknown(text, "the image refers to a blob the registry does not have")
    if status == 429:
        return TooManyRequests(
            text, "the registry is rate-limiting this client; wait and retry", status=status
        )
    if status >= 500:
        return RegistryUnavailable(
            text, "the registry failed; retry later or raise --retry-times", status=status
        )
    if status == 405 and target is Target.MANIFEST:
        return RegistryError(
            text,
            "the registry does not allow this operation (for deletes: enable "
            "REGISTRY_STORAGE_DELETE_ENABLED on the registry)",
            status=status,
        )
    return RegistryError(text, status=status)
