"""The oci-archive: transport: archives written and read back, unsafe and broken archives."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from skiff.config import SystemContext
from skiff.errors import (
    BlobUnknown,
    ImageError,
    ImageNotFound,
    InvalidArchive,
    InvalidReference,
    UnsafeArchive,
)
from skiff.image.transports import parse_image_name
from skiff.image.transports.oci_archive import TRANSPORT, OCIArchiveReference
from skiff.image.types import BlobInfo
from skiff.oci import mediatypes as mt
from skiff.testing.localimage import read_image, tiny_image, tiny_index, write_image, write_index

IMAGE_A = tiny_image([{"a.txt": b"a\n"}])
IMAGE_B = tiny_image([{"b.txt": b"b\n"}])


@pytest.fixture
def ctx(tmp_shm: Path) -> SystemContext:
    return SystemContext(tmp_dir=tmp_shm)


def archive(path: Path, image: str = "") -> OCIArchiveReference:
    ref = parse_image_name(f"oci-archive:{path}:{image}")
    assert isinstance(ref, OCIArchiveReference)
    return ref


def members(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def test_reference_syntax_matches_oci() -> None:
    ref = TRANSPORT.parse_reference("/x/file.tar:name:tag")
    assert (ref.path, ref.image) == ("/x/file.tar", "name:tag")
    assert TRANSPORT.parse_reference("/x/file.tar:@1").source_index == 1
    assert ref.policy_configuration_identity() == "/x/file.tar"
    assert ref.policy_configuration_namespaces() == ["/x"]
    with pytest.raises(InvalidReference):
        TRANSPORT.parse_reference("/x/file.tar:-bad")


def test_write_then_read_back(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "image.tar"
    write_image(archive(path, "v1").new_image_destination(ctx), IMAGE_A)

    names = members(path)
    assert names[:3] == ["oci-layout", "index.json", "blobs"]
    assert sorted(n for n in names if n.startswith("blobs/sha256/")) == sorted(
        f"blobs/sha256/{d.hex}" for d in [*IMAGE_A.blobs(), IMAGE_A.manifest_digest]
    )
    with tarfile.open(path) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        assert all(m.uid == 0 and m.mtime == 0 for m in tar.getmembers())
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "v1"}
    assert [p.name for p in tmp_shm.iterdir()] == ["image.tar"], "temporary files left behind"

    source = archive(path, "v1").new_image_source(ctx)
    try:
        back = read_image(source)
        assert source.has_thread_safe_get_blob
    finally:
        source.close()
    assert back.manifest == IMAGE_A.manifest
    assert back.media_type == mt.OCI_MANIFEST
    assert back.blobs == IMAGE_A.blobs()
    assert [p.name for p in tmp_shm.iterdir()] == ["image.tar"], "reading extracted files"


def test_same_image_gives_the_same_archive_bytes(tmp_shm: Path, ctx: SystemContext) -> None:
    write_image(archive(tmp_shm / "one.tar", "x").new_image_destination(ctx), IMAGE_A)
    write_image(archive(tmp_shm / "two.tar", "x").new_image_destination(ctx), IMAGE_A)
    assert (tmp_shm / "one.tar").read_bytes() == (tmp_shm / "two.tar").read_bytes()


def test_an_existing_archive_is_replaced(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "image.tar"
    write_image(archive(path, "a").new_image_destination(ctx), IMAGE_A)
    write_image(archive(path, "b").new_image_destination(ctx), IMAGE_B)
    source = archive(path).new_image_source(ctx)  # the only image: b
    try:
        assert source.get_manifest()[0] == IMAGE_B.manifest
    finally:
        source.close()


def test_close_without_commit_touches_nothing(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "image.tar"
    write_image(archive(path, "a").new_image_destination(ctx), IMAGE_A, commit=False)
    assert list(tmp_shm.iterdir()) == []
    write_image(archive(path, "a").new_image_destination(ctx), IMAGE_A)
    before = path.read_bytes()
    write_image(archive(path, "b").new_image_destination(ctx), IMAGE_B, commit=False)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_shm.iterdir()] == ["image.tar"]


def test_index_round_trip(tmp_shm: Path, ctx: SystemContext) -> None:
    amd = tiny_image([{"f": b"amd64\n"}], architecture="amd64")
    arm = tiny_image([{"f": b"arm64\n"}], architecture="arm64")
    index = tiny_index([amd, arm])
    path = tmp_shm / "multi.tar"
    write_index(archive(path).new_image_destination(ctx), index, [amd, arm])
    source = archive(path).new_image_source(ctx)
    try:
        assert source.get_manifest() == (index, mt.OCI_INDEX)
        assert read_image(source, arm.manifest_digest).blobs == arm.blobs()
    finally:
        source.close()


def test_compressed_archive_is_read(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "image.tar"
    write_image(archive(path, "a").new_image_destination(ctx), IMAGE_A)
    gz = tmp_shm / "image.tar.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    source = archive(gz, "a").new_image_source(ctx)
    try:
        assert read_image(source).blobs == IMAGE_A.blobs()
    finally:
        source.close()


def _tar_with(path: Path, entries: list[tarfile.TarInfo], data: bytes = b"{}") -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info in entries:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)


@pytest.mark.parametrize("name", ["../escape", "blobs/../../escape", "/etc/passwd"])
def test_member_names_that_escape_are_refused(tmp_shm: Path, ctx: SystemContext, name: str) -> None:
    path = tmp_shm / "evil.tar"
    _tar_with(path, [tarfile.TarInfo("index.json"), tarfile.TarInfo(name)])
    with pytest.raises(UnsafeArchive) as info:
        archive(path).new_image_source(ctx)
    assert name in info.value.message


def test_links_and_devices_are_refused(tmp_shm: Path, ctx: SystemContext) -> None:
    link = tarfile.TarInfo("index.json")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    _tar_with(tmp_shm / "link.tar", [link])
    with pytest.raises(UnsafeArchive, match="link"):
        archive(tmp_shm / "link.tar").new_image_source(ctx)
    device = tarfile.TarInfo("blobs/dev")
    device.type = tarfile.CHRTYPE
    _tar_with(tmp_shm / "dev.tar", [device])
    with pytest.raises(UnsafeArchive, match="special file"):
        archive(tmp_shm / "dev.tar").new_image_source(ctx)


def test_broken_and_missing_archives(tmp_shm: Path, ctx: SystemContext) -> None:
    with pytest.raises(ImageNotFound, match="no such file"):
        archive(tmp_shm / "missing.tar").new_image_source(ctx)
    (tmp_shm / "text.tar").write_bytes(b"this is not a tar archive, just text" * 20)
    with pytest.raises(InvalidArchive):
        archive(tmp_shm / "text.tar").new_image_source(ctx)

    path = tmp_shm / "image.tar"
    write_image(archive(path, "a").new_image_destination(ctx), IMAGE_A)
    data = path.read_bytes()
    (tmp_shm / "truncated.tar").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidArchive, match="unexpected end of data"):
        archive(tmp_shm / "truncated.tar", "a").new_image_source(ctx)
    (tmp_shm / "truncated.tar.gz").write_bytes(gzip.compress(data)[:200])
    with pytest.raises(InvalidArchive, match="decompress"):
        archive(tmp_shm / "truncated.tar.gz", "a").new_image_source(ctx)


def test_not_an_oci_archive(tmp_shm: Path, ctx: SystemContext) -> None:
    _tar_with(tmp_shm / "docker.tar", [tarfile.TarInfo("manifest.json")], b"[]")
    with pytest.raises(ImageNotFound) as info:
        archive(tmp_shm / "docker.tar").new_image_source(ctx)
    assert "docker-archive" in (info.value.hint or "")


def test_missing_blob_in_archive(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "image.tar"
    write_image(archive(path, "a").new_image_destination(ctx), IMAGE_A)
    layer = IMAGE_A.layer_digests[0]
    stripped = tmp_shm / "stripped.tar"
    with tarfile.open(path) as src, tarfile.open(stripped, "w") as dst:
        for member in src.getmembers():
            if not member.name.endswith(layer.hex):
                dst.addfile(member, src.extractfile(member) if member.isreg() else None)
    source = archive(stripped, "a").new_image_source(ctx)
    try:
        with pytest.raises(BlobUnknown) as info:
            source.get_blob(BlobInfo(layer, -1))
    finally:
        source.close()
    assert str(layer) in info.value.message
    assert str(stripped) in info.value.message


def test_bad_destinations(tmp_shm: Path, ctx: SystemContext) -> None:
    (tmp_shm / "dir").mkdir()
    with pytest.raises(InvalidReference, match="is a directory"):
        archive(tmp_shm / "dir").new_image_destination(ctx)
    with pytest.raises(ImageError, match="does not exist"):
        archive(tmp_shm / "no" / "such" / "x.tar").new_image_destination(ctx)
    with pytest.raises(InvalidReference, match="source index"):
        archive(tmp_shm / "x.tar", "@0").new_image_destination(ctx)
    with pytest.raises(ImageError, match="not supported"):
        archive(tmp_shm / "x.tar").delete_image(ctx)
