"""The docker:// transport against real docker-registry servers on 127.0.0.1.

Every test talks to a real Distribution registry (the shared fixtures in
tests/conftest.py), sometimes through the fault proxy, and checks results
with the registry itself or with skopeo as the peer.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import urllib3

from skiff.config import SystemContext
from skiff.errors import (
    AuthenticationError,
    BlobUnknown,
    DigestMismatch,
    ImageNotFound,
    ManifestError,
    RegistryError,
    RegistryUnavailable,
    TLSError,
    TooManyRequests,
)
from skiff.image.transports import parse_image_name
from skiff.image.transports.docker import api, check_login, delete_image, list_tags
from skiff.image.transports.docker.client import RegistryClient
from skiff.image.transports.docker.destination import MONOLITHIC_MAX, DockerImageDestination
from skiff.image.transports.docker.source import DockerImageSource
from skiff.image.types import BlobInfo
from skiff.oci.digest import Digest, VerifyingReader, sha256_of
from skiff.oci.manifest import ImageManifest, parse_manifest
from skiff.testing.busybox import BusyboxImage
from skiff.testing.faultproxy import FaultProxy
from skiff.testing.registry import Credentials as RegistryUser
from skiff.testing.registry import RunningRegistry, Variant

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

FAST_RETRIES = 0.01
"""retry_delay for tests: backoff is exercised, not waited out."""


def fast(ctx: SystemContext, **changes: object) -> SystemContext:
    return dataclasses.replace(ctx, retry_delay=FAST_RETRIES, **changes)  # type: ignore[arg-type]


def source(ctx: SystemContext, ref: str) -> DockerImageSource:
    src = parse_image_name(f"docker://{ref}").new_image_source(ctx)
    assert isinstance(src, DockerImageSource)
    return src


def destination(ctx: SystemContext, ref: str) -> DockerImageDestination:
    dest = parse_image_name(f"docker://{ref}").new_image_destination(ctx)
    assert isinstance(dest, DockerImageDestination)
    return dest


def manifest_of(image: BusyboxImage) -> ImageManifest:
    manifest = parse_manifest(image.manifest_bytes())
    assert isinstance(manifest, ImageManifest)
    return manifest


def push(ctx: SystemContext, ref: str, image: BusyboxImage) -> DockerImageDestination:
    """Push ``image`` with our destination, as the copy engine drives one."""
    dest = destination(ctx, ref)
    try:
        manifest = manifest_of(image)
        for desc in [manifest.config, *manifest.layers]:
            info = BlobInfo(desc.digest, desc.size, desc.media_type)
            if dest.try_reusing_blob(info, can_substitute=False) is not None:
                continue
            data = image.blob_path(desc.digest).read_bytes()
            stored = dest.put_blob(
                VerifyingReader(io.BytesIO(data), desc.digest, desc.size), info, is_config=False
            )
            assert (stored.digest, stored.size) == (desc.digest, desc.size)
        dest.put_manifest(image.manifest_bytes())
        dest.commit()
    finally:
        dest.close()
    return dest


def read_blob(src: DockerImageSource, digest: Digest, size: int = -1) -> bytes:
    body, _ = src.get_blob(BlobInfo(digest, size))
    try:
        reader = VerifyingReader(body, digest, size)
        chunks = []
        while chunk := reader.read(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        body.close()


def assert_pulls(ctx: SystemContext, ref: str, image: BusyboxImage) -> None:
    with source(ctx, ref) as src:
        raw, media_type = src.get_manifest()
        assert raw == image.manifest_bytes()
        assert media_type == "application/vnd.oci.image.manifest.v1+json"
        manifest = manifest_of(image)
        for desc in [manifest.config, *manifest.layers]:
            assert (
                read_blob(src, desc.digest, desc.size) == image.blob_path(desc.digest).read_bytes()
            )


def put_blob_bytes(dest: DockerImageDestination, data: bytes) -> BlobInfo:
    return dest.put_blob(VerifyingReader(io.BytesIO(data), None), BlobInfo(None), is_config=False)


@pytest.fixture
def skopeo(tmp_shm: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """skopeo with our policy and the registry's registries.conf, no host auth."""
    policy = tmp_shm / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    home = tmp_shm / "home"
    home.mkdir()

    def run(*args: str, registry: RunningRegistry) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "CONTAINERS_REGISTRIES_CONF": str(registry.registries_conf),
            "REGISTRY_AUTH_FILE": str(registry.auth_file),
            "TMPDIR": str(tmp_shm),
        }
        argv = ["skopeo", "--policy", str(policy), *args]
        result = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
        return result

    return run


# --- push and pull -------------------------------------------------------------------


def test_push_then_pull_round_trip(
    registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    ref = f"{registry.host}/{unique_repo}:v1"
    dest = push(registry.context, ref, busybox_layout)
    assert dest.manifest_digest == busybox_layout.manifest_digest
    assert_pulls(registry.context, ref, busybox_layout)
    # by digest, and with both tag and digest (the digest wins)
    by_digest = f"{registry.host}/{unique_repo}@{busybox_layout.manifest_digest}"
    assert_pulls(registry.context, by_digest, busybox_layout)
    assert_pulls(registry.context, f"{ref}@{busybox_layout.manifest_digest}", busybox_layout)


def test_second_push_reuses_every_blob(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    fault_proxy: FaultProxy,
) -> None:
    push(registry.context, f"{fault_proxy.host}/{unique_repo}:a", busybox_layout)
    fault_proxy.clear()
    push(registry.context, f"{fault_proxy.host}/{unique_repo}:b", busybox_layout)
    methods = [(r.method, r.target.split("?")[0].rsplit("/", 2)[-2]) for r in fault_proxy.requests]
    assert ("POST", "uploads") not in methods
    assert [r.method for r in fault_proxy.requests if "/blobs/" in r.target] == ["HEAD", "HEAD"]


def test_skopeo_sees_what_we_pushed(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    ref = f"{registry.host}/{unique_repo}:pushed"
    push(registry.context, ref, busybox_layout)
    out = skopeo("inspect", "--tls-verify=false", f"docker://{ref}", registry=registry)
    info = json.loads(out.stdout)
    assert info["Digest"] == str(busybox_layout.manifest_digest)
    assert info["Layers"] == [str(d) for d in busybox_layout.layer_digests]


def test_we_read_what_skopeo_pushed(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    ref = f"{registry.host}/{unique_repo}:from-skopeo"
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        busybox_layout.reference,
        f"docker://{ref}",
        registry=registry,
    )
    assert_pulls(registry.context, ref, busybox_layout)


def test_large_blob_streams_with_patch_and_small_uses_one_put(
    registry: RunningRegistry, fault_proxy: FaultProxy, unique_repo: str
) -> None:
    ref = f"{fault_proxy.host}/{unique_repo}:big"
    big = os.urandom(MONOLITHIC_MAX + 123_456)
    small = os.urandom(1000)
    dest = destination(registry.context, ref)
    try:
        fault_proxy.clear()
        stored = put_blob_bytes(dest, big)
        assert stored.digest == sha256_of(big) and stored.size == len(big)
        assert [r.method for r in fault_proxy.requests if "/uploads/" in r.target] == [
            "POST",
            "PATCH",
            "PUT",
        ]
        fault_proxy.clear()
        assert put_blob_bytes(dest, small).digest == sha256_of(small)
        assert [r.method for r in fault_proxy.requests if "/uploads/" in r.target] == [
            "POST",
            "PUT",
        ]
    finally:
        dest.close()
    client = RegistryClient(registry.context, registry.host, unique_repo)
    try:
        body = api.open_blob(client, sha256_of(big))
        assert VerifyingReader(body, sha256_of(big), len(big)).read(-1) == big
    finally:
        client.close()


def test_failed_stream_cancels_the_upload(
    registry: RunningRegistry, fault_proxy: FaultProxy, unique_repo: str
) -> None:
    data = os.urandom(MONOLITHIC_MAX + 10)
    wrong = sha256_of(b"something else")
    dest = destination(registry.context, f"{fault_proxy.host}/{unique_repo}:x")
    fault_proxy.clear()
    try:
        with pytest.raises(DigestMismatch):
            dest.put_blob(
                VerifyingReader(io.BytesIO(data), wrong, len(data)), BlobInfo(wrong), False
            )
    finally:
        dest.close()
    methods = [r.method for r in fault_proxy.requests if "/uploads/" in r.target]
    assert methods[0] == "POST" and methods[-1] == "DELETE"
    assert "PUT" not in methods
    client = RegistryClient(registry.context, registry.host, unique_repo)
    try:
        assert api.blob_size(client, sha256_of(data)) is None
    finally:
        client.close()


def test_cross_repository_mount(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    fault_proxy: FaultProxy,
) -> None:
    push(registry.context, f"{registry.host}/{unique_repo}-a:v1", busybox_layout)
    layer = busybox_layout.layer_digests[0]
    dest = destination(registry.context, f"{fault_proxy.host}/{unique_repo}-b:v1")
    dest.known_locations = lambda digest: [
        f"other.example/{unique_repo}-a",  # another registry: never mounted from
        f"{fault_proxy.host}/{unique_repo}-a",
    ]
    fault_proxy.clear()
    try:
        reused = dest.try_reusing_blob(BlobInfo(layer, busybox_layout.layer_sizes[0]), False)
    finally:
        dest.close()
    assert reused is not None and reused.digest == layer
    mounts = [r for r in fault_proxy.requests if "mount=" in r.target]
    assert len(mounts) == 1 and mounts[0].status == 201
    assert f"from={unique_repo}-a".replace("/", "%2F") in mounts[0].target
    client = RegistryClient(registry.context, registry.host, f"{unique_repo}-b")
    try:
        assert api.blob_size(client, layer) == busybox_layout.layer_sizes[0]
    finally:
        client.close()


def test_failed_mount_falls_back_and_leaves_no_session(
    registry: RunningRegistry, unique_repo: str, fault_proxy: FaultProxy
) -> None:
    missing = sha256_of(b"never pushed anywhere")
    dest = destination(registry.context, f"{fault_proxy.host}/{unique_repo}:v1")
    dest.known_locations = lambda digest: [f"{fault_proxy.host}/{unique_repo}-elsewhere"]
    fault_proxy.clear()
    try:
        assert dest.try_reusing_blob(BlobInfo(missing), False) is None
    finally:
        dest.close()
    methods = [r.method for r in fault_proxy.requests if "/uploads/" in r.target]
    assert methods == ["POST", "DELETE"]  # 202 instead of a mount: session cancelled


def test_parallel_blob_reads_share_one_session_and_token(
    token_registry: RunningRegistry, unique_repo: str
) -> None:
    """The copy engine reads blobs from several threads through one source."""
    from concurrent.futures import ThreadPoolExecutor

    server = token_registry.token_server
    assert server is not None and token_registry.credentials is not None
    ctx = token_registry.context_with(token_registry.credentials)
    ref = f"{token_registry.host}/{unique_repo}:v1"
    blobs = [os.urandom(200_000 + i) for i in range(12)]
    dest = destination(ctx, ref)
    try:
        for blob in blobs:
            put_blob_bytes(dest, blob)
    finally:
        dest.close()
    client = RegistryClient(ctx, token_registry.host, unique_repo)
    server.clear_requests()
    try:

        def fetch(blob: bytes) -> bytes:
            body = api.open_blob(client, sha256_of(blob))
            try:
                return VerifyingReader(body, sha256_of(blob), len(blob)).read(-1)
            finally:
                body.close()

        with ThreadPoolExecutor(max_workers=6) as pool:
            assert list(pool.map(fetch, blobs)) == blobs
    finally:
        client.close()
    assert len(server.requests) == 1  # one token for all threads


def test_manifest_head(
    registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    client = RegistryClient(registry.context, registry.host, unique_repo)
    try:
        head = api.head_manifest(client, "v1")
        assert head is not None
        assert head.digest == busybox_layout.manifest_digest
        assert head.size == busybox_layout.manifest_size
        assert head.media_type == "application/vnd.oci.image.manifest.v1+json"
        assert api.head_manifest(client, "absent") is None
    finally:
        client.close()


def test_signatures_need_lookaside(
    registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    from skiff.errors import SignatureError

    ref = f"{registry.host}/{unique_repo}:v1"
    dest = push(registry.context, ref, busybox_layout)
    # opening through the transport wires registries.d (skiff.signature.hooks);
    # this test pins the hooks themselves, so start without them
    assert dest.supports_signatures()
    dest.signature_writer = None
    assert not dest.supports_signatures()
    dest.put_signatures([])  # nothing to store: fine
    with pytest.raises(SignatureError, match="no lookaside storage"):
        dest.put_signatures([b"signature"])
    stored: list[tuple[str, Digest, list[bytes]]] = []
    dest.signature_writer = lambda name, digest, sigs: stored.append((str(name), digest, sigs))
    dest.put_signatures([b"signature"])
    assert stored == [(ref, busybox_layout.manifest_digest, [b"signature"])]
    with source(registry.context, ref) as src:
        src.signature_reader = None
        assert src.get_signatures() == []
        src.signature_reader = lambda name, digest: [f"{name}@{digest}".encode()]
        assert src.get_signatures() == [f"{ref}@{busybox_layout.manifest_digest}".encode()]


# --- references, tags, delete ----------------------------------------------------------


def test_tags_list(
    registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    tags = [f"t{i}" for i in range(5)]
    for tag in tags:
        push(registry.context, f"{registry.host}/{unique_repo}:{tag}", busybox_layout)
    ref = parse_image_name(f"docker://{registry.host}/{unique_repo}")
    assert sorted(list_tags(registry.context, ref)) == tags
    assert sorted(list_tags(registry.context, ref.docker_reference())) == tags


def test_tags_list_follows_link_pagination(
    registry: RunningRegistry, unique_repo: str, fault_proxy: FaultProxy
) -> None:
    """Distribution 2.8 ignores ``n`` on tag lists (it paginates only
    ``_catalog``), so the proxy serves the pages as a paginating registry
    (Harbor, Quay, distribution 3) does: ``Link: <next>; rel="next"``."""
    base = f"/v2/{unique_repo}/tags/list"
    pages = [["a", "b"], ["c", "d"], ["e"]]
    for number, page in enumerate(pages):
        query = r"\?n=2$" if number == 0 else rf"\?n=2&last={pages[number - 1][-1]}$"
        headers = {"Content-Type": "application/json"}
        if number < len(pages) - 1:
            # relative on the first page, absolute afterwards: both occur in the wild
            target = f"{base}?n=2&last={page[-1]}"
            link = target if number == 0 else fault_proxy.url + target
            headers["Link"] = f'<{link}>; rel="next"'
        body = json.dumps({"name": unique_repo, "tags": page}).encode()
        fault_proxy.fail(base + query, 200, body=body, headers=headers, method="GET")
    ref = parse_image_name(f"docker://{fault_proxy.host}/{unique_repo}")
    assert list_tags(registry.context, ref, page_size=2) == ["a", "b", "c", "d", "e"]
    seen = [r.target for r in fault_proxy.requests if "/tags/list" in r.target]
    assert seen == [f"{base}?n=2", f"{base}?n=2&last=b", f"{base}?n=2&last=d"]
    assert all(r.headers.get("user-agent") == "skiff" for r in fault_proxy.requests)


def test_tags_of_unknown_repository(registry: RunningRegistry, unique_repo: str) -> None:
    ref = parse_image_name(f"docker://{registry.host}/{unique_repo}-none")
    with pytest.raises(ImageNotFound, match=r"name unknown|repository name not known"):
        list_tags(registry.context, ref)


def test_delete_by_tag_resolves_the_digest(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    ref = f"{registry.host}/{unique_repo}:doomed"
    push(registry.context, ref, busybox_layout)
    push(registry.context, f"{registry.host}/{unique_repo}:sibling", busybox_layout)
    deleted = delete_image(registry.context, parse_image_name(f"docker://{ref}"))
    assert deleted == busybox_layout.manifest_digest
    # the manifest is gone, so is every tag naming it (skopeo delete semantics)
    for tag in ("doomed", "sibling"):
        with pytest.raises(ImageNotFound, match="manifest unknown"):
            source(registry.context, f"{registry.host}/{unique_repo}:{tag}")


def test_delete_by_digest_through_the_reference(
    registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    ref = parse_image_name(
        f"docker://{registry.host}/{unique_repo}@{busybox_layout.manifest_digest}"
    )
    ref.delete_image(registry.context)
    with pytest.raises(ImageNotFound):
        source(registry.context, f"{registry.host}/{unique_repo}:v1")
    with pytest.raises(ImageNotFound):
        ref.delete_image(registry.context)


def test_push_by_digest_reference(
    registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    ref = f"{registry.host}/{unique_repo}@{busybox_layout.manifest_digest}"
    push(registry.context, ref, busybox_layout)
    assert_pulls(registry.context, ref, busybox_layout)
    wrong = f"{registry.host}/{unique_repo}@{sha256_of(b'x')}"
    dest = destination(registry.context, wrong)
    try:
        with pytest.raises(Exception, match="digest reference can only receive"):
            dest.put_manifest(busybox_layout.manifest_bytes())
    finally:
        dest.close()


# --- errors ---------------------------------------------------------------------------


def test_missing_manifest_and_blob(
    registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    with pytest.raises(ImageNotFound) as info:
        source(registry.context, f"{registry.host}/{unique_repo}:nosuch")
    assert str(info.value).startswith(
        f"reading manifest nosuch in {registry.host}/{unique_repo}: manifest unknown"
    )
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    with source(registry.context, f"{registry.host}/{unique_repo}:v1") as src:
        with pytest.raises(BlobUnknown, match="blob unknown"):
            src.get_blob(BlobInfo(sha256_of(b"absent")))
        with pytest.raises(ImageNotFound):
            src.get_manifest(sha256_of(b"absent"))


def test_connection_refused_names_the_url(tmp_shm: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{sock.getsockname()[1]}"
    (tmp_shm / "empty.conf").write_text("")
    ctx = SystemContext(
        registries_conf=tmp_shm / "empty.conf", tls_verify=False, retry_times=1, retry_delay=0.01
    )
    with pytest.raises(RegistryUnavailable, match=f"cannot reach https?://{host}/v2/"):
        source(ctx, f"{host}/x:y")


def test_tls_failure_without_the_ca(
    tls_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    ref = f"{tls_registry.host}/{unique_repo}:v1"
    push(tls_registry.context, ref, busybox_layout)  # trusted through certs.d
    untrusted = dataclasses.replace(tls_registry.context, certs_dirs=())
    with pytest.raises(TLSError) as info:
        source(untrusted, ref)
    assert "--tls-verify=false" in str(info.value)
    assert f"certs.d/{tls_registry.host}/ca.crt" in str(info.value)
    # verification off: works without the CA, still over https
    assert_pulls(dataclasses.replace(untrusted, tls_verify=False), ref, busybox_layout)


def test_plain_http_needs_verification_off(
    registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str, tmp_shm: Path
) -> None:
    ref = f"{registry.host}/{unique_repo}:v1"
    push(registry.context, ref, busybox_layout)
    (tmp_shm / "empty.conf").write_text("")
    strict = SystemContext(registries_conf=tmp_shm / "empty.conf", retry_times=0)
    with pytest.raises(TLSError):
        source(strict, ref)
    # insecure in registries.conf (the fixture's file) allows http
    assert_pulls(dataclasses.replace(registry.context, tls_verify=None), ref, busybox_layout)


def test_manifest_by_digest_is_verified(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    fault_proxy: FaultProxy,
) -> None:
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    digest = busybox_layout.manifest_digest
    fault_proxy.corrupt(r"/manifests/sha256:", offsets=(10,), times=None)
    with pytest.raises(DigestMismatch, match="manifest digest mismatch"):
        source(registry.context, f"{fault_proxy.host}/{unique_repo}@{digest}")


def test_oversized_manifest_is_refused(
    registry: RunningRegistry, unique_repo: str, fault_proxy: FaultProxy
) -> None:
    huge = b'{"schemaVersion": 2, "padding": "' + b"x" * (4 << 20) + b'"}'
    fault_proxy.fail(
        r"/manifests/big$",
        200,
        times=None,
        body=huge,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    with pytest.raises(ManifestError, match="larger than"):
        source(registry.context, f"{fault_proxy.host}/{unique_repo}:big")


# --- retries ---------------------------------------------------------------------------


def test_server_errors_are_retried(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    fault_proxy: FaultProxy,
) -> None:
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    fault = fault_proxy.fail(r"/manifests/v1$", 500, times=2)
    assert_pulls(fast(registry.context), f"{fault_proxy.host}/{unique_repo}:v1", busybox_layout)
    assert fault.hits == 2
    # persistent failure: RegistryUnavailable after retry_times + 1 attempts
    fault = fault_proxy.fail(r"/manifests/v1$", 503, times=None)
    with pytest.raises(RegistryUnavailable):
        source(fast(registry.context, retry_times=2), f"{fault_proxy.host}/{unique_repo}:v1")
    assert fault.hits == 3


def test_dropped_connections_are_retried(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    fault_proxy: FaultProxy,
) -> None:
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    fault = fault_proxy.drop(r"/manifests/v1$", times=1)
    assert_pulls(fast(registry.context), f"{fault_proxy.host}/{unique_repo}:v1", busybox_layout)
    assert fault.hits == 1


def test_too_many_requests_honours_retry_after(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    fault_proxy: FaultProxy,
) -> None:
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    fault = fault_proxy.fail(r"/manifests/v1$", 429, times=1, headers={"Retry-After": "1"})
    start = time.monotonic()
    with source(fast(registry.context), f"{fault_proxy.host}/{unique_repo}:v1"):
        pass
    assert time.monotonic() - start >= 1.0  # not retry_delay's 0.01 s
    assert fault.hits == 1
    fault_proxy.fail(r"/manifests/v1$", 429, times=None, headers={"Retry-After": "0"})
    with pytest.raises(TooManyRequests, match=r"(?i)too ?many ?requests|429"):
        source(fast(registry.context, retry_times=1), f"{fault_proxy.host}/{unique_repo}:v1")


def test_truncated_blob_resumes_with_range(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    fault_proxy: FaultProxy,
) -> None:
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    layer, size = busybox_layout.layer_digests[0], busybox_layout.layer_sizes[0]
    cut = size // 3
    fault_proxy.truncate(rf"/blobs/{layer}", after=cut)
    with source(fast(registry.context), f"{fault_proxy.host}/{unique_repo}:v1") as src:
        body, announced = src.get_blob(BlobInfo(layer, size))
        assert announced == size
        data = VerifyingReader(body, layer, size).read(-1)
        assert (body.resumes, body.restarts) == (1, 0)
        body.close()
    assert data == busybox_layout.blob_path(layer).read_bytes()
    gets = [r for r in fault_proxy.requests if layer.hex in r.target]
    assert [g.headers.get("range") for g in gets] == [None, f"bytes={cut}-"]
    assert gets[1].status == 206


def test_truncated_blob_restarts_when_ranges_are_ignored(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    fault_proxy: FaultProxy,
) -> None:
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    layer, size = busybox_layout.layer_digests[0], busybox_layout.layer_sizes[0]
    whole = busybox_layout.blob_path(layer).read_bytes()
    fault_proxy.truncate(rf"/blobs/{layer}", after=size // 2)
    # the second request (with Range) gets the whole blob with 200, as from
    # a server that does not do ranges
    fault_proxy.fail(rf"/blobs/{layer}", 200, body=whole, method="GET")
    with source(fast(registry.context), f"{fault_proxy.host}/{unique_repo}:v1") as src:
        body, _ = src.get_blob(BlobInfo(layer, size))
        assert VerifyingReader(body, layer, size).read(-1) == whole
        assert (body.resumes, body.restarts) == (0, 1)
        body.close()


def test_blob_that_keeps_breaking_gives_up(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    fault_proxy: FaultProxy,
) -> None:
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    layer = busybox_layout.layer_digests[0]
    fault_proxy.truncate(rf"/blobs/{layer}", after=1000, times=None)
    ctx = fast(registry.context, retry_times=2)
    with source(ctx, f"{fault_proxy.host}/{unique_repo}:v1") as src:
        body, _ = src.get_blob(BlobInfo(layer))
        with pytest.raises(RegistryUnavailable, match="gave up after 2 reconnections"):
            body.read(-1)
        body.close()


def test_foreign_layer_urls_come_first_then_the_registry(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    fault_proxy: FaultProxy,
) -> None:
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    layer, size = busybox_layout.layer_digests[0], busybox_layout.layer_sizes[0]
    whole = busybox_layout.blob_path(layer).read_bytes()
    # the "foreign" server: the proxy, serving the blob at its own path
    foreign = f"{fault_proxy.url}/v2/{unique_repo}/blobs/{layer}"
    with source(registry.context, f"{registry.host}/{unique_repo}:v1") as src:
        body, _ = src.get_blob(BlobInfo(layer, size, urls=(foreign,)))
        assert VerifyingReader(body, layer, size).read(-1) == whole
        body.close()
        assert [r.status for r in fault_proxy.requests if layer.hex in r.target] == [200]
        # every URL failing (404, then an unsupported scheme): the registry serves it
        fault_proxy.fail(rf"/blobs/{layer}", 404)
        body, _ = src.get_blob(BlobInfo(layer, size, urls=(foreign, "file:///etc/passwd")))
        assert VerifyingReader(body, layer, size).read(-1) == whole
        body.close()


# --- authentication -------------------------------------------------------------------------


def test_basic_auth(
    auth_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    assert auth_registry.credentials is not None
    ctx = auth_registry.context_with(auth_registry.credentials)
    ref = f"{auth_registry.host}/{unique_repo}:v1"
    push(ctx, ref, busybox_layout)
    assert_pulls(ctx, ref, busybox_layout)
    wrong = auth_registry.context_with(RegistryUser(auth_registry.credentials.username, "nope"))
    with pytest.raises(AuthenticationError) as info:
        source(wrong, ref)
    assert f"{auth_registry.host}/{unique_repo}" in str(info.value)
    assert "skiff login" in str(info.value)
    with pytest.raises(AuthenticationError):
        source(auth_registry.context_with(None), ref)


def test_basic_auth_from_auth_json(
    auth_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str, tmp_shm: Path
) -> None:
    from skiff.image.auth import Credentials, set_credentials

    assert auth_registry.credentials is not None
    ctx = dataclasses.replace(auth_registry.context, auth_file=tmp_shm / "auth.json")
    user = auth_registry.credentials
    set_credentials(ctx, auth_registry.host, Credentials(user.username, user.password))
    ref = f"{auth_registry.host}/{unique_repo}:v1"
    push(ctx, ref, busybox_layout)
    assert_pulls(ctx, ref, busybox_layout)


def test_bearer_tokens_are_scoped_and_cached(
    token_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    server = token_registry.token_server
    assert server is not None and token_registry.credentials is not None
    ref = f"{token_registry.host}/{unique_repo}:v1"
    server.clear_requests()
    push(token_registry.context_with(token_registry.credentials), ref, busybox_layout)
    scopes = [r.scopes for r in server.requests]
    assert scopes == [(f"repository:{unique_repo}:pull,push",)]  # one token for the whole push
    assert server.requests[0].account == token_registry.credentials.username

    reader = token_registry.readonly_credentials
    assert reader is not None
    server.clear_requests()
    assert_pulls(token_registry.context_with(reader), ref, busybox_layout)
    assert [r.scopes for r in server.requests] == [(f"repository:{unique_repo}:pull",)]

    # the read-only user gets a token without push: the registry refuses the upload
    dest = destination(token_registry.context_with(reader), f"{ref}-ro")
    try:
        with pytest.raises(AuthenticationError, match=unique_repo):
            put_blob_bytes(dest, b"not allowed")
    finally:
        dest.close()


def test_bearer_wrong_password_and_anonymous(
    token_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    assert token_registry.credentials is not None
    ref = f"{token_registry.host}/{unique_repo}:v1"
    push(token_registry.context_with(token_registry.credentials), ref, busybox_layout)
    wrong = RegistryUser(token_registry.credentials.username, "wrong")
    with pytest.raises(AuthenticationError, match="bearer token"):
        source(token_registry.context_with(wrong), ref)
    with pytest.raises(AuthenticationError):
        source(token_registry.context_with(None), ref)
    # anonymous pull of the public repository
    public = f"{token_registry.host}/{token_registry.public_repository}:v1"
    push(token_registry.context_with(token_registry.credentials), public, busybox_layout)
    assert_pulls(token_registry.context_with(None), public, busybox_layout)


def test_expired_token_is_fetched_again_once(
    token_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    server = token_registry.token_server
    assert server is not None and token_registry.credentials is not None
    ctx = token_registry.context_with(token_registry.credentials)
    ref = f"{token_registry.host}/{unique_repo}:v1"
    push(ctx, ref, busybox_layout)
    client = RegistryClient(ctx, token_registry.host, unique_repo)
    saved = server.lifetime
    try:
        client.ping()
        server.lifetime = -300  # already expired for the registry, even with its leeway
        client.authorization([client.scope()])  # cached: we think it lasts 60 s
        server.lifetime = saved
        server.clear_requests()
        raw, _ = api.get_manifest(client, "v1")  # 401, drop the token, fetch, retry
        assert raw == busybox_layout.manifest_bytes()
        assert len(server.requests) == 1
        server.lifetime = -300
        server.clear_requests()
        other = RegistryClient(ctx, token_registry.host, unique_repo)
        with pytest.raises(AuthenticationError):
            api.get_manifest(other, "v1")
        assert len(server.requests) == 2  # the retry happens exactly once
        other.close()
    finally:
        server.lifetime = saved
        client.close()


def test_token_service_errors_are_retried(
    token_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    server = token_registry.token_server
    assert server is not None and token_registry.credentials is not None
    ctx = fast(token_registry.context_with(token_registry.credentials))
    ref = f"{token_registry.host}/{unique_repo}:v1"
    server.inject_failures(500, times=2)
    push(ctx, ref, busybox_layout)
    assert_pulls(ctx, ref, busybox_layout)


def test_registry_token_is_used_as_is(
    token_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    server = token_registry.token_server
    assert server is not None and token_registry.credentials is not None
    ref = f"{token_registry.host}/{unique_repo}:v1"
    push(token_registry.context_with(token_registry.credentials), ref, busybox_layout)
    user = token_registry.credentials.username
    token = server.issue(user, server.grant(user, [f"repository:{unique_repo}:pull"]))
    server.clear_requests()
    ctx = dataclasses.replace(token_registry.context, registry_token=token)
    assert_pulls(ctx, ref, busybox_layout)
    assert server.requests == []


def test_check_login(
    auth_registry: RunningRegistry, token_registry: RunningRegistry, registry: RunningRegistry
) -> None:
    from skiff.image.auth import Credentials

    for reg in (auth_registry, token_registry):
        assert reg.credentials is not None
        good = Credentials(reg.credentials.username, reg.credentials.password)
        check_login(reg.context, reg.host, good)
        with pytest.raises(AuthenticationError):
            check_login(reg.context, reg.host, Credentials(good.username, "wrong"))
    check_login(registry.context, registry.host, Credentials("any", "thing"))  # no auth at all


def test_file_realm_is_rejected(
    registry: RunningRegistry, unique_repo: str, fault_proxy: FaultProxy, tmp_shm: Path
) -> None:
    challenge = 'Bearer realm="file:///etc/passwd",service="evil"'
    fault_proxy.fail(r"^/v2/", 401, times=None, headers={"WWW-Authenticate": challenge})
    ctx = fast(registry.context, credentials=("user", "secret"))
    with pytest.raises(
        RegistryError, match=r"file:///etc/passwd.*which is not an http or https URL"
    ):
        source(ctx, f"{fault_proxy.host}/{unique_repo}:v1")


# --- redirects ----------------------------------------------------------------------------


@pytest.fixture
def two_proxies(
    registry: RunningRegistry, fault_proxy_factory: Callable[..., FaultProxy]
) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    """Two proxies on different ports (different origins) in front of ``registry``."""
    yield fault_proxy_factory(registry), fault_proxy_factory(registry)


def test_redirect_to_another_host_drops_authorization(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    two_proxies: tuple[FaultProxy, FaultProxy],
) -> None:
    front, other = two_proxies
    push(registry.context, f"{registry.host}/{unique_repo}:v1", busybox_layout)
    layer = busybox_layout.layer_digests[0]
    front.redirect(rf"/blobs/{layer}", other.url)
    # the plain registry ignores Authorization, so a --registry-token shows
    # exactly where a credential would travel
    ctx = dataclasses.replace(registry.context, registry_token="secret-token")
    assert_pulls(ctx, f"{front.host}/{unique_repo}:v1", busybox_layout)
    at_front = [r for r in front.requests if layer.hex in r.target]
    at_other = [r for r in other.requests if layer.hex in r.target]
    assert at_front[0].status == 307
    assert at_front[0].headers.get("authorization") == "Bearer secret-token"
    assert len(at_other) == 1 and at_other[0].status == 200
    assert "authorization" not in at_other[0].headers


def test_upload_location_on_another_host_gets_no_authorization(
    registry: RunningRegistry, unique_repo: str, two_proxies: tuple[FaultProxy, FaultProxy]
) -> None:
    front, other = two_proxies
    # A real upload session, announced by the front proxy as living on the other one.
    pool = urllib3.PoolManager()
    started = pool.request("POST", f"{registry.url}/v2/{unique_repo}/blobs/uploads/")
    assert started.status == 202
    location = started.headers["Location"].replace(registry.url, other.url)
    front.fail(r"/blobs/uploads/$", 202, method="POST", headers={"Location": location}, body=b"")
    ctx = dataclasses.replace(registry.context, registry_token="secret-token")
    data = os.urandom(MONOLITHIC_MAX + 1)  # PATCH + PUT, both at the other host
    dest = destination(ctx, f"{front.host}/{unique_repo}:v1")
    try:
        assert put_blob_bytes(dest, data).digest == sha256_of(data)
    finally:
        dest.close()
    uploads = [r for r in other.requests if "/uploads/" in r.target]
    assert [r.method for r in uploads] == ["PATCH", "PUT"]
    assert all("authorization" not in r.headers for r in uploads)
    assert [r.headers.get("authorization") for r in front.requests if r.method == "POST"] == [
        "Bearer secret-token"
    ]


# --- mirrors ----------------------------------------------------------------------------------


def _mirror_conf(path: Path, primary: str, mirror: str) -> Path:
    path.write_text(
        f'[[registry]]\nprefix = "{primary}"\nlocation = "{primary}"\ninsecure = true\n'
        f'[[registry.mirror]]\nlocation = "{mirror}"\ninsecure = true\n'
    )
    return path


def test_mirrors_are_tried_first_and_pushes_go_to_the_primary(
    registry: RunningRegistry,
    registry_factory: Callable[..., RunningRegistry],
    busybox_layout: BusyboxImage,
    unique_repo: str,
    tmp_shm: Path,
) -> None:
    mirror = registry_factory(Variant.PLAIN)
    conf = _mirror_conf(tmp_shm / "mirrors.conf", registry.host, mirror.host)
    ctx = dataclasses.replace(registry.context, registries_conf=conf, retry_times=0)
    ref = f"{registry.host}/{unique_repo}:v1"

    push(ctx, ref, busybox_layout)  # lands in the primary only
    assert not mirror.repository_dir(unique_repo).exists()
    with source(ctx, ref) as src:  # the mirror lacks it: falls back to the primary
        assert src.pull_source is not None and not src.pull_source.is_mirror
        assert src.get_manifest()[0] == busybox_layout.manifest_bytes()

    push(mirror.context, f"{mirror.host}/{unique_repo}:v1", busybox_layout)
    with source(ctx, ref) as src:
        assert src.pull_source is not None and src.pull_source.is_mirror
        assert src.pull_source.reference.domain == mirror.host
        assert read_blob(src, busybox_layout.config_digest) == busybox_layout.config_bytes()


def test_all_sources_failing_reports_the_mirrors(
    registry: RunningRegistry, unique_repo: str, tmp_shm: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    conf = _mirror_conf(tmp_shm / "mirrors.conf", registry.host, dead)
    ctx = dataclasses.replace(registry.context, registries_conf=conf, retry_times=0)
    with pytest.raises(ImageNotFound) as info:
        source(ctx, f"{registry.host}/{unique_repo}:nosuch")
    assert "manifest unknown" in str(info.value)
    assert f"mirrors also failed: {dead}/{unique_repo}:nosuch" in str(info.value)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo")
def test_skopeo_reads_a_blob_we_pushed_streaming(
    registry: RunningRegistry,
    busybox_layout: BusyboxImage,
    unique_repo: str,
    skopeo: Callable[..., subprocess.CompletedProcess[str]],
    tmp_shm: Path,
) -> None:
    """A layer above MONOLITHIC_MAX (streamed with PATCH) is what skopeo pulls back."""
    from skiff.testing.busybox import build_busybox_layout

    image = build_busybox_layout(
        tmp_shm / "big", extra_files={"/big.bin": os.urandom(MONOLITHIC_MAX + 4096)}
    )
    assert max(image.layer_sizes) > MONOLITHIC_MAX
    ref = f"{registry.host}/{unique_repo}:big"
    push(registry.context, ref, image)
    out = tmp_shm / "copied"
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{out}", registry=registry)
    for digest in image.layer_digests:
        assert (out / digest.hex).read_bytes() == image.blob_path(digest).read_bytes()
