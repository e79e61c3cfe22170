"""``skiff top``: the processes of a container, in ps(1)'s AIX format descriptors.

podman's ``top`` (containers/psgo) joins the container's mount namespace
and reads its /proc; skiff reads the host's /proc for the pids in the
container's cgroup (``skiff.runtime.cgroups.cgroup_procs``) and translates
what the host sees into what the container sees, so the output matches
podman 4.3's:

- PID, PPID and PGID are the pids in the container's pid namespace (the
  last ``NSpid`` entry); a parent outside that namespace (the runtime that
  started the container's init) is ``0``. ``hpid`` is the host pid.
- user and group ids are translated into the container's user namespace
  through ``/proc/PID/uid_map``/``gid_map`` when it has one, then named
  from the container's /etc/passwd and /etc/group, read *inside* its root
  filesystem (``specgen.rootfs.read_file``: a symlink in the image never
  reaches the host's files, a FIFO never blocks). An id without an entry,
  or a database that cannot be read safely, shows as the number, as ps and
  psgo print it. ``huser``/``hgroup`` name the host ids from the host's
  user database.
- ``etime`` is the time since the process started (start rounded down to
  the second, as psgo does), ``time`` the CPU time in whole seconds,
  ``pcpu`` their ratio — all printed as Go prints them (``1m41s``,
  ``2.338399627s``, ``90.862``).
- ``args`` joins the command line with spaces and keeps the trailing
  space psgo leaves from the final NUL (``busybox sleep 999 ``); a
  process without a command line (a kernel thread) shows ``[comm]``.

The default descriptors are psgo's ``user pid ppid pcpu etime tty time
args`` (the header of ``args`` is ``COMMAND``). Descriptors may be given as
separate arguments or comma-separated, in the normal (``pcpu``) or the code
form (``%C``). Unlike podman, an unknown descriptor is an error naming the
known ones: podman then runs ``ps`` inside the container with the
arguments, which depends on the image having a ps.

Processes that exit while the table is built are left out (reading /proc
races with them by nature), as psgo does.
"""

from __future__ import annotations

import logging
import os
import pwd
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from skiff.errors import ContainerError, UsageError
from skiff.gotemplate.duration import go_duration

log = logging.getLogger(__name__)

DEFAULT_DESCRIPTORS = ("user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args")
"""psgo's default, what ``podman top CONTAINER`` prints."""

MAX_USER_DB = 16 << 20
"""A container's /etc/passwd or /etc/group larger than this is not read."""


# --- Go's time.Duration -------------------------------------------------------------


def _go_time(seconds: int) -> str:
    """Go's ``time.Time.String()`` of a whole second, in local time."""
    moment = datetime.fromtimestamp(seconds).astimezone()
    offset = moment.strftime("%z")
    zone = moment.tzname() or ""
    if not zone.isalpha():
        zone = offset
    return moment.strftime("%Y-%m-%d %H:%M:%S ") + f"{offset} {zone}"


# --- one process ----------------------------------------------------------------------


@dataclass
class _Process:
    """What /proc says about one process, as the host sees it."""

    pid: int
    comm: str
    state_fields: list[str]
    """/proc/PID/stat after ``(comm)``: index 0 is field 3 (state)."""
    status: dict[str, str]
    cmdline: list[str]
    pidns: str
    userns: str

    def stat(self, number: int) -> str:
        """Field ``number`` of /proc/PID/stat, 1-based as proc(5) counts."""
        return self.state_fields[number - 3]

    def ids(self, key: str) -> list[int]:
        return [int(v) for v in self.status.get(key, "").split()]


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_process(pid: int) -> _Process | None:
    """The process's /proc entries; None when it has exited."""
    base = f"/proc/{pid}"
    try:
        stat = _read_bytes(f"{base}/stat").decode("utf-8", "replace")
        status_text = _read_bytes(f"{base}/status").decode("utf-8", "replace")
        cmdline = _read_bytes(f"{base}/cmdline")
        pidns = os.readlink(f"{base}/ns/pid")
        userns = os.readlink(f"{base}/ns/user")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as exc:
        raise ContainerError(f"cannot read {base}: {exc.strerror}") from exc
    open_paren, close_paren = stat.find("("), stat.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        raise ContainerError(f"cannot parse {base}/stat: {stat[:80]!r}")
    status: dict[str, str] = {}
    for line in status_text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            status[key] = value.strip()
    # psgo splits on NUL and keeps the empty string after the final NUL
    args = cmdline.decode("utf-8", "replace").split("\0") if cmdline else [""]
    return _Process(
        pid=pid,
        comm=stat[open_paren + 1 : close_paren],
        state_fields=stat[close_paren + 2 :].split(),
        status=status,
        cmdline=args,
        pidns=pidns,
        userns=userns,
    )


# --- id translation and names -----------------------------------------------------------


def _parse_id_map(text: str) -> list[tuple[int, int, int]]:
    """uid_map/gid_map lines: (inside, outside, count)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return out


def _overflow(kind: str) -> int:
    try:
        return int(_read_bytes(f"/proc/sys/fs/overflow{kind}").strip())
    except (OSError, ValueError):
        return 65534


def _names(data: bytes | None, group: bool) -> dict[int, str]:
    """id → name from an /etc/passwd or /etc/group (the first entry of an id wins)."""
    from skiff.runtime.specgen.user import parse_group, parse_passwd

    if data is None:
        return {}
    out: dict[int, str] = {}
    if group:
        for g in parse_group(data):
            out.setdefault(g.gid, g.name)
    else:
        for u in parse_passwd(data):
            out.setdefault(u.uid, u.name)
    return out


@dataclass
class _Context:
    """Shared state of one ``top_rows`` call: boot time, clocks, user databases, caches."""

    rootfs: Path | None
    own_userns: str
    now_ns: int = field(default_factory=time.time_ns)
    ticks: int = field(default_factory=lambda: os.sysconf("SC_CLK_TCK"))
    _boot_time: int | None = None
    _users: dict[int, str] | None = None
    _groups: dict[int, str] | None = None
    _ns_pids: dict[int, tuple[str, int] | None] = field(default_factory=dict)
    _maps: dict[tuple[int, str], list[tuple[int, int, int]]] = field(default_factory=dict)

    @property
    def boot_time(self) -> int:
        if self._boot_time is None:
            for line in _read_bytes("/proc/stat").decode().splitlines():
                if line.startswith("btime "):
                    self._boot_time = int(line.split()[1])
                    break
            else:
                raise ContainerError("cannot find the boot time (btime) in /proc/stat")
        return self._boot_time

    def _database(self, path: str, group: bool) -> dict[int, str]:
        from skiff.runtime.specgen import rootfs as rootfs_paths

        if self.rootfs is None:
            return {}
        try:
            data = rootfs_paths.read_file(self.rootfs, path, MAX_USER_DB)
        except OSError as exc:
            log.warning(
                "not naming users: cannot read %s in %s: %s",
                path,
                self.rootfs,
                exc.strerror or exc,
            )
            return {}
        return _names(data, group)

    def user_name(self, uid: int) -> str:
        if self._users is None:
            self._users = self._database("/etc/passwd", False)
        return self._users.get(uid, str(uid))

    def group_name(self, gid: int) -> str:
        if self._groups is None:
            self._groups = self._database("/etc/group", True)
        return self._groups.get(gid, str(gid))

    def ns_pid(self, host_pid: int, pidns: str) -> int:
        """``host_pid`` as seen in the pid namespace ``pidns``; 0 when it is not in it."""
        if host_pid <= 0:
            return 0
        if host_pid not in self._ns_pids:
            try:
                ns = os.readlink(f"/proc/{host_pid}/ns/pid")
                with open(f"/proc/{host_pid}/status", encoding="utf-8", errors="replace") as f:
                    nspid = next((line.split()[1:] for line in f if line.startswith("NSpid:")), [])
                self._ns_pids[host_pid] = (ns, int(nspid[-1]) if nspid else host_pid)
            except OSError:
                self._ns_pids[host_pid] = None
        entry = self._ns_pids[host_pid]
        if entry is None or entry[0] != pidns:
            return 0
        return entry[1]

    def prime(self, host_pid: int, pidns: str, ns_pid: int) -> None:
        """Record what was already read of a process, so it is not read again."""
        self._ns_pids[host_pid] = (pidns, ns_pid)

    def container_id(self, proc: _Process, host_id: int, kind: str) -> int:
        """A host uid/gid in the process's user namespace (unchanged when it shares ours)."""
        if proc.userns == self.own_userns:
            return host_id
        key = (proc.pid, kind)
        if key not in self._maps:
            try:
                text = _read_bytes(f"/proc/{proc.pid}/{kind}_map").decode()
            except OSError:
                text = ""
            self._maps[key] = _parse_id_map(text)
        for inside, outside, count in self._maps[key]:
            if outside <= host_id < outside + count:
                return inside + host_id - outside
        return _overflow(kind)

    def start_seconds(self, proc: _Process) -> int:
        return self.boot_time + int(proc.stat(22)) // self.ticks

    def elapsed_ns(self, proc: _Process) -> int:
        return self.now_ns - self.start_seconds(proc) * 1_000_000_000

    def cpu_seconds(self, proc: _Process) -> int:
        return (int(proc.stat(14)) + int(proc.stat(15))) // self.ticks


# --- descriptors --------------------------------------------------------------------------


def _host_user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _host_group(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _tty(tty_nr: int) -> str:
    """The controlling terminal's name under /dev, from its device number."""
    if tty_nr == 0:
        return "?"
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    if major == 5:
        return {0: "tty", 1: "console", 2: "ptmx"}.get(minor, "?")
    return "?"


def _caps(mask_hex: str) -> str:
    from skiff.runtime.specgen.capabilities import CAPABILITIES, from_mask

    mask = int(mask_hex or "0", 16)
    if mask == (1 << len(CAPABILITIES)) - 1:
        return "full"
    names = sorted(name.removeprefix("CAP_") for name in from_mask(mask))
    return ",".join(names) if names else "none"


def _label(proc: _Process) -> str:
    try:
        raw = _read_bytes(f"/proc/{proc.pid}/attr/current")
    except OSError:
        return "?"
    text = raw.decode("utf-8", "replace").rstrip("\0\n")
    return text or "?"


def _pcpu(p: _Process, c: _Context) -> str:
    elapsed = c.elapsed_ns(p) / 1e9
    cpu = c.cpu_seconds(p)
    return f"{100 * cpu / elapsed:.3f}" if elapsed > 0 else "0.000"


def _args(p: _Process, c: _Context) -> str:
    if not p.cmdline or p.cmdline[0] == "":
        return f"[{p.status.get('Name', p.comm)}]"
    return " ".join(p.cmdline)


def _seccomp(p: _Process, c: _Context) -> str:
    return {"0": "disabled", "1": "strict", "2": "filter"}.get(p.status.get("Seccomp", ""), "?")


def _groups(p: _Process, c: _Context) -> str:
    return ",".join(c.group_name(c.container_id(p, g, "gid")) for g in p.ids("Groups"))


_Fn = Callable[[_Process, _Context], str]


@dataclass(frozen=True)
class Descriptor:
    """One AIX format descriptor: its code (``%C``), normal name (``pcpu``) and header."""

    code: str
    normal: str
    header: str
    value: _Fn


DESCRIPTORS: tuple[Descriptor, ...] = (
    Descriptor("%C", "pcpu", "%CPU", _pcpu),
    Descriptor(
        "%G", "group", "GROUP", lambda p, c: c.group_name(c.container_id(p, p.ids("Gid")[1], "gid"))
    ),
    Descriptor("", "groups", "GROUPS", _groups),
    Descriptor("%P", "ppid", "PPID", lambda p, c: str(c.ns_pid(int(p.status["PPid"]), p.pidns))),
    Descriptor(
        "%U", "user", "USER", lambda p, c: c.user_name(c.container_id(p, p.ids("Uid")[1], "uid"))
    ),
    Descriptor("", "uid", "UID", lambda p, c: str(c.container_id(p, p.ids("Uid")[1], "uid"))),
    Descriptor("%a", "args", "COMMAND", _args),
    Descriptor("%c", "comm", "COMMAND", lambda p, c: p.comm),
    Descriptor(
        "%g",
        "rgroup",
        "RGROUP",
        lambda p, c: c.group_name(c.container_id(p, p.ids("Gid")[0], "gid")),
    ),
    Descriptor("%n", "nice", "NI", lambda p, c: p.stat(19)),
    Descriptor("%p", "pid", "PID", lambda p, c: str(c.ns_pid(p.pid, p.pidns))),
    Descriptor("%r", "pgid", "PGID", lambda p, c: str(c.ns_pid(int(p.stat(5)), p.pidns))),
    Descriptor("%t", "etime", "ELAPSED", lambda p, c: go_duration(c.elapsed_ns(p))),
    Descriptor(
        "%u", "ruser", "RUSER", lambda p, c: c.user_name(c.container_id(p, p.ids("Uid")[0], "uid"))
    ),
    Descriptor("%x", "time", "TIME", lambda p, c: go_duration(c.cpu_seconds(p) * 1_000_000_000)),
    Descriptor("%y", "tty", "TTY", lambda p, c: _tty(int(p.stat(7)))),
    Descriptor("%z", "vsz", "VSZ", lambda p, c: str(int(p.stat(23)) // 1024)),
    Descriptor("", "capamb", "AMBIENT CAPS", lambda p, c: _caps(p.status.get("CapAmb", ""))),
    Descriptor("", "capinh", "INHERITED CAPS", lambda p, c: _caps(p.status.get("CapInh", ""))),
    Descriptor("", "capprm", "PERMITTED CAPS", lambda p, c: _caps(p.status.get("CapPrm", ""))),
    Descriptor("", "capeff", "EFFECTIVE CAPS", lambda p, c: _caps(p.status.get("CapEff", ""))),
    Descriptor("", "capbnd", "BOUNDING CAPS", lambda p, c: _caps(p.status.get("CapBnd", ""))),
    Descriptor("", "seccomp", "SECCOMP", _seccomp),
    Descriptor("", "label", "LABEL", lambda p, c: _label(p)),
    Descriptor("", "hpid", "HPID", lambda p, c: str(p.pid)),
    Descriptor("", "huser", "HUSER", lambda p, c: _host_user(p.ids("Uid")[1])),
    Descriptor("", "huid", "HUID", lambda p, c: str(p.ids("Uid")[1])),
    Descriptor("", "hgroup", "HGROUP", lambda p, c: _host_group(p.ids("Gid")[1])),
    Descriptor("", "hgroups", "HGROUPS", lambda p, c: ",".join(p.status.get("Groups", "").split())),
    Descriptor("", "rss", "RSS", lambda p, c: p.status.get("VmRSS", "0 kB").split()[0]),
    Descriptor("", "state", "STATE", lambda p, c: p.status.get("State", "?").split()[0]),
    Descriptor("", "stime", "STIME", lambda p, c: _go_time(c.start_seconds(p))),
)


def list_descriptors() -> list[str]:
    """The normal names of all descriptors, sorted (``podman top -l``'s help list)."""
    return sorted(d.normal for d in DESCRIPTORS)


def parse_descriptors(args: Sequence[str]) -> list[Descriptor]:
    """Descriptors from the command line: separate or comma-separated, code or normal form.

    No descriptors (or only empty ones) means ``DEFAULT_DESCRIPTORS``.
    """
    words = [w.strip() for arg in args for w in arg.split(",") if w.strip()]
    if not words:
        words = list(DEFAULT_DESCRIPTORS)
    by_name = {d.normal: d for d in DESCRIPTORS} | {d.code: d for d in DESCRIPTORS if d.code}
    out = []
    for word in words:
        found = by_name.get(word)
        if found is None:
            raise UsageError(
                f"unknown top descriptor {word!r}",
                "use ps(1) AIX format descriptors: " + ", ".join(list_descriptors()),
            )
        out.append(found)
    return out


def top_rows(
    pids: Iterable[int], descriptors: Sequence[str], rootfs: Path | None
) -> tuple[list[str], list[list[str]]]:
    """The header and one row per process, as ``podman top`` prints them.

    ``pids``: host pids of the container's processes (``cgroup_procs``).
    ``descriptors``: the user's arguments (empty for the default).
    ``rootfs``: the container's root filesystem on the host, where users
    and groups are named from (None: ids stay numbers). Rows are ordered
    by pid inside the container. Print them with
    ``skiff.cli.output.format_table(headers, rows)``.
    """
    chosen = parse_descriptors(descriptors)
    context = _Context(rootfs=rootfs, own_userns=os.readlink("/proc/self/ns/user"))
    processes = [p for p in (_read_process(pid) for pid in pids) if p is not None]
    for proc in processes:
        nspid = proc.status.get("NSpid", "").split()
        context.prime(proc.pid, proc.pidns, int(nspid[-1]) if nspid else proc.pid)
    processes.sort(key=lambda p: (context.ns_pid(p.pid, p.pidns), p.pid))
    rows = []
    for proc in processes:
        try:
            rows.append([d.value(proc, context) for d in chosen])
        except (IndexError, KeyError, ValueError) as exc:
            raise ContainerError(
                f"cannot read process {proc.pid}: unexpected /proc content ({exc})"
            ) from exc
    return [d.header for d in chosen], rows
