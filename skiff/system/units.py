"""systemd units of system containers: names, the default unit, and systemctl.

The default unit (an image without ``service.template``) runs the OCI
runtime directly — no skiff process stays around::

    ExecStartPre=-RUNTIME --root R delete --force NAME   (a leftover of a crash)
    ExecStart=RUNTIME --root R run --bundle DESTDIR --pid-file PIDFILE NAME
    ExecStop=-RUNTIME --root R kill NAME SIGNAL          (the image's StopSignal)
    ExecStopPost=-RUNTIME --root R delete --force NAME   (kills what is left)
    Restart=on-failure, WantedBy=multi-user.target

``runc run`` stays in the foreground, forwards signals to the container
and exits with its status, so the service's main process is the runtime
and ``Restart=on-failure`` sees the container's failures. The container
lives in its own cgroup (``/skiff-system/NAME``, cgroupfs), so systemd
cannot kill it by the unit's cgroup: ``ExecStopPost`` deletes it with
``--force``, which kills whatever survived the stop signal.

Ordering comes from image labels: ``after``, ``before``, ``requires``,
``wants`` (space- or comma-separated unit names; ``after=etcd.service``
makes flannel start after etcd). Every name is checked, so a label cannot
inject a line into the unit.

systemctl is only used when systemd runs (``/run/systemd/system`` exists,
as sd_booted(3) checks) and the unit directory is one systemd reads;
otherwise each skipped step becomes a note for the user.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skiff.errors import SystemContainerError, UsageError

DEFAULT_SYSTEMD_DIR = Path("/etc/systemd/system")
DEFAULT_TMPFILES_DIR = Path("/etc/tmpfiles.d")
SYSTEMD_RUNNING_MARKER = Path("/run/systemd/system")
SYSTEMD_UNIT_DIRS = (
    Path("/etc/systemd/system"),
    Path("/run/systemd/system"),
    Path("/usr/local/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
    Path("/lib/systemd/system"),
)
"""Directories the system manager loads units from (systemd.unit(5))."""

MAX_NAME = 200
_NAME_RE = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_SLOT_SUFFIX_RE = re.compile(r"\.\d+\Z")
_UNIT_RE = re.compile(
    r"\A[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?"
    r"\.(service|socket|target|mount|automount|device|path|timer|slice|scope|swap)\Z"
)
ORDERING_LABELS = {"after": "After", "before": "Before", "requires": "Requires", "wants": "Wants"}


def check_name(name: str) -> None:
    """A system container's name: a unit name, a runtime container ID and a
    directory name at once, so the intersection of their rules."""
    if not name or len(name) > MAX_NAME or not _NAME_RE.match(name):
        raise UsageError(
            f"invalid system container name {name!r}: not a valid unit name",
            f"use up to {MAX_NAME} letters, digits, '_', '.' or '-', starting with a letter, "
            "digit or '_'",
        )
    if _SLOT_SUFFIX_RE.search(name):
        raise UsageError(
            f"invalid system container name {name!r}: it may not end in '.<number>'",
            "NAME.0 and NAME.1 are the names of a system container's deployments",
        )
    if name.endswith(".service"):
        raise UsageError(
            f"invalid system container name {name!r}",
            f"give the name without '.service' ({name.removesuffix('.service')})",
        )


def unit_file_name(name: str) -> str:
    return f"{name}.service"


def ordering_from_labels(labels: Mapping[str, str]) -> dict[str, list[str]]:
    """``{"After": ["etcd.service"], ...}`` from the image's ordering labels."""
    out: dict[str, list[str]] = {}
    for label, directive in ORDERING_LABELS.items():
        value = labels.get(label)
        if value is None:
            continue
        units = [u for u in re.split(r"[\s,]+", value) if u]
        for unit in units:
            if not _UNIT_RE.match(unit):
                raise SystemContainerError(
                    f"the image's label {label}={value!r} names {unit!r}, not a unit",
                    "ordering labels take unit names such as etcd.service",
                )
        if units:
            out[directive] = units
    return out


# --- command lines ------------------------------------------------------------------------

_PLAIN_ARG = re.compile(r"\A[A-Za-z0-9_@%+=:,./-]+\Z")


def quote_exec_arg(arg: str) -> str:
    """One argument of an ``Exec*=`` line, quoted as systemd.service(5) reads it.

    ``%`` (specifiers) and ``$`` (environment) are doubled either way.
    """
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN_ARG.match(arg):
        return escaped
    if "\n" in arg or "\0" in arg:
        raise SystemContainerError(f"cannot put {arg!r} on a unit's command line")
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(argv: Sequence[str], *, ignore_failure: bool = False) -> str:
    return ("-" if ignore_failure else "") + " ".join(quote_exec_arg(a) for a in argv)


@dataclass(frozen=True)
class RuntimeCommands:
    """The four command lines of a system container (the $EXEC_* values)."""

    start: str
    stop: str
    start_pre: str
    stop_post: str


def runtime_commands(
    runtime: Path, state_root: Path, name: str, *, bundle: Path, pid_file: str, stop_signal: int
) -> RuntimeCommands:
    base = [str(runtime), "--root", str(state_root)]
    return RuntimeCommands(
        start=exec_line([*base, "run", "--bundle", str(bundle), "--pid-file", pid_file, name]),
        stop=exec_line([*base, "kill", name, str(stop_signal)], ignore_failure=True),
        start_pre=exec_line([*base, "delete", "--force", name], ignore_failure=True),
        stop_post=exec_line([*base, "delete", "--force", name], ignore_failure=True),
    )


def render_default_unit(
    values: Mapping[str, str],
    *,
    description: str,
    ordering: Mapping[str, Sequence[str]],
) -> str:
    """The unit of an image without ``service.template`` (module docstring)."""
    if "\n" in description:
        raise SystemContainerError("a unit description cannot hold a newline")
    lines = ["[Unit]", f"Description={description.replace('%', '%%')}"]
    for directive in ("Requires", "Wants", "After", "Before"):
        if ordering.get(directive):
            lines.append(f"{directive}={' '.join(ordering[directive])}")
    lines += [
        "",
        "[Service]",
        "Type=simple",
        f"ExecStartPre={values['EXEC_STARTPRE']}",
        f"ExecStart={values['EXEC_START']}",
        f"ExecStop={values['EXEC_STOP']}",
        f"ExecStopPost={values['EXEC_STOPPOST']}",
        "Restart=on-failure",
        f"WorkingDirectory={values['DESTDIR'].replace('%', '%%')}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


# --- systemctl ------------------------------------------------------------------------------


def systemd_running(marker: Path = SYSTEMD_RUNNING_MARKER) -> bool:
    """Whether the host was booted with systemd (sd_booted(3))."""
    return marker.is_dir()


@dataclass
class Systemd:
    """systemctl and systemd-tmpfiles when systemd runs; notes when it does not.

    ``actions`` are the commands run (for the user to see), ``notes`` the
    steps skipped and why.
    """

    running: bool = field(default_factory=systemd_running)
    actions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def manages(unit_dir: Path) -> bool:
        return any(unit_dir == d for d in SYSTEMD_UNIT_DIRS)

    def _usable(self, what: str, unit_dir: Path | None = None) -> bool:
        if not self.running:
            self.notes.append(f"systemd is not running: skipped {what}")
            return False
        if unit_dir is not None and not self.manages(unit_dir):
            self.notes.append(f"{unit_dir} is not a directory systemd reads: skipped {what}")
            return False
        return True

    def _run(self, argv: list[str]) -> None:
        self.actions.append(" ".join(argv))
        if shutil.which(argv[0]) is None:
            raise SystemContainerError(f"{argv[0]} not found", "install systemd")
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SystemContainerError(f"{' '.join(argv)} failed: {exc}") from exc
        if result.returncode != 0:
            message = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
            raise SystemContainerError(
                f"{' '.join(argv)} failed: {message}", "see journalctl -xe for the details"
            )

    def daemon_reload(self, unit_dir: Path) -> None:
        if self._usable("systemctl daemon-reload", unit_dir):
            self._run(["systemctl", "daemon-reload"])

    def enable(self, unit: str, unit_dir: Path) -> None:
        if self._usable(f"systemctl enable {unit}", unit_dir):
            self._run(["systemctl", "enable", unit])

    def try_restart(self, unit: str, unit_dir: Path) -> None:
        """Restart the unit if it runs, so an update or rollback takes effect."""
        if self._usable(f"systemctl try-restart {unit}", unit_dir):
            self._run(["systemctl", "try-restart", unit])

    def disable_now(self, unit: str, unit_dir: Path) -> None:
        if self._usable(f"systemctl disable --now {unit}", unit_dir):
            self._run(["systemctl", "disable", "--now", unit])

    def tmpfiles_create(self, path: Path) -> None:
        if self._usable(f"systemd-tmpfiles --create {path}"):
            self._run(["systemd-tmpfiles", "--create", str(path)])

    def tmpfiles_remove(self, path: Path) -> None:
        if self._usable(f"systemd-tmpfiles --remove {path}"):
            self._run(["systemd-tmpfiles", "--remove", str(path)])
