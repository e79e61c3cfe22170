"""The copy engine (``skiff.image.copy.copy_image``) between real transports.

Registries are real docker-registry processes (some behind the fault
proxy), layouts are real directories on tmpfs; skopeo checks what a schema
1 conversion produced. Each test states one promise of the engine:
parallel blobs, verification while streaming, nothing committed after a
failure, ``--all``, platform choice, manifest and compression conversion,
``--preserve-digests``, signatures, and Docker schema 1 input.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skiff.config import SystemContext
from skiff.errors import (
    DigestMismatch,
    ManifestError,
    RegistryUnavailable,
    SignatureError,
    UnsupportedConversion,
)
from skiff.image.copy import CopyOptions, CopyReport, copy_image
from skiff.image.copy.compression import CompressionError, decompressing_reader
from skiff.image.transports import parse_image_name
from skiff.image.types import BlobInfo
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, sha256_of
from skiff.oci.manifest import (
    ImageIndex,
    ImageManifest,
    manifest_digest,
    parse_manifest,
)
from skiff.oci.platform import host_platform
from skiff.testing.busybox import BusyboxImage, build_busybox_layout, build_layered_layout
from skiff.testing.faultproxy import FaultProxy
from skiff.testing.multiarch import MultiArchImage, build_multiarch_layout
from skiff.testing.registry import RunningRegistry, Variant
from skiff.testing.schema1 import SCHEMA1_SIGNED, Schema1Layer, signed_schema1

BLOB_GET = r"/v2/.+/blobs/sha256:"
REF_NAME = "org.opencontainers.image.ref.name"


def ref(text: str) -> Any:
    return parse_image_name(text)


def copy(src: str, dest: str, ctx: SystemContext | None = None, **options: Any) -> CopyReport:
    return copy_image(ref(src), ref(dest), CopyOptions(**options), ctx, ctx)


def via(proxy: FaultProxy, registry: RunningRegistry) -> SystemContext:
    """The registry's context, for talking to it through ``proxy`` over plain http."""
    return dataclasses.replace(registry.context, tls_verify=False, retry_delay=0.01)


def layout_blob(layout: Path, digest: Digest | str) -> bytes:
    parsed = digest if isinstance(digest, Digest) else Digest.parse(digest)
    return (layout / "blobs" / parsed.algorithm / parsed.hex).read_bytes()


def layout_manifest(layout: Path, name: str | None = None) -> tuple[bytes, Any]:
    """The raw manifest an index.json entry names (the only one, or by ref name)."""
    index = json.loads((layout / "index.json").read_text())
    entries = index["manifests"]
    if name is not None:
        entries = [e for e in entries if e.get("annotations", {}).get(REF_NAME) == name]
    assert len(entries) == 1, index
    raw = layout_blob(layout, entries[0]["digest"])
    return raw, json.loads(raw)


def plain_digest(blob: bytes, algorithm: str) -> Digest:
    """sha256 of a compressed layer's uncompressed content (its diff ID)."""
    reader = decompressing_reader(io.BytesIO(blob), algorithm)
    digest = hashlib.sha256()
    while chunk := reader.read(1 << 20):
        digest.update(chunk)
    return Digest("sha256", digest.hexdigest())


def registry_tags(registry: RunningRegistry, repository: str) -> list[str]:
    """Tags of ``repository`` as the registry's storage holds them (none if absent)."""
    tags_dir = registry.repository_dir(repository) / "_manifests" / "tags"
    return sorted(p.name for p in tags_dir.iterdir()) if tags_dir.is_dir() else []


class ConcurrencyRecorder:
    """A CopyProgress that records how many layer blobs were in flight at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self.max_active = 0
        self.finished: list[tuple[str, bool]] = []

    def blob_started(self, info: BlobInfo, kind: str) -> None:
        if kind != "blob":
            return
        with self._lock:
            self._active.add(str(info.digest))
            self.max_active = max(self.max_active, len(self._active))

    def blob_advanced(self, info: BlobInfo, done: int) -> None:
        return None

    def blob_finished(self, info: BlobInfo, skipped: bool) -> None:
        with self._lock:
            self._active.discard(str(info.digest))
            self.finished.append((str(info.digest), skipped))

    def note(self, message: str) -> None:
        return None


# --- building test images ----------------------------------------------------------------


@pytest.fixture
def multiarch(tmp_shm: Path) -> MultiArchImage:
    """An OCI layout tagged ``multi``: an index of four single-layer images."""
    return build_multiarch_layout(tmp_shm / "multiarch")


# --- parallelism ----------------------------------------------------------------------------


@pytest.mark.parametrize(("max_parallel", "expect_parallel"), [(4, True), (1, False)])
def test_layers_move_in_parallel_up_to_max_parallel(
    tmp_shm: Path,
    registry: RunningRegistry,
    fault_proxy_factory: Callable[..., FaultProxy],
    unique_repo: str,
    max_parallel: int,
    expect_parallel: bool,
) -> None:
    image = build_layered_layout(tmp_shm / "src", 4)
    copy(image.reference, f"docker://{registry.host}/{unique_repo}:v1", registry.context)
    proxy = fault_proxy_factory(registry)
    # every blob download waits, so parallel downloads overlap for sure
    proxy.delay(BLOB_GET, 0.15, times=None, method="GET")
    recorder = ConcurrencyRecorder()
    report = copy(
        f"docker://{proxy.host}/{unique_repo}:v1",
        f"oci:{tmp_shm / 'out'}:v1",
        via(proxy, registry),
        max_parallel=max_parallel,
        progress=recorder,
    )
    assert report.manifest_digest == image.manifest_digest
    assert len(recorder.finished) == 5 + 1  # five layers and the config
    if expect_parallel:
        assert recorder.max_active > 1
    else:
        assert recorder.max_active == 1


def test_shared_layers_are_copied_once(tmp_shm: Path) -> None:
    # two identical layers in one manifest: one transfer, two descriptors
    image = build_layered_layout(tmp_shm / "src", [{"a": b"same"}, {"a": b"same"}])
    recorder = ConcurrencyRecorder()
    report = copy(image.reference, f"oci:{tmp_shm / 'out'}", progress=recorder)
    assert report.manifest_digest == image.manifest_digest
    layer_events = [d for d, _ in recorder.finished if d != str(image.config_digest)]
    assert len(layer_events) == 2  # busybox + one for the shared pair


# --- verification and atomicity -------------------------------------------------------------


def test_corrupt_blob_fails_and_commits_nothing_to_a_layout(
    tmp_shm: Path,
    registry: RunningRegistry,
    fault_proxy_factory: Callable[..., FaultProxy],
    unique_repo: str,
) -> None:
    image = build_layered_layout(tmp_shm / "src", 3)
    copy(image.reference, f"docker://{registry.host}/{unique_repo}:v1", registry.context)
    proxy = fault_proxy_factory(registry)
    bad = image.layer_digests[-1]
    proxy.corrupt(f"/blobs/{bad}", offsets=(100,), times=None)
    dest = tmp_shm / "out"
    with pytest.raises(DigestMismatch, match=str(bad)):
        copy(f"docker://{proxy.host}/{unique_repo}:v1", f"oci:{dest}:v1", via(proxy, registry))
    # the destination did not exist before; nothing of it remains
    assert not dest.exists()


def test_failure_keeps_an_existing_layout_as_it_was(
    tmp_shm: Path,
    registry: RunningRegistry,
    fault_proxy_factory: Callable[..., FaultProxy],
    busybox_layout: BusyboxImage,
    unique_repo: str,
) -> None:
    dest = tmp_shm / "out"
    copy(busybox_layout.reference, f"oci:{dest}:old")
    before = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    image = build_layered_layout(tmp_shm / "src", 3)
    copy(image.reference, f"docker://{registry.host}/{unique_repo}:v1", registry.context)
    proxy = fault_proxy_factory(registry)
    proxy.truncate(f"/blobs/{image.layer_digests[1]}", after=10, times=None)
    with pytest.raises(RegistryUnavailable, match=r"connection broken"):
        copy(
            f"docker://{proxy.host}/{unique_repo}:v1",
            f"oci:{dest}:new",
            dataclasses.replace(via(proxy, registry), retry_times=1),
        )
    after = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert after == before


def test_corrupt_blob_pushes_no_manifest(
    tmp_shm: Path, registry_factory: Callable[..., RunningRegistry], unique_repo: str
) -> None:
    # corrupt the source registry's storage itself: it serves wrong bytes
    source = registry_factory(Variant.PLAIN)
    image = build_layered_layout(tmp_shm / "src", 2)
    copy(image.reference, f"docker://{source.host}/{unique_repo}:v1", source.context)
    path = source.blob_path(image.layer_digests[0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    dest = registry_factory(Variant.PLAIN)
    ctx = dataclasses.replace(source.context, tls_verify=False)
    with pytest.raises(DigestMismatch):
        copy(f"docker://{source.host}/{unique_repo}:v1", f"docker://{dest.host}/copy:v1", ctx)
    assert registry_tags(dest, "copy") == []
    # no upload session was left open at the destination
    uploads = dest.repository_dir("copy") / "_uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


def test_announced_size_is_checked(tmp_shm: Path) -> None:
    layout = tmp_shm / "src"
    image = build_busybox_layout(layout)
    manifest = json.loads(image.manifest_bytes())
    manifest["layers"][0]["size"] -= 1
    raw = json.dumps(manifest).encode()
    digest = sha256_of(raw)
    (layout / "blobs" / "sha256" / digest.hex).write_bytes(raw)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0].update(digest=str(digest), size=len(raw))
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(DigestMismatch, match="size"):
        copy(f"oci:{layout}:latest", f"oci:{tmp_shm / 'out'}")
    assert not (tmp_shm / "out").exists()


# --- indexes and platforms ---------------------------------------------------------------


def test_all_copies_the_index_unchanged(
    multiarch: MultiArchImage,
    registry: RunningRegistry,
    unique_repo: str,
) -> None:
    images, index_digest = multiarch.images, multiarch.index_digest
    dest = f"docker://{registry.host}/{unique_repo}:multi"
    report = copy(multiarch.reference, dest, registry.context, copy_all=True)
    assert report.manifest_digest == index_digest
    assert [r.manifest_digest for r in report.instances] == [
        images[k].manifest_digest for k in images
    ]
    with ref(dest).new_image_source(registry.context) as src:
        raw, media_type = src.get_manifest()
        assert media_type == mt.OCI_INDEX and sha256_of(raw) == index_digest
        for image in images.values():
            instance, _ = src.get_manifest(image.manifest_digest)
            assert sha256_of(instance) == image.manifest_digest


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, f"linux/{host_platform().architecture}"),
        ({"override_arch": "arm64"}, "linux/arm64/v8"),
        ({"override_arch": "arm", "override_variant": "v6"}, "linux/arm/v6"),
        ({"override_arch": "arm"}, "linux/arm/v7"),
    ],
)
def test_one_platform_is_chosen_from_an_index(
    multiarch: MultiArchImage,
    tmp_shm: Path,
    overrides: dict[str, str],
    expected: str,
) -> None:
    images = multiarch.images
    ctx = SystemContext(**overrides)  # type: ignore[arg-type]
    dest = tmp_shm / "out"
    report = copy(multiarch.reference, f"oci:{dest}:one", ctx)
    assert report.manifest_digest == images[expected].manifest_digest
    raw, _ = layout_manifest(dest, "one")
    assert sha256_of(raw) == images[expected].manifest_digest


@pytest.mark.parametrize(
    "overrides", [{"override_arch": "s390x"}, {"override_os": "windows"}], ids=["arch", "os"]
)
def test_no_matching_platform_is_a_clear_error(
    multiarch: MultiArchImage, tmp_shm: Path, overrides: dict[str, str]
) -> None:
    ctx = SystemContext(**overrides)  # type: ignore[arg-type]
    with pytest.raises(ManifestError, match=next(iter(overrides.values()))) as info:
        copy(multiarch.reference, f"oci:{tmp_shm / 'out'}", ctx)
    assert "available: linux/amd64" in str(info.value)
    assert not (tmp_shm / "out").exists()


def test_all_with_format_converts_every_instance(
    multiarch: MultiArchImage,
    registry: RunningRegistry,
    tmp_shm: Path,
    unique_repo: str,
) -> None:
    images, index_digest = multiarch.images, multiarch.index_digest
    dest = f"docker://{registry.host}/{unique_repo}:v2s2"
    report = copy(
        multiarch.reference, dest, registry.context, copy_all=True, manifest_format=mt.DOCKER_V2S2
    )
    assert report.manifest_type == mt.DOCKER_LIST and report.manifest_digest != index_digest
    index = parse_manifest(report.manifest, mt.DOCKER_LIST)
    assert isinstance(index, ImageIndex)
    assert [d.platform for d in index.manifests] == [
        parse_manifest(multiarch.index_bytes).manifests[i].platform  # type: ignore[union-attr]
        for i in range(len(images))
    ]
    # back to an OCI layout: converted again, and the layers never changed
    back = tmp_shm / "back"
    copy(dest, f"oci:{back}:all", registry.context, copy_all=True)
    _, parsed = layout_manifest(back, "all")
    assert parsed["mediaType"] == mt.OCI_INDEX
    for entry, image in zip(parsed["manifests"], images.values(), strict=True):
        manifest = json.loads(layout_blob(back, entry["digest"]))
        assert [Digest.parse(x["digest"]) for x in manifest["layers"]] == list(image.layer_digests)
        assert Digest.parse(manifest["config"]["digest"]) == image.config_digest


# --- manifest and compression conversion ---------------------------------------------------


def test_oci_to_v2s2_and_back_keeps_config_and_layers(
    busybox_layout: BusyboxImage, registry: RunningRegistry, tmp_shm: Path, unique_repo: str
) -> None:
    dest = f"docker://{registry.host}/{unique_repo}:v2s2"
    report = copy(busybox_layout.reference, dest, registry.context, manifest_format=mt.DOCKER_V2S2)
    manifest = json.loads(report.manifest)
    assert manifest["mediaType"] == mt.DOCKER_V2S2
    assert manifest["config"]["mediaType"] == mt.DOCKER_CONFIG
    assert [x["mediaType"] for x in manifest["layers"]] == [mt.DOCKER_LAYER_GZIP]
    assert report.config_digest == busybox_layout.config_digest
    # an oci: layout takes only OCI manifests: converted back without being asked
    back = tmp_shm / "back"
    again = copy(dest, f"oci:{back}", registry.context)
    assert again.manifest_type == mt.OCI_MANIFEST
    assert sha256_of(layout_manifest(back)[0]) == busybox_layout.manifest_digest


def test_docker_archive_gets_a_v2s2_conversion(busybox_layout: BusyboxImage, tmp_shm: Path) -> None:
    archive = tmp_shm / "image.tar"
    report = copy(busybox_layout.reference, f"docker-archive:{archive}:skiff/busybox:latest")
    assert report.manifest_type == mt.DOCKER_V2S2
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        member = tar.extractfile("manifest.json")
        assert member is not None
        entries = json.loads(member.read())
    # as skopeo writes it: the normalized name, the config named by its hex digest
    assert entries[0]["RepoTags"] == ["docker.io/skiff/busybox:latest"]
    assert entries[0]["Config"] == f"{busybox_layout.config_digest.hex}.json"
    assert entries[0]["Config"] in names


@pytest.mark.parametrize(
    ("options", "algorithm", "layer_type"),
    [
        ({"compress_format": "zstd"}, "zstd", mt.OCI_LAYER_ZSTD),
        ({"compress_format": "zstd", "compress_level": 19}, "zstd", mt.OCI_LAYER_ZSTD),
        ({"decompress": True}, "", mt.OCI_LAYER),
        ({"compress_format": "gzip"}, "gzip", mt.OCI_LAYER_GZIP),
    ],
)
def test_recompression_keeps_the_diff_ids(
    busybox_layout: BusyboxImage,
    tmp_shm: Path,
    options: dict[str, Any],
    algorithm: str,
    layer_type: str,
) -> None:
    dest = tmp_shm / "out"
    report = copy(busybox_layout.reference, f"oci:{dest}", **options)
    manifest = json.loads(layout_manifest(dest)[0])
    assert [x["mediaType"] for x in manifest["layers"]] == [layer_type]
    # the config (and so the diff IDs) is unchanged
    assert Digest.parse(manifest["config"]["digest"]) == busybox_layout.config_digest
    layer = layout_blob(dest, manifest["layers"][0]["digest"])
    assert len(layer) == manifest["layers"][0]["size"]
    assert plain_digest(layer, algorithm) == busybox_layout.diff_ids[0]
    if algorithm == "gzip":  # already gzip: nothing to do, digests kept
        assert report.manifest_digest == busybox_layout.manifest_digest


@pytest.mark.parametrize(("algorithm", "low", "high"), [("zstd", 1, 19), ("gzip", 1, 9)])
def test_compression_level_is_applied(
    busybox_layout: BusyboxImage, tmp_shm: Path, algorithm: str, low: int, high: int
) -> None:
    plain = tmp_shm / "plain"  # uncompressed, so both levels start from the same bytes
    copy(busybox_layout.reference, f"oci:{plain}", decompress=True)
    sizes = []
    for level in (low, high):
        report = copy(
            f"oci:{plain}",
            f"oci:{tmp_shm / f'{algorithm}-{level}'}",
            compress_format=algorithm,
            compress_level=level,
        )
        layer = json.loads(report.manifest)["layers"][0]
        assert mt.layer_compression(layer["mediaType"]) == algorithm
        sizes.append(layer["size"])
    assert sizes[1] < sizes[0]


def test_zstd_back_to_gzip(busybox_layout: BusyboxImage, tmp_shm: Path) -> None:
    zstd_layout = tmp_shm / "zstd"
    copy(busybox_layout.reference, f"oci:{zstd_layout}", compress_format="zstd")
    report = copy(f"oci:{zstd_layout}", f"oci:{tmp_shm / 'gzip'}", compress_format="gzip")
    manifest = json.loads(report.manifest)
    assert [x["mediaType"] for x in manifest["layers"]] == [mt.OCI_LAYER_GZIP]
    layer = layout_blob(tmp_shm / "gzip", manifest["layers"][0]["digest"])
    assert plain_digest(layer, "gzip") == busybox_layout.diff_ids[0]


@pytest.mark.parametrize("target", ["zstd", "plain"])
def test_corrupt_source_fails_a_conversion_midway(
    tmp_shm: Path, busybox_layout: BusyboxImage, target: str
) -> None:
    # the conversion runs on threads (read/verify, recompress, store): the
    # source's digest mismatch still fails the copy and leaves nothing
    src = tmp_shm / "src"
    shutil.copytree(busybox_layout.layout, src)
    layer = src / "blobs" / "sha256" / busybox_layout.layer_digests[0].hex
    data = bytearray(layer.read_bytes())
    data[-20] ^= 0x01  # inside the deflate stream's last block: decompresses, then mismatches
    layer.write_bytes(bytes(data))
    options: dict[str, Any] = (
        {"compress_format": "zstd"} if target == "zstd" else {"decompress": True}
    )
    with pytest.raises((DigestMismatch, CompressionError)):
        copy(f"oci:{src}:latest", f"oci:{tmp_shm / 'out'}", **options)
    assert not (tmp_shm / "out").exists()


def test_preserve_digests_refuses_before_writing(
    busybox_layout: BusyboxImage, registry: RunningRegistry, unique_repo: str
) -> None:
    dest = f"docker://{registry.host}/{unique_repo}:v1"
    for options in ({"compress_format": "zstd"}, {"manifest_format": mt.DOCKER_V2S2}):
        with pytest.raises(UnsupportedConversion, match="--preserve-digests"):
            copy(busybox_layout.reference, dest, registry.context, preserve_digests=True, **options)
    # refused before a byte moved: the repository does not exist
    assert not registry.repository_dir(unique_repo).exists()
    report = copy(busybox_layout.reference, dest, registry.context, preserve_digests=True)
    assert report.manifest_digest == busybox_layout.manifest_digest


def test_zstd_into_v2s2_is_refused_before_writing(
    busybox_layout: BusyboxImage, registry: RunningRegistry, tmp_shm: Path, unique_repo: str
) -> None:
    dest = f"docker://{registry.host}/{unique_repo}:v1"
    with pytest.raises(UnsupportedConversion, match="zstd"):
        copy(
            busybox_layout.reference,
            dest,
            registry.context,
            compress_format="zstd",
            manifest_format=mt.DOCKER_V2S2,
        )
    # and a source whose layers are zstd already
    zstd_layout = tmp_shm / "zstd"
    copy(busybox_layout.reference, f"oci:{zstd_layout}", compress_format="zstd")
    with pytest.raises(UnsupportedConversion, match="zstd"):
        copy(f"oci:{zstd_layout}", dest, registry.context, manifest_format=mt.DOCKER_V2S2)
    assert not registry.repository_dir(unique_repo).exists()


# --- signatures -------------------------------------------------------------------------


@pytest.fixture
def signed_dir(busybox_layout: BusyboxImage, tmp_shm: Path) -> Path:
    """A dir: copy of busybox with two (opaque) signatures beside it."""
    path = tmp_shm / "signed"
    copy(busybox_layout.reference, f"dir:{path}")
    (path / "signature-1").write_bytes(b"first signature")
    (path / "signature-2").write_bytes(b"second signature")
    return path


def test_signatures_travel_with_an_unchanged_image(signed_dir: Path, tmp_shm: Path) -> None:
    report = copy(f"dir:{signed_dir}", f"dir:{tmp_shm / 'out'}")
    assert report.signatures_written == 2
    assert (tmp_shm / "out" / "signature-2").read_bytes() == b"second signature"


def test_remove_signatures_drops_them(signed_dir: Path, tmp_shm: Path) -> None:
    report = copy(f"dir:{signed_dir}", f"dir:{tmp_shm / 'out'}", remove_signatures=True)
    assert report.signatures_written == 0
    assert not (tmp_shm / "out" / "signature-1").exists()


def test_a_conversion_would_invalidate_signatures(signed_dir: Path, tmp_shm: Path) -> None:
    with pytest.raises(SignatureError, match="--remove-signatures"):
        copy(f"dir:{signed_dir}", f"dir:{tmp_shm / 'out'}", compress_format="zstd")
    assert not (tmp_shm / "out" / "manifest.json").exists()
    copy(
        f"dir:{signed_dir}",
        f"dir:{tmp_shm / 'out'}",
        compress_format="zstd",
        remove_signatures=True,
    )


def test_destination_without_signature_storage_drops_them(
    signed_dir: Path, tmp_shm: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report = copy(f"dir:{signed_dir}", f"oci:{tmp_shm / 'out'}")
    assert report.signatures_written == 0
    assert "dropping 2 signature(s)" in caplog.text


# --- Docker schema 1 ----------------------------------------------------------------------


def _gzip_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def _push_raw(
    registry: RunningRegistry, repository: str, blobs: list[bytes], manifest: bytes
) -> None:
    base = f"{registry.url}/v2/{repository}"
    for blob in {sha256_of(b): b for b in blobs}.values():
        post = urllib.request.Request(f"{base}/blobs/uploads/", method="POST")
        with urllib.request.urlopen(post, timeout=30) as resp:
            location = resp.headers["Location"]
        put = urllib.request.Request(
            f"{location}&digest={sha256_of(blob)}",
            data=blob,
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        urllib.request.urlopen(put, timeout=30).close()
    put = urllib.request.Request(
        f"{base}/manifests/v1",
        data=manifest,
        method="PUT",
        headers={"Content-Type": SCHEMA1_SIGNED},
    )
    urllib.request.urlopen(put, timeout=30).close()


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo")
def test_schema1_is_read_and_converted(
    registry_factory: Callable[..., RunningRegistry], tmp_shm: Path
) -> None:
    registry = registry_factory(
        Variant.PLAIN, extra_config={"compatibility": {"schema1": {"enabled": True}}}
    )
    base_layer = _gzip_tar({"etc/os-release": b"ID=schema1\n"})
    empty_layer = _gzip_tar({})
    top_layer = _gzip_tar({"app/hello.txt": b"hello from schema 1\n"})
    created = "2016-01-02T03:04:05Z"
    layers = [  # newest first
        Schema1Layer(
            top_layer,
            {
                "id": "c" * 64,
                "parent": "b" * 64,
                "created": created,
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": ["GREETING=hello"], "Cmd": ["cat", "/app/hello.txt"]},
                "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD hello.txt /app/"]},
            },
        ),
        Schema1Layer(
            empty_layer,
            {
                "id": "b" * 64,
                "parent": "a" * 64,
                "created": created,
                "throwaway": True,
                "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ENV GREETING=hello"]},
            },
        ),
        Schema1Layer(base_layer, {"id": "a" * 64, "created": created}),
    ]
    manifest = signed_schema1("legacy/app", "v1", "amd64", layers)
    _push_raw(registry, "legacy/app", [x.blob for x in layers], manifest)

    out = tmp_shm / "converted"
    report = copy(f"docker://{registry.host}/legacy/app:v1", f"oci:{out}:v1", registry.context)
    assert report.source_manifest_digest == manifest_digest(manifest)
    converted = json.loads(layout_manifest(out)[0])
    assert converted["mediaType"] == mt.OCI_MANIFEST
    # the empty (throwaway) layer is gone, the others are oldest first
    assert [Digest.parse(x["digest"]) for x in converted["layers"]] == [
        sha256_of(base_layer),
        sha256_of(top_layer),
    ]
    config = json.loads(layout_blob(out, converted["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [
        str(plain_digest(base_layer, "gzip")),
        str(plain_digest(top_layer, "gzip")),
    ]
    assert [bool(h.get("empty_layer")) for h in config["history"]] == [False, True, False]

    # skopeo reads what skiff wrote, and agrees with its own conversion
    env_args = ["--policy", str(_policy(tmp_shm))]
    inspected = json.loads(_run(["skopeo", *env_args, "inspect", f"oci:{out}:v1"]))
    assert inspected["Architecture"] == "amd64" and inspected["Os"] == "linux"
    assert inspected["Env"] == ["GREETING=hello"]
    assert inspected["Layers"] == [str(sha256_of(base_layer)), str(sha256_of(top_layer))]
    theirs = tmp_shm / "skopeo-converted"
    _run(
        [
            "skopeo", *env_args, "copy", "--src-tls-verify=false",
            f"docker://{registry.host}/legacy/app:v1", f"oci:{theirs}:v1",
        ]
    )  # fmt: skip
    their_config = json.loads(
        _run(["skopeo", *env_args, "inspect", "--config", f"oci:{theirs}:v1"])
    )
    assert their_config["rootfs"] == config["rootfs"]
    assert their_config["config"]["Cmd"] == config["config"]["Cmd"]


def _policy(tmp: Path) -> Path:
    path = tmp / "policy.json"
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


def test_schema1_parses_as_such() -> None:
    layer = Schema1Layer(_gzip_tar({"a": b"a"}), {"id": "a" * 64})
    parsed = parse_manifest(signed_schema1("x/y", "t", "amd64", [layer]), SCHEMA1_SIGNED)
    assert not isinstance(parsed, ImageManifest | ImageIndex)
    assert parsed.fs_layers == [layer.digest]
