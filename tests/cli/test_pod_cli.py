"""``skiff pod …`` as a user types it: output shapes (podman 4.3's), errors, filters.

The shapes are checked against real podman on a private store where it
matters (``pod ps`` columns and JSON keys, ``pod inspect`` keys), and
against podman's documented wording elsewhere. Containers run for real
(runc, conmon) with ``--network none`` or a network of the test's own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skiff.testing.busybox import BusyboxImage
from skiff.testing.containers import PodContainerEnv

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
]


@pytest.fixture
def env(tmp_shm: Path, busybox_layout: BusyboxImage) -> Iterator[PodContainerEnv]:
    environment = PodContainerEnv(tmp_shm / "env", busybox_layout)
    try:
        yield environment
    finally:
        environment.close()


def columns(line: str) -> list[str]:
    """A table line split the way podman's tabwriter pads it (two or more spaces)."""
    return [c for c in re.split(r"\s{2,}", line.strip()) if c]


# --- create, ps ---------------------------------------------------------------------------------


def test_create_prints_the_id_and_ps_lists_podmans_columns(env: PodContainerEnv) -> None:
    pod_id = env.skiff("pod", "create", "--name", "one", "--label", "tier=web").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", pod_id)
    lines = env.skiff("pod", "ps").stdout.splitlines()
    assert columns(lines[0]) == [
        "POD ID",
        "NAME",
        "STATUS",
        "CREATED",
        "INFRA ID",
        "# OF CONTAINERS",
    ]
    row = columns(lines[1])
    assert row[0] == pod_id[:12] and row[1:3] == ["one", "Created"]
    assert row[3].endswith("ago") and re.fullmatch(r"[0-9a-f]{12}", row[4]) and row[5] == "1"
    header = columns(
        env.skiff(
            "pod", "ps", "--ctr-names", "--ctr-ids", "--ctr-status", "--ns"
        ).stdout.splitlines()[0]
    )
    assert header == [
        "POD ID",
        "NAME",
        "STATUS",
        "CREATED",
        "INFRA ID",
        "NAMES",
        "IDS",
        "STATUS",
        "CGROUP",
        "NAMESPACES",
    ]
    assert env.skiff("pod", "ps", "-q").stdout == pod_id + "\n"
    assert (
        env.skiff(
            "pod",
            "ps",
            "--noheading",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Name}} {{.NumberOfContainers}} {{.Labels}}",
        ).stdout
        == f"{pod_id} one 1 map[tier:web]\n"
    )
    (record,) = json.loads(env.skiff("pod", "ps", "--format", "json").stdout)
    assert (
        record["Id"] == pod_id
        and record["Status"] == "Created"
        and record["Labels"] == {"tier": "web"}
    )
    assert record["Containers"][0]["Names"] == f"{pod_id[:12]}-infra"
    assert env.skiff("pod", "exists", "one").returncode == 0
    assert env.skiff("pod", "exists", "nosuch", expect=1).stdout == ""


def test_ps_filters_and_sorts(env: PodContainerEnv) -> None:
    env.skiff("pod", "create", "--name", "alpha", "--infra=false")
    env.skiff("pod", "create", "--name", "bravo", "--label", "a=1")
    env.skiff("create", "--pod", "bravo", "--name", "m", env.image, "true")

    def names(*args: str) -> list[str]:
        return env.skiff("pod", "ps", "--format", "{{.Name}}", *args).stdout.split()

    assert names() == ["bravo", "alpha"]  # newest first
    assert names("--sort", "name") == ["alpha", "bravo"]
    assert names("--filter", "name=^br") == ["bravo"]
    assert names("--filter", "label=a=1") == ["bravo"]
    assert names("--filter", "ctr-number=2") == ["bravo"]
    assert names("--filter", "ctr-names=m") == ["bravo"]
    assert names("--filter", "status=created", "--sort", "name") == ["alpha", "bravo"]
    assert "bogus is an invalid filter" in env.fails("pod", "ps", "--filter", "bogus=1")
    # containers know their pod
    rows = env.skiff(
        "ps", "-a", "--pod", "--filter", "pod=bravo", "--format", "{{.Names}} {{.PodName}}"
    ).stdout.splitlines()
    assert sorted(rows)[-1] == "m bravo"
    header = columns(env.skiff("ps", "-a", "--pod").stdout.splitlines()[0])
    assert header[-3:] == ["NAMES", "POD ID", "PODNAME"]


# --- inspect ----------------------------------------------------------------------------------------

INSPECT_KEYS = {
    "Id", "Name", "Created", "CreateCommand", "ExitPolicy", "State", "Hostname", "Labels",
    "CreateCgroup", "CgroupParent", "CgroupPath", "CreateInfra", "InfraContainerID",
    "InfraConfig", "SharedNamespaces", "NumContainers", "Containers",
}  # fmt: skip


def test_inspect_is_one_object_for_one_pod_and_an_array_for_more(env: PodContainerEnv) -> None:
    env.skiff(
        "pod",
        "create",
        "--name",
        "i1",
        "--label",
        "x=y",
        "--hostname",
        "h1",
        "--dns",
        "1.1.1.1",
        "--add-host",
        "db:10.0.0.5",
    )
    env.skiff(
        "pod", "create", "--name", "i2", "--share", "ipc,pid", "--memory", "64m", "--cpus", "1.5"
    )
    out = env.skiff("pod", "inspect", "i1").stdout
    assert out.startswith('{\n     "Id"')  # podman's five-space indent
    one = json.loads(out)
    assert set(one) == INSPECT_KEYS
    assert one["Hostname"] == "h1" and one["SharedNamespaces"] == ["ipc", "net", "uts"]
    assert one["InfraConfig"]["DNSServer"] == ["1.1.1.1"]
    assert one["InfraConfig"]["HostAdd"] == ["db:10.0.0.5"]
    assert one["CgroupPath"] == f"{one['CgroupParent']}/{one['Id']}"
    both = json.loads(env.skiff("pod", "inspect", "i1", "i2").stdout)
    assert [p["Name"] for p in both] == ["i1", "i2"]
    two = both[1]
    assert two["SharedNamespaces"] == ["ipc", "pid"]
    assert (two["memory_limit"], two["memory_swap"]) == (64 << 20, 128 << 20)
    assert (two["cpu_period"], two["cpu_quota"]) == (100000, 150000)
    assert (
        env.skiff("pod", "inspect", "--format", "{{.Name}} {{.NumContainers}}", "i2").stdout
        == "i2 1\n"
    )
    assert json.loads(env.skiff("inspect", "--type", "pod", "i2").stdout)[0]["Name"] == "i2"
    assert env.fails("pod", "inspect", "nosuch").startswith(
        "Error: inspecting object: no such pod nosuch"
    )


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_shapes_match_podman(env: PodContainerEnv) -> None:
    env.skiff("pod", "create", "--name", "same", "--label", "k=v")
    env.podman("pod", "create", "--name", "same", "--label", "k=v", timeout=300)
    ours = json.loads(env.skiff("pod", "inspect", "same").stdout)
    theirs = json.loads(env.podman("pod", "inspect", "same").stdout)
    assert set(ours) == set(theirs)
    assert set(ours["InfraConfig"]) == set(theirs["InfraConfig"])
    assert set(ours["Containers"][0]) == set(theirs["Containers"][0])
    for key in ("Name", "ExitPolicy", "State", "Labels", "CreateInfra", "NumContainers"):
        assert ours[key] == theirs[key], key
    ps_ours = json.loads(env.skiff("pod", "ps", "--format", "json").stdout)[0]
    ps_theirs = json.loads(env.podman("pod", "ps", "--format", "json").stdout)[0]
    assert set(ps_ours) == set(ps_theirs)
    assert set(ps_ours["Containers"][0]) == set(ps_theirs["Containers"][0])
    for args in ((), ("--ctr-names",), ("--ns",)):
        ours_header = columns(env.skiff("pod", "ps", *args).stdout.splitlines()[0])
        theirs_header = columns(env.podman("pod", "ps", *args).stdout.splitlines()[0])
        assert ours_header == theirs_header, args
    env.podman("pod", "rm", "-f", "same")


# --- the verbs ------------------------------------------------------------------------------------


def test_start_stop_kill_pause_print_the_pod_id(env: PodContainerEnv) -> None:
    pod_id = env.skiff("pod", "create", "--name", "v", "--network", "none").stdout.strip()
    env.skiff("create", "--pod", "v", "--name", "sleeper", env.image, "busybox", "sleep", "1000")
    assert env.skiff("pod", "start", "v").stdout == pod_id + "\n"
    assert env.skiff("pod", "pause", "v").stdout == pod_id + "\n"
    assert env.skiff("pod", "ps", "--format", "{{.Status}}").stdout == "Paused\n"
    env.skiff("pod", "unpause", "v")
    assert env.skiff("pod", "ps", "--format", "{{.Status}}").stdout == "Running\n"
    lines = env.skiff("pod", "top", "v").stdout.splitlines()
    assert columns(lines[0]) == ["USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"]
    commands = sorted(line.split()[-1 if line.endswith("-P") else -3] for line in lines[1:])
    assert any("catatonit" in line for line in lines[1:]) and any(
        "sleep 1000" in line for line in lines[1:]
    ), commands
    stats = env.skiff("pod", "stats", "--no-stream", "v").stdout.splitlines()
    assert columns(stats[0]) == [
        "POD",
        "CID",
        "NAME",
        "CPU %",
        "MEM USAGE/ LIMIT",
        "MEM %",
        "NET IO",
        "BLOCK IO",
        "PIDS",
    ]
    assert len(stats) == 3
    assert env.skiff("pod", "kill", "--signal", "KILL", "v").stdout == pod_id + "\n"
    assert env.skiff("pod", "ps", "--format", "{{.Status}}").stdout == "Exited\n"
    assert env.skiff("pod", "restart", "v").stdout == pod_id + "\n"
    assert env.skiff("pod", "stop", "-t", "0", "v").stdout == pod_id + "\n"
    assert env.skiff("pod", "rm", "v").stdout == pod_id + "\n"
    assert env.skiff("pod", "ps", "-q").stdout == ""
    env.wait_clean()


def test_prune_removes_exited_pods_after_asking(env: PodContainerEnv) -> None:
    env.skiff("pod", "create", "--name", "done", "--network", "none")
    env.skiff("pod", "create", "--name", "fresh", "--network", "none")
    env.skiff("pod", "start", "done")
    env.skiff("pod", "stop", "-t", "0", "done")
    declined = env.skiff("pod", "prune", input_text="n\n")
    assert declined.stdout.startswith("WARNING! This will remove all stopped/exited pods..")
    assert "done" in env.skiff("pod", "ps", "--format", "{{.Name}}").stdout
    done_id = env.skiff("pod", "inspect", "--format", "{{.Id}}", "done").stdout.strip()
    assert env.skiff("pod", "prune", "-f").stdout == done_id + "\n"
    assert env.skiff("pod", "ps", "--format", "{{.Name}}").stdout == "fresh\n"


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pod", "rm", "nosuch"), "Error: no pod with name or ID nosuch found: no such pod"),
        (("pod", "start", "nosuch"), "Error: no pod with name or ID nosuch found: no such pod"),
        (("pod", "create", "--share", "foo"),
         "Error: invalid kernel namespace to share: foo. Options are: cgroup, ipc, net, pid, uts or none"),
        (("pod", "create", "--network", "host", "-p", "8080:80"),
         "Error: PortMappings can only be used with Bridge or slirp4netns networking"),
        (("pod", "create", "--infra=false", "--share", "net"),
         "Error: cannot set share(net) namespaces without an infra container"),
        (("pod", "create", "--exit-policy", "sometimes"), "Error: invalid pod exit policy 'sometimes'"),
        (("pod", "create", "--name", "bad name"), "Error: pod name 'bad name' is not valid"),
        (("pod", "create", "-p", "99999:80"), "Error: "),
        (("pod", "kill", "--signal", "NOPE", "x"), "Error: invalid signal 'NOPE'"),
        (("pod", "create", "--network", "nosuchnet"),
         "Error: unable to find network with name or ID nosuchnet: network not found"),
    ],
)  # fmt: skip
def test_errors_are_one_line(env: PodContainerEnv, args: tuple[str, ...], message: str) -> None:
    assert env.fails(*args).startswith(message)
    assert env.skiff("pod", "ps", "-q").stdout == ""
    assert env.skiff("ps", "-a", "-q").stdout == ""


def test_a_name_in_use_and_joining_rules(env: PodContainerEnv) -> None:
    env.skiff("pod", "create", "--name", "taken", "--network", "none")
    assert 'name "taken" is in use: pod already exists' in env.fails(
        "pod", "create", "--name", "taken"
    )
    env.skiff("pod", "create", "--name", "taken", "--replace", "--network", "none")
    message = env.fails("create", "--pod", "taken", "-p", "8080:80", env.image)
    assert "published or exposed ports must be defined when the pod is created" in message
    assert "cannot set a hostname" in env.fails(
        "create", "--pod", "taken", "--hostname", "x", env.image
    )
    assert "no pod with name or ID nope found" in env.fails(
        "run", "--pod", "nope", env.image, "true"
    )
    assert env.skiff("ps", "-a", "-q").stdout.count("\n") == 1  # the infra container only


def test_container_inspect_names_the_pod(env: PodContainerEnv) -> None:
    pod_id = env.skiff("pod", "create", "--name", "owner", "--network", "none").stdout.strip()
    env.skiff("create", "--pod", "owner", "--name", "member", env.image, "true")
    data: Any = json.loads(env.skiff("inspect", "member").stdout)[0]
    assert data["Pod"] == pod_id
