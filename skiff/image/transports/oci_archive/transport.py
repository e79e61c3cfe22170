"""The ``oci-archive:`` transport: ``oci-archive:FILE[:IMAGE]`` and ``FILE:@N``.

FILE is a tar of an OCI image layout; IMAGE and ``@N`` select an entry of
its index.json exactly as for ``oci:`` (same parser). The policy identity is
the resolved file path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from skiff.errors import ImageError
from skiff.image.transports.localfs import validate_path_scope
from skiff.image.transports.oci_layout.layout import LayoutReference, parse_layout_reference

if TYPE_CHECKING:
    from skiff.config import SystemContext
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
class OCIArchiveReference(LayoutReference):
    """One image (index.json entry) of one archive file."""

    NAME: ClassVar[str] = NAME
    PATH_WORD: ClassVar[str] = "FILE"

    @property
    def transport(self) -> ImageTransport:
        return TRANSPORT

    def new_image_source(self, ctx: SystemContext) -> ImageSource:
        from skiff.image.transports.oci_archive.source import open_archive_source

        return open_archive_source(self, ctx)

    def new_image_destination(self, ctx: SystemContext) -> ImageDestination:
        from skiff.image.transports.oci_archive.destination import OCIArchiveDestination

        self.require_no_source_index()
        return OCIArchiveDestination(self, ctx)

    def delete_image(self, ctx: SystemContext) -> None:
        raise ImageError(
            f"deleting images is not supported by the {NAME}: transport ({self})",
            "delete the archive file, or write a new one without the image",
        )


TRANSPORT = OCIArchiveTransport()
