"""Working containers: buildah's ``from``, the records, mount/umount, rm, inspect.

A *working container* (buildah's builder) is a storage container (a
read-write layer over its base image, or over nothing for ``scratch``) plus
a record of the image being built from it: the image config (Env, Cmd,
Entrypoint, WorkingDir, User, Labels, ExposedPorts, Volumes, StopSignal;
Healthcheck, Shell, OnBuild and the comment survive only in the Docker
format), the manifest annotations, the history entries still to be written,
the format, and the defaults of ``builder run``. ``builder config`` edits
the record, ``builder run``/``copy``/``add`` (or any host process, through
``builder mount``) change the files, and ``builder commit`` turns both into
an image.

The records live in the store's database, table ``builders``, one row per
working container: indexed columns for what is looked up (name, base image)
and a JSON column for the rest. Builders are kept apart from the runtime's
container records: ``skiff ps`` does not list them, but their storage
containers hold their base images, so ``rmi`` refuses to remove an image a
working container is built on (as it refuses one a container uses).

Names are buildah's: ``IMAGE-working-container`` where IMAGE is the last
path component of the base image's repository (``working-container`` for
scratch), with ``-1``, ``-2``, ... appended while the name is taken by any
storage container.

The CLI verbs and the build executor call the same functions:
``from_image``, ``get_builder``, ``list_builders``, ``save_builder``,
``mount_builder``/``unmount_builder``, ``remove_builder`` and
``inspect_builder``; ``Builder.image_config()`` is what ``run`` and
``commit`` start from; ``Builder.add_history`` records an instruction that
changed only the config.
"""

from __future__ import annotations

import copy
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from skiff.errors import (
    ContainerUnknown,
    ImageUnknown,
    NameInUse,
    SkiffError,
    UsageError,
)
from skiff.oci.config import ImageConfig

if TYPE_CHECKING:
    from skiff.libimage.pull import PullOptions
    from skiff.runtime.engine import Runtime
    from skiff.storage.images import Image
    from skiff.storage.store import Store

log = logging.getLogger(__name__)

SCRATCH = "scratch"
BUILDER_TYPE = "buildah 0.0.1"
"""The ``Type`` buildah writes in ``inspect``: scripts check it to tell a
working container from other storage containers."""
FORMATS = ("oci", "docker")
RUN_NETWORKS = ("none", "host", "private")
METADATA_KEY = "skiff-builder"
"""Marks a storage container made for a working container (its metadata),
so one whose record was never written (a killed ``from``) can be found and
removed by ``builder rm``."""
_MAX_NAME_TRIES = 10_000

BUILDER_SCHEMA = """
CREATE TABLE IF NOT EXISTS builders (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    container_id TEXT NOT NULL,
    from_image TEXT NOT NULL DEFAULT '',
    from_image_id TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS builders_by_image ON builders(from_image_id);
CREATE INDEX IF NOT EXISTS builders_by_container ON builders(container_id)
"""


class PullPolicy(StrEnum):
    """When ``from`` pulls its base image (buildah's ``--pull`` values)."""

    MISSING = "missing"
    """Pull only when the store has no image by that name (the default)."""
    ALWAYS = "always"
    """Pull every time, even when the store has the image."""
    NEVER = "never"
    """Never pull: the image must be in the store."""
    NEWER = "newer"
    """Pull, but use the local image when the pull fails (podman's "newer")."""

    @classmethod
    def parse(cls, text: str) -> PullPolicy:
        aliases = {
            "true": cls.MISSING,
            "ifmissing": cls.MISSING,
            "missing": cls.MISSING,
            "false": cls.NEVER,
            "never": cls.NEVER,
            "always": cls.ALWAYS,
            "ifnewer": cls.NEWER,
            "newer": cls.NEWER,
        }
        policy = aliases.get(text.lower())
        if policy is None:
            raise UsageError(f"invalid pull policy {text!r}", "use always, missing, never or newer")
        return policy


@dataclass
class Builder:
    """One working container: its storage container and the image being built."""

    id: str
    """The storage container's ID (buildah's ContainerID)."""
    name: str
    container_id: str
    from_image: str
    """The base image's name as the store has it ("" for scratch, or an
    unnamed image)."""
    from_image_id: str
    """"" for scratch."""
    from_image_digest: str
    """The base image's manifest digest ("" for scratch)."""
    created: float
    format: str = "oci"
    """The default of ``commit --format``: "oci" or "docker"."""
    config: dict[str, Any] = field(default_factory=dict)
    """The image config being built: the base's, edited by ``config``. The
    container config (``config["config"]``) keeps Docker-only keys
    (Healthcheck, Shell, OnBuild); an OCI commit drops them."""
    annotations: dict[str, str] = field(default_factory=dict)
    """Manifest annotations an OCI commit writes (besides the base image's)."""
    created_by: str = ""
    """``created_by`` of the history entry the next commit writes."""
    history_comment: str = ""
    """``comment`` of that history entry (empty: "FROM <base>")."""
    comment: str = ""
    """The Docker config's top-level ``comment`` (``config --comment``)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Entries to write after the base image's and before the new layer's:
    instructions that changed only the config (``empty_layer: true``)."""
    mount_point: str = ""
    """Where ``builder mount`` mounted the root file system ("" if not mounted)."""
    network: str = "none"
    """The network of ``builder run`` when it does not say (none, host,
    private, or a network's name)."""
    volumes: list[str] = field(default_factory=list)
    """``-v`` mounts every ``builder run`` gets (``from --volume``)."""

    # --- the config being built ----------------------------------------------
    def image_config(self) -> ImageConfig:
        """The config as an ImageConfig (a copy: editing it changes nothing here)."""
        return ImageConfig(copy.deepcopy(self.config))

    @property
    def container_config(self) -> dict[str, Any]:
        """``config["config"]``, created if absent (edit it, then ``save_builder``)."""
        value = self.config.get("config")
        if not isinstance(value, dict):
            value = {}
            self.config["config"] = value
        return value

    @property
    def base_name(self) -> str:
        """What buildah shows as the image name: the base's name, or "scratch"."""
        if self.from_image:
            return self.from_image
        return SCRATCH if not self.from_image_id else self.from_image_id

    def add_history(self, created_by: str, comment: str = "", *, empty_layer: bool = True) -> None:
        """Record an instruction for the next commit's history (the executor's
        ENV, LABEL, ...: ``empty_layer`` entries that add no layer)."""
        entry: dict[str, Any] = {"created_by": created_by}
        if comment:
            entry["comment"] = comment
        if empty_layer:
            entry["empty_layer"] = True
        self.history.append(entry)

    # --- the record ------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        return {
            "from_image_digest": self.from_image_digest,
            "format": self.format,
            "config": self.config,
            "annotations": self.annotations,
            "created_by": self.created_by,
            "history_comment": self.history_comment,
            "comment": self.comment,
            "history": self.history,
            "mount_point": self.mount_point,
            "network": self.network,
            "volumes": self.volumes,
        }

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Builder:
        data = json.loads(row["data"])
        return cls(
            id=row["id"],
            name=row["name"],
            container_id=row["container_id"],
            from_image=row["from_image"],
            from_image_id=row["from_image_id"],
            from_image_digest=str(data.get("from_image_digest", "")),
            created=row["created"],
            format=str(data.get("format", "oci")),
            config=dict(data.get("config") or {}),
            annotations=dict(data.get("annotations") or {}),
            created_by=str(data.get("created_by", "")),
            history_comment=str(data.get("history_comment", "")),
            comment=str(data.get("comment", "")),
            history=list(data.get("history") or []),
            mount_point=str(data.get("mount_point", "")),
            network=str(data.get("network", "none")),
            volumes=list(data.get("volumes") or []),
        )


# --- the table ------------------------------------------------------------------------


def _ensure_schema(store: Store) -> None:
    store.db.ensure_schema("builders", BUILDER_SCHEMA)


def find_builder(store: Store, ref: str) -> Builder | None:
    """The working container named ``ref`` (name, ID, or unique ID prefix)."""
    _ensure_schema(store)
    row = store.db.read_one("SELECT * FROM builders WHERE name=? OR id=?", (ref, ref))
    if row is not None:
        return Builder.from_row(row)
    if len(ref) >= 3 and all(c in "0123456789abcdef" for c in ref):
        rows = store.db.read("SELECT * FROM builders WHERE id >= ? AND id < ?", (ref, ref + "g"))
        if len(rows) == 1:
            return Builder.from_row(rows[0])
        if len(rows) > 1:
            raise UsageError(
                f"working container ID prefix {ref!r} is ambiguous", "give more characters"
            )
    return None


def get_builder(store: Store, ref: str) -> Builder:
    found = find_builder(store, ref)
    if found is None:
        raise _unknown(ref)
    return found


def _unknown(ref: str) -> ContainerUnknown:
    return ContainerUnknown(
        f"no working container named {ref!r}",
        "list working containers with 'skiff builder containers'",
    )


def list_builders(store: Store) -> list[Builder]:
    """Every working container, oldest first."""
    _ensure_schema(store)
    return [
        Builder.from_row(r) for r in store.db.read("SELECT * FROM builders ORDER BY created, id")
    ]


def save_builder(store: Store, builder: Builder) -> None:
    """Write the record's mutable parts (config, history, mounts, defaults)."""
    _ensure_schema(store)
    with store.db.write() as conn:
        cursor = conn.execute(
            "UPDATE builders SET data=? WHERE id=?", (json.dumps(builder.to_data()), builder.id)
        )
        if cursor.rowcount == 0:
            raise ContainerUnknown(
                f"working container {builder.name} was removed while it was being changed"
            )


def _insert(store: Store, builder: Builder) -> None:
    _ensure_schema(store)
    with store.db.write() as conn:
        conn.execute(
            "INSERT INTO builders(id, name, container_id, from_image, from_image_id, created, data) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                builder.id,
                builder.name,
                builder.container_id,
                builder.from_image,
                builder.from_image_id,
                builder.created,
                json.dumps(builder.to_data()),
            ),
        )


# --- from ---------------------------------------------------------------------------------


@dataclass
class FromOptions:
    pull: PullPolicy = PullPolicy.MISSING
    pull_options: PullOptions | None = None
    """Progress, notes and trust for the pull (the CLI fills them)."""
    format: str = "oci"
    network: str = "none"
    volumes: list[str] = field(default_factory=list)


def from_image(
    rt: Runtime,
    image: str,
    *,
    name: str | None = None,
    options: FromOptions | None = None,
) -> Builder:
    """A new working container on ``image`` ("scratch": on nothing).

    The image is looked up in the store as podman looks names up; whether
    it is pulled is ``options.pull``. A transport reference
    (``oci:DIR:TAG``, ``docker://…``) is always copied into the store.
    """
    options = options or FromOptions()
    _check_options(options)
    store = rt.store
    _ensure_schema(store)
    if name is not None:
        _check_name(store, name)
    if image == SCRATCH:
        base: Image | None = None
        base_name = ""
        config = _scratch_config()
    else:
        base, base_name = _base_image(rt, image, options)
        config = _base_config(base)
    from skiff.libimage.names import transport_of

    # a transport reference names the container by its path, as buildah does
    # (whatever name the pull gave the image)
    stem = name or _name_stem(image if transport_of(image) else (base_name or image))
    container = None
    for candidate in _candidate_names(stem, exact=name is not None):
        try:
            container = store.create_container(
                candidate, base.id if base is not None else None, metadata={METADATA_KEY: True}
            )
            break
        except NameInUse:
            if name is not None:
                raise
    if container is None:
        raise NameInUse(f"no free name for a working container of {stem}")
    builder = Builder(
        id=container.id,
        name=container.name,
        container_id=container.id,
        from_image=base_name,
        from_image_id=base.id if base is not None else "",
        from_image_digest=str(base.digest) if base is not None and base.digest else "",
        created=time.time(),
        format=options.format,
        config=config,
        network=options.network,
        volumes=list(options.volumes),
    )
    try:
        _insert(store, builder)
    except BaseException:
        store.delete_container(container.id)
        raise
    return builder


def _check_options(options: FromOptions) -> None:
    if options.format not in FORMATS:
        raise UsageError(f"unknown format {options.format!r}", "use oci or docker")
    import re

    if options.network not in RUN_NETWORKS and not re.fullmatch(
        r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", options.network
    ):
        raise UsageError(
            f"invalid network {options.network!r}", "use none, host, private or a network's name"
        )


def _check_name(store: Store, name: str) -> None:
    import re

    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        raise UsageError(
            f"invalid container name {name!r}", "names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )
    if store.containers.find(name) is not None:
        raise NameInUse(
            f'the container name "{name}" is already in use',
            "remove that container or choose another name",
        )


def _candidate_names(stem: str, *, exact: bool) -> Iterator[str]:
    """``stem``, then ``stem-1``, ``stem-2``, ... (only ``stem`` when ``exact``)."""
    yield stem
    if exact:
        return
    for n in range(1, _MAX_NAME_TRIES):
        yield f"{stem}-{n}"


def _name_stem(image: str) -> str:
    """buildah's container name: the last component of the repository, without
    tag or digest, then ``-working-container``."""
    text = image.removeprefix("docker://")
    for prefix in ("oci-archive:", "docker-archive:", "oci:", "dir:", "containers-storage:"):
        if text.startswith(prefix):
            text = text[len(prefix) :].split(":", 1)[0]
            break
    text = text.split("@", 1)[0]
    last = text.rstrip("/").rsplit("/", 1)[-1]
    last = last.split(":", 1)[0]
    last = "".join(c for c in last if c.isalnum() or c in "_.-").lstrip("_.-")
    if not last or last == SCRATCH:
        return "working-container"
    return f"{last}-working-container"


def _base_image(rt: Runtime, text: str, options: FromOptions) -> tuple[Image, str]:
    """The base image, pulled as the policy says; and the name it is known by."""
    from skiff.libimage.names import find_local_image, transport_of

    store = rt.store
    local: Image | None = None
    matched = ""
    is_transport = transport_of(text) is not None
    if not is_transport:
        try:
            local, named = find_local_image(rt.ctx, store, text)
            matched = str(named) if named is not None else ""
        except ImageUnknown:
            local = None
    pull = options.pull
    if is_transport:
        if pull == PullPolicy.NEVER:
            raise UsageError(
                f"{text}: a transport reference is always copied into the store",
                "drop --pull never, or give the name of a local image",
            )
        pull = PullPolicy.ALWAYS
    if local is not None and pull in (PullPolicy.MISSING, PullPolicy.NEVER):
        return local, matched or (local.names[0] if local.names else "")
    if local is None and pull == PullPolicy.NEVER:
        raise ImageUnknown(f"{text}: image not known", "pull it first, or drop --pull never")
    try:
        image_id, pulled_name = _pull(rt, text, options)
    except SkiffError:
        if local is not None and pull == PullPolicy.NEWER:
            log.warning("pulling %s failed; using the local image", text)
            return local, matched or (local.names[0] if local.names else "")
        raise
    image = store.images.get(image_id)
    return image, pulled_name or (image.names[0] if image.names else "")


def _pull(rt: Runtime, text: str, options: FromOptions) -> tuple[str, str]:
    from skiff.libimage.pull import PullOptions, pull_image

    report = pull_image(rt.ctx, text, options.pull_options or PullOptions())
    pulled = report.images[0]
    return pulled.image_id, pulled.name or ""


def _scratch_config() -> dict[str, Any]:
    from skiff.oci.platform import host_platform

    host = host_platform()
    config: dict[str, Any] = {"architecture": host.architecture, "os": host.os}
    if host.variant:
        config["variant"] = host.variant
    config["config"] = {}
    config["rootfs"] = {"type": "layers", "diff_ids": []}
    config["history"] = []
    return config


_KEPT_KEYS = ("created", "author", "architecture", "variant", "os", "os.version", "os.features")


def _base_config(image: Image) -> dict[str, Any]:
    """The base image's config, reduced to what an image built on it inherits
    (a Docker config's ``container_config``, ``container``, ``parent`` and
    ``id`` describe the base's own build, not ours)."""
    parsed = ImageConfig.from_bytes(image.config).data
    config = {key: parsed[key] for key in _KEPT_KEYS if key in parsed}
    inner = parsed.get("config")
    config["config"] = dict(inner) if isinstance(inner, dict) else {}
    comment = parsed.get("comment")
    if isinstance(comment, str) and comment:
        config["comment"] = comment
    config["rootfs"] = parsed.get("rootfs") or {"type": "layers", "diff_ids": []}
    config["history"] = list(parsed.get("history") or [])
    return config


# --- mount, remove ---------------------------------------------------------------------------


def mount_builder(store: Store, builder: Builder) -> str:
    """Mount the root file system (counted) and remember where; returns the path."""
    path = str(store.mount_container(builder.id))
    builder.mount_point = path
    save_builder(store, builder)
    return path


def unmount_builder(store: Store, builder: Builder, *, force: bool = False) -> None:
    """Drop one mount reference (all with ``force``); forget the mount point at zero."""
    left = store.unmount_container(builder.id, force=force)
    if left == 0:
        builder.mount_point = ""
        save_builder(store, builder)


def remove_builder(store: Store, ref: str) -> str:
    """Remove a working container: its mounts, storage container and record.

    Returns the container ID. A storage container made by ``from`` whose
    record was never written (the process was killed) is removed too.
    """
    _ensure_schema(store)
    builder = find_builder(store, ref)
    if builder is None:
        orphan = store.containers.find(ref)
        if orphan is not None and orphan.metadata.get(METADATA_KEY):
            store.delete_container(orphan.id)
            return orphan.id
        raise _unknown(ref)
    if store.containers.find(builder.container_id) is not None:
        store.delete_container(builder.container_id)
    with store.db.write() as conn:
        conn.execute("DELETE FROM builders WHERE id=?", (builder.id,))
    return builder.id


def remove_all_builders(store: Store, on_error: Callable[[str, SkiffError], None]) -> list[str]:
    """Remove every working container; failures go to ``on_error`` and the rest go on."""
    removed = []
    for builder in list_builders(store):
        try:
            removed.append(remove_builder(store, builder.id))
        except SkiffError as exc:
            on_error(builder.name, exc)
    return removed


# --- inspect ------------------------------------------------------------------------------------


def inspect_builder(store: Store, builder: Builder) -> dict[str, Any]:
    """buildah's ``inspect`` of a working container (the fields scripts read)."""
    from skiff.build.commit import docker_config, oci_config

    oci = oci_config(builder)
    docker = docker_config(builder)
    mount_point = builder.mount_point
    if mount_point:
        container = store.containers.find(builder.container_id)
        layer = store.layers.get(container.layer_id) if container is not None else None
        if layer is None or layer.mount_count == 0:
            mount_point = ""  # a reboot unmounted it
    annotations = dict(builder.annotations)
    if builder.from_image_id:
        annotations.setdefault("org.opencontainers.image.base.digest", builder.from_image_digest)
        annotations.setdefault("org.opencontainers.image.base.name", builder.from_image)
    config_text = json.dumps(oci, indent=3) + "\n"
    return {
        "Type": BUILDER_TYPE,
        "FromImage": builder.from_image,
        "FromImageID": builder.from_image_id,
        "FromImageDigest": builder.from_image_digest,
        "Config": config_text,
        "Container": builder.name,
        "ContainerID": builder.container_id,
        "MountPoint": mount_point,
        "ImageAnnotations": annotations,
        "ImageCreatedBy": builder.created_by,
        "OCIv1": oci,
        "Docker": docker,
        "Format": builder.format,
        "History": list(oci.get("history") or []),
        "Network": builder.network,
        "Volumes": list(builder.volumes),
    }
