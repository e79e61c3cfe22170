"""Finding where a store's metadata and contents disagree, and the safe fixes.

``scan(store)`` reads the database and the driver's directories and returns
``Finding``s; it changes nothing. The fixes below are the primitives a
repair uses; which findings to fix, and whether images or containers may
go with them, is the caller's policy (``skiff.libimage.check``).

What is looked at (the ``KIND_*`` constants):

- leftovers of interrupted processes: staging directories and spool files
  whose process is gone, ``*.creating``/``*.removing``/``*.tmp`` names in
  the driver's directory, incomplete layer rows (opening the store
  already removes the incomplete rows and staging rows of dead processes;
  what is found here escaped that);
- layers: rows without content, content without rows, rows whose parent
  is missing, content that no longer matches its diff ID (rebuilt from
  the tar-split record and hashed; skipped with ``quick``), overlay link
  names that are missing or point nowhere, tar-split records of no layer;
- mounts: counted mounts that are not mounted (a crash, or an unmount
  behind skiff's back) and overlay mounts nobody counted;
- images whose layers are missing, containers whose layer is missing;
- names, digests and data rows of images that do not exist;
- with ``max_age``, layers nothing uses that are older than that (the
  remains of a cancelled pull).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import StorageError
from skiff.storage.db import boot_id, process_alive

if TYPE_CHECKING:
    from skiff.storage.layers import Layer
    from skiff.storage.store import Store

KIND_STAGING = "staging-leftover"
KIND_TEMP = "temporary-leftover"
KIND_INCOMPLETE = "incomplete-layer"
KIND_NO_CONTENT = "layer-without-content"
KIND_DAMAGED = "layer-content-damaged"
KIND_NO_PARENT = "layer-parent-missing"
KIND_ORPHAN_CONTENT = "content-without-layer"
KIND_LINK_MISSING = "layer-link-missing"
KIND_LINK_DANGLING = "link-dangling"
KIND_TAR_SPLIT = "tar-split-dangling"
KIND_STALE_MOUNT = "mount-count-stale"
KIND_UNCOUNTED_MOUNT = "mount-not-counted"
KIND_IMAGE_LAYERS = "image-layers-missing"
KIND_CONTAINER_LAYER = "container-layer-missing"
KIND_NAME = "name-dangling"
KIND_IMAGE_DATA = "image-rows-dangling"
KIND_UNUSED_LAYER = "layer-unused"

_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
_PID_PREFIX = re.compile(r"\A(?:spool-)?(\d+)-")
_TEMP_SUFFIXES = (".creating", ".removing", ".tmp")
SETTLE_SECONDS = 60.0
"""Unowned temporary names younger than this may be a live process's (a rename
about to happen) and are left alone."""


@dataclass(frozen=True)
class Finding:
    kind: str
    subject: str
    """The layer, image or container ID, the path, or the name concerned."""
    detail: str
    owner: str = ""
    """For names and rows: the image ID they point to."""


@dataclass(frozen=True)
class ScanOptions:
    quick: bool = False
    """Skip rebuilding layer tars to compare their digests (the slow part)."""
    max_age: float | None = None
    """Report layers nothing uses that are older than this many seconds."""


def scan(store: Store, options: ScanOptions | None = None) -> list[Finding]:
    opts = options or ScanOptions()
    found: list[Finding] = []
    found += _staging(store)
    found += _incomplete(store)
    found += _driver_temporaries(store)
    found += _layers(store, opts)
    found += _orphan_content(store)
    found += _links(store)
    found += _tar_splits(store)
    found += _mounts(store)
    found += _images(store)
    found += _containers(store)
    found += _dangling_rows(store)
    if opts.max_age is not None:
        found += _unused_layers(store, opts.max_age)
    return found


# --- leftovers -----------------------------------------------------------------------------


def _staging(store: Store) -> list[Finding]:
    out: list[Finding] = []
    me = boot_id()
    recorded = {}
    for row in store.db.read("SELECT path, pid, boot FROM staging"):
        recorded[row["path"]] = row
        if row["boot"] != me or not process_alive(row["pid"]):
            out.append(
                Finding(KIND_STAGING, row["path"], f"staged by process {row['pid']}, which is gone")
            )
    root = store.root / "staging"
    for entry in _listdir(root):
        path = str(root / entry)
        if path in recorded:
            continue
        match = _PID_PREFIX.match(entry)
        pid = int(match.group(1)) if match else None
        if pid is not None and process_alive(pid):
            continue
        if pid is None and _young(root / entry):
            continue
        owner = f"process {pid}, which is gone" if pid is not None else "no process"
        out.append(Finding(KIND_STAGING, path, f"not recorded, left by {owner}"))
    return out


def _incomplete(store: Store) -> list[Finding]:
    me = boot_id()
    out: list[Finding] = []
    for row in store.db.read("SELECT id, owner_pid, owner_boot FROM layers WHERE incomplete=1"):
        if row["owner_boot"] == me and process_alive(row["owner_pid"]):
            continue
        out.append(
            Finding(KIND_INCOMPLETE, row["id"], f"left incomplete by process {row['owner_pid']}")
        )
    return out


def _in_progress_ids(store: Store) -> set[str]:
    me = boot_id()
    return {
        row["id"]
        for row in store.db.read("SELECT id, owner_pid, owner_boot FROM layers WHERE incomplete=1")
        if row["owner_boot"] == me and process_alive(row["owner_pid"])
    }


def _content_home(store: Store) -> Path:
    """The directory holding one entry per layer (overlay: home; vfs: home/dir)."""
    home = store.driver.home
    return home / "dir" if store.driver.name == "vfs" else home


def _driver_temporaries(store: Store) -> list[Finding]:
    busy = _in_progress_ids(store)
    out: list[Finding] = []
    homes = [_content_home(store)]
    if store.driver.name == "overlay":
        homes.append(store.driver.home / "l")
    homes.append(store.root / "layer-data")
    for home in homes:
        for entry in _listdir(home):
            if not (entry.endswith(_TEMP_SUFFIXES) or entry.startswith(".")):
                continue
            stem = entry.lstrip(".").split(".", 1)[0]
            pid = _tmp_pid(entry)
            if stem in busy or (process_alive(pid) if pid else _young(home / entry)):
                continue
            out.append(Finding(KIND_TEMP, str(home / entry), "an unfinished create or remove"))
    return out


def _young(path: Path) -> bool:
    try:
        return time.time() - os.lstat(path).st_mtime < SETTLE_SECONDS
    except FileNotFoundError:
        return True


def _tmp_pid(entry: str) -> int | None:
    """The writer's pid in a ``.NAME.PID.tmp`` name (tar-split records), else None."""
    parts = entry.split(".")
    if len(parts) >= 3 and parts[-1] == "tmp" and parts[-2].isdigit():
        return int(parts[-2])
    return None


# --- layers ------------------------------------------------------------------------------


def _layers(store: Store, opts: ScanOptions) -> list[Finding]:
    out: list[Finding] = []
    layers = {layer.id: layer for layer in store.layers.all()}
    for layer in layers.values():
        if layer.parent is not None and layer.parent not in layers:
            out.append(
                Finding(KIND_NO_PARENT, layer.id, f"its parent layer {layer.parent} is missing")
            )
        content = store.driver.layer_dir(layer.id)
        if not content.is_dir():
            out.append(Finding(KIND_NO_CONTENT, layer.id, f"{content} does not exist"))
            continue
        if not opts.quick:
            problem = verify_layer(store, layer)
            if problem:
                out.append(Finding(KIND_DAMAGED, layer.id, problem))
    return out


def verify_layer(store: Store, layer: Layer) -> str:
    """Rebuild the layer's tar from its tar-split record and compare its digest ("" if fine).

    Layers without a record (made from a container's changes) or without a
    diff ID have nothing to compare against and pass.
    """
    from skiff.errors import StoreCorrupt
    from skiff.storage.archive import iter_layer_tar

    record = store.layers.tar_split_path(layer.id)
    if layer.diff_id is None or not record.exists():
        return ""
    digest = hashlib.sha256()
    try:
        for chunk in iter_layer_tar(store.driver.layer_dir(layer.id), record):
            digest.update(chunk)
    except (StoreCorrupt, StorageError) as exc:
        return exc.message
    got = f"sha256:{digest.hexdigest()}"
    if layer.diff_id.algorithm != "sha256" or got != str(layer.diff_id):
        return f"its files give {got}, not its diff ID {layer.diff_id}"
    return ""


def _orphan_content(store: Store) -> list[Finding]:
    known = {row["id"] for row in store.db.read("SELECT id FROM layers")}
    home = _content_home(store)
    return [
        Finding(KIND_ORPHAN_CONTENT, entry, f"{home / entry} belongs to no layer")
        for entry in _listdir(home)
        if _HEX64.match(entry) and entry not in known and (home / entry).is_dir()
    ]


def _links(store: Store) -> list[Finding]:
    """overlay: every layer's short link exists and points at its diff; no link points nowhere."""
    if store.driver.name != "overlay":
        return []
    home = store.driver.home
    out: list[Finding] = []
    for layer in store.layers.all():
        if not layer.link or not (home / layer.id).is_dir():
            continue
        link = home / "l" / layer.link
        link_file = home / layer.id / "link"
        try:
            target = os.readlink(link)
        except OSError:
            target = None
        try:
            recorded = link_file.read_text().strip()
        except OSError:
            recorded = None
        if target != f"../{layer.id}/diff" or recorded != layer.link:
            out.append(
                Finding(KIND_LINK_MISSING, layer.id, f"its short link l/{layer.link} is missing")
            )
    for entry in _listdir(home / "l"):
        path = home / "l" / entry
        if entry.endswith(".tmp"):
            continue
        if path.is_symlink() and not path.exists():
            out.append(Finding(KIND_LINK_DANGLING, str(path), "points to no layer"))
    return out


def _tar_splits(store: Store) -> list[Finding]:
    known = {row["id"] for row in store.db.read("SELECT id FROM layers")}
    home = store.root / "layer-data"
    out = []
    for entry in _listdir(home):
        if not entry.endswith(".tar-split") or entry.startswith("."):
            continue
        if entry.removesuffix(".tar-split") not in known:
            out.append(Finding(KIND_TAR_SPLIT, str(home / entry), "belongs to no layer"))
    return out


# --- mounts --------------------------------------------------------------------------------


def _mounts(store: Store) -> list[Finding]:
    if store.driver.name != "overlay":
        return []  # vfs "mounts" are plain directories: nothing to compare
    from skiff.storage.mount import mount_points

    points = mount_points()
    counted: set[str] = set()
    out: list[Finding] = []
    for layer_id, point, count in store.layers.mounted():
        counted.add(str(point))
        if str(point) not in points:
            out.append(
                Finding(KIND_STALE_MOUNT, layer_id, f"counted {count} mount(s) but not mounted")
            )
    home = str(store.driver.home) + "/"
    for point in sorted(points):
        if point.startswith(home) and point.endswith("/merged") and point not in counted:
            out.append(Finding(KIND_UNCOUNTED_MOUNT, point, "mounted, but no mount is counted"))
    return out


# --- images and containers ------------------------------------------------------------------


def _images(store: Store) -> list[Finding]:
    layers = {layer.id: layer for layer in store.layers.all()}
    out = []
    for image in store.images.all():
        missing = _missing_in_chain(layers, image.top_layer)
        if missing is not None:
            out.append(Finding(KIND_IMAGE_LAYERS, image.id, f"its layer {missing} is missing"))
    return out


def _containers(store: Store) -> list[Finding]:
    layers = {layer.id: layer for layer in store.layers.all()}
    out = []
    for container in store.containers.all():
        missing = _missing_in_chain(layers, container.layer_id)
        if missing is not None:
            out.append(
                Finding(
                    KIND_CONTAINER_LAYER,
                    container.id,
                    f"container {container.name or container.id[:12]}: its layer {missing} is missing",
                )
            )
    return out


def _missing_in_chain(layers: dict[str, Layer], top: str | None) -> str | None:
    current = top
    seen: set[str] = set()
    while current is not None and current not in seen:
        layer = layers.get(current)
        if layer is None:
            return current
        seen.add(current)
        current = layer.parent
    return None


def _dangling_rows(store: Store) -> list[Finding]:
    out = [
        Finding(
            KIND_NAME,
            row["name"],
            f"names image {row['image_id']}, which does not exist",
            row["image_id"],
        )
        for row in store.db.read(
            "SELECT name, image_id FROM image_names WHERE image_id NOT IN (SELECT id FROM images)"
        )
    ]
    orphans = store.db.read(
        "SELECT image_id FROM image_digests WHERE image_id NOT IN (SELECT id FROM images) "
        "UNION SELECT image_id FROM image_data WHERE image_id NOT IN (SELECT id FROM images)"
    )
    out += [
        Finding(
            KIND_IMAGE_DATA,
            row["image_id"],
            "digest or data rows of an image that does not exist",
            row["image_id"],
        )
        for row in orphans
    ]
    return out


def _unused_layers(store: Store, max_age: float) -> list[Finding]:
    cutoff = time.time() - max_age
    return [
        Finding(KIND_UNUSED_LAYER, layer.id, "used by no image or container, and old")
        for layer in store.layers.all()
        if layer.created < cutoff and not store.layer_in_use(layer.id)
    ]


# --- fixes ---------------------------------------------------------------------------------


def remove_path(path: str | Path) -> None:
    """Remove a leftover file or tree (unmounting an overlay left mounted inside it)."""
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        from skiff.storage.mount import is_mounted, unmount

        merged = target / "merged"
        if is_mounted(merged):
            unmount(merged, detach=True)
        shutil.rmtree(target)
    else:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()


def forget_staging(store: Store, path: str) -> None:
    """Remove a staging directory (or stray file) and its row, if it has one."""
    from skiff.storage.layers import Staging

    target = Path(path)
    if target.exists() and not target.is_dir():
        target.unlink()
    store.layers.discard_staging(Staging(target, target, None))


def remove_incomplete_layer(store: Store, layer_id: str) -> None:
    """What opening the store does for a dead owner's layer, for one that escaped it."""
    store.driver.remove(layer_id)
    store.layers.tar_split_path(layer_id).unlink(missing_ok=True)
    with store.db.write() as conn:
        conn.execute("DELETE FROM layers WHERE id=? AND incomplete=1", (layer_id,))
        conn.execute("DELETE FROM layer_blobs WHERE layer_id=?", (layer_id,))


def remove_orphan_content(store: Store, layer_id: str) -> None:
    """Remove a layer directory no row refers to (overlay: with its short link)."""
    with store.db.write() as conn:
        if conn.execute("SELECT 1 FROM layers WHERE id=?", (layer_id,)).fetchone():
            raise StorageError(f"layer {layer_id} has a row now; not removing its content")
        store.driver.remove(layer_id)


def restore_link(store: Store, layer: Layer) -> None:
    """Re-create an overlay layer's ``link`` file and ``l/LINK`` symlink from its row."""
    home = store.driver.home
    (home / layer.id / "link").write_text(layer.link)
    link = home / "l" / layer.link
    tmp = link.with_name(layer.link + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(f"../{layer.id}/diff", tmp)
    os.rename(tmp, link)


def reset_mount_count(store: Store, layer_id: str) -> None:
    store.layers.unmount(layer_id, force=True)


def unmount_uncounted(path: str) -> None:
    from skiff.storage.mount import unmount

    unmount(path)


def remove_dangling_name(store: Store, name: str, image_id: str) -> None:
    store.images.remove_name(image_id, name)


def remove_image_rows(store: Store, image_id: str) -> None:
    """Digest, data and name rows of an image that does not exist."""
    if store.images.exists(image_id):
        raise StorageError(f"image {image_id} exists now; not removing its rows")
    store.images.delete(image_id)


def remove_layer_tree(store: Store, layer_id: str) -> list[str]:
    """Remove a layer and every layer above it (children first); returns removed IDs."""
    removed: list[str] = []
    for child in store.layers.children(layer_id):
        removed += remove_layer_tree(store, child)
    if store.db.read_one("SELECT 1 FROM layers WHERE id=?", (layer_id,)) is not None:
        with store.db.write() as conn:
            conn.execute(
                "UPDATE layers SET incomplete=1, owner_pid=?, owner_boot=? WHERE id=?",
                (os.getpid(), boot_id(), layer_id),
            )
        remove_incomplete_layer(store, layer_id)
        removed.append(layer_id)
    return removed


def descendants(store: Store, layer_id: str) -> Iterator[str]:
    """Every layer built on ``layer_id`` (not itself)."""
    for child in store.layers.children(layer_id):
        yield child
        yield from descendants(store, child)


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
