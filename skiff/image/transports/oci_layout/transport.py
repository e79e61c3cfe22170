"""The ``oci:`` transport: ``oci:PATH[:IMAGE]`` and ``oci:PATH:@N``.

The reference keeps PATH as typed (relative paths are resolved against the
cwd when the image is opened) and its resolved form for policy.json: the
identity is the resolved directory, without IMAGE, because ``dir:`` and
``dir:name`` may be the same image and cannot be told apart statically
(containers/image's reasoning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import InvalidReference
from skiff.image.transports.localfs import path_namespaces, resolve_path, validate_path_scope
from skiff.image.transports.oci_layout.layout import (
    format_layout_reference,
    parse_layout_reference,
)

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.reference import NamedReference
    from skiff.image.types import ImageDestination, ImageSource, ImageTransport

NAME = "oci"


class OCILayoutTransport:
    """Images in OCI image layout directories."""

    @property
    def name(self) -> str:
        return NAME

    def parse_reference(self, text: str) -> OCILayoutReference:
        path, image, source_index = parse_layout_reference(text, NAME)
        return OCILayoutReference(path, image, source_index)

    def validate_policy_scope(self, scope: str) -> None:
        validate_path_scope(scope, NAME)


@dataclass(frozen=True)
class OCILayoutReference:
    """One image (index.json entry) of one layout directory."""

    path: str
    image: str = ""
    source_index: int | None = None
    resolved: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.image and self.source_index is not None:
            raise InvalidReference(
                f"invalid oci: reference: both an image name {self.image!r} and a source index "
                f"@{self.source_index}",
                "use one of PATH:NAME or PATH:@N",
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
        from skiff.image.transports.oci_layout.layout import DirectoryLayout
        from skiff.image.transports.oci_layout.source import OCILayoutSource

        layout = DirectoryLayout(Path(self.path), ctx.oci_shared_blob_dir)
        return OCILayoutSource(self, layout, self.image, self.source_index)

    def new_image_destination(self, ctx: SystemContext) -> ImageDestination:
        from skiff.image.transports.oci_layout.destination import OCILayoutDestination

        self.require_no_source_index()
        return OCILayoutDestination(self, Path(self.path), self.image, ctx.oci_shared_blob_dir)

    def require_no_source_index(self) -> None:
        if self.source_index is not None:
            raise InvalidReference(
                f"{self}: a destination cannot be a source index @{self.source_index}",
                "name the image to write with PATH:NAME, or give PATH alone",
            )

    def delete_image(self, ctx: SystemContext) -> None:
        from skiff.image.transports.oci_layout.destination import delete_image

        delete_image(self, Path(self.path), ctx.oci_shared_blob_dir)


TRANSPORT = OCILayoutTransport()
