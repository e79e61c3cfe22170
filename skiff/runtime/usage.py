"""``stats`` and ``top`` for container records: which cgroup, which pid, which rootfs.

``skiff.runtime.stats`` and ``skiff.runtime.top`` measure and format; this
module only turns a container's record into what they need — its init
pid, its cgroup (the spec's ``cgroupsPath``, ``/skiff/<id>`` unless
``--cgroup-parent``), the process whose network namespace is the
container's (none with ``--network host``: the host's counters are not the
container's), and its mounted root filesystem (user names for ``top``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from skiff.errors import ContainerStateError
from skiff.runtime import cgroups, lifecycle
from skiff.runtime.engine import Runtime
from skiff.runtime.records import Container, Status
from skiff.runtime.stats import StatsSample, StatsTarget, sample_stats

TOP_NOT_RUNNING = "top can only be used on running containers"


def _running(container: Container) -> bool:
    return container.state.status in (Status.RUNNING, Status.PAUSED) and container.state.pid > 0


def _cgroup_path(container: Container) -> str:
    from skiff.runtime.create import spec_of
    from skiff.runtime.specgen.spec import cgroups_path

    return cgroups_path(spec_of(container).resources, container.id)


def stats_target(container: Container) -> StatsTarget:
    """What ``sample_stats`` needs for ``container`` (no pid when it is not running)."""
    running = _running(container)
    pid = container.state.pid if running else None
    return StatsTarget(
        id=container.id,
        name=container.name,
        pid=pid,
        cgroup_path=_cgroup_path(container) if running else None,
        netns_pid=pid if container.config.network_mode != "host" else None,
        started_at=container.state.started_at or None,
    )


def synced(rt: Runtime, containers: Sequence[Container]) -> list[Container]:
    """The containers with their records brought in line with reality."""
    out = []
    for container in containers:
        with rt.lock(container.id):
            out.append(lifecycle.sync(rt, container))
    return out


def sample_containers(rt: Runtime, containers: Sequence[Container]) -> list[StatsSample]:
    """One sample per container; one that stops while it is read counts as stopped."""
    mounts = cgroups.CgroupMounts.read()
    samples = []
    for container in containers:
        target = stats_target(container)
        try:
            samples.append(sample_stats(target, mounts))
        except ContainerStateError:
            stopped = StatsTarget(container.id, container.name, None)
            samples.append(sample_stats(stopped, mounts))
    return samples


def container_processes(
    rt: Runtime, container: Container, descriptors: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """``top``'s header and rows for a running container."""
    from skiff.runtime.top import top_rows

    with rt.lock(container.id):
        container = lifecycle.sync(rt, container)
    if not _running(container):
        raise ContainerStateError(TOP_NOT_RUNNING, f"container {container.name} is not running")
    cgroup = cgroups.cgroup_at(_cgroup_path(container))
    pids = cgroups.cgroup_procs(cgroup)
    rootfs = Path(container.state.mount_point) if container.state.mount_point else None
    return top_rows(pids, descriptors, rootfs)
