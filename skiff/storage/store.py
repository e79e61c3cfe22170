"""The store: one facade over layers, images and containers.

    ROOT/db.sqlite          metadata (see db.py)
    ROOT/<driver>/          layer contents (see drivers/)
    ROOT/staging/           layers being created
    ROOT/containers/<id>/   per-container files (userdata) for the runtime
    RUNROOT/                per-boot state (runtime's), emptied by a reboot

Lock order: there is one lock, the database's write lock, taken by the noun
stores' ``db.write()`` helpers (nested calls join the outer transaction).
Callers never take it themselves. Long work (extracting a layer, copying a
tree) happens outside it, in staging directories.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.config import SystemContext
from skiff.errors import ConfigError, ImageInUse, StorageError
from skiff.storage.containers import ContainerStore, StorageContainer
from skiff.storage.db import STORAGE_SCHEMA, Database
from skiff.storage.drivers import DRIVERS, default_driver_name, load_driver
from skiff.storage.images import Image, ImageStore
from skiff.storage.layers import LayerStore, random_id

if TYPE_CHECKING:
    from skiff.storage.archive import LayerTarReader

log = logging.getLogger(__name__)


class ChunkReader:
    """``read(n)`` over an iterator of byte chunks (a generated tar)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            data = self._pending + b"".join(self._chunks)
            self._pending = b""
            return data
        while len(self._pending) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._pending += chunk
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


STORAGE_CONF = Path("/etc/skiff/storage.conf")


@dataclass(frozen=True)
class StoreOptions:
    root: Path
    run_root: Path
    driver: str | None = None


def store_options(ctx: SystemContext) -> StoreOptions:
    """Roots and driver from the context, filled in from storage.conf.

    storage.conf uses containers-storage.conf's keys: ``[storage] driver,
    graphroot, runroot``; ``$SKIFF_STORAGE_CONF`` names another file.
    Flags (already in ``ctx``) win over the file.
    """
    from skiff.config import DEFAULT_RUN_ROOT, DEFAULT_STORAGE_ROOT

    path = Path(os.environ.get("SKIFF_STORAGE_CONF", STORAGE_CONF))
    conf: dict[str, object] = {}
    if path.exists():
        import tomllib  # only when there is a file: every command opens a store

        try:
            conf = tomllib.loads(path.read_text()).get("storage", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read storage configuration {path}: {exc}") from exc
    root = ctx.storage_root
    if root == DEFAULT_STORAGE_ROOT and isinstance(conf.get("graphroot"), str):
        root = Path(str(conf["graphroot"]))
    run_root = ctx.run_root
    if run_root == DEFAULT_RUN_ROOT and isinstance(conf.get("runroot"), str):
        run_root = Path(str(conf["runroot"]))
    driver = ctx.storage_driver or (str(conf["driver"]) if conf.get("driver") else None)
    if driver is not None and driver not in DRIVERS:
        raise ConfigError(f"unknown storage driver {driver!r}", f"supported: {', '.join(DRIVERS)}")
    return StoreOptions(root=root, run_root=run_root, driver=driver)


class Store:
    def __init__(self, options: StoreOptions) -> None:
        self.root = options.root
        self.run_root = options.run_root
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.run_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StorageError(
                f"cannot create the store at {self.root}: {exc.strerror}",
                "use --root/--runroot to choose a writable place",
            ) from exc
        self.db = Database(self.root / "db.sqlite")
        self.db.ensure_schema("storage", STORAGE_SCHEMA)
        self.driver_name = self._choose_driver(options.driver)
        self.driver = load_driver(self.driver_name, self.root)
        self.layers = LayerStore(self.db, self.driver, self.root)
        self.images = ImageStore(self.db)
        self.containers = ContainerStore(self.db)
        removed = self.layers.remove_leftovers()
        for item in removed:
            log.warning("removed %s left by an interrupted process", item)

    @classmethod
    def open(cls, ctx: SystemContext) -> Store:
        return cls(store_options(ctx))

    def _choose_driver(self, wanted: str | None) -> str:
        row = self.db.read_one("SELECT value FROM meta WHERE key='driver'")
        if row is not None:
            recorded = str(row["value"])
            if wanted and wanted != recorded:
                raise ConfigError(
                    f"the store at {self.root} uses the {recorded} driver, not {wanted}",
                    "drop --storage-driver, or use another --root",
                )
            return recorded
        name = wanted or default_driver_name(self.root)
        with self.db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('driver', ?)", (name,))
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', '1')")
        row = self.db.read_one("SELECT value FROM meta WHERE key='driver'")
        assert row is not None
        return str(row["value"])

    def close(self) -> None:
        self.db.close()

    # --- images ------------------------------------------------------------
    def image_size(self, image: Image) -> int:
        if image.top_layer is None:
            return 0
        top = self.layers.get(image.top_layer)
        return top.uncompressed_size + sum(
            layer.uncompressed_size for layer in self.layers.chain(top.id)
        )

    def image_layers(self, image: Image) -> list[str]:
        """Layer IDs of an image, base first."""
        if image.top_layer is None:
            return []
        chain = [self.layers.get(image.top_layer), *self.layers.chain(image.top_layer)]
        return [layer.id for layer in reversed(chain)]

    def delete_image(self, image_id: str, force: bool = False) -> list[str]:
        """Remove an image and the layers only it used; return removed layer IDs.

        An image with containers is refused unless ``force``, which removes
        those containers' storage too (the runtime removes its records first).
        """
        image = self.images.get(image_id)
        users = self.containers.by_image(image_id)
        if users and not force:
            names = ", ".join(c.name or c.id[:12] for c in users)
            raise ImageInUse(
                f"image {image_id[:12]} is in use by container(s): {names}",
                "remove the containers first, or use --force",
            )
        for container in users:
            self.delete_container(container.id)
        self.images.delete(image.id)
        return self.collect_layers(image.top_layer)

    def layer_in_use(self, layer_id: str) -> bool:
        if self.images.by_top_layer(layer_id):
            return True
        if self.db.read_one("SELECT 1 FROM storage_containers WHERE layer_id=?", (layer_id,)):
            return True
        if self.layers.children(layer_id):
            return True
        return self.layers.being_built_on(layer_id)

    def collect_layers(self, start: str | None) -> list[str]:
        """Remove ``start`` and its ancestors as long as nothing else uses them."""
        removed = []
        current = start
        while current is not None and self.layers.exists(current):
            if self.layer_in_use(current):
                break
            parent = self.layers.get(current).parent
            self.layers.delete(current)
            removed.append(current)
            current = parent
        return removed

    # --- containers --------------------------------------------------------
    def create_container(
        self,
        name: str,
        image_id: str | None,
        container_id: str | None = None,
        metadata: dict[str, object] | None = None,
    ) -> StorageContainer:
        container_id = container_id or random_id()
        top = self.images.get(image_id).top_layer if image_id else None
        if self.containers.find(name) is not None:
            from skiff.errors import NameInUse

            raise NameInUse(
                f"the container name {name!r} is already in use",
                "remove that container or choose another name",
            )
        layer = self.layers.create_writable(top)
        try:
            return self.containers.create(
                container_id, name, image_id, layer.id, dict(metadata or {})
            )
        except BaseException:
            self.layers.delete(layer.id)
            raise

    def container_dir(self, container_id: str) -> Path:
        """Per-container files kept across reboots (the runtime's userdata)."""
        return self.root / "containers" / container_id / "userdata"

    def container_run_dir(self, container_id: str) -> Path:
        return self.run_root / "containers" / container_id

    def delete_container(self, container_id: str) -> None:
        container = self.containers.get(container_id)
        self.layers.unmount(container.layer_id, force=True)
        self.containers.delete(container.id)
        self.layers.delete(container.layer_id)
        for path in (self.root / "containers" / container.id, self.container_run_dir(container.id)):
            if path.exists():
                shutil.rmtree(path)

    def mount_container(self, container_id: str) -> Path:
        return self.layers.mount(self.containers.get(container_id).layer_id)

    def unmount_container(self, container_id: str, force: bool = False) -> int:
        return self.layers.unmount(self.containers.get(container_id).layer_id, force=force)

    def mount_image(self, image_id: str) -> Path:
        image = self.images.get(image_id)
        if image.top_layer is None:
            raise StorageError(f"image {image_id[:12]} has no layers to mount")
        return self.layers.mount(image.top_layer)

    def layer_tar(self, layer_id: str) -> ChunkReader | LayerTarReader:
        """The layer's changes as a tar stream.

        A layer unpacked from a tar gives back that exact tar (rebuilt from
        its tar-split record), so its diff ID still matches; a layer made by
        a container (no record) is diffed against its parent.
        """
        from skiff.storage.archive import diff, open_layer_tar

        layer = self.layers.get(layer_id)
        record = self.layers.tar_split_path(layer_id)
        content = self.driver.layer_dir(layer_id)
        if record.exists():
            return open_layer_tar(content, record)
        parent_dir = None
        if self.driver.whiteout_format == "vfs" and layer.parent is not None:
            parent_dir = self.driver.layer_dir(layer.parent)
        return ChunkReader(
            diff(content, whiteout_format=self.driver.whiteout_format, parent_dir=parent_dir)
        )

    def unmount_image(self, image_id: str, force: bool = False) -> int:
        image = self.images.get(image_id)
        if image.top_layer is None:
            return 0
        return self.layers.unmount(image.top_layer, force=force)
