"""``pull``: resolve a name, copy the image into the store, report its ID.

Podman's order, which scripts depend on:

1. A transport reference (``docker-archive:x.tar``, ``oci:dir:tag``) is
   copied as it is; anything else is a registry name.
2. A short name is resolved (``names.pull_candidates``): to a local
   image's full name if the store has one under a name it may mean, else
   to its alias, else to one candidate per unqualified-search registry,
   each tried in order until one pulls; the failures of all are reported
   together ("2 errors occurred while pulling: ...").
3. The image is copied from the registry into ``containers-storage:``
   even when it is present: the registry is asked again (the ``--pull``
   policies belong to ``run``), and layers the store has, by compressed
   digest or diff ID, are not downloaded again.
4. What the copy learned (where each blob is, which diff ID each
   compressed blob unpacks to) goes into the blob-info cache, so pushing
   the image back uploads nothing (``blobhints``).

``--all-tags`` lists the repository's tags and pulls each one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import ImageError, SkiffError, StorageError, UsageError
from skiff.image.copy import CopyOptions, copy_image
from skiff.libimage.names import (
    PullCandidates,
    docker_reference,
    pull_candidates,
    storage_reference,
    transport_of,
)

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.copy.options import CopyProgress
    from skiff.image.types import BlobInfo, ImageReference
    from skiff.oci.digest import Digest
    from skiff.oci.reference import NamedReference
    from skiff.storage.store import Store

log = logging.getLogger(__name__)

Notes = Callable[[str], None]


class PullFailed(ImageError):
    """Every candidate of a short name failed; the message lists each failure."""


@dataclass
class PullOptions:
    all_tags: bool = False
    """Pull every tag of the repository (the name must have no tag or digest)."""
    copy: CopyOptions = field(default_factory=CopyOptions)
    """Progress, policy check and signers for each copy (the CLI fills them)."""
    notes: Notes | None = None
    """Receives podman's lines: 'Resolving "x" using ...', 'Trying to pull X...'."""


@dataclass(frozen=True)
class PulledImage:
    image_id: str
    name: str | None
    """The name the image now has in the store (None: pulled by digest or unnamed)."""
    manifest_digest: Digest | None
    """Of the manifest written (None for images taken from a whole archive)."""


@dataclass
class PullReport:
    images: list[PulledImage] = field(default_factory=list)

    @property
    def image_ids(self) -> list[str]:
        return [image.image_id for image in self.images]


def pull_image(ctx: SystemContext, text: str, options: PullOptions | None = None) -> PullReport:
    """Pull ``text`` (a name or a transport reference) into the context's store."""
    from skiff.storage.store import Store

    options = options or PullOptions()
    store = Store.open(ctx)
    try:
        if options.all_tags:
            return PullReport(_pull_all_tags(ctx, text, options, store))
        candidates = pull_candidates(ctx, text, local_lookup=_local_lookup(store))
        if candidates.description:
            _note(options, candidates.description)
        return PullReport([_pull_candidates(ctx, candidates, options, store)])
    finally:
        store.close()


def _local_lookup(store: Store) -> Callable[[NamedReference], bool]:
    def lookup(named: NamedReference) -> bool:
        return store.images.by_name(str(named)) is not None

    return lookup


def _note(options: PullOptions, line: str) -> None:
    if options.notes is not None:
        options.notes(line)


def _pull_candidates(
    ctx: SystemContext, candidates: PullCandidates, options: PullOptions, store: Store
) -> PulledImage:
    failures: list[SkiffError] = []
    for ref in candidates.references:
        named = ref.docker_reference()
        if candidates.named and named is not None:
            _note(options, f"Trying to pull {named}...")
        try:
            return _copy_into_store(ctx, ref, options, store)
        except SkiffError as exc:
            log.debug("pulling %s failed: %s", _describe(ref), exc)
            failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    raise PullFailed(
        f"{len(failures)} errors occurred while pulling: "
        + "; ".join(f"* {exc}" for exc in failures),
        "check the name, or use a fully qualified one",
    )


def _describe(ref: ImageReference) -> str:
    return f"{ref.transport.name}:{ref.string_within_transport()}"


class _Started:
    """Forwards progress and notes whether any layer transfer began.

    A failure before that is podman's "initializing source X: ..."; after
    it, the message stands alone.
    """

    def __init__(self, inner: CopyProgress | None) -> None:
        self._inner = inner
        self.started = False

    def blob_started(self, info: BlobInfo, kind: str) -> None:
        self.started = True
        if self._inner is not None:
            self._inner.blob_started(info, kind)

    def blob_advanced(self, info: BlobInfo, done: int) -> None:
        if self._inner is not None:
            self._inner.blob_advanced(info, done)

    def blob_finished(self, info: BlobInfo, skipped: bool) -> None:
        if self._inner is not None:
            self._inner.blob_finished(info, skipped)

    def note(self, message: str) -> None:
        if self._inner is not None:
            self._inner.note(message)


def _destination_name(ref: ImageReference) -> NamedReference | None:
    """The name a pulled image gets: its registry name; for archives and
    layouts the tag or image name the reference selects (as ``load`` names
    them); none when pulled by digest."""
    from skiff.libimage.names import local_name

    named = ref.docker_reference()
    if named is None:
        image = getattr(ref, "image", "")  # oci: and oci-archive: select by name
        return local_name(image) if isinstance(image, str) and image else None
    if named.digest is not None:
        return None
    return named.tag_or_latest()


def _whole_archive(ref: ImageReference) -> Path | None:
    """The file of an archive reference that selects no image (pulled like ``load``)."""
    if ref.transport.name not in ("docker-archive", "oci-archive"):
        return None
    image: object = getattr(ref, "image", "")
    if ref.docker_reference() is not None or image:
        return None
    if getattr(ref, "source_index", None) is not None:
        return None
    path = getattr(ref, "path", None)
    return Path(path) if isinstance(path, str) else None


def _copy_into_store(
    ctx: SystemContext, ref: ImageReference, options: PullOptions, store: Store
) -> PulledImage:
    from skiff.image.transports.containers_storage.destination import LayerVanished
    from skiff.libimage.blobhints import record_pull

    archive = _whole_archive(ref)
    if archive is not None:
        return _load_archive(ctx, archive, options)
    dest_name = _destination_name(ref)
    watch = _Started(options.copy.progress)
    copy_options = replace(options.copy, progress=watch)
    try:
        try:
            report = copy_image(ref, storage_reference(dest_name), copy_options, ctx, ctx)
        except LayerVanished as exc:
            # another process removed an image whose layers this pull was
            # going to reuse; once more, and the missing layers are fetched
            log.info("pulling %s again: %s", _describe(ref), exc)
            report = copy_image(ref, storage_reference(dest_name), copy_options, ctx, ctx)
    except SkiffError as exc:
        if not watch.started:
            exc.message = f"initializing source {_describe(ref)}: {exc.message}"
        raise
    if report.config_digest is None:
        raise ImageError(f"pulling {_describe(ref)} stored no image config")
    image_id = report.config_digest.hex
    try:
        record_pull(ctx, ref, report, store, image_id)
    except StorageError as exc:
        # another process removed the image since: nothing to learn from it
        log.info("not recording blob locations of %s: %s", _describe(ref), exc)
    return PulledImage(
        image_id=image_id,
        name=str(dest_name) if dest_name is not None else None,
        manifest_digest=report.manifest_digest,
    )


def _load_archive(ctx: SystemContext, path: Path, options: PullOptions) -> PulledImage:
    """``pull docker-archive:FILE`` as podman: the archive's images under its names."""
    from skiff.libimage.saveload import LoadOptions, load_images

    report = load_images(ctx, path, LoadOptions(copy=options.copy))
    last = report.images[-1]
    return PulledImage(
        image_id=last.image_id, name=last.names[0] if last.names else None, manifest_digest=None
    )


def _pull_all_tags(
    ctx: SystemContext, text: str, options: PullOptions, store: Store
) -> list[PulledImage]:
    from skiff.image.transports.docker.operations import list_tags
    from skiff.oci.reference import parse_normalized_named

    if transport_of(text) not in (None, "docker"):
        raise UsageError(f"--all-tags needs a registry repository, not {text!r}")
    bare = text.removeprefix("docker://")
    if not parse_normalized_named(bare).is_name_only():
        raise UsageError("tag can't be used with --all-tags/-a", "give the repository name alone")
    candidates = pull_candidates(ctx, bare)
    if candidates.description:
        _note(options, candidates.description)
    failures: list[SkiffError] = []
    for ref in candidates.references:
        named = ref.docker_reference()
        assert named is not None
        repository = named.name_only()
        try:
            tags = list_tags(ctx, repository)
        except SkiffError as exc:
            failures.append(exc)
            continue
        pulled = []
        for tag in tags:
            one = PullCandidates((docker_reference(repository.with_tag(tag)),))
            pulled.append(_pull_candidates(ctx, one, options, store))
        return pulled
    if len(failures) == 1:
        raise failures[0]
    raise PullFailed(
        f"{len(failures)} errors occurred while listing tags: "
        + "; ".join(f"* {exc}" for exc in failures)
    )
