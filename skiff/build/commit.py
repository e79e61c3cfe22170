"""``builder commit``: a working container becomes an image in the store.

What is written, as buildah writes it for its local store:

- one new layer: the changes of the container's read-write layer (the
  store's diff of it: overlay's upper directory, or vfs's tree compared
  with its parent), applied into a new store layer on top of the base
  image's layers, its ID the chain ID. Nothing is compressed: the manifest
  lists the layer uncompressed with its diff ID as digest, and the store
  keeps the tar's framing (tar-split), so that a later push or save
  produces exactly the tar whose digest the config names. A commit with no
  changes still adds a layer (the empty tar), as buildah does, unless
  ``empty_layer`` asks for none (the executor's config-only steps).
- ``squash``: a single layer holding the whole file system (base included);
  every history entry but the last is then an empty layer.
- the config: the working container's (``builder config``), with
  ``created``, ``rootfs.diff_ids`` and ``history`` (the base's entries,
  the entries the executor added, and one for this commit: ``created_by``
  from ``config --created-by`` or ``/bin/sh``, ``comment`` "FROM BASE").
  OCI format drops Healthcheck, Shell, OnBuild, Hostname, Domainname and
  the comment (with a warning each, as buildah); Docker format writes the
  ``container_config`` copy and ``parent`` as buildah does.
- the manifest (OCI or Docker schema 2) with the working container's
  annotations and, for OCI, ``org.opencontainers.image.base.digest/name``.

``timestamp`` makes a commit reproducible: every mtime in the new layer and
every ``created`` time the commit writes are set to it, and the Docker
format's ``container`` (a random ID) is left out, so the same container
contents and config give the same image ID and manifest digest.

The image goes into the store through the Store API directly (the same
staging → commit path as a pull's layers, and an ordinary image record), so
push, save, run and rmi treat it like any pulled image. A name with a
transport (``oci:DIR:TAG``, ``docker://…``) commits an unnamed image and
then copies it there, as buildah does.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.build.builder import Builder, get_builder, remove_builder
from skiff.errors import BuildError, SkiffError, UsageError
from skiff.libimage.inspect import CONFIG_FIELDS
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, sha256_of
from skiff.oci.manifest import dumps_json

if TYPE_CHECKING:
    from skiff.runtime.engine import Runtime
    from skiff.storage.store import Store

log = logging.getLogger(__name__)

DEFAULT_CREATED_BY = "/bin/sh"
"""buildah's ``created_by`` when neither ``config --created-by`` nor the
executor said what made the layer."""
DOCKER_ONLY = (
    ("Healthcheck", "HEALTHCHECK"),
    ("Shell", "SHELL"),
    ("OnBuild", "ONBUILD"),
    ("Hostname", "HOSTNAME"),
    ("Domainname", "DOMAINNAME"),
)
_NS = 1_000_000_000


@dataclass
class CommitOptions:
    format: str | None = None
    """"oci" or "docker"; None: the working container's format."""
    squash: bool = False
    timestamp: int | None = None
    """Seconds since the epoch for every time the commit writes (reproducible)."""
    iidfile: Path | None = None
    """Write ``sha256:ID`` there."""
    remove: bool = False
    """Remove the working container afterwards (``--rm``)."""
    created_by: str | None = None
    """The new history entry's ``created_by`` (default: the container's)."""
    comment: str | None = None
    """The new history entry's ``comment`` (default: the container's, or "FROM BASE")."""
    empty_layer: bool = False
    """Write no layer: the history entry is an ``empty_layer`` one and the
    container's file changes stay uncommitted (buildah's EmptyLayer)."""


@dataclass
class CommitReport:
    image_id: str
    names: list[str]
    manifest_digest: Digest
    config_digest: Digest
    diff_ids: list[Digest] = field(default_factory=list)
    """Every layer of the image, base first."""
    new_layer: Digest | None = None
    """The layer this commit wrote (None with ``empty_layer``)."""
    warnings: list[str] = field(default_factory=list)
    destination: str = ""
    """Where a transport name copied the image (``oci:DIR:TAG``), or ""."""


def commit_builder(
    rt: Runtime, ref: str | Builder, name: str | None, options: CommitOptions | None = None
) -> CommitReport:
    """Commit working container ``ref`` as image ``name`` (None: unnamed).

    A Builder object is committed as it is in memory (the executor's
    per-step state; with ``empty_layer`` it needs no working container)."""
    from skiff.libimage.names import local_name, transport_of

    options = options or CommitOptions()
    store = rt.store
    builder = ref if isinstance(ref, Builder) else get_builder(store, ref)
    fmt = options.format or builder.format
    if fmt not in ("oci", "docker"):
        raise UsageError(f"unknown format {fmt!r}", "use oci or docker")
    if options.timestamp is not None and options.timestamp < 0:
        raise UsageError("--timestamp must not be negative")
    destination = name if name and transport_of(name) is not None else None
    names = [str(local_name(name))] if name and destination is None else []
    report = _commit(store, builder, fmt, names, options)
    if destination is not None:
        from skiff.libimage.push import push_image

        pushed = push_image(rt.ctx, report.image_id, destination)
        report.destination = pushed.destination
    if options.iidfile is not None:
        write_iidfile(options.iidfile, report.image_id)
    if options.remove:
        remove_builder(store, builder.id)
    return report


def _commit(
    store: Store, builder: Builder, fmt: str, names: list[str], options: CommitOptions
) -> CommitReport:
    from skiff.storage.layers import chain_ids

    now_ns = options.timestamp * _NS if options.timestamp is not None else time.time_ns()
    created = rfc3339(now_ns)
    base_layers, base_diff_ids = _base_layers(store, builder)
    new_layer: Digest | None = None
    if options.empty_layer:
        layer_ids, diff_ids = base_layers, base_diff_ids
    elif options.squash:
        layer_id, new_layer = _squash_layer(store, builder, options.timestamp)
        layer_ids, diff_ids = [layer_id], [new_layer]
    else:
        layer_id, new_layer = _diff_layer(store, builder, base_layers, base_diff_ids, options)
        layer_ids, diff_ids = [*base_layers, layer_id], [*base_diff_ids, new_layer]
    if layer_ids:
        chain = chain_ids(diff_ids)
        if chain[-1] != layer_ids[-1]:
            raise BuildError(
                f"committing {builder.name}: the layers do not match the base image's diff IDs",
                "the base image's config and layers disagree; pull it again",
            )
    history = _history(builder, created, options)
    if options.squash:
        for entry in history[:-1]:
            entry["empty_layer"] = True
    warnings: list[str] = []
    docker = fmt == "docker"
    if docker:
        config_obj = docker_config(
            builder,
            created=created,
            diff_ids=diff_ids,
            history=history,
            container=options.timestamp is None,
        )
    else:
        config_obj = oci_config(builder, created=created, diff_ids=diff_ids, history=history)
        warnings = dropped_for_oci(builder)
    config_bytes = dumps_json(config_obj)
    config_digest = sha256_of(config_bytes)
    sizes = [store.layers.get(layer_id).uncompressed_size for layer_id in layer_ids]
    manifest_bytes = _manifest(builder, docker, config_bytes, diff_ids, sizes)
    manifest_digest = sha256_of(manifest_bytes)
    image = store.images.create(
        config_digest.hex,
        top_layer=layer_ids[-1] if layer_ids else None,
        config=config_bytes,
        manifest=manifest_bytes,
        manifest_type=mt.DOCKER_V2S2 if docker else mt.OCI_MANIFEST,
        digest=manifest_digest,
        names=names,
        created=now_ns / _NS,
        size=sum(sizes),
    )
    return CommitReport(
        image_id=image.id,
        names=names,
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        diff_ids=list(diff_ids),
        new_layer=new_layer,
        warnings=warnings,
    )


# --- layers -------------------------------------------------------------------------------


def _base_layers(store: Store, builder: Builder) -> tuple[list[str], list[Digest]]:
    """The base image's layer IDs and diff IDs, base first."""
    from skiff.oci.config import ImageConfig

    diff_ids = ImageConfig(builder.config).diff_ids
    if not builder.from_image_id:
        return [], diff_ids
    image = store.images.get(builder.from_image_id)
    layers = store.image_layers(image)
    if len(layers) != len(diff_ids):
        raise BuildError(
            f"committing {builder.name}: the base image {image.id[:12]} has {len(layers)} "
            f"layers but its config lists {len(diff_ids)}",
            "the base image is damaged; pull it again",
        )
    return layers, diff_ids


def _diff_layer(
    store: Store,
    builder: Builder,
    base_layers: list[str],
    base_diff_ids: list[Digest],
    options: CommitOptions,
) -> tuple[str, Digest]:
    container = store.containers.get(builder.container_id)
    reader = store.layer_tar(container.layer_id)
    try:
        return _store_layer(
            store,
            _chunks(reader),
            base_layers[-1] if base_layers else None,
            base_diff_ids,
            options.timestamp,
        )
    finally:
        reader.close()


def _squash_layer(store: Store, builder: Builder, timestamp: int | None) -> tuple[str, Digest]:
    from skiff.storage.archive import tar_directory

    rootfs = store.mount_container(builder.container_id)
    try:
        return _store_layer(store, tar_directory(rootfs), None, [], timestamp)
    finally:
        store.unmount_container(builder.container_id)


def _chunks(reader: Any) -> Iterator[bytes]:
    while chunk := reader.read(1 << 20):
        yield chunk


def _store_layer(
    store: Store,
    chunks: Iterator[bytes],
    parent: str | None,
    parent_diff_ids: list[Digest],
    timestamp: int | None,
) -> tuple[str, Digest]:
    """Apply the tar ``chunks`` as a new layer on ``parent``; returns (layer ID, diff ID)."""
    from skiff.storage.archive import apply
    from skiff.storage.layers import TAR_SPLIT_NAME, chain_ids
    from skiff.storage.store import ChunkReader

    if timestamp is not None:
        chunks = restamp(chunks, timestamp)
    staging = store.layers.begin_staging(parent)
    reader = ChunkReader(chunks)
    try:
        result = apply(
            reader,
            staging.content,
            whiteout_format=store.driver.whiteout_format,
            tar_split=staging.path / TAR_SPLIT_NAME,
        )
    except BaseException:
        store.layers.discard_staging(staging)
        raise
    finally:
        reader.close()
    layer_id = chain_ids([*parent_diff_ids, result.diff_id])[-1]
    store.layers.commit_staging(staging, layer_id, result.diff_id, result.size)
    return layer_id, result.diff_id


def restamp(chunks: Iterator[bytes], timestamp: int) -> Iterator[bytes]:
    """The tar ``chunks`` with every member's mtime set to ``timestamp`` (and no atime)."""
    from skiff.storage.archive.tarheader import REGTYPE, BlockReader, iter_headers
    from skiff.storage.archive.tarwriter import END_OF_ARCHIVE, encode_header, padding

    source = iter(chunks)
    reader = BlockReader(lambda: next(source, b""))
    buf = bytearray()
    for header in iter_headers(reader):
        header.mtime_ns = timestamp * _NS
        header.atime_ns = None
        size = header.size if header.typeflag == REGTYPE else 0
        header.size = size
        buf += encode_header(header)
        remaining = size
        while remaining:
            data = reader.read(min(1 << 20, remaining))
            if not data:
                break  # iter_headers reports the truncation
            remaining -= len(data)
            buf += data
            if len(buf) >= 1 << 20:
                yield bytes(buf)
                buf.clear()
        buf += padding(size)
        if len(buf) >= 1 << 20:
            yield bytes(buf)
            buf.clear()
    buf += END_OF_ARCHIVE
    yield bytes(buf)


# --- config and manifest --------------------------------------------------------------------


def rfc3339(ns: int) -> str:
    """Go's RFC 3339 with nanoseconds, UTC, trailing zeros dropped."""
    seconds, nanos = divmod(ns, _NS)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def _history(builder: Builder, created: str, options: CommitOptions) -> list[dict[str, Any]]:
    history = [dict(h) for h in builder.config.get("history") or [] if isinstance(h, dict)]
    author = str(builder.config.get("author") or "")
    for pending in builder.history:
        history.append(_history_entry({"created": created, **pending}, author))
    comment = options.comment if options.comment is not None else builder.history_comment
    if not comment and builder.from_image:
        comment = f"FROM {builder.from_image}"
    entry: dict[str, Any] = {
        "created": created,
        "created_by": options.created_by or builder.created_by or DEFAULT_CREATED_BY,
    }
    if comment:
        entry["comment"] = comment
    if options.empty_layer:
        entry["empty_layer"] = True
    history.append(_history_entry(entry, author))
    return history


def _history_entry(entry: dict[str, Any], author: str) -> dict[str, Any]:
    out: dict[str, Any] = {"created": entry["created"], "created_by": entry.get("created_by", "")}
    if author:
        out["author"] = author
    for key in ("comment", "empty_layer"):
        if entry.get(key):
            out[key] = entry[key]
    return out


def _oci_inner(inner: dict[str, Any]) -> dict[str, Any]:
    """The OCI container config: its fields in Go's order, empty ones left out."""
    out: dict[str, Any] = {}
    for key in CONFIG_FIELDS:
        value = inner.get(key)
        if value not in (None, "", [], {}, False):
            out[key] = copy.deepcopy(value)
    return out


def oci_config(
    builder: Builder,
    *,
    created: str | None = None,
    diff_ids: list[Digest] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The OCI image config the working container commits as (current state
    without arguments, as ``inspect`` shows it)."""
    src = builder.config
    out: dict[str, Any] = {}
    created = created if created is not None else src.get("created")
    if created:
        out["created"] = created
    if src.get("author"):
        out["author"] = src["author"]
    out["architecture"] = src.get("architecture", "")
    for key in ("variant", "os", "os.version", "os.features"):
        if src.get(key) or key == "os":
            out[key] = copy.deepcopy(src.get(key, ""))
    inner = _oci_inner(builder.container_config)
    if inner:
        out["config"] = inner
    ids = diff_ids if diff_ids is not None else _config_diff_ids(builder)
    out["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in ids]}
    entries = history if history is not None else list(src.get("history") or [])
    if entries:
        out["history"] = [
            {
                k: h[k]
                for k in ("created", "created_by", "author", "comment", "empty_layer")
                if k in h
            }
            for h in entries
        ]
    return out


def _config_diff_ids(builder: Builder) -> list[Digest]:
    from skiff.oci.config import ImageConfig

    return ImageConfig(builder.config).diff_ids


def _docker_inner(inner: dict[str, Any]) -> dict[str, Any]:
    """Docker's container config, with its defaults and omitempty rules."""

    def value(key: str, empty: Any) -> Any:
        found = inner.get(key)
        return copy.deepcopy(found) if found not in (None, "", [], {}) else empty

    out: dict[str, Any] = {
        "Hostname": value("Hostname", ""),
        "Domainname": value("Domainname", ""),
        "User": value("User", ""),
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
    }
    if inner.get("ExposedPorts"):
        out["ExposedPorts"] = copy.deepcopy(inner["ExposedPorts"])
    out.update({"Tty": False, "OpenStdin": False, "StdinOnce": False})
    out["Env"] = value("Env", None)
    out["Cmd"] = value("Cmd", None)
    if inner.get("Healthcheck"):
        out["Healthcheck"] = copy.deepcopy(inner["Healthcheck"])
    if inner.get("ArgsEscaped"):
        out["ArgsEscaped"] = True
    out["Image"] = ""
    out["Volumes"] = value("Volumes", None)
    out["WorkingDir"] = value("WorkingDir", "")
    out["Entrypoint"] = value("Entrypoint", None)
    out["OnBuild"] = value("OnBuild", [])
    out["Labels"] = value("Labels", None)
    if inner.get("StopSignal"):
        out["StopSignal"] = inner["StopSignal"]
    if inner.get("Shell"):
        out["Shell"] = copy.deepcopy(inner["Shell"])
    return out


def docker_config(
    builder: Builder,
    *,
    created: str | None = None,
    diff_ids: list[Digest] | None = None,
    history: list[dict[str, Any]] | None = None,
    container: bool = True,
) -> dict[str, Any]:
    """The Docker image config the working container commits as."""
    src = builder.config
    inner = _docker_inner(builder.container_config)
    out: dict[str, Any] = {}
    comment = builder.comment or src.get("comment")
    if comment:
        out["comment"] = comment
    out["created"] = created if created is not None else src.get("created", "")
    if container:
        out["container"] = builder.container_id
    out["container_config"] = copy.deepcopy(inner)
    if src.get("author"):
        out["author"] = src["author"]
    out["config"] = inner
    out["architecture"] = src.get("architecture", "")
    if src.get("variant"):
        out["variant"] = src["variant"]
    out["os"] = src.get("os", "")
    if builder.from_image_id:
        out["parent"] = f"sha256:{builder.from_image_id}"
    ids = diff_ids if diff_ids is not None else _config_diff_ids(builder)
    out["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in ids]}
    entries = history if history is not None else list(src.get("history") or [])
    if entries:
        out["history"] = [
            {
                k: h[k]
                for k in ("created", "author", "created_by", "comment", "empty_layer")
                if k in h
            }
            for h in entries
        ]
    return out


def dropped_for_oci(builder: Builder) -> list[str]:
    """buildah's warnings for what an OCI image cannot hold."""
    inner = builder.container_config
    warnings = []
    for key, keyword in DOCKER_ONLY:
        value = inner.get(key)
        if not value:
            continue
        if key == "OnBuild":
            for item in value:
                warnings.append(
                    f"ONBUILD is not supported for OCI image format, {item} will be ignored. "
                    "Must use `docker` format"
                )
        elif key == "Healthcheck":
            warnings.append(
                "HEALTHCHECK is not supported for OCI image format and will be ignored. "
                "Must use `docker` format"
            )
        else:
            shown = "[" + " ".join(value) + "]" if isinstance(value, list) else value
            warnings.append(
                f"{keyword} is not supported for OCI image format, {shown} will be ignored. "
                "Must use `docker` format"
            )
    if builder.comment:
        warnings.append(
            f"COMMENT is not supported for OCI image format, comment {builder.comment} will "
            "be ignored. Must use `docker` format"
        )
    return warnings


def _manifest(
    builder: Builder,
    docker: bool,
    config_bytes: bytes,
    diff_ids: list[Digest],
    sizes: list[int],
) -> bytes:
    layer_type = mt.DOCKER_LAYER if docker else mt.OCI_LAYER
    manifest: dict[str, Any] = {"schemaVersion": 2}
    manifest["mediaType"] = mt.DOCKER_V2S2 if docker else mt.OCI_MANIFEST
    manifest["config"] = {
        "mediaType": mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
        "digest": str(sha256_of(config_bytes)),
        "size": len(config_bytes),
    }
    manifest["layers"] = [
        {"mediaType": layer_type, "digest": str(d), "size": s}
        for d, s in zip(diff_ids, sizes, strict=True)
    ]
    if not docker:
        annotations = dict(builder.annotations)
        if builder.from_image_id:
            annotations.setdefault(
                "org.opencontainers.image.base.digest", builder.from_image_digest
            )
            annotations.setdefault("org.opencontainers.image.base.name", builder.from_image)
        if annotations:
            manifest["annotations"] = annotations
    return dumps_json(manifest)


def write_iidfile(path: Path, image_id: str) -> None:
    """``--iidfile``: ``sha256:ID`` in ``path``, written to a temporary name,
    fsynced and renamed, so a script waiting for the file never reads half an ID.
    (``skiff build`` and ``skiff builder commit`` write it the same way.)"""
    data = f"sha256:{image_id}".encode()
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    except OSError as exc:
        raise SkiffError(
            f"cannot write the image ID file {path}: {exc.strerror}", "check --iidfile"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
