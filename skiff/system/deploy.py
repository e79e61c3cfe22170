"""Build one deployment of a system container, complete, in a staging directory.

A deployment directory holds everything needed to run and to (re)activate
it, so that rollback and crash recovery never need the image again::

    NAME.k/rootfs/          the checked-out image (hard links to objects)
    NAME.k/config.json      the OCI config (bundle = this directory)
    NAME.k/NAME.service     the unit, rendered
    NAME.k/tmpfiles.conf    the tmpfiles.d file, rendered (if the image has one)
    NAME.k/hostfs/…         the files for the host, rendered
    NAME.k/info.json        ``DeploymentInfo``: image, values, and the
                            ``HostFile`` list that activation installs

``build_deployment`` writes all of it into ``.staging-NAME.k-…`` and syncs
the file system; the caller renames it to ``NAME.k`` and only then
switches the symlink. A failure anywhere removes the staging directory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import SystemContainerError, UsageError
from skiff.system import templates as tpl
from skiff.system.checkout import checkout_image
from skiff.system.hostfiles import HostFile, render_hostfs, sha256_hex
from skiff.system.layout import SystemPaths, remove_tree, sync_filesystem
from skiff.system.objects import ObjectStore
from skiff.system.units import (
    ordering_from_labels,
    render_default_unit,
    runtime_commands,
    unit_file_name,
)

if TYPE_CHECKING:
    from skiff.oci.config import ImageConfig
    from skiff.runtime.oci import RuntimeChoice
    from skiff.storage.store import Store

INFO_FILE = "info.json"
CONFIG_FILE = "config.json"
TMPFILES_FILE = "tmpfiles.conf"
ROOTFS_DIR = "rootfs"
HOSTFS_DIR = "hostfs"


@dataclass(frozen=True)
class DeploymentInfo:
    """What one deployment is (``info.json``); the record mirrors the active one's."""

    name: str
    index: int
    image: str
    """The image as the user gave it: what ``update`` pulls again."""
    image_name: str
    """The image's name in the store ("" when it has none)."""
    image_id: str
    values: dict[str, str]
    """The ``--set`` values (kept by updates)."""
    uuid: str
    rootfs: str
    """The container's root: the deployment's rootfs, or ``--rootfs``."""
    external_rootfs: bool
    runtime: str
    runtime_root: str
    no_container_service: bool
    templates: list[str]
    """Which /exports templates were used: config, service, tmpfiles, hostfs."""
    files: list[HostFile]
    systemd_dir: str
    tmpfiles_dir: str
    host_root: str
    created: float = field(default_factory=time.time)

    @property
    def unit(self) -> str:
        """The unit's host path, "" without a container service."""
        return next((f.target for f in self.files if f.kind == "unit"), "")

    @property
    def tmpfiles(self) -> str:
        return next((f.target for f in self.files if f.kind == "tmpfiles"), "")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "index": self.index,
            "image": self.image,
            "image_name": self.image_name,
            "image_id": self.image_id,
            "values": dict(self.values),
            "uuid": self.uuid,
            "rootfs": self.rootfs,
            "external_rootfs": self.external_rootfs,
            "runtime": self.runtime,
            "runtime_root": self.runtime_root,
            "no_container_service": self.no_container_service,
            "templates": list(self.templates),
            "files": [f.to_json() for f in self.files],
            "systemd_dir": self.systemd_dir,
            "tmpfiles_dir": self.tmpfiles_dir,
            "host_root": self.host_root,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeploymentInfo:
        return cls(
            name=str(data["name"]),
            index=int(data["index"]),
            image=str(data["image"]),
            image_name=str(data.get("image_name", "")),
            image_id=str(data["image_id"]),
            values={str(k): str(v) for k, v in dict(data.get("values") or {}).items()},
            uuid=str(data["uuid"]),
            rootfs=str(data["rootfs"]),
            external_rootfs=bool(data.get("external_rootfs", False)),
            runtime=str(data.get("runtime", "")),
            runtime_root=str(data.get("runtime_root", "")),
            no_container_service=bool(data.get("no_container_service", False)),
            templates=[str(t) for t in data.get("templates") or []],
            files=[HostFile.from_json(f) for f in data.get("files") or []],
            systemd_dir=str(data["systemd_dir"]),
            tmpfiles_dir=str(data["tmpfiles_dir"]),
            host_root=str(data["host_root"]),
            created=float(data.get("created", 0.0)),
        )

    @classmethod
    def read(cls, deployment: Path) -> DeploymentInfo:
        path = deployment / INFO_FILE
        try:
            return cls.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError as exc:
            raise SystemContainerError(
                f"deployment {deployment} has no {INFO_FILE}",
                "it was not made by this version of skiff; uninstall and install again",
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemContainerError(
                f"deployment {deployment}: {INFO_FILE} is damaged ({exc})",
                "uninstall and install again",
            ) from exc


@dataclass(frozen=True)
class DeployRequest:
    """What to build: which image, under which name, into which slot."""

    name: str
    index: int
    image: str
    image_id: str
    image_name: str
    values: dict[str, str]
    uuid: str
    rootfs: Path | None
    """``--rootfs``: run on this host directory instead of the checkout."""
    systemd_dir: Path
    tmpfiles_dir: Path
    host_root: Path


@dataclass
class Built:
    staging: Path
    info: DeploymentInfo
    notes: list[str]
    objects_new: int
    objects_shared: int


def _stop_signal(image_config: ImageConfig) -> int:
    from skiff.runtime.specgen import parse_signal

    text = image_config.stop_signal
    if not text:
        return 15
    try:
        return parse_signal(text)
    except UsageError as exc:
        raise SystemContainerError(
            f"the image's StopSignal {text!r} is not a signal", "fix the image"
        ) from exc


def _write_text(path: Path, text: str) -> str:
    data = text.encode()
    path.write_bytes(data)
    os.chmod(path, 0o644)
    return sha256_hex(data)


def build_deployment(
    store: Store,
    paths: SystemPaths,
    objects: ObjectStore,
    request: DeployRequest,
    runtime: RuntimeChoice,
) -> Built:
    """Check out, render and describe a deployment in a new staging directory."""
    staging = paths.new_staging(request.name, request.index)
    try:
        return _build(store, paths, objects, request, runtime=runtime, staging=staging)
    except BaseException:
        remove_tree(staging)
        raise


def _build(
    store: Store,
    paths: SystemPaths,
    objects: ObjectStore,
    req: DeployRequest,
    *,
    runtime: RuntimeChoice,
    staging: Path,
) -> Built:
    from skiff.oci.config import ImageConfig
    from skiff.system import specs

    image = store.images.get(req.image_id)
    image_config = ImageConfig.from_bytes(image.config)
    checkout = checkout_image(store, image, staging / ROOTFS_DIR, objects)
    notes = [f"checkout: {w}" for w in checkout.warnings]
    exports = tpl.read_exports(staging / ROOTFS_DIR)
    manifest = exports.manifest
    final = paths.deployment(req.name, req.index)
    container_root = req.rootfs if req.rootfs is not None else final / ROOTFS_DIR
    runtime_root = store.run_root / "system-containers" / runtime.name

    early = tpl.merge_values(manifest.default_values, req.values, {})
    pid_file = f"{early['RUN_DIRECTORY'].rstrip('/')}/container-{req.name}.pid"
    commands = runtime_commands(
        runtime.path,
        runtime_root,
        req.name,
        bundle=final,
        pid_file=pid_file,
        stop_signal=_stop_signal(image_config),
    )
    computed = {
        "NAME": req.name,
        "DESTDIR": str(final),
        "EXEC_START": commands.start,
        "EXEC_STOP": commands.stop,
        "EXEC_STARTPRE": commands.start_pre,
        "EXEC_STOPPOST": commands.stop_post,
        "HOST_UID": str(os.getuid()),
        "HOST_GID": str(os.getgid()),
        "IMAGE_ID": image.id,
        "IMAGE_NAME": req.image_name or req.image,
        "PIDFILE": pid_file,
        "UUID": req.uuid,
        "RUNTIME": str(runtime.path),
    }
    values = tpl.merge_values(manifest.default_values, req.values, computed)
    used: list[str] = []
    files: list[HostFile] = []

    if manifest.no_container_service:
        for kind, template in (
            ("config.json.template", exports.config_template),
            ("service.template", exports.service_template),
        ):
            if template is not None:
                notes.append(f"the image has no container service: its {kind} is not used")
    else:
        if exports.config_template is not None:
            config = tpl.render_config(exports.config_template, values)
            config, config_notes = specs.adapt_template_config(
                config, container_root, external_rootfs=req.rootfs is not None
            )
            notes.extend(config_notes)
            used.append("config")
        else:
            config = specs.default_config(
                image_config,
                req.rootfs if req.rootfs is not None else staging / ROOTFS_DIR,
                req.name,
                external_rootfs=req.rootfs is not None,
            )
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        unit_name = unit_file_name(req.name)
        if exports.service_template is not None:
            unit = tpl.substitute(
                exports.service_template, values, what=f"{tpl.EXPORTS}/{tpl.SERVICE_TEMPLATE}"
            )
            used.append("service")
        else:
            unit = render_default_unit(
                values,
                description=f"skiff system container {req.name} ({req.image_name or req.image})",
                ordering=ordering_from_labels(image_config.labels),
            )
        digest = _write_text(staging / unit_name, unit)
        files.append(HostFile(str(req.systemd_dir / unit_name), unit_name, "unit", digest))

    if exports.tmpfiles_template is not None:
        text = tpl.substitute(
            exports.tmpfiles_template, values, what=f"{tpl.EXPORTS}/{tpl.TMPFILES_TEMPLATE}"
        )
        digest = _write_text(staging / TMPFILES_FILE, text)
        tmpfiles_target = req.tmpfiles_dir / f"{req.name}.conf"
        files.append(HostFile(str(tmpfiles_target), TMPFILES_FILE, "tmpfiles", digest))
        used.append("tmpfiles")

    if exports.hostfs is not None:
        rendered = render_hostfs(
            exports.hostfs, staging / HOSTFS_DIR, manifest.installed_files_template, values
        )
        for rel, kind, digest, mode in rendered:
            files.append(
                HostFile(str(req.host_root / rel), f"{HOSTFS_DIR}/{rel}", kind, digest, mode)
            )
        used.append("hostfs")
    elif manifest.installed_files_template:
        raise tpl.TemplateError(
            "the image's manifest.json lists installedFilesTemplate but the image has no "
            "/exports/hostfs"
        )

    info = DeploymentInfo(
        name=req.name,
        index=req.index,
        image=req.image,
        image_name=req.image_name,
        image_id=image.id,
        values=dict(req.values),
        uuid=req.uuid,
        rootfs=str(container_root),
        external_rootfs=req.rootfs is not None,
        runtime=str(runtime.path),
        runtime_root=str(runtime_root),
        no_container_service=manifest.no_container_service,
        templates=used,
        files=files,
        systemd_dir=str(req.systemd_dir),
        tmpfiles_dir=str(req.tmpfiles_dir),
        host_root=str(req.host_root),
    )
    (staging / INFO_FILE).write_text(json.dumps(info.to_json(), indent=2) + "\n")
    sync_filesystem(staging)
    return Built(
        staging,
        info,
        notes,
        checkout.objects.new_objects,
        checkout.objects.shared,
    )
