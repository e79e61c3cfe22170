"""The README's "Tour: images" runs as written.

The code block is taken from README.md and every line is run in order by
bash, as a reader would paste it, from the repository root. Only what
would clash with this machine is moved: the registry port (5000 may be
taken, e.g. by the bench registry; ``DEMO_REGISTRY_PORT`` and the port in
the commands change together) and ``/tmp/skiff-tour`` (into a temp dir).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from skiff.testing.network import free_port

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("skopeo") is None,
    reason="needs docker-registry and skopeo",
)


def tour_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Tour: images", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the tour has no ```sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def run_tour(script: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``script`` run by bash in the repository, as a reader pastes it; the demo
    registry it starts is stopped afterwards, whatever happened."""
    try:
        return subprocess.run(
            ["bash", "-c", script],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        subprocess.run(
            ["scripts/demo-registry", "stop"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )


def test_readme_image_tour_runs_as_written(tmp_shm: Path) -> None:
    port = free_port()
    tour_dir = tmp_shm / "skiff-tour"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_shm),
        "XDG_RUNTIME_DIR": str(tmp_shm),
        "TMPDIR": str(tmp_shm),
        "DEMO_REGISTRY_PORT": str(port),
    }
    lines = tour_lines()
    assert lines[1].startswith("scripts/demo-registry start")
    assert lines[-1].startswith("scripts/demo-registry stop")
    script = "\n".join(
        ["set -euo pipefail"]
        + [
            line.replace("localhost:5000", f"localhost:{port}").replace(
                "/tmp/skiff-tour", str(tour_dir)
            )
            for line in lines
        ]
    )
    result = run_tour(script, env, timeout=180)
    assert result.returncode == 0, f"tour failed:\n{result.stdout}\n{result.stderr}"
    # what the tour shows: the tags, the inspect output, skopeo reading the zstd copy
    assert '"Tags": [\n        "latest"\n    ]' in result.stdout
    # skiff's inspect, then skopeo's of the zstd copy
    assert result.stdout.count(f'"Name": "localhost:{port}/demo/busybox"') == 2
    assert not tour_dir.exists()
    assert not (tmp_shm / f"skiff-demo-registry-{port}").exists()


def test_readme_container_tour_runs_as_written(tmp_shm: Path) -> None:
    """The "Tour: containers, builds and pods" block, as a reader pastes it."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Tour: containers, builds and pods", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the tour has no ```sh block"
    registry_port, web_port = free_port(), free_port()
    store = tmp_shm / "skiff-ctr"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_shm),
        "XDG_RUNTIME_DIR": str(tmp_shm),
        "TMPDIR": str(tmp_shm),
        "DEMO_REGISTRY_PORT": str(registry_port),
    }
    lines = [
        line.replace("localhost:5000", f"localhost:{registry_port}")
        .replace("/tmp/skiff-ctr", str(store))
        .replace("18080", str(web_port))
        for line in block.group(1).splitlines()
        if line.strip()
    ]
    result = run_tour("\n".join(["set -euo pipefail", *lines]), env, timeout=300)
    assert result.returncode == 0, f"tour failed:\n{result.stdout}\n{result.stderr}"
    out = result.stdout
    assert "hello from " in out
    assert out.count("<h1>skiff busybox</h1>") == 3  # curl, exec wget, the pod member's wget
    assert "web Up" in out and f"127.0.0.1:{web_port}->80/tcp" in out
    assert "<h1>Hello from skiff</h1>" in out  # the built image's page
    assert not store.exists()
