"""install, update, rollback, uninstall — and putting things right after a crash.

Each operation takes a ``SystemContext`` and an ``…Options`` and returns a
``ChangeReport`` (the CLI prints its ``actions`` and ``notes``). The image
is pulled first, outside any lock, through libimage's pull (the copy
engine, so the trust policy applies); everything after happens under the
system-containers lock (``SystemPaths.locked``) in this order:

1. ``recover``: finish whatever an interrupted command left (below);
2. build the new deployment complete in staging (``deploy``), check that
   its host files would not overwrite files that are not this container's;
3. rename it to ``NAME.k`` (replacing the older, inactive slot);
4. **switch the symlink** — the commit point;
5. activate (``_activate``): install the unit, tmpfiles and hostfs files,
   run systemctl when systemd runs, then write the database record;
6. collect objects no deployment uses any more.

A ``kill -9`` before 4 leaves the previous deployment active, its unit
and files untouched; the stray staging directory or slot is removed by
the next command. After 4 the new deployment is the active one; until 5
ends, the host's unit may still run the previous deployment, which still
exists, so the service keeps working; the next command (any of them,
``list`` and ``inspect`` included) sees that the record does not follow
the symlink and completes step 5 (``recover``). ``uninstall`` removes the
host files first and the symlink last of what matters, so an interrupted
uninstall is finished by running any command again.

``SKIFF_SYSTEM_CONTAINER_CRASH_AT=<point>`` makes the process kill itself
with SIGKILL at that point (``deployed``, ``switched``, ``files``,
``record``, ``uninstall-files``, ``unlinked``): what an outside ``kill -9``
at that instant would do, for the crash tests.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import ImageUnknown, SkiffError, SystemContainerError, UsageError
from skiff.system.deploy import DeploymentInfo, DeployRequest, build_deployment
from skiff.system.hostfiles import (
    HostFile,
    InstalledFile,
    conflicts,
    install_files,
    remove_files,
)
from skiff.system.layout import SystemPaths, fsync_dir, remove_tree
from skiff.system.objects import ObjectStore
from skiff.system.records import Records, SystemContainerRecord
from skiff.system.units import (
    DEFAULT_SYSTEMD_DIR,
    DEFAULT_TMPFILES_DIR,
    Systemd,
    check_name,
)

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.libimage.pull import PullOptions
    from skiff.storage.store import Store

log = logging.getLogger(__name__)

CRASH_ENV = "SKIFF_SYSTEM_CONTAINER_CRASH_AT"


def _crash_point(point: str) -> None:
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


# --- options and reports ---------------------------------------------------------------------


@dataclass
class HostDirs:
    """Where host files go. None: the defaults for ``install``; for the other
    commands the directories recorded at install (a different one is an error)."""

    systemd_dir: Path | None = None
    tmpfiles_dir: Path | None = None
    host_root: Path | None = None


@dataclass
class InstallOptions:
    name: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    """``--set`` values (``templates.parse_set_values``)."""
    rootfs: Path | None = None
    force: bool = False
    """Overwrite host files that are not this container's."""
    dirs: HostDirs = field(default_factory=HostDirs)
    pull: PullOptions | None = None
    systemd: Systemd | None = None
    """None: detect whether systemd runs (tests pass their own)."""


@dataclass
class UpdateOptions:
    rebase: str | None = None
    force: bool = False
    dirs: HostDirs = field(default_factory=HostDirs)
    pull: PullOptions | None = None
    systemd: Systemd | None = None


@dataclass
class ChangeOptions:
    """``rollback`` and ``uninstall``."""

    force: bool = False
    dirs: HostDirs = field(default_factory=HostDirs)
    systemd: Systemd | None = None


@dataclass
class ChangeReport:
    name: str
    deployment: int | None
    """The active deployment afterwards (None after uninstall)."""
    image: str = ""
    image_id: str = ""
    changed: bool = True
    actions: list[str] = field(default_factory=list)
    """What was done, one line each (for the user)."""
    notes: list[str] = field(default_factory=list)
    """Steps skipped and things to know (warnings)."""


# --- the session: store, paths, records ------------------------------------------------------


class Session:
    """One command's store, system-container paths, objects and records."""

    def __init__(self, ctx: SystemContext) -> None:
        from skiff.storage.store import Store

        self.ctx = ctx
        self.store: Store = Store.open(ctx)
        self.paths = SystemPaths.for_store_root(self.store.root)
        self.paths.ensure()
        self.objects = ObjectStore(self.paths.objects)
        self.records = Records(self.store.db)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(ctx: SystemContext) -> Session:
    return Session(ctx)


def require_record(session: Session, name: str) -> SystemContainerRecord:
    record = session.records.get(name)
    if record is None:
        raise SystemContainerError(
            f"system container {name!r} is not installed",
            "list them with 'skiff system-container list'",
        )
    return record


# --- images ------------------------------------------------------------------------------


def _acquire_image(
    session: Session, text: str, pull: PullOptions | None, *, prefer_local: bool
) -> tuple[str, str]:
    """(image ID, stored name) of ``text``: a local image when ``prefer_local``
    and the store has it, else pulled (a name under localhost/ is never
    pulled: no registry serves it)."""
    from skiff.libimage.names import find_local_image, transport_of

    plain = transport_of(text) is None
    if plain and (prefer_local or text.startswith("localhost/")):
        try:
            image, named = find_local_image(session.ctx, session.store, text)
        except ImageUnknown:
            if text.startswith("localhost/"):
                raise
        else:
            return image.id, str(named) if named is not None else _first_name(image.names)
    from skiff.libimage.pull import pull_image

    report = pull_image(session.ctx, text, pull)
    pulled = report.images[-1]
    return pulled.image_id, pulled.name or _first_name(
        session.store.images.get(pulled.image_id).names
    )


def _first_name(names: tuple[str, ...]) -> str:
    return names[0] if names else ""


def default_name(image_name: str, text: str) -> str:
    """``registry/ns/etcd:3.5`` → ``etcd`` (atomic's default)."""
    source = image_name or text
    source = source.split("@", 1)[0]
    last = source.rstrip("/").rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[0] if ":" in last else last


# --- host directories -----------------------------------------------------------------------


def _absolute(path: Path, flag: str) -> Path:
    if not str(path):
        raise UsageError(f"{flag} needs a directory")
    return Path(os.path.abspath(path))


def _install_dirs(dirs: HostDirs) -> tuple[Path, Path, Path]:
    return (
        _absolute(dirs.systemd_dir or DEFAULT_SYSTEMD_DIR, "--systemd-dir"),
        _absolute(dirs.tmpfiles_dir or DEFAULT_TMPFILES_DIR, "--tmpfiles-dir"),
        _absolute(dirs.host_root or Path("/"), "--host-root"),
    )


def check_dirs(info: DeploymentInfo, dirs: HostDirs) -> None:
    """A directory given to update/rollback/uninstall must be the recorded one."""
    for given, recorded, flag in (
        (dirs.systemd_dir, info.systemd_dir, "--systemd-dir"),
        (dirs.tmpfiles_dir, info.tmpfiles_dir, "--tmpfiles-dir"),
        (dirs.host_root, info.host_root, "--host-root"),
    ):
        if given is not None and str(_absolute(given, flag)) != recorded:
            raise UsageError(
                f"{info.name} was installed with {flag} {recorded}, not {given}",
                f"give {flag} {recorded} or leave it out",
            )


def _check_conflicts(
    session: Session, name: str, files: list[HostFile], owned: list[str], force: bool
) -> list[str]:
    """Refuse to overwrite host files that are not ``name``'s (``--force``
    overrides, except for files another system container owns)."""
    found = conflicts(files, owned)
    if not found:
        return []
    directories = [p for p in found if os.path.isdir(p) and not os.path.islink(p)]
    if directories:
        raise SystemContainerError(
            f"{name} would replace the directory {directories[0]} with a file",
            "move the directory away; --force does not remove directories",
        )
    owners = session.records.owners()
    others = [(p, owners[p]) for p in found if owners.get(p, name) != name]
    if others:
        raise SystemContainerError(
            f"{name} would overwrite {others[0][0]}, which system container "
            f"{others[0][1]} installed",
            "uninstall that one first",
        )
    if not force:
        raise SystemContainerError(
            f"{name} would overwrite {', '.join(found)}, not installed by skiff",
            "move the files away, or give --force to overwrite them",
        )
    return [f"overwrote {p} (--force)" for p in found]


# --- recovery -------------------------------------------------------------------------------


def recover(session: Session, name: str, systemd: Systemd, report: ChangeReport) -> None:
    """Make the record and the host follow the symlink of ``name`` (under the lock)."""
    for stale in session.paths.stale_entries():
        remove_tree(stale)
        report.notes.append(f"removed {stale.name}, left by an interrupted command")
    index = session.paths.active_index(name)
    record = session.records.get(name)
    if index is None:
        if record is not None:
            report.notes.append(f"finished the interrupted uninstall of {name}")
            _finish_uninstall(session, record, report)
        leftovers = session.paths.existing_slots(name)
        for slot in leftovers:
            remove_tree(session.paths.deployment(name, slot))
            report.notes.append(f"removed deployment {name}.{slot} of an interrupted install")
        if leftovers:
            session.objects.collect_garbage()
        return
    if record is not None and record.deployment == index:
        _prune_unknown_slots(session, record, report)
        return
    info = DeploymentInfo.read(session.paths.deployment(name, index))
    report.notes.append(f"completed the interrupted change of {name}: deployment {index} is active")
    _activate(session, info, record, systemd, report, first=record is None)


def _prune_unknown_slots(
    session: Session, record: SystemContainerRecord, report: ChangeReport
) -> None:
    """Remove an inactive deployment the record does not know: an update
    built it and was killed before switching to it."""
    for slot in session.paths.existing_slots(record.name):
        if slot == record.deployment:
            continue
        directory = session.paths.deployment(record.name, slot)
        try:
            created = DeploymentInfo.read(directory).created
        except SystemContainerError:
            created = None
        if created is None or record.slots.get(slot) != created:
            remove_tree(directory)
            report.notes.append(f"removed {directory.name}, built by an interrupted update")
            session.objects.collect_garbage()


def _finish_uninstall(
    session: Session, record: SystemContainerRecord, report: ChangeReport
) -> None:
    remove_files(record.installed_files, report.notes)
    for slot in session.paths.existing_slots(record.name):
        remove_tree(session.paths.deployment(record.name, slot))
    session.records.delete(record.name)
    session.objects.collect_garbage()


# --- activation ----------------------------------------------------------------------------


def _activate(
    session: Session,
    info: DeploymentInfo,
    previous: SystemContainerRecord | None,
    systemd: Systemd,
    report: ChangeReport,
    *,
    first: bool,
) -> None:
    """Install ``info``'s host files, tell systemd, write the record (step 5)."""
    deployment = session.paths.deployment(info.name, info.index)
    installed = install_files(
        deployment, info.files, previous.installed_files if previous else [], report.notes
    )
    report.actions.extend(f"installed {f.target}" for f in info.files)
    _crash_point("files")
    systemd_dir = Path(info.systemd_dir)
    steps: list[Callable[[], None]] = [lambda: systemd.daemon_reload(systemd_dir)]
    if info.tmpfiles:
        steps.append(lambda: systemd.tmpfiles_create(Path(info.tmpfiles)))
    if info.unit:
        unit = Path(info.unit).name
        if first:
            steps.append(lambda: systemd.enable(unit, systemd_dir))
        else:
            steps.append(lambda: systemd.try_restart(unit, systemd_dir))
    for step in steps:
        try:
            step()
        except SystemContainerError as exc:
            report.notes.append(f"{exc} — run it yourself once the cause is fixed")
    now = time.time()
    slots = {info.index: info.created}
    if previous is not None and previous.deployment != info.index:
        slots[previous.deployment] = previous.info.created
    session.records.put(
        SystemContainerRecord(
            info=info,
            installed_files=installed,
            installed=previous.installed if previous is not None else now,
            updated=now,
            slots=slots,
        )
    )
    _crash_point("record")


def _place(session: Session, staging: Path, name: str, index: int) -> None:
    """Rename a complete staging directory to ``NAME.index`` (the slot is inactive)."""
    target = session.paths.deployment(name, index)
    if target.exists():
        remove_tree(target)
    os.rename(staging, target)
    fsync_dir(session.paths.deployments)
    _crash_point("deployed")


def _systemd(option: Systemd | None) -> Systemd:
    return option if option is not None else Systemd()


def _finish_report(report: ChangeReport, systemd: Systemd) -> ChangeReport:
    report.actions.extend(systemd.actions)
    report.notes.extend(systemd.notes)
    return report


# --- install --------------------------------------------------------------------------------


def install(ctx: SystemContext, image: str, options: InstallOptions | None = None) -> ChangeReport:
    """Pull ``image`` and install it as the system container ``options.name``."""
    from skiff.runtime.oci import select_runtime

    options = options or InstallOptions()
    if options.name is not None:
        check_name(options.name)
    rootfs = _check_rootfs(options.rootfs)
    systemd_dir, tmpfiles_dir, host_root = _install_dirs(options.dirs)
    systemd = _systemd(options.systemd)
    with open_session(ctx) as session:
        if options.name is not None:
            _refuse_installed(session, options.name)
        image_id, image_name = _acquire_image(session, image, options.pull, prefer_local=True)
        name = options.name or default_name(image_name, image)
        if options.name is None:
            check_name(name)
        report = ChangeReport(name, 0, image, image_id)
        with session.paths.locked():
            recover(session, name, systemd, report)
            _refuse_installed(session, name)
            runtime = select_runtime(session.store.run_root)
            request = DeployRequest(
                name=name,
                index=0,
                image=image,
                image_id=image_id,
                image_name=image_name,
                values=dict(options.values),
                uuid=str(uuid.uuid4()),
                rootfs=rootfs,
                systemd_dir=systemd_dir,
                tmpfiles_dir=tmpfiles_dir,
                host_root=host_root,
            )
            built = build_deployment(
                session.store, session.paths, session.objects, request, runtime
            )
            report.notes.extend(built.notes)
            try:
                report.notes.extend(
                    _check_conflicts(session, name, built.info.files, [], options.force)
                )
            except BaseException:
                remove_tree(built.staging)
                raise
            _place(session, built.staging, name, 0)
            report.actions.append(f"extracted {image} to {session.paths.deployment(name, 0)}")
            session.paths.switch(name, 0)
            _crash_point("switched")
            _activate(session, built.info, None, systemd, report, first=True)
    return _finish_report(report, systemd)


def _refuse_installed(session: Session, name: str) -> None:
    if session.records.get(name) is not None:
        raise SystemContainerError(
            f"system container {name!r} is already installed",
            "update it with 'skiff system-container update', or uninstall it first",
        )


def _check_rootfs(rootfs: Path | None) -> Path | None:
    if rootfs is None:
        return None
    path = Path(os.path.abspath(rootfs))
    if not path.is_dir():
        raise UsageError(f"--rootfs {rootfs}: not a directory", "give an existing directory")
    return path


# --- update and rollback -----------------------------------------------------------------------


def update(ctx: SystemContext, name: str, options: UpdateOptions | None = None) -> ChangeReport:
    """Pull the image again (or ``--rebase``'s) and switch to a new deployment of it."""
    from skiff.runtime.oci import select_runtime

    options = options or UpdateOptions()
    check_name(name)
    systemd = _systemd(options.systemd)
    with open_session(ctx) as session:
        current = require_record(session, name)
        check_dirs(current.info, options.dirs)
        text = options.rebase or current.info.image
        image_id, image_name = _acquire_image(session, text, options.pull, prefer_local=False)
        report = ChangeReport(name, current.deployment, text, image_id)
        with session.paths.locked():
            recover(session, name, systemd, report)
            record = require_record(session, name)
            active = record.deployment
            if image_id == record.info.image_id and text == record.info.image:
                report.changed = False
                report.deployment = active
                report.notes.append(f"{name} already runs the latest {text} ({image_id[:12]})")
                return _finish_report(report, systemd)
            index = 1 - active
            info = record.info
            request = DeployRequest(
                name=name,
                index=index,
                image=text,
                image_id=image_id,
                image_name=image_name,
                values=dict(info.values),
                uuid=info.uuid,
                rootfs=Path(info.rootfs) if info.external_rootfs else None,
                systemd_dir=Path(info.systemd_dir),
                tmpfiles_dir=Path(info.tmpfiles_dir),
                host_root=Path(info.host_root),
            )
            runtime = select_runtime(session.store.run_root)
            built = build_deployment(
                session.store, session.paths, session.objects, request, runtime
            )
            report.notes.extend(built.notes)
            try:
                owned = [f.path for f in record.installed_files]
                report.notes.extend(
                    _check_conflicts(session, name, built.info.files, owned, options.force)
                )
            except BaseException:
                remove_tree(built.staging)
                raise
            _place(session, built.staging, name, index)
            report.actions.append(f"extracted {text} to {session.paths.deployment(name, index)}")
            session.paths.switch(name, index)
            _crash_point("switched")
            _activate(session, built.info, record, systemd, report, first=False)
            report.deployment = index
            session.objects.collect_garbage()
    return _finish_report(report, systemd)


def rollback(ctx: SystemContext, name: str, options: ChangeOptions | None = None) -> ChangeReport:
    """Switch back to the other deployment (the one before the last update)."""
    options = options or ChangeOptions()
    check_name(name)
    systemd = _systemd(options.systemd)
    with open_session(ctx) as session:
        report = ChangeReport(name, None)
        with session.paths.locked():
            recover(session, name, systemd, report)
            record = require_record(session, name)
            check_dirs(record.info, options.dirs)
            other = 1 - record.deployment
            directory = session.paths.deployment(name, other)
            if not directory.is_dir() or other not in record.slots:
                raise SystemContainerError(
                    f"system container {name!r} has no previous deployment to roll back to",
                    "rollback needs an earlier update",
                )
            info = DeploymentInfo.read(directory)
            owned = [f.path for f in record.installed_files]
            report.notes.extend(_check_conflicts(session, name, info.files, owned, options.force))
            session.paths.switch(name, other)
            _crash_point("switched")
            report.actions.append(f"switched {name} to deployment {other} ({directory})")
            _activate(session, info, record, systemd, report, first=False)
            report.deployment = other
            report.image = info.image
            report.image_id = info.image_id
    return _finish_report(report, systemd)


# --- uninstall -------------------------------------------------------------------------------


def uninstall(ctx: SystemContext, name: str, options: ChangeOptions | None = None) -> ChangeReport:
    """Stop and remove the unit, tmpfiles and hostfs files, the deployments,
    the record, and the objects nothing uses any more.

    Uninstall works even when the interrupted change before it cannot be
    completed (a full disk, a unit directory made read-only): the files
    the active deployment would have installed are removed too where they
    hold exactly what skiff would have written.
    """
    options = options or ChangeOptions()
    check_name(name)
    systemd = _systemd(options.systemd)
    with open_session(ctx) as session:
        report = ChangeReport(name, None)
        with session.paths.locked():
            had_state = (
                session.records.get(name) is not None
                or session.paths.active_index(name) is not None
                or bool(session.paths.existing_slots(name))
            )
            try:
                recover(session, name, systemd, report)
            except SkiffError as exc:
                report.notes.append(f"could not complete the interrupted change of {name}: {exc}")
            record = session.records.get(name)
            active = _unrecorded_deployment(session, name, record)
            if record is None and active is None:
                if had_state:
                    return _finish_report(report, systemd)
                raise SystemContainerError(
                    f"system container {name!r} is not installed",
                    "list them with 'skiff system-container list'",
                )
            info = record.info if record is not None else active
            assert info is not None
            check_dirs(info, options.dirs)
            report.image, report.image_id = info.image, info.image_id
            systemd_dir = Path(info.systemd_dir)
            for step in _stop_steps(info, systemd, systemd_dir):
                try:
                    step()
                except SystemContainerError as exc:
                    report.notes.append(str(exc))
            installed = list(record.installed_files) if record is not None else []
            if active is not None:
                known = {f.path for f in installed}
                installed += [
                    InstalledFile(f.target, f.kind, f.sha256)
                    for f in active.files
                    if f.target not in known
                ]
            remove_files(installed, report.notes)
            report.actions.extend(f"removed {f.path}" for f in installed if f.kind != "dir")
            try:
                systemd.daemon_reload(systemd_dir)
            except SystemContainerError as exc:
                report.notes.append(str(exc))
            _crash_point("uninstall-files")
            session.paths.unlink(name)
            _crash_point("unlinked")
            for slot in session.paths.existing_slots(name):
                remove_tree(session.paths.deployment(name, slot))
                report.actions.append(f"removed {session.paths.deployment(name, slot)}")
            session.records.delete(name)
            garbage = session.objects.collect_garbage()
            report.actions.append(
                f"removed {garbage.removed} unused objects ({garbage.removed_bytes} bytes)"
            )
    return _finish_report(report, systemd)


def _unrecorded_deployment(
    session: Session, name: str, record: SystemContainerRecord | None
) -> DeploymentInfo | None:
    """The active deployment when the record does not follow it (recovery failed)."""
    index = session.paths.active_index(name)
    if index is None or (record is not None and record.deployment == index):
        return None
    try:
        return DeploymentInfo.read(session.paths.deployment(name, index))
    except SystemContainerError as exc:
        log.warning("%s", exc)
        return None


def _stop_steps(
    info: DeploymentInfo, systemd: Systemd, systemd_dir: Path
) -> list[Callable[[], None]]:
    steps: list[Callable[[], None]] = []
    if info.unit:
        unit = Path(info.unit).name
        steps.append(lambda: systemd.disable_now(unit, systemd_dir))
    if info.tmpfiles:
        tmpfiles = Path(info.tmpfiles)
        steps.append(lambda: systemd.tmpfiles_remove(tmpfiles))
    return steps
