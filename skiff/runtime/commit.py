"""``skiff commit``: a container's changes become a new image (podman commit).

The new image is the container's image plus one layer: the diff of the
container's read-write layer (``Store.layer_tar``: an overlay upper
directory with its whiteouts), or with ``--squash`` one layer holding the
container's whole filesystem. A running container is paused (frozen) while
its layer is read, unless ``--pause=false``, so the layer is one moment of
it; the copy into the store happens after it is resumed.

The config starts from the image's and takes what the container runs as
podman does: its environment (the image's, skiff's ``container=skiff`` and
``TERM``, and ``--env``; not HOSTNAME and HOME, which every start sets
again), entrypoint and command, working directory, user, labels, exposed
and published ports, stop signal; then the ``--change`` instructions (the
parser ``skiff import --change`` uses). History gets one entry like
podman's (``created_by`` "/bin/sh", the comment ``FROM IMAGE`` or
``--message``, ``--author``).

Writing: the layer, config and manifest are laid out as a private OCI
layout in the context's temp dir, whose manifest names the image's own
layers by their diff IDs (uncompressed); the copy engine then copies it
into ``containers-storage:``, where those layers are reused (never read
again) and the new one is unpacked, verified and recorded like any pulled
layer. So a committed image is a normal store image, and the store keeps
its layers' exact tars for a later push (which compresses them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skiff.errors import ContainerError, ContainerStateError, SkiffError, UsageError
from skiff.oci import mediatypes as mt
from skiff.oci.config import ImageConfig
from skiff.oci.digest import Digest
from skiff.runtime.engine import Runtime
from skiff.runtime.ocilayout import write_image
from skiff.runtime.records import Container, Status

_CHUNK = 1 << 20
_FORMATS = {"oci": mt.OCI_MANIFEST, "docker": mt.DOCKER_V2S2}
_DROPPED_ENV = ("HOSTNAME", "HOME")


@dataclass
class CommitOptions:
    name: str | None = None
    """``IMAGE``: unqualified names go to ``localhost/`` (podman's); None: no name."""
    changes: list[str] = field(default_factory=list)
    message: str = ""
    author: str = ""
    pause: bool = True
    format: str = "oci"
    """``oci`` or ``docker`` (the manifest and config media types)."""
    squash: bool = False
    include_volumes: bool = False
    """Add the container's volume destinations to the image's Volumes."""


@dataclass(frozen=True)
class CommitReport:
    image_id: str
    name: str | None


def commit(rt: Runtime, container_ref: str, options: CommitOptions | None = None) -> CommitReport:
    """Commit the container ``container_ref`` as a new image in the store."""
    from skiff.image.copy import CopyOptions, copy_image
    from skiff.image.transports import get as get_transport
    from skiff.libimage.names import local_name, storage_reference

    options = options or CommitOptions()
    manifest_type = _FORMATS.get(options.format)
    if manifest_type is None:
        raise UsageError(
            f"unrecognized image type {options.format!r}", "use --format oci or --format docker"
        )
    from skiff.libimage.importer import config_from_changes

    changed = config_from_changes(options.changes)  # bad --change fails before any work
    named = local_name(options.name) if options.name else None
    if named is not None and named.digest is not None:
        raise UsageError(f"cannot commit to {options.name}: give NAME[:TAG], not a digest")
    container = rt.records.get(container_ref)
    base = _base_config(rt, container)
    base_diff_ids = [] if options.squash else base.diff_ids
    with tempfile.TemporaryDirectory(prefix="skiff-commit-", dir=rt.ctx.tmp_dir) as tmp:
        blobs = Path(tmp) / "layout" / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        layer_digest, layer_size = _write_layer(rt, container, options, blobs)
        config = build_config(container, base, options, changed, layer_digest)
        config_bytes = json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()
        layers = [
            {"mediaType": mt.OCI_LAYER, "digest": str(d), "size": _layer_size(rt, container, d)}
            for d in base_diff_ids
        ]
        layers.append({"mediaType": mt.OCI_LAYER, "digest": str(layer_digest), "size": layer_size})
        layout = Path(tmp) / "layout"
        config_digest = write_image(layout, config_bytes, layers)
        source = get_transport("oci").parse_reference(str(layout))
        copy_options = CopyOptions(
            manifest_format=None if manifest_type == mt.OCI_MANIFEST else manifest_type
        )
        copy_image(source, storage_reference(named), copy_options, rt.ctx, rt.ctx)
    return CommitReport(config_digest.hex, str(named) if named is not None else None)


# --- the layer ---------------------------------------------------------------------------


def _write_layer(
    rt: Runtime, container: Container, options: CommitOptions, blobs: Path
) -> tuple[Digest, int]:
    """The container's layer (or whole tree) as an uncompressed tar blob."""
    from skiff.runtime import lifecycle

    with rt.lock(container.id):
        container = lifecycle.sync(rt, container)
        if container.state.status == Status.REMOVING:
            raise ContainerStateError(f"container {container.name} is being removed")
        storage = rt.store.containers.find(container.id)
        if storage is None:
            raise ContainerError(f"container {container.name} has no storage to commit")
        with _paused(rt, container, options.pause):
            if options.squash:
                from skiff.storage.archive import tar_directory

                rootfs = rt.store.mount_container(container.id)
                try:
                    return _write_chunks(blobs, tar_directory(rootfs))
                finally:
                    rt.store.unmount_container(container.id)
            reader = rt.store.layer_tar(storage.layer_id)
            try:
                return _write_chunks(blobs, _read_all(reader))
            finally:
                reader.close()


@contextlib.contextmanager
def _paused(rt: Runtime, container: Container, pause: bool) -> Iterator[None]:
    """Freeze a running container while its layer is read (``--pause``)."""
    if not pause or container.state.status != Status.RUNNING:
        yield
        return
    runtime = rt.oci(container.config.runtime)
    runtime.pause(container.id)
    try:
        yield
    finally:
        runtime.resume(container.id)


def _read_all(reader: Any) -> Iterator[bytes]:
    while chunk := reader.read(_CHUNK):
        yield chunk


def _write_chunks(blobs: Path, chunks: Iterator[bytes]) -> tuple[Digest, int]:
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".layer-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        result = Digest("sha256", digest.hexdigest())
        os.replace(tmp, blobs / result.hex)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return result, size


def _layer_size(rt: Runtime, container: Container, diff_id: Digest) -> int:
    """The uncompressed size of one of the image's layers (its manifest size here)."""
    for layer in rt.store.layers.by_diff_id(diff_id):
        return layer.uncompressed_size
    raise ContainerError(
        f"layer {diff_id} of the image of container {container.name} is not in the store",
        "the store is damaged; run skiff system check",
    )


# --- the config ---------------------------------------------------------------------------


def _base_config(rt: Runtime, container: Container) -> ImageConfig:
    if container.config.image_id is None:
        return ImageConfig({})
    return ImageConfig.from_bytes(rt.store.images.get(container.config.image_id).config)


def _timestamp() -> str:
    ns = time.time_ns()
    seconds, nanos = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def container_run_config(
    container: Container, base: ImageConfig, include_volumes: bool = False
) -> dict[str, Any]:
    """The ``config`` object of the committed image, before ``--change``."""
    from skiff.runtime.create import spec_of
    from skiff.runtime.specgen.env import merge_env

    sg = spec_of(container)
    config: dict[str, Any] = json.loads(json.dumps(base.config))  # a deep copy
    basic = sg.basic
    env = merge_env(base.env, basic.env, hostname="", home="")
    config["Env"] = [
        e for e in env if e.split("=", 1)[0] not in _DROPPED_ENV or e.split("=", 1)[0] in basic.env
    ]
    if basic.entrypoint is not None:
        entrypoint = list(basic.entrypoint)
        cmd = list(basic.command) if basic.command is not None else []
    else:
        entrypoint = base.entrypoint
        cmd = list(basic.command) if basic.command is not None else base.cmd
    _set_or_drop(config, "Entrypoint", entrypoint)
    _set_or_drop(config, "Cmd", cmd)
    config["WorkingDir"] = basic.workdir or base.working_dir or "/"
    user = sg.security.user if sg.security.user is not None else base.user
    _set_or_drop(config, "User", user)
    labels = dict(container.config.labels)
    _set_or_drop(config, "Labels", labels)
    ports: dict[str, dict[str, Any]] = {key: {} for key in base.exposed_ports}
    for exposed in container.config.exposed_ports:
        ports[exposed] = {}
    for mapping in container.config.ports:
        ports[f"{mapping['container_port']}/{mapping.get('protocol', 'tcp')}"] = {}
    _set_or_drop(config, "ExposedPorts", {k: ports[k] for k in sorted(ports)})
    if basic.stop_signal is not None:
        config["StopSignal"] = str(basic.stop_signal)
    if include_volumes:
        volumes: dict[str, dict[str, Any]] = {key: {} for key in base.volumes}
        for mount in container.config.volumes:
            destination = mount.get("destination")
            if destination:
                volumes[str(destination)] = {}
        _set_or_drop(config, "Volumes", volumes)
    return config


def apply_changes(config: dict[str, Any], changed: dict[str, Any]) -> dict[str, Any]:
    """``--change`` over a config: lists and maps merge (ENV by name), a relative
    WORKDIR is joined to the one before, everything else replaces."""
    out = dict(config)
    for key, value in changed.items():
        if key == "Env":
            env = {e.split("=", 1)[0]: e for e in out.get("Env") or []}
            env.update({e.split("=", 1)[0]: e for e in value})
            out["Env"] = list(env.values())
        elif key in ("Labels", "ExposedPorts", "Volumes"):
            out[key] = {**(out.get(key) or {}), **value}
        elif key == "OnBuild":
            out[key] = [*(out.get(key) or []), *value]
        elif key == "WorkingDir" and not str(value).startswith("/"):
            out[key] = posixpath.normpath(posixpath.join(out.get("WorkingDir") or "/", value))
        else:
            out[key] = value
    return out


def build_config(
    container: Container,
    base: ImageConfig,
    options: CommitOptions,
    changed: dict[str, Any],
    layer_diff_id: Digest,
) -> dict[str, Any]:
    """The whole image config: platform of the image, the container's run
    config with the changes, the layers, and the history entry."""
    created = _timestamp()
    data: dict[str, Any] = {}
    data["created"] = created
    if options.author:
        data["author"] = options.author
    for key in ("architecture", "os", "variant", "os.version", "os.features"):
        if key in base.data:
            data[key] = base.data[key]
    if "architecture" not in data or "os" not in data:
        from skiff.oci.platform import host_platform

        host = host_platform()
        data.setdefault("architecture", host.architecture)
        data.setdefault("os", host.os)
    data["config"] = apply_changes(
        container_run_config(container, base, options.include_volumes), changed
    )
    if options.message and options.format == "docker":
        data["comment"] = options.message
    diff_ids = [] if options.squash else [str(d) for d in base.diff_ids]
    data["rootfs"] = {"type": "layers", "diff_ids": [*diff_ids, str(layer_diff_id)]}
    history = []
    for entry in base.history:
        item = dict(entry)
        if options.squash:
            item["empty_layer"] = True
        history.append(item)
    new: dict[str, Any] = {"created": created, "created_by": "/bin/sh"}
    if options.author:
        new["author"] = options.author
    new["comment"] = options.message or f"FROM {container.config.image_name}"
    history.append(new)
    data["history"] = history
    return data


def _set_or_drop(config: dict[str, Any], key: str, value: Any) -> None:
    if value:
        config[key] = value
    else:
        config.pop(key, None)


def write_iidfile(path: str, image_id: str) -> None:
    """``--iidfile``: the image ID, written atomically."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(f"sha256:{image_id}")
        tmp.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise SkiffError(f"cannot write the image ID to {path}: {exc.strerror}") from exc
