"""The OCI runtime wrapper's pure parts: versions, the crun host check,
log parsing, the environment it passes on, argv builders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skiff.runtime import oci
from skiff.runtime.oci import OCIRuntime, RuntimeChoice
from skiff.runtime.specgen.host import CgroupLayout


def test_parse_version() -> None:
    assert oci.parse_version("runc version 1.1.5+ds1\ncommit: x\nspec: 1.0.2-dev\n") == "1.1.5+ds1"
    assert oci.parse_version("crun version 1.8.1\ncommit: f8a0\n") == "1.8.1"
    assert oci.parse_version("garbage") == ""
    assert oci.version_tuple("1.1.5+ds1") == (1, 1, 5)
    assert oci.version_tuple("1.9") == (1, 9)
    assert oci.version_tuple("") == ()


@pytest.mark.parametrize(
    ("kind", "version", "layout", "usable"),
    [
        ("crun", "1.8.1", CgroupLayout(1, ("hugetlb",)), False),
        ("crun", "1.9", CgroupLayout(1, ("hugetlb",)), True),
        ("crun", "1.8.1", CgroupLayout(1), True),
        ("crun", "1.8.1", CgroupLayout(2), True),
        ("runc", "1.1.5", CgroupLayout(1, ("hugetlb",)), True),
    ],
)
def test_host_problem(kind: str, version: str, layout: CgroupLayout, usable: bool) -> None:
    problem = oci.host_problem(kind, version, layout)
    assert (problem == "") is usable
    if not usable:
        assert "hybrid cgroups" in problem and "hugetlb" in problem


def test_read_log_errors(tmp_path: Path) -> None:
    log = tmp_path / "log.json"
    log.write_text(
        "\n".join(
            [
                json.dumps({"level": "warning", "msg": "ignored"}),
                "not json",
                json.dumps({"level": "error", "msg": "first"}),
                json.dumps({"level": "fatal", "msg": " second \n"}),
            ]
        )
    )
    assert oci.read_log_errors(log) == ["first", "second"]
    assert oci.read_log_errors(tmp_path / "missing") == []


def test_clean_env_drops_fd_passing_variables() -> None:
    env = oci._clean_env(
        {
            "PATH": "/bin",
            "LISTEN_FDS": "3",
            "LISTEN_PID": "1",
            "LISTEN_FDNAMES": "a",
            "NOTIFY_SOCKET": "/s",
        }
    )
    assert env == {"PATH": "/bin"}


def test_argv_builders(tmp_path: Path) -> None:
    rt = OCIRuntime(RuntimeChoice("runc", Path("/usr/sbin/runc"), "1.1.5", "test"), tmp_path)
    assert rt.state_root == tmp_path / "runtime" / "runc"
    root = str(rt.state_root)
    assert rt.argv("state", "c1") == ["/usr/sbin/runc", "--root", root, "state", "c1"]
    assert rt.global_args(tmp_path / "l") == [
        "--root",
        root,
        "--log",
        str(tmp_path / "l"),
        "--log-format",
        "json",
    ]
    assert rt.create_args("c1", Path("/b"), pid_file=Path("/p"), console_socket=Path("/s"), no_pivot=True) == [
        "create", "--bundle", "/b", "--pid-file", "/p", "--console-socket", "/s", "--no-pivot", "c1",
    ]  # fmt: skip
    assert rt.run_args("c1", Path("/b"), detach=True) == ["run", "--bundle", "/b", "--detach", "c1"]
    assert rt.exec_argv("c1", Path("/proc.json"), tty=True, detach=True, pid_file=Path("/p")) == [
        "/usr/sbin/runc", "--root", root,
        "exec", "--process", "/proc.json", "--tty", "--detach", "--pid-file", "/p", "c1",
    ]  # fmt: skip


def test_state_of_unknown_container_is_none_without_running_anything(tmp_path: Path) -> None:
    rt = OCIRuntime(RuntimeChoice("runc", tmp_path / "no-such-runtime", "", "test"), tmp_path)
    assert rt.state("nothing") is None
    rt.delete("nothing")  # nothing to delete


def test_find_runtime(tmp_path: Path) -> None:
    exe = tmp_path / "myrt"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert oci.find_runtime(str(exe)) == exe
    assert oci.find_runtime(str(tmp_path / "none")) is None
    assert oci.find_runtime("surely-no-such-runtime-binary") is None
