"""``skiff system df``: disk used by images, containers and volumes, as podman counts it.

Images are counted per name, as podman 4 does (``diskUsageForImage``): an
image with three names is three rows of the same size, and the summary
adds them all up — podman's numbers, so that scripts comparing the two
agree; ``docs/storage.md`` says why that over-counts. An image's size is
its full size (layers and metadata); with child images all of it is
*shared*, otherwise what its parent image accounts for is shared and the
rest *unique*.

A container's size is what its read-write layer holds (apparent bytes of
the files it added or changed). What the runtime knows — a container's
command, status, whether it runs, its volumes — comes through
``DfOptions.describe_container`` and ``DfOptions.list_volumes``, which the
runtime provides; without them containers show as created and no volumes
are listed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from skiff.libimage.layertree import LayerTree, created_of

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.storage.containers import StorageContainer
    from skiff.storage.images import Image
    from skiff.storage.store import Store


@dataclass(frozen=True)
class ContainerFacts:
    """What the runtime knows about a container, for df."""

    command: str = ""
    status: str = "created"
    """The state as podman's df prints it: created, running, exited, ..."""
    running: bool = False
    local_volumes: int = 0


@dataclass(frozen=True)
class VolumeUsage:
    name: str
    links: int
    """Containers using the volume."""
    size: int


@dataclass(frozen=True)
class ImageUsage:
    repository: str
    tag: str
    id: str
    created: datetime
    size: int
    shared_size: int
    unique_size: int
    containers: int


@dataclass(frozen=True)
class ContainerUsage:
    id: str
    image_id: str
    """"" for a container made without an image."""
    command: str
    local_volumes: int
    size: int
    created: datetime
    status: str
    names: str
    running: bool


@dataclass(frozen=True)
class DfOptions:
    describe_container: Callable[[str], ContainerFacts | None] | None = None
    list_volumes: Callable[[Store], list[VolumeUsage]] | None = None


@dataclass
class Summary:
    """One row of the summary table (podman's dfSummary)."""

    type: str
    total: int
    active: int
    size: int
    reclaimable: int


@dataclass
class DfReport:
    images: list[ImageUsage] = field(default_factory=list)
    containers: list[ContainerUsage] = field(default_factory=list)
    volumes: list[VolumeUsage] = field(default_factory=list)

    def summary(self) -> list[Summary]:
        """Images, Containers, Local Volumes: totals as podman adds them up."""
        return [
            Summary(
                "Images",
                len(self.images),
                sum(1 for i in self.images if i.containers > 0),
                sum(i.size for i in self.images),
                sum(i.size for i in self.images if i.containers < 1),
            ),
            Summary(
                "Containers",
                len(self.containers),
                sum(1 for c in self.containers if c.running),
                sum(c.size for c in self.containers),
                sum(c.size for c in self.containers if not c.running),
            ),
            Summary(
                "Local Volumes",
                len(self.volumes),
                sum(1 for v in self.volumes if v.links > 0),
                sum(v.size for v in self.volumes),
                sum(v.size for v in self.volumes if v.links < 1),
            ),
        ]


def disk_usage(ctx: SystemContext, options: DfOptions | None = None) -> DfReport:
    from skiff.storage.store import Store

    opts = options or DfOptions()
    store = Store.open(ctx)
    try:
        tree = LayerTree(store)
        report = DfReport()
        for image in tree.images:
            report.images.extend(image_usage(store, tree, image))
        for container in store.containers.all():
            report.containers.append(container_usage(store, tree, container, opts))
        if opts.list_volumes is not None:
            report.volumes = opts.list_volumes(store)
        return report
    finally:
        store.close()


def image_usage(store: Store, tree: LayerTree, image: Image) -> list[ImageUsage]:
    from skiff.storage.images import repository_of

    size = tree.size(image)
    shared, unique = 0, size
    if tree.children(image):
        shared, unique = size, 0
    else:
        parent = tree.parent(image)
        if parent is not None:
            shared = tree.size(parent)
            unique = size - shared
    containers = len(store.containers.by_image(image.id))
    created = created_of(tree, image)
    pairs = [(repository_of(n), n[len(repository_of(n)) + 1 :]) for n in image.names]
    if not pairs:
        pairs = [("<none>", "<none>")]
    return [
        ImageUsage(repo, tag, image.id, created, shared + unique, shared, unique, containers)
        for repo, tag in pairs
    ]


def container_usage(
    store: Store, tree: LayerTree, container: StorageContainer, options: DfOptions
) -> ContainerUsage:
    from datetime import UTC

    facts = None
    if options.describe_container is not None:
        facts = options.describe_container(container.id)
    facts = facts or ContainerFacts()
    return ContainerUsage(
        id=container.id,
        image_id=container.image_id or "",
        command=facts.command,
        local_volumes=facts.local_volumes,
        size=rw_size(store, container.layer_id),
        created=datetime.fromtimestamp(container.created, tz=UTC),
        status=facts.status,
        names=container.name,
        running=facts.running,
    )


def rw_size(store: Store, layer_id: str) -> int:
    """Apparent bytes of what a read-write layer added or changed (not directories)."""
    driver = store.driver
    content = driver.layer_dir(layer_id)
    if not content.exists():
        return 0
    if driver.whiteout_format == "overlay":
        return tree_bytes(str(content))
    from skiff.storage.archive import changes

    layer = store.layers.get(layer_id)
    parent = driver.layer_dir(layer.parent) if layer.parent is not None else None
    total = 0
    for change in changes(content, whiteout_format="vfs", parent_dir=parent):
        if change.kind == "D":
            continue
        try:
            st = os.lstat(f"{content}{change.path}")
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            total += st.st_size
    return total


def tree_bytes(path: str) -> int:
    """Apparent size of everything under ``path`` that is not a directory (no symlinks followed)."""
    total = 0
    try:
        scanner = os.scandir(path)
    except FileNotFoundError:
        return 0
    with scanner as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                total += tree_bytes(entry.path)
            else:
                total += st.st_size
    return total
