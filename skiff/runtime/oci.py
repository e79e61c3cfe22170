"""The OCI runtime (runc or crun): choosing one, and a thin wrapper around it.

The wrapper is stateless: argv builders plus result parsing. Every call
passes ``--root RUNROOT/runtime/NAME`` (the runtime's state directory, per
boot) and ``--log FILE --log-format json`` (a fresh file per call, read back
for the error message: runc and crun put their real reason — "exec: "x":
executable file not found in $PATH", "cgroups in hybrid mode not supported"
— there, while stderr only says "exit status 1").

Calls never hand the runtime anything but fds 0, 1 and 2 (``close_fds``,
no ``pass_fds``) and drop the variables through which runc passes fds or
sockets on into the container (``LISTEN_FDS``/``LISTEN_PID``/
``LISTEN_FDNAMES`` for socket activation, ``NOTIFY_SOCKET``): a container
must never inherit a host fd (CVE-2024-21626 was a leaked one).

Choosing the runtime (``select_runtime``):

- ``--runtime NAME|PATH`` is used as given; if it cannot work on this host
  that is an error naming the reason (no silent switch to another runtime).
- otherwise the configured default (containers.conf ``runtime``), else
  crun, else runc — the first that can work here. A runtime that cannot is
  passed over with its reason recorded in ``RuntimeChoice.reason``, which
  ``skiff info`` prints.
- crun before 1.9 refuses to create containers when the host has cgroup v1
  hierarchies *and* a cgroup2 mount at /sys/fs/cgroup/unified that owns a
  controller ("cgroups in hybrid mode not supported"; this host: hugetlb),
  even with ``--cgroup-manager=disabled``. That is detected from the mount
  table and the version, not by running a container; the verdict is cached
  per boot (keyed by the binary's mtime and size) in
  RUNROOT/runtime/probe.json so that ordinary commands do not exec
  ``crun --version``. Such a crun is still used, through a script that
  runs each call in a mount namespace of its own without that cgroup2
  mount (``crun_hybrid.py``: ``RuntimeChoice.wrapper``, the executable
  every call and conmon run; ``path`` stays crun's). Only where that
  script cannot be written (no busybox, no util-linux) is crun passed over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal as signals
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from skiff.errors import ContainerError, ContainerStateError, UsageError
from skiff.runtime import procwait
from skiff.runtime.specgen.host import CgroupLayout, detect_cgroup_layout

log = logging.getLogger(__name__)

PREFERRED = ("crun", "runc")
SEARCH_DIRS = ("/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/usr/sbin", "/bin", "/sbin")
CRUN_HYBRID_FIXED = (1, 9)
DEFAULT_TIMEOUT = 120.0
_DROPPED_ENV = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")
_PROBE_FILE = "probe.json"


# --- choosing -----------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeCheck:
    """Whether a runtime binary can create containers on this host."""

    usable: bool
    version: str
    reason: str = ""


@dataclass(frozen=True)
class RuntimeChoice:
    name: str
    path: Path
    version: str
    reason: str
    """Why this one: "requested with --runtime", "configured default", or
    the reasons the preferred runtimes were passed over."""
    wrapper: Path | None = None
    """What runs instead of ``path`` (crun on hybrid cgroups: crun_hybrid.py)."""

    @property
    def executable(self) -> Path:
        return self.wrapper or self.path


def find_runtime(name_or_path: str) -> Path | None:
    if "/" in name_or_path:
        path = Path(name_or_path)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which(name_or_path)
    if found:
        return Path(found)
    for directory in SEARCH_DIRS:
        candidate = Path(directory) / name_or_path
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def parse_version(output: str) -> str:
    """``runc version 1.1.5+ds1`` / ``crun version 1.8.1`` → ``1.1.5+ds1``."""
    for line in output.splitlines():
        match = re.match(r"^\S+ version (\S+)", line.strip())
        if match:
            return match.group(1)
    return ""


def version_tuple(version: str) -> tuple[int, ...]:
    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if match is None:
        return ()
    return tuple(int(g) for g in match.groups() if g is not None)


def _runtime_version(path: Path) -> str:
    try:
        result = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ContainerError(f"cannot run {path} --version: {exc}") from exc
    return parse_version(result.stdout)


def host_problem(kind: str, version: str, layout: CgroupLayout) -> str:
    """Why a runtime of this kind and version cannot work here ("" if it can)."""
    if kind == "crun" and layout.is_hybrid and version_tuple(version) < CRUN_HYBRID_FIXED:
        return (
            f"crun {version} cannot create containers on hybrid cgroups (the cgroup2 mount "
            f"at /sys/fs/cgroup/unified owns {', '.join(layout.hybrid_controllers)}); "
            "crun 1.9 or newer handles them"
        )
    return ""


def _runtime_kind(path: Path) -> str:
    name = path.name
    return "crun" if name.startswith("crun") else "runc" if name.startswith("runc") else name


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def check_runtime(path: Path, run_root: Path, layout: CgroupLayout | None = None) -> RuntimeCheck:
    """Whether ``path`` can work here; cached per boot in RUNROOT/runtime."""
    st = path.stat()
    key = str(path)
    stamp = {"mtime_ns": st.st_mtime_ns, "size": st.st_size}
    cache_path = run_root / "runtime" / _PROBE_FILE
    boot = _boot_id()
    layout = layout or detect_cgroup_layout()
    cache: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(cache_path.read_text())
        if isinstance(loaded, dict) and loaded.get("boot_id") == boot:
            cache = loaded
    entries = cache.get("runtimes") if isinstance(cache.get("runtimes"), dict) else {}
    assert isinstance(entries, dict)
    entry = entries.get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        return RuntimeCheck(
            bool(entry.get("usable")), str(entry.get("version", "")), str(entry.get("reason", ""))
        )
    version = _runtime_version(path)
    if not version:
        check = RuntimeCheck(False, "", f"{path} --version printed no version")
    else:
        problem = host_problem(_runtime_kind(path), version, layout)
        check = RuntimeCheck(not problem, version, problem)
    entries = {
        **entries,
        key: {**stamp, "usable": check.usable, "version": check.version, "reason": check.reason},
    }
    _write_cache(cache_path, {"boot_id": boot, "runtimes": entries})
    return check


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    """Write the probe cache atomically; failing to is only logged (losing a
    cache costs one ``--version`` exec next time)."""
    import tempfile

    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        log.debug("cannot write %s: %s", path, exc)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _hybrid_wrapper(
    path: Path, check: RuntimeCheck, run_root: Path, layout: CgroupLayout
) -> Path | None:
    """The crun_hybrid script for a crun refused only for hybrid cgroups."""
    if check.usable or _runtime_kind(path) != "crun" or not check.version:
        return None
    if not layout.is_hybrid or not host_problem("crun", check.version, layout):
        return None
    from skiff.runtime.crun_hybrid import ensure_wrapper

    return ensure_wrapper(run_root, path)


def _wrapped_reason(check: RuntimeCheck, wrapper: Path) -> str:
    return (
        f"{check.reason}; so each crun call runs in a mount namespace of its own "
        f"without that mount ({wrapper})"
    )


def select_runtime(
    run_root: Path,
    requested: str | None = None,
    *,
    default: str | None = None,
    layout: CgroupLayout | None = None,
    wrap_hybrid: bool = False,
) -> RuntimeChoice:
    """Pick the OCI runtime (see the module docstring).

    ``wrap_hybrid``: allow crun on hybrid cgroups through its wrapper
    script. The script lives in the run root (per boot), so only callers
    that run the runtime now may use it — not, say, a systemd unit written
    for later boots."""
    layout = layout or detect_cgroup_layout()
    if requested:
        path = find_runtime(requested)
        if path is None:
            raise UsageError(
                f"OCI runtime {requested!r} not found",
                "give a runtime name on PATH (crun, runc) or an executable's path",
            )
        check = check_runtime(path, run_root, layout)
        wrapper = _hybrid_wrapper(path, check, run_root, layout) if wrap_hybrid else None
        if wrapper is not None:
            reason = "requested with --runtime; " + _wrapped_reason(check, wrapper)
            return RuntimeChoice(_runtime_kind(path), path, check.version, reason, wrapper)
        if not check.usable:
            raise ContainerError(
                f"OCI runtime {path} cannot be used: {check.reason}", "use --runtime runc"
            )
        return RuntimeChoice(_runtime_kind(path), path, check.version, "requested with --runtime")
    candidates = ([default] if default else []) + [p for p in PREFERRED if p != default]
    passed_over: list[str] = []
    for candidate in candidates:
        path = find_runtime(candidate)
        if path is None:
            passed_over.append(f"{candidate} not found")
            continue
        check = check_runtime(path, run_root, layout)
        wrapper = _hybrid_wrapper(path, check, run_root, layout) if wrap_hybrid else None
        if not check.usable and wrapper is None:
            passed_over.append(check.reason)
            if candidate == default:
                log.warning("configured runtime %s cannot be used: %s", candidate, check.reason)
            continue
        if candidate == default:
            reason = "configured default"
        elif passed_over:
            reason = "; ".join(passed_over) + f"; using {_runtime_kind(path)}"
        else:
            reason = "preferred runtime"
        if wrapper is not None:
            reason += "; " + _wrapped_reason(check, wrapper)
        return RuntimeChoice(_runtime_kind(path), path, check.version, reason, wrapper)
    raise ContainerError(
        "no usable OCI runtime: " + "; ".join(passed_over),
        "install runc (Debian package runc) or crun",
    )


# --- the wrapper ----------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeResult:
    stdout: str
    stderr: str


def _clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    base = dict(os.environ if env is None else env)
    for name in _DROPPED_ENV:
        base.pop(name, None)
    return base


def read_log_errors(path: Path) -> list[str]:
    """The error messages of a runtime ``--log-format json`` file."""
    messages = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
            messages.append(str(entry.get("msg", "")).strip())
    return [m for m in messages if m]


def _without_unlimited(resources: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """``resources`` without the "unlimited" pids limit and CPU quota, and
    which of them were there (cpu: with the period to keep)."""
    out = dict(resources)
    lift: dict[str, int] = {}
    pids = out.get("pids")
    if isinstance(pids, Mapping) and pids.get("limit") == -1:
        del out["pids"]
        lift["pids"] = -1
    cpu = out.get("cpu")
    if isinstance(cpu, Mapping) and cpu.get("quota") == -1:
        rest = {key: value for key, value in cpu.items() if key != "quota"}
        if rest:
            out["cpu"] = rest
        else:
            del out["cpu"]
        lift["cpu"] = int(cpu.get("period") or 100_000)
    return out, lift


class OCIRuntime:
    """runc/crun for one store: ``--root`` is RUNROOT/runtime/NAME."""

    def __init__(self, choice: RuntimeChoice, run_root: Path) -> None:
        self.choice = choice
        self.name = choice.name
        self.path = choice.executable
        """What is executed (conmon's ``-r`` too): the runtime, or its wrapper."""
        self.state_root = run_root / "runtime" / choice.name
        self.log_dir = run_root / "runtime" / f"{choice.name}.logs"
        """Per-call ``--log`` files, kept out of ``state_root`` (the runtime
        lists every entry there as a container)."""

    @classmethod
    def for_store(
        cls, run_root: Path, requested: str | None = None, *, default: str | None = None
    ) -> OCIRuntime:
        return cls(select_runtime(run_root, requested, default=default, wrap_hybrid=True), run_root)

    # --- argv ---------------------------------------------------------------------
    def global_args(self, log_path: Path | None = None) -> list[str]:
        """Options before the subcommand (conmon takes them as --runtime-arg)."""
        args = ["--root", str(self.state_root)]
        if log_path is not None:
            args += ["--log", str(log_path), "--log-format", "json"]
        return args

    def argv(self, *args: str, log_path: Path | None = None) -> list[str]:
        return [str(self.path), *self.global_args(log_path), *args]

    def create_args(
        self,
        container_id: str,
        bundle: Path,
        *,
        pid_file: Path | None = None,
        console_socket: Path | None = None,
        no_pivot: bool = False,
        preserve_fds: int = 0,
    ) -> list[str]:
        args = ["create", "--bundle", str(bundle)]
        if pid_file is not None:
            args += ["--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        if no_pivot:
            args.append("--no-pivot")
        if preserve_fds:
            args += ["--preserve-fds", str(preserve_fds)]
        return [*args, container_id]

    def run_args(
        self,
        container_id: str,
        bundle: Path,
        *,
        detach: bool = False,
        pid_file: Path | None = None,
        no_pivot: bool = False,
    ) -> list[str]:
        """``run``: create + start in one call (one-shot containers, tests)."""
        args = ["run", "--bundle", str(bundle)]
        if detach:
            args.append("--detach")
        if pid_file is not None:
            args += ["--pid-file", str(pid_file)]
        if no_pivot:
            args.append("--no-pivot")
        return [*args, container_id]

    def exec_argv(
        self,
        container_id: str,
        process_json: Path,
        *,
        tty: bool = False,
        detach: bool = False,
        pid_file: Path | None = None,
        console_socket: Path | None = None,
        preserve_fds: int = 0,
        log_path: Path | None = None,
    ) -> list[str]:
        """The full argv of ``exec --process FILE`` for the caller to run
        with its own stdio (interactive exec)."""
        args = ["exec", "--process", str(process_json)]
        if tty:
            args.append("--tty")
        if detach:
            args.append("--detach")
        if pid_file is not None:
            args += ["--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        if preserve_fds:
            args += ["--preserve-fds", str(preserve_fds)]
        return self.argv(*args, container_id, log_path=log_path)

    # --- running ------------------------------------------------------------------
    def _invoke(
        self,
        args: Sequence[str],
        *,
        what: str,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
        input_data: bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> RuntimeResult:
        log_path = self._new_call_log()
        try:
            try:
                result = procwait.run(
                    self.argv(*args, log_path=log_path),
                    stdin=stdin,
                    input_data=input_data,
                    stdout=stdout,
                    stderr=stderr,
                    env=_clean_env(),
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired as exc:
                raise ContainerError(f"{self.name} {what}: no answer within {timeout} s") from exc
            except OSError as exc:
                raise ContainerError(f"cannot run {self.path}: {exc.strerror}") from exc
            out = result.stdout.decode(errors="replace") if isinstance(result.stdout, bytes) else ""
            err = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else ""
            if result.returncode != 0:
                errors = read_log_errors(log_path)
                message = (
                    errors[-1]
                    if errors
                    else (err.strip().splitlines() or ["exit status " + str(result.returncode)])[-1]
                )
                raise ContainerError(f"{self.name} {what}: {message}")
            return RuntimeResult(out, err)
        finally:
            with contextlib.suppress(OSError):
                log_path.unlink()

    def _new_call_log(self) -> Path:
        """A new empty file for one call's ``--log`` (``tempfile.mkstemp``'s
        O_EXCL create under a random name, without importing tempfile)."""
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        while True:
            path = self.log_dir / f"call-{os.urandom(6).hex()}.json"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                raise ContainerError(f"cannot create a log file in {self.log_dir}: {exc}") from exc
            os.close(fd)
            return path

    def exists(self, container_id: str) -> bool:
        """Whether the runtime has state for the container (runc and crun keep a
        directory named by the id under ``--root``)."""
        return (self.state_root / container_id).exists()

    def create(
        self,
        container_id: str,
        bundle: Path,
        *,
        pid_file: Path | None = None,
        console_socket: Path | None = None,
        no_pivot: bool = False,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = subprocess.DEVNULL,
    ) -> None:
        """``create``: the container's stdio are the given files (the container
        keeps them open, so they are never pipes read to the end here)."""
        self._invoke(
            self.create_args(
                container_id,
                bundle,
                pid_file=pid_file,
                console_socket=console_socket,
                no_pivot=no_pivot,
            ),
            what=f"create {container_id}",
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )

    def start(self, container_id: str) -> None:
        self._invoke(["start", container_id], what=f"start {container_id}")

    def state(self, container_id: str) -> dict[str, Any] | None:
        """The runtime's ``state`` JSON (``status``: creating, created,
        running, paused, stopped; ``pid``), or None if it has no such container."""
        if not self.exists(container_id):
            return None
        try:
            result = self._invoke(["state", container_id], what=f"state {container_id}")
        except ContainerError:
            if not self.exists(container_id):
                return None
            raise
        try:
            data = json.loads(result.stdout)
        except ValueError as exc:
            raise ContainerError(f"{self.name} state {container_id}: unreadable output") from exc
        if not isinstance(data, dict):
            raise ContainerError(f"{self.name} state {container_id}: unexpected output")
        return data

    def kill(
        self, container_id: str, sig: int | str = signals.SIGTERM, *, all_processes: bool = False
    ) -> None:
        number = int(sig) if not isinstance(sig, str) else sig
        args = ["kill"] + (["--all"] if all_processes else []) + [container_id, str(number)]
        try:
            self._invoke(args, what=f"kill {container_id}")
        except ContainerError as exc:
            state = self.state(container_id)
            if state is None or state.get("status") == "stopped":
                raise ContainerStateError(f"container {container_id} is not running") from exc
            raise

    def delete(self, container_id: str, *, force: bool = False) -> None:
        """``delete``; nothing to do when the runtime has no such container."""
        if not self.exists(container_id):
            return
        try:
            self._invoke(
                ["delete", *(["--force"] if force else []), container_id],
                what=f"delete {container_id}",
            )
        except ContainerError:
            if not self.exists(container_id):
                return
            raise

    def pause(self, container_id: str) -> None:
        self._invoke(["pause", container_id], what=f"pause {container_id}")

    def resume(self, container_id: str) -> None:
        self._invoke(["resume", container_id], what=f"resume {container_id}")

    def update(self, container_id: str, resources: Mapping[str, Any]) -> None:
        """``update --resources FILE`` with an OCI ``linux.resources`` object.

        crun 1.8 cannot lift a limit: for ``"pids": {"limit": -1}`` it
        writes -1 into pids.max and for ``"cpu": {"quota": -1}`` a huge
        number into the CFS quota, both refused by the kernel (and 0 means
        "leave it" to it). So for crun those two are taken out of the
        update and written here, as runc writes them: "max" into pids.max,
        -1 into cpu.cfs_quota_us (cgroup v2: "max PERIOD" into cpu.max), in
        the cgroup the runtime's state says the container's bundle names.
        """
        import tempfile

        lift: dict[str, int] = {}
        if self.name == "crun":
            resources, lift = _without_unlimited(resources)
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(dir=self.log_dir, prefix="resources-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(dict(resources), f)
            self._invoke(
                ["update", "--resources", name, container_id], what=f"update {container_id}"
            )
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)
        if lift:
            self._lift_limits(container_id, lift)

    def _lift_limits(self, container_id: str, lift: Mapping[str, int]) -> None:
        from skiff.runtime.cgroups import cgroup_at

        what = f"{self.name} update {container_id}"
        state = self.state(container_id)
        if state is None:
            raise ContainerStateError(f"{what}: the runtime has no such container")
        try:
            config = json.loads((Path(str(state.get("bundle"))) / "config.json").read_bytes())
            cgroup = cgroup_at(str(config["linux"]["cgroupsPath"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ContainerError(f"{what}: cannot find the container's cgroup: {exc}") from exc
        writes: list[tuple[Path | None, str, str]] = []
        if "pids" in lift:
            writes.append((cgroup.dir("pids"), "pids.max", "max"))
        if "cpu" in lift:
            if cgroup.version == 2:
                writes.append((cgroup.dir("cpu"), "cpu.max", f"max {lift['cpu']}"))
            else:
                writes.append((cgroup.dir("cpu"), "cpu.cfs_quota_us", "-1"))
        for directory, filename, value in writes:
            if directory is None:
                continue  # the controller is not mounted here: no limit to lift
            try:
                (directory / filename).write_text(value)
            except OSError as exc:
                raise ContainerError(
                    f"{what}: writing {directory}/{filename}: {exc.strerror}"
                ) from exc

    def list_ids(self) -> list[str]:
        result = self._invoke(["list", "--format", "json"], what="list")
        data = json.loads(result.stdout or "null")
        return [str(c.get("id")) for c in data or [] if isinstance(c, dict)]

    def version(self) -> str:
        return self.choice.version or _runtime_version(self.path)

    def features(self) -> dict[str, Any] | None:
        """``features`` (runc ≥ 1.1), or None when this runtime has no such command."""
        try:
            result = self._invoke(["features"], what="features")
        except ContainerError:
            return None
        try:
            data = json.loads(result.stdout)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
