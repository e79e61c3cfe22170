"""What ``ps`` shows about containers (podman's ListContainer shape)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from skiff.runtime.engine import Runtime
from skiff.runtime.records import Container, Status
from skiff.storage.db import boot_id, process_alive


def _iso(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, UTC).astimezone().isoformat() if ts else "0001-01-01T00:00:00Z"
    )


def _ago(ts: float, now: float) -> str:
    from skiff.gotemplate.units import human_duration_since

    return human_duration_since(ts, now)


def status_text(c: Container, now: float) -> str:
    """podman's STATUS column: ``Up 3 seconds ago``, ``Exited (0) 2 minutes ago``, ``Created``."""
    state = c.state
    if state.status == Status.RUNNING:
        return f"Up {_ago(state.started_at, now)}"
    if state.status == Status.PAUSED:
        return "Paused"
    if state.status in (Status.EXITED, Status.STOPPED):
        return f"Exited ({state.exit_code if state.exit_code is not None else -1}) {_ago(state.finished_at, now)}"
    if state.status == Status.INITIALIZED:
        return "Initialized"
    if state.status == Status.STOPPING:
        return "Stopping"
    if state.status == Status.REMOVING:
        return "Removing"
    return "Created"


def ports_text(ports: list[dict[str, Any]]) -> str:
    out = []
    for p in ports:
        host_ip = p.get("host_ip") or "0.0.0.0"  # noqa: S104 - what podman prints for "all addresses"
        rng = int(p.get("range") or 1)
        hp, cp = int(p["host_port"]), int(p["container_port"])
        if rng > 1:
            out.append(
                f"{host_ip}:{hp}-{hp + rng - 1}->{cp}-{cp + rng - 1}/{p.get('protocol', 'tcp')}"
            )
        else:
            out.append(f"{host_ip}:{hp}->{cp}/{p.get('protocol', 'tcp')}")
    return ", ".join(out)


@dataclass
class PsRow:
    """One container as ``ps --format`` templates see it (podman's field names)."""

    ID: str
    Id: str
    Image: str
    ImageID: str
    Command: str
    CreatedAt: str
    Created: float
    CreatedHuman: str
    RunningFor: str
    Status: str
    State: str
    Ports: str
    Names: str
    Labels: dict[str, str]
    Mounts: list[str]
    Networks: list[str]
    Pid: int
    ExitCode: int
    Exited: bool
    ExitedAt: float
    StartedAt: float
    AutoRemove: bool
    Pod: str
    PodName: str
    IsInfra: bool
    Size: str = ""
    Namespaces: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {
            "AutoRemove": self.AutoRemove,
            "Command": self.Command.split(" ") if self.Command else [],
            "CreatedAt": self.CreatedHuman,
            "Exited": self.Exited,
            "ExitedAt": int(self.ExitedAt),
            "ExitCode": self.ExitCode,
            "Id": self.Id,
            "Image": self.Image,
            "ImageID": self.ImageID,
            "IsInfra": self.IsInfra,
            "Labels": self.Labels or None,
            "Mounts": self.Mounts,
            "Names": [self.Names],
            "Namespaces": self.Namespaces,
            "Networks": self.Networks,
            "Pid": self.Pid,
            "Pod": self.Pod,
            "PodName": self.PodName,
            "Ports": None,
            "Size": None,
            "StartedAt": int(self.StartedAt),
            "State": self.State,
            "Status": self.Status,
            "Created": int(self.Created),
        }


def _unchanged(rt: Runtime, c: Container, boot: str) -> bool:
    """Whether ``lifecycle.sync`` would leave a live container's record as
    it is: same boot, no exit file from conmon, its process (or conmon) still
    there. Answered from the record and three system calls, without the
    container's lock or the lifecycle code, so that ``ps`` with a hundred
    running containers does not take a hundred locks to change nothing."""
    state = c.state
    if state.boot_id and state.boot_id != boot:
        return False
    if os.path.lexists(os.path.join(rt.run_root, "exits", c.id)):
        return False
    return not state.pid or process_alive(state.pid) or process_alive(state.conmon_pid)


def list_containers(rt: Runtime, *, all_containers: bool) -> list[Container]:
    out = []
    boot = boot_id()
    for record in rt.records.all():
        c = record
        if c.state.status in (Status.RUNNING, Status.PAUSED, Status.INITIALIZED) and not _unchanged(
            rt, c, boot
        ):
            # imported only when a live container must be checked: the
            # lifecycle pulls in conmon and spec generation
            from skiff.runtime import lifecycle

            with rt.lock(c.id):
                c = lifecycle.sync(rt, c)
        if all_containers or c.state.status in (Status.RUNNING, Status.PAUSED):
            out.append(c)
    out.sort(key=lambda c: c.created, reverse=True)
    return out


def ps_row(c: Container, pod_names: dict[str, str], now: float | None = None) -> PsRow:
    now = now or time.time()
    state = c.state
    exited = state.status in (Status.EXITED, Status.STOPPED)
    ports = state.network_status.get("ports") if state.network_status else None
    return PsRow(
        ID=c.short_id,
        Id=c.id,
        Image=c.config.image_name,
        ImageID=c.config.image_id or "",
        Command=" ".join(c.config.command),
        CreatedAt=_iso(c.created),
        Created=c.created,
        CreatedHuman=_iso(c.created),
        RunningFor=_ago(c.created, now),
        Status=status_text(c, now),
        State=state.status.value,
        Ports=ports_text(ports if ports is not None else c.config.ports),
        Names=c.name,
        Labels=dict(c.config.labels),
        Mounts=[],
        Networks=list(c.config.networks)
        or (["skiff"] if c.config.network_mode == "bridge" else []),
        Pid=state.pid,
        ExitCode=state.exit_code if state.exit_code is not None else 0,
        Exited=exited,
        ExitedAt=state.finished_at,
        StartedAt=state.started_at,
        AutoRemove=c.config.auto_remove,
        Pod=c.config.pod_id or "",
        PodName=pod_names.get(c.config.pod_id or "", ""),
        IsInfra=c.config.infra,
    )
