"""The ``oci-archive:`` transport: ``oci-archive:FILE[:IMAGE]`` and ``FILE:@N``.

FILE is a tar of an OCI image layout; IMAGE and ``@N`` select an entry of
its index.json exactly as for ``oci:`` (same parser). The policy identity is
the resolved file path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skiff.errors import ImageError, InvalidReference
from skiff.image.transports.localfs import path_namespaces, resolve_path, validate_path_scope
from skiff.image.transports.oci_layout.layout import (
    format_layout_reference,
    parse_layout_reference,
)

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.reference import NamedReference
    from skiff.image.types import ImageDestination, ImageSource, ImageTransport

NAME = "oci-archive"


class OCIArchiveTransport:
    """Images in tar archives of OCI image layouts."""

    @property
    def name(self) -> str:
        return NAME

    def parse_reference(self, text: str) -> OCIArchiveReference:
        path, image, source_index = parse_layout_reference(text, NAME)
        return OCIArchiveReference(path, image, source_index)

    def validate_policy_scope(self, scope: str) -> None:
        validate_path_scope(scope, NAME)


@dataclass(frozen=True)
class OCIArchiveReference:
    """One image (index.json entry) of one archive file."""

    path: str
    image: str = ""
    source_index: int | None = None
    resolved: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.image and self.source_index is not None:
            raise InvalidReference(
                f"invalid {NAME}: reference: both an image name {self.image!r} and a source "
                f"index @{self.source_index}",
                "use one of FILE:NAME or FILE:@N",
            )
        if not self.resolved:
            object.__setattr__(self, "resolved", resolve_path(self.path))

    @property
    def transport(self) -> ImageTransport:
        return TRANSPORT

    def string_within_transport(self) -> str:
        return format_layout_reference(self.path, self.image, self.source_index)

    def __str__(self) -> str:
        return f"{NAME}:{self.string_within_transport()}"

    def docker_reference(self) -> NamedReference | None:
        return None

    def policy_configuration_identity(self) -> str:
        return self.resolved

    def policy_configuration_namespaces(self) -> list[str]:
        return path_namespaces(self.resolved)

    def new_image_source(self, ctx: SystemContext) -> ImageSource:
        from skiff.image.transports.oci_archive.source import open_archive_source

        return open_archive_source(self, ctx)

    def new_image_destination(self, ctx: SystemContext) -> ImageDestination:
        from skiff.image.transports.oci_archive.destination import OCIArchiveDestination

        if self.source_index is not None:
            raise InvalidReference(
                f"{self}: a destination cannot be a source index @{self.source_index}",
                "name the image to write with FILE:NAME, or give FILE alone",
            )
        return OCIArchiveDestination(self, ctx)

    def delete_image(self, ctx: SystemContext) -> None:
        raise ImageError(
            f"deleting images is not supported by the {NAME}: transport ({self})",
            "delete the archive file, or write a new one without the image",
        )


TRANSPORT = OCIArchiveTransport()
