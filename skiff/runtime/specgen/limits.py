"""Resource limits: ``--ulimit`` (rlimits) and cgroup resources.

Rlimits. podman 4 gives every container RLIMIT_NOFILE and RLIMIT_NPROC of
1048576 unless told otherwise. A process can lower a hard limit but not
raise it without CAP_SYS_RESOURCE, and the runtime sets the container's
limits from inside the skiff → conmon → runtime chain; where that chain
holds less (this sandbox: NOFILE 20000, CAP_SYS_RESOURCE withheld) podman's
default makes runc fail with "error setting rlimit type 7". So the defaults
here are podman's *capped at what this process holds*, and an explicit
``--ulimit`` above the held hard limit is refused with the number to use,
unless skiff holds CAP_SYS_RESOURCE.

cgroup resources are written in the OCI v1 vocabulary (``memory.limit``,
``cpu.shares``/``quota``/``period``, ``pids.limit``); runc and crun translate
them for cgroup v2 hosts (shares → weight, swap = memory+swap → swap.max).
``memory.swappiness`` has no v2 equivalent and is refused there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skiff.errors import UsageError
from skiff.runtime.specgen.host import RLIM_INFINITY, RLIMITS, HostInfo

PODMAN_DEFAULT_RLIMIT = 1_048_576
"""podman's RLIMIT_NOFILE and RLIMIT_NPROC for every container (soft = hard)."""
DEFAULT_PIDS_LIMIT = 2048
"""containers.conf ``pids_limit``."""
DEFAULT_CPU_PERIOD = 100_000
MIN_MEMORY = 6 * 1024 * 1024
"""podman's (and Docker's) smallest accepted ``--memory``."""

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtpb]?)(?:i?b)?$", re.IGNORECASE)


def parse_size(text: str, what: str) -> int:
    """``64m``, ``1g``, ``512k``, ``1.5g``, ``1024`` → bytes (binary units,
    as podman's ``--memory``/``--shm-size``)."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise UsageError(
            f"invalid size {text!r} for {what}",
            "use a number with an optional unit b, k, m, g (e.g. 64m)",
        )
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


# --- rlimits -----------------------------------------------------------------


@dataclass(frozen=True)
class Ulimit:
    """One ``--ulimit``: ``name`` as the OCI spec spells it (RLIMIT_NOFILE);
    ``soft``/``hard`` with RLIM_INFINITY for unlimited."""

    name: str
    soft: int
    hard: int

    def to_json(self) -> dict[str, Any]:
        return {"type": self.name, "hard": self.hard, "soft": self.soft}


def _rlimit_value(text: str, spec: str) -> int:
    if text in ("-1", "unlimited"):
        return RLIM_INFINITY
    if not text.isdigit():
        raise UsageError(
            f"invalid ulimit {spec!r}: {text!r} is not a number", "use -1 for unlimited"
        )
    value = int(text)
    if value >= RLIM_INFINITY:
        raise UsageError(f"invalid ulimit {spec!r}: {text} is too large")
    return value


def parse_ulimit(spec: str) -> Ulimit:
    """``nofile=1024[:2048]`` (soft[:hard]; -1 is unlimited) → Ulimit."""
    name, sep, values = spec.partition("=")
    if not sep or not name or not values:
        raise UsageError(f"invalid ulimit {spec!r}", "use NAME=SOFT[:HARD], e.g. nofile=1024:2048")
    rlimit = "RLIMIT_" + name.strip().upper().removeprefix("RLIMIT_")
    if rlimit not in RLIMITS:
        known = ", ".join(sorted(n.removeprefix("RLIMIT_").lower() for n in RLIMITS))
        raise UsageError(f"invalid ulimit type {name!r}", f"known types: {known}")
    soft_text, sep, hard_text = values.partition(":")
    soft = _rlimit_value(soft_text.strip(), spec)
    hard = _rlimit_value(hard_text.strip(), spec) if sep else soft
    if soft > hard:
        raise UsageError(
            f"invalid ulimit {spec!r}: soft limit {soft} is above the hard limit {hard}",
            "the soft limit must be less than or equal to the hard limit",
        )
    return Ulimit(rlimit, soft, hard)


def _fmt(value: int) -> str:
    return "unlimited" if value == RLIM_INFINITY else str(value)


def check_ulimits(ulimits: Sequence[Ulimit], host: HostInfo) -> None:
    """Refuse duplicate types, and hard limits this process cannot grant."""
    seen: set[str] = set()
    for u in ulimits:
        if u.name in seen:
            raise UsageError(f"--ulimit {u.name.removeprefix('RLIMIT_').lower()} given twice")
        seen.add(u.name)
        _, held = host.held(u.name)
        if u.hard > held and not host.can_raise_rlimits:
            short = u.name.removeprefix("RLIMIT_").lower()
            raise UsageError(
                f"--ulimit {short}: the hard limit {_fmt(u.hard)} is above the {_fmt(held)} "
                "this process holds, and raising a hard limit needs CAP_SYS_RESOURCE",
                f"use at most {short}={_fmt(held)}",
            )


def rlimits(ulimits: Sequence[Ulimit], host: HostInfo) -> list[Ulimit]:
    """The process's rlimits: NOFILE and NPROC defaults (podman's, capped at
    what this process holds) unless given, then the ``--ulimit`` values."""
    given = {u.name for u in ulimits}
    out = []
    for name in ("RLIMIT_NOFILE", "RLIMIT_NPROC"):
        if name in given:
            continue
        _, held = host.held(name)
        value = PODMAN_DEFAULT_RLIMIT
        if not host.can_raise_rlimits:
            value = min(value, held)
        out.append(Ulimit(name, value, value))
    return [*out, *ulimits]


# --- cgroup resources ----------------------------------------------------------


_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def validate_cpuset(text: str, what: str) -> None:
    if text and not _CPUSET.match(text):
        raise UsageError(f"invalid {what} {text!r}", "use a list like 0-2,4")
    for part in text.split(",") if text else []:
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            raise UsageError(f"invalid {what} {text!r}: range {part} is reversed")


def parse_cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"invalid --cpus {text!r}", "use a number of CPUs, e.g. 0.5") from None
    if not 0 < value < float("inf"):
        raise UsageError(f"invalid --cpus {text!r}: must be a positive number")
    return value
