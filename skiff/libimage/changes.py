"""``skiff diff`` (what a container or image layer changed) and ``skiff export``.

diff of one container: its read-write layer against its image; of one
image: its top layer against its parent layers; of two objects A and B:
A's whole tree against B's (both mounted for the comparison). As podman
does, the paths the runtime creates or bind-mounts over a rootfs
(``/dev``, ``/proc``, ``/sys``, ``/etc/hosts``, ``/etc/resolv.conf``,
``/run/.containerenv``, ...) are left out of every diff, images' too:
they are the runtime's, not the user's. Changes come in tree order
(podman's order is random).

export writes a container's whole file system (its mounted tree) as one
tar: to a temporary file beside the output, synced and renamed into place,
so a failed export never leaves a partial file under the requested name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from skiff.errors import ContainerUnknown, ImageUnknown, StorageError

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.storage.archive import Change
    from skiff.storage.store import Store

CONTAINER_INIT_PATHS = frozenset(
    {
        "/dev",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/mtab",
        "/etc/resolv.conf",
        "/proc",
        "/run",
        "/run/.containerenv",
        "/run/notify",
        "/run/secrets",
        "/sys",
    }
)
"""Paths a container's runtime creates or mounts over (podman leaves them out of every diff)."""

KINDS = ("all", "container", "image")


@dataclass(frozen=True)
class DiffOptions:
    kind: str = "all"
    """Which objects names may be: "container", "image", or "all" (containers first)."""


@dataclass
class DiffReport:
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class ExportOptions:
    pass


@dataclass
class ExportReport:
    container_id: str
    size: int
    """Bytes of tar written."""


@dataclass(frozen=True)
class _Target:
    """A container or image resolved from a name: its top layer."""

    kind: str
    id: str
    layer_id: str | None


def diff(
    ctx: SystemContext, first: str, second: str | None = None, options: DiffOptions | None = None
) -> DiffReport:
    from skiff.storage.store import Store

    opts = options or DiffOptions()
    store = Store.open(ctx)
    try:
        new = _resolve(ctx, store, first, opts.kind)
        if second is None:
            changes = _layer_changes(store, new.layer_id)
        else:
            old = _resolve(ctx, store, second, opts.kind)
            changes = _tree_changes(store, new, old)
        changes = [c for c in changes if c.path not in CONTAINER_INIT_PATHS]
        return DiffReport(changes)
    finally:
        store.close()


def _resolve(ctx: SystemContext, store: Store, name: str, kind: str) -> _Target:
    if kind in ("all", "container"):
        container = store.containers.find(name)
        if container is not None:
            return _Target("container", container.id, container.layer_id)
        if kind == "container":
            raise ContainerUnknown(
                f"no container with name or ID {name!r} found", "list them with 'skiff ps -a'"
            )
    from skiff.libimage.names import find_local_image

    try:
        image, _ = find_local_image(ctx, store, name)
    except ImageUnknown as exc:
        if kind == "image":
            raise
        raise ImageUnknown(
            f"{name} not found: no container or image by that name or ID",
            "list them with 'skiff ps -a' and 'skiff images'",
        ) from exc
    return _Target("image", image.id, image.top_layer)


def _layer_changes(store: Store, layer_id: str | None) -> list[Change]:
    """What one layer changed against the layers below it."""
    from skiff.storage.archive import changes

    if layer_id is None:
        return []
    layer = store.layers.get(layer_id)
    driver = store.driver
    content = driver.layer_dir(layer_id)
    if driver.whiteout_format == "overlay":
        lowers = [driver.layer_dir(p.id) for p in store.layers.chain(layer_id)]
        return changes(content, whiteout_format="overlay", lower_dirs=lowers)
    parent = driver.layer_dir(layer.parent) if layer.parent is not None else None
    return changes(content, whiteout_format="vfs", parent_dir=parent)


def _tree_changes(store: Store, new: _Target, old: _Target) -> list[Change]:
    """``new``'s whole tree against ``old``'s."""
    from skiff.storage.archive import changes

    with _mounted(store, new) as new_root, _mounted(store, old) as old_root:
        if new_root is None:
            return []
        return changes(new_root, whiteout_format="vfs", parent_dir=old_root)


@contextlib.contextmanager
def _mounted(store: Store, target: _Target) -> Iterator[Path | None]:
    """The target's merged tree for the duration of the block (None: no layers)."""
    if target.layer_id is None:
        yield None
        return
    if target.kind == "container":
        path = store.mount_container(target.id)
        try:
            yield path
        finally:
            store.unmount_container(target.id)
        return
    path = store.mount_image(target.id)
    try:
        yield path
    finally:
        store.unmount_image(target.id)


# --- export --------------------------------------------------------------------------------


def export_container(
    ctx: SystemContext,
    name: str,
    output: Path | None = None,
    stream: IO[bytes] | None = None,
    options: ExportOptions | None = None,
) -> ExportReport:
    """Write container ``name``'s file system as a tar to ``output`` (a file) or ``stream``."""
    from skiff.storage.archive import tar_directory
    from skiff.storage.store import Store

    if (output is None) == (stream is None):
        raise ValueError("export_container needs exactly one of output and stream")
    store = Store.open(ctx)
    try:
        container = store.containers.get(name)
        target = _Target("container", container.id, container.layer_id)
        with _mounted(store, target) as root:
            assert root is not None
            chunks = tar_directory(root)
            if stream is not None:
                size = _write_chunks(chunks, stream)
            else:
                assert output is not None
                size = _write_file_atomically(chunks, output)
        return ExportReport(container.id, size)
    finally:
        store.close()


def _write_chunks(chunks: Iterator[bytes], stream: IO[bytes]) -> int:
    total = 0
    for chunk in chunks:
        stream.write(chunk)
        total += len(chunk)
    stream.flush()
    return total


def _write_file_atomically(chunks: Iterator[bytes], output: Path) -> int:
    output = output.absolute()
    tmp = output.with_name(f".{output.name}.skiff-{os.getpid()}.tmp")
    try:
        with open(tmp, "xb") as f:
            size = _write_chunks(chunks, f)
            os.fsync(f.fileno())
        tmp.replace(output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(
            f"cannot write {output}: {exc.strerror or exc}",
            "check that the directory exists and is writable, and that there is space",
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size
