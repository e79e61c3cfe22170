"""crun before 1.9 on hybrid cgroups: every call in a mount namespace without the cgroup2 mount.

crun 1.8 refuses to create containers when the host has cgroup v1
hierarchies and a cgroup2 mount at /sys/fs/cgroup/unified that owns a
controller (this host: hugetlb): "cgroups in hybrid mode not supported".
runc copes, but a container's create, start and delete cost ~40 ms more
with runc here (runc compiles the seccomp filter on every create; crun
takes it precompiled: ``seccomp_cache.py``). crun decides the mode by
statfs() on /sys/fs/cgroup/unified, so where that mount is gone it sees
plain cgroup v1 — and works, as the bench's ``crun-legacy`` shows.

So skiff runs crun through a small script, RUNROOT/crun-hybrid/crun,
written once per boot, for every call — its own (start, kill, delete, ...)
and conmon's (create, exec):

1. unshare a mount namespace with *slave* propagation: mounts the host
   makes later still reach it, nothing done inside reaches the host;
2. detach /sys/fs/cgroup/unified there;
3. exec crun with the arguments.

The namespace is made per call, so every call sees the host's mounts as
they are at that moment (the container's root file system and its network
namespace were mounted a moment earlier by skiff); nothing persists once
the call returns except what crun creates on purpose — the container,
whose own mount namespace starts as a copy of that one, without the cgroup2
mount it never used (crun mounts the container's cgroups itself).

With busybox (``busybox-static``: static, its ``umount`` runs without
fork+exec) the detour costs ~2 ms per call; with util-linux's ``unshare``
and ``umount`` and /bin/sh, ~5 ms. Without either, crun is not usable here
and skiff picks runc, saying why (``skiff info``).

What differs from crun in the host's namespace: propagation *out of* a
container (``rshared``/``shared`` mounts, or rootfs propagation) stops at
the slave namespace. ``create`` gives containers that ask for it runc.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from pathlib import Path

from skiff.runtime.files import replace_file

UNIFIED = "/sys/fs/cgroup/unified"
BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
_APPLETS = ("sh", "umount", "unshare")
_HEADER = "# written by skiff (skiff/runtime/crun_hybrid.py): crun without the cgroup2 mount\n"


def wrapper_path(run_root: Path) -> Path:
    """Where the script lives; named ``crun`` so that messages name crun.
    Not under RUNROOT/runtime, whose directories are the runtimes' state roots."""
    return run_root / "crun-hybrid" / "crun"


def _which(name: str) -> str | None:
    for directory in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _busybox() -> str | None:
    for candidate in BUSYBOX_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def busybox_script(busybox: str, crun: Path) -> str:
    inner = f'umount -l {UNIFIED} 2>/dev/null; exec "$0" "$@"'
    return (
        f"#!{busybox} sh\n{_HEADER}"
        f"exec {busybox} unshare -m --propagation slave {busybox} sh -c "
        f'{shlex.quote(inner)} {shlex.quote(str(crun))} "$@"\n'
    )


def util_linux_script(unshare: str, umount: str, crun: Path) -> str:
    inner = f'{umount} -l {UNIFIED} 2>/dev/null; exec "$0" "$@"'
    return (
        f"#!/bin/sh\n{_HEADER}"
        f"exec {unshare} --mount --propagation slave /bin/sh -c "
        f'{shlex.quote(inner)} {shlex.quote(str(crun))} "$@"\n'
    )


def _candidates(crun: Path) -> list[str]:
    """The scripts this host's tools allow, preferred first (no process run)."""
    out = []
    busybox = _busybox()
    if busybox is not None:
        out.append(busybox_script(busybox, crun))
    unshare, umount = _which("unshare"), _which("umount")
    if unshare is not None and umount is not None and os.access("/bin/sh", os.X_OK):
        out.append(util_linux_script(unshare, umount, crun))
    return out


def _busybox_has_applets(busybox: str) -> bool:
    try:
        listed = subprocess.run(
            [busybox, "--list"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return all(applet in listed for applet in _APPLETS)


def ensure_wrapper(run_root: Path, crun: Path) -> Path | None:
    """The script for ``crun`` (written now if missing or stale), or None when
    this host has no tools to write one with."""
    path = wrapper_path(run_root)
    candidates = _candidates(crun)
    if not candidates:
        return None
    with contextlib.suppress(OSError):
        if path.read_text() in candidates and os.access(path, os.X_OK):
            return path
    text = candidates[0]
    busybox = _busybox()
    if (
        busybox is not None
        and text.startswith(f"#!{busybox}")
        and not _busybox_has_applets(busybox)
    ):
        candidates = candidates[1:]
        if not candidates:
            return None
        text = candidates[0]
    try:
        _write_executable(path, text)
    except OSError:
        return None
    return path


def _write_executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    replace_file(path, text.encode(), 0o755)
