"""Linux capabilities: names, ``--cap-add``/``--cap-drop``, the five sets.

Defaults are podman 4's on Debian (containers.conf ``default_capabilities``).
``ALL`` means every capability this kernel knows *and skiff itself holds in
its bounding set*: asking the runtime for one we lack (CAP_SYS_RESOURCE in
this sandbox) makes ``capset`` fail inside the runtime with an opaque EPERM,
so such a request is refused up front with the reason.

Sets (podman 4.3, checked with ``podman run --user ... grep Cap
/proc/self/status``):

- root: bounding = effective = permitted = the merged list; inheritable and
  ambient empty (CVE-2022-27651: a non-empty inheritable set lets file
  capabilities of any binary in the image grant themselves to a process);
- another user: bounding = the merged list; effective, permitted,
  inheritable and ambient = only the capabilities given with ``--cap-add``
  (ambient is the one way a non-root exec keeps a capability, and it needs
  the same capability in inheritable). Without ``--cap-add`` all four are
  empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from skiff.errors import UsageError

CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
"""Indexed by capability number (linux/capability.h)."""

DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
)
"""Debian's /usr/share/containers/containers.conf ``default_capabilities``."""

ALL = "ALL"


def normalize(name: str) -> str:
    """``net_admin``, ``NET_ADMIN``, ``cap_net_admin`` → ``CAP_NET_ADMIN``;
    ``all`` → ``ALL``. Unknown names are a UsageError."""
    upper = name.strip().upper()
    if upper == ALL:
        return ALL
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in CAPABILITIES:
        raise UsageError(
            f"unknown capability {name!r}",
            "see capabilities(7); names are accepted with or without CAP_, in any case",
        )
    return upper


def from_mask(mask: int) -> frozenset[str]:
    """The capability names set in a /proc/PID/status ``Cap*`` bit mask."""
    return frozenset(name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1)


def _sorted(caps: Iterable[str]) -> list[str]:
    """Alphabetical, as podman lists them (runtimes do not care)."""
    return sorted(set(caps))


def merge(
    base: Sequence[str], add: Sequence[str], drop: Sequence[str], available: frozenset[str]
) -> list[str]:
    """The bounding list: ``base`` + ``add`` - ``drop``, ``ALL`` on either side.

    ``available`` is what ``ALL`` stands for (the caps skiff can hand on).
    """
    adds = [normalize(c) for c in add]
    drops = [normalize(c) for c in drop]
    if ALL in adds and ALL in drops:
        raise UsageError("adding all capabilities and dropping all capabilities is not allowed")
    both = sorted(set(adds) & set(drops) - {ALL})
    if both:
        raise UsageError(
            f"capability {both[0]} cannot be both added and dropped",
            "give it to --cap-add or to --cap-drop, not to both",
        )
    missing = sorted(set(adds) - {ALL} - available)
    if missing:
        raise UsageError(
            f"cannot add capability {missing[0]}: skiff itself does not hold it",
            "a process can only pass on capabilities in its own bounding set "
            "(see CapBnd in /proc/self/status)",
        )
    if ALL in drops:
        return _sorted(adds)
    if ALL in adds:
        return _sorted(available - set(drops))
    return _sorted((set(base) | set(adds)) - set(drops))


@dataclass(frozen=True)
class CapabilitySets:
    bounding: list[str]
    effective: list[str]
    permitted: list[str]
    inheritable: list[str]
    ambient: list[str]

    def to_json(self) -> dict[str, list[str]]:
        """The OCI ``process.capabilities`` object; empty inheritable and
        ambient sets are left out (runtimes treat absent as empty)."""
        out = {
            "bounding": self.bounding,
            "effective": self.effective,
            "permitted": self.permitted,
        }
        if self.inheritable:
            out["inheritable"] = self.inheritable
        if self.ambient:
            out["ambient"] = self.ambient
        return out


def capability_sets(
    *,
    privileged: bool,
    cap_add: Sequence[str],
    cap_drop: Sequence[str],
    uid: int,
    available: frozenset[str],
    defaults: Sequence[str] = DEFAULT_CAPABILITIES,
) -> CapabilitySets:
    """The process's capability sets for ``uid`` (see the module docstring)."""
    base = sorted(available) if privileged else [c for c in defaults if c in available]
    bounding = merge(base, cap_add, cap_drop, available)
    if uid == 0:
        return CapabilitySets(bounding, list(bounding), list(bounding), [], [])
    asked = [c for c in merge([], cap_add, [], available) if c in bounding]
    return CapabilitySets(bounding, list(asked), list(asked), list(asked), list(asked))
