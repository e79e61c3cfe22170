"""Facts about the host that shape a container's spec, read once per spec.

Spec generation depends on the machine: which cgroup layout it has (v1,
v2, or v1 with a cgroup2 mount owning controllers — this host), which
capabilities skiff can hand on (its bounding set; CAP_SYS_RESOURCE is
withheld here), which resource limits it holds (a container cannot get a
hard rlimit above them without CAP_SYS_RESOURCE), the kernel version
(seccomp ``minKernel``), the architecture, and skiff's own
``oom_score_adj`` (a container may not go below it). ``HostInfo.detect()``
reads them from /proc and /sys; tests build a ``HostInfo`` by hand to
generate the spec another machine would get.
"""

from __future__ import annotations

import os
import re
import resource
from dataclasses import dataclass, field
from pathlib import Path

from skiff.runtime.specgen.capabilities import from_mask

RLIM_INFINITY = 2**64 - 1
"""The OCI spec's (and the kernel's) "unlimited" for an rlimit."""

RLIMITS: dict[str, int] = {
    name: getattr(resource, name)
    for name in (
        "RLIMIT_AS",
        "RLIMIT_CORE",
        "RLIMIT_CPU",
        "RLIMIT_DATA",
        "RLIMIT_FSIZE",
        "RLIMIT_LOCKS",
        "RLIMIT_MEMLOCK",
        "RLIMIT_MSGQUEUE",
        "RLIMIT_NICE",
        "RLIMIT_NOFILE",
        "RLIMIT_NPROC",
        "RLIMIT_RSS",
        "RLIMIT_RTPRIO",
        "RLIMIT_RTTIME",
        "RLIMIT_SIGPENDING",
        "RLIMIT_STACK",
    )
    if hasattr(resource, name)
}

CAP_SYS_RESOURCE = "CAP_SYS_RESOURCE"


@dataclass(frozen=True)
class CgroupLayout:
    """``version`` 2: unified at /sys/fs/cgroup. ``version`` 1: legacy
    hierarchies; ``hybrid_controllers`` are the controllers a cgroup2 mount
    at /sys/fs/cgroup/unified owns (empty when there is none or it owns
    none) — the case crun < 1.9 refuses."""

    version: int
    hybrid_controllers: tuple[str, ...] = ()

    @property
    def is_hybrid(self) -> bool:
        return self.version == 1 and bool(self.hybrid_controllers)


def _mount_types(mountinfo: str) -> dict[str, str]:
    """mount point → filesystem type (the last mount wins, as lookups do)."""
    types: dict[str, str] = {}
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        types[point] = right.split()[0] if right.split() else ""
    return types


def detect_cgroup_layout(
    mountinfo: str | None = None, cgroup_root: Path = Path("/sys/fs/cgroup")
) -> CgroupLayout:
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    types = _mount_types(mountinfo)
    root = str(cgroup_root)
    if types.get(root) == "cgroup2":
        return CgroupLayout(2)
    unified = root + "/unified"
    controllers: tuple[str, ...] = ()
    if types.get(unified) == "cgroup2":
        try:
            controllers = tuple(
                (cgroup_root / "unified" / "cgroup.controllers").read_text().split()
            )
        except OSError:
            controllers = ()
    return CgroupLayout(1, controllers)


def _status_mask(status: str, key: str) -> int:
    match = re.search(rf"^{key}:\s*([0-9a-fA-F]+)$", status, re.MULTILINE)
    return int(match.group(1), 16) if match else 0


def _kernel_version(release: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _limit(value: int) -> int:
    return RLIM_INFINITY if value == resource.RLIM_INFINITY else value


@dataclass(frozen=True)
class HostInfo:
    cgroup: CgroupLayout
    bounding_caps: frozenset[str]
    effective_caps: frozenset[str]
    rlimits: dict[str, tuple[int, int]] = field(default_factory=dict)
    """``RLIMIT_*`` → (soft, hard) of this process, RLIM_INFINITY for unlimited."""
    kernel: tuple[int, int] = (0, 0)
    machine: str = "x86_64"
    oom_score_adj: int = 0
    hostname: str = "localhost"

    @classmethod
    def detect(cls) -> HostInfo:
        status = Path("/proc/self/status").read_text()
        try:
            oom = int(Path("/proc/self/oom_score_adj").read_text())
        except (OSError, ValueError):
            oom = 0
        uname = os.uname()
        return cls(
            cgroup=detect_cgroup_layout(),
            bounding_caps=from_mask(_status_mask(status, "CapBnd")),
            effective_caps=from_mask(_status_mask(status, "CapEff")),
            rlimits={
                name: (_limit(soft), _limit(hard))
                for name, number in RLIMITS.items()
                for soft, hard in [resource.getrlimit(number)]
            },
            kernel=_kernel_version(uname.release),
            machine=uname.machine,  # platform.machine() is the same, at the cost of importing platform
            oom_score_adj=oom,
            hostname=uname.nodename,
        )

    @property
    def can_raise_rlimits(self) -> bool:
        return CAP_SYS_RESOURCE in self.effective_caps

    def held(self, rlimit: str) -> tuple[int, int]:
        return self.rlimits.get(rlimit, (RLIM_INFINITY, RLIM_INFINITY))
