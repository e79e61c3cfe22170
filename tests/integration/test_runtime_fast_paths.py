"""What keeps ``skiff run`` short, against the real thing: crun behind its
hybrid-cgroups wrapper, crun's seccomp program reused from one container to
the next, runc for containers whose mounts must propagate to the host,
conmon's exit command off the foreground client's path (and still there
when the client dies), and the volume code skipped for containers without
volumes. Private stores on tmpfs; busybox as argv[0] where a process
matters."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from skiff.runtime.specgen.host import detect_cgroup_layout
from skiff.testing.containers import ContainerEnv, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
]

NET = ("--network", "none")
RUN = ("run", *NET)


def _oci_runtime(env: ContainerEnv) -> dict[str, str]:
    info = json.loads(env.skiff("info", "--format", "json").stdout)
    runtime: dict[str, str] = info["host"]["ociRuntime"]
    return runtime


def _wrapped_crun(env: ContainerEnv) -> bool:
    return "wrapper" in _oci_runtime(env)


def _config_json(env: ContainerEnv, ref: str) -> dict[str, object]:
    cid = env.container(ref)
    assert cid is not None
    path = env.root / "containers" / str(cid["Id"]) / "userdata" / "config.json"
    data: dict[str, object] = json.loads(path.read_text())
    return data


def _conmon_cmdline(env: ContainerEnv, cid: str) -> str:
    found = [c for _, c in env.store_processes() if c.split(" ", 1)[0].endswith("conmon")]
    lines = [c for c in found if cid in c]
    assert lines, found
    return lines[0]


# --- crun on hybrid cgroups ----------------------------------------------------------------


@pytest.mark.skipif(shutil.which("crun") is None, reason="crun is not installed")
def test_crun_runs_on_hybrid_cgroups_through_its_wrapper(env: ContainerEnv) -> None:
    runtime = _oci_runtime(env)
    if not detect_cgroup_layout().is_hybrid:
        assert "wrapper" not in runtime
        pytest.skip("the host's cgroups are not hybrid")
    assert runtime["name"] == "crun" and Path(runtime["path"]).name == "crun"
    wrapper = Path(runtime["wrapper"])
    assert wrapper.is_file() and wrapper.is_relative_to(env.runroot)
    assert "hybrid" in runtime["reason"]
    out = env.skiff(*RUN, "--rm", env.image, "cat", "/proc/self/status").stdout
    assert "Seccomp:\t2" in out
    # the whole life of a container through the wrapper: run, exec, stop, rm
    cid = env.run_detached(*NET, "--name", "long", env.image, "busybox", "sleep", "100")
    assert json.loads(env.skiff("inspect", "long").stdout)[0]["OCIRuntime"] == "crun"
    assert env.skiff("exec", "long", "echo", "in").stdout == "in\n"
    env.skiff("stop", "-t", "1", "long")
    assert env.state("long") == "exited"
    env.skiff("rm", cid)
    env.wait_clean()


def test_seccomp_program_is_compiled_once_per_profile(env: ContainerEnv) -> None:
    if _oci_runtime(env)["name"] != "crun":
        pytest.skip("the default runtime is not crun")
    env.run_detached(*NET, "--name", "first", env.image, "busybox", "sleep", "100")
    cache = env.runroot / "seccomp-bpf" / "crun"
    wait_for(lambda: cache.is_dir() and any(cache.iterdir()), "a cached seccomp program", 10)
    (entry,) = cache.iterdir()
    program = json.loads(entry.read_text())["bpf"]
    annotations = _config_json(env, "first").get("annotations") or {}
    assert "run.oci.seccomp_bpf_data" not in annotations  # the first one compiled it

    second = env.run_detached(*NET, "--name", "second", env.image, "busybox", "sleep", "100")
    config = _config_json(env, "second")
    annotations = config.get("annotations")
    assert isinstance(annotations, dict)
    assert annotations["run.oci.seccomp_bpf_data"] == program
    linux = config["linux"]
    assert isinstance(linux, dict) and linux["seccomp"]  # still there, for inspection
    state = env.runroot / "runtime" / "crun" / second / "seccomp.bpf"
    assert state.read_bytes() == base64.b64decode(program)  # what crun loaded
    status = env.skiff("exec", "second", "cat", "/proc/1/status").stdout
    assert "Seccomp:\t2" in status and "Seccomp_filters:\t1" in status
    assert "Seccomp:\t2" in env.skiff("exec", "second", "cat", "/proc/self/status").stdout
    # without seccomp there is nothing to cache or to apply
    env.skiff(*RUN, "--rm", "--security-opt", "seccomp=unconfined", env.image, "true")
    assert len(list(cache.iterdir())) == 1
    env.skiff("rm", "-f", "-t", "0", "first", "second")
    env.wait_clean()


def test_mounts_propagating_to_the_host_get_runc(env: ContainerEnv) -> None:
    if not _wrapped_crun(env) or shutil.which("runc") is None:
        pytest.skip("the default runtime is not crun behind its wrapper")
    data = env.base / "data"
    data.mkdir()
    env.skiff(
        "create",
        "--network",
        "none",
        "--name",
        "shared",
        "-v",
        f"{data}:/data:rshared",
        env.image,
        "true",
    )
    env.skiff(
        "create", "--network", "none", "--name", "private", "-v", f"{data}:/data", env.image, "true"
    )
    runtimes = {
        name: json.loads(env.skiff("inspect", name).stdout)[0]["OCIRuntime"]
        for name in ("shared", "private")
    }
    assert runtimes == {"shared": "runc", "private": "crun"}
    env.skiff("start", "-a", "shared")
    assert env.state("shared") == "exited"
    env.skiff("rm", "shared", "private")
    env.wait_clean()


# --- conmon's exit command -------------------------------------------------------------------


def test_exit_command_waits_only_for_attached_clients(env: ContainerEnv) -> None:
    detached = env.run_detached(*NET, env.image, "busybox", "sleep", "100")
    line = _conmon_cmdline(env, detached)
    assert "exit_command.py" in line and "--exit-delay" not in line
    client = env.popen(*RUN, "--rm", "--name", "attached", env.image, "busybox", "sleep", "100")
    try:
        wait_for(lambda: len(env.conmon_pids()) == 2, "the attached container's conmon", 20)
        attached = next(
            c
            for _, c in env.store_processes()
            if c.split(" ", 1)[0].endswith("conmon") and detached not in c
        )
        assert "--exit-delay 1" in attached
    finally:
        env.skiff("kill", "attached", expect=None)  # the client then cleans up and exits
        client.wait(30)
    env.skiff("rm", "-f", "-t", "0", detached)
    env.wait_clean()


def test_a_killed_foreground_client_is_cleaned_up_after(env: ContainerEnv) -> None:
    client = env.popen(*RUN, "--rm", env.image, "busybox", "sleep", "3")
    # started, not only created: a client killed between create and start
    # leaves a created container behind, as podman's does
    wait_for(lambda: env.skiff("ps", "-q").stdout.strip() != "", "the running container", 20)
    client.kill()  # no cleanup from the client: conmon's exit command must do it
    client.wait(10)
    env.wait_clean(timeout=30)
    assert env.skiff("ps", "-a", "-q").stdout == ""


def test_a_late_exit_command_does_not_create_the_store_again(env: ContainerEnv) -> None:
    env.skiff(*RUN, "--rm", env.image, "true")
    # conmon waits a second before its exit command (the client cleaned up already)
    root = env.root
    moved = root.with_name(root.name + ".moved")
    root.rename(moved)
    try:
        wait_for(lambda: not env.conmon_pids(), "conmon to run its exit command and exit", 20)
        assert not root.exists()  # the exit command found the container gone: nothing opened
    finally:
        moved.rename(root)
    env.wait_clean()


# --- containers without volumes ----------------------------------------------------------------


def _volume_rows(env: ContainerEnv) -> list[str]:
    from skiff.storage.store import Store

    store = Store.open(env.context())
    try:
        if store.db.read_one("SELECT 1 FROM sqlite_master WHERE name='volume_mounts'") is None:
            return []
        return [r["container_id"] for r in store.db.read("SELECT container_id FROM volume_mounts")]
    finally:
        store.close()


def test_volume_records_only_for_containers_with_volumes(env: ContainerEnv) -> None:
    plain = env.run_detached(*NET, env.image, "busybox", "sleep", "100")
    assert plain not in _volume_rows(env)
    with_volume = env.run_detached(*NET, "-v", "/data", env.image, "busybox", "sleep", "100")
    assert with_volume in _volume_rows(env)
    env.skiff("exec", with_volume, "touch", "/data/x")
    env.skiff("rm", "-f", "-v", "-t", "0", plain, with_volume)
    assert _volume_rows(env) == []
    assert env.skiff("volume", "ls", "-q").stdout == ""
    env.wait_clean()
