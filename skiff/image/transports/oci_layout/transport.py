"""The ``oci:`` transport: ``oci:PATH[:IMAGE]`` and ``oci:PATH:@N``.

The reference keeps PATH as typed (relative paths are resolved against the
cwd when the image is opened) and its resolved form for policy.json: the
identity is the resolved directory, without IMAGE, because ``dir:`` and
``dir:name`` may be the same image and cannot be told apart statically
(containers/image's reasoning).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from skiff.image.transports.localfs import validate_path_scope
from skiff.image.transports.oci_layout.layout import LayoutReference, parse_layout_reference

if TYPE_CHECKING:
    from skiff.config import SystemContext
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
class OCILayoutReference(LayoutReference):
    """One image (index.json entry) of one layout directory."""

    NAME: ClassVar[str] = NAME
    PATH_WORD: ClassVar[str] = "PATH"

    @property
    def transport(self) -> ImageTransport:
        return TRANSPORT

    def new_image_source(self, ctx: SystemContext) -> ImageSource:
        from skiff.image.transports.oci_layout.layout import DirectoryLayout
        from skiff.image.transports.oci_layout.source import OCILayoutSource

        layout = DirectoryLayout(Path(self.path), ctx.oci_shared_blob_dir)
        return OCILayoutSource(self, layout, self.image, self.source_index)

    def new_image_destination(self, ctx: SystemContext) -> ImageDestination:
        from skiff.image.transports.oci_layout.destination import OCILayoutDestination

        self.require_no_source_index()
        return OCILayoutDestination(self, Path(self.path), self.image, ctx.oci_shared_blob_dir)

    def delete_image(self, ctx: SystemContext) -> None:
        from skiff.image.transports.oci_layout.destination import delete_image

        delete_image(self, Path(self.path), ctx.oci_shared_blob_dir)


TRANSPORT = OCILayoutTransport()
