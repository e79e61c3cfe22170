"""``skiff mount|umount`` (containers) and ``skiff image mount|umount`` (images).

A mount is counted in the store (per layer, per boot): ``mount`` adds one
reference and prints the merged directory, ``umount`` drops one and the
file system is unmounted when none is left (``force`` drops them all).
The mount outlives the skiff process that made it, as podman's does, so
that a user can work in the tree and unmount later. Image mounts are
read-only overlays of the image's layers (with vfs, the top layer's own
directory: vfs has no mounts).

``skiff mount NAME`` also takes an image when no container has that name
or ID (as ``atomic mount`` did).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skiff.errors import ContainerStateError, ContainerUnknown, ImageUnknown, SkiffError

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.storage.store import Store

BusyCheck = Callable[[str], str | None]
"""Given a container ID, why it must stay mounted (e.g. "it is running"), or None."""


@dataclass(frozen=True)
class MountedContainer:
    id: str
    names: tuple[str, ...]
    mountpoint: str


@dataclass(frozen=True)
class MountedImage:
    id: str
    digests: tuple[str, ...]
    """podman's ``Names`` of a mounted image: its manifest digests."""
    repositories: tuple[str, ...]
    mountpoint: str


@dataclass(frozen=True)
class MountOptions:
    images_too: bool = False
    """Accept image names where no container matches (``skiff mount IMAGE``)."""


@dataclass
class MountReport:
    containers: list[MountedContainer] = field(default_factory=list)
    images: list[MountedImage] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    """The mount points, in the order of the names given."""


@dataclass(frozen=True)
class UnmountOptions:
    all: bool = False
    force: bool = False
    """Unmount even if other users hold mount references."""
    busy: BusyCheck | None = None
    """The runtime's say on whether a container may be unmounted (unless ``force``)."""


@dataclass
class UnmountReport:
    unmounted: list[str] = field(default_factory=list)
    """What was unmounted, as the user named it (podman prints that)."""
    errors: list[SkiffError] = field(default_factory=list)


# --- containers ----------------------------------------------------------------------


def mount(ctx: SystemContext, names: list[str], options: MountOptions) -> MountReport:
    """Mount containers (or, with ``images_too``, images) and report their directories."""
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        report = MountReport()
        for name in names:
            container = store.containers.find(name)
            if container is None and options.images_too:
                try:
                    report.images.append(_mount_image(ctx, store, name))
                    report.paths.append(report.images[-1].mountpoint)
                    continue
                except ImageUnknown:
                    pass
            if container is None:
                raise ContainerUnknown(
                    f"no container with name or ID {name!r} found",
                    "list containers with 'skiff ps -a'"
                    + (", images with 'skiff images'" if options.images_too else ""),
                )
            path = str(store.mount_container(container.id))
            report.containers.append(MountedContainer(container.id, (container.name,), path))
            report.paths.append(path)
        return report
    finally:
        store.close()


def mounted_containers(ctx: SystemContext) -> list[MountedContainer]:
    """Containers with a counted mount in this boot, oldest first."""
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        points = {layer_id: point for layer_id, point, _ in store.layers.mounted()}
        return [
            MountedContainer(c.id, (c.name,), points[c.layer_id])
            for c in store.containers.all()
            if c.layer_id in points
        ]
    finally:
        store.close()


def unmount(ctx: SystemContext, names: list[str], options: UnmountOptions) -> UnmountReport:
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        report = UnmountReport()
        if options.all:
            mounted = {layer_id for layer_id, _, _ in store.layers.mounted()}
            targets = [c.id for c in store.containers.all() if c.layer_id in mounted]
        else:
            targets = names
        for name in targets:
            try:
                container = store.containers.get(name)
                reason = options.busy(container.id) if options.busy is not None else None
                if reason and not options.force:
                    raise ContainerStateError(
                        f"cannot unmount storage for container {container.id}: {reason}",
                        "stop the container first, or use --force",
                    )
                store.unmount_container(container.id, force=options.force)
                report.unmounted.append(name)
            except SkiffError as exc:
                report.errors.append(exc)
        return report
    finally:
        store.close()


# --- images --------------------------------------------------------------------------


def mount_images(ctx: SystemContext, names: list[str]) -> MountReport:
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        report = MountReport()
        for name in names:
            report.images.append(_mount_image(ctx, store, name))
            report.paths.append(report.images[-1].mountpoint)
        return report
    finally:
        store.close()


def _mount_image(ctx: SystemContext, store: Store, name: str) -> MountedImage:
    from skiff.libimage.names import find_local_image

    image, _ = find_local_image(ctx, store, name)
    path = str(store.mount_image(image.id))
    return MountedImage(image.id, tuple(str(d) for d in image.digests), image.names, path)


def mounted_images(ctx: SystemContext) -> list[MountedImage]:
    """Images whose top layer has a counted mount in this boot."""
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        points = {layer_id: point for layer_id, point, _ in store.layers.mounted()}
        return [
            MountedImage(
                image.id,
                tuple(str(d) for d in image.digests),
                image.names,
                points[image.top_layer],
            )
            for image in sorted(store.images.all(), key=lambda i: (i.added, i.id))
            if image.top_layer in points
        ]
    finally:
        store.close()


def unmount_images(ctx: SystemContext, names: list[str], options: UnmountOptions) -> UnmountReport:
    """Drop image mounts; reports image IDs (podman prints IDs for images)."""
    from skiff.libimage.names import find_local_image
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        report = UnmountReport()
        if options.all:
            mounted = {layer_id for layer_id, _, _ in store.layers.mounted()}
            ids = [i.id for i in store.images.all() if i.top_layer in mounted]
        else:
            ids = []
            for name in names:
                try:
                    ids.append(find_local_image(ctx, store, name)[0].id)
                except SkiffError as exc:
                    report.errors.append(exc)
        for image_id in ids:
            try:
                store.unmount_image(image_id, force=options.force)
                report.unmounted.append(image_id)
            except SkiffError as exc:
                report.errors.append(exc)
        return report
    finally:
        store.close()
