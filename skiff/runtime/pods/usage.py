"""``pod stats`` and ``pod top``, and the whole pod's usage from its cgroup.

``pod_stats`` samples every container of the given pods (as ``stats``
does, through ``skiff.runtime.usage``) and turns them into podman 4.3's
``pod stats`` rows, whose values are already text: a zero percentage or
pid count is ``--``, zero bytes both ways ``-- / --`` (podman's
``floatToPercentString``/``combineHumanValues``), a container that is not
running all ``--``.

``pod_usage`` reads the pod's own cgroup (PARENT/POD_ID): its counters
include every member's, so this is the pod's total CPU time, memory and
pids — what a pod-level limit acts on, and what the CRI reports as the
sandbox's stats.

``pod_processes`` is ``pod top``: the processes of every running container
of the pod in one table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skiff.errors import ContainerStateError
from skiff.runtime import cgroups
from skiff.runtime.engine import Runtime
from skiff.runtime.pods.lifecycle import containers_of
from skiff.runtime.pods.model import Pod
from skiff.runtime.records import Status
from skiff.runtime.stats import StatsSample, StatsTarget, sample_stats, stats_report

POD_STATS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Pod", "POD"),
    ("CID", "CID"),
    ("Name", "NAME"),
    ("CPU", "CPU %"),
    ("MemUsage", "MEM USAGE/ LIMIT"),
    ("Mem", "MEM %"),
    ("NetIO", "NET IO"),
    ("BlockIO", "BLOCK IO"),
    ("PIDS", "PIDS"),
)
POD_STATS_HEADERS = {
    "Pod": "POD",
    "CID": "CID",
    "CPU": "CPU %",
    "MemUsage": "MEM USAGE/ LIMIT",
    "MemUsageBytes": "MEM USAGE/ LIMIT",
    "Mem": "MEM",
    "NetIO": "NET IO",
    "BlockIO": "BLOCK IO",
    "PIDS": "PIDS",
}
NOT_AVAILABLE = "--"


def _percent(value: float) -> str:
    return f"{value:.2f}%" if value else NOT_AVAILABLE


def _pair(a: int, b: int, unit: Any) -> str:
    if a == 0 and b == 0:
        return f"{NOT_AVAILABLE} / {NOT_AVAILABLE}"
    return f"{unit(a)} / {unit(b)}"


@dataclass
class PodStatsRow:
    """One container of a pod, as ``pod stats`` prints it (podman's PodStatsReport)."""

    CPU: str
    MemUsage: str
    MemUsageBytes: str
    Mem: str
    NetIO: str
    BlockIO: str
    PIDS: str
    Pod: str
    CID: str
    Name: str

    def json(self) -> dict[str, str]:
        return dict(self.__dict__)


def _row(pod: Pod, record: dict[str, Any], running: bool) -> PodStatsRow:
    from skiff.gotemplate.units import bytes_size, human_size

    def human(n: int) -> str:
        return str(human_size(n)).replace(" ", "")

    if not running:
        na = NOT_AVAILABLE
        return PodStatsRow(
            na, f"{na} / {na}", f"{na} / {na}", na, f"{na} / {na}", f"{na} / {na}", na,
            pod.short_id, record["ContainerID"][:12], record["Name"],
        )  # fmt: skip
    return PodStatsRow(
        CPU=_percent(record["CPU"]),
        MemUsage=_pair(record["MemUsage"], record["MemLimit"], human),
        MemUsageBytes=_pair(record["MemUsage"], record["MemLimit"], bytes_size),
        Mem=_percent(record["MemPerc"]),
        NetIO=_pair(record["NetInput"], record["NetOutput"], human),
        BlockIO=_pair(record["BlockInput"], record["BlockOutput"], human),
        PIDS=str(record["PIDs"]) if record["PIDs"] else NOT_AVAILABLE,
        Pod=pod.short_id,
        CID=record["ContainerID"][:12],
        Name=record["Name"],
    )


def pod_stats(
    rt: Runtime, pods: Sequence[Pod], previous: Sequence[StatsSample] | None = None
) -> tuple[list[PodStatsRow], list[StatsSample]]:
    """One row per container of ``pods`` (and the samples, for the next round's CPU %)."""
    from skiff.runtime.usage import sample_containers

    rows: list[PodStatsRow] = []
    all_samples: list[StatsSample] = []
    for pod in pods:
        containers = containers_of(rt, pod)
        samples = sample_containers(rt, containers)
        records = stats_report(previous, samples)
        for sample, record in zip(samples, records, strict=True):
            rows.append(_row(pod, record, sample.running))
        all_samples += samples
    return rows, all_samples


def pod_usage(rt: Runtime, pod: Pod) -> StatsSample:
    """The pod's cgroup as one sample (CPU, memory, pids of all members together).

    Not running (no container of the pod runs): a sample of zeros.
    """
    containers = containers_of(rt, pod)
    running = [c for c in containers if c.state.status in (Status.RUNNING, Status.PAUSED)]
    infra = next((c for c in running if c.config.infra), None)
    anchor = infra or (running[0] if running else None)
    if anchor is None:
        return sample_stats(StatsTarget(pod.id, pod.name, None))
    target = StatsTarget(
        id=pod.id,
        name=pod.name,
        pid=anchor.state.pid,
        cgroup_path=pod.config.cgroup_path,
        netns_pid=anchor.state.pid if pod.config.network_mode != "host" else None,
        started_at=min(c.state.started_at for c in running) or None,
    )
    try:
        return sample_stats(target, cgroups.CgroupMounts.read())
    except ContainerStateError:
        return sample_stats(StatsTarget(pod.id, pod.name, None))


def pod_processes(
    rt: Runtime, pod: Pod, descriptors: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """``pod top``: the processes of every running container of the pod."""
    from skiff.runtime.usage import container_processes

    headers: list[str] = []
    rows: list[list[str]] = []
    running = [
        c for c in containers_of(rt, pod) if c.state.status in (Status.RUNNING, Status.PAUSED)
    ]
    if not running:
        raise ContainerStateError(
            "pod top can only be used on pods with at least one running container",
            f"start pod {pod.name} first",
        )
    for container in running:
        try:
            headers, found = container_processes(rt, container, descriptors)
        except ContainerStateError:
            continue  # stopped while we looked
        rows += found
    return headers, rows
