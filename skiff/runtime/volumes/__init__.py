"""Volumes: named (local driver), anonymous (image VOLUME, ``-v /path``),
``--volumes-from``, and what ``skiff volume`` does (podman 4's volumes).

    model.py      Volume (record, podman's inspect JSON and template fields),
                  names, the local driver's ``--opt`` parsing, errors
    store.py      VolumeStore: the ``volumes``, ``volume_users`` and
                  ``volume_mounts`` tables, directories, per-volume locks
    driver.py     the local driver's tmpfs/bind/file-system mounts, counted
                  across processes
    copyup.py     first use: chown, copy-up of the image's content, ``U``
    resolved.py   ResolvedMount (host path + podman's OCI options), as_spec_mounts
    lifecycle.py  resolve_mounts / mount_volumes / unmount_volumes / release
                  for the container code; --volumes-from
    filters.py    ``--filter`` of ``volume ls`` and ``volume prune``
    manage.py     create (--ignore), list, remove (-f), prune

The container code needs only what this module exports; docs/volumes.md
describes the whole life of a volume.

The names are loaded on first use: most containers have no volume at all,
and ``skiff run`` should not pay for importing the volume code (~10 ms of
every start) to learn that. ``needed`` and ``recorded`` answer that question
without loading anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skiff.runtime.volumes.lifecycle import (
        IMAGE_VOLUME_MODES,
        VolumesFrom,
        mount_for,
        mount_volumes,
        parse_volumes_from,
        recorded_mounts,
        release,
        resolve_mounts,
        unmount_for,
        unmount_volumes,
        volume_users,
    )
    from skiff.runtime.volumes.model import Volume, VolumeExists, VolumeInUse
    from skiff.runtime.volumes.resolved import ResolvedMount, as_spec_mounts
    from skiff.runtime.volumes.store import CreateOptions, VolumeStore
    from skiff.storage.store import Store

_HOMES: dict[str, str] = {
    "IMAGE_VOLUME_MODES": "lifecycle",
    "VolumesFrom": "lifecycle",
    "mount_for": "lifecycle",
    "mount_volumes": "lifecycle",
    "parse_volumes_from": "lifecycle",
    "recorded_mounts": "lifecycle",
    "release": "lifecycle",
    "resolve_mounts": "lifecycle",
    "unmount_for": "lifecycle",
    "unmount_volumes": "lifecycle",
    "volume_users": "lifecycle",
    "Volume": "model",
    "VolumeExists": "model",
    "VolumeInUse": "model",
    "ResolvedMount": "resolved",
    "as_spec_mounts": "resolved",
    "CreateOptions": "store",
    "VolumeStore": "store",
}

__all__ = [
    "IMAGE_VOLUME_MODES",
    "CreateOptions",
    "ResolvedMount",
    "Volume",
    "VolumeExists",
    "VolumeInUse",
    "VolumeStore",
    "VolumesFrom",
    "as_spec_mounts",
    "mount_for",
    "mount_volumes",
    "needed",
    "parse_volumes_from",
    "recorded",
    "recorded_mounts",
    "release",
    "resolve_mounts",
    "unmount_for",
    "unmount_volumes",
    "volume_users",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def needed(specs: Sequence[object], image_volumes: Sequence[str]) -> bool:
    """Whether a container's first start has volume work to do: it has
    ``-v``/``--mount``/``--tmpfs`` mounts (``specs``) or its image declares
    volumes. If not, and it has no record (``recorded``), ``mount_for``
    would resolve nothing and record an empty list."""
    return bool(specs) or bool(image_volumes)


def recorded(store: Store, container_id: str) -> bool:
    """Whether the volume code holds anything for a container (its resolved
    mounts, or uses of volumes): if not, ``unmount_for`` and ``release`` have
    nothing to do. One query; the tables may not exist yet."""
    db = store.db
    if (
        db.read_one("SELECT 1 FROM sqlite_master WHERE type='table' AND name='volume_mounts'")
        is None
    ):
        return False
    row = db.read_one(
        "SELECT 1 FROM volume_mounts WHERE container_id=? "
        "UNION ALL SELECT 1 FROM volume_users WHERE container_id=? LIMIT 1",
        (container_id, container_id),
    )
    return row is not None
