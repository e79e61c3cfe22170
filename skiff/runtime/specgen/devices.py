"""Devices: ``--device`` and, with ``--privileged``, every host device.

The default devices (/dev/null, zero, full, random, urandom, tty, console,
ptmx → pts/ptmx, the /dev/fd, stdin, stdout, stderr symlinks) are not
listed in the spec: the OCI runtime spec makes runtimes supply them, and
runc and crun also allow them in the device cgroup on their own. podman
4 writes the same (no ``linux.devices`` without ``--device``). Everything
else is denied by the first cgroup rule (``{"allow": false, "access":
"rwm"}``) unless ``--device`` or ``--privileged`` allows it.

A ``--device`` host path is looked up on the host (symlinks followed, so
``/dev/disk/by-id/...`` works) and must be a character or block device, or a
directory of them (added recursively, as podman does).
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from typing import Any

from skiff.errors import UsageError

_SKIP_PRIVILEGED = ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console", "/dev/ptmx", "/dev/fd")


@dataclass(frozen=True)
class DeviceRequest:
    host_path: str
    container_path: str
    permissions: str = "rwm"


def _permissions(text: str, spec: str) -> str | None:
    if text and all(c in "rwm" for c in text) and len(set(text)) == len(text):
        return text
    return None


def parse_device(spec: str) -> DeviceRequest:
    """``HOST[:CONTAINER][:PERMISSIONS]`` (``/dev/fuse``, ``/dev/sda:/dev/xvda:rw``,
    ``/dev/fuse:rwm``)."""
    parts = spec.split(":")
    if not parts[0].startswith("/") or len(parts) > 3:
        raise UsageError(
            f"invalid device {spec!r}", "use HOST-DEVICE[:CONTAINER-DEVICE][:PERMISSIONS]"
        )
    host = parts[0]
    container = host
    perms = "rwm"
    if len(parts) == 2:
        maybe = _permissions(parts[1], spec)
        if maybe is not None:
            perms = maybe
        else:
            container = parts[1]
    elif len(parts) == 3:
        container = parts[1]
        maybe = _permissions(parts[2], spec)
        if maybe is None:
            raise UsageError(
                f"invalid device {spec!r}: permissions {parts[2]!r}",
                "permissions are a combination of r, w and m",
            )
        perms = maybe
    if not container.startswith("/"):
        raise UsageError(f"invalid device {spec!r}: {container!r} is not an absolute path")
    return DeviceRequest(posixpath.normpath(host), posixpath.normpath(container), perms)


def _device(path: str, st: os.stat_result, container_path: str) -> dict[str, Any]:
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
    return {
        "path": container_path,
        "type": kind,
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def _is_device(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)


def _walk_devices(top: str, skip: tuple[str, ...] = ()) -> list[tuple[str, os.stat_result]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if os.path.join(dirpath, d) not in skip)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if path in skip:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if _is_device(st):
                found.append((path, st))
    return found


def device_entries(req: DeviceRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(``linux.devices`` entries, ``linux.resources.devices`` allow rules)."""
    try:
        st = os.stat(req.host_path)
    except OSError as exc:
        raise UsageError(
            f"cannot add device {req.host_path}: {exc.strerror}", "check the --device path"
        ) from exc
    if stat.S_ISDIR(st.st_mode):
        found = [
            (posixpath.join(req.container_path, os.path.relpath(p, req.host_path)), s)
            for p, s in _walk_devices(req.host_path)
        ]
        if not found:
            raise UsageError(f"cannot add device {req.host_path}: the directory holds no devices")
    elif _is_device(st):
        found = [(req.container_path, st)]
    else:
        raise UsageError(
            f"cannot add device {req.host_path}: not a character or block device",
            "--device takes device nodes (or a directory of them)",
        )
    devices = [_device(path, s, path) for path, s in found]
    rules = [
        {
            "allow": True,
            "type": d["type"],
            "major": d["major"],
            "minor": d["minor"],
            "access": req.permissions,
        }
        for d in devices
    ]
    return devices, rules


def host_devices(root: str = "/dev") -> list[dict[str, Any]]:
    """Every device node under /dev, for ``--privileged`` (not /dev/pts, the
    console or ptmx, which the runtime sets up itself)."""
    skip = tuple(p.replace("/dev", root, 1) for p in _SKIP_PRIVILEGED)
    return [
        _device(path, st, path.replace(root, "/dev", 1)) for path, st in _walk_devices(root, skip)
    ]
