"""apply(): members, metadata, whiteouts (overlay and vfs), replacement, results.

Runs on tmpfs (/dev/shm), which takes trusted.* and user.* xattrs on this
kernel (checked by ``test_tmpfs_takes_the_xattrs_these_tests_need``). Root
is needed for device nodes, whiteouts and ownership.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from skiff.errors import (
    DigestMismatch,
    InvalidArchive,
    StorageError,
    UnsafeArchive,
)
from skiff.oci.digest import Digest
from skiff.storage.archive import apply
from skiff.testing.layertar import Member, gzipped, layer_tar, snapshot, zstd_compressed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown)")

CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")


@pytest.fixture
def layer(tmp_shm: Path) -> Path:
    path = tmp_shm / "layer"
    path.mkdir()
    return path


def apply_members(members: list[Member], dest: Path, **kw: object) -> object:
    return apply(io.BytesIO(layer_tar(members)), dest, **kw)  # type: ignore[arg-type]


def is_whiteout(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def test_tmpfs_takes_the_xattrs_these_tests_need(tmp_shm: Path) -> None:
    probe = tmp_shm / "probe"
    probe.touch()
    for name in ("trusted.overlay.opaque", "user.x", "security.capability"):
        os.setxattr(probe, name, CAP_NET_RAW)
        assert os.getxattr(probe, name) == CAP_NET_RAW


# --- members and metadata --------------------------------------------------


def test_every_kind_of_member_with_its_metadata(layer: Path) -> None:
    members = [
        Member("usr/", "dir", mode=0o755, uid=0, gid=0, mtime=1_500_000_000),
        Member("usr/bin/", "dir", mode=0o750, uid=10, gid=20, mtime=1_500_000_001),
        Member("usr/bin/su", "file", b"#!su", mode=0o4755, uid=0, gid=0),
        Member("usr/bin/wall", "file", b"w", mode=0o2755, uid=0, gid=5),
        Member("tmp/", "dir", mode=0o1777),
        Member("usr/bin/ping", "file", b"p", xattrs={"security.capability": CAP_NET_RAW}),
        Member("usr/bin/owned", "file", b"o", uid=1234, gid=5678, mode=0o640),
        Member("usr/bin/abs", "symlink", linkname="/usr/bin/su", uid=7, gid=8, mtime=1_400_000_000),
        Member("usr/bin/rel", "symlink", linkname="../../etc/./x/../passwd"),
        Member("usr/bin/dangling", "symlink", linkname="nowhere"),
        Member("dev/null", "chr", devmajor=1, devminor=3, mode=0o666, uid=3),
        Member("dev/loop0", "blk", devmajor=7, devminor=0, mode=0o660, gid=6),
        Member("run/fifo", "fifo", mode=0o620, uid=9),
        Member("etc/", "dir", xattrs={"user.note": b"kept", "trusted.custom": b"t"}),
    ]
    apply_members(members, layer, whiteout_format="vfs")
    tree = snapshot(layer)
    assert tree["usr"].mode == 0o755
    assert (tree["usr/bin"].mode, tree["usr/bin"].uid, tree["usr/bin"].gid) == (0o750, 10, 20)
    # setuid and setgid survive chown because chmod comes after it
    assert tree["usr/bin/su"].mode == 0o4755
    assert (tree["usr/bin/wall"].mode, tree["usr/bin/wall"].gid) == (0o2755, 5)
    assert tree["tmp"].mode == 0o1777
    assert dict(tree["usr/bin/ping"].xattrs) == {"security.capability": CAP_NET_RAW}
    owned = tree["usr/bin/owned"]
    assert (owned.uid, owned.gid, owned.mode) == (1234, 5678, 0o640)
    # symlinks: targets verbatim, owner set on the link itself
    assert tree["usr/bin/abs"].link == "/usr/bin/su"
    assert (tree["usr/bin/abs"].uid, tree["usr/bin/abs"].gid) == (7, 8)
    assert tree["usr/bin/abs"].mtime_ns == 1_400_000_000 * 10**9
    assert tree["usr/bin/rel"].link == "../../etc/./x/../passwd"
    assert tree["usr/bin/dangling"].link == "nowhere"
    assert (tree["dev/null"].kind, tree["dev/null"].rdev) == ("chr", (1, 3))
    assert (tree["dev/null"].mode, tree["dev/null"].uid) == (0o666, 3)
    assert (tree["dev/loop0"].kind, tree["dev/loop0"].rdev) == ("blk", (7, 0))
    assert (tree["run/fifo"].kind, tree["run/fifo"].mode, tree["run/fifo"].uid) == (
        "fifo",
        0o620,
        9,
    )
    assert dict(tree["etc"].xattrs) == {"user.note": b"kept", "trusted.custom": b"t"}
    # parents the tar never listed are made 0755
    assert tree["dev"].mode == 0o755


def test_mtimes_including_directories_written_into_later(layer: Path) -> None:
    members = [
        Member("d/", "dir", mtime=1_000_000_000),
        Member("d/sub/", "dir", mtime=1_000_000_100),
        Member("d/sub/f", "file", b"x", mtime=1_000_000_200),
        Member("d/g", "file", b"y", mtime=1_000_000_300),
    ]
    apply_members(members, layer)
    assert (layer / "d").stat().st_mtime_ns == 1_000_000_000 * 10**9
    assert (layer / "d/sub").stat().st_mtime_ns == 1_000_000_100 * 10**9
    assert (layer / "d/sub/f").stat().st_mtime_ns == 1_000_000_200 * 10**9
    assert (layer / "d/g").stat().st_mtime_ns == 1_000_000_300 * 10**9


def test_subsecond_mtime_and_atime_from_pax(layer: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"mtime": "1600000000.25", "atime": "1700000000.5"}
        tar.addfile(info, io.BytesIO())
        old = tarfile.TarInfo("old-atime")
        old.pax_headers = {"mtime": "1600000000", "atime": "1500000000"}
        tar.addfile(old, io.BytesIO())
    apply(io.BytesIO(buf.getvalue()), layer)
    st = (layer / "f").stat()
    assert st.st_mtime_ns == 1_600_000_000_250_000_000
    assert st.st_atime_ns == 1_700_000_000_500_000_000
    # an atime before the mtime is raised to it (as containers/storage does)
    assert (layer / "old-atime").stat().st_atime_ns == 1_600_000_000 * 10**9


def test_hardlinks_share_an_inode(layer: Path) -> None:
    members = [
        Member("bin/", "dir"),
        Member("bin/busybox", "file", b"BB", mode=0o755),
        Member("bin/sh", "hardlink", linkname="bin/busybox"),
        Member("bin/ls", "hardlink", linkname="/bin/busybox"),
        Member("bin/link", "symlink", linkname="busybox"),
        Member("bin/link2", "hardlink", linkname="bin/link"),
    ]
    apply_members(members, layer)
    inode = (layer / "bin/busybox").stat().st_ino
    assert (layer / "bin/sh").stat().st_ino == inode
    assert (layer / "bin/ls").stat().st_ino == inode
    assert (layer / "bin/busybox").stat().st_nlink == 3
    # a hard link to a symlink links the symlink itself
    assert (layer / "bin/link2").is_symlink()
    assert (layer / "bin/link2").lstat().st_ino == (layer / "bin/link").lstat().st_ino


@pytest.mark.parametrize("fmt", ["overlay", "vfs"])
def test_hardlink_to_a_missing_target_is_an_error(layer: Path, fmt: str) -> None:
    with pytest.raises(InvalidArchive, match="not in this layer"):
        apply_members(
            [Member("a", "hardlink", linkname="missing/file")], layer, whiteout_format=fmt
        )


def test_hardlink_to_a_directory_is_an_error(layer: Path) -> None:
    with pytest.raises(InvalidArchive, match="is a directory"):
        apply_members([Member("d/", "dir"), Member("l", "hardlink", linkname="d")], layer)


def test_large_file_crossing_many_chunks(layer: Path) -> None:
    payload = os.urandom(1 << 20) * 5 + b"end"
    blob = gzipped(layer_tar([Member("big", "file", payload), Member("after", "file", b"a")]))
    result = apply(io.BytesIO(blob), layer)
    assert (layer / "big").read_bytes() == payload
    assert (layer / "after").read_bytes() == b"a"
    assert result.entries == 2


# --- names -----------------------------------------------------------------


def test_leading_slash_and_dot_segments_stay_inside(layer: Path) -> None:
    apply_members(
        [
            Member("/etc/hostname", "file", b"abs"),
            Member("./a/./b/../c", "file", b"clean"),
            Member("x//y", "file", b"dup-slash"),
        ],
        layer,
    )
    assert (layer / "etc/hostname").read_bytes() == b"abs"
    assert (layer / "a/c").read_bytes() == b"clean"
    assert (layer / "x/y").read_bytes() == b"dup-slash"
    assert not (layer / "a/b").exists()


def test_the_root_member_keeps_the_layer_root_attributes(layer: Path) -> None:
    layer.chmod(0o700)
    apply_members([Member("./", "dir", mode=0o777, uid=55), Member("f", "file", b"")], layer)
    st = layer.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, 0)


def test_non_utf8_names(layer: Path) -> None:
    name = b"caf\xe9-\xff"
    apply(io.BytesIO(layer_tar([Member(name, "file", b"latin")], writer="skiff")), layer)
    assert (layer / os.fsdecode(name)).read_bytes() == b"latin"


# --- replacement -----------------------------------------------------------


def test_later_members_replace_earlier_ones(layer: Path) -> None:
    apply_members(
        [
            Member("f", "file", b"first"),
            Member("f", "file", b"second"),
            Member("d/", "dir", mode=0o700),
            Member("d/keep", "file", b"k"),
            Member("d/", "dir", mode=0o750, uid=3),  # dir over dir: merge, new attributes
            Member("file-then-dir", "file", b"x"),
            Member("file-then-dir/", "dir"),
            Member("dir-then-file/", "dir"),
            Member("dir-then-file/inner", "file", b"gone"),
            Member("dir-then-file", "file", b"now a file"),
            Member("link", "symlink", linkname="/etc"),
            Member("link", "file", b"replaced the link, not its target"),
        ],
        layer,
    )
    assert (layer / "f").read_bytes() == b"second"
    assert (layer / "d/keep").read_bytes() == b"k"
    st = (layer / "d").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o750, 3)
    assert (layer / "file-then-dir").is_dir()
    assert (layer / "dir-then-file").read_bytes() == b"now a file"
    assert not (layer / "link").is_symlink()
    assert (layer / "link").read_bytes() == b"replaced the link, not its target"


# --- whiteouts: overlay ----------------------------------------------------


def test_overlay_whiteouts_and_opaque_directories(layer: Path) -> None:
    apply_members(
        [
            Member("etc/", "dir"),
            Member("etc/.wh.motd", "file", uid=3, gid=4),
            Member("var/", "dir"),
            Member("var/cache/", "dir"),
            Member("var/cache/.wh..wh..opq", "file"),
            Member("var/cache/new", "file", b"n"),
            Member("implicit/.wh..wh..opq", "file"),
        ],
        layer,
        whiteout_format="overlay",
    )
    motd = layer / "etc/motd"
    assert is_whiteout(motd)
    assert (motd.lstat().st_uid, motd.lstat().st_gid) == (3, 4)
    assert not (layer / "etc/.wh.motd").exists()
    assert os.getxattr(layer / "var/cache", "trusted.overlay.opaque") == b"y"
    assert (layer / "var/cache/new").read_bytes() == b"n"
    assert not (layer / "var/cache/.wh..wh..opq").exists()
    assert os.getxattr(layer / "implicit", "trusted.overlay.opaque") == b"y"
    with pytest.raises(OSError):
        os.getxattr(layer / "var", "trusted.overlay.opaque")


def test_overlay_whiteout_replaces_an_entry_of_the_same_layer(layer: Path) -> None:
    apply_members(
        [
            Member("d/", "dir"),
            Member("d/sub/", "dir"),
            Member("d/sub/f", "file", b"x"),
            Member("d/.wh.sub", "file"),
            Member("g", "file", b"y"),
            Member(".wh.g", "file"),
        ],
        layer,
        whiteout_format="overlay",
    )
    assert is_whiteout(layer / "d/sub")
    assert is_whiteout(layer / "g")


def test_overlay_directory_over_a_whiteout_is_opaque(layer: Path) -> None:
    apply_members(
        [Member(".wh.etc", "file"), Member("etc/", "dir"), Member("etc/new", "file", b"n")],
        layer,
        whiteout_format="overlay",
    )
    assert (layer / "etc").is_dir()
    assert os.getxattr(layer / "etc", "trusted.overlay.opaque") == b"y"
    assert (layer / "etc/new").read_bytes() == b"n"


def test_overlay_hardlink_to_a_whited_out_target_is_an_error(layer: Path) -> None:
    with pytest.raises(InvalidArchive, match="whites out"):
        apply_members(
            [
                Member("a", "file", b"x"),
                Member(".wh.a", "file"),
                Member("b", "hardlink", linkname="a"),
            ],
            layer,
            whiteout_format="overlay",
        )


def test_overlay_hardlink_to_a_lower_file_copies_it_up(tmp_shm: Path) -> None:
    lower1, lower2, upper = tmp_shm / "l1", tmp_shm / "l2", tmp_shm / "up"
    for path in (lower1, lower2, upper):
        path.mkdir()
    apply_members(
        [
            Member("usr/", "dir", mode=0o711, uid=1, mtime=1_000_000_000),
            Member("usr/lib/", "dir", mode=0o700, uid=1, mtime=1_000_000_000),
            Member(
                "usr/lib/libc.so",
                "file",
                b"libc",
                mode=0o4755,
                uid=3,
                gid=4,
                xattrs={"user.tag": b"v1"},
                mtime=1_200_000_000,
            ),
            Member("usr/lib/gone", "file", b"g"),
        ],
        lower1,
    )
    # The merged view takes a directory's attributes from the topmost layer
    # holding it: lower2 here.
    apply_members(
        [
            Member("usr/", "dir", mode=0o755, mtime=1_050_000_000),
            Member("usr/lib/", "dir", mode=0o750, uid=2, mtime=1_100_000_000),
            Member("usr/lib/.wh.gone", "file"),
        ],
        lower2,
        whiteout_format="overlay",
    )
    apply_members(
        [
            Member("usr/bin/", "dir"),
            Member("usr/bin/libc-link", "hardlink", linkname="usr/lib/libc.so"),
        ],
        upper,
        whiteout_format="overlay",
        lower_dirs=[lower2, lower1],
    )
    copied = upper / "usr/lib/libc.so"
    assert copied.read_bytes() == b"libc"
    st = copied.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4755, 3, 4)
    assert os.getxattr(copied, "user.tag") == b"v1"
    assert st.st_ino == (upper / "usr/bin/libc-link").stat().st_ino
    lib = (upper / "usr/lib").stat()
    assert (stat.S_IMODE(lib.st_mode), lib.st_uid, lib.st_mtime_ns) == (
        0o750,
        2,
        1_100_000_000 * 10**9,
    )
    # a target a lower layer whited out is not found
    with pytest.raises(InvalidArchive, match="not in this layer or its lower layers"):
        apply_members(
            [Member("x", "hardlink", linkname="usr/lib/gone")],
            upper,
            whiteout_format="overlay",
            lower_dirs=[lower2, lower1],
        )


# --- whiteouts: vfs --------------------------------------------------------


def populate_lower(root: Path) -> None:
    apply_members(
        [
            Member("etc/", "dir"),
            Member("etc/motd", "file", b"hello"),
            Member("etc/keep", "file", b"k"),
            Member("var/", "dir"),
            Member("var/cache/", "dir"),
            Member("var/cache/old1", "file", b"1"),
            Member("var/cache/olddir/", "dir"),
            Member("var/cache/olddir/deep", "file", b"d"),
            Member("var/cache/merged/", "dir"),
            Member("var/cache/merged/lower-file", "file", b"l"),
        ],
        root,
        whiteout_format="vfs",
    )


def test_vfs_whiteouts_delete_from_the_lower_copy(layer: Path) -> None:
    populate_lower(layer)
    result = apply_members(
        [
            Member("etc/.wh.motd", "file"),
            Member("var/.wh.cache", "file"),
            Member(".wh.never-existed", "file"),
        ],
        layer,
        whiteout_format="vfs",
    )
    assert not (layer / "etc/motd").exists()
    assert (layer / "etc/keep").exists()
    assert not (layer / "var/cache").exists()
    assert result.entries == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("marker_first", [True, False])
def test_vfs_opaque_keeps_only_this_layers_entries(layer: Path, marker_first: bool) -> None:
    populate_lower(layer)
    marker = Member("var/cache/.wh..wh..opq", "file")
    mine = [
        Member("var/cache/", "dir"),
        Member("var/cache/new", "file", b"n"),
        Member("var/cache/merged/", "dir"),
        Member("var/cache/merged/mine", "file", b"m"),
    ]
    members = [mine[0], marker, *mine[1:]] if marker_first else [*mine, marker]
    apply_members(members, layer, whiteout_format="vfs")
    assert sorted(p.name for p in (layer / "var/cache").iterdir()) == ["merged", "new"]
    assert sorted(p.name for p in (layer / "var/cache/merged").iterdir()) == ["mine"]


def test_vfs_opaque_after_content_in_a_lower_subdirectory(layer: Path) -> None:
    """The layer writes into var/cache/merged (a lower directory it does not
    list) before the opaque marker: the directory stays, with only this
    layer's entry in it."""
    populate_lower(layer)
    apply_members(
        [
            Member("var/cache/merged/deeper/mine", "file", b"m"),
            Member("var/cache/.wh..wh..opq", "file"),
        ],
        layer,
        whiteout_format="vfs",
    )
    assert sorted(str(p.relative_to(layer)) for p in (layer / "var/cache").rglob("*")) == [
        "var/cache/merged",
        "var/cache/merged/deeper",
        "var/cache/merged/deeper/mine",
    ]


def test_aufs_metadata_is_skipped_with_a_warning(layer: Path) -> None:
    result = apply_members([Member(".wh..wh.plnk/", "dir"), Member("f", "file", b"")], layer)
    assert not (layer / ".wh..wh.plnk").exists()
    assert result.warnings == ("skipped AUFS metadata /.wh..wh.plnk",)  # type: ignore[attr-defined]


# --- results, digests, limits ----------------------------------------------


@pytest.mark.parametrize("compress", ["", "gzip", "zstd"])
def test_result_digests_and_sizes(tmp_shm: Path, compress: str) -> None:
    tar = layer_tar([Member("a/", "dir"), Member("a/f", "file", b"data" * 1000)])
    blob = {"": tar, "gzip": gzipped(tar), "zstd": zstd_compressed(tar)}[compress]
    dest = tmp_shm / f"layer-{compress or 'plain'}"
    dest.mkdir()
    result = apply(
        io.BytesIO(blob),
        dest,
        expected_diff_id=Digest.parse("sha256:" + hashlib.sha256(tar).hexdigest()),
        expected_digest=Digest.parse("sha256:" + hashlib.sha256(blob).hexdigest()),
    )
    assert result.diff_id.hex == hashlib.sha256(tar).hexdigest()
    assert result.digest.hex == hashlib.sha256(blob).hexdigest()
    assert result.compression == compress
    assert result.size == len(tar)
    assert result.compressed_size == len(blob)
    assert result.entries == 2


def test_diff_id_mismatch_is_raised_after_the_stream(layer: Path) -> None:
    wrong = Digest.parse("sha256:" + "0" * 64)
    with pytest.raises(DigestMismatch, match="diff ID mismatch"):
        apply_members([Member("f", "file", b"x")], layer, expected_diff_id=wrong)
    assert (layer / "f").exists()  # written; the caller discards the directory
    with pytest.raises(DigestMismatch, match="blob digest mismatch"):
        apply_members([Member("g", "file", b"x")], layer, expected_digest=wrong)


def test_entry_limit(layer: Path) -> None:
    members = [Member(f"f{i}", "file", b"") for i in range(11)]
    with pytest.raises(UnsafeArchive, match="more than the limit of 10 entries"):
        apply_members(members, layer, max_entries=10)
    apply_members(members, layer, max_entries=11)


@pytest.mark.parametrize("name", ["trusted.overlay.redirect", "user.overlay.opaque"])
def test_overlay_xattrs_in_a_layer_are_refused(layer: Path, name: str) -> None:
    with pytest.raises(UnsafeArchive, match=f"overlayfs attribute {name}"):
        apply_members([Member("d/", "dir", xattrs={name: b"y"})], layer)


def test_without_preserve_owner_files_belong_to_the_caller(layer: Path) -> None:
    apply_members([Member("f", "file", b"", uid=1234, gid=99)], layer, preserve_owner=False)
    st = (layer / "f").stat()
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


def test_bad_arguments(tmp_shm: Path) -> None:
    with pytest.raises(StorageError, match="unknown whiteout format"):
        apply(io.BytesIO(b""), tmp_shm, whiteout_format="aufs")  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="cannot open layer directory"):
        apply(io.BytesIO(b""), tmp_shm / "missing")


def test_a_denied_device_node_is_reported_or_skipped(layer: Path) -> None:
    """Without CAP_MKNOD (dropped in a child process) mknod fails: an
    ArchiveWriteDenied by default, a warning with skip_denied_devices."""
    import subprocess
    import sys

    tar = layer_tar([Member("dev/null", "chr", devmajor=1, devminor=3), Member("ok", "file", b"")])
    (layer.parent / "layer.tar").write_bytes(tar)
    script = f"""
import io, os
from skiff.errors import ArchiveWriteDenied
from skiff.storage.archive import apply
# Becoming nobody drops every capability, CAP_MKNOD included.
os.setgroups([])
os.setgid(65534); os.setuid(65534)
data = open({str(layer.parent / "layer.tar")!r}, "rb").read()
try:
    apply(io.BytesIO(data), {str(layer / "a")!r}, preserve_owner=False)
except ArchiveWriteDenied as exc:
    print("denied:", exc)
r = apply(io.BytesIO(data), {str(layer / "b")!r}, preserve_owner=False, skip_denied_devices=True)
print("warnings:", r.warnings)
"""
    tmp_shm = layer.parent
    tmp_shm.chmod(0o755)
    layer.chmod(0o755)
    for sub in ("a", "b"):
        (layer / sub).mkdir()
        os.chown(layer / sub, 65534, 65534)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert "denied: cannot create device node /dev/null" in out
    assert "CAP_MKNOD" in out
    assert "warnings: ('skipped device node /dev/null: Operation not permitted',)" in out
    assert (layer / "b/ok").exists()
    assert not (layer / "b/dev/null").exists()
