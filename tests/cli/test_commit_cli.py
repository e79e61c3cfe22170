"""``skiff commit`` end to end: the container's changes become a normal store
image (it runs, its layers and history are podman's shape), ``--change``,
``--author``/``--message``, ``--format docker``, ``--squash``, a running
container paused for the commit, and the errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from skiff.testing.containers import ContainerEnv

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
]


@pytest.fixture
def changed(env: ContainerEnv) -> str:
    """A stopped container that added, changed and deleted files."""
    env.skiff(
        "run",
        "--name",
        "changed",
        "--network",
        "none",
        "-e",
        "FROMRUN=1",
        env.image,
        "sh",
        "-c",
        "echo hi > /newfile; mkdir -p /newdir/sub; echo x > /newdir/sub/x; "
        "echo more >> /etc/group; rm /bin/arch",
    )
    return "changed"


def inspect(env: ContainerEnv, image: str) -> dict[str, Any]:
    data = env.skiff("image", "inspect", image).json()
    return dict(data[0])


def base_id(env: ContainerEnv) -> str:
    return str(inspect(env, env.image)["Id"])


def test_commit_makes_a_runnable_image_of_the_changes(env: ContainerEnv, changed: str) -> None:
    image_id = env.skiff("commit", changed, "committed").stdout.strip().splitlines()[-1]
    info = inspect(env, "localhost/committed:latest")
    assert info["Id"] == image_id
    base = inspect(env, env.image)
    assert info["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
    assert len(info["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1
    config = info["Config"]
    assert config["Cmd"][:2] == ["sh", "-c"]
    assert "FROMRUN=1" in config["Env"]
    assert not [e for e in config["Env"] if e.startswith(("HOSTNAME=", "HOME="))]
    history = info["History"]
    assert len(history) == len(base["History"]) + 1
    assert history[-1]["comment"] == f"FROM {env.image}"
    out = env.skiff(
        "run",
        "--rm",
        "--network",
        "none",
        "localhost/committed",
        "sh",
        "-c",
        "cat /newfile /newdir/sub/x; tail -n1 /etc/group; ls /bin/arch || echo gone",
    ).stdout
    assert out.splitlines() == ["hi", "x", "more", "gone"]


def test_changes_author_and_message(env: ContainerEnv, changed: str) -> None:
    env.skiff(
        "commit",
        "-q",
        "--change",
        'CMD ["/bin/ls", "/newdir"]',
        "--change",
        "ENV A=1",
        "-c",
        "ENV FROMRUN=2",
        "-c",
        "WORKDIR /newdir",
        "-c",
        "WORKDIR sub",
        "-c",
        "LABEL team=ops",
        "-c",
        "EXPOSE 8080/udp",
        "-c",
        "USER www",
        "-c",
        "STOPSIGNAL SIGINT",
        "-c",
        "VOLUME /data",
        "-a",
        "Jane <jane@example.com>",
        "-m",
        "a message",
        changed,
        "changes:v1",
    )
    info = inspect(env, "localhost/changes:v1")
    config = info["Config"]
    assert config["Cmd"] == ["/bin/ls", "/newdir"]
    assert "A=1" in config["Env"] and "FROMRUN=2" in config["Env"]
    assert "FROMRUN=1" not in config["Env"]
    assert config["WorkingDir"] == "/newdir/sub"
    assert config["Labels"]["team"] == "ops"
    assert "8080/udp" in config["ExposedPorts"]
    assert config["User"] == "www"
    assert config["StopSignal"] == "2"
    assert "/data" in config["Volumes"]
    assert info["Author"] == "Jane <jane@example.com>"
    assert info["History"][-1]["comment"] == "a message"
    assert info["History"][-1]["author"] == "Jane <jane@example.com>"
    out = env.skiff("run", "--rm", "--network", "none", "localhost/changes:v1").stdout
    assert out.split() == ["sub"]
    out = env.skiff("run", "--rm", "--network", "none", "localhost/changes:v1", "id", "-u").stdout
    assert out.strip() == "1000"


def test_docker_format_and_iidfile(env: ContainerEnv, changed: str, tmp_shm: Path) -> None:
    iidfile = tmp_shm / "iid"
    image_id = env.skiff(
        "commit", "-q", "-f", "docker", "-m", "docker msg", "--iidfile", iidfile, changed, "d:1"
    ).stdout.strip()
    assert iidfile.read_text() == f"sha256:{image_id}"
    info = inspect(env, "localhost/d:1")
    assert info["ManifestType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert info["Comment"] == "docker msg"


def test_squash_makes_one_layer(env: ContainerEnv, changed: str) -> None:
    env.skiff("commit", "-q", "--squash", changed, "squashed")
    info = inspect(env, "localhost/squashed")
    assert len(info["RootFS"]["Layers"]) == 1
    out = env.skiff(
        "run",
        "--rm",
        "--network",
        "none",
        "localhost/squashed",
        "sh",
        "-c",
        "cat /newfile; ls /bin/arch || echo gone",
    ).stdout
    assert out.splitlines() == ["hi", "gone"]


def test_running_container_is_committed_and_keeps_running(env: ContainerEnv) -> None:
    env.run_detached(
        "--name",
        "busy",
        "--network",
        "none",
        env.image,
        "sh",
        "-c",
        "echo before > /state; touch /tmp/ready; while true; do sleep 0.1; done",
    )
    ready = env.rootfs("busy") / "tmp" / "ready"
    from skiff.testing.containers import wait_for

    wait_for(ready.exists, "the container to write its state")
    pid = env.pid("busy")
    image_id = env.skiff("commit", "busy", "live-commit").stdout.strip()
    assert len(image_id) == 64
    assert env.state("busy") == "running"
    assert env.pid("busy") == pid
    freezer = Path(f"/proc/{pid}/status").read_text()
    assert "State:\tT" not in freezer  # resumed
    out = env.skiff("run", "--rm", "--network", "none", "localhost/live-commit", "cat", "/state")
    assert out.stdout == "before\n"
    env.skiff("commit", "-q", "--pause=false", "busy", "live-nopause")
    assert env.state("busy") == "running"


def test_errors(env: ContainerEnv, changed: str) -> None:
    assert "no such container" in env.fails("commit", "ghost", "x")
    assert "invalid change" in env.fails("commit", "-c", "BOGUS x", changed, "x")
    assert "invalid choice" in env.fails("commit", "-f", "v1", changed, "x")
    assert "digest" in env.fails("commit", changed, "x@sha256:" + "0" * 64)
    images = env.skiff("image", "inspect", "localhost/x", expect=None)
    assert images.returncode != 0  # nothing was written by the failures
