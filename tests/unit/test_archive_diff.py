"""diff(), changes() and tar_directory(): content, determinism, round trips."""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from skiff.errors import StorageError
from skiff.storage.archive import Change, apply, changes, diff, tar_directory, write_tar
from skiff.testing.layertar import snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown)")

CAP = bytes.fromhex("0100000200200000000000000000000000000000")


def tar_of(chunks: object) -> bytes:
    buf = io.BytesIO()
    write_tar(chunks, buf)  # type: ignore[arg-type]
    return buf.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def make_rich_tree(root: Path) -> None:
    """A tree with one of everything a layer can hold."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc/shadow").write_text("secret")
    os.chown(root / "etc/shadow", 0, 42)
    (root / "etc/shadow").chmod(0o640)
    (root / "bin").mkdir()
    (root / "bin/busybox").write_bytes(os.urandom(300_000))
    (root / "bin/busybox").chmod(0o4755)
    os.link(root / "bin/busybox", root / "bin/sh")
    os.link(root / "bin/busybox", root / "bin/ls")
    (root / "bin/ping").write_bytes(b"ping")
    os.setxattr(root / "bin/ping", "security.capability", CAP)
    os.setxattr(root / "bin/ping", "user.origin", b"test")
    os.setxattr(root / "bin/ping", "trusted.not-carried", b"x")
    os.setxattr(root / "bin/ping", "user.overlay.not-carried", b"x")
    (root / "bin/vi").symlink_to("busybox")
    (root / "lib").symlink_to("/usr/lib")
    deep = root / ("d" * 60) / ("e" * 60) / ("f" * 60)
    deep.mkdir(parents=True)
    (deep / ("g" * 120)).write_text("long name")
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "dev/sda", 0o660 | stat.S_IFBLK, os.makedev(8, 0))
    os.mkfifo(root / "dev/initctl", 0o600)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "home/user").mkdir(parents=True)
    (root / "home/user/file").write_text("mine")
    os.chown(root / "home/user", 3_000_000, 3_000_000)
    os.chown(root / "home/user/file", 3_000_000, 3_000_000)
    (root / "empty").write_bytes(b"")
    os.utime(root / "etc/passwd", ns=(1_000_000_000 * 10**9, 1_000_000_000 * 10**9))


def carried(name: str) -> bool:
    return (name.startswith("user.") and not name.startswith("user.overlay.")) or (
        name == "security.capability"
    )


def seconds_only(tree: dict[str, object]) -> dict[str, object]:
    """Layers carry whole seconds: compare at that precision."""
    out = {}
    for key, info in tree.items():
        mtime = info.mtime_ns  # type: ignore[attr-defined]
        out[key] = info.__class__(  # type: ignore[attr-defined]
            **{**info.__dict__, "mtime_ns": None if mtime is None else mtime // 10**9}
        )
    return out


def test_tar_directory_round_trips_through_apply(tmp_shm: Path) -> None:
    source = tmp_shm / "src"
    make_rich_tree(source)
    data = tar_of(tar_directory(source))
    dest = tmp_shm / "dest"
    dest.mkdir()
    apply(io.BytesIO(data), dest, whiteout_format="vfs")
    assert seconds_only(snapshot(dest, xattr_filter=carried)) == seconds_only(
        snapshot(source, xattr_filter=carried)
    )


def test_tar_directory_content(tmp_shm: Path) -> None:
    source = tmp_shm / "src"
    make_rich_tree(source)
    infos = {i.name: i for i in members(tar_of(tar_directory(source)))}
    # hard links: the first name in walk order holds the data
    assert infos["bin/busybox"].isfile()
    assert infos["bin/ls"].islnk() and infos["bin/ls"].linkname == "bin/busybox"
    assert infos["bin/sh"].islnk() and infos["bin/sh"].linkname == "bin/busybox"
    assert infos["bin/busybox"].mode == 0o4755
    assert infos["bin/ping"].pax_headers["SCHILY.xattr.user.origin"] == "test"
    assert "SCHILY.xattr.security.capability" in infos["bin/ping"].pax_headers
    assert not any("trusted" in key for key in infos["bin/ping"].pax_headers)
    assert not any("overlay" in key for key in infos["bin/ping"].pax_headers)
    assert infos["lib"].issym() and infos["lib"].linkname == "/usr/lib"
    assert infos["dev/null"].ischr() and (
        infos["dev/null"].devmajor,
        infos["dev/null"].devminor,
    ) == (1, 3)
    assert infos["dev/sda"].isblk()
    assert infos["dev/initctl"].isfifo()
    assert infos["home/user"].uid == 3_000_000
    assert infos["etc/passwd"].mtime == 1_000_000_000
    assert "" not in infos and "." not in infos  # the root itself is not a member


def test_sockets_are_left_out(tmp_shm: Path) -> None:
    source = tmp_shm / "src"
    source.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(source / "sock"))
    sock.close()
    (source / "f").write_text("x")
    assert [i.name for i in members(tar_of(tar_directory(source)))] == ["f"]


def test_output_is_deterministic_whatever_the_creation_order(tmp_shm: Path) -> None:
    one, two = tmp_shm / "one", tmp_shm / "two"
    for root, names in ((one, ["b", "a", "c/z", "c/y"]), (two, ["c/y", "a", "c/z", "b"])):
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(name)
        for path in [root / "c", *(root / n for n in names)]:
            os.utime(path, ns=(0, 1_600_000_000 * 10**9))
    first = tar_of(tar_directory(one))
    assert first == tar_of(tar_directory(one))
    assert first == tar_of(tar_directory(two))
    assert [i.name for i in members(first)] == ["a", "b", "c", "c/y", "c/z"]


def test_gnu_tar_extracts_our_output_identically(tmp_shm: Path) -> None:
    source = tmp_shm / "src"
    make_rich_tree(source)
    layer = tmp_shm / "layer.tar"
    with layer.open("wb") as out:
        write_tar(tar_directory(source), out)
    dest = tmp_shm / "gnu"
    dest.mkdir()
    subprocess.run(
        [
            "tar",
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "-xpf",
            str(layer),
            "-C",
            str(dest),
        ],
        check=True,
    )
    assert seconds_only(snapshot(dest, xattr_filter=carried)) == seconds_only(
        snapshot(source, xattr_filter=carried)
    )


# --- vfs: two full trees ---------------------------------------------------


def copy_tree(source: Path, dest: Path) -> None:
    """What the vfs driver does for a new layer: an exact copy (cp -a)."""
    subprocess.run(["cp", "-a", "--", str(source), str(dest)], check=True)


def test_vfs_diff_and_changes(tmp_shm: Path) -> None:
    old = tmp_shm / "old"
    make_rich_tree(old)
    (old / "var/cache").mkdir(parents=True)
    (old / "var/cache/a").write_text("a")
    (old / "var/log").mkdir(parents=True)
    (old / "var/log/x").write_text("x")
    new = tmp_shm / "new"
    copy_tree(old, new)
    # content change (size), owner change, mode change, new file, new dir,
    # deleted file, deleted dir, symlink retarget, xattr change, file->dir
    (new / "etc/passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    os.chown(new / "etc/shadow", 0, 0)
    (new / "tmp").chmod(0o777)
    (new / "home/user/new").write_text("added")
    (new / "opt/app").mkdir(parents=True)
    (new / "opt/app/run").write_text("run")
    (new / "empty").unlink()
    shutil.rmtree(new / "var/cache")
    (new / "lib").unlink()
    (new / "lib").symlink_to("/usr/lib64")
    os.setxattr(new / "bin/ping", "user.origin", b"changed")
    (new / "var/log/x").unlink()
    (new / "var/log/x").mkdir()
    (new / "var/log/x/inner").write_text("i")

    found = changes(new, whiteout_format="vfs", parent_dir=old)
    assert found == [
        Change("C", "/bin"),
        Change("C", "/bin/ping"),
        Change("D", "/empty"),
        Change("C", "/etc"),
        Change("C", "/etc/passwd"),
        Change("C", "/etc/shadow"),
        Change("C", "/home"),
        Change("C", "/home/user"),
        Change("A", "/home/user/new"),
        Change("C", "/lib"),
        Change("A", "/opt"),
        Change("A", "/opt/app"),
        Change("A", "/opt/app/run"),
        Change("C", "/tmp"),
        Change("C", "/var"),
        Change("D", "/var/cache"),
        Change("C", "/var/log"),
        Change("C", "/var/log/x"),
        Change("A", "/var/log/x/inner"),
    ]
    data = tar_of(diff(new, whiteout_format="vfs", parent_dir=old))
    names = [i.name for i in members(data)]
    assert ".wh.empty" in names and "var/.wh.cache" in names
    assert not any(name.startswith("var/cache/") for name in names)
    # Applying the diff onto a copy of the old tree gives the new tree.
    applied = tmp_shm / "applied"
    copy_tree(old, applied)
    apply(io.BytesIO(data), applied, whiteout_format="vfs")
    assert seconds_only(snapshot(applied, xattr_filter=carried, mtimes=False)) == seconds_only(
        snapshot(new, xattr_filter=carried, mtimes=False)
    )


def test_vfs_diff_without_parent_is_the_whole_tree(tmp_shm: Path) -> None:
    new = tmp_shm / "new"
    make_rich_tree(new)
    assert tar_of(diff(new, whiteout_format="vfs")) == tar_of(tar_directory(new))
    assert all(c.kind == "A" for c in changes(new, whiteout_format="vfs"))


def test_directory_mtime_alone_is_no_change(tmp_shm: Path) -> None:
    old = tmp_shm / "old"
    (old / "d").mkdir(parents=True)
    new = tmp_shm / "new"
    copy_tree(old, new)
    os.utime(new / "d", ns=(0, 0))
    assert changes(new, whiteout_format="vfs", parent_dir=old) == []
    assert members(tar_of(diff(new, whiteout_format="vfs", parent_dir=old))) == []


# --- overlay upper directories ---------------------------------------------


def make_upper(tmp_shm: Path) -> tuple[Path, list[Path]]:
    lower = tmp_shm / "lower"
    (lower / "etc/skel").mkdir(parents=True)
    (lower / "etc/motd").write_text("hi")
    (lower / "etc/skel/.profile").write_text("p")
    (lower / "etc/skel/.bashrc").write_text("b")
    (lower / "etc/hosts").write_text("h")
    upper = tmp_shm / "upper"
    (upper / "etc/skel").mkdir(parents=True)
    os.mknod(upper / "etc/motd", stat.S_IFCHR, 0)  # deleted
    os.setxattr(upper / "etc/skel", "trusted.overlay.opaque", b"y")  # replaced
    (upper / "etc/skel/.new").write_text("n")
    (upper / "etc/hosts").write_text("changed")
    (upper / "srv").mkdir()
    (upper / "srv/data").write_text("d")
    return upper, [lower]


def test_overlay_diff_translates_whiteouts_and_opaque_dirs(tmp_shm: Path) -> None:
    upper, _ = make_upper(tmp_shm)
    infos = members(tar_of(diff(upper, whiteout_format="overlay")))
    assert [i.name for i in infos] == [
        "etc",
        "etc/hosts",
        "etc/.wh.motd",
        "etc/skel",
        "etc/skel/.wh..wh..opq",
        "etc/skel/.new",
        "srv",
        "srv/data",
    ]
    whiteout = infos[2]
    assert whiteout.isfile() and whiteout.size == 0 and whiteout.mode == 0o600
    assert not any(k.startswith("SCHILY.xattr.trusted") for i in infos for k in i.pax_headers)


def test_overlay_diff_applied_in_either_format(tmp_shm: Path) -> None:
    upper, (lower,) = make_upper(tmp_shm)
    data = tar_of(diff(upper, whiteout_format="overlay"))
    # vfs: onto a copy of the lower tree, giving what the merged view shows
    merged = tmp_shm / "merged"
    copy_tree(lower, merged)
    apply(io.BytesIO(data), merged, whiteout_format="vfs")
    assert sorted(str(p.relative_to(merged)) for p in merged.rglob("*")) == [
        "etc",
        "etc/hosts",
        "etc/skel",
        "etc/skel/.new",
        "srv",
        "srv/data",
    ]
    assert (merged / "etc/hosts").read_text() == "changed"
    # overlay: gives back the upper directory itself
    again = tmp_shm / "again"
    again.mkdir()
    apply(io.BytesIO(data), again, whiteout_format="overlay")
    assert snapshot(again, mtimes=False) == snapshot(upper, mtimes=False)


def test_overlay_changes_tell_added_from_changed(tmp_shm: Path) -> None:
    upper, lowers = make_upper(tmp_shm)
    assert changes(upper, whiteout_format="overlay", lower_dirs=lowers) == [
        Change("C", "/etc"),
        Change("C", "/etc/hosts"),
        Change("D", "/etc/motd"),
        Change("C", "/etc/skel"),
        Change("D", "/etc/skel/.bashrc"),
        Change("A", "/etc/skel/.new"),
        Change("D", "/etc/skel/.profile"),
        Change("A", "/srv"),
        Change("A", "/srv/data"),
    ]


def test_overlay_redirect_dirs_are_refused(tmp_shm: Path) -> None:
    upper = tmp_shm / "upper"
    (upper / "moved").mkdir(parents=True)
    os.setxattr(upper / "moved", "trusted.overlay.redirect", b"/orig")
    with pytest.raises(StorageError, match="redirect"):
        tar_of(diff(upper, whiteout_format="overlay"))


@pytest.mark.parametrize("swap", ["symlink", "other-file", "gone"])
def test_a_file_swapped_while_archived_is_an_error(tmp_shm: Path, swap: str) -> None:
    """The walk lists a directory first and reads its files later; a file
    replaced in between (a running container) must not be followed."""
    source = tmp_shm / "src"
    source.mkdir()
    (source / "a").write_bytes(os.urandom(1 << 20))  # big: yields mid-walk
    (source / "b").write_bytes(b"b" * 100)
    chunks = tar_directory(source)
    first = next(chunks)  # "a" is being read; "b" was already listed
    assert first
    (source / "b").unlink()
    if swap == "symlink":
        (source / "b").symlink_to("/etc/passwd")
    elif swap == "other-file":
        (source / "b").write_bytes(b"other")
    with pytest.raises(StorageError, match="/b changed while its layer was being archived"):
        b"".join(chunks)
