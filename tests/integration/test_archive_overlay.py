"""Overlay whiteouts checked by the kernel: layers applied in overlay format
and mounted with overlayfs show the same tree as the same layers applied in
vfs format one over the other; and a container's upper directory, diffed
and applied, reproduces what the container saw.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from skiff.storage.archive import Change, apply, changes, diff, write_tar
from skiff.testing.layertar import Member, layer_tar, snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount, mknod)")

T = 1_650_000_000

LAYERS = [
    [
        Member("etc/", "dir", mtime=T),
        Member("etc/a", "file", b"a1", mtime=T),
        Member("etc/b", "file", b"b1", mtime=T),
        Member("var/", "dir", mtime=T),
        Member("var/cache/", "dir", mtime=T),
        Member("var/cache/x", "file", b"x", mtime=T),
        Member("var/cache/y/", "dir", mtime=T),
        Member("var/cache/y/z", "file", b"z", mtime=T),
        Member("usr/", "dir", mtime=T),
        Member("usr/bin/", "dir", mtime=T),
        Member("usr/bin/tool", "file", b"v1", mode=0o755, mtime=T),
        Member("opt/", "dir", mtime=T),
        Member("opt/app/", "dir", mtime=T),
        Member("opt/app/run", "file", b"run", mtime=T),
    ],
    [
        Member("etc/", "dir", mtime=T + 1),
        Member("etc/.wh.a", "file"),
        Member("var/", "dir", mtime=T),
        Member("var/cache/", "dir", mode=0o700, mtime=T + 1),
        Member("var/cache/.wh..wh..opq", "file"),
        Member("var/cache/new", "file", b"new", mtime=T + 1),
        Member("usr/", "dir", mtime=T),
        Member("usr/bin/", "dir", mtime=T + 1),
        Member("usr/bin/tool", "file", b"v2", mode=0o4755, uid=7, mtime=T + 1),
    ],
    [
        Member(".wh.opt", "file"),
        Member("etc/", "dir", mtime=T + 2),
        Member("etc/c", "file", b"c", mtime=T + 2),
        Member("usr/", "dir", mtime=T),
        Member("usr/bin/", "dir", mtime=T + 1),
        Member("usr/bin/tool2", "hardlink", linkname="usr/bin/tool"),
    ],
]


@contextmanager
def overlay(lowers: list[Path], mountpoint: Path, upper: Path | None = None) -> Iterator[Path]:
    options = "lowerdir=" + ":".join(str(p) for p in lowers)
    if upper is not None:
        work = upper.parent / (upper.name + "-work")
        work.mkdir()
        options += f",upperdir={upper},workdir={work},redirect_dir=off,index=off,metacopy=off"
    mountpoint.mkdir()
    done = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount overlayfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def apply_overlay_layers(root: Path) -> list[Path]:
    """Each layer in its own directory; returns them topmost first."""
    dirs: list[Path] = []
    for index, members in enumerate(LAYERS):
        layer = root / f"layer{index}"
        layer.mkdir()
        apply(
            io.BytesIO(layer_tar(members)),
            layer,
            whiteout_format="overlay",
            lower_dirs=list(reversed(dirs)),
        )
        dirs.append(layer)
    return list(reversed(dirs))


def apply_vfs_layers(root: Path) -> Path:
    tree = root / "vfs"
    tree.mkdir()
    for members in LAYERS:
        apply(io.BytesIO(layer_tar(members)), tree, whiteout_format="vfs")
    return tree


def test_overlay_layers_mounted_equal_vfs_layers(tmp_shm: Path) -> None:
    lowers = apply_overlay_layers(tmp_shm)
    vfs = apply_vfs_layers(tmp_shm)
    with overlay(lowers, tmp_shm / "merged") as merged:
        seen = snapshot(merged)
    expected = snapshot(vfs)
    assert seen.keys() == expected.keys()
    for name in expected:
        assert seen[name] == expected[name], name
    assert sorted(seen) == [
        "etc",
        "etc/b",
        "etc/c",
        "usr",
        "usr/bin",
        "usr/bin/tool",
        "usr/bin/tool2",
        "var",
        "var/cache",
        "var/cache/new",
    ]


def test_container_changes_round_trip_through_diff(tmp_shm: Path) -> None:
    lowers = apply_overlay_layers(tmp_shm)
    upper = tmp_shm / "upper"
    upper.mkdir()
    with overlay(lowers, tmp_shm / "merged", upper) as merged:
        (merged / "etc/b").unlink()  # whiteout
        shutil.rmtree(merged / "var/cache")
        (merged / "var/cache").mkdir()  # a new directory over a deleted one: opaque
        (merged / "var/cache/fresh").write_text("fresh")
        (merged / "usr/bin/tool").chmod(0o700)  # copy-up of metadata and data
        (merged / "srv/www").mkdir(parents=True)
        (merged / "srv/www/index.html").write_text("<h1>hi</h1>")
        os.link(merged / "srv/www/index.html", merged / "srv/www/index.htm")
        os.setxattr(merged / "srv/www", "user.owner", b"web")
        seen = snapshot(merged, mtimes=False)
    kinds = changes(upper, whiteout_format="overlay", lower_dirs=lowers)
    assert Change("D", "/etc/b") in kinds
    assert Change("C", "/var/cache") in kinds
    assert Change("D", "/var/cache/new") in kinds  # hidden by the opaque directory
    assert Change("A", "/var/cache/fresh") in kinds
    assert Change("C", "/usr/bin/tool") in kinds
    assert Change("A", "/srv/www/index.html") in kinds
    layer = tmp_shm / "layer.tar"
    with layer.open("wb") as out:
        write_tar(diff(upper, whiteout_format="overlay"), out)
    # vfs: the lower layers flattened, then the container's layer on top
    vfs = apply_vfs_layers(tmp_shm)
    apply(layer.open("rb"), vfs, whiteout_format="vfs")
    assert snapshot(vfs, mtimes=False) == seen
    # overlay: the new layer mounted over the old ones shows the same
    committed = tmp_shm / "committed"
    committed.mkdir()
    apply(layer.open("rb"), committed, whiteout_format="overlay", lower_dirs=lowers)
    with overlay([committed, *lowers], tmp_shm / "remounted") as remounted:
        assert snapshot(remounted, mtimes=False) == seen
