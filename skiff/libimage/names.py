"""Turning what users type into references, as podman does.

Three kinds of text reach pull, push, save, load and import:

- **A transport reference** (``docker://quay.io/a/b``, ``oci:/tmp/l:tag``,
  ``docker-archive:x.tar``): parsed by that transport, used as it is.
- **A registry name to pull**: fully qualified names are used as they are
  (``:latest`` added); short names (``busybox``) go through podman's
  resolution (``skiff.image.shortnames.resolve``): first the names a local
  image may have (alias, ``localhost/``, each search registry, docker.io —
  a short name that names a local image is pulled again under that exact
  name, as podman does), then the alias, then one candidate per
  unqualified-search registry.
- **A name for a local-only image** (``skiff import x.tar foo``, the tags
  of a loaded archive): a name without a registry gets ``localhost/``
  (podman's ``NormalizeName``), so ``foo`` is ``localhost/foo:latest`` and
  never pretends to come from docker.io.

Nothing here opens the store: the caller passes ``local_lookup`` (does the
store have an image by this exact name?) or the open store when local
names matter. ``find_local_image`` resolves what push, save and tag take:
an ID, an ID prefix, a name or a short name, as podman looks them up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from skiff.errors import ImageUnknown, InvalidReference
from skiff.image import transports
from skiff.image.shortnames import (
    RATIONALE_ALIAS,
    RATIONALE_SEARCH,
    LocalLookup,
)
from skiff.image.transports.containers_storage.transport import StorageReference, StoreSpec
from skiff.oci.reference import (
    NamedReference,
    is_short_name,
    parse_normalized_named,
)

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.types import ImageReference
    from skiff.storage.images import Image
    from skiff.storage.store import Store

LOCALHOST = "localhost"


class ShortNameUnresolved(InvalidReference):
    """A short name has no alias and there are no search registries to try."""


@dataclass(frozen=True)
class PullCandidates:
    """What to try pulling for one user-typed name, in order."""

    references: tuple[ImageReference, ...]
    description: str = ""
    """podman's line before pulling ("Resolving "x" using unqualified-search
    registries (FILE)"), or "" when there is none to print."""
    named: bool = True
    """False for transports without Docker names (oci:, dir:, archives)."""


def transport_of(text: str) -> str | None:
    """The transport ``text`` names (``docker://x`` → "docker"), or None for a plain name.

    ``localhost:5000/x`` names no transport ("localhost" is not one); the
    docker transport needs its ``//`` so that an image called ``docker``
    with a tag is never taken for a transport.
    """
    name, sep, rest = text.partition(":")
    if not sep or name not in transports.names():
        return None
    if name == "docker" and not rest.startswith("//"):
        return None
    return name


def parse_transport_reference(text: str) -> ImageReference:
    return transports.parse_image_name(text)


def docker_reference(named: NamedReference) -> ImageReference:
    from skiff.image.transports.docker.transport import DockerReference

    return DockerReference.from_named(named)


def pull_candidates(
    ctx: SystemContext, text: str, *, local_lookup: LocalLookup | None = None
) -> PullCandidates:
    """The references to try, in order, for ``skiff pull TEXT``."""
    if transport_of(text) is not None:
        ref = parse_transport_reference(text)
        return PullCandidates((ref,), named=ref.transport.name == "docker")
    from skiff.image.shortnames import resolve

    if is_short_name(text):
        _require_search_or_alias(ctx, text)
    resolution = resolve(ctx, text, local_lookup=local_lookup)
    # podman says how a short name was resolved, except when a local image
    # named it (then the pull simply uses that image's full name)
    description = ""
    if resolution.rationale in (RATIONALE_ALIAS, RATIONALE_SEARCH):
        description = resolution.description()
    return PullCandidates(
        tuple(docker_reference(named) for named in resolution.candidates), description
    )


def _require_search_or_alias(ctx: SystemContext, text: str) -> None:
    """podman's error for a short name nothing can resolve, in its words."""
    from skiff.image.registries import load_registries_conf

    config = load_registries_conf(ctx)
    if config.unqualified_search_registries:
        return
    name = text.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    if name in config.aliases:
        return
    raise ShortNameUnresolved(
        f'short-name "{text}" did not resolve to an alias and no unqualified-search '
        f'registries are defined in "{ctx.registries_conf_path()}"',
        "use a fully qualified name (e.g. docker.io/library/NAME), or add an alias or "
        "unqualified-search-registries to registries.conf",
    )


def registry_name(text: str) -> NamedReference:
    """A push destination typed without transport: normalized as ``docker push`` does."""
    return parse_normalized_named(text).tag_or_latest()


def local_name(text: str) -> NamedReference:
    """The name of a local-only image: ``foo`` → ``localhost/foo:latest`` (podman's NormalizeName).

    A name with a registry keeps it (``docker.io/x`` is normalized to
    ``docker.io/library/x``); a name with a digest keeps the digest.
    """
    if not text:
        raise InvalidReference("invalid reference: empty string", "give NAME[:TAG]")
    if is_short_name(text):
        text = f"{LOCALHOST}/{text}"
    named = parse_normalized_named(text)
    return named if named.digest is not None else named.tag_or_latest()


def storage_reference(
    named: NamedReference | None = None, image_id: str | None = None
) -> StorageReference:
    """A ``containers-storage:`` reference to the context's own store."""
    if named is not None and named.digest is None:
        named = named.tag_or_latest()
    return StorageReference(StoreSpec(), named, image_id)


def find_local_image(
    ctx: SystemContext, store: Store, text: str
) -> tuple[Image, NamedReference | None]:
    """The stored image ``text`` names (as podman resolves it) and the name it matched.

    The name is None when ``text`` is an image ID (or a prefix of one).
    """
    from skiff.image.registries import load_registries_conf

    search = load_registries_conf(ctx).unqualified_search_registries
    image = store.images.find(text, search)
    if image is None:
        raise ImageUnknown(f"{text}: image not known", "list local images with 'skiff images'")
    return image, _matched_name(ctx, image, text)


def _matched_name(ctx: SystemContext, image: Image, text: str) -> NamedReference | None:
    from skiff.image.shortnames import local_candidates

    try:
        candidates = local_candidates(ctx, text)
    except InvalidReference:
        return None  # a full image ID is no name
    for candidate in candidates:
        if str(candidate) in image.names:
            return candidate
    if image.id.startswith(text.removeprefix("sha256:")):
        return None  # an ID prefix
    # podman's last resort for short names: a name ending in /TEXT
    wanted = candidates[0] if candidates else None
    if wanted is not None and wanted.tag is not None:
        suffix = f"/{text}" if ":" in text.rsplit("/", 1)[-1] else f"/{text}:{wanted.tag}"
        for name in image.names:
            if name.endswith(suffix):
                return parse_normalized_named(name)
    return None
