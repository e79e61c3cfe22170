"""Docker references: parsing and normalization as the Docker/containers tools do.

Grammar (distribution/reference):

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [domain "/"] path-component ["/" path-component]*
    domain          := host [":" port]
    host            := domain-component ["." domain-component]* | "[" ipv6 "]"
    domain-component:= [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?
    path-component  := [a-z0-9]+ (separator [a-z0-9]+)*
    separator       := [_.] | "__" | "-"+
    tag             := [\\w][\\w.-]{0,127}

Normalization: a name whose first component has no "." or ":" and is not
"localhost" gets the docker.io domain, and a single-component docker.io path
gets "library/"; ``index.docker.io`` is docker.io. ``familiar()`` undoes it.

Whether a name is a *short name* (no explicit domain) matters for
registries.conf resolution; see ``skiff.image.shortnames``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skiff.errors import InvalidReference
from skiff.oci.digest import Digest, InvalidDigest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"

# Anchored with \A...\Z (not ^...$: "$" also matches before a trailing newline)
# and ASCII-only (Go's \w is ASCII; Python's would accept any Unicode letter).
_PATH_RE = re.compile(rf"\A{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*\Z", re.ASCII)
_DOMAIN_RE = re.compile(rf"\A{_DOMAIN}\Z", re.ASCII)
_TAG_RE = re.compile(rf"\A{_TAG}\Z", re.ASCII)
_DIGEST_RE = re.compile(rf"\A{_DIGEST}\Z", re.ASCII)
_ANCHORED_ID_RE = re.compile(r"\A[a-f0-9]{64}\Z")


@dataclass(frozen=True)
class NamedReference:
    """A normalized, fully qualified Docker reference.

    ``domain``/``path`` always hold the normalized form (``docker.io`` and
    ``library/busybox``); ``tag`` and ``digest`` are optional and may both
    be present (``name:tag@digest``; the digest then identifies the image).
    """

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """The repository with its domain: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def familiar_name(self) -> str:
        """The repository as users type it: ``busybox``, ``quay.io/a/b``."""
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            if (
                path.startswith(OFFICIAL_REPO_PREFIX)
                and "/" not in path[len(OFFICIAL_REPO_PREFIX) :]
            ):
                path = path[len(OFFICIAL_REPO_PREFIX) :]
            if split_domain(path)[0] is not None:
                # docker.io/foo.bar/x: without its domain, "foo.bar" would read
                # back as a registry (docker's FamiliarName has this bug)
                return self.name
            return path
        return self.name

    def familiar(self) -> str:
        text = self.familiar_name()
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def is_name_only(self) -> bool:
        return self.tag is None and self.digest is None

    def with_tag(self, tag: str) -> NamedReference:
        if not _TAG_RE.match(tag):
            raise InvalidReference(
                f"invalid tag {tag!r}", "tags are [A-Za-z0-9_.-], at most 128 long"
            )
        return NamedReference(self.domain, self.path, tag, None)

    def with_digest(self, digest: Digest) -> NamedReference:
        return NamedReference(self.domain, self.path, None, digest)

    def name_only(self) -> NamedReference:
        return NamedReference(self.domain, self.path)

    def tag_or_latest(self) -> NamedReference:
        """Add ``:latest`` to a name-only reference (docker's TagNameOnly)."""
        if self.is_name_only():
            return NamedReference(self.domain, self.path, DEFAULT_TAG, None)
        return self


def split_domain(name: str) -> tuple[str | None, str]:
    """Split ``name`` into (explicit domain or None, remainder).

    The first component is a domain only if it contains "." or ":" or is
    "localhost", or has an upper-case letter (docker's rule, which then makes
    the name invalid rather than silently lowercasing it).
    """
    first, sep, rest = name.partition("/")
    if not sep:
        return None, name
    if "." in first or ":" in first or first == "localhost" or first != first.lower():
        return first, rest
    return None, name


def is_short_name(text: str) -> bool:
    """True when ``text`` names no registry (registries.conf resolves it)."""
    name = text.split("@", 1)[0]
    domain, _ = split_domain(name)
    return domain is None


def _split_tag_digest(text: str) -> tuple[str, str | None, str | None]:
    name, at, digest_text = text.partition("@")
    digest = digest_text if at else None
    tag = None
    # a ":" after the last "/" is a tag separator (a ":" before it is a port)
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def parse_normalized_named(text: str) -> NamedReference:
    """Parse a reference as ``docker pull`` does, normalizing the name."""
    if not text:
        raise InvalidReference("invalid reference: empty string")
    if _ANCHORED_ID_RE.match(text):
        raise InvalidReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    name, tag, digest_text = _split_tag_digest(text)
    domain, remainder = split_domain(name)
    if domain is None:
        domain = DEFAULT_DOMAIN
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return _build(text, domain, remainder, tag, digest_text)


def parse_named(text: str) -> NamedReference:
    """Parse a reference that must already be fully qualified and normalized.

    ``busybox`` is rejected here (it is a short name); so is
    ``docker.io/busybox`` (not normalized: it would be docker.io/library/busybox).
    """
    ref = parse_normalized_named(text)
    if str(ref) != text:
        raise InvalidReference(
            f"invalid reference {text!r}: repository name must be canonical",
            f"use {ref}",
        )
    return ref


def _build(
    original: str, domain: str, path: str, tag: str | None, digest_text: str | None
) -> NamedReference:
    if not _DOMAIN_RE.match(domain):
        raise InvalidReference(
            f"invalid reference format: invalid domain {domain!r} in {original!r}"
        )
    if not _PATH_RE.match(path):
        if path.lower() != path and _PATH_RE.match(path.lower()):
            raise InvalidReference(
                f"invalid reference format: repository name must be lowercase: {original!r}"
            )
        raise InvalidReference(
            f"invalid reference format: {original!r}",
            "names are lowercase [a-z0-9] separated by '.', '_', '__' or '-', components by '/'",
        )
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            f"invalid reference {original!r}: repository name must not be more than "
            f"{NAME_TOTAL_LENGTH_MAX} characters"
        )
    if tag is not None and not _TAG_RE.match(tag):
        raise InvalidReference(f"invalid reference format: invalid tag {tag!r} in {original!r}")
    digest = None
    if digest_text is not None:
        if not _DIGEST_RE.match(digest_text):
            raise InvalidReference(f"invalid reference format: invalid digest in {original!r}")
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest as exc:
            # callers catch InvalidReference for any malformed reference text
            raise InvalidReference(
                f"invalid reference format: {exc.message} in {original!r}", exc.hint
            ) from exc
    return NamedReference(domain, path, tag, digest)


def validate_domain(text: str) -> str:
    """Validate a registry ``host[:port]`` (no path) as references spell it."""
    if not _DOMAIN_RE.match(text):
        raise InvalidReference(
            f"invalid registry {text!r}", "expected HOST[:PORT], e.g. quay.io or 127.0.0.1:5000"
        )
    return text


def parse_repository_path(text: str) -> str:
    """Validate a repository path without domain (``library/busybox``)."""
    if not _PATH_RE.match(text):
        raise InvalidReference(f"invalid repository path {text!r}")
    return text


def validate_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise InvalidReference(f"invalid tag {tag!r}", "tags are [A-Za-z0-9_.-], at most 128 long")
    return tag
