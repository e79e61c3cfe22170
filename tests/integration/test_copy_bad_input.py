"""Bad input end to end: ``skiff image copy`` must fail cleanly and write nothing.

Every case runs the real CLI (``skiff.testing.cli.CliEnv``) against a real
registry — its answers bent by the fault proxy, or its storage corrupted —
or against a damaged local layout, and checks the three promises: exit
code 125, exactly one ``Error: ...`` line on stderr (no traceback), and a
destination exactly as it was before (no layout directory, no tag).
The registry-client details of each failure are tested in
test_docker_transport.py; here it is the user's view.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from skiff.oci import mediatypes as mt
from skiff.oci.manifest import MAX_MANIFEST_SIZE
from skiff.testing.busybox import BusyboxImage, build_layered_layout
from skiff.testing.cli import CliEnv
from skiff.testing.faultproxy import FaultProxy
from skiff.testing.registry import RunningRegistry, Variant

NO_RETRY = ("--retry-times", "0")


@pytest.fixture
def cli(tmp_shm: Path, registry: RunningRegistry) -> CliEnv:
    return CliEnv(tmp_shm / "cli", registries_conf=registry.registries_conf)


@pytest.fixture
def source_repo(
    cli: CliEnv, registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> str:
    """The busybox image pushed to the plain registry; returns the repository."""
    cli.skiff(
        "image", "copy", busybox_layout.reference, f"docker://{registry.host}/{unique_repo}:v1"
    )
    return unique_repo


@pytest.fixture
def proxy(registry: RunningRegistry, fault_proxy_factory: Callable[..., FaultProxy]) -> FaultProxy:
    return fault_proxy_factory(registry)


class Destinations:
    """An ``oci:`` layout that does not exist yet and one that holds another
    image (none of busybox's blobs, so nothing can be skipped as already
    there): after a failed copy the first must still not exist and the
    second must be byte for byte what it was."""

    def __init__(self, base: Path) -> None:
        self.fresh = base / "fresh"
        self.existing = base / "existing"
        build_layered_layout(self.existing, 1, tag="old", with_busybox=False)
        self._before = self._snapshot()

    def _snapshot(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.existing)): p.read_bytes()
            for p in self.existing.rglob("*")
            if p.is_file()
        }

    def assert_untouched(self) -> None:
        assert not self.fresh.exists(), sorted(self.fresh.rglob("*"))
        assert self._snapshot() == self._before


@pytest.fixture
def dests(tmp_shm: Path) -> Destinations:
    return Destinations(tmp_shm / "dest")


def copy_fails(cli: CliEnv, dests: Destinations, source: str, *flags: str) -> str:
    """Copy ``source`` to both destinations; both must fail the same clean way."""
    line = cli.fails("image", "copy", *NO_RETRY, *flags, source, f"oci:{dests.fresh}:new")
    again = cli.fails("image", "copy", *NO_RETRY, *flags, source, f"oci:{dests.existing}:new")
    assert again == line
    dests.assert_untouched()
    return line


def proxied(proxy: FaultProxy, repo: str, reference: str = ":v1") -> str:
    return f"docker://{proxy.host}/{repo}{reference}"


PLAIN = ("--src-tls-verify=false",)


# --- manifests -------------------------------------------------------------------------


def test_manifest_by_digest_is_verified_before_parsing(
    cli: CliEnv,
    dests: Destinations,
    proxy: FaultProxy,
    source_repo: str,
    busybox_layout: BusyboxImage,
) -> None:
    digest = busybox_layout.manifest_digest
    # not even JSON: a parser would complain about syntax, the digest check comes first
    proxy.fail(f"/manifests/{digest}", 200, times=None, body=b"\x00garbage\xff" * 10,
               headers={"Content-Type": mt.OCI_MANIFEST})  # fmt: skip
    line = copy_fails(cli, dests, proxied(proxy, source_repo, f"@{digest}"), *PLAIN)
    assert "digest" in line and "mismatch" in line
    assert "JSON" not in line


def test_corrupt_manifest_in_a_layout_is_caught(
    cli: CliEnv, dests: Destinations, tmp_shm: Path, busybox_layout: BusyboxImage
) -> None:
    layout = tmp_shm / "broken"
    shutil.copytree(busybox_layout.layout, layout)
    manifest = layout / "blobs" / "sha256" / busybox_layout.manifest_digest.hex
    manifest.write_bytes(manifest.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion":2'))
    line = copy_fails(cli, dests, f"oci:{layout}:latest")
    assert "mismatch" in line and str(busybox_layout.manifest_digest) in line


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manif', "not valid JSON"),
        (b'{"schemaVersion": 2, "config": {"digest": "sha256:abc"}, "layers": []}', "digest"),
        (
            b'{"schemaVersion": 2, "mediaType": "%s", "layers": []}' % mt.OCI_MANIFEST.encode(),
            "invalid OCI manifest",
        ),
        (b"[1, 2, 3]", "not a JSON object"),
    ],
    ids=["truncated", "bad-digest", "no-config", "not-an-object"],
)
def test_malformed_manifest(
    cli: CliEnv,
    dests: Destinations,
    proxy: FaultProxy,
    source_repo: str,
    body: bytes,
    expected: str,
) -> None:
    proxy.fail(
        "/manifests/v1", 200, times=None, body=body, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    line = copy_fails(cli, dests, proxied(proxy, source_repo), *PLAIN)
    assert expected in line


def test_manifest_cut_off_mid_body(
    cli: CliEnv, dests: Destinations, proxy: FaultProxy, source_repo: str
) -> None:
    proxy.truncate("/manifests/v1", after=40, times=None)
    line = copy_fails(cli, dests, proxied(proxy, source_repo), *PLAIN)
    assert source_repo in line or proxy.host in line


def test_unknown_media_type(
    cli: CliEnv, dests: Destinations, proxy: FaultProxy, source_repo: str
) -> None:
    kind = "application/vnd.example.unknown.v1+json"
    body = json.dumps({"schemaVersion": 2, "mediaType": kind, "layers": []}).encode()
    proxy.fail("/manifests/v1", 200, times=None, body=body, headers={"Content-Type": kind})
    line = copy_fails(cli, dests, proxied(proxy, source_repo), *PLAIN)
    assert "unsupported manifest media type" in line and kind in line


def test_manifest_above_4_mib(
    cli: CliEnv, dests: Destinations, proxy: FaultProxy, source_repo: str
) -> None:
    padding = b" " * (MAX_MANIFEST_SIZE + 1)
    body = b'{"schemaVersion": 2,' + padding + b'"layers": []}'
    proxy.fail(
        "/manifests/v1", 200, times=None, body=body, headers={"Content-Type": mt.OCI_MANIFEST}
    )
    line = copy_fails(cli, dests, proxied(proxy, source_repo), *PLAIN)
    assert str(MAX_MANIFEST_SIZE) in line or "4 MiB" in line or "too large" in line


# --- blobs -----------------------------------------------------------------------------


def test_registry_serving_wrong_blob_bytes(
    cli: CliEnv,
    dests: Destinations,
    proxy: FaultProxy,
    source_repo: str,
    busybox_layout: BusyboxImage,
) -> None:
    layer = busybox_layout.layer_digests[0]
    proxy.corrupt(f"/blobs/{layer}", offsets=(0, 5000), times=None)
    line = copy_fails(cli, dests, proxied(proxy, source_repo), *PLAIN)
    assert "digest mismatch" in line and str(layer) in line


def test_corrupt_registry_storage_pushes_nothing(
    cli: CliEnv,
    tmp_shm: Path,
    registry_factory: Callable[..., RunningRegistry],
    busybox_layout: BusyboxImage,
) -> None:
    source = registry_factory(Variant.PLAIN)
    target = registry_factory(Variant.PLAIN)
    src = f"docker://{source.host}/corrupt/image:v1"
    cli.skiff("image", "copy", "--dest-tls-verify=false", busybox_layout.reference, src)
    config = source.blob_path(busybox_layout.config_digest)
    config.write_bytes(config.read_bytes().replace(b"amd64", b"arm64"))  # same length
    line = cli.fails(
        "image", "copy", *NO_RETRY, "--src-tls-verify=false", "--dest-tls-verify=false",
        src, f"docker://{target.host}/copy/image:v1",
    )  # fmt: skip
    assert "mismatch" in line and str(busybox_layout.config_digest) in line
    assert not (target.repository_dir("copy/image") / "_manifests").exists()
    cli.fails("image", "inspect", "--tls-verify=false", f"docker://{target.host}/copy/image:v1")


def test_layout_with_a_missing_blob(
    cli: CliEnv, dests: Destinations, tmp_shm: Path, busybox_layout: BusyboxImage
) -> None:
    layout = tmp_shm / "incomplete"
    shutil.copytree(busybox_layout.layout, layout)
    layer = busybox_layout.layer_digests[0]
    (layout / "blobs" / "sha256" / layer.hex).unlink()
    line = copy_fails(cli, dests, f"oci:{layout}:latest")
    assert str(layer) in line and "missing" in line


def test_layout_with_a_corrupt_layer(
    cli: CliEnv, dests: Destinations, tmp_shm: Path, busybox_layout: BusyboxImage
) -> None:
    layout = tmp_shm / "corrupt"
    shutil.copytree(busybox_layout.layout, layout)
    layer = busybox_layout.layer_digests[0]
    path = layout / "blobs" / "sha256" / layer.hex
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    line = copy_fails(cli, dests, f"oci:{layout}:latest")
    assert "digest mismatch" in line and str(layer) in line


# --- registry answers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "log in with `skiff login"),
        (403, "denied"),
        (404, "check the repository name and tag"),
        (429, "rate-limiting"),
        (500, "500"),
        (503, "503"),
    ],
)
def test_registry_error_status_on_the_manifest(
    cli: CliEnv,
    dests: Destinations,
    proxy: FaultProxy,
    source_repo: str,
    status: int,
    expected: str,
) -> None:
    proxy.fail("/manifests/v1", status, times=None)
    line = copy_fails(cli, dests, proxied(proxy, source_repo), *PLAIN)
    assert expected in line
    assert f"reading manifest v1 in {proxy.host}/{source_repo}" in line


@pytest.mark.parametrize("status", [403, 404, 500])
def test_registry_error_status_on_a_blob(
    cli: CliEnv,
    dests: Destinations,
    proxy: FaultProxy,
    source_repo: str,
    busybox_layout: BusyboxImage,
    status: int,
) -> None:
    proxy.fail(f"/blobs/{busybox_layout.layer_digests[0]}", status, times=None, method="GET")
    line = copy_fails(cli, dests, proxied(proxy, source_repo), *PLAIN)
    assert str(busybox_layout.layer_digests[0])[:19] in line or str(status) in line


def test_wrong_credentials(
    cli: CliEnv, dests: Destinations, auth_registry: RunningRegistry, busybox_layout: BusyboxImage
) -> None:
    assert auth_registry.credentials is not None and auth_registry.cert_dir is not None
    ref = f"docker://{auth_registry.host}/creds/busybox:v1"
    good = f"--dest-creds={auth_registry.credentials.creds}"
    cli.skiff("image", "copy", good, "--dest-cert-dir", auth_registry.cert_dir,
              busybox_layout.reference, ref)  # fmt: skip
    flags = ("--src-cert-dir", str(auth_registry.cert_dir))
    line = copy_fails(
        cli, dests, ref, *flags, f"--src-creds={auth_registry.credentials.username}:wrong"
    )
    assert "authentication" in line.lower() or "unauthorized" in line.lower()
    line = copy_fails(cli, dests, ref, *flags, "--src-no-creds")
    assert "authentication" in line.lower() or "unauthorized" in line.lower()


def test_wrong_credentials_for_a_token_registry_push(
    cli: CliEnv, token_registry: RunningRegistry, busybox_layout: BusyboxImage
) -> None:
    assert token_registry.readonly_credentials is not None and token_registry.cert_dir is not None
    ref = f"docker://{token_registry.host}/readonly/busybox:v1"
    line = cli.fails(
        "image", "copy", *NO_RETRY, f"--dest-creds={token_registry.readonly_credentials.creds}",
        "--dest-cert-dir", token_registry.cert_dir, busybox_layout.reference, ref,
    )  # fmt: skip
    assert "denied" in line.lower() or "authentication" in line.lower()
    assert not token_registry.repository_dir("readonly/busybox").exists()


def test_tls_failure_without_tls_verify_false(
    cli: CliEnv, dests: Destinations, tls_registry: RunningRegistry, busybox_layout: BusyboxImage
) -> None:
    assert tls_registry.cert_dir is not None
    ref = f"docker://{tls_registry.host}/tls/busybox:v1"
    cli.skiff(
        "image", "copy", "--dest-cert-dir", tls_registry.cert_dir, busybox_layout.reference, ref
    )
    line = copy_fails(cli, dests, ref)  # the test CA is in no trust store skiff reads
    assert "certificate" in line.lower() and "--tls-verify=false" in line
    # told not to verify, the same copy works
    cli.skiff("image", "copy", "--src-tls-verify=false", ref, f"oci:{dests.fresh}:ok")


def test_connection_refused(cli: CliEnv, dests: Destinations, tmp_shm: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    line = copy_fails(cli, dests, f"docker://127.0.0.1:{port}/a/b:c", *PLAIN)
    assert f"127.0.0.1:{port}" in line


# --- references ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "docker://127.0.0.1:5000/UPPER/case:v1",
        "docker://127.0.0.1:5000/a/b:tag with space",
        "docker://127.0.0.1:5000/a/b:" + "t" * 129,
        "docker://127.0.0.1:5000/a//b:v1",
        "docker://127.0.0.1:5000/a/b@sha256:xyz",
        "docker://127.0.0.1:5000/a/b:v1\n",
        "oci:",
    ],
)
def test_invalid_references(
    cli: CliEnv, dests: Destinations, busybox_layout: BusyboxImage, reference: str
) -> None:
    line = copy_fails(cli, dests, reference)
    assert "invalid" in line.lower() or "reference" in line.lower()
    # as a destination too: refused before anything is read or written
    line = cli.fails("image", "copy", busybox_layout.reference, reference)
    assert "invalid" in line.lower() or "reference" in line.lower()
