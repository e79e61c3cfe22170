"""The CRI server's containers against the real runtime, through gRPC.

Covered: the container lifecycle in a sandbox and its idempotent
stop/remove, a stop timeout followed by SIGKILL, exit codes and reasons,
list filters, verbose status, bad input (no image, unknown image or
sandbox, invalid mounts, duplicate names, a stopped sandbox, a second
start), logs in the CRI format (stdout/stderr, partial lines) read back by
``skiff logs``, ReopenContainerLog, ExecSync (output, stderr, exit codes,
a command not found, 1 MiB of output, a timeout that kills the process),
mounts (a symlinked host path, read-only), the security context (user,
group, supplemental groups, read-only rootfs, capabilities,
no_new_privs, masked and read-only paths), environment and working
directory, UpdateContainerResources, and stats of containers and sandboxes.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import cri_fixtures
import grpc
from cri_api.v1 import api_pb2
from cri_fixtures import code_of, list_containers, requirements

from skiff.testing.criserver import CRIEnv
from skiff.testing.network import wait_for

pytestmark = requirements
cri = cri_fixtures.cri
clean = cri_fixtures.clean

CREATED, RUNNING, EXITED = (
    api_pb2.CONTAINER_CREATED,
    api_pb2.CONTAINER_RUNNING,
    api_pb2.CONTAINER_EXITED,
)
LOG_LINE = re.compile(
    rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d)) (stdout|stderr) (F|P) (.*)$"
)


def _sandbox(env: CRIEnv, **kwargs: object) -> tuple[str, object]:
    return env.run_sandbox(env.sandbox_config(**kwargs))  # type: ignore[arg-type]


def _run(env: CRIEnv, sid: str, config: object, name: str, command: list[str], **kw: object) -> str:
    cid = env.create_container(sid, config, env.container_config(name, command, **kw))
    env.start_container(cid)
    return cid


def _stop(env: CRIEnv, cid: str, timeout: int = 0) -> None:
    env.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=timeout))


def _remove(env: CRIEnv, cid: str) -> None:
    env.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid))


# --- lifecycle ---------------------------------------------------------------------------------


def test_container_lifecycle_and_idempotent_stop_and_remove(clean: CRIEnv) -> None:
    env = clean
    sid, config = _sandbox(env)
    cid = env.create_container(
        sid,
        config,
        env.container_config(
            "main",
            ["busybox", "sleep", "1000"],
            labels={"k": "v"},
            annotations={"a": "b"},
        ),
    )
    status = env.container_status(cid).status
    assert status.state == CREATED and status.metadata.name == "main"
    assert dict(status.labels) == {"k": "v"} and dict(status.annotations) == {"a": "b"}
    assert status.image.image == env.image
    images = env.images.ListImages(api_pb2.ListImagesRequest()).images
    busybox_id = next(i.id for i in images if env.image in i.repo_tags)
    assert status.image_ref == status.image_id == busybox_id
    env.start_container(cid)
    running = env.container_status(cid).status
    assert running.state == RUNNING and running.started_at >= running.created_at > 0
    _stop(env, cid, timeout=1)  # pid 1 ignores SIGTERM: SIGKILL after the timeout
    stopped = env.container_status(cid).status
    assert stopped.state == EXITED
    assert stopped.exit_code == 137 and stopped.reason == "Error"
    assert stopped.finished_at >= stopped.started_at
    _stop(env, cid)  # idempotent
    _remove(env, cid)
    assert list_containers(env, id=cid) == []
    assert code_of(env.container_status, cid) == grpc.StatusCode.NOT_FOUND
    _remove(env, cid)
    _stop(env, "e" * 64)
    _remove(env, "e" * 64)


def test_stop_timeout_then_sigkill(clean: CRIEnv) -> None:
    env = clean
    sid, config = _sandbox(env)
    cid = _run(
        env, sid, config, "stubborn", ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]
    )
    started = time.monotonic()
    _stop(env, cid, timeout=2)
    took = time.monotonic() - started
    status = env.container_status(cid).status
    assert status.state == EXITED and status.exit_code == 137
    assert 2 <= took < 15


def test_exit_codes_and_reasons(clean: CRIEnv) -> None:
    env = clean
    sid, config = _sandbox(env)
    ok = _run(env, sid, config, "ok", ["true"])
    bad = _run(env, sid, config, "bad", ["sh", "-c", "exit 3"])
    env.wait_container_state(ok, EXITED)
    env.wait_container_state(bad, EXITED)
    assert (env.container_status(ok).status.exit_code, env.container_status(ok).status.reason) == (
        0,
        "Completed",
    )
    assert (
        env.container_status(bad).status.exit_code,
        env.container_status(bad).status.reason,
    ) == (
        3,
        "Error",
    )


def test_list_filters_and_verbose_status(clean: CRIEnv) -> None:
    env = clean
    a, a_config = _sandbox(env)
    b, b_config = _sandbox(env)
    one = _run(env, a, a_config, "one", ["busybox", "sleep", "1000"], labels={"role": "x"})
    two = env.create_container(
        a, a_config, env.container_config("two", ["true"], labels={"role": "y"})
    )
    three = _run(env, b, b_config, "three", ["busybox", "sleep", "1000"], labels={"role": "x"})
    assert {c.id for c in list_containers(env)} == {one, two, three}
    assert {c.id for c in list_containers(env, pod_sandbox_id=a)} == {one, two}
    assert {c.id for c in list_containers(env, label_selector={"role": "x"})} == {one, three}
    created = api_pb2.ContainerStateValue(state=CREATED)
    assert [c.id for c in list_containers(env, state=created)] == [two]
    assert [c.id for c in list_containers(env, id=three[:12])] == [three]
    item = list_containers(env, id=one)[0]
    assert item.pod_sandbox_id == a and item.metadata.name == "one" and item.state == RUNNING
    info = json.loads(env.container_status(one, verbose=True).info["info"])
    assert info["sandboxID"] == a and info["pid"] > 0
    assert info["runtimeSpec"]["process"]["args"] == ["busybox", "sleep", "1000"]
    # the infra containers are not kubelet's
    assert all(c.metadata.name != "POD" for c in list_containers(env))


# --- bad input --------------------------------------------------------------------------------


def test_bad_container_requests(clean: CRIEnv, tmp_path: Path) -> None:
    env = clean
    sid, config = _sandbox(env)

    def create(container: object, sandbox_id: str = sid) -> grpc.StatusCode:
        request = api_pb2.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, config=container, sandbox_config=config
        )
        return code_of(env.runtime.CreateContainer, request)

    no_image = env.container_config("c", ["true"], image="")
    assert create(no_image) == grpc.StatusCode.INVALID_ARGUMENT
    no_name = env.container_config("", ["true"])
    assert create(no_name) == grpc.StatusCode.INVALID_ARGUMENT
    unknown_image = env.container_config("c", ["true"], image="localhost/nothing:here")
    assert create(unknown_image) == grpc.StatusCode.NOT_FOUND
    assert create(env.container_config("c", ["true"]), "d" * 64) == grpc.StatusCode.NOT_FOUND
    for mount in (
        api_pb2.Mount(container_path="relative", host_path=str(tmp_path)),
        api_pb2.Mount(container_path="/data", host_path="relative/host"),
        api_pb2.Mount(container_path="/data", host_path=""),
        api_pb2.Mount(container_path="/data", host_path=str(tmp_path), recursive_read_only=True),
    ):
        assert create(env.container_config("c", ["true"], mounts=[mount])) == (
            grpc.StatusCode.INVALID_ARGUMENT
        ), mount
    bad_user = api_pb2.LinuxContainerConfig(
        security_context=api_pb2.LinuxContainerSecurityContext(
            run_as_group=api_pb2.Int64Value(value=5)
        )
    )
    assert create(env.container_config("c", ["true"], linux=bad_user)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert list_containers(env) == []
    cid = env.create_container(sid, config, env.container_config("c", ["busybox", "sleep", "100"]))
    assert create(env.container_config("c", ["true"])) == grpc.StatusCode.ALREADY_EXISTS
    env.create_container(sid, config, env.container_config("c", ["true"], attempt=1))
    env.start_container(cid)
    start = api_pb2.StartContainerRequest(container_id=cid)
    assert code_of(env.runtime.StartContainer, start) == grpc.StatusCode.FAILED_PRECONDITION
    env.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sid))
    assert env.container_status(cid).status.state == EXITED
    assert create(env.container_config("late", ["true"])) == grpc.StatusCode.FAILED_PRECONDITION
    exec_sync = api_pb2.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=5)
    assert code_of(env.runtime.ExecSync, exec_sync) == grpc.StatusCode.FAILED_PRECONDITION


# --- logs -----------------------------------------------------------------------------------------


def _log_lines(path: Path) -> list[tuple[str, str, str]]:
    out = []
    for raw in path.read_bytes().splitlines():
        match = LOG_LINE.match(raw)
        assert match is not None, raw
        out.append((match.group(3).decode(), match.group(4).decode(), match.group(5).decode()))
    return out


def test_logs_in_the_cri_format(clean: CRIEnv) -> None:
    env = clean
    sid, config = _sandbox(env)
    cid = _run(
        env, sid, config, "logger",
        ["sh", "-c", "echo 'hello World'; echo oops >&2; printf partial"],
    )  # fmt: skip
    env.wait_container_state(cid, EXITED)
    status = env.container_status(cid).status
    path = Path(status.log_path)
    assert path == Path(config.log_directory) / "logger" / "0.log"  # type: ignore[attr-defined]
    lines = _log_lines(path)
    assert ("stdout", "F", "hello World") in lines
    assert ("stderr", "F", "oops") in lines
    assert ("stdout", "P", "partial") in lines
    logs = env.skiff("logs", cid)
    assert "hello World" in logs.stdout and "oops" in logs.stderr


def test_reopen_container_log(clean: CRIEnv) -> None:
    env = clean
    sid, config = _sandbox(env)
    cid = _run(
        env, sid, config, "ticker", ["sh", "-c", "while true; do echo tick; sleep 0.05; done"]
    )
    path = Path(env.container_status(cid).status.log_path)
    wait_for(lambda: path.exists() and path.stat().st_size > 0, "the first log lines")
    rotated = path.with_name(path.name + ".1")
    path.rename(rotated)
    env.runtime.ReopenContainerLog(api_pb2.ReopenContainerLogRequest(container_id=cid))
    assert path.exists()
    wait_for(lambda: path.stat().st_size > 0, "lines in the new log")
    size = rotated.stat().st_size
    wait_for(lambda: path.stat().st_size > 200, "more lines in the new log")
    assert rotated.stat().st_size == size  # the old file gets nothing more
    assert all(line[2] == "tick" for line in _log_lines(path))
    _stop(env, cid)
    request = api_pb2.ReopenContainerLogRequest(container_id=cid)
    assert code_of(env.runtime.ReopenContainerLog, request) == grpc.StatusCode.FAILED_PRECONDITION


# --- exec -----------------------------------------------------------------------------------------


def test_exec_sync(clean: CRIEnv) -> None:
    env = clean
    sid, config = _sandbox(env)
    cid = _run(env, sid, config, "target", ["busybox", "sleep", "1000"])
    out = env.exec_sync(cid, ["sh", "-c", "echo hello; echo bad >&2; exit 7"])
    assert (out.stdout, out.stderr, out.exit_code) == (b"hello\n", b"bad\n", 7)
    missing = env.exec_sync(cid, ["/no/such/binary"])
    assert missing.exit_code == 127 and missing.stderr
    big = env.exec_sync(cid, ["sh", "-c", "head -c 1048576 /dev/zero"])
    assert big.stdout == b"\0" * (1 << 20) and big.exit_code == 0
    started = time.monotonic()
    request = api_pb2.ExecSyncRequest(container_id=cid, cmd=["busybox", "sleep", "4321"], timeout=1)
    assert code_of(env.runtime.ExecSync, request) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 10
    ps = env.exec_sync(cid, ["ps", "-o", "args"]).stdout.decode()
    assert "sleep 4321" not in ps  # the timed-out process is gone
    empty = api_pb2.ExecSyncRequest(container_id=cid, cmd=[], timeout=1)
    assert code_of(env.runtime.ExecSync, empty) == grpc.StatusCode.INVALID_ARGUMENT


# --- mounts, security, env --------------------------------------------------------------------------


def test_mounts_security_context_env_and_workdir(clean: CRIEnv, tmp_path: Path) -> None:
    env = clean
    host = tmp_path / "data"
    host.mkdir()
    (host / "flag").write_text("here\n")
    link = tmp_path / "data-link"
    link.symlink_to(host)
    sid, config = _sandbox(env)
    security = api_pb2.LinuxContainerSecurityContext(
        run_as_user=api_pb2.Int64Value(value=1000),
        run_as_group=api_pb2.Int64Value(value=1000),
        supplemental_groups=[65534],
        readonly_rootfs=True,
        no_new_privs=True,
        capabilities=api_pb2.Capability(drop_capabilities=["ALL"]),
        masked_paths=["/proc/kcore", "/proc/version"],
        readonly_paths=["/proc/sys"],
    )
    cid = _run(
        env, sid, config, "secure", ["busybox", "sleep", "1000"],
        mounts=[api_pb2.Mount(container_path="/mnt/data", host_path=str(link), readonly=True)],
        envs=[api_pb2.KeyValue(key="GREETING", value="hi there")],
        working_dir="/tmp",
        linux=api_pb2.LinuxContainerConfig(security_context=security),
    )  # fmt: skip
    assert env.exec_sync(cid, ["cat", "/mnt/data/flag"]).stdout == b"here\n"
    assert env.exec_sync(cid, ["touch", "/mnt/data/x"]).exit_code != 0
    assert env.exec_sync(cid, ["id", "-u"]).stdout == b"1000\n"
    assert env.exec_sync(cid, ["id", "-g"]).stdout == b"1000\n"
    assert b"65534" in env.exec_sync(cid, ["id", "-G"]).stdout
    assert env.exec_sync(cid, ["touch", "/rootfile"]).exit_code != 0
    status = env.exec_sync(cid, ["cat", "/proc/self/status"]).stdout.decode()
    assert re.search(r"^CapBnd:\s+0+$", status, re.M)
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert env.exec_sync(cid, ["cat", "/proc/version"]).stdout == b""
    assert env.exec_sync(cid, ["sh", "-c", "echo $GREETING; pwd"]).stdout == b"hi there\n/tmp\n"
    mounts = env.container_status(cid).status.mounts
    assert [(m.container_path, m.host_path, m.readonly) for m in mounts] == [
        ("/mnt/data", str(link), True)
    ]
    # a host path that does not exist is made, as CRI-O does
    made = tmp_path / "made" / "here"
    cid2 = _run(
        env, sid, config, "maker", ["busybox", "sleep", "1000"],
        mounts=[api_pb2.Mount(container_path="/made", host_path=str(made))],
    )  # fmt: skip
    assert made.is_dir()
    assert env.exec_sync(cid2, ["sh", "-c", "echo x > /made/file"]).exit_code == 0
    assert (made / "file").read_text() == "x\n"


# --- resources and stats ------------------------------------------------------------------------------


def test_update_container_resources(clean: CRIEnv) -> None:
    env = clean
    sid, config = _sandbox(env)
    cid = _run(env, sid, config, "limited", ["busybox", "sleep", "1000"])
    env.runtime.UpdateContainerResources(
        api_pb2.UpdateContainerResourcesRequest(
            container_id=cid,
            linux=api_pb2.LinuxContainerResources(memory_limit_in_bytes=64 << 20, cpu_shares=512),
        )
    )
    resources = env.container_status(cid).status.resources.linux
    assert resources.memory_limit_in_bytes == 64 << 20 and resources.cpu_shares == 512
    limit = env.exec_sync(cid, ["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
    if limit.exit_code == 0:  # the cgroup v1 memory controller is mounted in the container
        assert int(limit.stdout) == 64 << 20


def test_container_and_sandbox_stats(clean: CRIEnv) -> None:
    env = clean
    sid, config = _sandbox(env, labels={"stats": "yes"})
    cid = _run(
        env, sid, config, "busy",
        ["sh", "-c", "head -c 3000000 /dev/urandom > /tmp/blob; while true; do :; done"],
    )  # fmt: skip
    wait_for(
        lambda: env.exec_sync(cid, ["stat", "-c", "%s", "/tmp/blob"]).stdout == b"3000000\n",
        "the file",
    )
    first = env.runtime.ContainerStats(api_pb2.ContainerStatsRequest(container_id=cid)).stats
    assert first.attributes.id == cid and first.attributes.metadata.name == "busy"
    assert first.cpu.usage_core_nano_seconds.value > 0
    assert first.memory.working_set_bytes.value > 0
    assert first.writable_layer.used_bytes.value >= 3_000_000

    def rate() -> int:
        stats = env.runtime.ContainerStats(api_pb2.ContainerStatsRequest(container_id=cid)).stats
        return int(stats.cpu.usage_nano_cores.value)

    # a rate needs two samples, far enough apart for the busy loop's CPU time to show
    wait_for(lambda: rate() > 0, "a CPU rate", 20)
    listed = env.runtime.ListContainerStats(
        api_pb2.ListContainerStatsRequest(filter=api_pb2.ContainerStatsFilter(pod_sandbox_id=sid))
    ).stats
    assert [s.attributes.id for s in listed] == [cid]
    pod = env.runtime.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id=sid)).stats
    assert pod.attributes.id == sid and pod.attributes.labels["stats"] == "yes"
    assert pod.linux.cpu.usage_core_nano_seconds.value >= first.cpu.usage_core_nano_seconds.value
    assert pod.linux.process.process_count.value >= 2
    assert pod.linux.network.default_interface.name == "eth0"
    assert [c.attributes.id for c in pod.linux.containers] == [cid]
    selected = env.runtime.ListPodSandboxStats(
        api_pb2.ListPodSandboxStatsRequest(
            filter=api_pb2.PodSandboxStatsFilter(label_selector={"stats": "yes"})
        )
    ).stats
    assert [s.attributes.id for s in selected] == [sid]
    _stop(env, cid)
    stopped = env.runtime.ContainerStats(api_pb2.ContainerStatsRequest(container_id=cid)).stats
    assert not stopped.HasField("cpu")
