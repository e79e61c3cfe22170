"""Mounts: ``-v``/``--mount``/``--tmpfs`` parsing, and the container's mount list.

User mounts are parsed into typed values (``BindMount``, ``VolumeMount``,
``TmpfsMount``) with podman 4's syntax and checks. Parsing is pure;
``resolve_host_sources`` is the one step that looks at the host: it turns a
bind source into the real path it names *once*, at create time, and that
path is what the container record and every later start use. A source
that is a symlink is thereby pinned: re-pointing the link afterwards does
not move the mount (and a relative source cannot be reinterpreted from
another working directory).

``container_mounts`` builds the OCI ``mounts`` list: podman's defaults
(/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys, /sys/fs/cgroup, the
per-container /etc files, read-only tmpfs dirs, the init binary), then the
user's mounts; a user mount replaces a default at the same destination;
the list is ordered parents first (stable sort by path depth), since the
runtime mounts in order and a child mounted before its parent vanishes.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from skiff.errors import ContainerError, UsageError
from skiff.runtime.specgen.etcfiles import ContainerFiles

PROPAGATIONS = frozenset(
    {"private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"}
)
_FLAG_PAIRS = {"nosuid": "suid", "nodev": "dev", "noexec": "exec"}
FLAGS = frozenset(_FLAG_PAIRS) | frozenset(_FLAG_PAIRS.values())
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_TMPFS_OPTION = re.compile(
    r"^(size=\d+[kmg%]?|nr_inodes=\d+[kmg]?|mode=[0-7]{1,4}|uid=\d+|gid=\d+|"
    r"ro|rw|nosuid|suid|nodev|dev|noexec|exec|tmpcopyup|notmpcopyup|"
    r"rprivate|private|rshared|shared|rslave|slave|runbindable|unbindable|"
    r"strictatime|relatime|norelatime|noatime|atime|nodiratime|diratime|sync|async|mand|nomand)$"
)
SHM_DEFAULT_SIZE = 64 << 20
INIT_DESTINATION = "/run/podman-init"
"""Where ``--init`` puts catatonit (podman's path, so scripts that look for
it keep working)."""


@dataclass(frozen=True)
class BindMount:
    """A host path bound into the container.

    ``source`` is absolute; after ``resolve_host_sources`` it contains no
    symlink. ``given_source`` is what the user typed (for messages).
    """

    source: str
    destination: str
    read_only: bool = False
    recursive: bool = True
    propagation: str = ""
    flags: tuple[str, ...] = ()
    relabel: str = ""
    """"z" or "Z": accepted; SELinux labels are not applied (no SELinux here)."""
    chown: bool = False
    """``U``: the lifecycle code chowns the source to the container user."""
    given_source: str = ""


@dataclass(frozen=True)
class VolumeMount:
    """A named volume (``name``), or an anonymous one (``name`` "") the
    lifecycle code creates and names before the spec is generated."""

    name: str
    destination: str
    read_only: bool = False
    propagation: str = ""
    flags: tuple[str, ...] = ()
    chown: bool = False
    copy_up: bool = True
    """Copy the image's content at the destination into a new volume."""


@dataclass(frozen=True)
class TmpfsMount:
    destination: str
    options: tuple[str, ...] = ()


Mount = BindMount | VolumeMount | TmpfsMount


def _destination(text: str, spec: str) -> str:
    if not text.startswith("/"):
        raise UsageError(
            f"invalid container path {text!r} in {spec!r}: must be an absolute path",
            "e.g. -v /srv/data:/data",
        )
    clean = posixpath.normpath(text)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    return clean


@dataclass
class _Options:
    read_only: bool | None = None
    propagation: str = ""
    relabel: str = ""
    flags: dict[str, str] | None = None
    chown: bool = False
    recursive: bool = True
    copy_up: bool = True

    def flag_list(self) -> tuple[str, ...]:
        return tuple((self.flags or {}).values())


def _parse_options(options: Sequence[str], spec: str, *, bind: bool) -> _Options:
    out = _Options(flags={})
    assert out.flags is not None
    for raw in options:
        opt = raw.strip()
        if opt in ("ro", "rw"):
            if out.read_only is not None:
                raise UsageError(f"invalid mount {spec!r}: 'ro' or 'rw' given more than once")
            out.read_only = opt == "ro"
        elif opt in ("z", "Z"):
            if out.relabel:
                raise UsageError(f"invalid mount {spec!r}: 'z' or 'Z' given more than once")
            out.relabel = opt
        elif opt in PROPAGATIONS:
            if out.propagation:
                raise UsageError(f"invalid mount {spec!r}: more than one propagation mode")
            out.propagation = opt
        elif opt in FLAGS:
            key = opt if opt in _FLAG_PAIRS else next(k for k, v in _FLAG_PAIRS.items() if v == opt)
            if key in out.flags:
                raise UsageError(f"invalid mount {spec!r}: {key!r} and its opposite both given")
            out.flags[key] = opt
        elif opt in ("U", "U=true", "u"):
            out.chown = True
        elif opt == "U=false":
            out.chown = False
        elif opt in ("bind", "rbind") and bind:
            out.recursive = opt == "rbind"
        elif opt in ("copy", "nocopy") and not bind:
            out.copy_up = opt == "copy"
        elif opt == "O":
            raise UsageError(
                f"invalid mount {spec!r}: overlay volumes (:O) are not supported",
                "mount the directory read-only (:ro) and copy what the container changes",
            )
        elif opt.startswith("idmap"):
            raise UsageError(f"invalid mount {spec!r}: idmapped mounts are not supported")
        else:
            raise UsageError(f"invalid mount {spec!r}: unknown option {opt!r}")
    return out


def _source_kind(source: str) -> str:
    return "bind" if source.startswith(("/", ".")) else "volume"


def _bind_source(source: str, spec: str) -> str:
    if not source:
        raise UsageError(f"invalid mount {spec!r}: empty host path")
    return source if source.startswith("/") else os.path.abspath(source)


def _volume_name(name: str, spec: str) -> str:
    if not _VOLUME_NAME.match(name):
        raise UsageError(
            f"invalid volume name {name!r} in {spec!r}",
            "names start with a letter or digit and contain only [a-zA-Z0-9_.-]; "
            "host paths start with / or .",
        )
    return name


def parse_volume(spec: str) -> BindMount | VolumeMount:
    """``-v [SRC:]DST[:OPTIONS]``: SRC a host path (``/…`` or ``./…``) or a
    volume name; only DST: an anonymous volume."""
    parts = spec.split(":")
    if len(parts) > 3 or not spec:
        raise UsageError(
            f"invalid volume {spec!r}", "use [HOST-DIR|VOLUME:]CONTAINER-DIR[:OPTIONS]"
        )
    if len(parts) == 1:
        return VolumeMount("", _destination(parts[0], spec))
    source, dest = parts[0], _destination(parts[1], spec)
    kind = _source_kind(source)
    opts = _parse_options(parts[2].split(",") if len(parts) == 3 else [], spec, bind=kind == "bind")
    if kind == "bind":
        return BindMount(
            source=_bind_source(source, spec),
            destination=dest,
            read_only=bool(opts.read_only),
            recursive=opts.recursive,
            propagation=opts.propagation,
            flags=opts.flag_list(),
            relabel=opts.relabel,
            chown=opts.chown,
            given_source=source,
        )
    return VolumeMount(
        name=_volume_name(source, spec),
        destination=dest,
        read_only=bool(opts.read_only),
        propagation=opts.propagation,
        flags=opts.flag_list(),
        chown=opts.chown,
        copy_up=opts.copy_up,
    )


def _bool(value: str, key: str, spec: str) -> bool:
    lowered = value.lower()
    if lowered in ("", "true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise UsageError(f"invalid --mount {spec!r}: {key}={value!r} is not a boolean")


def parse_tmpfs(spec: str) -> TmpfsMount:
    """``--tmpfs DST[:OPTIONS]`` (size=, mode=, uid=, gid=, ro, noexec, ...)."""
    dest, _, opts = spec.partition(":")
    return make_tmpfs(_destination(dest, spec), [o for o in opts.split(",") if o], spec)


def make_tmpfs(destination: str, options: Sequence[str], spec: str = "") -> TmpfsMount:
    """A tmpfs with podman's defaults (rw, rprivate, nosuid, nodev, tmpcopyup)
    for whatever ``options`` do not decide."""
    for opt in options:
        if not _TMPFS_OPTION.match(opt):
            raise UsageError(f"invalid tmpfs option {opt!r} in {spec or destination!r}")
    given = set(options)
    out = list(options)
    for default, opposite in (
        ("rw", "ro"),
        ("rprivate", None),
        ("nosuid", "suid"),
        ("nodev", "dev"),
        ("tmpcopyup", "notmpcopyup"),
    ):
        if default in given or (opposite is not None and opposite in given):
            continue
        if default == "rprivate" and given & PROPAGATIONS:
            continue
        out.append(default)
    return TmpfsMount(destination, tuple(out))


def parse_mount(spec: str) -> Mount:
    """``--mount type=bind|volume|tmpfs,src=…,dst=…[,ro][,…]`` (podman's keys)."""
    fields: dict[str, str] = {}
    flags: list[str] = []
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not key:
            continue
        if key in fields and sep:
            raise UsageError(f"invalid --mount {spec!r}: {key!r} given twice")
        if sep:
            fields[key] = value
        else:
            flags.append(key)
    kind = fields.pop("type", "")
    if kind not in ("bind", "volume", "tmpfs"):
        raise UsageError(
            f"invalid --mount {spec!r}: type must be bind, volume or tmpfs",
            "e.g. --mount type=bind,src=/srv,dst=/srv,ro",
        )
    dest_text = next((fields.pop(k) for k in ("destination", "dst", "target") if k in fields), None)
    if dest_text is None:
        raise UsageError(f"invalid --mount {spec!r}: no destination (dst=PATH)")
    dest = _destination(dest_text, spec)
    source = next((fields.pop(k) for k in ("source", "src") if k in fields), "")
    options: list[str] = []
    for key in ("ro", "readonly", "rw"):
        writable = key == "rw"
        if key in fields:
            on = _bool(fields.pop(key), key, spec)
            options.append("rw" if on == writable else "ro")
        if key in flags:
            flags.remove(key)
            options.append("rw" if writable else "ro")
    if kind == "tmpfs":
        if source:
            raise UsageError(f"invalid --mount {spec!r}: a tmpfs takes no source")
        if "tmpfs-size" in fields:
            options.append("size=" + fields.pop("tmpfs-size"))
        if "tmpfs-mode" in fields:
            options.append("mode=" + fields.pop("tmpfs-mode"))
        options.extend(flags)
        flags = []
        if fields:
            raise UsageError(f"invalid --mount {spec!r}: unknown option {next(iter(fields))!r}")
        return make_tmpfs(dest, options, spec)
    if "bind-propagation" in fields:
        options.append(fields.pop("bind-propagation"))
    if "relabel" in fields:
        relabel = fields.pop("relabel")
        if relabel not in ("shared", "private"):
            raise UsageError(f"invalid --mount {spec!r}: relabel must be shared or private")
        options.append("z" if relabel == "shared" else "Z")
    for key in ("U", "chown"):
        if key in fields:
            options.append("U" if _bool(fields.pop(key), key, spec) else "U=false")
    if "bind-nonrecursive" in fields and _bool(
        fields.pop("bind-nonrecursive"), "bind-nonrecursive", spec
    ):
        options.append("bind")
    if "bind-nonrecursive" in flags:
        flags.remove("bind-nonrecursive")
        options.append("bind")
    for key in ("volume-nocopy", "nocopy"):
        if key in flags:
            flags.remove(key)
            options.append("nocopy")
    options.extend(flags)
    if fields:
        raise UsageError(f"invalid --mount {spec!r}: unknown option {next(iter(fields))!r}")
    if kind == "bind":
        if not source:
            raise UsageError(f"invalid --mount {spec!r}: a bind mount needs src=HOST-PATH")
        opts = _parse_options(options, spec, bind=True)
        return BindMount(
            source=_bind_source(source, spec),
            destination=dest,
            read_only=bool(opts.read_only),
            recursive=opts.recursive,
            propagation=opts.propagation,
            flags=opts.flag_list(),
            relabel=opts.relabel,
            chown=opts.chown,
            given_source=source,
        )
    opts = _parse_options(options, spec, bind=False)
    return VolumeMount(
        name=_volume_name(source, spec) if source else "",
        destination=dest,
        read_only=bool(opts.read_only),
        propagation=opts.propagation,
        flags=opts.flag_list(),
        chown=opts.chown,
        copy_up=opts.copy_up,
    )


def resolve_host_sources(mounts: Sequence[Mount]) -> list[Mount]:
    """Resolve every bind source to the real path it names, once.

    A missing source is an error (podman's behaviour; Docker would create
    it). Called by the create step; the result is what gets recorded.
    """
    out: list[Mount] = []
    for m in mounts:
        if isinstance(m, BindMount):
            try:
                real = os.path.realpath(m.source, strict=True)
            except OSError as exc:
                raise ContainerError(
                    f"cannot use {m.given_source or m.source} as a mount source: "
                    f"{exc.strerror or exc}",
                    "create it first, or fix the -v/--mount source",
                ) from exc
            out.append(replace(m, source=real))
        else:
            out.append(m)
    return out


def check_destinations(mounts: Sequence[Mount]) -> None:
    seen: set[str] = set()
    for m in mounts:
        if m.destination in seen:
            raise UsageError(
                f"duplicate mount destination {m.destination}",
                "each container path can be mounted once",
            )
        seen.add(m.destination)


# --- the OCI mount list ----------------------------------------------------------


def _bind_json(
    source: str, dest: str, m: BindMount | VolumeMount, recursive: bool
) -> dict[str, Any]:
    options = ["ro"] if m.read_only else []
    options.append(m.propagation or "rprivate")
    options.append("rbind" if recursive else "bind")
    options.extend(m.flags)
    return {"destination": dest, "type": "bind", "source": source, "options": options}


def user_mount_json(m: Mount, volumes: Mapping[str, Path]) -> dict[str, Any]:
    if isinstance(m, TmpfsMount):
        return {
            "destination": m.destination,
            "type": "tmpfs",
            "source": "tmpfs",
            "options": list(m.options),
        }
    if isinstance(m, BindMount):
        return _bind_json(m.source, m.destination, m, m.recursive)
    if not m.name:
        raise ContainerError(
            f"the anonymous volume at {m.destination} has not been created",
            "the create step names anonymous volumes before generating the spec",
        )
    path = volumes.get(m.name)
    if path is None:
        raise ContainerError(
            f"volume {m.name} is not known to the spec generator",
            "resolve named volumes to their host paths before generating the spec",
        )
    return _bind_json(str(path), m.destination, m, True)


def _bind(source: Path | str, dest: str, extra: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "destination": dest,
        "type": "bind",
        "source": str(source),
        "options": ["bind", "rprivate", *extra],
    }


def default_mounts(
    *,
    privileged: bool,
    read_only: bool,
    read_only_tmpfs: bool,
    shm_size: int,
    ipc_host: bool,
    files: ContainerFiles,
    init_binary: str | None = None,
) -> list[dict[str, Any]]:
    """podman 4's default mounts (compare a podman container's config.json)."""
    mounts: list[dict[str, Any]] = [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "noexec", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "rw" if privileged else "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [
                "rprivate",
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                "rw" if privileged else "ro",
            ],
        },
    ]
    if ipc_host:
        mounts.append(_bind("/dev/shm", "/dev/shm", ["rbind"]))
        if os.path.isdir("/dev/mqueue"):
            mounts.append(_bind("/dev/mqueue", "/dev/mqueue", ["rbind"]))
        else:
            # a host without /dev/mqueue: a new mqueue mount shows the queues of
            # the IPC namespace it is made in, which is the host's here
            mounts.append(
                {
                    "destination": "/dev/mqueue",
                    "type": "mqueue",
                    "source": "mqueue",
                    "options": ["nosuid", "noexec", "nodev"],
                }
            )
    else:
        if files.shm is not None:
            mounts.append(_bind(files.shm, "/dev/shm", ["nosuid", "noexec", "nodev"]))
        else:
            mounts.append(
                {
                    "destination": "/dev/shm",
                    "type": "tmpfs",
                    "source": "shm",
                    "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"],
                }
            )
        mounts.append(
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            }
        )
    etc_ro = ["ro", "nosuid", "noexec", "nodev"] if read_only else []
    for path, dest in (
        (files.hosts, "/etc/hosts"),
        (files.resolv_conf, "/etc/resolv.conf"),
        (files.hostname, "/etc/hostname"),
    ):
        if path is not None:
            mounts.append(_bind(path, dest, etc_ro))
    if files.containerenv is not None:
        mounts.append(_bind(files.containerenv, "/run/.containerenv", ["ro"] if read_only else []))
    if read_only and read_only_tmpfs:
        for dest in ("/tmp", "/var/tmp", "/run"):
            mounts.append(
                {
                    "destination": dest,
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"],
                }
            )
    if init_binary is not None:
        mounts.append(_bind(init_binary, INIT_DESTINATION, ["ro"]))
    return mounts


def _depth(dest: str) -> int:
    return len([c for c in dest.split("/") if c])


def container_mounts(
    defaults: Sequence[dict[str, Any]], user: Sequence[Mount], volumes: Mapping[str, Path]
) -> list[dict[str, Any]]:
    """Defaults + user mounts; user wins per destination; parents first."""
    user_json = [user_mount_json(m, volumes) for m in user]
    taken = {m["destination"] for m in user_json}
    merged = [m for m in defaults if m["destination"] not in taken] + user_json
    return sorted(merged, key=lambda m: _depth(m["destination"]))


def rootfs_propagation(user: Sequence[Mount]) -> str | None:
    """Shared or slave binds need the rootfs to propagate too (podman sets
    ``linux.rootfsPropagation`` the same way)."""
    modes = {m.propagation for m in user if not isinstance(m, TmpfsMount)}
    if modes & {"shared", "rshared"}:
        return "shared"
    if modes & {"slave", "rslave"}:
        return "rslave"
    return None


def is_under_mount(path: str, mounts: Sequence[Mount]) -> bool:
    """Whether ``path`` is at or below a user mount's destination."""
    clean = posixpath.normpath(path)
    for m in mounts:
        dest = m.destination.rstrip("/") or "/"
        if clean == dest or clean.startswith(dest.rstrip("/") + "/"):
            return True
    return False
