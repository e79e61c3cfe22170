"""The ``docker://`` transport and the registry client behind it.

Modules, from the wire up:

    errors.py       registry error bodies and statuses → skiff errors
    auth.py         WWW-Authenticate parsing, bearer token requests and cache
    client.py       RegistryClient: one HTTP session per registry (ping,
                    auth per hop, retries, redirects, TLS)
    stream.py       ResumableBody: blob downloads that resume with Range
    api.py          the distribution API v2 endpoints over a client
    source.py       DockerImageSource (mirrors from registries.conf)
    destination.py  DockerImageDestination (push to the primary location)
    operations.py   list_tags, delete_image, check_login for the CLI
    transport.py    DockerTransport / DockerReference (no HTTP imports)

The HTTP library is urllib3 2.x: measured here it streams a 155 MB blob over
loopback at 760-925 MB/s with 1 MiB ``read()`` calls, where httpx managed
150-270 MB/s at 4-7x the CPU.

Only ``transport`` is imported eagerly, so that parsing ``docker://...``
does not load urllib3; the functions below import their module on call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skiff.image.transports.docker.transport import TRANSPORT, DockerReference, DockerTransport

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.auth import Credentials
    from skiff.image.types import ImageReference
    from skiff.oci.digest import Digest
    from skiff.oci.reference import NamedReference

__all__ = [
    "TRANSPORT",
    "DockerReference",
    "DockerTransport",
    "check_login",
    "delete_image",
    "list_tags",
]


def list_tags(
    ctx: SystemContext, ref: NamedReference | ImageReference, page_size: int | None = None
) -> list[str]:
    """All tags of the repository ``ref`` names, following pagination."""
    from skiff.image.transports.docker import operations

    return operations.list_tags(ctx, ref, page_size)


def delete_image(ctx: SystemContext, ref: NamedReference | ImageReference) -> Digest:
    """Delete the manifest ``ref`` names (a tag is resolved first); its digest."""
    from skiff.image.transports.docker import operations

    return operations.delete_image(ctx, ref)


def check_login(ctx: SystemContext, registry: str, creds: Credentials) -> None:
    """Raise AuthenticationError unless ``registry`` accepts ``creds``."""
    from skiff.image.transports.docker import operations

    operations.check_login(ctx, registry, creds)
