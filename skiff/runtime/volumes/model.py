"""Volumes as records, as podman shows them, and the local driver's options.

A volume is a directory ``ROOT/volumes/NAME/_data`` plus a row in the
store's ``volumes`` table (see store.py). This module is pure: it parses
``--opt`` values, validates names, and turns a record into podman 4's
``volume inspect`` JSON and the fields ``--format`` templates see. Nothing
here touches the disk.

The local driver's ``--opt`` keys are podman's: ``type`` (the file system
type, as ``mount -t``), ``device`` (what to mount) and ``o`` (mount options,
as ``mount -o``). Inside ``o``, ``uid=``/``gid=`` set the owner of the
volume (podman records them again as ``UID``/``GID`` options), ``size=`` and
``inodes=`` size a tmpfs (podman reserves them for XFS project quotas,
which skiff does not have: anywhere else they are refused), ``noquota`` is
accepted and changes nothing. What remains is split into mount(2) flags
and the file system's own data string.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skiff.errors import NameInUse, StorageError, UsageError

NAME_PATTERN = "[a-zA-Z0-9][a-zA-Z0-9_.-]*"
NAME_RE = re.compile(rf"\A{NAME_PATTERN}\Z")
DRIVER_LOCAL = "local"
SCOPE_LOCAL = "local"
DATA_DIR = "_data"
ANONYMOUS_NAME_RE = re.compile(r"\A[0-9a-f]{64}\Z")

# mount(2) flags (linux/mount.h); skiff.storage.mount has only the few the
# storage drivers use.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

_SET_FLAGS = {
    "ro": MS_RDONLY,
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "sync": MS_SYNCHRONOUS,
    "dirsync": MS_DIRSYNC,
    "mand": MS_MANDLOCK,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}
_CLEAR_FLAGS = {
    "rw": MS_RDONLY,
    "suid": MS_NOSUID,
    "dev": MS_NODEV,
    "exec": MS_NOEXEC,
    "async": MS_SYNCHRONOUS,
    "nomand": MS_MANDLOCK,
    "atime": MS_NOATIME,
    "diratime": MS_NODIRATIME,
    "norelatime": MS_RELATIME,
    "nostrictatime": MS_STRICTATIME,
}
_PROPAGATION = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
_TMPFS_SIZE = re.compile(r"\A\d+[kKmMgG%]?\Z")
_OPTION_KEYS = ("type", "device", "o")


class VolumeInUse(StorageError):
    """A volume is used by containers (or mounted) and cannot be removed without force."""

    exit_code = 2  # podman volume rm


class VolumeExists(NameInUse):
    """``volume create`` of a name that is taken."""


# --- names -----------------------------------------------------------------------------


def check_name(name: str) -> str:
    """podman's volume name rule, with its wording."""
    if not NAME_RE.match(name):
        raise UsageError(
            f"running volume create option: names must match {NAME_PATTERN}: invalid argument",
            f"{name!r} is not a valid volume name: start with a letter or digit, "
            "then use only letters, digits and _ . -",
        )
    return name


def check_driver(name: str, driver: str) -> str:
    """Only the local driver exists; podman's message for a missing plugin."""
    if driver in ("", DRIVER_LOCAL):
        return DRIVER_LOCAL
    raise UsageError(
        f"volume {name} uses volume plugin {driver} but it could not be retrieved: "
        f"no volume plugin with name {driver} available: required plugin missing",
        "skiff has only the 'local' driver; --opt type=…,device=…,o=… mounts file systems",
    )


# --- local driver options ------------------------------------------------------------------


@dataclass(frozen=True)
class LocalMount:
    """What the local driver mounts on the volume's ``_data`` directory.

    ``kind``: "tmpfs", "bind" (``o=bind``/``rbind``: ``device`` is a host
    path) or "fs" (``mount -t TYPE DEVICE``). ``flags``/``clear`` are the
    mount(2) flags set and explicitly cleared; ``propagation`` is applied
    with a second mount(2) call; ``data`` is what the file system parses.
    """

    kind: str
    fs_type: str
    device: str
    flags: int = 0
    propagation: int = 0
    data: str = ""
    recursive: bool = False


@dataclass(frozen=True)
class LocalOptions:
    """The ``--opt`` values of a local volume, validated."""

    options: dict[str, str] = field(default_factory=dict)
    """What ``volume inspect`` shows under Options: the keys as given plus
    podman's ``UID``/``GID`` copies of ``o=uid=…,gid=…``."""
    uid: int | None = None
    gid: int | None = None
    mount: LocalMount | None = None
    """None: a plain directory (nothing to mount)."""


def _int_option(key: str, value: str, name: str) -> int:
    if not value.isdecimal():
        raise UsageError(
            f"cannot convert {key} {value!r} to an integer for volume {name}",
            f"use o={key}=NUMBER",
        )
    return int(value)


def parse_local_options(name: str, given: Mapping[str, str]) -> LocalOptions:
    """``--opt KEY=VALUE`` pairs → the validated local-driver options.

    Raises UsageError for unknown keys (podman's wording), quota options
    outside tmpfs, and combinations no mount can come from (a device with
    no type, a type that needs a device without one).
    """
    options: dict[str, str] = {}
    for key, value in given.items():
        lowered = key.lower()
        if lowered not in _OPTION_KEYS:
            raise UsageError(
                f"invalid mount option {key} for driver 'local': invalid argument",
                "the local driver takes type=…, device=… and o=…",
            )
        options[lowered] = value
    fs_type = options.get("type", "")
    device = options.get("device", "")
    uid: int | None = None
    gid: int | None = None
    flags = 0
    propagation = 0
    bind = ""
    data: list[str] = []
    for item in [o.strip() for o in options.get("o", "").split(",") if o.strip()]:
        key, eq, value = item.partition("=")
        lowered = key.lower()
        if lowered == "uid" and eq:
            uid = _int_option("uid", value, name)
            if fs_type == "tmpfs":
                data.append(f"uid={uid}")
        elif lowered == "gid" and eq:
            gid = _int_option("gid", value, name)
            if fs_type == "tmpfs":
                data.append(f"gid={gid}")
        elif lowered in ("size", "inodes") and eq:
            if fs_type != "tmpfs":
                raise UsageError(
                    "volume options size and inodes not supported. "
                    "Filesystem does not support Project Quota",
                    f"volume {name}: size= and inodes= work with --opt type=tmpfs only",
                )
            if lowered == "size" and not _TMPFS_SIZE.match(value):
                raise UsageError(
                    f"invalid size {value!r} for the tmpfs volume {name}",
                    "use a number of bytes with an optional k, m, g or % suffix",
                )
            data.append(
                f"size={value}"
                if lowered == "size"
                else f"nr_inodes={_int_option(key, value, name)}"
            )
        elif lowered == "noquota" and not eq:
            continue
        elif lowered in ("bind", "rbind") and not eq:
            bind = lowered
        elif lowered == "defaults" and not eq:
            continue
        elif lowered in _SET_FLAGS and not eq:
            flags |= _SET_FLAGS[lowered]
        elif lowered in _CLEAR_FLAGS and not eq:
            flags &= ~_CLEAR_FLAGS[lowered]
        elif lowered in _PROPAGATION and not eq:
            propagation = _PROPAGATION[lowered]
        else:
            data.append(item)
    if uid is not None:
        options["UID"] = str(uid)
    if gid is not None:
        options["GID"] = str(gid)
    mount: LocalMount | None = None
    if bind:
        if not device.startswith("/"):
            raise UsageError(
                f"volume {name}: o={bind} needs device=/host/path (an absolute path)",
                "e.g. --opt type=none --opt device=/srv/data --opt o=bind",
            )
        mount = LocalMount(
            "bind", fs_type or "none", device, flags, propagation, ",".join(data), bind == "rbind"
        )
    elif fs_type == "tmpfs":
        mount = LocalMount("tmpfs", "tmpfs", device or "tmpfs", flags, propagation, ",".join(data))
    elif fs_type:
        if fs_type == "none" or not device:
            raise UsageError(
                f"volume {name}: type={fs_type} needs "
                + ("o=bind" if fs_type == "none" else "a device=… to mount"),
                "e.g. --opt type=none --opt device=/srv/data --opt o=bind",
            )
        mount = LocalMount("fs", fs_type, device, flags, propagation, ",".join(data))
    elif device or data or flags or propagation:
        raise UsageError(
            f"volume {name}: mount options need a file system type",
            "add --opt type=tmpfs, or --opt type=none with o=bind for a host directory",
        )
    return LocalOptions(options=options, uid=uid, gid=gid, mount=mount)


# --- the record ----------------------------------------------------------------------------


def format_created(ns: int) -> str:
    """Go's RFC 3339 with nanoseconds in UTC (podman's CreatedAt in JSON)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = _dt.datetime.fromtimestamp(seconds, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += f".{fraction:09d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True)
class Volume:
    """One volume as the store records it."""

    name: str
    driver: str
    mountpoint: Path
    created_ns: int
    labels: dict[str, str]
    options: dict[str, str]
    uid: int | None = None
    gid: int | None = None
    anonymous: bool = False
    mount_count: int = 0
    needs_copy_up: bool = True
    needs_chown: bool = True

    @property
    def local(self) -> LocalOptions:
        """The parsed driver options (validated when the volume was created)."""
        given = {k: v for k, v in self.options.items() if k in _OPTION_KEYS}
        return parse_local_options(self.name, given)

    @property
    def needs_mount(self) -> bool:
        return self.local.mount is not None

    @property
    def created(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.created_ns / 1e9, _dt.UTC)

    def config_json(self) -> str:
        """The JSON column: what has no scalar column of its own."""
        return json.dumps({"labels": self.labels, "options": self.options}, sort_keys=True)

    def inspect_json(self) -> dict[str, Any]:
        """podman 4's ``volume inspect`` object, key for key and in its order
        (``UID``, ``GID``, ``Anonymous``, ``NeedsCopyUp`` and ``NeedsChown``
        are left out when zero or false, as Go's omitempty does)."""
        data: dict[str, Any] = {
            "Name": self.name,
            "Driver": self.driver,
            "Mountpoint": str(self.mountpoint),
            "CreatedAt": format_created(self.created_ns),
            "Labels": dict(sorted(self.labels.items())),
            "Scope": SCOPE_LOCAL,
            "Options": dict(sorted(self.options.items())),
        }
        if self.uid:
            data["UID"] = self.uid
        if self.gid:
            data["GID"] = self.gid
        if self.anonymous:
            data["Anonymous"] = True
        data["MountCount"] = self.mount_count
        if self.needs_copy_up:
            data["NeedsCopyUp"] = True
        if self.needs_chown:
            data["NeedsChown"] = True
        return data

    def template_data(self) -> dict[str, Any]:
        """The fields of podman's VolumeListReport / InspectVolumeData for ``--format``."""
        return {
            "Name": self.name,
            "Driver": self.driver,
            "Mountpoint": str(self.mountpoint),
            "CreatedAt": self.created,
            "Status": {},
            "Labels": dict(self.labels),
            "Scope": SCOPE_LOCAL,
            "Options": dict(self.options),
            "UID": self.uid or 0,
            "GID": self.gid or 0,
            "Anonymous": self.anonymous,
            "MountCount": self.mount_count,
            "NeedsCopyUp": self.needs_copy_up,
            "NeedsChown": self.needs_chown,
            "Timeout": 0,
            "StorageID": "",
        }
