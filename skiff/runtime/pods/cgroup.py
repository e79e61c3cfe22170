"""The pod's own cgroup: PARENT/POD_ID, above every member's cgroup.

Every container of a pod gets the pod's cgroup path as its cgroup parent,
so the runtime creates ``PARENT/POD_ID/CONTAINER_ID``: a limit written to
the pod's cgroup (``pod create --memory 100m``) bounds the members
together, and the pod cgroup's counters (all hierarchical) are the whole
pod's usage — what ``pod_usage`` reads for the CRI's pod sandbox stats.

The cgroup is made at ``pod create`` (as podman does, so ``pod inspect``
shows a path that exists) and again at ``pod start`` after a reboot,
with the limits written each time; it is removed at ``pod rm`` once the
members' cgroups are gone. Limits are written here (cgroupfs, as the rest
of skiff) in podman's units: cgroup v1 ``memory.limit_in_bytes``,
``memory.memsw.limit_in_bytes`` (twice the memory unless ``--memory-swap``,
only where swap accounting exists), ``cpu.cfs_quota_us``/``cfs_period_us``,
``cpu.shares``, ``cpuset.*``, ``pids.max``; on v2 ``memory.max``,
``memory.swap.max``, ``cpu.max``, ``cpu.weight`` (podman's shares→weight
formula), ``cpuset.*`` and ``pids.max``, after enabling those controllers
in the ancestors' ``cgroup.subtree_control``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from skiff.errors import ContainerError
from skiff.runtime import cgroups
from skiff.runtime.pods.model import PodResources
from skiff.runtime.specgen.limits import DEFAULT_CPU_PERIOD
from skiff.runtime.specgen.spec import DEFAULT_CGROUP_PARENT


def pod_cgroup_path(pod_id: str, parent: str = "") -> str:
    return f"{(parent or DEFAULT_CGROUP_PARENT).rstrip('/')}/{pod_id}"


def _write(path: Path, value: str, *, optional: bool = False) -> None:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except FileNotFoundError:
        if optional:
            return
        raise ContainerError(
            f"cannot set the pod limit {path.name}: the file does not exist",
            "the cgroup controller it belongs to is not mounted here",
        ) from None
    except OSError as exc:
        raise ContainerError(
            f"cannot set the pod limit {path.name} to {value}: {exc.strerror}",
            "check the value against the machine (CPUs, memory nodes)",
        ) from exc


def _v1_limits(cgroup: cgroups.Cgroup, r: PodResources) -> None:
    memory = cgroup.dir("memory")
    if memory is not None and r.memory is not None:
        _write(memory / "memory.limit_in_bytes", str(r.memory))
        swap = r.memory_swap if r.memory_swap is not None else 2 * r.memory
        _write(memory / "memory.memsw.limit_in_bytes", str(swap), optional=True)
    cpu = cgroup.dir("cpu")
    if cpu is not None:
        if r.cpus is not None:
            _write(cpu / "cpu.cfs_period_us", str(DEFAULT_CPU_PERIOD))
            _write(cpu / "cpu.cfs_quota_us", str(int(r.cpus * DEFAULT_CPU_PERIOD)))
        if r.cpu_shares is not None:
            _write(cpu / "cpu.shares", str(r.cpu_shares))
    cpuset = cgroup.dir("cpuset")
    if cpuset is not None:
        if r.cpuset_cpus:
            _write(cpuset / "cpuset.cpus", r.cpuset_cpus)
        if r.cpuset_mems:
            _write(cpuset / "cpuset.mems", r.cpuset_mems)
    pids = cgroup.dir("pids")
    if pids is not None and r.pids_limit is not None:
        _write(pids / "pids.max", str(r.pids_limit) if r.pids_limit > 0 else "max")


def _enable_controllers(directory: Path, mountpoint: Path, wanted: list[str]) -> None:
    """v2: a controller's files appear in a cgroup only when its parent delegates it."""
    chain = []
    current = directory.parent
    while True:
        chain.append(current)
        if current in (mountpoint, current.parent):
            break
        current = current.parent
    for parent in reversed(chain):
        for controller in wanted:
            try:
                with open(parent / "cgroup.subtree_control", "w", encoding="ascii") as f:
                    f.write(f"+{controller}")
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.EINVAL, errno.EBUSY):
                    raise ContainerError(
                        f"cannot enable the {controller} controller in {parent}: {exc.strerror}"
                    ) from exc


def _v2_limits(cgroup: cgroups.Cgroup, r: PodResources, mountpoint: Path) -> None:
    directory = cgroup.dir(cgroups.UNIFIED)
    if directory is None:
        return
    wanted = []
    if r.memory is not None:
        wanted.append("memory")
    if r.cpus is not None or r.cpu_shares is not None:
        wanted.append("cpu")
    if r.cpuset_cpus or r.cpuset_mems:
        wanted.append("cpuset")
    if r.pids_limit is not None:
        wanted.append("pids")
    _enable_controllers(directory, mountpoint, wanted)
    if r.memory is not None:
        _write(directory / "memory.max", str(r.memory))
        if r.memory_swap is not None:
            swap = "max" if r.memory_swap == -1 else str(max(0, r.memory_swap - r.memory))
            _write(directory / "memory.swap.max", swap, optional=True)
    if r.cpus is not None:
        _write(directory / "cpu.max", f"{int(r.cpus * DEFAULT_CPU_PERIOD)} {DEFAULT_CPU_PERIOD}")
    if r.cpu_shares is not None:
        weight = 1 + ((r.cpu_shares - 2) * 9999) // 262142
        _write(directory / "cpu.weight", str(weight))
    if r.cpuset_cpus:
        _write(directory / "cpuset.cpus", r.cpuset_cpus)
    if r.cpuset_mems:
        _write(directory / "cpuset.mems", r.cpuset_mems)
    if r.pids_limit is not None:
        _write(directory / "pids.max", str(r.pids_limit) if r.pids_limit > 0 else "max")


def create_pod_cgroup(path: str, resources: PodResources) -> None:
    """Make the pod's cgroup (idempotent) and write its limits."""
    mounts = cgroups.CgroupMounts.read()
    cgroup = cgroups.create_cgroup(path, mounts)
    if resources.empty():
        return
    if cgroup.version == 2:
        assert mounts.unified is not None
        _v2_limits(cgroup, resources, mounts.unified.mountpoint)
    else:
        _v1_limits(cgroup, resources)


def remove_pod_cgroup(path: str) -> bool:
    """Remove the pod's cgroup and its empty children; False if something still runs there."""
    return cgroups.remove_cgroup(path, recursive=True)


def pod_cgroup_exists(path: str) -> bool:
    try:
        return os.path.isdir(cgroups.cgroup_at(path).any_dir())
    except ContainerError:
        return False
