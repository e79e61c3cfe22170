"""Seccomp profiles: the containers/Docker profile format → OCI ``linux.seccomp``.

/usr/share/containers/seccomp.json (Debian's golang-github-containers-common)
is not an OCI seccomp object: it lists rules for every architecture and
conditions on capabilities and kernel versions, which an engine resolves
when it builds one container's spec. The resolution here follows what
podman 4 writes (compare ``linux.seccomp`` of a podman container's
config.json; tests/integration/test_specgen_runtime.py does):

- ``archMap``: the entry whose ``architecture`` is the native one gives
  ``architectures`` = [it, *its subArchitectures]; a plain
  ``architectures`` list is copied; both at once is an error.
- Each rule in ``syscalls`` is kept, in order, when its ``includes`` hold —
  every cap in ``caps`` is in the container's bounding set, the native
  architecture (Go's name: amd64, arm64, ...) is in ``arches``, the running
  kernel is at least ``minKernel`` — and its ``excludes`` do not: no cap of
  ``caps`` in the bounding set, the native architecture not in ``arches``.
- A kept rule keeps ``names`` (or the old single ``name``), ``action``,
  ``args`` (``valueTwo`` only when non-zero) and ``errnoRet``; ``comment``,
  ``includes``, ``excludes`` and the symbolic ``errno`` go.

A profile that already is an OCI object (no ``archMap``, no conditions)
passes through the same code unchanged in meaning.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from skiff.errors import ConfigError

ACTIONS = frozenset(
    {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    }
)
OPERATORS = frozenset(
    {
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    }
)

# uname -m → (libseccomp architecture, Go's GOARCH as profiles name it)
_ARCHES: dict[str, tuple[str, str]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"),
    "amd64": ("SCMP_ARCH_X86_64", "amd64"),
    "i386": ("SCMP_ARCH_X86", "386"),
    "i686": ("SCMP_ARCH_X86", "386"),
    "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
    "arm64": ("SCMP_ARCH_AARCH64", "arm64"),
    "armv7l": ("SCMP_ARCH_ARM", "arm"),
    "armv6l": ("SCMP_ARCH_ARM", "arm"),
    "ppc64le": ("SCMP_ARCH_PPC64LE", "ppc64le"),
    "ppc64": ("SCMP_ARCH_PPC64", "ppc64"),
    "s390x": ("SCMP_ARCH_S390X", "s390x"),
    "mips64": ("SCMP_ARCH_MIPS64", "mips64"),
    "mips64el": ("SCMP_ARCH_MIPSEL64", "mips64le"),
    "riscv64": ("SCMP_ARCH_RISCV64", "riscv64"),
}


def native_arches(machine: str | None = None) -> tuple[str, str]:
    """(libseccomp name, Go name) of ``machine`` (default: this host's)."""
    machine = machine or os.uname().machine  # platform.machine(), without importing platform
    try:
        return _ARCHES[machine]
    except KeyError:
        raise ConfigError(
            f"seccomp: unsupported architecture {machine!r}",
            "run with --security-opt seccomp=unconfined",
        ) from None


def _kernel_tuple(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    if match is None:
        raise ValueError(text)
    return int(match.group(1)), int(match.group(2))


def load_profile(path: Path) -> dict[str, Any]:
    """Read a profile file (containers or OCI format) as a JSON object."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"seccomp profile {path} does not exist",
            "install golang-github-containers-common for the default profile, "
            "or pass --security-opt seccomp=unconfined",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read seccomp profile {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"seccomp profile {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"seccomp profile {path} is not a JSON object")
    return data


def _strings(value: Any, what: str, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"seccomp profile {where}: {what} is not a list of strings")
    return list(value)


def _conditions(rule: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = rule.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"seccomp profile {where}: {key!r} is not an object")
    return value


def _applies(
    rule: Mapping[str, Any],
    caps: frozenset[str],
    go_arch: str,
    kernel: tuple[int, int],
    where: str,
) -> bool:
    inc = _conditions(rule, "includes", where)
    exc = _conditions(rule, "excludes", where)
    inc_caps = _strings(inc.get("caps"), "includes.caps", where)
    if inc_caps and not all(c in caps for c in inc_caps):
        return False
    inc_arches = _strings(inc.get("arches"), "includes.arches", where)
    if inc_arches and go_arch not in inc_arches:
        return False
    min_kernel = inc.get("minKernel")
    if min_kernel:
        try:
            if kernel < _kernel_tuple(str(min_kernel)):
                return False
        except ValueError:
            raise ConfigError(
                f"seccomp profile {where}: invalid minKernel {min_kernel!r}",
                "use MAJOR.MINOR, e.g. 4.8",
            ) from None
    exc_caps = _strings(exc.get("caps"), "excludes.caps", where)
    if exc_caps and any(c in caps for c in exc_caps):
        return False
    exc_arches = _strings(exc.get("arches"), "excludes.arches", where)
    return not (exc_arches and go_arch in exc_arches)


def _convert_args(args: Any, where: str) -> list[dict[str, Any]]:
    if args is None:
        return []
    if not isinstance(args, list):
        raise ConfigError(f"seccomp profile {where}: 'args' is not a list")
    out = []
    for arg in args:
        if not isinstance(arg, dict):
            raise ConfigError(f"seccomp profile {where}: an argument is not an object")
        op = arg.get("op")
        if op not in OPERATORS:
            raise ConfigError(f"seccomp profile {where}: unknown operator {op!r}")
        index, value, value_two = arg.get("index", 0), arg.get("value", 0), arg.get("valueTwo", 0)
        if not all(isinstance(v, int) and v >= 0 for v in (index, value, value_two)):
            raise ConfigError(f"seccomp profile {where}: argument numbers must be non-negative")
        item: dict[str, Any] = {"index": index, "value": value}
        if value_two:
            item["valueTwo"] = value_two
        item["op"] = op
        out.append(item)
    return out


def convert(
    profile: Mapping[str, Any],
    *,
    caps: Iterable[str],
    machine: str | None = None,
    kernel: tuple[int, int] = (0, 0),
    source: str = "profile",
) -> dict[str, Any]:
    """Resolve ``profile`` for one container (see the module docstring).

    ``caps``: the container's bounding set; ``machine``: ``uname -m``;
    ``kernel``: (major, minor) of the running kernel; ``source``: named in
    errors.
    """
    cap_set = frozenset(caps)
    scmp_arch, go_arch = native_arches(machine)
    default_action = profile.get("defaultAction")
    if default_action not in ACTIONS:
        raise ConfigError(f"seccomp profile {source}: invalid defaultAction {default_action!r}")
    out: dict[str, Any] = {"defaultAction": default_action}
    if isinstance(profile.get("defaultErrnoRet"), int):
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches = _strings(profile.get("architectures"), "architectures", source)
    arch_map = profile.get("archMap") or []
    if arches and arch_map:
        raise ConfigError(
            f"seccomp profile {source}: both 'architectures' and 'archMap' are given",
            "use one of them",
        )
    if not isinstance(arch_map, list):
        raise ConfigError(f"seccomp profile {source}: 'archMap' is not a list")
    for entry in arch_map:
        if not isinstance(entry, dict):
            raise ConfigError(f"seccomp profile {source}: an archMap entry is not an object")
        if entry.get("architecture") == scmp_arch:
            arches.append(scmp_arch)
            arches.extend(_strings(entry.get("subArchitectures"), "subArchitectures", source))
    if arches:
        out["architectures"] = arches
    flags = _strings(profile.get("flags"), "flags", source)
    if flags:
        out["flags"] = flags
    for key in ("listenerPath", "listenerMetadata"):
        if isinstance(profile.get(key), str) and profile[key]:
            out[key] = profile[key]
    rules = profile.get("syscalls") or []
    if not isinstance(rules, list):
        raise ConfigError(f"seccomp profile {source}: 'syscalls' is not a list")
    syscalls = []
    for n, rule in enumerate(rules):
        where = f"{source}, syscalls[{n}]"
        if not isinstance(rule, dict):
            raise ConfigError(f"seccomp profile {where}: not an object")
        names = _strings(rule.get("names"), "names", where)
        if not names and isinstance(rule.get("name"), str):
            names = [rule["name"]]
        if not names:
            raise ConfigError(f"seccomp profile {where}: no syscall names")
        action = rule.get("action")
        if action not in ACTIONS:
            raise ConfigError(f"seccomp profile {where}: unknown action {action!r}")
        if not _applies(rule, cap_set, go_arch, kernel, where):
            continue
        item: dict[str, Any] = {"names": names, "action": action}
        if isinstance(rule.get("errnoRet"), int):
            item["errnoRet"] = rule["errnoRet"]
        args = _convert_args(rule.get("args"), where)
        if args:
            item["args"] = args
        syscalls.append(item)
    if syscalls:
        out["syscalls"] = syscalls
    return out
