"""mount(2)/umount2(2) through libc, and reading the mount table.

The storage drivers and the runtime mount overlay filesystems, binds and
tmpfs; Python has no binding for mount(2), and shelling out to mount(8) per
container would cost a process each time.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from skiff.errors import StorageError
from skiff.libc import open_libc

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 0x2

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc  # noqa: PLW0603 - one handle to libc per process
    if _libc is None:
        _libc = open_libc()
    return _libc


def mount(
    source: str, target: str | Path, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    result = _lib().mount(
        source.encode(),
        os.fsencode(target),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data is not None else None,
    )
    if result != 0:
        err = ctypes.get_errno()
        raise StorageError(
            f"mounting {fstype or 'bind'} {source} on {target} failed: {os.strerror(err)}",
            f"options: {data}" if data else None,
        )


def unmount(target: str | Path, detach: bool = False) -> None:
    result = _lib().umount2(os.fsencode(target), MNT_DETACH if detach else 0)
    if result != 0:
        err = ctypes.get_errno()
        if err == 22:  # EINVAL: not a mount point (already unmounted)
            return
        raise StorageError(f"unmounting {target} failed: {os.strerror(err)}")


def mount_points() -> set[str]:
    """Mount points of this mount namespace (from /proc/self/mountinfo)."""
    points = set()
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split(b" ")
                if len(fields) > 4:
                    points.add(_unescape(fields[4].decode(errors="surrogateescape")))
    except OSError:
        return set()
    return points


def is_mounted(path: str | Path) -> bool:
    return str(path) in mount_points()


def _unescape(text: str) -> str:
    """Undo the octal escapes (\\040 for space) of /proc/self/mountinfo."""
    if "\\" not in text:
        return text
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) + 0 and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
