"""Volumes through a container's life: what the container code calls.

    create   resolve_mounts(store, cid, specs, image_config, volumes_from=…)
             → list[ResolvedMount]; names anonymous volumes, creates named
             volumes that do not exist yet (as podman does), records the
             container as a user of each volume and keeps the list.
             ``as_spec_mounts(resolved)`` gives specgen its inputs.
    start    mount_volumes(store, cid, rootfs, uid, gid): driver mounts
             (counted), the first-use chown and copy-up (copyup.py), ``U``.
             Call it after the rootfs is mounted and before the runtime
             creates the container; idempotent within a boot.
    stop     unmount_volumes(store, cid): drop the driver mounts' references.
    remove   release(store, cid, remove_anonymous=…): unmount, forget the
             container's uses, and with ``remove_anonymous`` (``rm -v``,
             ``--rm``) remove its anonymous volumes nobody else uses.

``mount_for``/``unmount_for`` are the start/stop hooks in one call each
(resolving at the first start when create did not).

``--volumes-from CTR[:ro|rw]``: ``parse_volumes_from`` splits the flag; the
caller finds the container and passes ``VolumesFrom(id, mounts, mode)``,
where ``mounts`` is usually ``recorded_mounts(store, id)``. As in podman,
the other container's volumes and bind mounts are inherited (not its
tmpfs mounts), later ``--volumes-from`` win over earlier ones, and the
container's own ``-v``/``--mount`` win over all of them; an image VOLUME
gets an anonymous volume only where nothing else is mounted.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import ContainerError, SkiffError, StorageError, UsageError
from skiff.runtime.volumes import copyup, driver
from skiff.runtime.volumes.resolved import (
    IMAGE_TMPFS_OPTIONS,
    IMAGE_VOLUME_OPTIONS,
    KIND_BIND,
    KIND_TMPFS,
    KIND_VOLUME,
    ResolvedMount,
    volume_options,
)
from skiff.runtime.volumes.store import CreateOptions, VolumeStore, remove_tree

if TYPE_CHECKING:
    from skiff.oci.config import ImageConfig
    from skiff.storage.store import Store

log = logging.getLogger(__name__)

IMAGE_VOLUME_MODES = ("bind", "anonymous", "tmpfs", "ignore")
"""podman's ``--image-volume``: "bind" (its default, an anonymous volume;
"anonymous" is an alias here), "tmpfs", or "ignore"."""


@dataclass(frozen=True)
class VolumesFrom:
    """One ``--volumes-from``: the other container, its mounts, and "ro"/"rw"/""."""

    container_id: str
    mounts: Sequence[ResolvedMount]
    mode: str = ""


def parse_volumes_from(text: str) -> tuple[str, str]:
    """``CTR[:OPTIONS]`` → (container reference, "ro"|"rw"|""); options ro, rw, z."""
    ref, sep, opts = text.partition(":")
    mode = ""
    for opt in opts.split(",") if sep else []:
        if opt in ("ro", "rw"):
            if mode:
                raise UsageError(f"invalid --volumes-from {text!r}: ro and rw given together")
            mode = opt
        elif opt not in ("z", "Z"):
            raise UsageError(
                f"invalid options {opts!r} in --volumes-from {text!r}, "
                "can only specify 'ro', 'rw', and 'z'"
            )
    if not ref:
        raise UsageError(f"invalid --volumes-from {text!r}: no container", "use CTR[:ro|rw]")
    return ref, mode


def _clean_destination(path: str) -> str:
    clean = posixpath.normpath("/" + path)
    return "/" + clean.lstrip("/")


def _from_spec(spec: Any) -> ResolvedMount:
    """A parsed ``-v``/``--mount``/``--tmpfs`` value; volumes are named later."""
    from skiff.runtime.specgen.mounts import BindMount, TmpfsMount, VolumeMount

    if isinstance(spec, TmpfsMount):
        return ResolvedMount(KIND_TMPFS, spec.destination, "tmpfs", tuple(spec.options))
    if isinstance(spec, BindMount):
        options = volume_options(
            spec.read_only, spec.propagation, spec.flags, bind=True, recursive=spec.recursive
        )
        return ResolvedMount(KIND_BIND, spec.destination, spec.source, options, chown=spec.chown)
    if isinstance(spec, VolumeMount):
        options = volume_options(spec.read_only, spec.propagation, spec.flags)
        return ResolvedMount(
            KIND_VOLUME,
            spec.destination,
            "",
            options,
            name=spec.name,
            anonymous=not spec.name,
            copy_up=spec.copy_up,
            chown=spec.chown,
        )
    raise TypeError(f"not a mount specification: {spec!r}")


def _plan(
    specs: Sequence[Any],
    image_config: ImageConfig | None,
    volumes_from: Sequence[VolumesFrom],
    image_volumes: str,
) -> list[ResolvedMount]:
    """Every mount by destination: own mounts over --volumes-from over image volumes."""
    if image_volumes not in IMAGE_VOLUME_MODES:
        raise UsageError(
            f"invalid image volume mode {image_volumes!r}",
            f"use one of {', '.join(IMAGE_VOLUME_MODES)}",
        )
    own = [_from_spec(s) for s in specs]
    seen: set[str] = set()
    for m in own:
        if m.destination in seen:
            raise UsageError(
                f"duplicate mount destination {m.destination}",
                "each container path can be mounted once",
            )
        seen.add(m.destination)
    inherited: dict[str, ResolvedMount] = {}
    for source in volumes_from:
        if source.mode not in ("", "ro", "rw"):
            raise UsageError(f"invalid --volumes-from mode {source.mode!r}", "use ro or rw")
        for m in source.mounts:
            if m.kind == KIND_TMPFS or m.destination in seen:
                continue
            inherited.pop(m.destination, None)
            inherited[m.destination] = m.with_access(source.mode) if source.mode else m
    plan = own + list(inherited.values())
    taken = {m.destination for m in plan}
    if image_config is not None and image_volumes != "ignore":
        for dest in sorted({_clean_destination(v) for v in image_config.volumes}):
            if dest in taken:
                continue
            if image_volumes == "tmpfs":
                plan.append(ResolvedMount(KIND_TMPFS, dest, "tmpfs", IMAGE_TMPFS_OPTIONS))
            else:
                plan.append(
                    ResolvedMount(KIND_VOLUME, dest, "", IMAGE_VOLUME_OPTIONS, anonymous=True)
                )
            taken.add(dest)
    return plan


def _has_record(volumes: VolumeStore, container_id: str) -> bool:
    return (
        volumes.db.read_one("SELECT 1 FROM volume_mounts WHERE container_id=?", (container_id,))
        is not None
    )


def _record(volumes: VolumeStore, container_id: str) -> tuple[list[ResolvedMount], str | None]:
    row = volumes.db.read_one(
        "SELECT mounts, active_boot FROM volume_mounts WHERE container_id=?", (container_id,)
    )
    if row is None:
        return [], None
    mounts = [ResolvedMount.from_json(m) for m in json.loads(row["mounts"])]
    return mounts, row["active_boot"]


def recorded_mounts(store: Store, container_id: str) -> list[ResolvedMount]:
    """The mounts ``resolve_mounts`` recorded for a container (empty if none)."""
    return _record(VolumeStore.of(store), container_id)[0]


def volume_users(store: Store, name: str) -> list[str]:
    """IDs of the containers that use volume ``name``."""
    return VolumeStore.of(store).users(name)


def resolve_mounts(
    store: Store,
    container_id: str,
    specs: Sequence[Any],
    image_config: ImageConfig | None = None,
    *,
    volumes_from: Sequence[VolumesFrom] = (),
    image_volumes: str = "bind",
) -> list[ResolvedMount]:
    """Turn a new container's mounts into host paths and record its volume uses.

    ``specs``: the parsed ``-v``/``--mount``/``--tmpfs`` values
    (``skiff.runtime.specgen.mounts`` BindMount, VolumeMount, TmpfsMount;
    bind sources already resolved). Volume names not in the store are
    created with default options; anonymous volumes (``-v /path``, and the
    image's ``Config.Volumes``) get random 64-hex names. Everything is
    recorded in one transaction; on failure the volumes created here are
    gone again.
    """
    volumes = VolumeStore.of(store)
    plan = _plan(specs, image_config, volumes_from, image_volumes)
    created: list[str] = []
    resolved: list[ResolvedMount] = []
    try:
        with volumes.db.write() as conn:
            if _has_record(volumes, container_id):
                raise ContainerError(
                    f"the mounts of container {container_id} are already resolved",
                    "release them first (volumes.release)",
                )
            for m in plan:
                if m.kind != KIND_VOLUME:
                    resolved.append(m)
                    continue
                name = m.name
                if not name or not volumes.exists(name):
                    volume = volumes.create(CreateOptions(name=name or None, anonymous=not name))
                    created.append(volume.name)
                    name = volume.name
                path = volumes.mountpoint(name)
                resolved.append(
                    ResolvedMount(
                        m.kind,
                        m.destination,
                        str(path),
                        m.options,
                        name=name,
                        anonymous=volumes.get(name).anonymous,
                        copy_up=m.copy_up,
                        chown=m.chown,
                    )
                )
                conn.execute(
                    "INSERT OR IGNORE INTO volume_users(volume, container_id) VALUES (?, ?)",
                    (name, container_id),
                )
            conn.execute(
                "INSERT INTO volume_mounts(container_id, mounts, active_boot) VALUES (?, ?, NULL)",
                (container_id, json.dumps([m.to_json() for m in resolved])),
            )
    except BaseException:
        for name in created:
            try:
                remove_tree(volumes.volume_dir(name))
            except (OSError, StorageError) as exc:
                log.warning("could not remove the directory of volume %s: %s", name, exc)
        raise
    return resolved


def _prepare(volumes: VolumeStore, m: ResolvedMount, rootfs: Path, uid: int, gid: int) -> None:
    """First-use chown and copy-up, and ``U`` (under the volume's lock)."""
    volume = volumes.get(m.name)
    data = volume.mountpoint
    spec = volume.local.mount
    image_dir = copyup.secure_join(rootfs, m.destination)
    if volume.needs_chown:
        if spec is None or spec.kind != "bind":  # never chown a host directory behind a bind
            copyup.fix_permissions(data, image_dir, uid, gid)
        volumes.set_flags(m.name, needs_chown=False)
    if volume.needs_copy_up and m.copy_up and image_dir.is_dir():
        copyup.remove_partial_copies(data)
        if copyup.is_empty(data):
            copyup.copy_up(image_dir, data)
        volumes.set_flags(m.name, needs_copy_up=False)
    if m.chown:
        copyup.chown_tree(data, uid, gid)


def mount_volumes(
    store: Store, container_id: str, rootfs: Path, uid: int = 0, gid: int = 0
) -> list[ResolvedMount]:
    """Make a container's volumes ready for it to start; its recorded mounts.

    ``rootfs``: the container's mounted root file system (copy-up reads the
    image's content there); ``uid``/``gid``: the container process's user.
    Nothing is counted twice in one boot: a second call returns at once.
    """
    volumes = VolumeStore.of(store)
    mounts, active_boot = _record(volumes, container_id)
    if active_boot == volumes.boot:
        return mounts
    acquired: list[str] = []
    try:
        for m in mounts:
            if m.kind != KIND_VOLUME:
                continue
            with volumes.locked(m.name):
                driver.acquire(volumes, m.name)
                acquired.append(m.name)
                _prepare(volumes, m, rootfs, uid, gid)
        with volumes.db.write() as conn:
            conn.execute(
                "UPDATE volume_mounts SET active_boot=? WHERE container_id=?",
                (volumes.boot, container_id),
            )
    except BaseException:
        for name in reversed(acquired):
            try:
                with volumes.locked(name):
                    driver.release(volumes, name)
            except SkiffError as exc:
                log.warning("could not release volume %s: %s", name, exc)
        raise
    return mounts


def mount_for(
    store: Store,
    container_id: str,
    specs: Sequence[Any],
    image_config: ImageConfig | None,
    rootfs: Path,
    *,
    volumes_from: Sequence[VolumesFrom] = (),
    uid: int = 0,
    gid: int = 0,
) -> dict[str, Path]:
    """The start hook in one call: ``resolve_mounts`` unless the container's
    mounts are recorded already (at create, or an earlier start), then
    ``mount_volumes``. Returns volume name → host path (``generate_spec``'s
    ``volumes``); the full list, anonymous and image volumes included, is
    ``as_spec_mounts(recorded_mounts(store, container_id))``.
    """
    volumes = VolumeStore.of(store)
    if not _has_record(volumes, container_id):
        resolve_mounts(store, container_id, specs, image_config, volumes_from=volumes_from)
    mounted = mount_volumes(store, container_id, rootfs, uid, gid)
    return {m.name: Path(m.source) for m in mounted if m.kind == KIND_VOLUME}


def unmount_for(store: Store, container_id: str) -> None:
    """The stop hook: ``unmount_volumes``."""
    unmount_volumes(store, container_id)


def unmount_volumes(store: Store, container_id: str) -> None:
    """Drop the driver mounts ``mount_volumes`` took (no-op if it did not, or
    did so in an earlier boot). Every volume is tried; the first error is raised."""
    volumes = VolumeStore.of(store)
    mounts, active_boot = _record(volumes, container_id)
    failure: SkiffError | None = None
    if active_boot == volumes.boot:
        for m in mounts:
            if m.kind != KIND_VOLUME or not volumes.exists(m.name):
                continue
            try:
                with volumes.locked(m.name):
                    driver.release(volumes, m.name)
            except SkiffError as exc:
                failure = failure or exc
    if active_boot is not None:
        with volumes.db.write() as conn:
            conn.execute(
                "UPDATE volume_mounts SET active_boot=NULL WHERE container_id=?", (container_id,)
            )
    if failure is not None:
        raise failure


def release(store: Store, container_id: str, remove_anonymous: bool) -> list[str]:
    """Forget a removed container's volumes; the anonymous volumes removed.

    With ``remove_anonymous`` (``rm -v``, ``run --rm``) the container's
    anonymous volumes that no other container uses are removed; named
    volumes always stay.
    """
    volumes = VolumeStore.of(store)
    mounts, _ = _record(volumes, container_id)
    unmount_volumes(store, container_id)
    with volumes.db.write() as conn:
        volumes.remove_users(container_id)
        conn.execute("DELETE FROM volume_mounts WHERE container_id=?", (container_id,))
    removed: list[str] = []
    if remove_anonymous:
        for m in mounts:
            if m.kind != KIND_VOLUME or not m.anonymous or m.name in removed:
                continue
            volume = volumes.find(m.name)
            if volume is None or not volume.anonymous or volumes.users(m.name):
                continue
            volumes.remove(m.name)
            removed.append(m.name)
    return removed
