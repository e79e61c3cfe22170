"""The ``docker-archive:`` transport: ``FILE``, ``FILE:NAME[:TAG]``, ``FILE:@N``.

FILE is split at the first colon. NAME:TAG is normalized as ``docker pull``
does (``busybox`` → ``docker.io/library/busybox:latest``); reading, it
selects the image with that RepoTag, writing, it is the RepoTag recorded.
``@N`` selects image N of manifest.json when reading. Without either, a
source must hold exactly one image and a destination writes no tag.

Archives have no policy scopes (containers/image: only the default "").

A reference may be bound to a ``DockerArchiveReader`` (from
``reader.list()``, so a multi-image ``load`` indexes the file once) or to a
``DockerArchiveWriter`` (``writer.new_reference()``, so ``save -m`` writes
several images into one file); binding does not change equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skiff.errors import ConfigError, ImageError, InvalidReference
from skiff.image.transports.localfs import require_path
from skiff.oci.reference import NamedReference, parse_normalized_named

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.transports.docker_archive.destination import DockerArchiveWriter
    from skiff.image.transports.docker_archive.source import DockerArchiveReader
    from skiff.image.types import ImageDestination, ImageSource, ImageTransport

NAME = "docker-archive"


class DockerArchiveTransport:
    """Images in ``docker save`` archives."""

    @property
    def name(self) -> str:
        return NAME

    def parse_reference(self, text: str) -> DockerArchiveReference:
        path, sep, rest = text.partition(":")
        require_path(path, NAME)
        if not sep:
            return DockerArchiveReference(path)
        if rest.startswith("@"):
            digits = rest[1:]
            if not digits.isascii() or not digits.isdigit():
                raise InvalidReference(
                    f"invalid {NAME}: reference {text!r}: source index {rest!r} is not a "
                    "non-negative integer",
                    f"write {NAME}:FILE:@N to pick image N of the archive",
                )
            return DockerArchiveReference(path, source_index=int(digits))
        return DockerArchiveReference(path, tag=parse_archive_tag(rest, text))

    def validate_policy_scope(self, scope: str) -> None:
        raise ConfigError(
            f'{NAME}: policy scope {scope!r}: this transport has no scopes except the default ""',
        )


def parse_archive_tag(text: str, whole: str) -> NamedReference:
    """NAME[:TAG] normalized, with ``latest`` added; digests are refused."""
    try:
        named = parse_normalized_named(text)
    except InvalidReference as exc:
        raise InvalidReference(
            f"invalid {NAME}: reference {whole!r}: {exc.message}", exc.hint
        ) from exc
    if named.digest is not None:
        raise InvalidReference(
            f"invalid {NAME}: reference {whole!r}: archives are tagged, not addressed by digest",
            f"write {NAME}:FILE:NAME:TAG",
        )
    return named.tag_or_latest()


@dataclass(frozen=True)
class DockerArchiveReference:
    """One image of one archive file (by tag, by index, or the only one)."""

    path: str
    tag: NamedReference | None = None
    source_index: int | None = None
    extra_tags: tuple[NamedReference, ...] = ()
    """More RepoTags to record when writing (``skiff save IMG:a IMG:b``)."""
    reader: DockerArchiveReader | None = field(default=None, compare=False, repr=False)
    writer: DockerArchiveWriter | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.tag is not None and self.source_index is not None:
            raise InvalidReference(
                f"invalid {NAME}: reference: both a tag and a source index @{self.source_index}",
                "use one of FILE:NAME:TAG or FILE:@N",
            )

    @property
    def transport(self) -> ImageTransport:
        return TRANSPORT

    def string_within_transport(self) -> str:
        if self.tag is not None:
            return f"{self.path}:{self.tag}"
        if self.source_index is not None:
            return f"{self.path}:@{self.source_index}"
        return self.path

    def __str__(self) -> str:
        return f"{NAME}:{self.string_within_transport()}"

    def docker_reference(self) -> NamedReference | None:
        return self.tag

    def policy_configuration_identity(self) -> str:
        return ""

    def policy_configuration_namespaces(self) -> list[str]:
        return []

    @property
    def tags(self) -> tuple[NamedReference, ...]:
        """Every RepoTag a destination records."""
        return ((self.tag,) if self.tag is not None else ()) + self.extra_tags

    def new_image_source(self, ctx: SystemContext) -> ImageSource:
        from skiff.image.transports.docker_archive.source import (
            DockerArchiveReader,
            DockerArchiveSource,
        )

        if self.reader is not None:
            return DockerArchiveSource(self, self.reader, owns_reader=False)
        reader = DockerArchiveReader(self.path, ctx)
        try:
            return DockerArchiveSource(self, reader, owns_reader=True)
        except BaseException:
            reader.close()
            raise

    def new_image_destination(self, ctx: SystemContext) -> ImageDestination:
        from skiff.image.transports.docker_archive.destination import (
            DockerArchiveDestination,
            DockerArchiveWriter,
        )

        if self.source_index is not None:
            raise InvalidReference(
                f"{self}: a destination cannot be a source index @{self.source_index}",
                "give FILE or FILE:NAME:TAG",
            )
        if self.writer is not None:
            return DockerArchiveDestination(self, self.writer, owns_writer=False)
        return DockerArchiveDestination(self, DockerArchiveWriter(self.path, ctx), owns_writer=True)

    def delete_image(self, ctx: SystemContext) -> None:
        raise ImageError(
            f"deleting images is not supported by the {NAME}: transport ({self})",
            "delete the archive file, or save a new one without the image",
        )


TRANSPORT = DockerArchiveTransport()
