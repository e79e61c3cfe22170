"""``skiff run`` with networks and volumes, end to end: a web server reached
through a port published on 127.0.0.1, two containers on a user network
finding each other by name (aardvark-dns), and a named volume's data
outliving the containers that wrote it.

Every network here is the test's own (its subnet and bridge), so tests
never share the default bridge with other stores on the host; only
127.0.0.1 is used from the host side.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from skiff.testing.busybox import INDEX_HTML, BusyboxImage
from skiff.testing.containers import ContainerEnv, wait_for, wait_output
from skiff.testing.network import fetch, free_port

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
]


def test_web_server_through_a_published_port(env: ContainerEnv) -> None:
    net = env.network()
    port = free_port()
    env.run_detached(
        "--name",
        "web",
        "--network",
        net,
        "-p",
        f"127.0.0.1:{port}:80",
        env.image,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/var/www",
    )
    url = f"http://127.0.0.1:{port}/"
    wait_for(lambda: fetch(url) == INDEX_HTML, "the published port to serve the page", 20)
    row = env.container("web")
    assert row is not None
    ps = env.skiff("ps", "--format", "{{.Ports}}").stdout.strip()
    assert ps == f"127.0.0.1:{port}->80/tcp"
    env.skiff("rm", "-f", "-t", "0", "web")
    assert fetch(url) is None  # the port is gone with the container
    env.wait_clean()


def test_two_stores_on_the_default_bridge_get_different_addresses(
    env: ContainerEnv, tmp_shm: Path, busybox_layout: BusyboxImage
) -> None:
    """Each store allocates addresses, but skiff0 is the host's: leases keep them apart."""
    other = ContainerEnv(tmp_shm / "other", busybox_layout)
    try:
        urls = []
        for store in (env, other):
            port = free_port()
            store.run_detached(
                "--name", "web", "-p", f"127.0.0.1:{port}:80",
                store.image, "httpd", "-f", "-p", "80", "-h", "/var/www",
            )  # fmt: skip
            urls.append(f"http://127.0.0.1:{port}/")
        addresses = [
            s.skiff("inspect", "--format", "{{.NetworkSettings.IPAddress}}", "web").stdout.strip()
            for s in (env, other)
        ]
        assert addresses[0] != addresses[1]
        for url in urls:
            wait_for(lambda url=url: fetch(url) == INDEX_HTML, f"{url} to serve the page", 20)
    finally:
        other.skiff("rm", "-f", "-t", "0", "web", expect=None)
        other.close()
    env.skiff("rm", "-f", "-t", "0", "web")
    env.wait_clean()


def test_two_containers_resolve_each_other_by_name(env: ContainerEnv) -> None:
    net = env.network()
    # each serves a page naming itself, then fetches the other's by its name
    script = (
        "mkdir -p /srv && echo I-am-{me} > /srv/index.html && httpd -p 80 -h /srv && "
        "until wget -q -O /tmp/other http://{other}/; do sleep 0.2; done; "
        "echo reached-$(cat /tmp/other); exec busybox sleep 1000"
    )
    for me, other in (("alpha", "beta"), ("beta", "alpha")):
        env.run_detached(
            "--name",
            me,
            "--network",
            net,
            env.image,
            "sh",
            "-c",
            script.format(me=me, other=other),
        )
    wait_output(lambda: env.skiff("logs", "alpha"), "reached-I-am-beta", timeout=30)
    wait_output(lambda: env.skiff("logs", "beta"), "reached-I-am-alpha", timeout=30)
    # and a third, short-lived one resolves both through aardvark-dns
    out = env.skiff(
        "run",
        "--rm",
        "--network",
        net,
        env.image,
        "sh",
        "-c",
        "nslookup alpha && nslookup beta",
    ).stdout
    assert out.count("Address") >= 2
    env.skiff("rm", "-f", "-t", "0", "alpha", "beta")
    env.wait_clean()


def test_named_volume_survives_the_containers(env: ContainerEnv) -> None:
    if env.skiff("volume", "--help", expect=None).returncode != 0:
        pytest.skip("skiff volume is not available")
    env.skiff(
        "run",
        "--name",
        "writer",
        "--network",
        "none",
        "-v",
        "keep:/data",
        env.image,
        "sh",
        "-c",
        "echo persisted > /data/file; mkdir /data/dir",
    )
    env.skiff("rm", "writer")
    assert "keep" in env.skiff("volume", "ls", "-q").stdout.split()
    out = env.skiff(
        "run", "--rm", "--network", "none", "-v", "keep:/mnt", env.image, "cat", "/mnt/file"
    )
    assert out.stdout == "persisted\n"
    # a second container mounting it at the same time sees the same data
    env.run_detached(
        "--name",
        "holder",
        "--network",
        "none",
        "-v",
        "keep:/data",
        env.image,
        "busybox",
        "sleep",
        "1000",
    )
    env.skiff(
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "keep:/data",
        env.image,
        "sh",
        "-c",
        "echo second >> /data/file",
    )
    assert (env.rootfs("holder") / "data" / "file").read_text() == "persisted\nsecond\n"
    env.skiff("rm", "-f", "-t", "0", "holder")
    env.skiff("volume", "rm", "keep")
    env.wait_clean()
