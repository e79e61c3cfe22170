"""Tar-split: the tar a layer was applied from comes back byte for byte."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
from pathlib import Path

import pytest

from skiff.errors import InvalidArchive, StorageError, StoreCorrupt
from skiff.storage.archive import apply, iter_layer_tar, open_layer_tar
from skiff.testing.layertar import Member, layer_tar

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown)")


def rebuild(layer: Path, split: Path) -> bytes:
    return b"".join(iter_layer_tar(layer, split))


def gnu_layer(tmp_shm: Path, fmt: str) -> bytes:
    source = tmp_shm / "source"
    (source / "bin").mkdir(parents=True)
    (source / "bin/big").write_bytes(os.urandom(3 << 20))
    os.link(source / "bin/big", source / "bin/big-link")
    (source / "bin/empty").write_bytes(b"")
    (source / "bin/sym").symlink_to("big")
    for index in range(300):
        (source / "bin" / f"small{index:03d}").write_bytes(os.urandom(index * 7))
    long_dir = source / ("l" * 150)
    long_dir.mkdir()
    (long_dir / ("f" * 150)).write_text("long")
    os.setxattr(source / "bin/empty", "user.x", b"1")
    layer = tmp_shm / f"layer-{fmt}.tar"
    argv = ["tar", f"--format={fmt}", "--numeric-owner", "-C", str(source), "-cf", str(layer), "."]
    if fmt == "posix":
        argv[1:1] = ["--xattrs", "--xattrs-include=*"]
    subprocess.run(argv, check=True)
    return layer.read_bytes()


@pytest.mark.parametrize("fmt", ["posix", "gnu"])
@pytest.mark.parametrize("whiteout_format", ["overlay", "vfs"])
@pytest.mark.parametrize("compress", [False, True])
def test_gnu_tar_layers_rebuild_exactly(
    tmp_shm: Path, fmt: str, whiteout_format: str, compress: bool
) -> None:
    tar = gnu_layer(tmp_shm, fmt)
    assert len(tar) % 10240 == 0  # GNU tar's record padding is part of the layer
    dest = tmp_shm / "dest"
    dest.mkdir()
    split = tmp_shm / "split"
    blob = gzip.compress(tar, mtime=0) if compress else tar
    result = apply(io.BytesIO(blob), dest, whiteout_format=whiteout_format, tar_split=split)  # type: ignore[arg-type]
    rebuilt = rebuild(dest, split)
    assert hashlib.sha256(rebuilt).hexdigest() == result.diff_id.hex
    assert rebuilt == tar
    # the record holds the framing, not the contents
    assert split.stat().st_size < len(tar) // 20


def test_odd_members_rebuild_exactly(tmp_shm: Path) -> None:
    tar = (
        layer_tar(
            [
                Member("d/", "dir"),
                Member("d/.wh.gone", "file", b"whiteouts may carry data"),
                Member(".wh..wh.plnk/", "dir"),
                Member("d/x", "symlink", linkname="/etc"),
                Member("dev/null", "chr", devmajor=1, devminor=3),
                Member("d/" + "n" * 200, "file", b"pax name"),
            ]
        )
        + b"trailing bytes after the end marker"
    )
    dest = tmp_shm / "dest"
    dest.mkdir()
    apply(io.BytesIO(tar), dest, tar_split=tmp_shm / "split")
    assert rebuild(dest, tmp_shm / "split") == tar


def test_reader_interface(tmp_shm: Path) -> None:
    tar = layer_tar([Member(f"f{i}", "file", os.urandom(1000 + i)) for i in range(50)])
    dest = tmp_shm / "dest"
    dest.mkdir()
    apply(io.BytesIO(tar), dest, tar_split=tmp_shm / "split")
    reader = open_layer_tar(dest, tmp_shm / "split")
    pieces = []
    while piece := reader.read(777):
        assert len(piece) <= 777
        pieces.append(piece)
    reader.close()
    assert b"".join(pieces) == tar
    whole = open_layer_tar(dest, tmp_shm / "split")
    assert whole.read() == tar
    whole.close()


def prepared(tmp_shm: Path) -> tuple[Path, Path]:
    dest = tmp_shm / "dest"
    dest.mkdir()
    tar = layer_tar(
        [
            Member("etc/", "dir"),
            Member("etc/conf", "file", b"value"),
            Member("etc/other", "file", b"o"),
        ]
    )
    apply(io.BytesIO(tar), dest, tar_split=tmp_shm / "split")
    return dest, tmp_shm / "split"


@pytest.mark.parametrize("damage", ["resize", "remove", "symlink"])
def test_changed_layer_files_are_detected(tmp_shm: Path, damage: str) -> None:
    dest, split = prepared(tmp_shm)
    target = dest / "etc/conf"
    if damage == "resize":
        target.write_bytes(b"a longer value")
    else:
        target.unlink()
        if damage == "symlink":
            target.symlink_to("/etc/passwd")
    with pytest.raises(StoreCorrupt, match="/etc/conf"):
        rebuild(dest, split)


def test_a_path_written_twice_cannot_be_rebuilt(tmp_shm: Path) -> None:
    dest = tmp_shm / "dest"
    dest.mkdir()
    tar = layer_tar([Member("f", "file", b"first"), Member("f", "file", b"second!")])
    apply(io.BytesIO(tar), dest, tar_split=tmp_shm / "split")
    with pytest.raises(StoreCorrupt, match="different size"):
        rebuild(dest, tmp_shm / "split")


def test_no_record_after_a_failed_apply(tmp_shm: Path) -> None:
    dest = tmp_shm / "dest"
    dest.mkdir()
    tar = layer_tar([Member("a", "file", b"x" * 2000)])
    with pytest.raises(InvalidArchive):
        apply(io.BytesIO(tar[:1500]), dest, tar_split=tmp_shm / "split")
    assert sorted(p.name for p in tmp_shm.iterdir()) == ["dest"]


def test_missing_and_damaged_records(tmp_shm: Path) -> None:
    dest, split = prepared(tmp_shm)
    with pytest.raises(StorageError, match="no tar-split record"):
        iter_layer_tar(dest, tmp_shm / "absent")
    split.write_bytes(b"not zstd at all")
    with pytest.raises(StoreCorrupt, match="damaged"):
        rebuild(dest, split)
    import zstandard

    split.write_bytes(zstandard.ZstdCompressor().compress(b"skiff-tar-split/1\nR\x05"))
    with pytest.raises(StoreCorrupt, match="middle of a record"):
        rebuild(dest, split)
    split.write_bytes(zstandard.ZstdCompressor().compress(b"some-other-format/1\nR"))
    with pytest.raises(StoreCorrupt, match="magic"):
        rebuild(dest, split)
