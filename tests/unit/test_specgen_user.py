"""User resolution and the in-rootfs path walker.

The expected users and group lists are what podman 4.3 put in config.json
for the same /etc/passwd, /etc/group and --user/--group-add (recorded from
``podman create`` runs against the busybox test image).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skiff.errors import ContainerError, UsageError
from skiff.runtime.specgen import rootfs as rootfs_paths
from skiff.runtime.specgen.user import (
    ExecUser,
    parse_group,
    parse_passwd,
    resolve_user,
    split_user_spec,
)

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    "www:x:1000:1000:www:/var/www:/bin/sh\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\nwww:x:1000:\n"
GROUP_MEMBERS = GROUP + "extra:x:2000:www\nother:x:3000:root,www\n"


def make_rootfs(tmp_path: Path, passwd: str = PASSWD, group: str = GROUP) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(passwd)
    (root / "etc" / "group").write_text(group)
    return root


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", ExecUser(0, 0, (), "/root", "root")),
        ("www", ExecUser(1000, 1000, (1000,), "/var/www", "www")),
        ("www:www", ExecUser(1000, 1000, (1000,), "/var/www", "www")),
        ("1000", ExecUser(1000, 1000, (1000,), "/var/www", "www")),
        ("1234", ExecUser(1234, 0, (0,), "/", None)),
        ("1234:5", ExecUser(1234, 5, (5,), "/", None)),
        ("www:65534", ExecUser(1000, 65534, (65534,), "/var/www", "www")),
        ("nobody", ExecUser(65534, 65534, (65534,), "/nonexistent", "nobody")),
        ("root", ExecUser(0, 0, (0,), "/root", "root")),
        ("0:1000", ExecUser(0, 1000, (1000,), "/root", "root")),
    ],
)
def test_resolve_like_podman(tmp_path: Path, user: str, expected: ExecUser) -> None:
    assert resolve_user(make_rootfs(tmp_path), user) == expected


def test_supplementary_groups_and_group_add_order(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path, group=GROUP_MEMBERS)
    got = resolve_user(root, "www", ["nobody", "4321"])
    # podman 4.3: additionalGids [1000, 65534, 4321, 2000, 3000]
    assert got.additional_gids == (1000, 65534, 4321, 2000, 3000)
    assert resolve_user(root, "").additional_gids == (3000,)
    assert resolve_user(root, "www:extra").additional_gids == (2000,)
    assert resolve_user(root, "", ["www", "www"]).additional_gids == (1000, 3000)


def test_unknown_user_and_group(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path)
    with pytest.raises(
        ContainerError, match="unable to find user bogus: no matching entries in passwd file"
    ):
        resolve_user(root, "bogus")
    with pytest.raises(
        ContainerError, match="unable to find group bogus: no matching entries in group file"
    ):
        resolve_user(root, "www:bogus")
    with pytest.raises(ContainerError, match="unable to find group nope"):
        resolve_user(root, "", ["nope"])


def test_missing_databases(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert resolve_user(root, "") == ExecUser(0, 0, (), "/", None)
    assert resolve_user(root, "7:8") == ExecUser(7, 8, (8,), "/", None)
    with pytest.raises(ContainerError, match="unable to find user www"):
        resolve_user(root, "www")


def test_name_that_looks_numeric_is_looked_up_by_name_first(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path, passwd=PASSWD + "1000:x:5000:5000::/h:/bin/sh\n")
    assert resolve_user(root, "1000").uid == 5000


def test_malformed_lines_are_skipped() -> None:
    entries = parse_passwd(
        b"# c\n\nbad\nx:x:notanumber:1::/h:\ny:x:5:6::/y:/bin/sh\nz:x:4294967295:0::/:\n"
    )
    assert [(e.name, e.uid, e.gid, e.home) for e in entries] == [("y", 5, 6, "/y")]
    groups = parse_group(b"g:x:7:a,,b\nshort:x\nh:x:8\n")
    assert [(g.name, g.gid, g.members) for g in groups] == [("g", 7, ("a", "b")), ("h", 8, ())]


@pytest.mark.parametrize("spec", ["www:", ":www", "a b", "a/b", "99999999999", "1:99999999999"])
def test_bad_user_specs(spec: str) -> None:
    with pytest.raises(UsageError):
        split_user_spec(spec)


def test_database_not_a_regular_file(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path)
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").mkdir()
    with pytest.raises(ContainerError, match="/etc/passwd"):
        resolve_user(root, "www")


def test_database_too_large(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path)
    with open(root / "etc" / "passwd", "ab") as f:
        f.truncate(17 << 20)
    with pytest.raises(ContainerError, match="larger than"):
        resolve_user(root, "www")


# --- the walker --------------------------------------------------------------------------


def test_absolute_symlink_resolves_inside_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("host:x:1:1::/:\n")
    root = make_rootfs(tmp_path)
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(outside / "passwd")
    assert rootfs_paths.read_file(root, "/etc/passwd", 1 << 20) is None
    inner = root / str(outside).lstrip("/")
    inner.mkdir(parents=True)
    (inner / "passwd").write_text("inner:x:2:2::/:\n")
    assert rootfs_paths.read_file(root, "/etc/passwd", 1 << 20) == b"inner:x:2:2::/:\n"


def test_dotdot_and_relative_links_cannot_climb_out(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("host\n")
    root = make_rootfs(tmp_path)
    (root / "etc" / "up").symlink_to("../../../../../../..")
    assert rootfs_paths.read_file(root, "/etc/up/secret", 100) is None
    assert rootfs_paths.read_file(root, "/../../secret", 100) is None
    assert rootfs_paths.read_file(root, "/etc/up/etc/passwd", 1 << 20) == PASSWD.encode()
    assert rootfs_paths.resolve(root, "/etc/up/etc").path == "/etc"


def test_symlink_loop_is_an_error(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path)
    (root / "a").symlink_to("b")
    (root / "b").symlink_to("a")
    with pytest.raises(OSError, match="symbolic links"):
        rootfs_paths.read_file(root, "/a", 100)


def test_file_as_directory(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path)
    with pytest.raises(NotADirectoryError):
        rootfs_paths.read_file(root, "/etc/passwd/x", 100)
    assert rootfs_paths.is_dir(root, "/etc/passwd/x") is False
    assert rootfs_paths.is_dir(root, "/etc/passwd") is False
    assert rootfs_paths.is_dir(root, "/etc") is True
    assert rootfs_paths.is_dir(root, "/nope/x") is None


def test_resolve_reports_missing_tail(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path)
    (root / "app").symlink_to("/srv/app")
    resolved = rootfs_paths.resolve(root, "/app/sub")
    assert resolved.path == "/srv/app/sub"
    assert resolved.missing == ("srv", "app", "sub")
    assert rootfs_paths.resolve(root, "/").path == "/"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_make_dirs_inside_root_and_owned_by_the_user(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path)
    host = tmp_path / "hostdir"
    host.mkdir()
    (root / "app").symlink_to(str(host))
    assert rootfs_paths.make_dirs(root, "/app/a/b", 1000, 1000) is True
    assert list(host.iterdir()) == []
    made = root / str(host).lstrip("/") / "a" / "b"
    st = made.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, 0o755)
    assert (made.parent.stat().st_uid) == 0
    assert rootfs_paths.make_dirs(root, "/app/a/b", 1000, 1000) is False
    with pytest.raises(NotADirectoryError):
        rootfs_paths.make_dirs(root, "/etc/passwd", 0, 0)
