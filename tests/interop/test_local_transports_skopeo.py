"""oci:, oci-archive:, docker-archive: and dir: against skopeo and podman from Debian.

Both directions, on the busybox image of the shared fixture: what skopeo
(and podman) write, skiff's sources read with every digest verified; what
skiff's destinations write, skopeo inspects and copies and podman loads.
The peers run with a private policy.json and podman with a private store,
so nothing on the host is read or changed.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from skiff.config import SystemContext
from skiff.image.transports import parse_image_name
from skiff.image.transports.docker_archive import DockerArchiveWriter
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, sha256_of
from skiff.oci.reference import parse_normalized_named
from skiff.testing.busybox import BusyboxImage
from skiff.testing.localimage import (
    ReadBack,
    TinyImage,
    read_image,
    tiny_image,
    tiny_index,
    write_image,
    write_index,
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]


@pytest.fixture
def ctx(tmp_shm: Path) -> SystemContext:
    return SystemContext(tmp_dir=tmp_shm)


@pytest.fixture
def policy(tmp_shm: Path) -> Path:
    path = tmp_shm / "policy.json"
    path.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return path


def run(*argv: str | Path) -> str:
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{argv} failed ({result.returncode}):\n{result.stderr}"
    return result.stdout


def skopeo(policy: Path, *args: str | Path) -> str:
    return run("skopeo", "--policy", policy, *args)


def podman(store: Path, *args: str | Path) -> str:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    return run(
        "podman",
        "--root",
        store / "root",
        "--runroot",
        store / "run",
        "--storage-driver",
        "vfs",
        *args,
    )


def read_ref(reference: str, ctx: SystemContext) -> ReadBack:
    source = parse_image_name(reference).new_image_source(ctx)
    try:
        return read_image(source)
    finally:
        source.close()


def busybox_image(busybox: BusyboxImage) -> TinyImage:
    """The fixture's image as stored: OCI manifest, gzip layers."""
    return TinyImage(
        config=busybox.config_bytes(),
        layers=tuple(busybox.blob_path(d).read_bytes() for d in busybox.layer_digests),
        diff_ids=busybox.diff_ids,
        manifest=busybox.manifest_bytes(),
        media_type=mt.OCI_MANIFEST,
        layer_media_type=mt.OCI_LAYER_GZIP,
    )


def busybox_docker_image(busybox: BusyboxImage) -> TinyImage:
    """The same image as the copy engine hands it to docker-archive: v2s2, uncompressed."""
    config = busybox.config_bytes()
    layers = tuple(
        gzip.decompress(busybox.blob_path(d).read_bytes()) for d in busybox.layer_digests
    )
    assert tuple(sha256_of(x) for x in layers) == busybox.diff_ids
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_V2S2,
            "config": {
                "mediaType": mt.DOCKER_CONFIG,
                "size": len(config),
                "digest": str(sha256_of(config)),
            },
            "layers": [
                {"mediaType": mt.DOCKER_LAYER, "size": len(x), "digest": str(sha256_of(x))}
                for x in layers
            ],
        }
    ).encode()
    return TinyImage(config, layers, busybox.diff_ids, manifest, mt.DOCKER_V2S2, mt.DOCKER_LAYER)


def expected_blobs(busybox: BusyboxImage) -> set[Digest]:
    return {busybox.config_digest, *busybox.layer_digests}


# --- skopeo and podman write, skiff reads ----------------------------------------------


@pytest.mark.parametrize("kind", ["dir", "oci", "oci-archive"])
def test_skiff_reads_what_skopeo_wrote(
    kind: str, busybox_layout: BusyboxImage, tmp_shm: Path, policy: Path, ctx: SystemContext
) -> None:
    target = {
        "dir": f"dir:{tmp_shm}/copy",
        "oci": f"oci:{tmp_shm}/copy:v1",
        "oci-archive": f"oci-archive:{tmp_shm}/copy.tar:v1",
    }[kind]
    skopeo(policy, "copy", "-q", busybox_layout.reference, target)

    back = read_ref(target, ctx)
    raw = skopeo(policy, "inspect", "--raw", target).encode()
    assert back.manifest == raw
    (tmp_shm / "m.json").write_bytes(back.manifest)
    assert (
        str(sha256_of(back.manifest))
        == run("skopeo", "manifest-digest", tmp_shm / "m.json").strip()
    )
    assert sha256_of(back.manifest) == busybox_layout.manifest_digest
    assert back.media_type == mt.OCI_MANIFEST
    assert set(back.blobs) == expected_blobs(busybox_layout)


def test_skiff_reads_a_skopeo_docker_archive(
    busybox_layout: BusyboxImage, tmp_shm: Path, policy: Path, ctx: SystemContext
) -> None:
    path = tmp_shm / "saved.tar"
    skopeo(policy, "copy", "-q", busybox_layout.reference, f"docker-archive:{path}:busybox:latest")
    theirs = json.loads(skopeo(policy, "inspect", "--raw", f"docker-archive:{path}"))

    back = read_ref(f"docker-archive:{path}:busybox", ctx)
    ours = json.loads(back.manifest)
    assert back.media_type == mt.DOCKER_V2S2
    assert ours["config"] == theirs["config"]
    assert ours["config"]["digest"] == str(busybox_layout.config_digest)
    # same digests and sizes; skopeo labels the uncompressed layers ".tar.gzip", skiff does not
    assert [(x["digest"], x["size"]) for x in ours["layers"]] == [
        (x["digest"], x["size"]) for x in theirs["layers"]
    ]
    assert [x["digest"] for x in ours["layers"]] == [str(d) for d in busybox_layout.diff_ids]
    assert {x["mediaType"] for x in ours["layers"]} == {mt.DOCKER_LAYER}
    assert set(back.blobs) == {busybox_layout.config_digest, *busybox_layout.diff_ids}


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_skiff_reads_podman_save(
    fmt: str, busybox_layout: BusyboxImage, tmp_shm: Path, ctx: SystemContext
) -> None:
    store = tmp_shm / "podman"
    podman(store, "pull", "-q", busybox_layout.reference)
    podman(store, "tag", f"{busybox_layout.layout.name}:latest", "quay.io/skiff/busybox:1")
    path = tmp_shm / "saved.tar"
    podman(store, "save", "-q", "--format", fmt, "-o", path, "quay.io/skiff/busybox:1")

    if fmt == "docker-archive":
        back = read_ref(f"docker-archive:{path}:quay.io/skiff/busybox:1", ctx)
        assert json.loads(back.manifest)["config"]["digest"] == str(busybox_layout.config_digest)
        assert set(back.blobs) == {busybox_layout.config_digest, *busybox_layout.diff_ids}
    else:
        back = read_ref(f"oci-archive:{path}", ctx)
        assert busybox_layout.config_digest in back.blobs
        assert len(back.blobs) == 1 + len(busybox_layout.layer_digests)


def test_skiff_reads_a_podman_multi_image_archive(
    busybox_layout: BusyboxImage, tmp_shm: Path, ctx: SystemContext
) -> None:
    store = tmp_shm / "podman"
    other = tmp_shm / "other"
    write_image(
        parse_image_name(f"oci:{other}:latest").new_image_destination(ctx),
        tiny_image([{"hello.txt": b"hello\n"}]),
    )
    podman(store, "pull", "-q", busybox_layout.reference)
    podman(store, "pull", "-q", f"oci:{other}:latest")
    podman(store, "tag", f"{busybox_layout.layout.name}:latest", "skiff/busybox:1")
    podman(store, "tag", "other:latest", "skiff/other:1")
    path = tmp_shm / "multi.tar"
    podman(store, "save", "-q", "-m", "-o", path, "skiff/busybox:1", "skiff/other:1")

    from skiff.image.transports.docker_archive import DockerArchiveReader

    with DockerArchiveReader(str(path), ctx) as reader:
        tags = sorted(str(r.tag) for refs in reader.list() for r in refs)
        assert tags == ["localhost/skiff/busybox:1", "localhost/skiff/other:1"]
    back = read_ref(f"docker-archive:{path}:localhost/skiff/busybox:1", ctx)
    assert busybox_layout.config_digest in back.blobs


def test_skiff_reads_an_index_skopeo_copied_to_dir(
    tmp_shm: Path, policy: Path, ctx: SystemContext
) -> None:
    amd = tiny_image([{"f": b"amd64\n"}], architecture="amd64")
    arm = tiny_image([{"f": b"arm64\n"}], architecture="arm64")
    index = tiny_index([amd, arm])
    write_index(
        parse_image_name(f"oci:{tmp_shm}/layout:multi").new_image_destination(ctx),
        index,
        [amd, arm],
    )
    skopeo(policy, "copy", "-q", "--all", f"oci:{tmp_shm}/layout:multi", f"dir:{tmp_shm}/d")
    assert f"{arm.manifest_digest.hex}.manifest.json" in {p.name for p in (tmp_shm / "d").iterdir()}
    source = parse_image_name(f"dir:{tmp_shm}/d").new_image_source(ctx)
    try:
        assert source.get_manifest() == (index, mt.OCI_INDEX)
        assert read_image(source, arm.manifest_digest).blobs == arm.blobs()
        assert read_image(source, amd.manifest_digest).blobs == amd.blobs()
    finally:
        source.close()


def test_shared_blob_dir_written_by_skopeo(
    busybox_layout: BusyboxImage, tmp_shm: Path, policy: Path
) -> None:
    shared = tmp_shm / "shared"
    skopeo(
        policy,
        "copy",
        "-q",
        "--dest-shared-blob-dir",
        shared,
        busybox_layout.reference,
        f"oci:{tmp_shm}/layout:x",
    )
    assert not (tmp_shm / "layout" / "blobs" / "sha256").exists() or not any(
        (tmp_shm / "layout" / "blobs" / "sha256").iterdir()
    )
    ctx = SystemContext(tmp_dir=tmp_shm, oci_shared_blob_dir=shared)
    back = read_ref(f"oci:{tmp_shm}/layout:x", ctx)
    assert set(back.blobs) == expected_blobs(busybox_layout)


# --- skiff writes, skopeo and podman read -----------------------------------------------


@pytest.mark.parametrize("kind", ["dir", "oci", "oci-archive"])
def test_skopeo_reads_what_skiff_wrote(
    kind: str, busybox_layout: BusyboxImage, tmp_shm: Path, policy: Path, ctx: SystemContext
) -> None:
    target = {
        "dir": f"dir:{tmp_shm}/out",
        "oci": f"oci:{tmp_shm}/out:v1",
        "oci-archive": f"oci-archive:{tmp_shm}/out.tar:v1",
    }[kind]
    image = busybox_image(busybox_layout)
    write_image(parse_image_name(target).new_image_destination(ctx), image)

    assert skopeo(policy, "inspect", "--raw", target).encode() == image.manifest
    inspected = json.loads(skopeo(policy, "inspect", target))
    assert inspected["Digest"] == str(busybox_layout.manifest_digest)
    assert inspected["Layers"] == [str(d) for d in busybox_layout.layer_digests]

    skopeo(policy, "copy", "-q", target, f"dir:{tmp_shm}/again")
    again = tmp_shm / "again"
    assert (again / "manifest.json").read_bytes() == image.manifest
    for digest, blob in image.blobs().items():
        assert sha256_of((again / digest.hex).read_bytes()) == digest == sha256_of(blob)


def test_skopeo_reads_a_skiff_docker_archive_and_podman_loads_it(
    busybox_layout: BusyboxImage, tmp_shm: Path, policy: Path, ctx: SystemContext
) -> None:
    path = tmp_shm / "saved.tar"
    image = busybox_docker_image(busybox_layout)
    write_image(
        parse_image_name(f"docker-archive:{path}:busybox:1.36").new_image_destination(ctx), image
    )

    theirs = json.loads(skopeo(policy, "inspect", "--raw", f"docker-archive:{path}:busybox:1.36"))
    assert theirs["config"]["digest"] == str(busybox_layout.config_digest)
    assert [x["digest"] for x in theirs["layers"]] == [str(d) for d in busybox_layout.diff_ids]
    skopeo(policy, "copy", "-q", f"docker-archive:{path}", f"oci:{tmp_shm}/layout:x")
    assert json.loads(
        skopeo(policy, "inspect", "--config", "--raw", f"oci:{tmp_shm}/layout:x")
    ) == (json.loads(image.config))

    store = tmp_shm / "podman"
    podman(store, "load", "-q", "-i", path)
    listed = json.loads(podman(store, "images", "--format", "json"))
    assert [(i["Id"], i["Names"]) for i in listed] == [
        (busybox_layout.config_digest.hex, ["docker.io/library/busybox:1.36"])
    ]


def test_podman_loads_a_skiff_multi_image_archive(
    busybox_layout: BusyboxImage, tmp_shm: Path, policy: Path, ctx: SystemContext
) -> None:
    busybox = busybox_docker_image(busybox_layout)
    hello = tiny_image([{"hello.txt": b"hello\n"}], docker=True, compress=False)
    path = tmp_shm / "multi.tar"
    with DockerArchiveWriter(str(path), ctx) as writer:
        tags = [parse_normalized_named("busybox:1"), parse_normalized_named("busybox:latest")]
        write_image(writer.new_reference(tags).new_image_destination(ctx), busybox)
        hello_tag = [parse_normalized_named("quay.io/skiff/hello:1")]
        write_image(writer.new_reference(hello_tag).new_image_destination(ctx), hello)
        writer.commit()

    inspected = json.loads(
        skopeo(policy, "inspect", f"docker-archive:{path}:quay.io/skiff/hello:1")
    )
    assert inspected["Layers"] == [str(d) for d in hello.diff_ids]

    store = tmp_shm / "podman"
    podman(store, "load", "-q", "-i", path)
    listed = json.loads(podman(store, "images", "--format", "json"))
    names = {i["Id"]: sorted(i["Names"]) for i in listed}
    assert names == {
        busybox_layout.config_digest.hex: [
            "docker.io/library/busybox:1",
            "docker.io/library/busybox:latest",
        ],
        hello.config_digest.hex: ["quay.io/skiff/hello:1"],
    }


def test_skopeo_copies_skiff_dir_signatures(
    busybox_layout: BusyboxImage, tmp_shm: Path, policy: Path, ctx: SystemContext
) -> None:
    signatures = [b"\x89simple-signing blob one", b"\x89simple-signing blob two"]
    write_image(
        parse_image_name(f"dir:{tmp_shm}/signed").new_image_destination(ctx),
        busybox_image(busybox_layout),
        signatures=signatures,
    )
    skopeo(policy, "copy", "-q", f"dir:{tmp_shm}/signed", f"dir:{tmp_shm}/copied")
    copied = tmp_shm / "copied"
    assert [(copied / f"signature-{i}").read_bytes() for i in (1, 2)] == signatures
    assert not (copied / "signature-3").exists()
