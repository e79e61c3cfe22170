"""The local driver's mounts: a tmpfs, a bind of a host directory, or any
file system, mounted on the volume's ``_data`` while something uses it.

Mounts are counted in the volume's row (``mount_count`` for the boot in
``mount_boot``), so the process that starts a container and the one that
cleans up after it — different skiff processes — agree on when the last
user is gone. Counting happens under the volume's lock (store.py), and
the mount table is consulted too: a count from an earlier boot is zero,
and a counted mount someone removed by hand is mounted again.

Plain volumes (no ``--opt``) have nothing to mount: ``acquire`` returns
their directory and counts nothing, as podman's MountCount stays 0 for
them.
"""

from __future__ import annotations

from pathlib import Path

from skiff.errors import StorageError
from skiff.runtime.volumes.model import MS_BIND, MS_REC, LocalMount, Volume
from skiff.runtime.volumes.store import VolumeStore

MS_REMOUNT = 0x20
_BIND_REMOUNT_FLAGS = 0x1 | 0x2 | 0x4 | 0x8 | 0x400 | 0x800 | (1 << 21) | (1 << 24)
"""Flags a bind mount takes only through a remount (ro, nosuid, nodev, noexec, atimes)."""
_MAX_STACKED = 32
"""Mounts stacked on one ``_data`` that ``unmount_driver`` takes off before giving up."""


def _mount(spec: LocalMount, target: Path, name: str) -> None:
    from skiff.storage.mount import mount, unmount

    if spec.kind == "bind" and not Path(spec.device).is_dir():
        raise StorageError(
            f"cannot mount volume {name}: {spec.device} is not a directory",
            "create the directory, or recreate the volume with another device=",
        )
    try:
        if spec.kind == "bind":
            mount(spec.device, target, None, MS_BIND | (MS_REC if spec.recursive else 0))
            extra = spec.flags & _BIND_REMOUNT_FLAGS
            if extra:
                try:
                    mount("none", target, None, MS_REMOUNT | MS_BIND | extra)
                except StorageError:
                    unmount(target, detach=True)
                    raise
        else:
            mount(spec.device, target, spec.fs_type, spec.flags, spec.data or None)
        if spec.propagation:
            try:
                mount("none", target, None, spec.propagation)
            except StorageError:
                unmount(target, detach=True)
                raise
    except StorageError as exc:
        raise StorageError(f"cannot mount volume {name}: {exc.message}", exc.hint) from exc


def unmount_driver(volume: Volume) -> None:
    """Take the driver's mount off ``_data`` (all of it, whatever the count says)."""
    from skiff.storage.mount import is_mounted, unmount

    for _ in range(_MAX_STACKED):
        if not is_mounted(volume.mountpoint):
            return
        try:
            unmount(volume.mountpoint)
        except StorageError as exc:
            raise StorageError(
                f"cannot unmount volume {volume.name}: {exc.message}",
                "a process still uses files in it; stop it and retry",
            ) from exc
    raise StorageError(
        f"cannot unmount volume {volume.name}: {volume.mountpoint} stays mounted",
        "look at /proc/self/mountinfo and unmount it by hand",
    )


def acquire(volumes: VolumeStore, name: str) -> Path:
    """Mount the volume if its driver mounts something (one more reference).

    Call under ``volumes.locked(name)``. Returns the directory containers bind.
    """
    from skiff.storage.mount import is_mounted

    volume = volumes.get(name)
    spec = volume.local.mount
    if spec is None:
        return volume.mountpoint
    if volume.mount_count == 0 or not is_mounted(volume.mountpoint):
        _mount(spec, volume.mountpoint, name)
    volumes.set_mount_count(name, volume.mount_count + 1)
    return volume.mountpoint


def release(volumes: VolumeStore, name: str, *, force: bool = False) -> int:
    """Drop one reference (all with ``force``); unmount at zero. The new count.

    Call under ``volumes.locked(name)``. Releasing a volume at count zero
    changes nothing (podman's ``volume unmount`` succeeds then too).
    """
    volume = volumes.get(name)
    if volume.local.mount is None:
        return 0
    count = 0 if force else max(volume.mount_count - 1, 0)
    if count == 0:
        unmount_driver(volume)
    volumes.set_mount_count(name, count)
    return count


def mount_volume(volumes: VolumeStore, name: str) -> Path:
    """``skiff volume mount``: acquire under the lock."""
    with volumes.locked(name):
        return acquire(volumes, name)


def unmount_volume(volumes: VolumeStore, name: str) -> int:
    """``skiff volume unmount``: release under the lock; the new count."""
    with volumes.locked(name):
        return release(volumes, name)
