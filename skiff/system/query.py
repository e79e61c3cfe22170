"""list and inspect: what is installed, as the record of each system container says.

Read-only, except that they first bring records in line with the
deployment symlinks (``install.recover``) when no other command holds the
lock — so after a crash, ``list`` shows what is really active — and never
wait for a running install to finish.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skiff.errors import SkiffError, UsageError
from skiff.system.deploy import DeploymentInfo
from skiff.system.install import (
    ChangeReport,
    HostDirs,
    Session,
    check_dirs,
    open_session,
    recover,
    require_record,
)
from skiff.system.records import SystemContainerRecord
from skiff.system.units import Systemd, check_name

if TYPE_CHECKING:
    from skiff.config import SystemContext

log = logging.getLogger(__name__)


@dataclass
class DeploymentView:
    Index: int
    Active: bool
    Image: str
    ImageID: str
    Directory: str
    Created: str


@dataclass
class SystemContainerView:
    """What ``list --format json`` and ``inspect`` show (podman-style field names)."""

    Name: str
    Image: str
    ImageName: str
    ImageID: str
    Deployment: int
    Directory: str
    Rootfs: str
    Unit: str
    Tmpfiles: str
    Values: dict[str, str]
    UUID: str
    Runtime: str
    NoContainerService: bool
    Templates: list[str]
    InstalledFiles: list[str]
    Deployments: list[DeploymentView]
    Installed: str
    Updated: str


def _timestamp(seconds: float) -> str:
    """RFC 3339 in local time, as podman's inspect prints times."""
    from datetime import datetime

    return datetime.fromtimestamp(seconds).astimezone().isoformat()


def _view(session: Session, record: SystemContainerRecord) -> SystemContainerView:
    info = record.info
    deployments = []
    for slot in session.paths.existing_slots(info.name):
        if slot != info.index and slot not in record.slots:
            continue  # an interrupted update's, removed by the next change
        directory = session.paths.deployment(info.name, slot)
        try:
            other = info if slot == info.index else DeploymentInfo.read(directory)
        except SkiffError as exc:
            log.warning("%s", exc)
            continue
        deployments.append(
            DeploymentView(
                slot,
                slot == info.index,
                other.image,
                other.image_id,
                str(directory),
                _timestamp(other.created),
            )
        )
    return SystemContainerView(
        Name=info.name,
        Image=info.image,
        ImageName=info.image_name,
        ImageID=info.image_id,
        Deployment=info.index,
        Directory=str(session.paths.deployment(info.name, info.index)),
        Rootfs=info.rootfs,
        Unit=info.unit,
        Tmpfiles=info.tmpfiles,
        Values=dict(info.values),
        UUID=info.uuid,
        Runtime=info.runtime,
        NoContainerService=info.no_container_service,
        Templates=list(info.templates),
        InstalledFiles=[f.path for f in record.installed_files if f.kind != "dir"],
        Deployments=deployments,
        Installed=_timestamp(record.installed),
        Updated=_timestamp(record.updated),
    )


def _recover_if_free(session: Session, names: list[str], notes: list[str]) -> None:
    """Bring records in line with the symlinks when no other command is busy
    (listing never waits for an install to finish)."""
    with session.paths.locked(wait=False) as held:
        if not held:
            return
        systemd = Systemd()
        for name in names:
            report = ChangeReport(name, None)
            try:
                recover(session, name, systemd, report)
            except SkiffError as exc:
                report.notes.append(f"could not complete the interrupted change of {name}: {exc}")
            notes.extend(report.notes)
            notes.extend(systemd.notes)
            systemd.notes.clear()


def _installed_with(info: DeploymentInfo, dirs: HostDirs) -> bool:
    try:
        check_dirs(info, dirs)
    except UsageError:
        return False
    return True


def list_system_containers(
    ctx: SystemContext, notes: list[str] | None = None, dirs: HostDirs | None = None
) -> list[SystemContainerView]:
    """Every system container (those installed with ``dirs``, when given)."""
    dirs = dirs or HostDirs()
    with open_session(ctx) as session:
        names = sorted({r.name for r in session.records.all()} | set(session.paths.names()))
        _recover_if_free(session, names, notes if notes is not None else [])
        return [_view(session, r) for r in session.records.all() if _installed_with(r.info, dirs)]


def inspect_system_container(
    ctx: SystemContext,
    name: str,
    notes: list[str] | None = None,
    dirs: HostDirs | None = None,
) -> SystemContainerView:
    check_name(name)
    with open_session(ctx) as session:
        _recover_if_free(session, [name], notes if notes is not None else [])
        record = require_record(session, name)
        check_dirs(record.info, dirs or HostDirs())
        return _view(session, record)
