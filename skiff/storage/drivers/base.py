"""The driver interface every storage driver implements."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    # the type only: importing the archive package costs every command ~10 ms
    from skiff.storage.archive.apply import WhiteoutFormat


class Driver(Protocol):
    """Layer contents on disk.

    A layer's *diff directory* holds what the layer itself changes (overlay)
    or the layer's whole tree (vfs). Layers are created from a staged
    directory prepared outside any lock (``adopt``), or empty on top of a
    parent (``create_empty``, for container layers).
    """

    name: str
    home: Path

    @property
    def whiteout_format(self) -> WhiteoutFormat:
        """How deletions are recorded in a layer: "overlay" (char 0/0, opaque
        xattr) or "vfs" (applied directly to a full copy of the parent)."""
        ...

    @property
    def apply_needs_parent(self) -> bool:
        """Whether a layer must start as a copy of its parent before applying a diff."""
        ...

    def layer_dir(self, layer_id: str) -> Path:
        """The directory holding the layer's own content."""
        ...

    def prepare_staging(self, staging: Path, parent_id: str | None) -> Path:
        """Set up ``staging`` to receive a layer's content; return the dir to extract into."""
        ...

    def adopt(
        self, layer_id: str, staging: Path, parent_id: str | None, parent_chain: list[str]
    ) -> str:
        """Move a staged layer into place; return its short link name (or "")."""
        ...

    def create_empty(
        self, layer_id: str, parent_id: str | None, parent_chain: list[str]
    ) -> str: ...

    def remove(self, layer_id: str) -> None: ...

    def mount(
        self, layer_id: str, chain: list[str], writable: bool, options: list[str] | None = None
    ) -> Path:
        """Mount the layer with its parents (``chain``: links or ids, nearest parent first)."""
        ...

    def unmount(self, layer_id: str) -> None: ...

    def mount_point(self, layer_id: str) -> Path: ...
