"""``exec``: run another process in a running container, under conmon.

A session's process is the container's own ``config.json`` process with
what the user changed: the command, environment entries added or
replaced, the user (resolved in the container's rootfs, as at create),
the working directory, the terminal, and with ``--privileged`` every
capability skiff holds. Capabilities are recomputed whenever the user or
``--privileged`` changes, with the same rules as the container's own
process (a non-root user keeps only what ``--cap-add`` gave), so an exec
never has more than its container would give that user. As in podman
4.3, ``--user`` runs the process with that user's uid and gid only (no
supplementary groups, not even the container's ``--group-add``), and the
environment is the container's (with its HOSTNAME, which podman leaves out).

Every session runs through conmon's exec monitor (``start_exec_monitor``)
— foreground, ``-it`` and ``-d`` alike — in a directory of its own under
the container's run dir (``exec/<session>``: ``process.json``, the pid
file, the attach socket, and the ``exits`` directory conmon writes the
exit code to). A foreground session attaches before the process starts,
so no output is lost, passes its exit code through and is forgotten when
it ends; a detached one (``-d``, or the detach keys) stays recorded in the
container's state (``exec_sessions``) until it is found ended, which is
what inspect's ``ExecIDs`` lists.

Exit codes are podman's: the process's own; 126 when the command exists
but cannot be executed, 127 when it does not exist (both from the
runtime's error, see ``conmon.runtime_error``); 125 for anything skiff
itself failed at, e.g. a container that is not running ("can only create
exec sessions on running containers: container state improper"). podman
4.3 exits 255 there; 125 is what podman documents and later versions do.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from skiff.errors import ContainerError, ContainerStateError, UsageError
from skiff.runtime import conmon as monitor
from skiff.runtime.attach import DEFAULT_DETACH_KEYS, attach
from skiff.runtime.engine import Runtime
from skiff.runtime.exitfile import read_exit_code
from skiff.runtime.records import Container, Status
from skiff.storage.db import process_alive
from skiff.storage.layers import random_id

log = logging.getLogger(__name__)

STATE_IMPROPER = "can only create exec sessions on running containers: container state improper"


@dataclass
class ExecOptions:
    """What ``skiff exec`` was asked (podman's flags)."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    """Entries added to (or replacing those of) the container's environment."""
    user: str | None = None
    """``-u USER[:GROUP]``; None runs as the container's user."""
    workdir: str = ""
    """``-w``; "" keeps the container's working directory."""
    tty: bool = False
    interactive: bool = False
    privileged: bool = False
    detach: bool = False
    detach_keys: bytes = DEFAULT_DETACH_KEYS
    console_size: tuple[int, int] | None = None
    """(rows, columns) of the caller's terminal: with ``tty``, the new
    terminal has that size from the start (OCI ``process.consoleSize``), so
    a command that asks at once (``stty size``) does not race the first
    resize message."""


@dataclass
class ExecStreams:
    """Our ends of the session's stdio (None: not connected)."""

    stdin: BinaryIO | IO[bytes] | None = None
    stdout: BinaryIO | IO[bytes] | None = None
    stderr: BinaryIO | IO[bytes] | None = None


@dataclass(frozen=True)
class ExecResult:
    session_id: str
    exit_code: int | None
    """None when the session was left running (``-d`` or the detach keys)."""
    detached: bool = False


# --- the process -------------------------------------------------------------------------


def _merge_env(base: Sequence[str], extra: Mapping[str, str]) -> list[str]:
    """The container's env with ``extra`` replacing entries of the same name in
    place and adding the others at the end."""
    out: dict[str, str] = {}
    for entry in base:
        name, _, value = entry.partition("=")
        if name:
            out[name] = value
    out.update(extra)
    return [f"{k}={v}" for k, v in out.items()]


def _read_config(path: Path, container: Container) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ContainerStateError(
            f"container {container.name} has no OCI config at {path}",
            "the container is not running",
        ) from None
    except (OSError, ValueError) as exc:
        raise ContainerError(f"cannot read {path} of container {container.name}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("process"), dict):
        raise ContainerError(f"{path} of container {container.name} has no process object")
    return data


def exec_process(
    config: Mapping[str, Any], container: Container, opts: ExecOptions
) -> dict[str, Any]:
    """The OCI process object of a session (see the module docstring).

    ``config`` is the container's config.json; its ``root.path`` is the
    rootfs the user is resolved in.
    """
    from skiff.runtime.create import spec_of
    from skiff.runtime.specgen.capabilities import capability_sets
    from skiff.runtime.specgen.host import HostInfo
    from skiff.runtime.specgen.user import resolve_user

    if not opts.command:
        raise UsageError(
            "must provide a non-empty command to start an exec session",
            "give the command after the container name",
        )
    base = dict(config["process"])
    process: dict[str, Any] = {
        **base,
        "args": list(opts.command),
        "terminal": opts.tty,
    }
    process.pop("consoleSize", None)
    if opts.tty and opts.console_size is not None:
        rows, columns = opts.console_size
        process["consoleSize"] = {"height": rows, "width": columns}
    env = dict(opts.env)
    if opts.user is not None or opts.privileged:
        sg = spec_of(container)
        uid = int(base.get("user", {}).get("uid", 0))
        if opts.user is not None:
            rootfs = Path(str(config.get("root", {}).get("path") or container.state.mount_point))
            if not rootfs.is_dir():
                raise ContainerStateError(
                    f"the root filesystem of container {container.name} is not mounted",
                    "the container is not running",
                )
            user = resolve_user(rootfs, opts.user)
            uid = user.uid
            proc_user: dict[str, Any] = {"uid": user.uid, "gid": user.gid}
            if "umask" in base.get("user", {}):
                proc_user["umask"] = base["user"]["umask"]
            process["user"] = proc_user
            env.setdefault("HOME", user.home)
        host = HostInfo.detect()
        sets = capability_sets(
            privileged=opts.privileged or sg.security.privileged,
            cap_add=sg.security.cap_add,
            cap_drop=[] if opts.privileged else sg.security.cap_drop,
            uid=uid,
            available=host.bounding_caps,
        )
        process["capabilities"] = sets.to_json()
    process["env"] = _merge_env(base.get("env") or [], env)
    if opts.workdir:
        if not opts.workdir.startswith("/"):
            raise UsageError(
                f"invalid working directory {opts.workdir!r}: must be an absolute path"
            )
        process["cwd"] = opts.workdir
    return process


# --- sessions ----------------------------------------------------------------------------


def _session_dir(rt: Runtime, container_id: str, session_id: str) -> Path:
    return rt.paths(container_id).exec_dir(session_id)


def _session_ended(
    rt: Runtime, container_id: str, session_id: str, record: Mapping[str, Any]
) -> bool:
    directory = _session_dir(rt, container_id, session_id)
    if read_exit_code(directory / "exits", container_id) is not None:
        return True
    pid = int(record.get("pid") or 0)
    return not pid or not process_alive(pid)


def _forget(rt: Runtime, container_id: str, session_id: str) -> None:
    """Remove a session's files (the caller drops its record)."""
    directory = _session_dir(rt, container_id, session_id)
    monitor.remove_monitor_files(rt.paths(container_id).socket_dir, session_id, directory)
    shutil.rmtree(directory, ignore_errors=True)


def prune_sessions(rt: Runtime, container: Container) -> Container:
    """Drop the records (and files) of sessions that ended; call under the
    container's lock. Returns the container as saved."""
    sessions = container.state.exec_sessions
    running = container.state.status in (Status.RUNNING, Status.PAUSED)
    ended = [
        sid
        for sid, record in sessions.items()
        if not running or _session_ended(rt, container.id, sid, record)
    ]
    if ended:
        for sid in ended:
            sessions.pop(sid, None)
            _forget(rt, container.id, sid)
        rt.records.save_state(container)
    return container


def exec_ids(rt: Runtime, container: Container) -> list[str]:
    """The sessions still running in the container (inspect's ``ExecIDs``)."""
    from skiff.runtime import lifecycle

    with rt.lock(container.id):
        container = lifecycle.sync(rt, container)
        container = prune_sessions(rt, container)
    return list(container.state.exec_sessions)


def _begin(
    rt: Runtime, container: Container, opts: ExecOptions, session_id: str
) -> tuple[Container, dict[str, Any]]:
    """Check the container runs and record the session; returns its process."""
    from skiff.runtime import lifecycle

    with rt.lock(container.id):
        container = lifecycle.sync(rt, container)
        if container.state.status != Status.RUNNING:
            raise ContainerStateError(STATE_IMPROPER)
        container = prune_sessions(rt, container)
        config = _read_config(rt.paths(container.id).config_json, container)
        process = exec_process(config, container, opts)
        container.state.exec_sessions[session_id] = {
            "id": session_id,
            "command": list(opts.command),
            "tty": opts.tty,
            "detached": opts.detach,
            "created": time.time(),
            "pid": 0,
        }
        rt.records.save_state(container)
    return container, process


def _set_pid(rt: Runtime, container: Container, session_id: str, pid: int) -> None:
    with rt.lock(container.id):
        current = rt.records.reload(container)
        record = current.state.exec_sessions.get(session_id)
        if record is not None:
            record["pid"] = pid
            rt.records.save_state(current)


def _end(rt: Runtime, container: Container, session_id: str) -> None:
    with rt.lock(container.id):
        with contextlib.suppress(ContainerError):
            current = rt.records.reload(container)
            if current.state.exec_sessions.pop(session_id, None) is not None:
                rt.records.save_state(current)
        _forget(rt, container.id, session_id)


def exec_in(
    rt: Runtime,
    container: Container,
    opts: ExecOptions,
    streams: ExecStreams | None = None,
    *,
    before_start: Callable[[Path], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ExecResult:
    """Run ``opts.command`` in ``container`` (see the module docstring).

    Foreground: returns once the process ended, with its exit code, or
    when the detach keys were read (``detached``). ``opts.detach``:
    returns as soon as the process runs.

    For callers that serve the session's streams themselves (the CRI
    streaming server), a foreground session calls ``before_start`` with the
    directory of its ``attach`` socket and ``ctl`` fifo once attached and
    just before the process runs (the moment to send it a terminal size),
    and ``on_start`` with the process's host pid once it runs.
    """
    streams = streams or ExecStreams()
    session_id = random_id()
    container, process = _begin(rt, container, opts, session_id)
    runtime = rt.oci(container.config.runtime)
    directory = _session_dir(rt, container.id, session_id)
    paths = rt.paths(container.id)
    spec = monitor.ExecMonitorSpec(
        container_id=container.id,
        session_id=session_id,
        name=container.name,
        bundle=directory,
        process=process,
        runtime_path=runtime.path,
        runtime_args=tuple(runtime.global_args()),
        exit_dir=directory / "exits",
        socket_dir=paths.socket_dir,
        terminal=opts.tty,
        stdin=opts.interactive and not opts.detach,
        runtime_log=directory / "oci-log",
    )
    keep = False
    try:
        with monitor.start_exec_monitor(spec) as session:
            if opts.detach:
                pid = session.start()
                _set_pid(rt, container, session_id, pid)
                keep = True
                return ExecResult(session_id, None, detached=True)

            def start() -> None:
                if before_start is not None:
                    before_start(session.attach_dir)
                pid = session.start()
                _set_pid(rt, container, session_id, pid)
                if on_start is not None:
                    on_start(pid)

            outcome = attach(
                paths.socket_dir,
                session_id,
                stdin=streams.stdin if opts.interactive else None,
                stdout=streams.stdout,
                stderr=streams.stderr,
                tty=opts.tty,
                detach_keys=opts.detach_keys,
                start=start,
            )
            if outcome.detached:
                keep = True
                return ExecResult(session_id, None, detached=True)
            code = session.wait()
            return ExecResult(session_id, code)
    finally:
        if not keep:
            _end(rt, container, session_id)
