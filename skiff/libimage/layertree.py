"""Images and layers of one store as a tree: parents, children, sizes, names history.

The store knows layers (each with a parent) and images (each with a top
layer); podman's libimage derives from these which image is the *parent*
of which (``images -a``, ``Parent`` in inspect, ``history`` IDs, ``system
df``'s shared sizes, dangling vs. intermediate images). Its rule, kept
here: image P is the parent of image C when C's top layer is P's top
layer or a child of it, P's diff IDs are the first of C's, and P's
history is a strict prefix of C's (same created, created_by, author,
comment, empty_layer). The history check is what tells "built FROM" from
"happens to share a base layer".

One ``LayerTree`` is a snapshot taken at construction; build a new one
after changing the store.

Sizes are podman's: an image's size is its layers' uncompressed sizes
plus every metadata blob kept with it (config, manifests, signatures),
which is what containers/storage's ImageSize adds up, so ``skiff images``
and ``podman images`` print the same number for the same image.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from skiff.errors import ManifestError

if TYPE_CHECKING:
    from skiff.oci.config import ImageConfig
    from skiff.storage.images import Image
    from skiff.storage.layers import Layer
    from skiff.storage.store import Store

log = logging.getLogger(__name__)

NAMES_HISTORY_KEY = "skiff-names-history"
"""image_data key: the names an image had, newest first (podman's NamesHistory)."""

_HISTORY_FIELDS = ("created", "created_by", "author", "comment", "empty_layer")


class LayerTree:
    """A snapshot of the store's images and layers with libimage's relations."""

    def __init__(self, store: Store, images: Iterable[Image] | None = None) -> None:
        self.store = store
        # podman walks images in the order the store recorded them
        self.images: list[Image] = sorted(
            store.images.all() if images is None else images, key=lambda i: (i.added, i.id)
        )
        self.layers: dict[str, Layer] = {layer.id: layer for layer in store.layers.all()}
        self._by_top: dict[str | None, list[Image]] = {}
        for image in self.images:
            self._by_top.setdefault(image.top_layer, []).append(image)
        self._configs: dict[str, ImageConfig | None] = {}
        self._sizes: dict[str, int] = {}

    # --- layers ------------------------------------------------------------
    def layer_chain(self, layer_id: str | None) -> list[Layer]:
        """``layer_id`` and its ancestors, top first (stops at a missing layer)."""
        out: list[Layer] = []
        seen: set[str] = set()
        current = layer_id
        while current is not None and current not in seen:
            layer = self.layers.get(current)
            if layer is None:
                break
            out.append(layer)
            seen.add(current)
            current = layer.parent
        return out

    def images_with_top_layer(self, layer_id: str | None) -> list[Image]:
        return list(self._by_top.get(layer_id, []))

    # --- configs -------------------------------------------------------------
    def config(self, image: Image) -> ImageConfig | None:
        """The image's parsed config, None if it does not parse (logged)."""
        if image.id not in self._configs:
            from skiff.oci.config import ImageConfig

            try:
                self._configs[image.id] = ImageConfig.from_bytes(image.config)
            except ManifestError as exc:
                log.warning("image %s has an unreadable config: %s", image.id[:12], exc)
                self._configs[image.id] = None
        return self._configs[image.id]

    # --- parents and children ----------------------------------------------
    def is_parent(self, parent: Image, child: Image) -> bool:
        """libimage's areParentAndChild over the two configs."""
        if parent.id == child.id:
            return False
        parent_config = self.config(parent)
        child_config = self.config(child)
        if parent_config is None or child_config is None:
            return False
        try:
            parent_ids = parent_config.diff_ids
            child_ids = child_config.diff_ids
        except ManifestError:
            return False
        if len(parent_ids) > len(child_ids) or child_ids[: len(parent_ids)] != parent_ids:
            return False
        parent_history = parent_config.history
        child_history = child_config.history
        if len(parent_history) >= len(child_history):
            return False
        return all(
            _history_key(p) == _history_key(c)
            for p, c in zip(parent_history, child_history, strict=False)
        )

    def parent(self, image: Image) -> Image | None:
        """The image ``image`` was built from, if it is in the store."""
        candidates = self.images_with_top_layer(image.top_layer)
        if image.top_layer is not None:
            top = self.layers.get(image.top_layer)
            if top is not None:
                candidates += self.images_with_top_layer(top.parent)
        for candidate in candidates:
            if self.is_parent(candidate, image):
                return candidate
        return None

    def children(self, image: Image) -> list[Image]:
        """Images built from ``image`` (on its top layer, or one layer above)."""
        out: list[Image] = []
        for candidate in self.images:
            if candidate.id == image.id:
                continue
            if candidate.top_layer != image.top_layer:
                top = self.layers.get(candidate.top_layer) if candidate.top_layer else None
                if top is None or top.parent != image.top_layer:
                    continue
            if self.is_parent(image, candidate):
                out.append(candidate)
        return out

    def is_dangling(self, image: Image) -> bool:
        """No names and no children (podman: ``dangling=true``, what ``prune`` removes)."""
        return not image.names and not self.children(image)

    def is_intermediate(self, image: Image) -> bool:
        """No names but children: hidden by ``images`` without ``-a``."""
        return not image.names and bool(self.children(image))

    # --- sizes -------------------------------------------------------------
    def layers_size(self, image: Image) -> int:
        return sum(layer.uncompressed_size for layer in self.layer_chain(image.top_layer))

    def size(self, image: Image) -> int:
        """podman's image size: layers plus every metadata blob of the image."""
        cached = self._sizes.get(image.id)
        if cached is None:
            cached = self.layers_size(image) + metadata_size(self.store, image)
            self._sizes[image.id] = cached
        return cached


def _history_key(entry: dict[str, Any]) -> tuple[object, ...]:
    return tuple(entry.get(key) or None for key in _HISTORY_FIELDS)


def metadata_size(store: Store, image: Image) -> int:
    """Bytes of the config, the main manifest and every data item kept with the image."""
    total = len(image.config) + len(image.manifest or b"")
    for key in store.images.data_keys(image.id):
        if key == NAMES_HISTORY_KEY:
            continue  # skiff's own bookkeeping, not an image blob
        value = store.images.data(image.id, key)
        total += len(value or b"")
    return total


# --- names history -------------------------------------------------------------------


def names_history(store: Store, image: Image) -> list[str]:
    """Every name the image has had, newest first (podman's NamesHistory).

    Current names come first (most recently added first), then names it
    lost (untagged, or moved to another image), as recorded by
    ``record_names_history``.
    """
    out: list[str] = list(reversed(image.names))
    for name in _stored_history(store, image.id):
        if name not in out:
            out.append(name)
    return out


def record_names_history(store: Store, image_id: str, names: Iterable[str]) -> None:
    """Put ``names`` at the front of the image's recorded names history."""
    history = list(dict.fromkeys([*names, *_stored_history(store, image_id)]))
    store.images.set_data(image_id, NAMES_HISTORY_KEY, json.dumps(history).encode())


def _stored_history(store: Store, image_id: str) -> list[str]:
    raw = store.images.data(image_id, NAMES_HISTORY_KEY)
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("image %s: unreadable names history ignored", image_id[:12])
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


# --- times ---------------------------------------------------------------------------


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time as images record it (nanoseconds cut to microseconds)."""
    if not text:
        return None
    value = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in value:
        head, _, rest = value.partition(".")
        digits = "".join(ch for ch in rest if ch.isdigit())
        value = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    """Go's RFC3339Nano: trailing zeros of the fraction dropped, ``Z`` for UTC."""
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset()
    if offset is None or not offset:
        return text + "Z"
    return text + value.strftime("%z")[:3] + ":" + value.strftime("%z")[3:]


def created_of(tree: LayerTree, image: Image) -> datetime:
    """When the image was created: its config's time, else the store's record."""
    config = tree.config(image)
    parsed = parse_time(config.created) if config is not None else None
    return parsed or datetime.fromtimestamp(image.created, tz=UTC)
