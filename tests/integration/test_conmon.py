"""conmon, attach, exit files and logs against the real thing.

Real conmon 2.1.x and runc, busybox containers: one read-only busybox rootfs
(unpacked once per session with umoci) shared by every container, each
container with its own bundle directory and a unique id. Teardown deletes the
container with ``runc delete --force`` and waits for (or kills) its conmon.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from skiff.errors import CommandNotFound, CommandNotInvokable, ContainerError, ContainerStateError
from skiff.runtime.attach import attach, send_resize
from skiff.runtime.conmon import (
    ExecMonitorSpec,
    MonitorResult,
    MonitorSpec,
    remove_monitor_files,
    start_exec_monitor,
    start_monitor,
)
from skiff.runtime.exitfile import read_exit_code, read_exit_record, wait_exit
from skiff.runtime.logs import parse_log_record, read_logs, rfc3339nano
from skiff.runtime.oci import OCIRuntime, RuntimeChoice
from skiff.testing.busybox import build_busybox_layout

RUNC = shutil.which("runc")
CONMON = shutil.which("conmon")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="runc needs root"),
    pytest.mark.skipif(not (RUNC and CONMON), reason="needs runc and conmon"),
    pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci"),
    pytest.mark.timeout(30),
]


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Poll ``predicate`` with a short backoff until it holds or time is up."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers signal 0
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return False


class Collector(io.RawIOBase):
    """A thread-safe output sink the test can wait on."""

    def __init__(self) -> None:
        super().__init__()
        self.data = b""
        self._cv = threading.Condition()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        with self._cv:
            self.data += bytes(b)
            self._cv.notify_all()
        return len(b)

    def wait_for(self, needle: bytes, timeout: float = 3.0) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: needle in self.data, timeout)


@pytest.fixture(scope="session")
def busybox_rootfs(session_shm: Path) -> Path:
    """A busybox bundle unpacked once; containers use its rootfs read-only."""
    layout = build_busybox_layout(session_shm / "conmon-layout")
    bundle = session_shm / "conmon-bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout.layout}:latest", str(bundle)],
        check=True,
        capture_output=True,
    )
    return bundle


@dataclass
class Env:
    root: Path
    template: dict[str, Any]
    rootfs: Path
    oci: OCIRuntime
    started: list[tuple[str, MonitorSpec]] = field(default_factory=list)

    @property
    def exit_dir(self) -> Path:
        return self.root / "exits"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def new_id(self) -> str:
        return f"skiff-t-{uuid.uuid4().hex[:16]}"

    def spec(
        self,
        args: list[str],
        *,
        terminal: bool = False,
        process_terminal: bool | None = None,
        container_id: str | None = None,
        **kwargs: Any,
    ) -> MonitorSpec:
        cid = container_id or self.new_id()
        bundle = self.root / "containers" / cid / "userdata"
        bundle.mkdir(parents=True)
        config = json.loads(json.dumps(self.template))
        config["process"]["args"] = args
        config["process"]["terminal"] = terminal if process_terminal is None else process_terminal
        config["root"] = {"path": str(self.rootfs), "readonly": True}
        config["hostname"] = "skiff-test"
        (bundle / "config.json").write_text(json.dumps(config))
        run_dir = self.root / "run" / cid
        return MonitorSpec(
            container_id=cid,
            name=f"name-{cid[-6:]}",
            bundle=bundle,
            runtime_path=self.oci.path,
            runtime_args=tuple(self.oci.global_args()),
            pid_file=run_dir / "pidfile",
            conmon_pid_file=run_dir / "conmon.pid",
            exit_dir=self.exit_dir,
            socket_dir=self.socket_dir,
            log_path=bundle / "ctr.log",
            terminal=terminal,
            **kwargs,
        )

    def monitor(self, spec: MonitorSpec) -> MonitorResult:
        self.started.append((spec.container_id, spec))
        return start_monitor(spec)

    def run(self, spec: MonitorSpec) -> MonitorResult:
        """Create and start, detached."""
        result = self.monitor(spec)
        self.oci.start(spec.container_id)
        return result

    def exec_spec(
        self, parent: MonitorSpec, args: list[str], *, terminal: bool = False, **kwargs: Any
    ) -> ExecMonitorSpec:
        session = uuid.uuid4().hex[:12]
        process = json.loads((parent.bundle / "config.json").read_text())["process"]
        process = dict(process, args=args, terminal=terminal)
        session_dir = parent.bundle / "exec" / session
        return ExecMonitorSpec(
            container_id=parent.container_id,
            session_id=session,
            name=parent.name,
            bundle=session_dir,
            process=process,
            runtime_path=self.oci.path,
            runtime_args=tuple(self.oci.global_args()),
            exit_dir=session_dir / "exits",
            socket_dir=self.socket_dir,
            terminal=terminal,
            **kwargs,
        )

    def cleanup(self) -> None:
        for cid, spec in self.started:
            with contextlib.suppress(ContainerError):
                self.oci.delete(cid, force=True)
            conmon_pid = None
            with contextlib.suppress(OSError, ValueError):
                conmon_pid = int(spec.conmon_pid_file.read_text())
            if conmon_pid and not wait_until(lambda p=conmon_pid: not pid_alive(p), 5):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(conmon_pid, signal.SIGKILL)
            remove_monitor_files(spec.socket_dir, spec.cuuid, spec.bundle)


@pytest.fixture
def env(tmp_shm: Path, busybox_rootfs: Path) -> Iterator[Env]:
    template = json.loads((busybox_rootfs / "config.json").read_text())
    assert RUNC is not None
    root = tmp_shm / "store"
    oci = OCIRuntime(RuntimeChoice("runc", Path(RUNC), "", "test"), root)
    environment = Env(root, template, busybox_rootfs / "rootfs", oci)
    try:
        yield environment
    finally:
        environment.cleanup()


# --- lifecycle -------------------------------------------------------------------------

_STARTER = """
import json, sys
from pathlib import Path
from skiff.runtime.conmon import MonitorSpec, start_monitor
from skiff.runtime.oci import OCIRuntime, RuntimeChoice
fields = json.loads(sys.argv[1])
paths = ("bundle", "runtime_path", "pid_file", "conmon_pid_file", "exit_dir", "socket_dir", "log_path")
for key in paths:
    fields[key] = Path(fields[key])
fields["runtime_args"] = tuple(fields["runtime_args"])
spec = MonitorSpec(**fields)
result = start_monitor(spec)
OCIRuntime(RuntimeChoice("runc", spec.runtime_path, "", "test"), Path(sys.argv[2])).start(
    spec.container_id
)
print(json.dumps({"pid": result.container_pid, "conmon": result.conmon_pid}))
"""


def test_detached_container_outlives_the_process_that_started_it(env: Env) -> None:
    spec = env.spec(["/bin/sleep", "30"])
    env.started.append((spec.container_id, spec))
    fields = {k: str(v) if isinstance(v, Path) else v for k, v in vars(spec).items()}
    fields = {
        k: v
        for k, v in fields.items()
        if k
        in (
            "container_id",
            "name",
            "bundle",
            "runtime_path",
            "runtime_args",
            "pid_file",
            "conmon_pid_file",
            "exit_dir",
            "socket_dir",
            "log_path",
        )
    }
    starter = subprocess.run(
        [sys.executable, "-c", _STARTER, json.dumps(fields), str(env.root)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert starter.returncode == 0, starter.stderr
    started = json.loads(starter.stdout)
    # the starter is gone; the monitor and the container are not
    assert pid_alive(started["conmon"])
    assert pid_alive(started["pid"])
    state = env.oci.state(spec.container_id)
    assert state is not None
    assert state["status"] == "running"
    assert state["pid"] == started["pid"]
    assert int(spec.pid_file.read_text()) == started["pid"]
    assert int(spec.conmon_pid_file.read_text()) == started["conmon"]
    # conmon is not a child of ours, nor of the starter: it was reparented
    ppid = int(Path(f"/proc/{started['conmon']}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert ppid != os.getpid()
    assert read_exit_code(spec.exit_dir, spec.container_id) is None
    env.oci.kill(spec.container_id, signal.SIGKILL)
    assert wait_exit(spec.exit_dir, spec.container_id, 5, conmon_pid=started["conmon"]) == 137


def test_exit_code_is_recorded(env: Env) -> None:
    spec = env.spec(["/bin/sh", "-c", "exit 7"])
    before = time.time()
    result = env.run(spec)
    assert result.container_pid > 0
    assert wait_exit(spec.exit_dir, spec.container_id, 5, conmon_pid=result.conmon_pid) == 7
    record = read_exit_record(spec.exit_dir, spec.container_id)
    assert record is not None
    assert record.code == 7
    assert before - 1 <= record.finished_at.timestamp() <= time.time() + 1
    assert env.oci.state(spec.container_id)["status"] == "stopped"  # type: ignore[index]


def test_wait_exit_times_out_while_running_and_sees_the_kill(env: Env) -> None:
    spec = env.spec(["/bin/sleep", "30"])
    result = env.run(spec)
    started = time.monotonic()
    assert wait_exit(spec.exit_dir, spec.container_id, 0.2) is None  # still running
    assert 0.2 <= time.monotonic() - started < 1
    # (sleep is pid 1 of its namespace: it ignores SIGTERM, which has no handler)
    threading.Timer(0.1, env.oci.kill, (spec.container_id, signal.SIGKILL)).start()
    assert wait_exit(spec.exit_dir, spec.container_id, 5, conmon_pid=result.conmon_pid) == 137


def test_stale_exit_file_is_removed_before_start(env: Env) -> None:
    spec = env.spec(["/bin/sleep", "30"])
    spec.exit_dir.mkdir(parents=True)
    (spec.exit_dir / spec.container_id).write_text("3")
    env.run(spec)
    assert read_exit_code(spec.exit_dir, spec.container_id) is None


def test_exit_command_runs_with_its_arguments(env: Env, tmp_shm: Path) -> None:
    marker = tmp_shm / "marker"
    spec = env.spec(
        ["/bin/sh", "-c", "exit 0"],
        exit_command=(
            "/bin/sh",
            "-c",
            f'printf "%s\\n" "$@" > {marker}.tmp && mv {marker}.tmp {marker}',
            "sh",
            "container",
            "cleanup with spaces",
            "--flag",
        ),
    )
    env.run(spec)
    assert wait_until(marker.exists, 5)
    assert marker.read_text().splitlines() == ["container", "cleanup with spaces", "--flag"]


def test_wait_exit_notices_a_monitor_that_died_without_an_exit_file(env: Env) -> None:
    spec = env.spec(["/bin/sleep", "30"])
    result = env.run(spec)
    assert result.conmon_pid is not None
    os.kill(result.conmon_pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(ContainerError, match="exited without writing"):
        wait_exit(spec.exit_dir, spec.container_id, 10, conmon_pid=result.conmon_pid)
    assert time.monotonic() - started < 2


# --- failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "error", "code"),
    [
        (["/nonexistent/program"], CommandNotFound, 127),
        (["no-such-program"], CommandNotFound, 127),
        (["/etc/passwd"], CommandNotInvokable, 126),
    ],
)
def test_create_failure_gives_the_runtime_message_and_exit_code(
    env: Env, command: list[str], error: type[ContainerError], code: int
) -> None:
    spec = env.spec(command)
    with pytest.raises(error) as caught:
        env.monitor(spec)
    assert caught.value.exit_code == code
    message = str(caught.value)
    assert command[0] in message
    assert "runc" in message
    assert "time=" not in message  # the runtime's log line was unwrapped
    # nothing left behind: no runtime state, no monitor
    assert env.oci.state(spec.container_id) is None
    conmon_pid = int(spec.conmon_pid_file.read_text())
    assert wait_until(lambda: not pid_alive(conmon_pid), 3)


def test_create_failure_read_from_the_runtime_log(env: Env) -> None:
    spec = env.spec(["no-such-program"], runtime_log=env.root / "runtime-log.json")
    with pytest.raises(CommandNotFound, match="executable file not found"):
        env.monitor(spec)


def test_terminal_mismatch_is_refused_before_anything_runs(env: Env) -> None:
    spec = env.spec(["/bin/sh"], terminal=True, process_terminal=False)
    with pytest.raises(ContainerError, match="terminal=false"):
        env.monitor(spec)
    assert not spec.conmon_pid_file.exists()


def test_attach_to_a_container_without_monitor_says_so(env: Env) -> None:
    with pytest.raises(ContainerStateError):
        attach(env.socket_dir, env.new_id(), stdout=io.BytesIO())


# --- logs ------------------------------------------------------------------------------


def test_logs_are_k8s_file_with_streams_and_partial_lines(env: Env) -> None:
    script = (
        "echo out1; echo err1 >&2; printf part1; sleep 0.1; printf part2; sleep 0.1; "
        "echo end; echo; printf 'no newline at exit'"
    )
    spec = env.spec(["/bin/sh", "-c", script])
    result = env.run(spec)
    assert wait_exit(spec.exit_dir, spec.container_id, 5, conmon_pid=result.conmon_pid) == 0
    assert spec.log_path is not None
    raw = spec.log_path.read_bytes().splitlines(keepends=True)
    records = [parse_log_record(line) for line in raw]
    assert all(line.endswith(b"\n") for line in raw)
    # conmon reads stdout and stderr separately: their relative order may vary
    stdout = [(r.partial, r.message) for r in records if r.stream == "stdout"]
    stderr = [(r.partial, r.message) for r in records if r.stream == "stderr"]
    assert stdout == [
        (False, b"out1"),
        (True, b"part1"),
        (True, b"part2"),
        (False, b"end"),
        (False, b""),
        (True, b"no newline at exit"),
    ]
    assert stderr == [(False, b"err1")]
    assert re.fullmatch(
        rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}[+-]\d\d:\d\d stdout F out1\n", raw[0]
    ) or re.fullmatch(rb"\S+ stderr F err1\n", raw[0])
    assert [r.time_ns for r in records] == sorted(r.time_ns for r in records)
    lines = list(read_logs(spec.log_path))
    assert [(line.message, line.partial) for line in lines if line.stream == "stdout"] == [
        (b"out1", False),
        (b"part1part2end", False),
        (b"", False),
        (b"no newline at exit", True),
    ]
    assert [line.message for line in lines if line.stream == "stderr"] == [b"err1"]
    joined = next(line for line in lines if line.message == b"part1part2end")
    first_chunk = next(r for r in records if r.message == b"part1")
    assert joined.time_ns == first_chunk.time_ns  # the time the line began
    assert lines[-1].render() == b"no newline at exit"  # a partial line ends the log
    assert b"".join(line.render() for line in lines if line.stream == "stdout") == (
        b"out1\npart1part2end\n\nno newline at exit"
    )
    stamped = list(read_logs(spec.log_path, timestamps=True, tail=1))
    assert stamped[0].render() == (
        rfc3339nano(records[-1].time_text).encode() + b" no newline at exit"
    )


def test_follow_reads_until_the_container_exits(env: Env) -> None:
    spec = env.spec(["/bin/sh", "-c", "echo a; sleep 0.3; echo b; sleep 0.3; echo c >&2"])
    assert spec.log_path is not None
    env.run(spec)
    seen = []
    started = time.monotonic()
    for line in read_logs(
        spec.log_path,
        follow=True,
        is_running=lambda: read_exit_code(spec.exit_dir, spec.container_id) is None,
    ):
        seen.append((line.stream, line.message, round(time.monotonic() - started, 1)))
    assert [(s, m) for s, m, _ in seen] == [("stdout", b"a"), ("stdout", b"b"), ("stderr", b"c")]
    # lines arrived as they were written, not all at the end
    assert seen[0][2] < 0.3
    assert time.monotonic() - started < 2


# --- attach ----------------------------------------------------------------------------


def test_attach_without_tty_relays_stdin_stdout_and_stderr(env: Env) -> None:
    spec = env.spec(["/bin/sh", "-c", "echo early; cat; echo bye >&2; exit 4"], stdin=True)
    result = env.monitor(spec)
    out, err = io.BytesIO(), io.BytesIO()
    outcome = attach(
        spec.socket_dir,
        spec.container_id,
        stdin=io.BytesIO(b"hello\n" + b"x" * 20000 + b"\nworld\n"),
        stdout=out,
        stderr=err,
        start=lambda: env.oci.start(spec.container_id),
    )
    assert outcome.detached is False
    assert out.getvalue() == b"early\nhello\n" + b"x" * 20000 + b"\nworld\n"
    assert err.getvalue() == b"bye\n"
    assert wait_exit(spec.exit_dir, spec.container_id, 5, conmon_pid=result.conmon_pid) == 4


class PipeAttach:
    """``attach`` in a thread, fed through a pipe the test writes to."""

    def __init__(self, socket_dir: Path, cid: str, **kwargs: Any) -> None:
        r, self.w = os.pipe()
        self.out = Collector()
        self.results: list[Any] = []
        self._stdin = os.fdopen(r, "rb", buffering=0)
        self._thread = threading.Thread(
            target=lambda: self.results.append(
                attach(socket_dir, cid, stdin=self._stdin, stdout=self.out, **kwargs)
            )
        )
        self._thread.start()

    def send(self, data: bytes) -> None:
        os.write(self.w, data)

    def finish(self, timeout: float = 3) -> Any:
        self._thread.join(timeout)
        os.close(self.w)
        self._thread.join(timeout)
        self._stdin.close()
        assert self.results, "attach did not return"
        return self.results[0]


def test_attach_through_a_pipe_stdin_and_detach_keys_leave_it_running(env: Env) -> None:
    spec = env.spec(["/bin/cat"], stdin=True, leave_stdin_open=True)
    env.run(spec)
    session = PipeAttach(spec.socket_dir, spec.container_id)
    session.send(b"ping\n")
    assert session.out.wait_for(b"ping\n")
    # ctrl-p alone is passed on once the sequence breaks; ctrl-p ctrl-q detaches
    session.send(b"a\x10b\n")
    assert session.out.wait_for(b"a\x10b\n")
    session.send(b"\x10\x11")
    assert session.finish().detached is True
    assert env.oci.state(spec.container_id)["status"] == "running"  # type: ignore[index]
    # a second attach still talks to the same cat, whose stdin stayed open
    again = PipeAttach(spec.socket_dir, spec.container_id)
    again.send(b"again\n")
    assert again.out.wait_for(b"again\n")
    again.send(b"\x10")
    again.send(b"\x11")  # the keys split over two reads still detach
    assert again.finish().detached is True
    assert again.out.data == b"again\n"
    assert env.oci.state(spec.container_id)["status"] == "running"  # type: ignore[index]


def test_stdin_end_closes_the_containers_stdin(env: Env) -> None:
    spec = env.spec(["/bin/sh", "-c", "cat; echo cat-ended"], stdin=True)
    result = env.run(spec)
    session = PipeAttach(spec.socket_dir, spec.container_id)
    session.send(b"line\n")
    assert session.out.wait_for(b"line\n")
    os.close(session.w)
    session.w = os.open("/dev/null", os.O_WRONLY)
    assert session.out.wait_for(b"cat-ended\n")
    assert session.finish().detached is False
    assert wait_exit(spec.exit_dir, spec.container_id, 5, conmon_pid=result.conmon_pid) == 0


def test_tty_attach_resize_and_detach(env: Env) -> None:
    spec = env.spec(["/bin/sh"], terminal=True, stdin=True)
    result = env.monitor(spec)
    session = PipeAttach(
        spec.socket_dir,
        spec.container_id,
        tty=True,
        resize=(33, 77),
        start=lambda: env.oci.start(spec.container_id),
    )
    session.send(b"stty size; tty\n")
    assert session.out.wait_for(b"33 77\r\n")
    assert session.out.wait_for(b"/dev/pts/")
    send_resize(result.attach_dir, 12, 34)
    assert _retry_until(session.w, b"stty size\n", session.out, b"12 34\r\n")
    session.send(b"\x10\x11")
    assert session.finish().detached is True
    assert env.oci.state(spec.container_id)["status"] == "running"  # type: ignore[index]
    # attach again and end the shell: the attach ends with the container
    out2 = io.BytesIO()
    outcome = attach(
        spec.socket_dir, spec.container_id, stdin=io.BytesIO(b"exit 3\n"), stdout=out2, tty=True
    )
    assert outcome.detached is False
    assert wait_exit(spec.exit_dir, spec.container_id, 5, conmon_pid=result.conmon_pid) == 3


def _retry_until(w: int, command: bytes, out: Collector, expected: bytes) -> bool:
    """A resize travels ctl → conmon → pty while the command travels the socket:
    resend until the answer shows the new size."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        os.write(w, command)
        if out.wait_for(expected, 0.3):
            return True
    return False


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_tty_attach_from_a_terminal_raw_mode_and_sigwinch(env: Env) -> None:
    """Our stdin is a real terminal: raw while attached, restored after, and a
    SIGWINCH resizes the container's terminal."""
    spec = env.spec(["/bin/sh"], terminal=True, stdin=True)
    env.run(spec)
    master, slave = os.openpty()
    _set_winsize(master, 24, 80)
    before = termios.tcgetattr(slave)
    out = Collector()
    raw_seen: list[bool] = []
    main_thread = threading.main_thread().ident
    assert main_thread is not None and threading.current_thread() is threading.main_thread()

    def driver() -> None:
        os.write(master, b"stty size\n")
        if not out.wait_for(b"24 80\r\n"):
            os.write(master, b"\x10\x11")
            return
        lflag = termios.tcgetattr(slave)[3]
        raw_seen.append(not (lflag & (termios.ICANON | termios.ECHO)))
        _set_winsize(master, 40, 100)
        signal.pthread_kill(main_thread, signal.SIGWINCH)
        _retry_until(master, b"stty size\n", out, b"40 100\r\n")
        os.write(master, b"\x10\x11")

    thread = threading.Thread(target=driver)
    stdin = os.fdopen(slave, "rb", buffering=0, closefd=False)
    handler_before = signal.getsignal(signal.SIGWINCH)
    try:
        thread.start()
        outcome = attach(spec.socket_dir, spec.container_id, stdin=stdin, stdout=out, tty=True)
        thread.join(5)
        assert outcome.detached is True
        assert b"24 80\r\n" in out.data
        assert b"40 100\r\n" in out.data
        assert raw_seen == [True]
        assert termios.tcgetattr(slave) == before
        assert signal.getsignal(signal.SIGWINCH) == handler_before
    finally:
        thread.join(5)
        os.close(master)
        os.close(slave)


# --- exec ------------------------------------------------------------------------------


def test_exec_attached_passes_streams_and_exit_code(env: Env) -> None:
    parent = env.spec(["/bin/sleep", "30"])
    env.run(parent)
    spec = env.exec_spec(
        parent, ["/bin/sh", "-c", "echo hi; echo ho >&2; read x; echo got $x; exit 3"], stdin=True
    )
    with start_exec_monitor(spec) as session:
        out, err = io.BytesIO(), io.BytesIO()
        outcome = attach(
            spec.socket_dir,
            spec.session_id,
            stdin=io.BytesIO(b"yo\n"),
            stdout=out,
            stderr=err,
            start=session.start,
        )
        assert outcome.detached is False
        assert session.wait(5) == 3
        assert session.pid is not None and session.pid > 0
    assert out.getvalue() == b"hi\ngot yo\n"
    assert err.getvalue() == b"ho\n"
    assert read_exit_code(spec.exit_dir, spec.container_id) == 3
    # the container itself is untouched
    assert read_exit_code(parent.exit_dir, parent.container_id) is None


def test_exec_with_tty(env: Env) -> None:
    parent = env.spec(["/bin/sleep", "30"])
    env.run(parent)
    spec = env.exec_spec(parent, ["/bin/sh"], terminal=True, stdin=True)
    with start_exec_monitor(spec) as session:
        out = io.BytesIO()
        attach(
            spec.socket_dir,
            spec.session_id,
            stdin=io.BytesIO(b"stty size; exit 2\n"),
            stdout=out,
            tty=True,
            resize=(20, 30),
            start=session.start,
        )
        assert session.wait(5) == 2
    assert b"20 30\r\n" in out.getvalue()


def test_exec_detached_records_exit_code_in_its_own_exit_dir(env: Env) -> None:
    parent = env.spec(["/bin/sleep", "30"])
    env.run(parent)
    spec = env.exec_spec(parent, ["/bin/sh", "-c", "sleep 0.2; exit 9"])
    with start_exec_monitor(spec) as session:
        pid = session.start()
        assert pid > 0
    assert wait_exit(spec.exit_dir, spec.container_id, 5) == 9
    assert env.oci.state(parent.container_id)["status"] == "running"  # type: ignore[index]


def test_exec_of_a_missing_command_is_command_not_found(env: Env) -> None:
    parent = env.spec(["/bin/sleep", "30"])
    env.run(parent)
    spec = env.exec_spec(parent, ["/no/such/tool"])
    with start_exec_monitor(spec) as session, pytest.raises(CommandNotFound) as caught:
        session.start()
    assert caught.value.exit_code == 127
    assert "/no/such/tool" in str(caught.value)
