"""The runtime's part of ``skiff info`` (podman's ``host`` keys and container counts).

``skiff.runtime.sysinfo.system_info`` (what ``skiff info`` prints) merges
what ``runtime_info`` returns: everything goes into ``host`` except
``containerStore``, which goes into ``store``. The keys are podman 4's:

- ``ociRuntime`` {name, package, path, version}: the runtime skiff would
  use for a new container (``select_runtime``), with ``version`` the full
  ``--version`` text as podman shows it, plus ``reason``: why this one (a
  runtime passed over says why, e.g. crun on hybrid cgroups), and
  ``wrapper``: the script that runs instead of ``path`` when there is one
  (crun on hybrid cgroups: ``skiff.runtime.crun_hybrid``);
- ``conmon`` {package, path, version};
- ``cgroupVersion`` (v1/v2), ``cgroupManager`` (cgroupfs: skiff writes
  cgroup paths itself, never through systemd), ``cgroupControllers``;
- ``networkBackend`` (netavark) and ``networkBackendInfo`` {backend, path,
  package, version, dns {path, package, version}} (aardvark-dns);
- ``logDriver`` (k8s-file);
- ``containerStore`` {number, paused, running, stopped}, counted from the
  container records after reconciling the live ones with reality.

A part that cannot be found (no conmon installed) is reported with an
``error`` key instead of failing ``info`` as a whole. ``package`` comes from
dpkg when the binary belongs to a Debian package ("" otherwise).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import SkiffError

if TYPE_CHECKING:
    from skiff.config import SystemContext

_TIMEOUT = 10.0
_V1_CONTROLLERS = (
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "pids",
    "hugetlb",
    "rdma",
    "misc",
)


def runtime_info(ctx: SystemContext) -> dict[str, Any]:
    """podman's runtime keys for ``info`` (see the module docstring)."""
    from skiff.runtime.engine import Runtime
    from skiff.runtime.specgen.host import detect_cgroup_layout

    layout = detect_cgroup_layout()
    out: dict[str, Any] = {
        "cgroupManager": "cgroupfs",
        "cgroupVersion": f"v{layout.version}",
        "cgroupControllers": cgroup_controllers(layout.version),
        "logDriver": "k8s-file",
        "networkBackend": "netavark",
    }
    from concurrent.futures import ThreadPoolExecutor

    # the probes run a dozen --version and dpkg-query processes: side by side
    with ThreadPoolExecutor(max_workers=3) as pool:
        conmon = pool.submit(_conmon)
        network = pool.submit(_network_backend)
        rt = Runtime(ctx)
        try:
            out["ociRuntime"] = _oci_runtime(rt.run_root)
            out["containerStore"] = container_counts(rt)
        finally:
            rt.close()
        out["conmon"] = conmon.result()
        out["networkBackendInfo"] = network.result()
    return out


def container_counts(rt: Any) -> dict[str, int]:
    """{number, paused, running, stopped}: every record, live ones synced first."""
    from skiff.runtime.listing import list_containers
    from skiff.runtime.records import Status

    containers = list_containers(rt, all_containers=True)
    running = sum(c.state.status == Status.RUNNING for c in containers)
    paused = sum(c.state.status == Status.PAUSED for c in containers)
    return {
        "number": len(containers),
        "paused": paused,
        "running": running,
        "stopped": len(containers) - running - paused,
    }


def cgroup_controllers(version: int) -> list[str]:
    """The controllers containers can use: cgroup.controllers of the root (v2),
    or the v1 controllers mounted as their own hierarchies."""
    if version == 2:
        try:
            return Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
        except OSError:
            return []
    found = []
    try:
        lines = Path("/proc/cgroups").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        if line.startswith("#"):
            continue
        fields = line.split()
        if (
            len(fields) == 4
            and fields[0] in _V1_CONTROLLERS
            and fields[1] != "0"
            and fields[3] == "1"
        ):
            found.append(fields[0])
    return found


def _oci_runtime(run_root: Path) -> dict[str, Any]:
    import os

    from skiff.runtime.oci import select_runtime

    try:
        choice = select_runtime(
            run_root, default=os.environ.get("SKIFF_RUNTIME") or None, wrap_hybrid=True
        )
    except SkiffError as exc:
        return {"name": "", "path": "", "version": "", "package": "", "error": str(exc)}
    out = {
        "name": choice.name,
        "package": _package_of(choice.path),
        "path": str(choice.path),
        "version": _version_text(choice.path) or f"{choice.name} version {choice.version}",
        "reason": choice.reason,
    }
    if choice.wrapper is not None:
        out["wrapper"] = str(choice.wrapper)  # what actually runs (crun on hybrid cgroups)
    return out


def _conmon() -> dict[str, Any]:
    from skiff.runtime.conmon import find_conmon

    try:
        path = find_conmon()
    except SkiffError as exc:
        return {"package": "", "path": "", "version": "", "error": str(exc)}
    text = _version_text(path)
    first = text.splitlines()[0] if text else ""
    return {"package": _package_of(path), "path": str(path), "version": first}


def _network_backend() -> dict[str, Any]:
    from skiff.runtime.network.netavark import find_helper

    out: dict[str, Any] = {"backend": "netavark"}
    for key, name, env in (
        ("", "netavark", "SKIFF_NETAVARK"),
        ("dns", "aardvark-dns", "SKIFF_AARDVARK_DNS"),
    ):
        try:
            path = find_helper(name, env)
        except SkiffError as exc:
            part: dict[str, Any] = {"path": "", "package": "", "version": "", "error": str(exc)}
        else:
            text = _version_text(path)
            part = {
                "package": _package_of(path),
                "path": str(path),
                "version": text.splitlines()[0] if text else "",
            }
        if key:
            out[key] = part
        else:
            out.update(part)
    return out


def _version_text(path: Path) -> str:
    """What ``PATH --version`` prints on stdout, stripped ("" if it fails)."""
    try:
        result = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def _package_of(path: Path) -> str:
    """``NAME_VERSION_ARCH`` of the Debian package holding ``path`` ("" if none)."""
    candidates = [str(path)]
    try:
        resolved = str(path.resolve())
    except OSError:
        resolved = str(path)
    if resolved not in candidates:
        candidates.append(resolved)
    for candidate in candidates:
        try:
            owner = subprocess.run(
                ["dpkg-query", "--search", candidate],
                capture_output=True,
                text=True,
                timeout=_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        if owner.returncode != 0 or ":" not in owner.stdout:
            continue
        package = owner.stdout.split(":", 1)[0].split(",")[0].strip()
        try:
            shown = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Package}_${Version}_${Architecture}", package],
                capture_output=True,
                text=True,
                timeout=_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        if shown.returncode == 0 and shown.stdout:
            return shown.stdout.strip()
    return ""
