"""The vfs driver: every layer is a full copy of its parent plus its changes.

Works on any file system and needs no mounts ("mounting" a layer returns its
directory), at the cost of disk space and copy time. The fallback where
overlay cannot be used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.storage.treecopy import copy_tree

if TYPE_CHECKING:
    # the type only: importing the archive package costs every command ~10 ms
    from skiff.storage.archive.apply import WhiteoutFormat


class VfsDriver:
    name = "vfs"

    def __init__(self, home: Path) -> None:
        self.home = home
        (home / "dir").mkdir(parents=True, exist_ok=True)

    @property
    def whiteout_format(self) -> WhiteoutFormat:
        return "vfs"

    @property
    def apply_needs_parent(self) -> bool:
        return True

    def layer_dir(self, layer_id: str) -> Path:
        return self.home / "dir" / layer_id

    def prepare_staging(self, staging: Path, parent_id: str | None) -> Path:
        target = staging / "dir"
        if parent_id is None:
            target.mkdir(mode=0o755)
        else:
            copy_tree(self.layer_dir(parent_id), target)
        return target

    def adopt(
        self, layer_id: str, staging: Path, parent_id: str | None, parent_chain: list[str]
    ) -> str:
        os.rename(staging / "dir", self.layer_dir(layer_id))
        return ""

    def create_empty(self, layer_id: str, parent_id: str | None, parent_chain: list[str]) -> str:
        target = self.layer_dir(layer_id)
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if parent_id is None:
            tmp.mkdir(mode=0o755)
        else:
            copy_tree(self.layer_dir(parent_id), tmp)
        os.rename(tmp, target)
        return ""

    def remove(self, layer_id: str) -> None:
        target = self.layer_dir(layer_id)
        if target.exists():
            trash = target.with_name(target.name + ".removing")
            os.rename(target, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def mount(
        self, layer_id: str, chain: list[str], writable: bool, options: list[str] | None = None
    ) -> Path:
        return self.layer_dir(layer_id)

    def unmount(self, layer_id: str) -> None:
        return None

    def mount_point(self, layer_id: str) -> Path:
        return self.layer_dir(layer_id)
