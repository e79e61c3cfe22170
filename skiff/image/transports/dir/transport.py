"""The ``dir:`` transport: ``dir:PATH``, skopeo's directory of one image.

PATH is kept as typed for I/O and resolved once for policy.json (identity:
the resolved directory; namespaces: its parents), as containers/image does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skiff.errors import ImageError
from skiff.image.transports.localfs import (
    path_namespaces,
    require_path,
    resolve_path,
    validate_path_scope,
)

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.types import ImageDestination, ImageSource, ImageTransport
    from skiff.oci.reference import NamedReference

NAME = "dir"


class DirTransport:
    """Images stored one per directory (manifest.json, blobs by hex digest)."""

    @property
    def name(self) -> str:
        return NAME

    def parse_reference(self, text: str) -> DirReference:
        require_path(text, NAME)
        return DirReference(text)

    def validate_policy_scope(self, scope: str) -> None:
        validate_path_scope(scope, NAME)


@dataclass(frozen=True)
class DirReference:
    path: str
    resolved: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.resolved:
            object.__setattr__(self, "resolved", resolve_path(self.path))

    @property
    def transport(self) -> ImageTransport:
        return TRANSPORT

    def string_within_transport(self) -> str:
        return self.path

    def __str__(self) -> str:
        return f"{NAME}:{self.path}"

    def docker_reference(self) -> NamedReference | None:
        return None

    def policy_configuration_identity(self) -> str:
        return self.resolved

    def policy_configuration_namespaces(self) -> list[str]:
        return path_namespaces(self.resolved)

    def new_image_source(self, ctx: SystemContext) -> ImageSource:
        from skiff.image.transports.dir.source import DirSource

        return DirSource(self)

    def new_image_destination(self, ctx: SystemContext) -> ImageDestination:
        from skiff.image.transports.dir.destination import DirDestination

        return DirDestination(self)

    def delete_image(self, ctx: SystemContext) -> None:
        raise ImageError(
            f"deleting images is not supported by the {NAME}: transport ({self})",
            "remove the directory",
        )


TRANSPORT = DirTransport()
