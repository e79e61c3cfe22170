"""Starting conmon, the per-container monitor, and reading what it reports.

Every running container (and every exec session) is watched by its own
conmon (Debian's conmon 2.1.x, API version 1): it runs ``RUNTIME create``
(or ``RUNTIME exec``), holds the container's stdio (pipes, or the pty
master with ``-t``), writes the k8s-file log, serves the attach socket,
records the exit code in ``EXIT_DIR/<container id>`` and finally runs the
exit command (``skiff ... container cleanup ID``). conmon double-forks, so
the monitor outlives the skiff process that started it.

The handshake, as libpod drives it:

1. skiff starts conmon with two socketpairs passed through
   (``_OCI_SYNCPIPE``/``_OCI_STARTPIPE`` name their fd numbers in conmon;
   the numbers are whatever this process got, conmon does not care) and
   writes one byte to the start pipe once it is ready (libpod first moves
   conmon into a cgroup: ``before_start`` is that hook).
2. conmon forks into the background (the first conmon exits at once),
   runs the runtime's ``create`` and sends ``{"data": PID}`` on the sync
   pipe, or ``{"data": -1, "message": "..."}`` with the runtime's error.
3. skiff runs ``RUNTIME start ID`` itself (``OCIRuntime.start``) — after
   attaching, when the caller wants every byte of output
   (``skiff.runtime.attach.attach(start=...)``).

Exec sessions (``start_exec_monitor``) add a third pipe (``_OCI_ATTACHPIPE``,
conmon's ``--exec-attach``): conmon sends ``{"data": 0}`` on it once the
session's attach socket listens, then waits for a *second* byte on the start
pipe before it runs ``RUNTIME exec``; the sync pipe then carries the pid and,
when the process ends, ``{"data": EXIT_CODE}``. skiff runs every exec through
conmon — foreground, ``-it`` and ``-d`` alike — rather than ``runc exec`` in
the foreground: one code path, an exit file for detached sessions, and the
same detach keys and resize handling as ``attach``.

Where conmon puts things (checked against conmon 2.1.6): the attach socket
(``attach``, SOCK_SEQPACKET), the ``ctl`` fifo (resize: ``1 H W\\n``; reopen
logs: ``2 0 0\\n``) and the internal ``winsz`` fifo are created in the
*bundle* directory; ``--socket-dir-path DIR`` only adds a symlink
``DIR/<cuuid>`` → bundle, so that a client can reach them by id without
knowing the bundle. Clients connect through an ``O_PATH`` fd
(``/proc/self/fd/N/attach``), so long paths never hit the 108-byte
``sun_path`` limit. conmon removes the socket when it exits; the symlink and
the fifos stay until ``remove_monitor_files``.

conmon's own stdin and stdout are /dev/null; its stderr, for messages it
prints before it daemonizes (bad arguments), is an anonymous temporary file
read back on failure — never a pipe (the background conmon could hold a pipe
open) and never our terminal. Only the pipes named above are passed
(``close_fds``), so no fd of ours reaches the container. conmon is started
in a process group of its own, so a Ctrl-C meant for skiff never reaches it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from skiff.errors import CommandNotFound, CommandNotInvokable, ContainerError
from skiff.runtime import procwait
from skiff.runtime.exitfile import read_exit_code, remove_exit_file
from skiff.runtime.files import replace_file

log = logging.getLogger(__name__)

CONMON_SEARCH = (
    "/usr/bin/conmon",
    "/usr/libexec/podman/conmon",
    "/usr/local/libexec/podman/conmon",
    "/usr/lib/podman/conmon",
    "/usr/local/bin/conmon",
)
CREATE_TIMEOUT = 240.0
"""How long the runtime's create may take (libpod's ContainerCreateTimeout)."""

SUN_PATH_MAX = 108
LOG_DRIVERS = ("k8s-file", "journald", "none", "passthrough")
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "fatal", "panic")
_DROPPED_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def find_conmon(explicit: Path | str | None = None) -> Path:
    """The conmon binary: ``explicit``, else on PATH, else podman's locations."""
    if explicit is not None:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ContainerError(f"conmon {path} is not an executable file")
    found = shutil.which("conmon")
    if found:
        return Path(found)
    for candidate in CONMON_SEARCH:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    raise ContainerError(
        "conmon not found on PATH or in " + ", ".join(CONMON_SEARCH),
        "install conmon (Debian package conmon)",
    )


def conmon_version(path: Path) -> str:
    """``conmon version 2.1.6`` → ``2.1.6`` ("" when it prints no version)."""
    try:
        out = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ContainerError(f"cannot run {path} --version: {exc}") from exc
    match = re.search(r"conmon version (\S+)", out)
    return match.group(1) if match else ""


def attach_dir(socket_dir: Path, cuuid: str) -> Path:
    """Where a client finds ``attach`` and ``ctl`` of container/session ``cuuid``:
    conmon's symlink ``SOCKDIR/<cuuid>`` to the bundle, shortened by one
    character when it would be exactly 107 bytes long, as conmon does."""
    link = os.path.join(os.fspath(socket_dir), cuuid)
    if len(os.fsencode(link)) == SUN_PATH_MAX - 1:
        link = link[:-1]
    return Path(link)


# --- specs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitorSpec:
    """Everything conmon needs to create and watch one container.

    Paths as runtime-design.md lays them out: ``bundle`` (config.json, and
    where conmon puts ``attach``/``ctl``) is the container's userdata dir;
    the pid files live in its run dir; ``exit_dir`` is RUNROOT/exits and
    ``socket_dir`` RUNROOT/socket, shared by all containers.
    """

    container_id: str
    name: str
    bundle: Path
    runtime_path: Path
    runtime_args: tuple[str, ...]
    """Global runtime options (``OCIRuntime.global_args()``: ``--root DIR``)."""
    pid_file: Path
    conmon_pid_file: Path
    exit_dir: Path
    socket_dir: Path
    log_path: Path | None = None
    """The k8s-file log (``ctr.log``); None with log_driver "none"."""
    log_driver: str = "k8s-file"
    log_size_max: int | None = None
    log_tag: str | None = None
    exit_command: tuple[str, ...] = ()
    """argv conmon runs after the container exits (program + args)."""
    exit_delay: int | None = None
    terminal: bool = False
    """``-t``: conmon asks the runtime for a pty (config.json must say terminal)."""
    stdin: bool = False
    """``-i``: keep the container's stdin open, fed from the attach socket
    (implied by ``terminal``: the pty is the stdin)."""
    leave_stdin_open: bool = False
    no_pivot: bool = False
    runtime_log: Path | None = None
    """``--log FILE --log-format json`` for the runtime: clean error text."""
    conmon_path: Path | None = None
    log_level: str = "error"
    syslog: bool = False
    """conmon's own messages to syslog (else they are lost once it daemonizes)."""
    env: Mapping[str, str] | None = None
    """conmon's environment (None: ours, minus socket-activation variables)."""
    extra_args: tuple[str, ...] = field(default=())
    """Further conmon options, e.g. ``("--no-new-keyring",)``."""

    @property
    def cuuid(self) -> str:
        return self.container_id


@dataclass(frozen=True)
class ExecMonitorSpec:
    """An exec session: ``process`` (an OCI process object) run in a running
    container. ``bundle`` is a directory of the session's own (conmon puts
    ``attach``, ``ctl`` and the pid file there; skiff writes ``process.json``);
    ``exit_dir`` must be the session's own too, because conmon names the exit
    file after the container, not the session."""

    container_id: str
    session_id: str
    name: str
    bundle: Path
    process: Mapping[str, Any]
    runtime_path: Path
    runtime_args: tuple[str, ...]
    exit_dir: Path
    socket_dir: Path
    terminal: bool = False
    stdin: bool = False
    leave_stdin_open: bool = False
    exit_command: tuple[str, ...] = ()
    exit_delay: int | None = None
    runtime_log: Path | None = None
    conmon_path: Path | None = None
    log_level: str = "error"
    syslog: bool = False
    env: Mapping[str, str] | None = None

    @property
    def pid_file(self) -> Path:
        return self.bundle / "pidfile"

    @property
    def process_file(self) -> Path:
        return self.bundle / "process.json"


@dataclass(frozen=True)
class MonitorResult:
    container_pid: int
    conmon_pid: int | None
    """From the conmon pid file; None if conmon did not write it."""
    attach_dir: Path
    """Holds ``attach`` and ``ctl`` (see ``attach_dir``)."""


# --- argv ------------------------------------------------------------------------------


def _check_common(name: str, log_level: str, exit_command: Sequence[str]) -> None:
    if log_level not in LOG_LEVELS:
        raise ContainerError(
            f"invalid conmon log level {log_level!r} for {name}", "use " + ", ".join(LOG_LEVELS)
        )
    if exit_command and not exit_command[0]:
        raise ContainerError(f"empty exit command program for {name}")


def _runtime_arg_options(runtime_args: Iterable[str], runtime_log: Path | None) -> list[str]:
    args = list(runtime_args)
    if runtime_log is not None:
        args += ["--log", str(runtime_log), "--log-format", "json"]
    out: list[str] = []
    for arg in args:
        out += ["--runtime-arg", arg]
    return out


def _exit_command_options(exit_command: Sequence[str], exit_delay: int | None) -> list[str]:
    out: list[str] = []
    if exit_command:
        out += ["--exit-command", exit_command[0]]
        for arg in exit_command[1:]:
            out += ["--exit-command-arg", arg]
        if exit_delay is not None:
            out += ["--exit-delay", str(exit_delay)]
    return out


def _base_argv(
    conmon: Path, cid: str, cuuid: str, spec: MonitorSpec | ExecMonitorSpec
) -> list[str]:
    """The options every conmon invocation takes, in libpod's order."""
    pairs = [
        ("--api-version", "1"),
        ("-c", cid),
        ("-u", cuuid),
        ("-r", str(spec.runtime_path)),
        ("-b", str(spec.bundle)),
        ("-p", str(spec.pid_file)),
        ("-n", spec.name),
        ("--exit-dir", str(spec.exit_dir)),
        ("--socket-dir-path", str(spec.socket_dir)),
    ]
    return [str(conmon), *(item for pair in pairs for item in pair)]


def _stdio_options(terminal: bool, stdin: bool, leave_stdin_open: bool) -> list[str]:
    # with a terminal, stdin goes through the pty; ``-i`` would only make
    # conmon close the pty when an attached client goes away (libpod, too,
    # passes -t or -i, never both, for containers)
    out = ["-t"] if terminal else ["-i"] if stdin else []
    return out + (["--leave-stdin-open"] if leave_stdin_open else [])


def conmon_argv(spec: MonitorSpec) -> list[str]:
    """The full conmon command line for ``spec`` (typed builder; no shell)."""
    _check_common(spec.container_id, spec.log_level, spec.exit_command)
    if spec.log_driver not in LOG_DRIVERS:
        raise ContainerError(
            f"unknown log driver {spec.log_driver!r} for container {spec.container_id}",
            "use " + ", ".join(LOG_DRIVERS),
        )
    if spec.log_driver == "k8s-file" and spec.log_path is None:
        raise ContainerError(f"container {spec.container_id}: the k8s-file log needs a path")
    conmon = spec.conmon_path or find_conmon()
    argv = _base_argv(conmon, spec.container_id, spec.cuuid, spec)
    argv += ["--conmon-pidfile", str(spec.conmon_pid_file)]
    argv += _runtime_arg_options(spec.runtime_args, spec.runtime_log)
    argv += ["-l", f"{spec.log_driver}:{spec.log_path or ''}"]
    if spec.log_size_max is not None and spec.log_size_max > 0:
        argv += ["--log-size-max", str(spec.log_size_max)]
    if spec.log_tag:
        argv += ["--log-tag", spec.log_tag]
    argv += ["--log-level", spec.log_level] + (["--syslog"] if spec.syslog else [])
    argv += _stdio_options(spec.terminal, spec.stdin, spec.leave_stdin_open)
    if spec.no_pivot:
        argv.append("--no-pivot")
    argv += _exit_command_options(spec.exit_command, spec.exit_delay)
    return argv + list(spec.extra_args)


def exec_conmon_argv(spec: ExecMonitorSpec) -> list[str]:
    """The conmon command line of an exec session (always ``--exec-attach``;
    exec output is not logged, as in libpod)."""
    _check_common(spec.session_id, spec.log_level, spec.exit_command)
    conmon = spec.conmon_path or find_conmon()
    argv = _base_argv(conmon, spec.container_id, spec.session_id, spec)
    argv += ["-l", "none:", "--log-level", spec.log_level]
    argv += _runtime_arg_options(spec.runtime_args, spec.runtime_log)
    argv += ["--syslog"] if spec.syslog else []
    argv += _stdio_options(spec.terminal, spec.stdin, spec.leave_stdin_open)
    argv += ["-e", "--exec-attach", "--exec-process-spec", str(spec.process_file)]
    return argv + _exit_command_options(spec.exit_command, spec.exit_delay)


# --- errors ----------------------------------------------------------------------------

# patterns of the error path, compiled (and cached by ``re``) on first use
_LOGRUS_MSG = r'\bmsg="((?:[^"\\]|\\.)*)"'
_NOT_FOUND = (
    r"executable file not found|executable file `[^`]*` not found|"
    r"exec(?:ve)?[:(].*no such file or directory"
)
_NOT_INVOKABLE = (
    r"exec(?:ve)?[:(].*(?:permission denied|operation not permitted|exec format error)|"
    r"open executable: (?:permission denied|operation not permitted)"
)


def clean_runtime_message(message: str) -> str:
    """The reason inside a runtime's log line.

    runc logs ``time="..." level=error msg="runc create failed: ..."``; conmon
    relays that text as is. The quoted ``msg`` is unescaped; other text is
    only stripped.
    """
    text = message.strip()
    matches = re.findall(_LOGRUS_MSG, text)
    if matches:
        inner = matches[-1]
        try:
            decoded = json.loads(f'"{inner}"')
            text = decoded if isinstance(decoded, str) else inner
        except ValueError:
            text = inner.replace('\\"', '"').replace("\\\\", "\\")
    return text.strip()


def runtime_error(runtime_name: str, what: str, message: str) -> ContainerError:
    """A runtime failure as skiff's error, with podman's exit code mapping:
    a command that is missing → CommandNotFound (127), one that cannot be
    executed → CommandNotInvokable (126), anything else → ContainerError (125).

    Unlike podman, which maps any "no such file or directory" or "permission
    denied" (a missing bind-mount source, too), only failures to exec the
    container's process get 126/127.
    """
    reason = clean_runtime_message(message) or "no error message"
    text = f"{runtime_name}: {what}: {reason}"
    # podman's suffixes: the same words whichever runtime (runc and crun word
    # and capitalise the reason differently)
    if re.search(_NOT_FOUND, reason, re.IGNORECASE):
        return CommandNotFound(
            f"{text}: OCI runtime attempted to invoke a command that was not found",
            "check the command and the image's PATH",
        )
    if re.search(_NOT_INVOKABLE, reason, re.IGNORECASE):
        return CommandNotInvokable(
            f"{text}: OCI permission denied", "the command exists but cannot be executed"
        )
    return ContainerError(text)


# --- the handshake ---------------------------------------------------------------------


def _conmon_env(env: Mapping[str, str] | None, pipes: Mapping[str, int]) -> dict[str, str]:
    base = dict(os.environ if env is None else env)
    for name in _DROPPED_ENV:
        base.pop(name, None)
    for name, fd in pipes.items():
        base[name] = str(fd)
    return base


def _prepare_dirs(*dirs: Path) -> None:
    for directory in dirs:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ContainerError(f"cannot create {directory}: {exc.strerror}") from exc


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class _Timeout(ContainerError):
    """conmon did not answer in time."""


class _Launch:
    """One conmon process with its socketpairs; parent ends kept here."""

    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str] | None,
        pipe_names: Sequence[str],
        cwd: Path | None = None,
    ) -> None:
        self.parent: dict[str, socket.socket] = {}
        children: dict[str, socket.socket] = {}
        # an anonymous in-memory file: no temporary directory to find (the
        # tempfile module alone cost ~1 ms of imports per run), nothing left behind
        self.stderr: IO[bytes] = os.fdopen(os.memfd_create("conmon-stderr", os.MFD_CLOEXEC), "w+b")
        try:
            for name in pipe_names:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                self.parent[name] = ours
                children[name] = theirs
            try:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=self.stderr,
                    env=_conmon_env(env, {n: s.fileno() for n, s in children.items()}),
                    pass_fds=tuple(s.fileno() for s in children.values()),
                    close_fds=True,
                    process_group=0,
                    cwd=cwd,
                )
            except OSError as exc:
                raise ContainerError(f"cannot run {argv[0]}: {exc.strerror}") from exc
        except BaseException:
            self.close()
            raise
        finally:
            for s in children.values():
                s.close()

    def stderr_text(self) -> str:
        try:
            self.stderr.seek(0)
            return self.stderr.read(65536).decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def signal_start(self) -> None:
        """One byte on the start pipe; a conmon that already died is reported
        later by its exit status and the sync pipe."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.parent["_OCI_STARTPIPE"].send(b"\0")

    def wait_parent(self, what: str, timeout: float) -> None:
        """The first conmon exits once it forked the monitor."""
        code = procwait.wait(self.proc, timeout)
        if code is None:
            self.proc.kill()
            self.proc.wait()
            raise ContainerError(
                f"conmon for {what} did not daemonize within {timeout} s"
            ) from None
        if code != 0:
            detail = self.stderr_text() or f"exit status {code}"
            raise ContainerError(f"conmon for {what} failed: {detail}")

    def read(self, pipe: str, what: str, deadline: float | None) -> dict[str, Any] | None:
        """The next JSON message on ``pipe``; None at end of stream; _Timeout
        when ``deadline`` (monotonic) passes first."""
        sock = self.parent[pipe]
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while True:
            if deadline is None:
                ms = None
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Timeout(f"conmon for {what}: no answer within the timeout")
                ms = max(1, int(remaining * 1000))
            if poller.poll(ms):
                break
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return None
        try:
            message = json.loads(data)
        except ValueError:
            raise ContainerError(f"conmon for {what} sent {data[:200]!r}, not JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("data"), int):
            raise ContainerError(f"conmon for {what} sent an unexpected message {data[:200]!r}")
        return message

    def close_pipe(self, pipe: str) -> None:
        sock = self.parent.pop(pipe, None)
        if sock is not None:
            sock.close()

    def close(self) -> None:
        for sock in self.parent.values():
            sock.close()
        self.parent.clear()
        self.stderr.close()


def _read_pid_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _runtime_name(path: Path) -> str:
    return path.name


def _failure(
    launch: _Launch,
    runtime_path: Path,
    runtime_log: Path | None,
    what: str,
    message: dict[str, Any] | None,
) -> ContainerError:
    """The error for a failed create/exec: the runtime's own log, else conmon's
    message, else whatever conmon printed."""
    from skiff.runtime.oci import read_log_errors

    reasons = read_log_errors(runtime_log) if runtime_log is not None else []
    if reasons:
        return runtime_error(_runtime_name(runtime_path), what, reasons[-1])
    if message is not None and str(message.get("message") or "").strip():
        return runtime_error(_runtime_name(runtime_path), what, str(message["message"]))
    detail = launch.stderr_text()
    if message is None:
        return ContainerError(
            f"conmon for {what} exited without reporting a pid" + (f": {detail}" if detail else ""),
            "run with --log-level debug and check syslog for conmon's messages",
        )
    return ContainerError(f"{_runtime_name(runtime_path)}: {what} failed (code {message['data']})")


def _check_terminal(process: Mapping[str, Any], terminal: bool, what: str) -> None:
    wants = bool(process.get("terminal", False))
    if wants != terminal:
        raise ContainerError(
            f"{what}: the process has terminal={str(wants).lower()} but the monitor "
            f"was asked for terminal={str(terminal).lower()}",
            "generate the spec and start the monitor with the same --tty setting",
        )


def _bundle_process(bundle: Path, what: str) -> Mapping[str, Any]:
    try:
        config = json.loads((bundle / "config.json").read_bytes())
    except FileNotFoundError:
        raise ContainerError(f"{what}: no config.json in bundle {bundle}") from None
    except (OSError, ValueError) as exc:
        raise ContainerError(f"{what}: cannot read {bundle}/config.json: {exc}") from exc
    process = config.get("process") if isinstance(config, dict) else None
    if not isinstance(process, dict):
        raise ContainerError(f"{what}: {bundle}/config.json has no process object")
    return process


def start_monitor(
    spec: MonitorSpec,
    *,
    before_start: Callable[[int], None] | None = None,
    create_timeout: float = CREATE_TIMEOUT,
) -> MonitorResult:
    """Start conmon for ``spec``: it creates the container (not yet started).

    Returns the container's pid and conmon's pid once the runtime's create
    succeeded; raises CommandNotFound/CommandNotInvokable/ContainerError with
    the runtime's message otherwise. A stale exit file and pid files of an
    earlier run are removed first. ``before_start(pid)`` runs before conmon
    may proceed (pid of the first conmon process). On failure the runtime
    normally keeps no state; the caller still runs ``OCIRuntime.delete(id,
    force=True)`` if its records say a create was attempted.
    """
    what = f"container {spec.container_id}"
    _check_terminal(_bundle_process(spec.bundle, what), spec.terminal, what)
    argv = conmon_argv(spec)
    _prepare_dirs(spec.exit_dir, spec.socket_dir, spec.pid_file.parent, spec.conmon_pid_file.parent)
    remove_exit_file(spec.exit_dir, spec.container_id)
    _unlink(spec.pid_file)
    _unlink(spec.conmon_pid_file)
    if spec.runtime_log is not None:
        _unlink(spec.runtime_log)
    deadline = time.monotonic() + create_timeout
    launch = _Launch(argv, spec.env, ("_OCI_SYNCPIPE", "_OCI_STARTPIPE"))
    try:
        if before_start is not None:
            try:
                before_start(launch.proc.pid)
            except BaseException:
                launch.proc.kill()
                launch.proc.wait()
                raise
        launch.signal_start()
        launch.wait_parent(what, max(1.0, deadline - time.monotonic()))
        message = launch.read("_OCI_SYNCPIPE", what, deadline)
        if message is None or message["data"] <= 0:
            raise _failure(launch, spec.runtime_path, spec.runtime_log, f"create {what}", message)
        return MonitorResult(
            container_pid=int(message["data"]),
            conmon_pid=_read_pid_file(spec.conmon_pid_file),
            attach_dir=attach_dir(spec.socket_dir, spec.cuuid),
        )
    finally:
        launch.close()


class ExecMonitor:
    """A started exec session, between "attach socket ready" and its end.

    Call ``start()`` (after attaching, to miss no output) to let conmon run
    the process, then ``wait()`` for its exit code; ``close()`` when done
    (a detached session keeps running: its code lands in the exit file).
    """

    def __init__(self, spec: ExecMonitorSpec, launch: _Launch, deadline: float) -> None:
        self.spec = spec
        self._launch = launch
        self._deadline = deadline
        self.pid: int | None = None
        self.conmon_pid: int | None = None
        self.exit_code: int | None = None
        self.attach_dir = attach_dir(spec.socket_dir, spec.session_id)

    @property
    def _what(self) -> str:
        return f"exec session {self.spec.session_id} in container {self.spec.container_id}"

    def start(self) -> int:
        """Let the process run; returns its pid (as seen from the host)."""
        if self.pid is not None:
            return self.pid
        self._launch.signal_start()
        message = self._launch.read("_OCI_SYNCPIPE", self._what, self._deadline)
        if message is None or message["data"] <= 0:
            raise _failure(
                self._launch,
                self.spec.runtime_path,
                self.spec.runtime_log,
                f"exec in container {self.spec.container_id}",
                message,
            )
        self.pid = int(message["data"])
        return self.pid

    def wait(self, timeout: float | None = None) -> int | None:
        """The session's exit code; None if ``timeout`` passes first."""
        if self.exit_code is not None:
            return self.exit_code
        if self.pid is None:
            raise ContainerError(f"{self._what} was not started")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            message = self._launch.read("_OCI_SYNCPIPE", self._what, deadline)
        except _Timeout:
            return None
        if message is not None:
            if message["data"] < 0:
                raise _failure(
                    self._launch,
                    self.spec.runtime_path,
                    self.spec.runtime_log,
                    f"exec in container {self.spec.container_id}",
                    message,
                )
            self.exit_code = int(message["data"])
            return self.exit_code
        # conmon closed the pipe without a code: the exit file is the last word
        code = read_exit_code(self.spec.exit_dir, self.spec.container_id)
        if code is None:
            raise ContainerError(
                f"conmon of {self._what} ended without reporting an exit code",
                "the session's process was probably killed together with its monitor",
            )
        self.exit_code = code
        return code

    def close(self) -> None:
        self._launch.close()

    def __enter__(self) -> ExecMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_exec_monitor(
    spec: ExecMonitorSpec,
    *,
    before_start: Callable[[int], None] | None = None,
    timeout: float = CREATE_TIMEOUT,
) -> ExecMonitor:
    """Start conmon for an exec session and wait until its attach socket listens.

    The process does not run until ``ExecMonitor.start()``. The process spec
    is written to ``bundle/process.json`` (atomically); the session's exit
    file, if any, is removed first.
    """
    what = f"exec session {spec.session_id} in container {spec.container_id}"
    _check_terminal(spec.process, spec.terminal, what)
    if not spec.process.get("args"):
        raise ContainerError(f"{what}: no command to run")
    argv = exec_conmon_argv(spec)
    _prepare_dirs(spec.bundle, spec.exit_dir, spec.socket_dir)
    remove_exit_file(spec.exit_dir, spec.container_id)
    _unlink(spec.pid_file)
    if spec.runtime_log is not None:
        _unlink(spec.runtime_log)
    _write_json(spec.process_file, dict(spec.process))
    deadline = time.monotonic() + timeout
    launch = _Launch(
        argv,
        spec.env,
        ("_OCI_SYNCPIPE", "_OCI_STARTPIPE", "_OCI_ATTACHPIPE"),
        cwd=spec.bundle,
    )
    try:
        if before_start is not None:
            before_start(launch.proc.pid)
        launch.signal_start()
        launch.wait_parent(what, max(1.0, deadline - time.monotonic()))
        ready = launch.read("_OCI_ATTACHPIPE", what, deadline)
        if ready is None or ready["data"] < 0:
            raise _failure(launch, spec.runtime_path, spec.runtime_log, what, ready)
        launch.close_pipe("_OCI_ATTACHPIPE")
    except BaseException:
        if launch.proc.poll() is None:
            launch.proc.kill()
            launch.proc.wait()
        launch.close()
        raise
    return ExecMonitor(spec, launch, deadline)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    try:
        replace_file(path, json.dumps(value).encode(), 0o666)
    except OSError as exc:
        raise ContainerError(f"cannot write {path}: {exc.strerror}") from exc


# --- tidying up ------------------------------------------------------------------------


def remove_monitor_files(socket_dir: Path, cuuid: str, bundle: Path) -> None:
    """Remove what conmon leaves behind after it exited: the ``SOCKDIR/<cuuid>``
    symlink and ``attach``/``ctl``/``winsz`` in the bundle (the exit file and
    the log are the caller's to keep or drop)."""
    link = attach_dir(socket_dir, cuuid)
    if link.is_symlink():
        _unlink(link)
    for name in ("attach", "ctl", "winsz"):
        _unlink(bundle / name)


def conmon_alive(pid: int | None) -> bool:
    """Whether a conmon with this pid still runs (signal 0; it is not our child)."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
