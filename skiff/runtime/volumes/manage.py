"""What ``skiff volume`` does: create, list, remove and prune, with podman's rules.

``remove_volume`` with ``force`` removes the containers that use the volume
first, as podman does; containers belong to the runtime above this
package, so the caller hands in ``remove_container(container_id)``
(which must end with ``release`` for that container). Without one, a
forced removal of a volume in use is refused rather than leaving
containers that point at a missing volume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from skiff.errors import VolumeUnknown
from skiff.runtime.volumes.filters import parse_filters
from skiff.runtime.volumes.model import Volume, VolumeInUse
from skiff.runtime.volumes.store import CreateOptions, VolumeStore, in_use

if TYPE_CHECKING:
    from skiff.storage.store import Store


def create_volume(store: Store, options: CreateOptions, *, ignore: bool = False) -> Volume:
    """``volume create``; with ``ignore``, an existing volume of that name is returned."""
    volumes = VolumeStore.of(store)
    if ignore and options.name:
        existing = volumes.find(options.name)
        if existing is not None:
            return existing
    return volumes.create(options)


def list_volumes(store: Store, filters: Sequence[str] = ()) -> list[Volume]:
    """``volume ls``: the volumes matching every filter, sorted by name."""
    volumes = VolumeStore.of(store)
    wanted = parse_filters(filters)
    used = volumes.in_use() if "dangling" in wanted.values else set()
    return [v for v in volumes.all() if wanted.matches(v, lambda x: x.name in used)]


def remove_volume(
    store: Store,
    name: str,
    *,
    force: bool = False,
    remove_container: Callable[[str], None] | None = None,
) -> Volume:
    """``volume rm [-f]``: VolumeUnknown, VolumeInUse, or the removed volume."""
    volumes = VolumeStore.of(store)
    volumes.get(name)
    users = volumes.users(name)
    if users:
        if not force:
            raise in_use(name, users)
        if remove_container is None:
            raise VolumeInUse(
                in_use(name, users).message,
                "remove those containers first ('skiff rm -f'): "
                "this command cannot remove containers",
            )
        for container_id in users:
            remove_container(container_id)
    return volumes.remove(name, force=force)


def prune_candidates(store: Store, filters: Sequence[str] = ()) -> list[Volume]:
    """The volumes ``prune`` would remove: matching, unused, not mounted."""
    volumes = VolumeStore.of(store)
    wanted = parse_filters(filters)
    used = volumes.in_use()
    return [
        v
        for v in volumes.all()
        if v.name not in used and v.mount_count == 0 and wanted.matches(v, lambda x: False)
    ]


def prune_volumes(store: Store, filters: Sequence[str] = ()) -> list[str]:
    """``volume prune -f``: remove the candidates; the names removed.

    A volume a container started using meanwhile is skipped, not an error.
    """
    volumes = VolumeStore.of(store)
    removed: list[str] = []
    for volume in prune_candidates(store, filters):
        try:
            volumes.remove(volume.name)
        except (VolumeInUse, VolumeUnknown):
            continue
        removed.append(volume.name)
    return removed
