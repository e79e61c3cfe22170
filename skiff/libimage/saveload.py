"""``save`` and ``load``: images between the store and archives or layout directories.

save (podman's formats):

    docker-archive  ``docker save`` tar (default); several images with ``-m``
    oci-archive     tar of an OCI layout, one image, named by its first name
    oci-dir         an OCI layout directory
    docker-dir      a ``dir:`` directory with a Docker v2s2 manifest

Without ``-m`` the first name is the image and every name given becomes
one of its tags in the archive (podman's rule: "additional names are
tags"); an image named by ID gets no tag. Layers leave the store
uncompressed (``--compress`` gzips them for the directory formats). The
output appears only when complete: archives are written beside the target
and renamed onto it, and a docker archive is never written over an
existing file.

load: an archive (docker or OCI, detected by content: ``manifest.json``
or ``index.json``) or a layout directory (``oci`` with index.json, ``dir``
with manifest.json). Every image is copied into the store under the names
the archive records — a docker archive's RepoTags as Docker normalizes
them, an OCI entry's ``org.opencontainers.image.ref.name`` as podman
normalizes local names — and is reported as podman prints it:
``Loaded image: NAME`` per name, ``Loaded image: sha256:ID`` without one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import ImageNotFound, UsageError
from skiff.image.copy import CopyOptions, copy_image
from skiff.libimage.names import find_local_image, local_name, storage_reference
from skiff.oci import mediatypes as mt

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.types import ImageReference
    from skiff.oci.reference import NamedReference
    from skiff.storage.images import Image
    from skiff.storage.store import Store

SAVE_FORMATS = ("docker-archive", "oci-archive", "oci-dir", "docker-dir")
ARCHIVE_FORMATS = ("docker-archive", "oci-archive")


@dataclass
class SaveOptions:
    format: str = "docker-archive"
    multi_image: bool = False
    """``-m``: every name is an image (docker-archive only), not a tag of the first."""
    compress: bool = False
    """``--compress``: gzip the layers of oci-dir/docker-dir output."""
    copy: CopyOptions = field(default_factory=CopyOptions)


@dataclass(frozen=True)
class SavedImage:
    image_id: str
    tags: tuple[str, ...]


@dataclass
class SaveReport:
    images: list[SavedImage] = field(default_factory=list)


@dataclass(frozen=True)
class _Selected:
    image: Image
    tags: tuple[NamedReference, ...]


def save_images(
    ctx: SystemContext, names: Sequence[str], output: Path, options: SaveOptions | None = None
) -> SaveReport:
    """Write the images ``names`` to ``output`` in ``options.format``."""
    from skiff.storage.store import Store

    options = options or SaveOptions()
    if options.format not in SAVE_FORMATS:
        raise UsageError(
            f"unsupported save format {options.format!r}", f"use one of {', '.join(SAVE_FORMATS)}"
        )
    if not names:
        raise UsageError("no image to save", "name at least one image")
    if options.multi_image and options.format != "docker-archive":
        raise UsageError("--multi-image-archive (-m) is only supported for --format docker-archive")
    store = Store.open(ctx)
    try:
        selected = _select(ctx, store, names, options.multi_image)
    finally:
        store.close()
    copy = options.copy
    if options.compress and options.format in ("oci-dir", "docker-dir"):
        copy = replace(copy, compress_format="gzip")
    if options.format == "docker-archive":
        _save_docker_archive(ctx, selected, output, copy)
    else:
        _save_one(ctx, selected[0], output, options.format, copy)
    return SaveReport([SavedImage(s.image.id, tuple(str(t) for t in s.tags)) for s in selected])


def _select(
    ctx: SystemContext, store: Store, names: Sequence[str], multi_image: bool
) -> list[_Selected]:
    if multi_image:
        out = []
        for text in names:
            image, named = find_local_image(ctx, store, text)
            out.append(_Selected(image, (named,) if named is not None else ()))
        return out
    image, named = find_local_image(ctx, store, names[0])
    tags: list[NamedReference] = [named] if named is not None else []
    for text in names[1:]:
        tag = local_name(text)
        if tag.digest is not None:
            raise UsageError(f"cannot tag the saved image {text}: a digest is not a tag")
        if tag not in tags:
            tags.append(tag)
    return [_Selected(image, tuple(tags))]


def _save_docker_archive(
    ctx: SystemContext, selected: list[_Selected], output: Path, copy: CopyOptions
) -> None:
    from skiff.image.transports.docker_archive.destination import DockerArchiveWriter

    with DockerArchiveWriter(str(output), ctx) as writer:
        for item in selected:
            tagged = tuple(t for t in item.tags if t.digest is None)
            dest = writer.new_reference(tagged)
            source = storage_reference(tagged[0] if tagged else None, item.image.id)
            copy_image(source, dest, copy, ctx, ctx)
        writer.commit()


def _save_one(
    ctx: SystemContext, item: _Selected, output: Path, kind: str, copy: CopyOptions
) -> None:
    from skiff.image import transports

    first = next((t for t in item.tags if t.digest is None), None)
    name = str(first) if first is not None else ""
    dest: ImageReference
    if kind == "oci-archive":
        dest = transports.get("oci-archive").parse_reference(_layout_ref(output, name))
    elif kind == "oci-dir":
        dest = transports.get("oci").parse_reference(_layout_ref(output, name))
        copy = replace(copy, manifest_format=copy.manifest_format or mt.OCI_MANIFEST)
    else:  # docker-dir
        dest = transports.get("dir").parse_reference(str(output))
        copy = replace(copy, manifest_format=mt.DOCKER_V2S2)
    copy_image(storage_reference(first, item.image.id), dest, copy, ctx, ctx)


def _layout_ref(output: Path, name: str) -> str:
    if ":" in str(output):
        raise UsageError(
            f"cannot write an OCI layout to {output}: the path contains ':'",
            "choose a path without ':'",
        )
    return f"{output}:{name}" if name else str(output)


# --- load ---------------------------------------------------------------------


@dataclass
class LoadOptions:
    copy: CopyOptions = field(default_factory=CopyOptions)


@dataclass(frozen=True)
class LoadedImage:
    image_id: str
    names: tuple[str, ...]

    @property
    def shown(self) -> list[str]:
        """What podman prints after ``Loaded image: ``."""
        return list(self.names) if self.names else [f"sha256:{self.image_id}"]


@dataclass
class LoadReport:
    images: list[LoadedImage] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return [f"Loaded image: {name}" for image in self.images for name in image.shown]


@dataclass(frozen=True)
class _ToLoad:
    source: ImageReference
    names: tuple[NamedReference, ...]


def load_images(ctx: SystemContext, path: Path, options: LoadOptions | None = None) -> LoadReport:
    """Load every image of the archive or layout at ``path`` into the store."""
    options = options or LoadOptions()
    if path.is_dir():
        return _load_all(ctx, _layout_directory(path), options)
    if not path.exists():
        raise ImageNotFound(f"{path}: no such file", "give the archive with -i FILE")
    from skiff.image.transports.docker_archive.source import DockerArchiveReader
    from skiff.image.transports.tarstream import TarIndex

    label = f"archive {path}"
    index = TarIndex.open(path, label, tmp_dir=ctx.tmp_dir, links=True)
    try:
        kind = "docker" if index.lookup("manifest.json") is not None else None
        if kind is None and index.lookup("index.json") is not None:
            kind = "oci"
    finally:
        index.close()
    if kind is None:
        raise ImageNotFound(
            f"{path} is neither a docker archive (manifest.json) nor an OCI archive (index.json)",
            "load archives written by 'skiff save', 'podman save' or 'docker save'",
        )
    if kind == "oci":
        return _load_all(ctx, _oci_archive(ctx, path), options)
    with DockerArchiveReader(str(path), ctx) as reader:
        items = [
            _ToLoad(refs[0], tuple(r.tag for r in refs if r.tag is not None))
            for refs in reader.list()
        ]
        return _load_all(ctx, items, options)


def _layout_directory(path: Path) -> list[_ToLoad]:
    from skiff.image import transports

    if (path / "index.json").is_file():
        from skiff.image.transports.oci_layout.layout import DirectoryLayout

        layout = DirectoryLayout(path)
        try:
            return _oci_entries(layout.read_index(), str(path), "oci", layout.label)
        finally:
            layout.close()
    if (path / "manifest.json").is_file():
        return [_ToLoad(transports.get("dir").parse_reference(str(path)), ())]
    raise ImageNotFound(
        f"{path} is neither an OCI layout (index.json) nor a dir: image (manifest.json)",
        "give an archive or a directory written by 'skiff save'",
    )


def _oci_archive(ctx: SystemContext, path: Path) -> list[_ToLoad]:
    from skiff.image.transports.oci_archive.source import TarLayoutReader
    from skiff.image.transports.tarstream import TarIndex

    label = f"OCI archive {path}"
    reader = TarLayoutReader(TarIndex.open(path, label, tmp_dir=ctx.tmp_dir, links=False))
    try:
        return _oci_entries(reader.read_index(), str(path), "oci-archive", label)
    finally:
        reader.close()


def _oci_entries(raw_index: bytes, path: str, transport: str, label: str) -> list[_ToLoad]:
    from skiff.image import transports
    from skiff.image.transports.oci_layout.layout import (
        index_descriptors,
        parse_index_json,
        ref_name,
    )

    if ":" in path:
        raise UsageError(f"cannot load {path}: the path contains ':'", "rename or move it")
    entries = index_descriptors(parse_index_json(raw_index, label), label)
    if not entries:
        raise ImageNotFound(f"{label} holds no images (index.json is empty)")
    out = []
    for position, entry in enumerate(entries):
        ref = transports.get(transport).parse_reference(f"{path}:@{position}")
        name = ref_name(entry)
        out.append(_ToLoad(ref, (local_name(name),) if name else ()))
    return out


def _load_all(ctx: SystemContext, items: list[_ToLoad], options: LoadOptions) -> LoadReport:
    from skiff.storage.store import Store

    report = LoadReport()
    for item in items:
        names = tuple(n for n in item.names if n.digest is None)
        first = names[0] if names else None
        result = copy_image(item.source, storage_reference(first), options.copy, ctx, ctx)
        if result.config_digest is None:
            raise ImageNotFound(f"loading {item.source} stored no image config")
        image_id = result.config_digest.hex
        if len(names) > 1:
            store = Store.open(ctx)
            try:
                store.images.add_names(image_id, [str(n) for n in names[1:]])
            finally:
                store.close()
        report.images.append(LoadedImage(image_id, tuple(str(n) for n in names)))
    return report
