"""Storage drivers: where layer contents live and how they are mounted.

One small interface (``Driver`` in base.py), one module per driver, and the
driver registry below (one of the two module-level registries skiff allows).
"""

from __future__ import annotations

from pathlib import Path

from skiff.errors import StorageError
from skiff.storage.drivers.base import Driver

DRIVERS = ("overlay", "vfs")


def load_driver(name: str, root: Path) -> Driver:
    if name == "overlay":
        from skiff.storage.drivers.overlay import OverlayDriver

        return OverlayDriver(root / "overlay")
    if name == "vfs":
        from skiff.storage.drivers.vfs import VfsDriver

        return VfsDriver(root / "vfs")
    raise StorageError(f"unknown storage driver {name!r}", f"supported: {', '.join(DRIVERS)}")


def default_driver_name(root: Path) -> str:
    """overlay where the kernel can mount it on this file system, else vfs."""
    from skiff.storage.drivers.overlay import overlay_supported

    return "overlay" if overlay_supported(root) else "vfs"
