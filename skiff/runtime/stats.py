"""``skiff stats``: resource usage samples of running containers, and podman's report.

A *sample* (``sample_stats``) is what the kernel counts for one container
at one moment: CPU time, memory and the memory limit, pids, block I/O from
its cgroup (``skiff.runtime.cgroups``), and network bytes from
``/proc/PID/net/dev`` of a process in its network namespace (the counters
of every interface but ``lo``; /proc/PID/net shows the namespace of that
process, so no namespace is entered). A *report* (``stats_report``) turns
samples into podman's ``ContainerStats`` records, with podman 4.3's
formulas:

- ``CPU`` (percent of one CPU): CPU time used between the previous sample
  and this one, divided by the wall time between them. A container without
  a previous sample (the first report of a stream, and ``--no-stream``) is
  measured since it started — which is why podman's ``CPU %`` equals its
  ``AVG CPU %`` in a single report. A previous sample with more CPU time
  than the current one, or another start time, means the container
  restarted: treated as none.
- ``AvgCPU``: CPU time since start divided by the time since start.
- ``MemLimit``: the cgroup's limit, or the machine's physical memory when
  there is none or it is larger; ``MemPerc`` = usage / that limit.
- ``UpTime`` and ``Duration`` are the total CPU time (podman's ``CPU TIME``
  column), not the time since start.
- a container that is not running has a record of zeros.

Delays between samples are measured on the monotonic clock; ``SystemNano``
is the wall-clock time of the sample, as podman reports it.

What ``skiff stats`` prints of the records is ``skiff.cli.statsview``'s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from skiff.errors import ContainerError, ContainerStateError
from skiff.runtime import cgroups

REPORT_FIELDS = (
    "AvgCPU",
    "ContainerID",
    "Name",
    "PerCPU",
    "CPU",
    "CPUNano",
    "CPUSystemNano",
    "SystemNano",
    "MemUsage",
    "MemLimit",
    "MemPerc",
    "NetInput",
    "NetOutput",
    "BlockInput",
    "BlockOutput",
    "PIDs",
    "UpTime",
    "Duration",
)
"""The keys of a report record, in podman's ``define.ContainerStats`` order."""


# --- sampling -------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsTarget:
    """What sampling needs to know about one container (from its record)."""

    id: str
    name: str
    pid: int | None
    """The container's init process on the host; None when it is not running."""
    cgroup_path: str | None = None
    """The spec's ``linux.cgroupsPath``; None: the cgroup ``pid`` is in."""
    netns_pid: int | None = None
    """A process in the container's network namespace (normally ``pid``, for
    a pod member the infra container's); None: no network of its own
    (``--network none`` or host), reported as 0 bytes."""
    started_at: float | None = None
    """When the container started, seconds since the epoch (AvgCPU, first CPU %)."""


@dataclass(frozen=True)
class StatsSample:
    """The counters of one container at one moment."""

    id: str
    name: str
    running: bool
    wall_ns: int
    mono_ns: int
    started_ns: int | None = None
    cpu_ns: int = 0
    cpu_system_ns: int = 0
    per_cpu_ns: tuple[int, ...] = ()
    mem_usage: int = 0
    mem_limit: int | None = None
    """The cgroup's own limit; None: none."""
    mem_cache: int = 0
    net_rx: int = 0
    net_tx: int = 0
    block_read: int = 0
    block_write: int = 0
    pids: int = 0
    pids_limit: int | None = None


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """``/proc/net/dev`` → {interface: (received bytes, transmitted bytes)}."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        values = rest.split()
        if len(values) < 16:
            raise ValueError(f"short line in net/dev: {line.strip()!r}")
        out[name.strip()] = (int(values[0]), int(values[8]))
    return out


def read_net_io(pid: int) -> tuple[int, int]:
    """Bytes received and sent by the network namespace of ``pid``, ``lo`` excluded."""
    path = f"/proc/{pid}/net/dev"
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise ContainerStateError(
            f"process {pid} is gone", "its network namespace cannot be read"
        ) from exc
    except OSError as exc:
        raise ContainerError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        interfaces = parse_net_dev(text)
    except ValueError as exc:
        raise ContainerError(f"cannot parse {path}: {exc}") from exc
    rx = sum(v[0] for name, v in interfaces.items() if name != "lo")
    tx = sum(v[1] for name, v in interfaces.items() if name != "lo")
    return rx, tx


def _sample(target: StatsTarget, mounts: cgroups.CgroupMounts | None) -> StatsSample:
    assert target.pid is not None
    if target.cgroup_path is not None:
        cgroup = cgroups.cgroup_at(target.cgroup_path, mounts)
    else:
        cgroup = cgroups.cgroup_of_pid(target.pid, mounts)
    if not os.path.exists(f"/proc/{target.pid}"):
        raise ContainerStateError(f"process {target.pid} is gone")
    wall_ns, mono_ns = time.time_ns(), time.monotonic_ns()
    cpu = cgroups.read_cpu(cgroup)
    memory = cgroups.read_memory(cgroup)
    pids = cgroups.read_pids(cgroup)
    blkio = cgroups.read_blkio(cgroup)
    if cpu is None and memory is None and pids is None:
        raise ContainerError(
            "no cpu, memory or pids accounting is mounted for its cgroup",
            "mount the cgroup controllers (cpuacct, memory, pids) to see stats",
        )
    rx, tx = read_net_io(target.netns_pid) if target.netns_pid is not None else (0, 0)
    return StatsSample(
        id=target.id,
        name=target.name,
        running=True,
        wall_ns=wall_ns,
        mono_ns=mono_ns,
        started_ns=_started_ns(target),
        cpu_ns=cpu.total_ns if cpu else 0,
        cpu_system_ns=cpu.system_ns if cpu else 0,
        per_cpu_ns=cpu.per_cpu_ns if cpu else (),
        mem_usage=memory.usage if memory else 0,
        mem_limit=memory.limit if memory else None,
        mem_cache=memory.cache if memory else 0,
        net_rx=rx,
        net_tx=tx,
        block_read=blkio.read_bytes if blkio else 0,
        block_write=blkio.write_bytes if blkio else 0,
        pids=pids.current if pids else 0,
        pids_limit=pids.limit if pids else None,
    )


def _started_ns(target: StatsTarget) -> int | None:
    return None if target.started_at is None else int(target.started_at * 1_000_000_000)


def sample_stats(target: StatsTarget, mounts: cgroups.CgroupMounts | None = None) -> StatsSample:
    """Read one container's counters now.

    A target without a pid gives a sample of zeros (``running`` False).
    Raises ContainerStateError when the container stops while it is read
    (its process or cgroup is gone) — a caller listing all containers skips
    it — and ContainerError when its cgroup cannot be read. ``mounts``
    (``CgroupMounts.read()``) can be passed to sample many containers.
    """
    if target.pid is None:
        return StatsSample(
            target.id,
            target.name,
            running=False,
            wall_ns=time.time_ns(),
            mono_ns=time.monotonic_ns(),
            started_ns=_started_ns(target),
        )
    try:
        return _sample(target, mounts)
    except ContainerStateError as exc:
        raise ContainerStateError(
            f"container {target.name} ({target.id[:12]}) is not running: {exc.message}",
            "it stopped while its statistics were read",
        ) from exc
    except ContainerError as exc:
        raise ContainerError(
            f"cannot read the statistics of container {target.name} ({target.id[:12]}): "
            f"{exc.message}",
            exc.hint,
        ) from exc


# --- the report -------------------------------------------------------------------------


def physical_memory() -> int:
    """The machine's RAM in bytes (podman's cap for ``MemLimit``)."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _percent(part: float, whole: float) -> float:
    if part > 0 and whole > 0:
        return part / whole * 100
    return 0.0


def _record(after: StatsSample, before: StatsSample | None, ram: int) -> dict[str, Any]:
    if not after.running:
        record: dict[str, Any] = dict.fromkeys(REPORT_FIELDS, 0)
        record.update(ContainerID=after.id, Name=after.name, PerCPU=[], AvgCPU=0.0, CPU=0.0)
        record["MemPerc"] = 0.0
        return record
    if before is not None and (
        not before.running or before.cpu_ns > after.cpu_ns or before.started_ns != after.started_ns
    ):
        before = None  # (re)started in between: its counters began again
    since_start = None if after.started_ns is None else after.wall_ns - after.started_ns
    if before is not None:
        cpu = _percent(after.cpu_ns - before.cpu_ns, after.mono_ns - before.mono_ns)
    else:
        cpu = _percent(after.cpu_ns, since_start or 0)
    limit = ram if after.mem_limit is None or after.mem_limit > ram else after.mem_limit
    return {
        "AvgCPU": _percent(after.cpu_ns, since_start or 0),
        "ContainerID": after.id,
        "Name": after.name,
        "PerCPU": list(after.per_cpu_ns),
        "CPU": cpu,
        "CPUNano": after.cpu_ns,
        "CPUSystemNano": after.cpu_system_ns,
        "SystemNano": after.wall_ns,
        "MemUsage": after.mem_usage,
        "MemLimit": limit,
        "MemPerc": _percent(after.mem_usage, limit),
        "NetInput": after.net_rx,
        "NetOutput": after.net_tx,
        "BlockInput": after.block_read,
        "BlockOutput": after.block_write,
        "PIDs": after.pids,
        "UpTime": after.cpu_ns,
        "Duration": after.cpu_ns,
    }


def stats_report(
    samples_before: Iterable[StatsSample] | None, samples_after: Sequence[StatsSample]
) -> list[dict[str, Any]]:
    """podman's ``ContainerStats`` records for ``samples_after``, one per sample, in order.

    ``samples_before`` are the previous round's samples (matched by
    container id; None or missing for a container: measured since it
    started). Values are numbers: percentages as floats, times in
    nanoseconds, sizes in bytes — podman's API form; ``skiff.cli.statsview``
    prints them.
    """
    previous = {s.id: s for s in samples_before or ()}
    ram = physical_memory()
    return [_record(s, previous.get(s.id), ram) for s in samples_after]
