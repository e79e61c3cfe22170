"""Where a container's cgroup is, what its controllers count, and parent cgroup dirs.

``skiff stats`` and ``skiff top`` read a running container's counters
straight from cgroupfs, as podman does (no runtime call): CPU time, memory,
pids, block I/O, and the processes in the cgroup.

Finding the cgroup. The hierarchies are read from /proc/self/mountinfo: on
cgroup v2 one ``cgroup2`` mount at /sys/fs/cgroup; on v1 one ``cgroup``
mount per controller set (``cpu`` and ``cpuacct`` may share one,
``name=systemd`` is a named hierarchy without controllers) — and on this
host's *hybrid* layout a ``cgroup2`` mount at /sys/fs/cgroup/unified as
well, which owns no controller skiff reads and is ignored. A container's
cgroup is either

- read from ``/proc/PID/cgroup`` of its init process (``cgroup_of_pid``):
  one line per hierarchy, ``ID:CONTROLLERS:PATH``; or
- derived from the spec's ``linux.cgroupsPath`` (``cgroup_at``): an
  absolute path, the same in every hierarchy (``/skiff/<id>``), or the
  systemd form ``SLICE:PREFIX:NAME``, which runc and crun expand to
  ``/<slice path>/PREFIX-NAME.scope``.

A path is turned into a directory through the mount's *root* (mountinfo's
fourth field): inside a cgroup namespace the hierarchy is mounted from a
sub-directory and /proc/PID/cgroup paths are relative to it.

Reading. The files and the formulas are podman 4.3's (containers/common's
cgroups package), so that the numbers agree with ``podman stats``:

=============  ==========================================  ===================================
 what           cgroup v1                                   cgroup v2
=============  ==========================================  ===================================
 CPU total      cpuacct.usage (ns)                          cpu.stat usage_usec
 CPU kernel     cpuacct.stat system (USER_HZ ticks)         cpu.stat system_usec
 per CPU        cpuacct.usage_percpu                        (none)
 memory         memory.usage_in_bytes                       memory.stat anon
 memory limit   memory.limit_in_bytes                       memory.max
 page cache     memory.stat total_cache                     memory.stat file
 pids           pids.current, pids.max                      pids.current, pids.max
 block I/O      blkio.throttle.io_service_bytes_recursive   io.stat rbytes/wbytes
=============  ==========================================  ===================================

Every v1 counter used is hierarchical (``memory.use_hierarchy`` is always 1
on current kernels), so processes a container moves into sub-cgroups of its
own still count. On kernels since 5.x blk-throttle only accounts I/O of a
device that has a throttle rule, so block I/O reads 0 on v1 without
``--device-read-bps``-style limits — exactly what podman shows.

A file that disappears while it is read (the container stopped and the
runtime removed its cgroup) raises ``ContainerStateError``; anything else
unreadable or unparsable raises ``ContainerError`` naming the file.

Parent cgroups. ``create_cgroup`` makes a cgroup directory in every
hierarchy (for a parent such as ``/skiff``; the runtime creates the
container's own cgroup beneath it), initialising a new v1 cpuset from its
parent so that it can take tasks; ``remove_cgroup`` removes it again once
nothing uses it. Limits of a running container are changed through the
runtime's ``update`` command, not here.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from skiff.errors import ContainerError, ContainerStateError

CGROUP_ROOT = Path("/sys/fs/cgroup")

V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)
"""Controller names that can appear among a v1 mount's super options."""

UNIFIED = ""
"""The key of the v2 (unified) hierarchy in ``Cgroup.dirs``."""

_V1_UNLIMITED = 1 << 62
"""memory.limit_in_bytes of an unlimited v1 cgroup is LONG_MAX rounded down to a
page (9223372036854771712); anything this large means "no limit"."""

_GONE = (errno.ENOENT, errno.ENODEV, errno.ESRCH)
"""What reading a cgroup file fails with once the cgroup has been removed."""


# --- the hierarchies ------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupMount:
    """One mounted hierarchy: where, from which root, with which controllers."""

    mountpoint: Path
    root: str
    """The mount's root inside the hierarchy (``/`` unless in a cgroup namespace)."""
    version: int
    controllers: frozenset[str] = frozenset()
    """v1: the controllers (and ``name=X`` of a named hierarchy); v2: empty."""

    def directory(self, cgroup_path: str) -> Path:
        """The directory of ``cgroup_path`` (a path inside the hierarchy) in this mount."""
        path = "/" + cgroup_path.strip("/")
        root = self.root.rstrip("/")
        if root and (path == root or path.startswith(root + "/")):
            path = path[len(root) :] or "/"
        relative = path.strip("/")
        return self.mountpoint / relative if relative else self.mountpoint


def _unescape(field_text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    if "\\" not in field_text:
        return field_text
    out = []
    i = 0
    while i < len(field_text):
        ch = field_text[i]
        digits = field_text[i + 1 : i + 4]
        if ch == "\\" and len(digits) == 3 and digits.isdigit():
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class CgroupMounts:
    """The cgroup hierarchies of this mount namespace.

    ``version`` is 2 when /sys/fs/cgroup itself is a cgroup2 mount (the
    unified layout), else 1 (legacy or hybrid). ``v1`` maps each v1
    controller (and each ``name=X``) to its mount; ``unified`` is the
    cgroup2 mount, if any (on a hybrid host /sys/fs/cgroup/unified).
    """

    version: int
    v1: Mapping[str, CgroupMount] = field(default_factory=dict)
    unified: CgroupMount | None = None

    @classmethod
    def parse(cls, mountinfo: str, cgroup_root: Path = CGROUP_ROOT) -> CgroupMounts:
        v1: dict[str, CgroupMount] = {}
        unified: CgroupMount | None = None
        for line in mountinfo.splitlines():
            left, sep, right = line.partition(" - ")
            fields = left.split()
            after = right.split()
            if not sep or len(fields) < 5 or len(after) < 3:
                continue
            fstype, options = after[0], after[2]
            mountpoint = Path(_unescape(fields[4]))
            root = _unescape(fields[3])
            if fstype == "cgroup2":
                mount = CgroupMount(mountpoint, root, 2)
                # prefer the one at the usual place when cgroup2 is mounted twice
                if unified is None or mountpoint in (cgroup_root, cgroup_root / "unified"):
                    unified = mount
            elif fstype == "cgroup":
                names = frozenset(
                    o for o in options.split(",") if o in V1_CONTROLLERS or o.startswith("name=")
                )
                mount = CgroupMount(mountpoint, root, 1, names)
                for name in names:
                    current = v1.get(name)
                    if current is None or (
                        mountpoint.parent == cgroup_root
                        and current.mountpoint.parent != cgroup_root
                    ):
                        v1[name] = mount
        version = 2 if unified is not None and unified.mountpoint == cgroup_root else 1
        if version == 2:
            v1 = {}
        return cls(version, v1, unified)

    @classmethod
    def read(cls) -> CgroupMounts:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as exc:
            raise ContainerError(
                f"cannot read /proc/self/mountinfo: {exc.strerror}",
                "skiff needs /proc mounted to find cgroups",
            ) from exc
        return cls.parse(text)

    def v1_mounts(self) -> list[CgroupMount]:
        """Each v1 hierarchy once, in a stable order."""
        seen: dict[Path, CgroupMount] = {}
        for name in sorted(self.v1):
            mount = self.v1[name]
            seen.setdefault(mount.mountpoint, mount)
        return list(seen.values())


# --- one cgroup -----------------------------------------------------------------------


@dataclass(frozen=True)
class Cgroup:
    """One cgroup in every hierarchy that has it.

    v2: ``dirs`` is ``{UNIFIED: dir}``. v1: one entry per controller (and
    ``name=X``), each the directory in that controller's hierarchy; a
    process may sit at different paths in different v1 hierarchies, which
    is why the directories are kept per controller.
    """

    version: int
    dirs: Mapping[str, Path]

    def dir(self, controller: str) -> Path | None:
        """The directory holding ``controller``'s files (None: not mounted here)."""
        if self.version == 2:
            return self.dirs.get(UNIFIED)
        return self.dirs.get(controller)

    def any_dir(self) -> Path:
        """A directory that lists the cgroup's processes (for v1, preferably ``pids``)."""
        for controller in (UNIFIED, "pids", "memory", "cpu", "cpuacct", "name=systemd"):
            found = self.dirs.get(controller)
            if found is not None:
                return found
        return next(iter(self.dirs.values()))


def systemd_cgroup_path(spec: str) -> str:
    """``SLICE:PREFIX:NAME`` as runc/crun expand it: ``machine-a.slice:skiff:ID`` →
    ``/machine.slice/machine-a.slice/skiff-ID.scope``."""
    parts = spec.split(":")
    if len(parts) != 3:
        raise ContainerError(
            f"invalid systemd cgroup path {spec!r}", "the form is SLICE:PREFIX:NAME"
        )
    slice_name, prefix, name = parts
    path = ""
    if slice_name and slice_name != "-.slice":
        if not slice_name.endswith(".slice") or "/" in slice_name:
            raise ContainerError(
                f"invalid systemd slice {slice_name!r} in cgroup path {spec!r}",
                "a slice name ends in .slice and has no '/'",
            )
        stem = slice_name[: -len(".slice")]
        words = stem.split("-")
        if any(not w for w in words):
            raise ContainerError(f"invalid systemd slice {slice_name!r} in cgroup path {spec!r}")
        for i in range(1, len(words) + 1):
            path += "/" + "-".join(words[:i]) + ".slice"
    unit = f"{prefix}-{name}.scope" if prefix else name
    return f"{path}/{unit}"


def _cgroups_path(spec: str) -> str:
    if spec.startswith("/"):
        return spec
    if spec.count(":") == 2:
        return systemd_cgroup_path(spec)
    raise ContainerError(
        f"cannot locate the relative cgroup path {spec!r}",
        "skiff gives runtimes absolute cgroup paths (/skiff/<id>); recreate the container",
    )


def cgroup_at(cgroups_path: str, mounts: CgroupMounts | None = None) -> Cgroup:
    """The cgroup a spec's ``linux.cgroupsPath`` names, in every hierarchy.

    The directories are not checked for existence (the readers report a
    missing cgroup as a stopped container).
    """
    mounts = mounts or CgroupMounts.read()
    path = _cgroups_path(cgroups_path)
    if mounts.version == 2:
        if mounts.unified is None:  # pragma: no cover - version 2 implies it
            raise ContainerError("no cgroup2 mount found")
        return Cgroup(2, {UNIFIED: mounts.unified.directory(path)})
    return Cgroup(1, {name: mount.directory(path) for name, mount in mounts.v1.items()})


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/PID/cgroup`` → {controller or ``name=X`` or UNIFIED: path}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[UNIFIED] = path
            continue
        for name in controllers.split(","):
            if name:
                out[name] = path
    return out


def cgroup_of_pid(pid: int, mounts: CgroupMounts | None = None) -> Cgroup:
    """The cgroup process ``pid`` is in, from ``/proc/PID/cgroup``."""
    mounts = mounts or CgroupMounts.read()
    source = f"/proc/{pid}/cgroup"
    try:
        with open(source, encoding="utf-8", errors="surrogateescape") as f:
            paths = parse_proc_cgroup(f.read())
    except OSError as exc:
        if exc.errno in _GONE:
            raise ContainerStateError(
                f"process {pid} is gone", "the container is not running"
            ) from exc
        raise ContainerError(f"cannot read {source}: {exc.strerror}") from exc
    if mounts.version == 2:
        if UNIFIED not in paths or mounts.unified is None:
            raise ContainerError(f"{source} names no cgroup2 path", "is this a cgroup v2 host?")
        return Cgroup(2, {UNIFIED: mounts.unified.directory(paths[UNIFIED])})
    dirs = {
        name: mount.directory(paths[name]) for name, mount in mounts.v1.items() if name in paths
    }
    if not dirs:
        raise ContainerError(f"{source} names no cgroup v1 hierarchy mounted here")
    return Cgroup(1, dirs)


# --- reading ---------------------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError as exc:
        if exc.errno in _GONE:
            raise ContainerStateError(
                f"cgroup file {path} is gone", "the container is no longer running"
            ) from exc
        raise ContainerError(f"cannot read {path}: {exc.strerror}") from exc


def _bad(path: Path, text: str) -> ContainerError:
    return ContainerError(
        f"unexpected content in {path}: {text.strip()[:80]!r}",
        "the kernel's cgroup interface changed or the file is not a cgroup file",
    )


def _read_int(path: Path) -> int:
    text = _read(path)
    try:
        return int(text.strip())
    except ValueError:
        raise _bad(path, text) from None


def _read_limit(path: Path) -> int | None:
    """A limit file: a number, or ``max`` (v2) for none."""
    text = _read(path).strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        raise _bad(path, text) from None


def _read_keyed(path: Path) -> dict[str, int]:
    """A flat keyed file (memory.stat, cpu.stat, cpuacct.stat): ``key value`` lines."""
    text = _read(path)
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            out[parts[0]] = int(parts[1])
        except ValueError:
            raise _bad(path, line) from None
    return out


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuUsage:
    total_ns: int
    system_ns: int
    """Time in the kernel on the cgroup's behalf (podman's CPUSystemNano)."""
    per_cpu_ns: tuple[int, ...] = ()


@dataclass(frozen=True)
class MemoryUsage:
    usage: int
    limit: int | None
    """None: no limit set on the cgroup itself."""
    cache: int


@dataclass(frozen=True)
class PidsUsage:
    current: int
    limit: int | None
    """None: ``max``."""


@dataclass(frozen=True)
class BlockIO:
    read_bytes: int
    write_bytes: int


def read_cpu(cgroup: Cgroup) -> CpuUsage | None:
    """CPU time used by the cgroup; None when no CPU accounting is mounted."""
    if cgroup.version == 2:
        directory = cgroup.dir(UNIFIED)
        if directory is None:
            return None
        stat = _read_keyed(directory / "cpu.stat")
        return CpuUsage(stat.get("usage_usec", 0) * 1000, stat.get("system_usec", 0) * 1000)
    directory = cgroup.dir("cpuacct")
    if directory is None:
        return None
    total = _read_int(directory / "cpuacct.usage")
    ticks = _read_keyed(directory / "cpuacct.stat")
    system = ticks.get("system", 0) * 1_000_000_000 // _clock_ticks()
    percpu_path = directory / "cpuacct.usage_percpu"
    percpu_text = _read(percpu_path)
    try:
        per_cpu = tuple(int(v) for v in percpu_text.split())
    except ValueError:
        raise _bad(percpu_path, percpu_text) from None
    return CpuUsage(total, system, per_cpu)


def read_memory(cgroup: Cgroup) -> MemoryUsage | None:
    """Memory charged to the cgroup; None when the memory controller is not mounted."""
    if cgroup.version == 2:
        directory = cgroup.dir(UNIFIED)
        if directory is None or not _exists(directory / "memory.max"):
            return None
        stat = _read_keyed(directory / "memory.stat")
        limit = _read_limit(directory / "memory.max")
        return MemoryUsage(stat.get("anon", 0), limit, stat.get("file", 0))
    directory = cgroup.dir("memory")
    if directory is None:
        return None
    usage = _read_int(directory / "memory.usage_in_bytes")
    raw_limit = _read_int(directory / "memory.limit_in_bytes")
    stat = _read_keyed(directory / "memory.stat")
    cache = stat.get("total_cache", stat.get("cache", 0))
    return MemoryUsage(usage, None if raw_limit >= _V1_UNLIMITED else raw_limit, cache)


def read_pids(cgroup: Cgroup) -> PidsUsage | None:
    """Tasks in the cgroup and its limit; None when the pids controller is not mounted."""
    directory = cgroup.dir(UNIFIED if cgroup.version == 2 else "pids")
    if directory is None or (cgroup.version == 2 and not _exists(directory / "pids.current")):
        return None
    return PidsUsage(_read_int(directory / "pids.current"), _read_limit(directory / "pids.max"))


def parse_blkio_v1(text: str) -> BlockIO:
    """``MAJ:MIN Op VALUE`` lines (and a ``Total N`` line, skipped): sum Read and Write."""
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or ":" not in parts[0]:
            continue
        op = parts[1].lower()
        if op == "read":
            read += int(parts[2])
        elif op == "write":
            write += int(parts[2])
    return BlockIO(read, write)


def parse_io_stat(text: str) -> BlockIO:
    """v2 ``io.stat``: ``MAJ:MIN rbytes=N wbytes=N rios=N ...`` per device."""
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        for item in parts[1:]:
            key, sep, value = item.partition("=")
            if not sep:
                continue
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                write += int(value)
    return BlockIO(read, write)


def read_blkio(cgroup: Cgroup) -> BlockIO | None:
    """Bytes read from and written to block devices; None when blkio/io is not mounted."""
    if cgroup.version == 2:
        directory = cgroup.dir(UNIFIED)
        if directory is None or not _exists(directory / "io.stat"):
            return None
        path = directory / "io.stat"
        parse = parse_io_stat
    else:
        directory = cgroup.dir("blkio")
        if directory is None:
            return None
        path = directory / "blkio.throttle.io_service_bytes_recursive"
        parse = parse_blkio_v1
    text = _read(path)
    try:
        return parse(text)
    except ValueError:
        raise _bad(path, text) from None


def _walk(directory: Path) -> Iterator[Path]:
    """``directory`` and every cgroup below it (a cgroup's children are its subdirectories)."""
    yield directory
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        if exc.errno in _GONE:
            return
        raise ContainerError(f"cannot list {directory}: {exc.strerror}") from exc
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path))


def cgroup_procs(cgroup: Cgroup) -> list[int]:
    """The processes (thread-group ids) in the cgroup and its sub-cgroups, ascending."""
    top = cgroup.any_dir()
    if not _exists(top):
        raise ContainerStateError(f"cgroup {top} is gone", "the container is no longer running")
    pids: set[int] = set()
    for directory in _walk(top):
        try:
            text = _read(directory / "cgroup.procs")
        except ContainerStateError:
            continue  # a sub-cgroup removed while we walked
        for line in text.split():
            try:
                pids.add(int(line))
            except ValueError:
                raise _bad(directory / "cgroup.procs", text) from None
    return sorted(pids)


# --- creating and removing -------------------------------------------------------------


def _init_cpuset(directory: Path) -> None:
    """A new v1 cpuset takes no task until cpus and mems are set: copy the parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        target = directory / name
        if _read(target).strip():
            continue
        value = _read(directory.parent / name).strip()
        try:
            with open(target, "w", encoding="ascii") as f:
                f.write(value)
        except OSError as exc:
            raise ContainerError(f"cannot write {target}: {exc.strerror}") from exc


def _mkdirs(directory: Path, mountpoint: Path, cpuset: bool) -> None:
    missing: list[Path] = []
    current = directory
    while current != mountpoint and not _exists(current):
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ContainerError(
                f"cannot create cgroup {path}: {exc.strerror}",
                "skiff must run as root with the cgroup hierarchies mounted read-write",
            ) from exc
        if cpuset:
            _init_cpuset(path)


def _hierarchies(mounts: CgroupMounts) -> list[CgroupMount]:
    if mounts.version == 2:
        return [mounts.unified] if mounts.unified is not None else []
    return mounts.v1_mounts()


def create_cgroup(path: str, mounts: CgroupMounts | None = None) -> Cgroup:
    """Create the cgroup ``path`` (absolute, like ``/skiff``) in every hierarchy.

    Existing directories are kept; missing ancestors are created as well.
    On v2 the runtime enables the controllers it needs in the ancestors'
    ``cgroup.subtree_control`` itself when it creates the container's
    cgroup, so nothing is enabled here.
    """
    mounts = mounts or CgroupMounts.read()
    absolute = _cgroups_path(path)
    dirs: dict[str, Path] = {}
    for mount in _hierarchies(mounts):
        directory = mount.directory(absolute)
        _mkdirs(directory, mount.mountpoint, "cpuset" in mount.controllers)
        if mount.version == 2:
            dirs[UNIFIED] = directory
        for name in mount.controllers:
            dirs[name] = directory
    return Cgroup(mounts.version, dirs)


def remove_cgroup(
    path: str, mounts: CgroupMounts | None = None, *, recursive: bool = False
) -> bool:
    """Remove the cgroup ``path`` from every hierarchy; True when it is gone everywhere.

    A cgroup that still has processes or (without ``recursive``) child
    cgroups is left in place and makes the result False: a shared parent
    such as ``/skiff`` is only removed once no container uses it. With
    ``recursive`` empty child cgroups are removed first, deepest first.
    """
    mounts = mounts or CgroupMounts.read()
    absolute = _cgroups_path(path)
    if absolute.strip("/") == "":
        raise ContainerError("refusing to remove the root cgroup")
    all_gone = True
    for mount in _hierarchies(mounts):
        directory = mount.directory(absolute)
        if not _exists(directory):
            continue
        targets = list(_walk(directory)) if recursive else [directory]
        for target in sorted(targets, key=lambda p: len(p.parts), reverse=True):
            try:
                os.rmdir(target)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    all_gone = False
                    continue
                raise ContainerError(f"cannot remove cgroup {target}: {exc.strerror}") from exc
    return all_gone
