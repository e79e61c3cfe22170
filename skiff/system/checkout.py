"""Check an image out of the store into a deployment's read-only root file system.

Two steps, both in a staging directory nobody else sees:

1. every layer's exact tar (``Store.layer_tar``) is applied, base first,
   with ``skiff.storage.archive.apply`` in its vfs mode: the directory is a
   full copy, so a whiteout deletes what the layers below put there and an
   opaque directory is emptied — the same tree an overlay mount of the
   image would show. ``apply`` refuses members that escape the directory,
   write through symlinks or link outside it.
2. the finished tree is interned (``ObjectStore.intern_tree``): each regular
   file becomes a hard link to its content-addressed object.

Interning only after all layers are applied matters: a later layer may
replace or re-own a file of an earlier one, and ``apply`` would otherwise
do that to an inode shared with other deployments.

The caller (``deploy``) renames the staging directory into place only when
everything, templates included, is complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import SkiffError, SystemContainerError
from skiff.system.objects import InternStats, ObjectStore

if TYPE_CHECKING:
    from skiff.storage.images import Image
    from skiff.storage.store import Store


@dataclass(frozen=True)
class CheckoutResult:
    layers: int
    entries: int
    """Tar members applied over all layers (whiteouts included)."""
    objects: InternStats
    warnings: tuple[str, ...] = ()


def checkout_image(
    store: Store, image: Image, rootfs: Path, objects: ObjectStore
) -> CheckoutResult:
    """Write ``image``'s file system into the new directory ``rootfs`` and intern it."""
    from skiff.storage.archive import apply

    try:
        rootfs.mkdir(mode=0o755)
        os.chmod(rootfs, 0o755)  # noqa: S103 - not the umask's idea of it: this is a container's /
    except OSError as exc:
        raise SystemContainerError(
            f"cannot create {rootfs}: {exc.strerror or exc}", "check the store's file system"
        ) from exc
    layers = store.image_layers(image)
    entries = 0
    warnings: list[str] = []
    for layer_id in layers:
        reader = store.layer_tar(layer_id)
        try:
            result = apply(reader, rootfs, whiteout_format="vfs")
        except SkiffError as exc:
            raise SystemContainerError(
                f"checking out layer {layer_id[:12]} of image {image.id[:12]} into {rootfs}: "
                f"{exc.message}",
                exc.hint,
            ) from exc
        except OSError as exc:
            raise SystemContainerError(
                f"checking out layer {layer_id[:12]} of image {image.id[:12]} into {rootfs}: "
                f"{exc.strerror or exc}",
                "check free space of the store's file system",
            ) from exc
        finally:
            reader.close()
        entries += result.entries
        warnings.extend(result.warnings)
    try:
        stats = objects.intern_tree(rootfs)
    except OSError as exc:
        raise SystemContainerError(
            f"cannot share the files of {rootfs} through {objects.root}: {exc.strerror or exc}",
            "the store's file system must support hard links",
        ) from exc
    return CheckoutResult(len(layers), entries, stats, tuple(warnings))
