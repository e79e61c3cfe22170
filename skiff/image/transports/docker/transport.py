"""The ``docker://`` transport: references to images in registries.

``docker://NAME[:TAG][@DIGEST]``: the ``//`` is required (as in skopeo), NAME
is normalized like ``docker pull`` does (``docker://busybox`` is
``docker.io/library/busybox:latest``), and a reference with both a tag and
a digest is accepted, the digest then identifying the image (as current
containers/image does; Debian's skopeo 1.9 still rejects such references).

Policy scopes (policy.json ``transports.docker``) are, most specific first:
the identity ``host/repo:tag`` (or ``host/repo@digest``), then the
namespaces ``host/repo``, ``host/parent``, ..., ``host``, then wildcard
domains ``*.sub.example.com``, ``*.example.com``, ``*.com`` (ports dropped,
since policy.json wildcards cannot carry one) — the containers/image order.

This module imports no HTTP code: parsing ``docker://...`` for a policy
check or a listing must stay cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skiff.errors import ConfigError, InvalidReference
from skiff.oci.reference import NamedReference, parse_normalized_named

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.transports.docker.destination import DockerImageDestination
    from skiff.image.transports.docker.source import DockerImageSource

_WILDCARD_DOMAIN_RE = re.compile(
    r"^\*\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*$"
)
_HOST_RE = re.compile(
    r"^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?$"
)


class DockerTransport:
    """``docker:``; the module-level ``TRANSPORT`` is the one instance."""

    @property
    def name(self) -> str:
        return "docker"

    def parse_reference(self, text: str) -> DockerReference:
        if not text.startswith("//"):
            raise InvalidReference(
                f"invalid docker reference {text!r}: it must start with '//'",
                "write docker://NAME[:TAG|@DIGEST], e.g. docker://quay.io/org/image:tag",
            )
        return DockerReference.from_named(parse_normalized_named(text[2:]))

    def validate_policy_scope(self, scope: str) -> None:
        """A scope is a wildcard domain, a host, or a canonical repository/image name."""
        if scope.startswith("*."):
            if not _WILDCARD_DOMAIN_RE.match(scope):
                raise ConfigError(
                    f"invalid docker policy scope {scope!r}",
                    "a wildcard scope is *.DOMAIN without port, e.g. *.example.com",
                )
            return
        if "/" not in scope:
            if not _HOST_RE.match(scope):
                raise ConfigError(f"invalid docker policy scope {scope!r}: not a host name")
            return
        try:
            ref = parse_normalized_named(scope)
        except InvalidReference as exc:
            raise ConfigError(f"invalid docker policy scope {scope!r}: {exc.message}") from exc
        if str(ref) != scope:
            raise ConfigError(
                f"invalid docker policy scope {scope!r}: not in canonical form",
                f"write it as {ref}",
            )


TRANSPORT = DockerTransport()


@dataclass(frozen=True)
class DockerReference:
    """A ``docker://`` reference; ``ref`` is normalized and has a tag or digest."""

    ref: NamedReference

    @classmethod
    def from_named(cls, ref: NamedReference) -> DockerReference:
        """Wrap a NamedReference, adding ``:latest`` to a bare name."""
        return cls(ref.tag_or_latest())

    @property
    def transport(self) -> DockerTransport:
        return TRANSPORT

    def __str__(self) -> str:
        return f"docker:{self.string_within_transport()}"

    def string_within_transport(self) -> str:
        return "//" + self.ref.familiar()

    def docker_reference(self) -> NamedReference:
        return self.ref

    def manifest_reference(self) -> str:
        """What goes after ``/manifests/``: the digest if there is one, else the tag."""
        if self.ref.digest is not None:
            return str(self.ref.digest)
        assert self.ref.tag is not None
        return self.ref.tag

    def policy_configuration_identity(self) -> str:
        return str(self.ref)

    def policy_configuration_namespaces(self) -> list[str]:
        out = []
        name = self.ref.name
        while True:
            out.append(name)
            slash = name.rfind("/")
            if slash < 0:
                break
            name = name[:slash]
        host = self.ref.domain
        if host.startswith("["):
            return out  # an IPv6 literal has no parent domains
        host = host.split(":", 1)[0]
        while "." in host:
            host = host.split(".", 1)[1]
            out.append(f"*.{host}")
        return out

    def new_image_source(self, ctx: SystemContext) -> DockerImageSource:
        """Open the image; its signatures come from registries.d's lookaside
        (and sigstore attachments where enabled), wired here so that every
        caller reads them the same way."""
        from skiff.image.transports.docker.source import DockerImageSource
        from skiff.signature.hooks import attach_source_hooks

        source = DockerImageSource.open(ctx, self)
        try:
            attach_source_hooks(source, ctx)
        except BaseException:
            source.close()
            raise
        return source

    def new_image_destination(self, ctx: SystemContext) -> DockerImageDestination:
        """Open for writing; signatures go where registries.d says (see above)."""
        from skiff.image.transports.docker.destination import DockerImageDestination
        from skiff.signature.hooks import attach_destination_hooks

        dest = DockerImageDestination.open(ctx, self)
        try:
            attach_destination_hooks(dest, ctx)
        except BaseException:
            dest.close()
            raise
        return dest

    def delete_image(self, ctx: SystemContext) -> None:
        from skiff.image.transports.docker.operations import delete_image

        delete_image(ctx, self.ref)
