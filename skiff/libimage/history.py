"""``skiff history IMAGE``: an image's history entries with their layers, as podman shows them.

Entries come newest first. Walking down from the top layer, each entry
that made a layer gets that layer's size and moves the walk one layer
down; entries with ``empty_layer`` take no size and stay on the layer.
An entry's ID is the first image in the store whose top layer is the
current layer (each image ID used once), the inspected image's own ID for
the newest entry, and ``<missing>`` otherwise — libimage's rule, which is
why a base image pulled beside its child shows up in the child's history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from skiff.libimage.layertree import LayerTree, created_of, parse_time

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.storage.images import Image
    from skiff.storage.layers import Layer

MISSING = "<missing>"


@dataclass(frozen=True)
class HistoryEntry:
    id: str
    """An image ID, or ``<missing>``."""
    created: datetime
    created_raw: str
    """The time as the image recorded it (offset kept), "" when absent."""
    created_by: str
    size: int
    comment: str


@dataclass(frozen=True)
class HistoryOptions:
    pass


@dataclass
class HistoryReport:
    image_id: str
    entries: list[HistoryEntry] = field(default_factory=list)


def image_history(
    ctx: SystemContext, name: str, options: HistoryOptions | None = None
) -> HistoryReport:
    from skiff.libimage.names import find_local_image
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        image, _ = find_local_image(ctx, store, name)
        tree = LayerTree(store)
        return HistoryReport(image.id, history_of(tree, image))
    finally:
        store.close()


def history_of(tree: LayerTree, image: Image) -> list[HistoryEntry]:
    config = tree.config(image)
    records = config.history if config is not None else []
    layer: Layer | None = tree.layers.get(image.top_layer) if image.top_layer else None
    used: set[str] = set()
    out: list[HistoryEntry] = []
    fallback = created_of(tree, image)
    for index in range(len(records) - 1, -1, -1):
        record = records[index]
        empty = bool(record.get("empty_layer"))
        entry_id = image.id if index == len(records) - 1 else MISSING
        size = 0
        if layer is not None:
            if not empty:
                size = layer.uncompressed_size
            owners = tree.images_with_top_layer(layer.id)
            if owners and owners[0].id not in used:
                entry_id = owners[0].id
                used.add(entry_id)
            if not empty and layer.parent is not None:
                layer = tree.layers.get(layer.parent)
        raw = str(record.get("created") or "")
        created = parse_time(raw) or (fallback if not raw else datetime.fromtimestamp(0, UTC))
        out.append(
            HistoryEntry(
                id=entry_id,
                created=created,
                created_raw=raw,
                created_by=str(record.get("created_by") or ""),
                size=size,
                comment=str(record.get("comment") or ""),
            )
        )
    return out


# --- image tree --------------------------------------------------------------------


@dataclass(frozen=True)
class TreeLayer:
    id: str
    size: int
    top_of: tuple[str, ...]
    """Names of the images whose top layer this is."""


@dataclass
class TreeReport:
    image_id: str
    names: tuple[str, ...]
    size: int
    layers: list[TreeLayer] = field(default_factory=list)
    """Base layer first."""


def image_tree(ctx: SystemContext, name: str) -> TreeReport:
    """``skiff image tree``: an image's layers and which images end on each."""
    from skiff.libimage.names import find_local_image
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        image, _ = find_local_image(ctx, store, name)
        tree = LayerTree(store)
        report = TreeReport(image.id, image.names, tree.size(image))
        for layer in reversed(tree.layer_chain(image.top_layer)):
            owners = tree.images_with_top_layer(layer.id)
            names = tuple(n for owner in owners for n in owner.names)
            report.layers.append(TreeLayer(layer.id, layer.uncompressed_size, names))
        return report
    finally:
        store.close()
