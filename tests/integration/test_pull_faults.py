"""``skiff pull`` through the fault proxy: what crosses the wire, and failures mid-pull.

The proxy's request log is the witness: a pull of an image the store has
asks the registry again but fetches no layer; a pull of an image sharing
all but one layer with a stored one fetches only that layer. Faults are
real HTTP misbehaviour in front of a real registry: a layer cut off once
(resumed), cut off or corrupted every time (a one-line error, nothing
stored), 5xx answers (retried), and a layer the pull meant to reuse that
another process deletes before the pull commits (fetched after all).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from skiff.image.copy import CopyOptions, copy_image
from skiff.image.transports import parse_image_name
from skiff.storage.store import Store, StoreOptions
from skiff.testing.busybox import BusyboxImage, build_layered_layout
from skiff.testing.cli import CliEnv, assert_clean_failure
from skiff.testing.faultproxy import FaultProxy
from skiff.testing.registry import RunningRegistry


@pytest.fixture
def proxy(registry: RunningRegistry, fault_proxy_factory: Callable[..., FaultProxy]) -> FaultProxy:
    return fault_proxy_factory(registry)


@pytest.fixture
def cli(tmp_shm: Path, proxy: FaultProxy) -> CliEnv:
    conf = tmp_shm / "registries.conf"
    conf.write_text(
        f'unqualified-search-registries = []\n[[registry]]\nlocation = "{proxy.host}"\n'
        "insecure = true\n"
    )
    return CliEnv(tmp_shm / "cli", registries_conf=conf)


def push(image: BusyboxImage, registry: RunningRegistry, proxy: FaultProxy, repo: str) -> str:
    """Push ``image`` straight to the registry; return its name through the proxy."""
    copy_image(
        parse_image_name(image.reference),
        parse_image_name(f"docker://{registry.host}/{repo}"),
        CopyOptions(),
        registry.context,
        registry.context,
    )
    return f"{proxy.host}/{repo}"


def blob_gets(proxy: FaultProxy) -> list[str]:
    """Digests of the blobs GET-fetched through the proxy (each request once)."""
    return [
        r.target.rsplit("/", 1)[1]
        for r in proxy.requests
        if r.method == "GET" and "/blobs/sha256:" in r.target
    ]


def assert_nothing_stored(cli: CliEnv) -> None:
    store = Store(StoreOptions(root=cli.root, run_root=cli.runroot))
    try:
        assert store.images.all() == []
        assert store.layers.all() == []
        assert store.db.read("SELECT path FROM staging") == []
        assert list((cli.root / "staging").iterdir()) == []
    finally:
        store.close()


@pytest.fixture
def three_layers(tmp_shm: Path) -> BusyboxImage:
    return build_layered_layout(
        tmp_shm / "three", [{"a.bin": b"a" * 300_000}, {"b.txt": b"second\n"}]
    )


def test_pulling_a_present_image_asks_the_registry_but_fetches_no_layer(
    cli: CliEnv,
    registry: RunningRegistry,
    proxy: FaultProxy,
    three_layers: BusyboxImage,
    unique_repo: str,
) -> None:
    ref = push(three_layers, registry, proxy, f"{unique_repo}:v1")
    cli.skiff("pull", "-q", ref)
    assert sorted(blob_gets(proxy)) == sorted(
        str(d) for d in (three_layers.config_digest, *three_layers.layer_digests)
    )
    proxy.clear()
    result = cli.skiff("pull", ref)
    assert result.stdout == three_layers.config_digest.hex + "\n"
    manifests = [r for r in proxy.requests if "/manifests/" in r.target]
    assert manifests and all(r.method == "GET" and r.status == 200 for r in manifests)
    assert blob_gets(proxy) == [str(three_layers.config_digest)]  # the config, no layer


def test_an_image_sharing_all_but_one_layer_fetches_only_that_layer(
    cli: CliEnv,
    tmp_shm: Path,
    registry: RunningRegistry,
    proxy: FaultProxy,
    three_layers: BusyboxImage,
    unique_repo: str,
) -> None:
    sibling = build_layered_layout(
        tmp_shm / "sibling", [{"a.bin": b"a" * 300_000}, {"c.txt": b"another top\n"}]
    )
    assert sibling.layer_digests[:2] == three_layers.layer_digests[:2]
    first = push(three_layers, registry, proxy, f"{unique_repo}:one")
    second = push(sibling, registry, proxy, f"{unique_repo}:two")
    cli.skiff("pull", "-q", first)
    proxy.clear()
    assert cli.skiff("pull", "-q", second).stdout.strip() == sibling.config_digest.hex
    assert sorted(blob_gets(proxy)) == sorted(
        [str(sibling.config_digest), str(sibling.layer_digests[2])]
    )


def test_a_layer_cut_off_once_is_resumed(
    cli: CliEnv,
    registry: RunningRegistry,
    proxy: FaultProxy,
    three_layers: BusyboxImage,
    unique_repo: str,
) -> None:
    ref = push(three_layers, registry, proxy, f"{unique_repo}:v1")
    big = three_layers.layer_digests[0]
    cut = proxy.truncate(f"/blobs/{big}", after=100_000)
    result = cli.skiff("pull", "-q", ref)
    assert result.stdout.strip() == three_layers.config_digest.hex
    assert cut.hits == 1
    resumed = [r for r in proxy.requests if str(big) in r.target and "range" in r.headers]
    assert resumed and resumed[0].status == 206


@pytest.mark.parametrize("fault", ["truncate", "corrupt"])
def test_a_layer_damaged_every_time_fails_cleanly(
    cli: CliEnv,
    registry: RunningRegistry,
    proxy: FaultProxy,
    three_layers: BusyboxImage,
    unique_repo: str,
    fault: str,
) -> None:
    ref = push(three_layers, registry, proxy, f"{unique_repo}:v1")
    big = three_layers.layer_digests[0]
    if fault == "truncate":
        proxy.truncate(f"/blobs/{big}", after=100_000, times=None)
    else:
        proxy.corrupt(f"/blobs/{big}", offsets=(5000,), times=None)
    line = cli.fails("pull", "-q", "--retry", "0", ref)
    assert str(big) in line
    assert_nothing_stored(cli)


def test_server_errors_are_retried(
    cli: CliEnv,
    registry: RunningRegistry,
    proxy: FaultProxy,
    three_layers: BusyboxImage,
    unique_repo: str,
) -> None:
    ref = push(three_layers, registry, proxy, f"{unique_repo}:v1")
    failing = proxy.fail(r"/blobs/sha256:", 503, times=2, method="GET")
    result = cli.skiff("pull", "--retry-delay", "10ms", ref)
    assert result.stdout.strip() == three_layers.config_digest.hex
    assert failing.hits == 2
    proxy.clear()
    failing = proxy.fail(r"/manifests/", 500, times=None, method="GET")
    result = cli.skiff("pull", "-q", "--retry", "2", "--retry-delay", "10ms", ref, expect=125)
    *warnings, line = result.stderr.splitlines()
    assert len(warnings) == 2 and all("retrying" in w for w in warnings)
    assert line.startswith(f"Error: initializing source docker://{ref}")
    assert failing.hits == 3


def test_a_reused_layer_removed_before_commit_is_fetched_after_all(
    cli: CliEnv,
    tmp_shm: Path,
    registry: RunningRegistry,
    proxy: FaultProxy,
    three_layers: BusyboxImage,
    unique_repo: str,
) -> None:
    base = build_layered_layout(tmp_shm / "base", [{"a.bin": b"a" * 300_000}])
    assert base.layer_digests == three_layers.layer_digests[:2]
    base_ref = push(base, registry, proxy, f"{unique_repo}:base")
    ref = push(three_layers, registry, proxy, f"{unique_repo}:v1")
    cli.skiff("pull", "-q", base_ref)
    proxy.clear()
    # the new top layer arrives late: meanwhile the base image goes, with
    # the two layers the pull decided to reuse
    top = three_layers.layer_digests[2]
    slow = proxy.delay(f"/blobs/{top}", 2.0, method="GET")
    pull = subprocess.Popen(
        cli.skiff_argv("pull", "-q", ref),
        env=cli.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while slow.hits == 0 and time.monotonic() < deadline and pull.poll() is None:
        time.sleep(0.01)
    assert slow.hits == 1
    store = Store(StoreOptions(root=cli.root, run_root=cli.runroot))
    try:
        store.delete_image(base.config_digest.hex)
    finally:
        store.close()
    out, err = pull.communicate(timeout=60)
    assert pull.returncode == 0, err.decode()
    assert out.decode().strip() == three_layers.config_digest.hex
    # the second attempt fetched the layers that had been removed
    fetched = blob_gets(proxy)
    for digest in three_layers.layer_digests[:2]:
        assert str(digest) in fetched
    store = Store(StoreOptions(root=cli.root, run_root=cli.runroot))
    try:
        assert [i.id for i in store.images.all()] == [three_layers.config_digest.hex]
        assert len(store.layers.all()) == 3
    finally:
        store.close()


def test_unreachable_registry_is_one_line(cli: CliEnv, unique_repo: str) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    line = cli.fails(
        "pull", "-q", "--retry", "0", "--tls-verify=false", f"127.0.0.1:{port}/{unique_repo}"
    )
    assert line.startswith(
        f"Error: initializing source docker://127.0.0.1:{port}/{unique_repo}:latest"
    )
    result = cli.skiff("pull", "-q", "--retry", "0", f"127.0.0.1:{port}/x", expect=125)
    assert_clean_failure(result)
