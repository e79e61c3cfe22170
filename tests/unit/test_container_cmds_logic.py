"""The pure parts of exec, update, prune and inspect: an exec session's OCI
process, resource updates and what the runtime is sent, prune filters, Go
times and podman's port maps. (The commands themselves run end to end in
tests/cli/test_container_cmds.py.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from skiff.errors import UsageError
from skiff.runtime import serde
from skiff.runtime.exec import ExecOptions, _merge_env, exec_process
from skiff.runtime.inspect import go_time, port_bindings
from skiff.runtime.prune import PruneFilter, parse_filters
from skiff.runtime.records import Container, ContainerConfig, ContainerState
from skiff.runtime.specgen.generator import ResourceOptions, SpecGenerator
from skiff.runtime.update import UpdateOptions, apply, runtime_resources

PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww:x:1000:1000:www:/var/www:/bin/sh\n"


def container(
    sg: SpecGenerator | None = None,
    *,
    labels: dict[str, str] | None = None,
    created: float = 0.0,
    ports: list[dict[str, object]] | None = None,
    exposed: list[str] | None = None,
) -> Container:
    config = ContainerConfig(
        image_id=None,
        image_name="img",
        spec=serde.to_data(sg or SpecGenerator()),
        labels=labels or {},
        ports=list(ports or []),
        exposed_ports=list(exposed or []),
    )
    return Container("c" * 64, "name", created or time.time(), config, ContainerState())


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text("root:x:0:\nwww:x:1000:\n")
    return tmp_path


def oci_config(rootfs: Path) -> dict[str, object]:
    return {
        "root": {"path": str(rootfs)},
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0, "umask": 18, "additionalGids": [0]},
            "args": ["busybox", "sleep", "1000"],
            "env": ["PATH=/bin", "TERM=xterm", "HOME=/root"],
            "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "consoleSize": {"height": 10, "width": 10},
        },
    }


# --- exec ---------------------------------------------------------------------------------


def test_merge_env_replaces_in_place_and_appends() -> None:
    assert _merge_env(["A=1", "B=2"], {"B": "x", "C": "3"}) == ["A=1", "B=x", "C=3"]
    assert _merge_env(["A=1=2"], {}) == ["A=1=2"]


def test_exec_process_keeps_the_containers_process_but_the_changes(rootfs: Path) -> None:
    process = exec_process(
        oci_config(rootfs),
        container(),
        ExecOptions(command=["ls", "-l"], env={"X": "1"}, workdir="/tmp", tty=True),
    )
    assert process["args"] == ["ls", "-l"]
    assert process["terminal"] is True
    assert process["cwd"] == "/tmp"
    assert process["env"] == ["PATH=/bin", "TERM=xterm", "HOME=/root", "X=1"]
    assert process["user"] == {"uid": 0, "gid": 0, "umask": 18, "additionalGids": [0]}
    assert process["capabilities"] == {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]}
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert "consoleSize" not in process


def test_exec_process_sizes_a_terminal_from_the_start(rootfs: Path) -> None:
    sized = ExecOptions(command=["stty", "size"], tty=True, console_size=(33, 111))
    process = exec_process(oci_config(rootfs), container(), sized)
    assert process["consoleSize"] == {"height": 33, "width": 111}
    no_tty = ExecOptions(command=["stty", "size"], console_size=(33, 111))
    assert "consoleSize" not in exec_process(oci_config(rootfs), container(), no_tty)


def test_exec_process_for_another_user(rootfs: Path) -> None:
    process = exec_process(oci_config(rootfs), container(), ExecOptions(command=["id"], user="www"))
    assert process["user"] == {"uid": 1000, "gid": 1000, "umask": 18}
    assert "HOME=/var/www" in process["env"]
    caps = process["capabilities"]
    assert caps["effective"] == [] and caps["permitted"] == []
    assert caps["bounding"]  # the container's bounding set stays
    explicit_home = exec_process(
        oci_config(rootfs), container(), ExecOptions(["id"], env={"HOME": "/x"}, user="www")
    )
    assert "HOME=/x" in explicit_home["env"]


def test_exec_process_refuses_bad_input(rootfs: Path) -> None:
    with pytest.raises(UsageError, match="non-empty command"):
        exec_process(oci_config(rootfs), container(), ExecOptions(command=[]))
    with pytest.raises(UsageError, match="absolute path"):
        exec_process(oci_config(rootfs), container(), ExecOptions(["ls"], workdir="tmp"))
    with pytest.raises(Exception, match="unable to find user nouser"):
        exec_process(oci_config(rootfs), container(), ExecOptions(["ls"], user="nouser"))


def test_exec_process_privileged_has_every_held_capability(rootfs: Path) -> None:
    from skiff.runtime.specgen.host import HostInfo

    process = exec_process(oci_config(rootfs), container(), ExecOptions(["ls"], privileged=True))
    held = sorted(HostInfo.detect().bounding_caps)
    assert sorted(process["capabilities"]["effective"]) == held
    assert sorted(process["capabilities"]["bounding"]) == held


# --- update -----------------------------------------------------------------------------------


def test_update_apply_and_what_the_runtime_gets() -> None:
    res = ResourceOptions(memory=None, cpu_quota=20000, cpu_period=100000, pids_limit=2048)
    opts = UpdateOptions(memory=64 << 20, cpus=0.5, pids_limit=100)
    new = apply(res, opts)
    assert (new.memory, new.cpus, new.cpu_quota, new.cpu_period) == (64 << 20, 0.5, None, None)
    assert new.pids_limit == 100
    assert res.memory is None  # the original is untouched
    assert runtime_resources(new, opts) == {
        "memory": {"limit": 64 << 20, "swap": 128 << 20},
        "cpu": {"quota": 50000, "period": 100000},
        "pids": {"limit": 100},
    }


def test_update_removing_limits_sends_minus_one() -> None:
    res = ResourceOptions(memory=64 << 20, memory_swap=256 << 20, cpus=1.0, pids_limit=5)
    opts = UpdateOptions(memory=-1, cpus=0.0, pids_limit=-1)
    new = apply(res, opts)
    assert (new.memory, new.memory_swap, new.cpus, new.pids_limit) == (None, None, None, None)
    assert runtime_resources(new, opts) == {
        "memory": {"limit": -1, "swap": -1},
        "cpu": {"quota": -1, "period": 100000},
        "pids": {"limit": -1},
    }


def test_update_touches_only_the_sections_asked_for() -> None:
    res = ResourceOptions(memory=64 << 20)
    opts = UpdateOptions(cpu_shares=512)
    assert runtime_resources(apply(res, opts), opts) == {"cpu": {"shares": 512}}
    assert UpdateOptions().empty() and not opts.empty()


# --- prune ------------------------------------------------------------------------------------


def test_prune_filters() -> None:
    old = container(labels={"a": "b"}, created=time.time() - 7200)
    new = container(labels={"c": ""})
    assert parse_filters([]) == PruneFilter()
    assert parse_filters(["until=1h"]).matches(old)
    assert not parse_filters(["until=1h"]).matches(new)
    assert parse_filters(["label=a"]).matches(old) and not parse_filters(["label=a"]).matches(new)
    assert parse_filters(["label=a=b"]).matches(old)
    assert not parse_filters(["label=a=x"]).matches(old)
    assert parse_filters(["label!=a"]).matches(new) and not parse_filters(["label!=a"]).matches(old)
    assert not parse_filters(["label=a", "label=c"]).matches(old)  # all must hold
    with pytest.raises(UsageError, match="bogus is an invalid filter"):
        parse_filters(["bogus=1"])
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_filters(["label"])


# --- inspect ----------------------------------------------------------------------------------


def test_go_time() -> None:
    assert go_time(0) == "0001-01-01T00:00:00Z"
    assert go_time(1_700_000_000) == "2023-11-14T22:13:20Z"
    assert go_time(1_700_000_000.25) == "2023-11-14T22:13:20.25Z"


def test_port_bindings_expand_ranges_and_list_exposed_ports() -> None:
    c = container(
        ports=[
            {"host_ip": "", "container_port": 80, "host_port": 8080, "range": 2, "protocol": "tcp"},
            {"host_ip": "127.0.0.1", "container_port": 53, "host_port": 5353, "protocol": "udp"},
        ],
        exposed=["80/tcp", "9000/tcp"],
    )
    assert port_bindings(c, include_exposed=True) == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "81/tcp": [{"HostIp": "", "HostPort": "8081"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
        "9000/tcp": None,
    }
    assert "9000/tcp" not in port_bindings(c, include_exposed=False)
