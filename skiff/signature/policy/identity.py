"""``signedIdentity``: which names a signature may claim for an image.

The image's own identity is its Docker reference (``docker://`` names,
``containers-storage:`` names); transports without one (``dir:``, ``oci:``)
can only be matched by ``exactReference``/``exactRepository``. The signed
identity is parsed with the same normalization as ``docker pull``
(``busybox:latest`` is ``docker.io/library/busybox:latest``); one that does
not parse matches nothing.

    matchExact              signed == image (both tagged or digested)
    matchRepoDigestOrExact  image tagged: signed == image; image by digest:
                            same repository (default)
    matchRepository         same repository
    exactReference          signed == the configured reference
    exactRepository         signed is in the configured repository
    remapIdentity           replace ``prefix`` in the image's name by
                            ``signedPrefix``, then matchRepoDigestOrExact
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from skiff.errors import InvalidReference
from skiff.oci.reference import NamedReference, parse_named, parse_normalized_named


class IdentityRequirement(Protocol):
    @property
    def type(self) -> str: ...

    def matches(self, image: NamedReference | None, signed: str) -> bool:
        """Whether a signature claiming ``signed`` is acceptable for ``image``."""
        ...

    def to_json(self) -> dict[str, Any]: ...


def _parse_signed(signed: str) -> NamedReference | None:
    try:
        return parse_normalized_named(signed)
    except InvalidReference:
        return None


def _repo_digest_or_exact(image: NamedReference | None, signed: str) -> bool:
    ref = _parse_signed(signed)
    if image is None or ref is None or ref.is_name_only():
        return False
    if image.tag is not None:
        return str(ref) == str(image)
    if image.digest is not None:
        # the digest itself was checked against the manifest, and the
        # signature's digest against the same manifest
        return ref.name == image.name
    return False


@dataclass(frozen=True)
class MatchExact:
    type: str = "matchExact"

    def matches(self, image: NamedReference | None, signed: str) -> bool:
        ref = _parse_signed(signed)
        if image is None or ref is None or image.is_name_only() or ref.is_name_only():
            return False
        return str(ref) == str(image)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(frozen=True)
class MatchRepoDigestOrExact:
    type: str = "matchRepoDigestOrExact"

    def matches(self, image: NamedReference | None, signed: str) -> bool:
        return _repo_digest_or_exact(image, signed)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(frozen=True)
class MatchRepository:
    type: str = "matchRepository"

    def matches(self, image: NamedReference | None, signed: str) -> bool:
        ref = _parse_signed(signed)
        return image is not None and ref is not None and ref.name == image.name

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(frozen=True)
class ExactReference:
    docker_reference: NamedReference
    type: str = "exactReference"

    def matches(self, image: NamedReference | None, signed: str) -> bool:
        ref = _parse_signed(signed)
        if ref is None or ref.is_name_only():
            return False
        return str(ref) == str(self.docker_reference)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "dockerReference": str(self.docker_reference)}


@dataclass(frozen=True)
class ExactRepository:
    docker_repository: NamedReference
    type: str = "exactRepository"

    def matches(self, image: NamedReference | None, signed: str) -> bool:
        ref = _parse_signed(signed)
        return ref is not None and ref.name == self.docker_repository.name

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "dockerRepository": str(self.docker_repository)}


def _matches_prefix(text: str, prefix: str) -> bool:
    """``prefix`` is a prefix of ``text`` ending at a component boundary."""
    if len(text) < len(prefix) or not text.startswith(prefix):
        return False
    return len(text) == len(prefix) or text[len(prefix)] in "/:@"


@dataclass(frozen=True)
class RemapIdentity:
    prefix: str
    signed_prefix: str
    type: str = "remapIdentity"

    def remap(self, image: NamedReference) -> NamedReference | None:
        """The image's name with the prefix replaced (unchanged if it does not apply)."""
        text = str(image)
        if not _matches_prefix(text, self.prefix):
            return image
        try:
            return parse_named(self.signed_prefix + text[len(self.prefix) :])
        except InvalidReference:
            return None

    def matches(self, image: NamedReference | None, signed: str) -> bool:
        if image is None:
            return False
        return _repo_digest_or_exact(self.remap(image), signed)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "prefix": self.prefix, "signedPrefix": self.signed_prefix}
