"""``skiff info``'s runtime part end to end: the OCI runtime chosen and why,
conmon, cgroups, the network backend, and the containers counted by state,
under podman's key names (checked against ``podman info`` on this host)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from skiff.runtime.specgen.host import detect_cgroup_layout
from skiff.testing.containers import ContainerEnv

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
]


def info(env: ContainerEnv) -> dict[str, Any]:
    data = env.skiff("info", "--format", "json").json()
    assert isinstance(data, dict)
    return data


def test_runtime_part_of_info(env: ContainerEnv) -> None:
    host = info(env)["host"]
    runtime = host["ociRuntime"]
    assert runtime["name"] in ("runc", "crun")
    assert Path(runtime["path"]).is_file()
    assert runtime["version"].startswith(f"{runtime['name']} version ")
    assert runtime["reason"]
    if detect_cgroup_layout().is_hybrid and runtime["name"] == "runc":
        assert "hybrid" in runtime["reason"]  # why crun was passed over
    assert Path(host["conmon"]["path"]).is_file()
    assert host["conmon"]["version"].startswith("conmon version ")
    assert host["cgroupManager"] == "cgroupfs"
    assert host["cgroupVersion"] == f"v{detect_cgroup_layout().version}"
    assert "memory" in host["cgroupControllers"] or host["cgroupVersion"] == "v2"
    assert host["networkBackend"] == "netavark"
    backend = host["networkBackendInfo"]
    assert Path(backend["path"]).name == "netavark"
    assert Path(backend["dns"]["path"]).name == "aardvark-dns"


def test_containers_are_counted_by_state(env: ContainerEnv) -> None:
    assert info(env)["store"]["containerStore"] == {
        "number": 0,
        "paused": 0,
        "running": 0,
        "stopped": 0,
    }
    env.run_detached("--name", "r1", "--network", "none", env.image, "sleep", "1000")
    env.run_detached("--name", "p1", "--network", "none", env.image, "sleep", "1000")
    env.skiff("pause", "p1")
    env.skiff("run", "--name", "s1", "--network", "none", env.image, "true")
    counts = info(env)["store"]["containerStore"]
    assert counts == {"number": 3, "paused": 1, "running": 1, "stopped": 1}
    # a container that died while nobody watched is counted as stopped
    os.kill(env.pid("r1"), 9)
    env.wait_state("r1", "exited")
    assert info(env)["store"]["containerStore"]["stopped"] == 2
    env.skiff("unpause", "p1")


def test_yaml_and_templates(env: ContainerEnv) -> None:
    data = yaml.safe_load(env.skiff("info").stdout)
    assert data["host"]["ociRuntime"]["name"] == info(env)["host"]["ociRuntime"]["name"]
    out = env.skiff(
        "info",
        "--format",
        "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Store.ContainerStore.Number}}",
    ).stdout
    name, manager, number = out.split()
    assert (manager, number) == ("cgroupfs", "0")
    assert name == data["host"]["ociRuntime"]["name"]


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_keys_and_types_are_podmans(env: ContainerEnv) -> None:
    ours = info(env)
    podman = json.loads(
        subprocess.run(
            [
                "podman",
                "--root",
                str(env.base / "podman" / "root"),
                "--runroot",
                str(env.base / "podman" / "run"),
                "info",
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            env=env.environ(),
            check=True,
            timeout=120,
        ).stdout
    )
    for key in ("cgroupManager", "cgroupVersion", "networkBackend", "logDriver"):
        assert type(ours["host"][key]) is type(podman["host"][key]), key
    for part, keys in (
        ("ociRuntime", ("name", "package", "path", "version")),
        ("conmon", ("package", "path", "version")),
    ):
        assert set(keys) <= set(ours["host"][part]), part
        assert set(keys) <= set(podman["host"][part]), part
        assert ours["host"][part]["path"] == podman["host"][part]["path"] or part == "ociRuntime"
    assert ours["host"]["conmon"]["package"] == podman["host"]["conmon"]["package"]
    assert set(ours["store"]["containerStore"]) == set(podman["store"]["containerStore"])
