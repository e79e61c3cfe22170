"""Real kubectl (Debian's, 1.32) against skiff's CRI streaming server.

kubectl speaks client-go's protocols: exec over WebSocket v5 first (and
over SPDY with ``KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false``), port-forward
over a WebSocket tunnel first, falling back to SPDY when the server has
none (as the kubelet's streaming server, skiff's has none: the API server
does the tunnelling), or SPDY at once with ``KUBECTL_PORT_FORWARD_WEBSOCKETS
=false``. A stand-in API server (skiff.testing.kubeapi) answers kubectl's
reads and relays its upgraded connections to the streaming server, as the
API server and the kubelet do.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import termios
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.cri.streaming.backend import StreamingServer
from skiff.cri.streaming.runtimehooks import runtime_hooks
from skiff.testing import shm_tempdir
from skiff.testing.busybox import INDEX_HTML, BusyboxImage
from skiff.testing.containers import ContainerEnv, wait_for
from skiff.testing.kubeapi import KubeAPIStandIn
from skiff.testing.network import free_port

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
    pytest.mark.timeout(180),
]

SPDY_ONLY = {
    "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false",
    "KUBECTL_PORT_FORWARD_WEBSOCKETS": "false",
}
TRANSPORTS = {"websocket": {}, "spdy": SPDY_ONLY}


class Cluster:
    """One store with running containers, the streaming server, the stand-in
    API server, and kubectl pointed at it."""

    def __init__(self, base: Path, layout: BusyboxImage) -> None:
        self.base = base
        self.env = ContainerEnv(base / "env", layout)
        self.streaming = StreamingServer(runtime_hooks(self.env.context()))
        self.streaming.start()
        self.api = KubeAPIStandIn(self.streaming, {})
        (base / "kubeconfig").write_text("")

    def add_pod(self, name: str, *run_args: str) -> str:
        cid = self.env.run_detached(*run_args)
        self.api.pods[name] = cid
        return cid

    def kubectl_argv(self, *args: str) -> list[str]:
        return ["kubectl", f"--server={self.api.url}", "--request-timeout=30s", *args]

    def environ(self, extra: dict[str, str]) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base),
            "KUBECONFIG": str(self.base / "kubeconfig"),
            **extra,
        }

    def kubectl(
        self, *args: str, extra: dict[str, str], stdin: bytes = b""
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.kubectl_argv(*args),
            input=stdin,
            capture_output=True,
            env=self.environ(extra),
            timeout=60,
            check=False,
        )

    def close(self) -> None:
        self.api.close()
        self.streaming.stop()
        self.env.close()


@pytest.fixture(scope="module")
def cluster(busybox_layout: BusyboxImage) -> Iterator[Cluster]:
    with shm_tempdir("skiff-kubectl-") as base:
        world = Cluster(base, busybox_layout)
        try:
            world.add_pod(
                "shell", "--network", "none", world.env.image, "busybox", "sleep", "100000"
            )
            world.add_pod(
                "web",
                "--network",
                "none",
                world.env.image,
                "busybox",
                "httpd",
                "-f",
                "-p",
                "127.0.0.1:8080",
                "-h",
                "/var/www",
            )
            yield world
        finally:
            world.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kubectl_exec_output_and_exit_code(cluster: Cluster, transport: str) -> None:
    result = cluster.kubectl(
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
        extra=TRANSPORTS[transport],
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == b"out\n"
    assert b"err\n" in result.stderr
    assert b"command terminated with exit code 3" in result.stderr


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kubectl_exec_stdin_to_its_end(cluster: Cluster, transport: str) -> None:
    data = os.urandom(150_000)
    result = cluster.kubectl(
        "exec", "-i", "shell", "--", "cat", extra=TRANSPORTS[transport], stdin=data
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kubectl_exec_tty_gets_the_terminal_size(cluster: Cluster, transport: str) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    try:
        process = subprocess.Popen(
            # after a moment: crun 1.8 sizes an exec's new terminal from its
            # side while the command may already run (~1 in 40 saw 0 rows)
            cluster.kubectl_argv("exec", "-it", "shell", "--", "sh", "-c", "sleep 0.3; stty size"),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=cluster.environ({**TRANSPORTS[transport], "TERM": "dumb"}),
            start_new_session=True,
        )
        os.close(slave)
        output = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: kubectl exited and closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(30) == 0, output
        assert b"33 111" in output
    finally:
        os.close(master)


def test_kubectl_attach_follows_output(cluster: Cluster) -> None:
    cid = cluster.add_pod(
        "ticker",
        "--network",
        "none",
        cluster.env.image,
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.1; done",
    )
    process = subprocess.Popen(
        cluster.kubectl_argv("attach", "ticker"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cluster.environ({}),
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"tick\n"
    finally:
        process.terminate()
        process.wait(30)
    assert cluster.env.state(cid) == "running"  # detaching leaves it running
    cluster.env.skiff("rm", "-f", "-t", "0", cid)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kubectl_port_forward(cluster: Cluster, transport: str) -> None:
    wait_for(lambda: _fetch_inside(cluster, "web"), "httpd to answer inside its container", 20)
    local = free_port()
    del cluster.api.upgrades[:]
    process = subprocess.Popen(
        cluster.kubectl_argv("port-forward", "web", f"{local}:8080"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cluster.environ(TRANSPORTS[transport]),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert re.match(rb"Forwarding from 127\.0\.0\.1:\d+ -> 8080", line), line
        for _ in range(3):  # one SPDY session, a stream pair per connection
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=20) as response:
                assert response.read() == INDEX_HTML
    finally:
        process.terminate()
        process.wait(30)
    upgrades = [u[1].lower() for u in cluster.api.upgrades]
    # over "websocket", kubectl first asks for its tunnel (refused: the API
    # server's job, not the streaming server's), then uses SPDY
    assert upgrades == (["websocket", "spdy/3.1"] if transport == "websocket" else ["spdy/3.1"])


def _fetch_inside(cluster: Cluster, pod: str) -> bool:
    result = cluster.env.skiff(
        "exec",
        cluster.api.pods[pod],
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1:8080/",
        expect=None,
    )
    return result.stdout.encode() == INDEX_HTML
