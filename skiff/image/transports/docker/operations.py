"""Registry operations outside copying: tag listing, deletion, login checks.

These are what ``skiff inspect``/``list-tags``/``delete``/``login`` call.
Like a push, they talk to the reference's own registry, never a mirror
(skopeo does the same), after checking registries.conf for ``blocked`` and
``insecure``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skiff.errors import InvalidReference
from skiff.image.transports.docker import api
from skiff.image.transports.docker.client import RegistryClient
from skiff.oci.digest import Digest
from skiff.oci.manifest import manifest_digest
from skiff.oci.reference import NamedReference

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.auth import Credentials
    from skiff.image.types import ImageReference


def client_for(ctx: SystemContext, ref: NamedReference, *, actions: str) -> RegistryClient:
    """A client for ``ref``'s repository at its own registry (no mirrors)."""
    from skiff.image.registries import load_registries_conf

    conf = load_registries_conf(ctx)
    conf.check_blocked(ref)
    return RegistryClient(
        ctx, ref.domain, ref.path, actions=actions, insecure=conf.is_insecure(ref.domain)
    )


def _named(ref: NamedReference | ImageReference) -> NamedReference:
    """The repository reference of a ``docker://`` reference (or a bare name)."""
    if isinstance(ref, NamedReference):
        return ref
    named = ref.docker_reference() if ref.transport.name == "docker" else None
    if named is None:
        raise InvalidReference(
            f"{ref.transport.name}:{ref.string_within_transport()} is not a registry reference",
            "use docker://HOST/REPOSITORY",
        )
    return named


def list_tags(
    ctx: SystemContext, ref: NamedReference | ImageReference, page_size: int | None = None
) -> list[str]:
    """All tags of ``ref``'s repository (its tag or digest is ignored)."""
    named = _named(ref)
    client = client_for(ctx, named, actions="pull")
    try:
        return api.list_tags(client, page_size)
    finally:
        client.close()


def delete_image(ctx: SystemContext, ref: NamedReference | ImageReference) -> Digest:
    """Delete the manifest ``ref`` names, as ``skopeo delete`` does.

    A tag is first resolved to its manifest's digest (the registry API
    deletes by digest only), so every tag pointing at that manifest goes
    with it. Returns the deleted digest.
    """
    named = _named(ref)
    client = client_for(ctx, named, actions="*")
    try:
        if named.digest is not None:
            digest = named.digest
        else:
            raw, _ = api.get_manifest(client, named.tag or "latest")
            digest = manifest_digest(raw)
        api.delete_manifest(client, digest)
        return digest
    finally:
        client.close()


def check_login(ctx: SystemContext, registry: str, creds: Credentials) -> None:
    """Raise AuthenticationError unless ``registry`` accepts ``creds``.

    ``registry`` is ``host[:port]`` (a ``host/path`` key, as podman accepts
    for repository-specific logins, is checked against its host).
    """
    from skiff.image.registries import load_registries_conf

    host = registry.split("/", 1)[0]
    conf = load_registries_conf(ctx)
    client = RegistryClient(ctx, host, "", actions="pull", insecure=conf.is_insecure(host))
    client.use_credentials(creds)
    try:
        client.check_authenticated()
    finally:
        client.close()
