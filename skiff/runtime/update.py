"""``update``: change a container's cgroup limits, now and for later starts.

The new limits are written into the container's recorded SpecGenerator
(``ResourceOptions``), so that every later start — a restart, a restart
policy, ``skiff start`` after a stop — generates its config.json with them.
A running (or paused) container also gets them at once through the OCI
runtime's ``update --resources``, with only the sections that changed: a
``linux.resources`` object that lacks ``devices`` leaves the device rules
alone, and one without ``pids`` leaves the pids limit alone.

Unlimited is -1 on the command line (``--pids-limit -1``, ``--memory-swap
-1``) and in what the runtime gets; runc writes "max" then. podman 4.3
changes only the running cgroup (a restart loses the change, and a created
container cannot be updated at all); skiff records first, and a container
that is not running just keeps the new limits for its next start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from skiff.errors import UsageError
from skiff.runtime import serde
from skiff.runtime.engine import Runtime
from skiff.runtime.records import Container, Status
from skiff.runtime.specgen.generator import ResourceOptions


@dataclass(frozen=True)
class UpdateOptions:
    """The limits to change; None leaves a limit as it is."""

    memory: int | None = None
    """Bytes; -1 removes the limit."""
    memory_reservation: int | None = None
    memory_swap: int | None = None
    """memory + swap in bytes; -1 unlimited."""
    memory_swappiness: int | None = None
    cpus: float | None = None
    """0 removes the CPU quota."""
    cpu_period: int | None = None
    cpu_quota: int | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None
    """≤ 0 removes the limit."""

    def empty(self) -> bool:
        return all(getattr(self, f) is None for f in self.__dataclass_fields__)


def apply(res: ResourceOptions, opts: UpdateOptions) -> ResourceOptions:
    """``res`` with the changes of ``opts`` (not yet validated)."""
    out = replace(res)
    if opts.memory is not None:
        out.memory = None if opts.memory < 0 else opts.memory
        if out.memory is None:
            out.memory_swap = None
    if opts.memory_swap is not None:
        out.memory_swap = opts.memory_swap
    if opts.memory_reservation is not None:
        out.memory_reservation = opts.memory_reservation or None
    if opts.memory_swappiness is not None:
        out.memory_swappiness = None if opts.memory_swappiness < 0 else opts.memory_swappiness
    if opts.cpus is not None:
        out.cpus = opts.cpus or None
        out.cpu_quota = None
        out.cpu_period = None
    if opts.cpu_quota is not None or opts.cpu_period is not None:
        out.cpus = None
        if opts.cpu_quota is not None:
            out.cpu_quota = opts.cpu_quota
        if opts.cpu_period is not None:
            out.cpu_period = opts.cpu_period
    if opts.cpu_shares is not None:
        out.cpu_shares = opts.cpu_shares
    if opts.cpuset_cpus is not None:
        out.cpuset_cpus = opts.cpuset_cpus
    if opts.cpuset_mems is not None:
        out.cpuset_mems = opts.cpuset_mems
    if opts.pids_limit is not None:
        out.pids_limit = opts.pids_limit if opts.pids_limit > 0 else None
    return out


def runtime_resources(res: ResourceOptions, opts: UpdateOptions) -> dict[str, Any]:
    """The ``linux.resources`` object for ``runc update``: the sections
    ``opts`` touches, from the updated ``res``; removed limits are -1."""
    from skiff.runtime.specgen.limits import DEFAULT_CPU_PERIOD

    out: dict[str, Any] = {}
    if any(
        v is not None
        for v in (opts.memory, opts.memory_swap, opts.memory_reservation, opts.memory_swappiness)
    ):
        memory: dict[str, Any] = {
            "limit": res.memory if res.memory is not None else -1,
        }
        if res.memory_swap is not None:
            memory["swap"] = res.memory_swap
        else:
            memory["swap"] = 2 * res.memory if res.memory is not None else -1
        if opts.memory_reservation is not None:
            memory["reservation"] = res.memory_reservation or 0
        if res.memory_swappiness is not None:
            memory["swappiness"] = res.memory_swappiness
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if opts.cpus is not None or opts.cpu_quota is not None or opts.cpu_period is not None:
        if res.cpus is not None:
            cpu["quota"] = int(res.cpus * DEFAULT_CPU_PERIOD)
            cpu["period"] = DEFAULT_CPU_PERIOD
        else:
            cpu["quota"] = res.cpu_quota if res.cpu_quota is not None else -1
            cpu["period"] = res.cpu_period if res.cpu_period is not None else DEFAULT_CPU_PERIOD
    if opts.cpu_shares is not None:
        cpu["shares"] = res.cpu_shares
    if opts.cpuset_cpus is not None and res.cpuset_cpus:
        cpu["cpus"] = res.cpuset_cpus
    if opts.cpuset_mems is not None and res.cpuset_mems:
        cpu["mems"] = res.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if opts.pids_limit is not None:
        out["pids"] = {"limit": res.pids_limit if res.pids_limit is not None else -1}
    return out


def update_container(rt: Runtime, container: Container, opts: UpdateOptions) -> Container:
    """Record the new limits, and apply them now if the container runs."""
    from skiff.runtime import lifecycle
    from skiff.runtime.create import spec_of
    from skiff.runtime.specgen.host import HostInfo

    if opts.empty():
        raise UsageError(
            "update: no limits to change", "give at least one of --memory, --cpus, --pids-limit ..."
        )
    with rt.lock(container.id):
        container = lifecycle.sync(rt, container)
        if container.state.status == Status.REMOVING:
            raise UsageError(f"container {container.name} is being removed")
        sg = spec_of(container)
        sg.resources = apply(sg.resources, opts)
        sg.validate(HostInfo.detect())
        if container.state.status in (Status.RUNNING, Status.PAUSED):
            resources = runtime_resources(sg.resources, opts)
            if resources:
                rt.oci(container.config.runtime).update(container.id, resources)
        container.config.spec = serde.to_data(sg)
        rt.records.save_config(container)
        return container
