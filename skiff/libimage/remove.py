"""``skiff rmi`` and ``skiff image prune``: removing local images as podman does.

rmi, per name given:

- a *name* of an image that has other names only loses that name
  ("Untagged: NAME");
- otherwise the image goes: every name is untagged, the image record is
  deleted with the layers no other image or container uses ("Deleted:
  ID", unless other images are built on it: podman reports those as
  untagged only), and a parent image left without names or other children
  goes with it (a build's intermediate image);
- an image used by containers is refused (podman's "image is in use by a
  container") unless ``force``, which first removes those containers
  through ``RemoveOptions.remove_container`` — the runtime's removal, so
  that its records go too; without a hook, only their storage is removed;
- an ID naming an image with several names is refused unless ``force``
  (the user may not know how much they are deleting).

Failures do not stop the other names; the report carries them, and
``RemoveReport.failure()`` folds them into one error with podman's exit
code (1: an image was not known, 2: an image is in use, 125: other).

prune removes dangling images (no names, no children, no containers) —
with ``all``, every image no container uses — repeatedly, since removing
one can leave its parent dangling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skiff.errors import ImageInUse, ImageUnknown, SkiffError, StorageError, UsageError
from skiff.libimage.layertree import LayerTree, metadata_size

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.storage.images import Image
    from skiff.storage.store import Store

EXIT_UNKNOWN = 1
EXIT_IN_USE = 2

RemoveContainer = Callable[[str], None]
"""Removes one container (by ID) that uses an image being force-removed."""


class ImagesNotRemoved(StorageError):
    """One or more images of an rmi could not be removed (exit code as podman's)."""

    def __init__(self, message: str, hint: str | None, exit_code: int) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RemoveOptions:
    force: bool = False
    """Remove images used by containers (and those containers), and images
    named by an ID that have several names."""
    all: bool = False
    """Remove every image (the names given are then ignored)."""
    ignore: bool = False
    """Names that match no image are not an error."""
    remove_container: RemoveContainer | None = None


@dataclass
class RemoveReport:
    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    removed_containers: list[str] = field(default_factory=list)
    reclaimed: int = 0
    """Bytes of layers and metadata removed."""
    errors: list[SkiffError] = field(default_factory=list)

    def failure(self) -> SkiffError | None:
        """The errors as one, with podman's exit code; None when all went well."""
        if not self.errors:
            return None
        if any(isinstance(e, ImageInUse) for e in self.errors):
            code = EXIT_IN_USE
        elif all(isinstance(e, ImageUnknown) for e in self.errors):
            code = EXIT_UNKNOWN
        else:
            code = 125
        if len(self.errors) == 1:
            only = self.errors[0]
            return ImagesNotRemoved(only.message, only.hint, code)
        text = "; ".join(e.message for e in self.errors)
        return ImagesNotRemoved(f"{len(self.errors)} errors occurred: {text}", None, code)


@dataclass(frozen=True)
class PruneOptions:
    all: bool = False
    """Remove every image no container uses, not only dangling ones."""
    filters: tuple[str, ...] = ()
    """Extra ``--filter`` conditions (label=, until=, ...), as for ``images``."""


@dataclass
class PruneReport:
    removed: list[str] = field(default_factory=list)
    reclaimed: int = 0


# --- rmi ---------------------------------------------------------------------------------


def remove_images(ctx: SystemContext, names: list[str], options: RemoveOptions) -> RemoveReport:
    from skiff.storage.store import Store

    if not names and not options.all:
        raise UsageError("image name or ID must be specified", "or use --all")
    if names and options.all:
        raise UsageError("when using the --all switch, you may not pass any images names or IDs")
    store = Store.open(ctx)
    try:
        report = RemoveReport()
        if options.all:
            tree = LayerTree(store)
            for image in tree.images:  # the store's order, as podman goes
                if not store.images.exists(image.id):
                    continue  # went with an image removed before it
                try:
                    _remove_whole(store, store.images.get(image.id), options, report)
                except (ImageInUse, StorageError) as exc:
                    report.errors.append(exc)
            return report
        for text in names:
            try:
                _remove_one(ctx, store, text, options, report)
            except ImageUnknown as exc:
                if not (options.ignore or options.force):
                    report.errors.append(exc)
            except StorageError as exc:
                report.errors.append(exc)
        return report
    finally:
        store.close()


def _remove_one(
    ctx: SystemContext, store: Store, text: str, options: RemoveOptions, report: RemoveReport
) -> None:
    from skiff.libimage.names import find_local_image

    image, matched = find_local_image(ctx, store, text)
    if matched is not None and matched.digest is None and len(image.names) > 1:
        name = str(matched)
        if store.images.remove_name(image.id, name):
            from skiff.libimage.layertree import record_names_history

            record_names_history(store, image.id, [name])
            report.untagged.append(name)
        return
    if matched is None and len(image.names) > 1 and not options.force:
        by = "digest" if "@" in text else "ID"
        raise StorageError(
            f'unable to delete image "{image.id}" by {by} with more than one tag '
            f"([{' '.join(image.names)}]): please force removal",
            "remove it by name, or use --force",
        )
    _remove_whole(store, image, options, report)


def _remove_whole(store: Store, image: Image, options: RemoveOptions, report: RemoveReport) -> None:
    """Untag and delete ``image``, then its parent if that is left dangling."""
    users = store.containers.by_image(image.id)
    if users and not options.force:
        raise ImageInUse(
            f"image used by {users[0].id}: image is in use by a container",
            "remove the container first, or use --force to remove both",
        )
    tree = LayerTree(store)
    parent = tree.parent(image)
    for container in users:
        if options.remove_container is not None:
            options.remove_container(container.id)
        elif store.containers.find(container.id) is not None:
            store.delete_container(container.id)
        report.removed_containers.append(container.id)
    report.reclaimed += _delete(store, tree, image, report)
    if parent is not None:
        _remove_dangling_parent(store, parent.id, report)


def _delete(store: Store, tree: LayerTree, image: Image, report: RemoveReport) -> int:
    """Untag and delete one image record (and the layers only it used).

    An image that other images are built on is deleted without a
    "Deleted:" line, as podman does: to the user it was only untagged
    (its layers stay, under its children).
    """
    sizes = {layer.id: layer.uncompressed_size for layer in tree.layer_chain(image.top_layer)}
    freed = metadata_size(store, image)
    for name in image.names:
        report.untagged.append(name)
    has_children = bool(LayerTree(store).children(image))
    removed_layers = store.delete_image(image.id, force=True)
    if not has_children:
        report.deleted.append(image.id)
    return freed + sum(sizes.get(layer_id, 0) for layer_id in removed_layers)


def _remove_dangling_parent(store: Store, image_id: str, report: RemoveReport) -> None:
    """Remove an unnamed parent nothing else needs (podman removes a build's intermediates)."""
    while store.images.exists(image_id):
        image = store.images.get(image_id)
        if image.names or store.containers.by_image(image.id):
            return
        tree = LayerTree(store)
        if tree.children(image):
            return
        parent = tree.parent(image)
        report.reclaimed += _delete(store, tree, image, report)
        if parent is None:
            return
        image_id = parent.id


# --- prune -------------------------------------------------------------------------------


def prune_images(ctx: SystemContext, options: PruneOptions) -> PruneReport:
    from skiff.libimage.listing import compile_filters
    from skiff.storage.store import Store

    store = Store.open(ctx)
    try:
        report = PruneReport()
        while True:
            tree = LayerTree(store)
            checks = compile_filters(ctx, store, tree, options.filters)
            victims = [
                image
                for image in tree.images
                if not store.containers.by_image(image.id)
                and (options.all or tree.is_dangling(image))
                and all(check(image) for check in checks)
            ]
            if not victims:
                return report
            scratch = RemoveReport()
            for image in victims:
                if store.images.exists(image.id):
                    report.reclaimed += _delete(store, tree, store.images.get(image.id), scratch)
                    report.removed.append(image.id)
    finally:
        store.close()
