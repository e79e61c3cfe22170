"""Detach keys and the conmon argv/error mapping: pure logic."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from skiff.errors import CommandNotFound, CommandNotInvokable, ContainerError, UsageError
from skiff.runtime.attach import DEFAULT_DETACH_KEYS, DetachScanner, parse_detach_keys
from skiff.runtime.conmon import (
    ExecMonitorSpec,
    MonitorSpec,
    attach_dir,
    clean_runtime_message,
    conmon_argv,
    exec_conmon_argv,
    runtime_error,
)


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("ctrl-p,ctrl-q", b"\x10\x11"),
        ("ctrl-a", b"\x01"),
        ("CTRL-Z", b"\x1a"),
        ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", bytes([0, 27, 28, 29, 30, 31])),
        ("a,b,ctrl-c", b"ab\x03"),
        ("", b""),
    ],
)
def test_parse_detach_keys(text: str, keys: bytes) -> None:
    assert parse_detach_keys(text) == keys


@pytest.mark.parametrize("text", ["ctrl-", "ctrl-1", "ab", "ctrl-p,", "é", "alt-x"])
def test_parse_detach_keys_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_detach_keys(text)


def test_default_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == DEFAULT_DETACH_KEYS


def test_scanner_passes_plain_input() -> None:
    scanner = DetachScanner(DEFAULT_DETACH_KEYS)
    assert scanner.feed(b"hello\n") == (b"hello\n", False)


def test_scanner_detaches_across_reads_and_drops_the_keys() -> None:
    scanner = DetachScanner(DEFAULT_DETACH_KEYS)
    assert scanner.feed(b"ls\x10") == (b"ls", False)
    assert scanner.feed(b"\x11ignored") == (b"", True)


def test_scanner_releases_a_broken_sequence() -> None:
    scanner = DetachScanner(DEFAULT_DETACH_KEYS)
    assert scanner.feed(b"a\x10b") == (b"a\x10b", False)
    assert scanner.feed(b"\x10") == (b"", False)
    assert scanner.feed(b"\x10") == (b"\x10", False)  # the first is released, the second held
    assert scanner.feed(b"\x11") == (b"", True)


def test_scanner_single_key_and_flush() -> None:
    scanner = DetachScanner(b"\x1d")
    assert scanner.feed(b"x\x1dy") == (b"x", True)
    held = DetachScanner(DEFAULT_DETACH_KEYS)
    assert held.feed(b"end\x10") == (b"end", False)
    assert held.flush() == b"\x10"


def test_scanner_disabled() -> None:
    scanner = DetachScanner(b"")
    assert scanner.feed(b"\x10\x11") == (b"\x10\x11", False)


def test_scanner_three_keys_with_a_false_start() -> None:
    scanner = DetachScanner(b"abc")
    assert scanner.feed(b"ab") == (b"", False)
    assert scanner.feed(b"ab") == (b"ab", False)
    assert scanner.feed(b"c") == (b"", True)


# --- conmon argv and errors ------------------------------------------------------------


def spec(**kwargs: object) -> MonitorSpec:
    base: dict[str, object] = {
        "container_id": "c1",
        "name": "web",
        "bundle": Path("/b"),
        "runtime_path": Path("/usr/sbin/runc"),
        "runtime_args": ("--root", "/run/skiff/runtime/runc"),
        "pid_file": Path("/run/c1/pidfile"),
        "conmon_pid_file": Path("/run/c1/conmon.pid"),
        "exit_dir": Path("/run/exits"),
        "socket_dir": Path("/run/socket"),
        "log_path": Path("/b/ctr.log"),
        "conmon_path": Path("/usr/bin/conmon"),
    }
    base.update(kwargs)
    return MonitorSpec(**base)  # type: ignore[arg-type]


def pairs(argv: list[str]) -> list[tuple[str, str]]:
    return list(itertools.pairwise(argv))


def test_conmon_argv() -> None:
    argv = conmon_argv(spec(exit_command=("/usr/bin/skiff", "container", "cleanup", "c1")))
    assert argv[:3] == ["/usr/bin/conmon", "--api-version", "1"]
    p = pairs(argv)
    for pair in [
        ("-c", "c1"),
        ("-u", "c1"),
        ("-r", "/usr/sbin/runc"),
        ("-b", "/b"),
        ("-p", "/run/c1/pidfile"),
        ("-n", "web"),
        ("--exit-dir", "/run/exits"),
        ("--socket-dir-path", "/run/socket"),
        ("--conmon-pidfile", "/run/c1/conmon.pid"),
        ("-l", "k8s-file:/b/ctr.log"),
        ("--exit-command", "/usr/bin/skiff"),
        ("--log-level", "error"),
    ]:
        assert pair in p
    assert argv.count("--runtime-arg") == 2
    assert ("--runtime-arg", "--root") in p
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--exit-command-arg"] == [
        "container",
        "cleanup",
        "c1",
    ]
    assert "-t" not in argv
    assert "-i" not in argv


def test_terminal_implies_stdin_through_the_pty() -> None:
    assert "-i" in conmon_argv(spec(stdin=True))
    argv = conmon_argv(spec(stdin=True, terminal=True))
    assert "-t" in argv
    assert "-i" not in argv


def test_runtime_log_becomes_runtime_args() -> None:
    argv = conmon_argv(spec(runtime_log=Path("/run/c1/oci-log")))
    args = [argv[i + 1] for i, a in enumerate(argv) if a == "--runtime-arg"]
    assert args == [
        "--root",
        "/run/skiff/runtime/runc",
        "--log",
        "/run/c1/oci-log",
        "--log-format",
        "json",
    ]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ContainerError):
        conmon_argv(spec(log_level="loud"))
    with pytest.raises(ContainerError):
        conmon_argv(spec(log_driver="json-file"))
    with pytest.raises(ContainerError):
        conmon_argv(spec(log_path=None))
    assert ("-l", "none:") in pairs(conmon_argv(spec(log_driver="none", log_path=None)))


def test_exec_argv() -> None:
    e = ExecMonitorSpec(
        container_id="c1",
        session_id="s1",
        name="web",
        bundle=Path("/b/exec/s1"),
        process={"args": ["sh"], "terminal": False},
        runtime_path=Path("/usr/sbin/runc"),
        runtime_args=(),
        exit_dir=Path("/b/exec/s1/exits"),
        socket_dir=Path("/run/socket"),
        stdin=True,
        conmon_path=Path("/usr/bin/conmon"),
    )
    argv = exec_conmon_argv(e)
    p = pairs(argv)
    assert ("-c", "c1") in p
    assert ("-u", "s1") in p
    assert ("-p", "/b/exec/s1/pidfile") in p
    assert ("--exec-process-spec", "/b/exec/s1/process.json") in p
    assert "-e" in argv
    assert "--exec-attach" in argv
    assert "-i" in argv


def test_attach_dir_follows_conmons_truncation() -> None:
    assert attach_dir(Path("/run/socket"), "abc") == Path("/run/socket/abc")
    long_dir = "/" + "d" * 90
    cuuid = "x" * (107 - len(long_dir) - 1)
    assert len(f"{long_dir}/{cuuid}") == 107
    assert str(attach_dir(Path(long_dir), cuuid)) == f"{long_dir}/{cuuid}"[:-1]


RUNC_NOT_FOUND = (
    'time="2026-01-01T00:00:00Z" level=error msg="runc create failed: unable to start '
    'container process: exec: \\"nope\\": executable file not found in $PATH"\n'
)


def test_runtime_messages_are_unwrapped_and_mapped() -> None:
    assert clean_runtime_message(RUNC_NOT_FOUND) == (
        'runc create failed: unable to start container process: exec: "nope": '
        "executable file not found in $PATH"
    )
    err = runtime_error("runc", "create container c1", RUNC_NOT_FOUND)
    assert isinstance(err, CommandNotFound)
    assert err.exit_code == 127
    assert "time=" not in str(err)
    missing = runtime_error("runc", "x", 'exec: "/nope": stat /nope: no such file or directory')
    assert isinstance(missing, CommandNotFound)
    denied = runtime_error("runc", "x", 'exec: "/etc/passwd": permission denied')
    assert isinstance(denied, CommandNotInvokable)
    assert denied.exit_code == 126
    crun = runtime_error("crun", "x", "executable file `nope` not found in $PATH: No such file")
    assert isinstance(crun, CommandNotFound)
    # not about the process: stays a plain runtime error (125)
    mount = runtime_error(
        "runc",
        "x",
        'error mounting "/src" to rootfs at "/dst": stat /src: no such file or directory',
    )
    assert type(mount) is ContainerError
    assert mount.exit_code == 125
