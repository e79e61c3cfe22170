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
"""

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
    "parse_volumes_from",
    "recorded_mounts",
    "release",
    "resolve_mounts",
    "unmount_for",
    "unmount_volumes",
    "volume_users",
]
