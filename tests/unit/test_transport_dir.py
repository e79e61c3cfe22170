"""The dir: transport: layout files, signatures, instances, overwrite rules, aborted writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff.config import SystemContext
from skiff.errors import BlobUnknown, ConfigError, ImageError, ImageNotFound, InvalidReference
from skiff.image.transports import parse_image_name
from skiff.image.transports.dir import TRANSPORT, DirReference
from skiff.image.types import BlobInfo, Compression
from skiff.oci import mediatypes as mt
from skiff.testing.localimage import read_image, tiny_image, tiny_index, write_image, write_index

IMAGE_A = tiny_image([{"a.txt": b"a\n"}, {"shared.txt": b"shared\n"}])
IMAGE_B = tiny_image([{"b.txt": b"b\n"}, {"shared.txt": b"shared\n"}], docker=True)
VERSION = b"Directory Transport Version: 1.1\n"


@pytest.fixture
def ctx(tmp_shm: Path) -> SystemContext:
    return SystemContext(tmp_dir=tmp_shm)


def ref(path: Path) -> DirReference:
    parsed = parse_image_name(f"dir:{path}")
    assert isinstance(parsed, DirReference)
    return parsed


def names(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()}


def test_references(tmp_shm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_shm)
    parsed = TRANSPORT.parse_reference("some/dir")
    assert parsed.string_within_transport() == "some/dir"
    assert TRANSPORT.parse_reference(parsed.string_within_transport()) == parsed
    assert parsed.policy_configuration_identity() == f"{tmp_shm}/some/dir"
    assert parsed.policy_configuration_namespaces()[:2] == [f"{tmp_shm}/some", str(tmp_shm)]
    assert parsed.docker_reference() is None
    with pytest.raises(InvalidReference):
        TRANSPORT.parse_reference("")
    with pytest.raises(ConfigError):
        TRANSPORT.validate_policy_scope("relative")


def test_write_then_read_back_with_signatures(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "image"
    sigs = [b"first signature", b"second signature"]
    dest = ref(path).new_image_destination(ctx)
    assert dest.supports_signatures()
    assert dest.supported_manifest_types() == []
    assert dest.desired_layer_compression is Compression.PRESERVE
    write_image(dest, IMAGE_A, signatures=sigs)

    assert names(path) == {
        "version",
        "manifest.json",
        "signature-1",
        "signature-2",
        *(d.hex for d in IMAGE_A.blobs()),
    }
    assert (path / "version").read_bytes() == VERSION
    assert (path / "manifest.json").read_bytes() == IMAGE_A.manifest

    source = ref(path).new_image_source(ctx)
    try:
        back = read_image(source)
        assert source.get_signatures() == sigs
    finally:
        source.close()
    assert back.manifest == IMAGE_A.manifest
    assert back.media_type == mt.OCI_MANIFEST
    assert back.blobs == IMAGE_A.blobs()


def test_docker_manifest_type_is_guessed(tmp_shm: Path, ctx: SystemContext) -> None:
    write_image(ref(tmp_shm / "d").new_image_destination(ctx), IMAGE_B)
    source = ref(tmp_shm / "d").new_image_source(ctx)
    try:
        assert source.get_manifest() == (IMAGE_B.manifest, mt.DOCKER_V2S2)
        assert source.get_signatures() == []
    finally:
        source.close()


def test_index_instances_and_their_signatures(tmp_shm: Path, ctx: SystemContext) -> None:
    amd = tiny_image([{"f": b"amd64\n"}], architecture="amd64")
    arm = tiny_image([{"f": b"arm64\n"}], architecture="arm64")
    index = tiny_index([amd, arm])
    path = tmp_shm / "multi"
    write_index(
        ref(path).new_image_destination(ctx),
        index,
        [amd, arm],
        signatures={None: [b"list sig"], arm.manifest_digest: [b"arm sig"]},
    )
    assert {
        f"{amd.manifest_digest.hex}.manifest.json",
        f"{arm.manifest_digest.hex}.manifest.json",
        f"{arm.manifest_digest.hex}.signature-1",
        "signature-1",
    } <= names(path)
    source = ref(path).new_image_source(ctx)
    try:
        assert source.get_manifest() == (index, mt.OCI_INDEX)
        assert source.get_manifest(arm.manifest_digest) == (arm.manifest, mt.OCI_MANIFEST)
        assert read_image(source, amd.manifest_digest).blobs == amd.blobs()
        assert source.get_signatures(arm.manifest_digest) == [b"arm sig"]
        assert source.get_signatures(amd.manifest_digest) == []
        assert source.get_signatures() == [b"list sig"]
        with pytest.raises(ImageNotFound, match="instance"):
            source.get_manifest(IMAGE_A.manifest_digest)
    finally:
        source.close()


def test_overwriting_a_dir_image_removes_the_old_one(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "image"
    write_image(ref(path).new_image_destination(ctx), IMAGE_A, signatures=[b"a1", b"a2"])
    write_image(ref(path).new_image_destination(ctx), IMAGE_B, signatures=[b"b1"])
    assert names(path) == {
        "version",
        "manifest.json",
        "signature-1",
        *(d.hex for d in IMAGE_B.blobs()),
    }
    source = ref(path).new_image_source(ctx)
    try:
        assert read_image(source).blobs == IMAGE_B.blobs()
        assert source.get_signatures() == [b"b1"]
    finally:
        source.close()


def test_aborted_write_keeps_the_previous_image(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "image"
    write_image(ref(path).new_image_destination(ctx), IMAGE_A, signatures=[b"a1"])
    before = {name: (path / name).read_bytes() for name in names(path)}
    write_image(ref(path).new_image_destination(ctx), IMAGE_B, signatures=[b"b1"], commit=False)
    assert {name: (path / name).read_bytes() for name in names(path)} == before


def test_aborted_write_removes_a_directory_it_created(tmp_shm: Path, ctx: SystemContext) -> None:
    write_image(ref(tmp_shm / "a" / "b").new_image_destination(ctx), IMAGE_A, commit=False)
    assert names(tmp_shm) == set()


def test_refuses_foreign_directories_and_files(tmp_shm: Path, ctx: SystemContext) -> None:
    home = tmp_shm / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(InvalidReference, match="not empty"):
        ref(home).new_image_destination(ctx)
    (home / "version").write_text("something else\n")
    with pytest.raises(InvalidReference, match="not empty"):
        ref(home).new_image_destination(ctx)
    assert names(home) == {"thesis.tex", "version"}
    (tmp_shm / "file").write_text("x")
    with pytest.raises(InvalidReference, match="not a directory"):
        ref(tmp_shm / "file").new_image_destination(ctx)
    (tmp_shm / "empty").mkdir()
    write_image(ref(tmp_shm / "empty").new_image_destination(ctx), IMAGE_A)
    assert (tmp_shm / "empty" / "manifest.json").read_bytes() == IMAGE_A.manifest


def test_missing_things(tmp_shm: Path, ctx: SystemContext) -> None:
    with pytest.raises(ImageNotFound, match="does not exist"):
        ref(tmp_shm / "nowhere").new_image_source(ctx)
    (tmp_shm / "empty").mkdir()
    source = ref(tmp_shm / "empty").new_image_source(ctx)
    with pytest.raises(ImageNotFound, match=r"manifest\.json is missing"):
        source.get_manifest()
    path = tmp_shm / "image"
    write_image(ref(path).new_image_destination(ctx), IMAGE_A)
    layer = IMAGE_A.layer_digests[0]
    (path / layer.hex).unlink()
    source = ref(path).new_image_source(ctx)
    with pytest.raises(BlobUnknown) as info:
        source.get_blob(BlobInfo(layer, -1))
    assert str(layer) in info.value.message and str(path) in info.value.message
    with pytest.raises(ImageError, match="not supported"):
        ref(path).delete_image(ctx)
