"""The oci: transport: reference syntax, write/read round trips, index.json rules, errors."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

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
    UnsupportedConversion,
)
from skiff.image.transports import parse_image_name
from skiff.image.transports.oci_layout import TRANSPORT, OCILayoutReference
from skiff.image.types import BlobInfo
from skiff.oci import mediatypes as mt
from skiff.oci.digest import VerifyingReader, sha256_of
from skiff.testing.localimage import read_image, tiny_image, tiny_index, write_image, write_index

REF_NAME = "org.opencontainers.image.ref.name"


@pytest.fixture
def ctx(tmp_shm: Path) -> SystemContext:
    return SystemContext(tmp_dir=tmp_shm)


def oci(path: Path, image: str = "") -> OCILayoutReference:
    ref = parse_image_name(f"oci:{path}:{image}")
    assert isinstance(ref, OCILayoutReference)
    return ref


def index_entries(layout: Path) -> list[dict[str, object]]:
    entries = json.loads((layout / "index.json").read_bytes())["manifests"]
    assert isinstance(entries, list)
    return entries


def blob_files(layout: Path) -> set[str]:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


IMAGE_A = tiny_image([{"a.txt": b"a\n"}, {"shared.txt": b"shared\n"}])
IMAGE_B = tiny_image([{"b.txt": b"b\n"}, {"shared.txt": b"shared\n"}])


# --- references ------------------------------------------------------------------


def test_parse_splits_at_the_first_colon() -> None:
    ref = TRANSPORT.parse_reference("/srv/layout:repo/name:1.0")
    assert (ref.path, ref.image, ref.source_index) == ("/srv/layout", "repo/name:1.0", None)
    assert ref.string_within_transport() == "/srv/layout:repo/name:1.0"
    assert TRANSPORT.parse_reference("/srv/layout").string_within_transport() == "/srv/layout:"
    indexed = TRANSPORT.parse_reference("/srv/layout:@3")
    assert (indexed.image, indexed.source_index) == ("", 3)
    assert indexed.string_within_transport() == "/srv/layout:@3"
    for text in ("/srv/layout:repo/name:1.0", "/srv/layout:", "/srv/layout:@3"):
        again = TRANSPORT.parse_reference(TRANSPORT.parse_reference(text).string_within_transport())
        assert again == TRANSPORT.parse_reference(text)


@pytest.mark.parametrize(
    "text", [":tag", "/x:-leading-dash", "/x:a//b", "/x:@", "/x:@-1", "/x:@1x", "/x:tag with space"]
)
def test_parse_rejects_bad_references(text: str) -> None:
    with pytest.raises(InvalidReference):
        TRANSPORT.parse_reference(text)


def test_policy_identity_is_the_resolved_directory(tmp_shm: Path) -> None:
    real = tmp_shm / "real"
    real.mkdir()
    (tmp_shm / "link").symlink_to(real)
    ref = TRANSPORT.parse_reference(f"{tmp_shm}/link/layout:tag")
    assert ref.policy_configuration_identity() == f"{real}/layout"
    namespaces = ref.policy_configuration_namespaces()
    assert namespaces[0] == str(real)
    assert "/" not in namespaces
    assert namespaces[-1] == "/" + str(real).split("/")[1]
    assert ref.docker_reference() is None


def test_relative_paths_resolve_against_the_cwd(
    tmp_shm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_shm)
    assert TRANSPORT.parse_reference("sub/dir:x").policy_configuration_identity() == str(
        tmp_shm / "sub" / "dir"
    )


@pytest.mark.parametrize("scope", ["relative/path", "/", "/a/../b", "/a/b/"])
def test_policy_scopes_must_be_canonical_absolute_paths(scope: str) -> None:
    with pytest.raises(ConfigError):
        TRANSPORT.validate_policy_scope(scope)
    TRANSPORT.validate_policy_scope("/a/b")


# --- round trips -----------------------------------------------------------------


def test_write_then_read_back(tmp_shm: Path, ctx: SystemContext) -> None:
    layout = tmp_shm / "new" / "layout"
    write_image(oci(layout, "v1").new_image_destination(ctx), IMAGE_A)

    assert json.loads((layout / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    [entry] = index_entries(layout)
    assert entry == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": str(IMAGE_A.manifest_digest),
        "size": len(IMAGE_A.manifest),
        "annotations": {REF_NAME: "v1"},
    }
    assert blob_files(layout) == {d.hex for d in IMAGE_A.blobs()} | {IMAGE_A.manifest_digest.hex}
    assert not list((layout / "blobs").rglob(".*")), "temporary files left behind"

    source = oci(layout, "v1").new_image_source(ctx)
    try:
        back = read_image(source)
    finally:
        source.close()
    assert back.manifest == IMAGE_A.manifest  # raw bytes, never re-serialised
    assert back.media_type == mt.OCI_MANIFEST
    assert back.blobs == IMAGE_A.blobs()

    only = oci(layout).new_image_source(ctx)  # no name: the only image
    try:
        assert only.get_manifest()[0] == IMAGE_A.manifest
        assert only.get_signatures() == []
    finally:
        only.close()


def test_reads_the_busybox_fixture(busybox_layout, ctx: SystemContext) -> None:  # type: ignore[no-untyped-def]
    source = parse_image_name(busybox_layout.reference).new_image_source(ctx)
    try:
        back = read_image(source)
    finally:
        source.close()
    assert sha256_of(back.manifest) == busybox_layout.manifest_digest
    assert set(back.blobs) == {busybox_layout.config_digest, *busybox_layout.layer_digests}


def test_same_name_replaces_the_entry_other_names_add(tmp_shm: Path, ctx: SystemContext) -> None:
    layout = tmp_shm / "layout"
    write_image(oci(layout, "x").new_image_destination(ctx), IMAGE_A)
    write_image(oci(layout, "y").new_image_destination(ctx), IMAGE_A)
    write_image(oci(layout, "x").new_image_destination(ctx), IMAGE_B)
    entries = index_entries(layout)
    assert [(e["annotations"], e["digest"]) for e in entries] == [
        ({REF_NAME: "x"}, str(IMAGE_B.manifest_digest)),
        ({REF_NAME: "y"}, str(IMAGE_A.manifest_digest)),
    ]


def test_unknown_index_fields_survive_an_update(tmp_shm: Path, ctx: SystemContext) -> None:
    layout = tmp_shm / "layout"
    write_image(oci(layout, "x").new_image_destination(ctx), IMAGE_A)
    obj = json.loads((layout / "index.json").read_bytes())
    obj["annotations"] = {"org.example.note": "kept"}
    obj["manifests"][0]["org.example.extra"] = 1
    (layout / "index.json").write_text(json.dumps(obj))
    write_image(oci(layout, "y").new_image_destination(ctx), IMAGE_B)
    obj = json.loads((layout / "index.json").read_bytes())
    assert obj["annotations"] == {"org.example.note": "kept"}
    assert obj["manifests"][0]["org.example.extra"] == 1
    assert len(obj["manifests"]) == 2


def test_selecting_among_several_images(tmp_shm: Path, ctx: SystemContext) -> None:
    layout = tmp_shm / "layout"
    write_image(oci(layout, "a").new_image_destination(ctx), IMAGE_A)
    write_image(oci(layout, "b").new_image_destination(ctx), IMAGE_B)

    with pytest.raises(ImageNotFound, match="holds 2 images") as info:
        oci(layout).new_image_source(ctx)
    assert "a, b" in (info.value.hint or "")
    with pytest.raises(ImageNotFound, match="no image named 'c'"):
        oci(layout, "c").new_image_source(ctx)
    with pytest.raises(ImageNotFound, match="@2"):
        oci(layout, "@2").new_image_source(ctx)
    second = oci(layout, "@1").new_image_source(ctx)
    try:
        assert second.get_manifest()[0] == IMAGE_B.manifest
    finally:
        second.close()


def test_an_index_and_its_instances(tmp_shm: Path, ctx: SystemContext) -> None:
    amd = tiny_image([{"f": b"amd64\n"}], architecture="amd64")
    arm = tiny_image([{"f": b"arm64\n"}], architecture="arm64")
    index = tiny_index([amd, arm])
    layout = tmp_shm / "layout"
    write_index(oci(layout, "multi").new_image_destination(ctx), index, [amd, arm])
    [entry] = index_entries(layout)
    assert entry["mediaType"] == mt.OCI_INDEX

    source = oci(layout, "multi").new_image_source(ctx)
    try:
        assert source.get_manifest() == (index, mt.OCI_INDEX)
        assert read_image(source, arm.manifest_digest).blobs == arm.blobs()
        assert source.get_manifest(amd.manifest_digest) == (amd.manifest, mt.OCI_MANIFEST)
    finally:
        source.close()


def test_shared_blob_dir(tmp_shm: Path) -> None:
    shared = tmp_shm / "shared"
    ctx = SystemContext(tmp_dir=tmp_shm, oci_shared_blob_dir=shared)
    layout = tmp_shm / "layout"
    write_image(oci(layout, "x").new_image_destination(ctx), IMAGE_A)
    assert not (layout / "blobs").exists()
    assert {p.name for p in (shared / "sha256").iterdir()} >= {d.hex for d in IMAGE_A.blobs()}
    source = oci(layout, "x").new_image_source(ctx)
    try:
        assert read_image(source).blobs == IMAGE_A.blobs()
    finally:
        source.close()
    with pytest.raises(BlobUnknown):
        plain = oci(layout, "x").new_image_source(SystemContext(tmp_dir=tmp_shm))
        try:
            plain.get_manifest()
        finally:
            plain.close()


# --- failures and cleanup -------------------------------------------------------------


def test_close_without_commit_leaves_the_layout_as_it_was(
    tmp_shm: Path, ctx: SystemContext
) -> None:
    layout = tmp_shm / "layout"
    write_image(oci(layout, "a").new_image_destination(ctx), IMAGE_A)
    index_before = (layout / "index.json").read_bytes()
    blobs_before = blob_files(layout)

    write_image(oci(layout, "b").new_image_destination(ctx), IMAGE_B, commit=False)

    assert (layout / "index.json").read_bytes() == index_before
    # IMAGE_B's own blobs are gone; the layer it shares with IMAGE_A stays
    assert blob_files(layout) == blobs_before


def test_close_without_commit_removes_a_layout_it_created(
    tmp_shm: Path, ctx: SystemContext
) -> None:
    layout = tmp_shm / "new" / "layout"
    write_image(oci(layout, "a").new_image_destination(ctx), IMAGE_A, commit=False)
    assert not (tmp_shm / "new").exists()


def test_a_failed_stream_leaves_no_file(tmp_shm: Path, ctx: SystemContext) -> None:
    layout = tmp_shm / "layout"
    dest = oci(layout, "a").new_image_destination(ctx)
    try:
        blob = b"content"
        wrong = sha256_of(b"other")
        with pytest.raises(DigestMismatch):
            dest.put_blob(
                VerifyingReader(io.BytesIO(blob), wrong, len(blob)),
                BlobInfo(wrong, len(blob)),
                False,
            )
        assert list((layout / "blobs").iterdir()) == []
    finally:
        dest.close()
    assert not layout.exists()


def test_missing_blob_names_layout_and_digest(tmp_shm: Path, ctx: SystemContext) -> None:
    layout = tmp_shm / "layout"
    write_image(oci(layout, "a").new_image_destination(ctx), IMAGE_A)
    layer = IMAGE_A.layer_digests[0]
    (layout / "blobs" / "sha256" / layer.hex).unlink()
    source = oci(layout, "a").new_image_source(ctx)
    try:
        with pytest.raises(BlobUnknown) as info:
            source.get_blob(BlobInfo(layer, -1))
    finally:
        source.close()
    assert str(layer) in info.value.message
    assert str(layout) in info.value.message


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"schemaVersion": 1, "manifests": []}',
        b'{"schemaVersion": 2, "manifests": [{"digest": "x"}]}',
    ],
)
def test_corrupt_index_json(tmp_shm: Path, ctx: SystemContext, content: bytes) -> None:
    layout = tmp_shm / "layout"
    write_image(oci(layout, "a").new_image_destination(ctx), IMAGE_A)
    (layout / "index.json").write_bytes(content)
    with pytest.raises(ManifestError) as info:
        oci(layout, "a").new_image_source(ctx)
    assert "index.json" in info.value.message
    with pytest.raises(ManifestError):
        oci(layout, "b").new_image_destination(ctx)


def test_missing_layout(tmp_shm: Path, ctx: SystemContext) -> None:
    with pytest.raises(ImageNotFound, match="does not exist"):
        oci(tmp_shm / "nowhere", "a").new_image_source(ctx)
    (tmp_shm / "empty").mkdir()
    with pytest.raises(ImageNotFound, match=r"no index\.json"):
        oci(tmp_shm / "empty", "a").new_image_source(ctx)


def test_unknown_layout_version(tmp_shm: Path, ctx: SystemContext) -> None:
    layout = tmp_shm / "layout"
    write_image(oci(layout, "a").new_image_destination(ctx), IMAGE_A)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(ManifestError, match="imageLayoutVersion"):
        oci(layout, "a").new_image_source(ctx)


def test_refuses_to_write_into_a_foreign_directory(tmp_shm: Path, ctx: SystemContext) -> None:
    (tmp_shm / "home").mkdir()
    (tmp_shm / "home" / "notes.txt").write_text("precious")
    with pytest.raises(InvalidReference, match="not an OCI layout"):
        oci(tmp_shm / "home", "a").new_image_destination(ctx)
    (tmp_shm / "file").write_text("x")
    with pytest.raises(InvalidReference, match="not a directory"):
        oci(tmp_shm / "file", "a").new_image_destination(ctx)
    assert os.listdir(tmp_shm / "home") == ["notes.txt"]


def test_destination_rejects_source_index_and_signatures(tmp_shm: Path, ctx: SystemContext) -> None:
    with pytest.raises(InvalidReference, match="source index"):
        oci(tmp_shm / "layout", "@0").new_image_destination(ctx)
    dest = oci(tmp_shm / "layout", "a").new_image_destination(ctx)
    try:
        assert not dest.supports_signatures()
        assert dest.supported_manifest_types() == [mt.OCI_MANIFEST, mt.OCI_INDEX]
        dest.put_signatures([])
        with pytest.raises(UnsupportedConversion):
            dest.put_signatures([b"sig"])
    finally:
        dest.close()


def test_delete_image_removes_only_what_it_alone_used(tmp_shm: Path, ctx: SystemContext) -> None:
    layout = tmp_shm / "layout"
    write_image(oci(layout, "a").new_image_destination(ctx), IMAGE_A)
    write_image(oci(layout, "b").new_image_destination(ctx), IMAGE_B)
    oci(layout, "a").delete_image(ctx)

    assert [e["annotations"] for e in index_entries(layout)] == [{REF_NAME: "b"}]
    remaining = blob_files(layout)
    assert IMAGE_A.manifest_digest.hex not in remaining
    assert IMAGE_A.layer_digests[0].hex not in remaining
    assert IMAGE_A.layer_digests[1].hex in remaining  # shared with b
    assert {d.hex for d in IMAGE_B.blobs()} <= remaining
    with pytest.raises(ImageNotFound):
        oci(layout, "a").delete_image(ctx)


def test_relative_layout_path_is_used_as_typed(
    tmp_shm: Path, ctx: SystemContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_shm)
    write_image(parse_image_name("oci:rel/layout:v1").new_image_destination(ctx), IMAGE_A)
    assert (tmp_shm / "rel" / "layout" / "index.json").exists()
    source = parse_image_name("oci:rel/layout:v1").new_image_source(ctx)
    try:
        assert read_image(source).blobs == IMAGE_A.blobs()
    finally:
        source.close()


def test_filesystem_errors_are_reported_with_a_hint(tmp_shm: Path, ctx: SystemContext) -> None:
    (tmp_shm / "file").write_text("x")
    with pytest.raises(ImageError) as info:
        oci(tmp_shm / "file" / "layout", "a").new_image_destination(ctx)
    assert "Not a directory" in info.value.message
    assert "is a file" in (info.value.hint or "")
