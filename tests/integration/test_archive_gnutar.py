"""apply() against GNU tar: the same layer extracted both ways gives the same tree.

The layers are written by GNU tar itself (pax format with xattrs, and the
GNU format) from a source tree with one of everything: setuid/setgid/sticky
bits, odd owners, xattrs (user, security.capability, trusted), hard links,
absolute and relative symlinks, devices, fifos, names over 100 and 255
bytes, a non-UTF-8 name, old and sub-second mtimes, read-only directories
with content. GNU tar extracts with ``--numeric-owner -p`` (and ``--xattrs``
when the layer has them); apply extracts in vfs format (and overlay: no
whiteouts, so the same). The trees are compared on names, types, modes,
owners, sizes, content, link targets, devices, mtimes, xattrs and
hard-link structure.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
from pathlib import Path

import pytest

from skiff.storage.archive import apply
from skiff.testing.layertar import snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown)")

CAP = bytes.fromhex("0100000200200000000000000000000000000000")


def build_source(root: Path) -> None:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/su").write_bytes(b"\x7fELF su")
    (root / "usr/bin/su").chmod(0o4755)
    (root / "usr/bin/wall").write_bytes(b"wall")
    os.chown(root / "usr/bin/wall", 0, 5)
    (root / "usr/bin/wall").chmod(0o2755)
    (root / "usr/bin/ping").write_bytes(b"ping")
    os.setxattr(root / "usr/bin/ping", "security.capability", CAP)
    (root / "usr/bin/busybox").write_bytes(os.urandom(2_500_000))
    for name in ("sh", "ls", "cat"):
        os.link(root / "usr/bin/busybox", root / "usr/bin" / name)
    (root / "bin").symlink_to("usr/bin")
    (root / "usr/bin/abs").symlink_to("/usr/bin/busybox")
    (root / "usr/bin/dangling").symlink_to("../nowhere/at/all")
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "srv/shared").mkdir(parents=True)
    (root / "srv/shared").chmod(0o2775)
    os.chown(root / "srv/shared", 1000, 1000)
    (root / "srv/shared/file").write_text("shared")
    os.chown(root / "srv/shared/file", 1000, 1000)
    (root / "home/alice").mkdir(parents=True)
    (root / "home/alice/.profile").write_text("export A=1\n")
    os.chown(root / "home/alice", 100_000, 100_000)
    os.chown(root / "home/alice/.profile", 100_000, 100_000)
    os.setxattr(root / "home/alice", "user.quota", b"10G")
    os.setxattr(root / "home/alice/.profile", "trusted.origin", b"image")
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "dev/sda1", 0o660 | stat.S_IFBLK, os.makedev(8, 1))
    os.mkfifo(root / "dev/fifo", 0o640)
    long_dir = root / ("dir-" + "x" * 120) / ("sub-" + "y" * 120)
    long_dir.mkdir(parents=True)
    (long_dir / ("file-" + "z" * 200)).write_text("long")
    (long_dir / "link").symlink_to("/" + "t" * 180)
    (root / os.fsdecode(b"caf\xe9")).write_text("latin-1 name")
    (root / "empty-dir").mkdir()
    (root / "empty-file").write_bytes(b"")
    ro = root / "readonly"
    ro.mkdir()
    (ro / "inside").write_text("in a read-only directory")
    ro.chmod(0o555)
    os.utime(root / "usr/bin/su", ns=(0, 315_532_800 * 10**9))  # 1980
    os.utime(root / "home/alice/.profile", ns=(0, 1_700_000_000_123_456_789))
    os.utime(root / "usr/bin/abs", ns=(0, 1_600_000_000 * 10**9), follow_symlinks=False)
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        os.utime(dirpath, ns=(0, 1_650_000_000_500_000_000))


def gnu_tar(source: Path, layer: Path, fmt: str) -> None:
    argv = ["tar", f"--format={fmt}", "--numeric-owner", "-C", str(source), "-cf", str(layer)]
    if fmt == "posix":
        argv[1:1] = ["--xattrs", "--xattrs-include=*"]
    subprocess.run([*argv, "."], check=True)


def gnu_untar(layer: Path, dest: Path, xattrs: bool) -> None:
    argv = ["tar", "--numeric-owner", "-xpf", str(layer), "-C", str(dest)]
    if xattrs:
        argv[1:1] = ["--xattrs", "--xattrs-include=*"]
    subprocess.run(argv, check=True)


@pytest.mark.parametrize("fmt", ["posix", "gnu"])
@pytest.mark.parametrize("whiteout_format", ["vfs", "overlay"])
@pytest.mark.parametrize("compress", [False, True])
def test_same_tree_as_gnu_tar(
    tmp_shm: Path, fmt: str, whiteout_format: str, compress: bool
) -> None:
    source = tmp_shm / "source"
    build_source(source)
    layer = tmp_shm / "layer.tar"
    gnu_tar(source, layer, fmt)
    by_tar = tmp_shm / "by-tar"
    by_apply = tmp_shm / "by-apply"
    by_tar.mkdir()
    by_apply.mkdir()
    gnu_untar(layer, by_tar, xattrs=fmt == "posix")
    blob = layer.read_bytes()
    if compress:
        blob = gzip.compress(blob, mtime=0)
    result = apply(io.BytesIO(blob), by_apply, whiteout_format=whiteout_format)  # type: ignore[arg-type]
    assert result.size == layer.stat().st_size
    expected = snapshot(by_tar)
    got = snapshot(by_apply)
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == expected[name], name
    if fmt == "posix":
        # and both equal the source, sub-second mtimes and xattrs included
        assert got == snapshot(source)
