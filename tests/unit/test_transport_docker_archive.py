"""The docker-archive: transport: references, archives written and read back, foreign layouts."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from skiff.config import SystemContext
from skiff.errors import (
    BlobUnknown,
    ConfigError,
    DigestMismatch,
    ImageError,
    ImageNotFound,
    InvalidReference,
    ManifestError,
    UnsafeArchive,
    UnsupportedConversion,
)
from skiff.image.transports import parse_image_name
from skiff.image.transports.docker_archive import (
    TRANSPORT,
    DockerArchiveReader,
    DockerArchiveReference,
    DockerArchiveWriter,
)
from skiff.image.types import BlobInfo, Compression
from skiff.oci import mediatypes as mt
from skiff.oci.digest import VerifyingReader, sha256_of
from skiff.oci.reference import parse_normalized_named
from skiff.testing.localimage import (
    TinyImage,
    put_image_blobs,
    read_blob,
    read_image,
    tiny_image,
    write_image,
)

IMAGE_A = tiny_image([{"a.txt": b"a\n"}, {"shared.txt": b"shared\n"}], docker=True, compress=False)
IMAGE_B = tiny_image([{"b.txt": b"b\n"}, {"shared.txt": b"shared\n"}], docker=True, compress=False)


@pytest.fixture
def ctx(tmp_shm: Path) -> SystemContext:
    return SystemContext(tmp_dir=tmp_shm)


def archive(path: Path, rest: str = "") -> DockerArchiveReference:
    ref = parse_image_name(f"docker-archive:{path}{':' + rest if rest else ''}")
    assert isinstance(ref, DockerArchiveReference)
    return ref


def tar_members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def tar_json(path: Path, name: str) -> Any:
    with tarfile.open(path) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return json.load(member)


def make_tar(path: Path, entries: list[tuple[str, bytes | str]]) -> None:
    """Regular files (bytes) and symlinks (str target), in order."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))


def read_all(ref: DockerArchiveReference, ctx: SystemContext):  # type: ignore[no-untyped-def]
    source = ref.new_image_source(ctx)
    try:
        return read_image(source)
    finally:
        source.close()


# --- references ------------------------------------------------------------------


def test_parse_references() -> None:
    ref = TRANSPORT.parse_reference("/x/f.tar:busybox")
    assert ref.path == "/x/f.tar"
    assert str(ref.tag) == "docker.io/library/busybox:latest"
    assert ref.string_within_transport() == "/x/f.tar:docker.io/library/busybox:latest"
    assert ref.docker_reference() == ref.tag
    assert TRANSPORT.parse_reference("/x/f.tar:quay.io/a/b:1.0").tag == parse_normalized_named(
        "quay.io/a/b:1.0"
    )
    indexed = TRANSPORT.parse_reference("/x/f.tar:@2")
    assert (indexed.tag, indexed.source_index) == (None, 2)
    assert indexed.string_within_transport() == "/x/f.tar:@2"
    plain = TRANSPORT.parse_reference("/x/f.tar")
    assert plain.string_within_transport() == "/x/f.tar"
    for text in ("/x/f.tar:busybox", "/x/f.tar:@2", "/x/f.tar"):
        once = TRANSPORT.parse_reference(text)
        assert TRANSPORT.parse_reference(once.string_within_transport()) == once
    assert ref.policy_configuration_identity() == ""
    assert ref.policy_configuration_namespaces() == []
    with pytest.raises(ConfigError):
        TRANSPORT.validate_policy_scope("/x")


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":busybox",
        "/f.tar:",
        "/f.tar:@x",
        "/f.tar:@-1",
        "/f.tar:Busybox",
        f"/f.tar:b@sha256:{'a' * 64}",
    ],
)
def test_bad_references(text: str) -> None:
    with pytest.raises(InvalidReference):
        TRANSPORT.parse_reference(text)


# --- written by skiff ---------------------------------------------------------------


def test_write_then_read_back(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "image.tar"
    write_image(archive(path, "busybox:1").new_image_destination(ctx), IMAGE_A)

    members = tar_members(path)
    layers = [f"{d.hex}.tar" for d in IMAGE_A.layer_digests]
    assert tar_json(path, "manifest.json") == [
        {
            "Config": f"{IMAGE_A.config_digest.hex}.json",
            "RepoTags": ["docker.io/library/busybox:1"],
            "Layers": layers,
        }
    ]
    top = [n.split("/")[0] for n, m in members.items() if n.endswith("/layer.tar") and m.issym()]
    assert len(top) == 2
    repositories = tar_json(path, "repositories")
    assert repositories == {
        "docker.io/library/busybox": {"1": repositories["docker.io/library/busybox"]["1"]}
    }
    top_id = repositories["docker.io/library/busybox"]["1"]
    assert members[f"{top_id}/layer.tar"].linkname == f"../{layers[1]}"
    top_json = tar_json(path, f"{top_id}/json")
    assert top_json["id"] == top_id and top_json["os"] == "linux"
    assert top_json["parent"] in top
    assert [p.name for p in tmp_shm.iterdir()] == ["image.tar"]

    for rest in ("busybox:1", "@0", ""):
        back = read_all(archive(path, rest), ctx)
        assert back.media_type == mt.DOCKER_V2S2
        assert back.blobs == IMAGE_A.blobs()
    back = read_all(archive(path), ctx)
    manifest = json.loads(back.manifest)
    assert manifest["config"]["digest"] == str(IMAGE_A.config_digest)
    assert [(x["mediaType"], x["digest"]) for x in manifest["layers"]] == [
        (mt.DOCKER_LAYER, str(d)) for d in IMAGE_A.diff_ids
    ]
    assert back.manifest.startswith(b'{"schemaVersion":2,"mediaType"'), "Go-style compact JSON"


def test_several_images_in_one_archive(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "multi.tar"
    a1, a2, b = (parse_normalized_named(t) for t in ("a:1", "a:2", "quay.io/x/b:latest"))
    with DockerArchiveWriter(str(path), ctx) as writer:
        write_image(writer.new_reference([a1]).new_image_destination(ctx), IMAGE_A)
        write_image(writer.new_reference([b]).new_image_destination(ctx), IMAGE_B)
        write_image(writer.new_reference([a2]).new_image_destination(ctx), IMAGE_A)
        assert not path.exists(), "visible before the writer commits"
        writer.commit()

    names = list(tar_members(path))
    shared = f"{IMAGE_A.layer_digests[1].hex}.tar"
    assert names.count(shared) == 1
    items = tar_json(path, "manifest.json")
    assert [i["RepoTags"] for i in items] == [
        ["docker.io/library/a:1", "docker.io/library/a:2"],
        ["quay.io/x/b:latest"],
    ]

    with DockerArchiveReader(str(path), ctx) as reader:
        listed = reader.list()
        assert [[str(r.tag) for r in refs] for refs in listed] == [
            ["docker.io/library/a:1", "docker.io/library/a:2"],
            ["quay.io/x/b:latest"],
        ]
        for refs, image in zip(listed, (IMAGE_A, IMAGE_B), strict=True):
            source = refs[0].new_image_source(ctx)
            try:
                assert read_image(source).blobs == image.blobs()
            finally:
                source.close()
    assert read_all(archive(path, "quay.io/x/b"), ctx).blobs == IMAGE_B.blobs()
    with pytest.raises(ImageNotFound, match="holds 2 images"):
        archive(path).new_image_source(ctx)
    with pytest.raises(ImageNotFound, match="no image tagged c:latest") as info:
        archive(path, "c").new_image_source(ctx)
    assert "quay.io/x/b:latest" in (info.value.hint or "")


def test_untagged_image_is_listed_by_index(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "image.tar"
    write_image(archive(path).new_image_destination(ctx), IMAGE_A)
    assert tar_json(path, "manifest.json")[0]["RepoTags"] == []
    assert tar_json(path, "repositories") == {}
    with DockerArchiveReader(str(path), ctx) as reader:
        [[ref]] = reader.list()
        assert ref.source_index == 0


def test_layers_of_unknown_size_are_spooled(tmp_shm: Path, ctx: SystemContext) -> None:
    """What the copy engine does when it decompresses: no digest, no size in advance."""
    path = tmp_shm / "image.tar"
    dest = archive(path, "x").new_image_destination(ctx)
    try:
        assert dest.desired_layer_compression is Compression.DECOMPRESS
        assert dest.supported_manifest_types() == [mt.DOCKER_V2S2]
        for layer in IMAGE_A.layers:
            stored = dest.put_blob(
                VerifyingReader(io.BytesIO(layer), None), BlobInfo(None, -1, mt.DOCKER_LAYER), False
            )
            assert (stored.digest, stored.size) == (sha256_of(layer), len(layer))
        config = IMAGE_A.config
        dest.put_blob(
            VerifyingReader(io.BytesIO(config), sha256_of(config), len(config)),
            BlobInfo(sha256_of(config), len(config), mt.DOCKER_CONFIG),
            True,
        )
        dest.put_manifest(IMAGE_A.manifest)
        dest.commit()
    finally:
        dest.close()
    assert read_all(archive(path, "x"), ctx).blobs == IMAGE_A.blobs()


def test_existing_file_is_not_replaced(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "image.tar"
    path.write_bytes(b"precious")
    with pytest.raises(ImageError, match="already exists"):
        archive(path).new_image_destination(ctx)
    assert path.read_bytes() == b"precious"
    empty = tmp_shm / "empty.tar"
    empty.touch()  # an empty file (e.g. from mktemp) may be written
    write_image(archive(empty).new_image_destination(ctx), IMAGE_A)
    assert read_all(archive(empty), ctx).blobs == IMAGE_A.blobs()


def test_close_without_commit_leaves_nothing(tmp_shm: Path, ctx: SystemContext) -> None:
    write_image(archive(tmp_shm / "x.tar").new_image_destination(ctx), IMAGE_A, commit=False)
    assert list(tmp_shm.iterdir()) == []


def test_a_failed_layer_poisons_the_archive(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "x.tar"
    dest = archive(path).new_image_destination(ctx)
    try:
        layer = IMAGE_A.layers[0]
        wrong = sha256_of(b"something else")
        with pytest.raises(DigestMismatch):
            dest.put_blob(
                VerifyingReader(io.BytesIO(layer), wrong, len(layer)),
                BlobInfo(wrong, len(layer), mt.DOCKER_LAYER),
                False,
            )
        with pytest.raises(ImageError, match="failed earlier"):
            put_image_blobs(dest, IMAGE_A)
        with pytest.raises(ImageError):
            dest.commit()
    finally:
        dest.close()
    assert list(tmp_shm.iterdir()) == []


def test_destination_refuses_lists_other_manifests_and_signatures(
    tmp_shm: Path, ctx: SystemContext
) -> None:
    oci_image = tiny_image([{"f": b"x"}])
    dest = archive(tmp_shm / "x.tar").new_image_destination(ctx)
    try:
        assert not dest.supports_signatures()
        with pytest.raises(UnsupportedConversion, match="manifest lists"):
            dest.put_manifest(IMAGE_A.manifest, IMAGE_A.manifest_digest)
        with pytest.raises(UnsupportedConversion, match="Docker schema 2"):
            dest.put_manifest(oci_image.manifest)
        with pytest.raises(UnsupportedConversion):
            dest.put_signatures([b"sig"])
        with pytest.raises(ImageError, match="no manifest"):
            dest.commit()
    finally:
        dest.close()
    with pytest.raises(InvalidReference):
        archive(tmp_shm / "x.tar", "@0").new_image_destination(ctx)


def test_manifest_naming_blobs_never_written(tmp_shm: Path, ctx: SystemContext) -> None:
    dest = archive(tmp_shm / "x.tar").new_image_destination(ctx)
    try:
        dest.put_manifest(IMAGE_A.manifest)
        with pytest.raises(BlobUnknown, match="was not written"):
            dest.commit()
    finally:
        dest.close()


# --- written by others --------------------------------------------------------------


def _config_for(layers: list[bytes]) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [str(sha256_of(x)) for x in layers]},
        }
    ).encode()


def test_legacy_docker_save_layout_with_repeated_layer(tmp_shm: Path, ctx: SystemContext) -> None:
    """docker < 25: <id>/layer.tar, and a repeated layer saved as a symlink."""
    base = IMAGE_A.layers[0]
    config = _config_for([base, IMAGE_A.layers[1], base])
    cfg = f"{sha256_of(config).hex}.json"
    path = tmp_shm / "legacy.tar"
    make_tar(
        path,
        [
            ("1111/VERSION", b"1.0"),
            ("1111/layer.tar", base),
            ("2222/layer.tar", IMAGE_A.layers[1]),
            ("3333/layer.tar", "../1111/layer.tar"),
            (cfg, config),
            (
                "manifest.json",
                json.dumps(
                    [
                        {
                            "Config": cfg,
                            "RepoTags": ["busybox:latest"],
                            "Layers": ["1111/layer.tar", "2222/layer.tar", "3333/layer.tar"],
                        }
                    ]
                ).encode(),
            ),
        ],
    )
    back = read_all(archive(path, "busybox"), ctx)
    assert back.blobs == {sha256_of(config): config, **{sha256_of(x): x for x in IMAGE_A.layers}}
    layers = json.loads(back.manifest)["layers"]
    assert [x["size"] for x in layers] == [len(base), len(IMAGE_A.layers[1]), len(base)]


def test_docker_25_layout_with_oci_blobs(tmp_shm: Path, ctx: SystemContext) -> None:
    """docker >= 25: blobs/sha256/<hex> paths, plus an OCI index.json that is ignored here."""
    layers = list(IMAGE_A.layers)
    config = IMAGE_A.config
    entries: list[tuple[str, bytes | str]] = [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", b'{"schemaVersion":2,"manifests":[]}'),
        (f"blobs/sha256/{sha256_of(config).hex}", config),
    ]
    entries += [(f"blobs/sha256/{sha256_of(x).hex}", x) for x in layers]
    entries.append(
        (
            "manifest.json",
            json.dumps(
                [
                    {
                        "Config": f"blobs/sha256/{sha256_of(config).hex}",
                        "RepoTags": ["a:latest"],
                        "Layers": [f"blobs/sha256/{sha256_of(x).hex}" for x in layers],
                    }
                ]
            ).encode(),
        )
    )
    path = tmp_shm / "docker25.tar"
    make_tar(path, entries)
    assert read_all(archive(path, "a"), ctx).blobs == IMAGE_A.blobs()


def test_gzip_layers_are_detected_and_offered_compressed(tmp_shm: Path, ctx: SystemContext) -> None:
    plain = IMAGE_A.layers[0]
    packed = gzip.compress(plain, mtime=0)
    other = IMAGE_A.layers[1]
    config = _config_for([plain, other])
    cfg = f"{sha256_of(config).hex}.json"
    path = tmp_shm / "gz.tar"
    make_tar(
        path,
        [
            ("l1.tar", packed),
            ("l2.tar", other),
            (cfg, config),
            (
                "manifest.json",
                json.dumps([{"Config": cfg, "Layers": ["l1.tar", "l2.tar"]}]).encode(),
            ),
        ],
    )
    source = archive(path).new_image_source(ctx)
    try:
        manifest = json.loads(source.get_manifest()[0])
        assert [(x["digest"], x["size"]) for x in manifest["layers"]] == [
            (str(sha256_of(plain)), len(plain)),
            (str(sha256_of(other)), len(other)),
        ]
        infos = source.layer_infos_for_copy()
        assert infos == [
            BlobInfo(sha256_of(packed), len(packed), mt.DOCKER_LAYER_GZIP, compression="gzip"),
            BlobInfo(sha256_of(other), len(other), mt.DOCKER_LAYER, compression=""),
        ]
        # by the manifest's (uncompressed) digest: decompressed; by the stored one: as stored
        assert read_blob(source, BlobInfo(sha256_of(plain), len(plain))) == plain
        assert read_blob(source, infos[0]) == packed
        with pytest.raises(BlobUnknown):
            source.get_blob(BlobInfo(sha256_of(b"not here"), 8))
    finally:
        source.close()


def test_uncompressed_archive_needs_no_replacement_infos(tmp_shm: Path, ctx: SystemContext) -> None:
    path = tmp_shm / "x.tar"
    write_image(archive(path).new_image_destination(ctx), IMAGE_A)
    source = archive(path).new_image_source(ctx)
    try:
        assert source.layer_infos_for_copy() is None
        with pytest.raises(ManifestError, match="manifest lists"):
            source.get_manifest(IMAGE_A.manifest_digest)
    finally:
        source.close()


def _archive_with_manifest(
    path: Path, manifest: bytes, extra: list[tuple[str, bytes | str]]
) -> None:
    make_tar(path, [*extra, ("manifest.json", manifest)])


def test_broken_archives(tmp_shm: Path, ctx: SystemContext) -> None:
    config = _config_for([IMAGE_A.layers[0]])
    cfg = f"{sha256_of(config).hex}.json"
    item = {"Config": cfg, "Layers": ["l.tar"]}

    _archive_with_manifest(tmp_shm / "noconfig.tar", json.dumps([item]).encode(), [("l.tar", b"")])
    with pytest.raises(BlobUnknown, match="config"):
        archive(tmp_shm / "noconfig.tar").new_image_source(ctx).get_manifest()

    _archive_with_manifest(tmp_shm / "nolayer.tar", json.dumps([item]).encode(), [(cfg, config)])
    with pytest.raises(BlobUnknown, match=r"layer l\.tar"):
        archive(tmp_shm / "nolayer.tar").new_image_source(ctx).get_manifest()

    two = {"Config": cfg, "Layers": ["l.tar", "l.tar"]}
    _archive_with_manifest(
        tmp_shm / "count.tar", json.dumps([two]).encode(), [(cfg, config), ("l.tar", b"")]
    )
    with pytest.raises(ManifestError, match="diff IDs"):
        archive(tmp_shm / "count.tar").new_image_source(ctx).get_manifest()

    _archive_with_manifest(tmp_shm / "json.tar", b"{not json", [])
    with pytest.raises(ManifestError, match="not valid JSON"):
        archive(tmp_shm / "json.tar").new_image_source(ctx)

    _archive_with_manifest(tmp_shm / "shape.tar", b'{"Config": "x"}', [])
    with pytest.raises(ManifestError, match="not a JSON list"):
        archive(tmp_shm / "shape.tar").new_image_source(ctx)

    make_tar(tmp_shm / "oci.tar", [("index.json", b"{}")])
    with pytest.raises(ImageNotFound) as info:
        archive(tmp_shm / "oci.tar").new_image_source(ctx)
    assert "oci-archive" in (info.value.hint or "")


def test_links_cannot_leave_the_archive(tmp_shm: Path, ctx: SystemContext) -> None:
    config = _config_for([IMAGE_A.layers[0]])
    cfg = f"{sha256_of(config).hex}.json"
    manifest = json.dumps([{"Config": cfg, "Layers": ["id/layer.tar"]}]).encode()
    _archive_with_manifest(
        tmp_shm / "escape.tar", manifest, [(cfg, config), ("id/layer.tar", "../../etc/passwd")]
    )
    source = archive(tmp_shm / "escape.tar").new_image_source(ctx)
    try:
        with pytest.raises(UnsafeArchive, match="outside the archive"):
            source.get_manifest()
    finally:
        source.close()
    _archive_with_manifest(
        tmp_shm / "absolute.tar", manifest, [(cfg, config), ("id/layer.tar", "/etc/passwd")]
    )
    with pytest.raises(UnsafeArchive, match="absolute"):
        archive(tmp_shm / "absolute.tar").new_image_source(ctx).get_manifest()
    _archive_with_manifest(tmp_shm / "name.tar", manifest, [("../up", b"x")])
    with pytest.raises(UnsafeArchive, match="outside the archive"):
        archive(tmp_shm / "name.tar").new_image_source(ctx)


def test_tiny_image_fixture_is_what_the_tests_assume() -> None:
    assert isinstance(IMAGE_A, TinyImage)
    assert IMAGE_A.layer_media_type == mt.DOCKER_LAYER
    assert IMAGE_A.layer_digests == IMAGE_A.diff_ids


def test_writer_references_get_tags(tmp_shm: Path, ctx: SystemContext) -> None:
    with DockerArchiveWriter(str(tmp_shm / "x.tar"), ctx) as writer:
        ref = writer.new_reference(
            [parse_normalized_named("busybox"), parse_normalized_named("a:1")]
        )
        assert str(ref.tag) == "docker.io/library/busybox:latest"
        assert [str(t) for t in ref.tags] == [
            "docker.io/library/busybox:latest",
            "docker.io/library/a:1",
        ]
        with pytest.raises(InvalidReference, match="no tag"):
            writer.new_reference([parse_normalized_named(f"busybox@sha256:{'a' * 64}")])
    assert list(tmp_shm.iterdir()) == []
