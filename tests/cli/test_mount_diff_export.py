"""``skiff create|mount|umount|image mount|image umount|diff|export`` end to end, both drivers.

Containers are created with ``skiff create`` (storage and record, never
started); their trees are changed through ``skiff mount``'s directory, as a
user (or a build tool) would, and ``diff``/``export`` must then show exactly
those changes. Mounts are counted and outlive the command that made them.
"""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.storage.mount import is_mounted, mount_points, unmount
from skiff.testing.busybox import BusyboxImage, build_layered_layout
from skiff.testing.cli import CliEnv

DRIVERS = ["overlay", "vfs"]


@pytest.fixture(params=DRIVERS)
def cli(
    request: pytest.FixtureRequest, tmp_shm: Path, busybox_layout: BusyboxImage
) -> Iterator[CliEnv]:
    env = CliEnv(tmp_shm / "cli")
    # the first command creates the store with the driver; later ones find it recorded
    env.skiff(
        "--storage-driver", request.param, "image", "copy", "-q",
        busybox_layout.reference, "containers-storage:docker.io/library/busybox:latest",
    )  # fmt: skip
    try:
        yield env
    finally:
        unmount_below(env.base)


def unmount_below(base: Path) -> None:
    """Whatever a failed test left mounted in its store (so tmpfs cleanup can remove it)."""
    for point in sorted(mount_points(), reverse=True):
        if point.startswith(f"{base}/"):
            unmount(point, detach=True)


def driver(cli: CliEnv) -> str:
    return str(cli.skiff("info", "--format", "{{.Store.GraphDriverName}}").stdout.strip())


def create(cli: CliEnv, name: str, image: str = "busybox") -> str:
    out = cli.skiff("create", "--name", name, image).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", out)
    return out


# --- mount / umount -------------------------------------------------------------------------


def test_mount_and_umount_a_container(cli: CliEnv) -> None:
    ctr = create(cli, "c1")
    path = Path(cli.skiff("mount", "c1").stdout.strip())
    assert (path / "bin" / "busybox").is_file()
    assert (path / "etc" / "passwd").read_bytes().startswith(b"root:x:0:0")
    if driver(cli) == "overlay":
        assert is_mounted(path)
    assert cli.skiff("mount").stdout == f"{ctr[:12]}  {path}\n"
    assert cli.skiff("mount", "--notruncate").stdout == f"{ctr}  {path}\n"
    listed = cli.skiff("mount", "--format", "json")
    assert listed.stdout.startswith('[\n {\n  "id": ')  # podman's one-space indent
    assert listed.json() == [{"id": ctr, "Names": ["c1"], "mountpoint": str(path)}]
    # counted: a second mount needs a second umount
    assert cli.skiff("mount", ctr[:8]).stdout.strip() == str(path)
    assert cli.skiff("umount", "c1").stdout == "c1\n"
    assert cli.skiff("mount").stdout != ""
    assert cli.skiff("umount", ctr).stdout == f"{ctr}\n"
    assert cli.skiff("mount").stdout == ""
    if driver(cli) == "overlay":
        assert not is_mounted(path)


def test_umount_resolves_every_name_first(cli: CliEnv) -> None:
    create(cli, "c1")
    create(cli, "c2")
    cli.skiff("mount", "c1", "c2")
    line = cli.fails("umount", "c1", "nosuch")
    assert line == 'Error: no container with name or ID "nosuch" found: no such container'
    assert len(cli.skiff("mount").stdout.splitlines()) == 2
    out = cli.skiff("umount", "-a").stdout.split()
    assert len(out) == 2 and all(re.fullmatch(r"[0-9a-f]{64}", i) for i in out)
    assert cli.skiff("mount").stdout == ""
    line = cli.fails("umount")
    assert "container name or ID must be specified" in line
    line = cli.fails("mount", "nosuch")
    assert "nosuch" in line


def test_force_umount_drops_every_reference(cli: CliEnv) -> None:
    create(cli, "c1")
    for _ in range(3):
        cli.skiff("mount", "c1")
    cli.skiff("umount", "--force", "c1")
    assert cli.skiff("mount").stdout == ""


def test_image_mount(cli: CliEnv) -> None:
    image_id = cli.skiff("image", "inspect", "--format", "{{.Id}}", "busybox").stdout.strip()
    path = Path(cli.skiff("image", "mount", "busybox").stdout.strip())
    assert (path / "bin" / "busybox").is_file()
    if driver(cli) == "overlay":
        with pytest.raises(OSError, match="Read-only file system"):
            (path / "new").write_text("x")
    assert cli.skiff("image", "mount").stdout == f"docker.io/library/busybox:latest  {path}\n"
    data = cli.skiff("image", "mount", "--format", "json").json()
    digest = cli.skiff("image", "inspect", "--format", "{{.Digest}}", "busybox").stdout.strip()
    assert data == [
        {
            "id": image_id,
            "Names": [digest],
            "Repositories": ["docker.io/library/busybox:latest"],
            "mountpoint": str(path),
        }
    ]
    # `skiff mount` takes an image where no container has the name (atomic mount did)
    assert cli.skiff("mount", "busybox").stdout.strip() == str(path)
    assert cli.skiff("image", "umount", "busybox").stdout == f"{image_id}\n"
    assert cli.skiff("image", "umount", "-a").stdout == f"{image_id}\n"
    assert cli.skiff("image", "mount").stdout == ""


def test_image_mount_of_several_images(cli: CliEnv, tmp_shm: Path) -> None:
    layered = build_layered_layout(tmp_shm / "layered", 2)
    cli.skiff("image", "copy", "-q", layered.reference, "containers-storage:localhost/layered")
    rows = cli.skiff("image", "mount", "busybox", "layered").stdout.splitlines()
    assert [r.split()[0] for r in rows] == [
        "docker.io/library/busybox:latest",
        "localhost/layered:latest",
    ]
    top = Path(rows[1].split()[1])
    assert (top / "layers" / "0.txt").read_text() == "layer 0\n"
    assert (top / "layers" / "1.txt").read_text() == "layer 1\n"
    assert (top / "bin" / "busybox").is_file()
    cli.skiff("image", "umount", "-a")


# --- diff -------------------------------------------------------------------------------------


def change_tree(root: Path) -> None:
    """The same edits podman's interop test makes."""
    (root / "newfile").write_text("hi\n")
    (root / "newdir" / "sub").mkdir(parents=True)
    (root / "newdir" / "sub" / "f").write_text("x\n")
    with (root / "etc" / "passwd").open("a") as f:
        f.write("extra:x:5:5::/:/bin/false\n")
    (root / "etc" / "hosts").unlink()  # the runtime's file: not reported
    (root / "bin" / "ls").unlink()
    (root / "var" / "www" / "index.html").unlink()
    (root / "var" / "www").rmdir()
    (root / "tmp" / "link").symlink_to("/etc/passwd")
    os.chmod(root / "root", 0o750)


EXPECTED = {
    "A /newfile",
    "A /newdir",
    "A /newdir/sub",
    "A /newdir/sub/f",
    "C /etc",
    "C /etc/passwd",
    "C /bin",
    "D /bin/ls",
    "C /var",
    "D /var/www",
    "C /tmp",
    "A /tmp/link",
    "C /root",
}


def test_diff_of_a_container(cli: CliEnv) -> None:
    create(cli, "c1")
    root = Path(cli.skiff("mount", "c1").stdout.strip())
    change_tree(root)
    cli.skiff("umount", "c1")
    out = cli.skiff("diff", "c1").stdout
    assert set(out.splitlines()) == EXPECTED
    assert len(out.splitlines()) == len(EXPECTED)
    assert cli.skiff("container", "diff", "c1").stdout == out
    data = cli.skiff("diff", "--format", "json", "c1")
    assert data.stdout.startswith('{\n     "changed": [')  # podman's five-space indent
    parsed = data.json()
    assert list(parsed) == ["changed", "added", "deleted"]
    assert set(parsed["deleted"]) == {"/bin/ls", "/var/www"}
    # an unchanged container: no lines; JSON {}
    create(cli, "c2")
    assert cli.skiff("diff", "c2").stdout == ""
    assert cli.skiff("diff", "--format", "json", "c2").stdout == "{}\n"
    # against another object: c1's tree against the image is the same set
    assert set(cli.skiff("diff", "c1", "busybox").stdout.splitlines()) == EXPECTED
    line = cli.fails("diff", "nosuch")
    assert "nosuch" in line


def test_diff_of_an_image(cli: CliEnv, tmp_shm: Path) -> None:
    layered = build_layered_layout(tmp_shm / "layered", 2)
    cli.skiff("image", "copy", "-q", layered.reference, "containers-storage:localhost/layered")
    assert cli.skiff("diff", "layered").stdout == "C /layers\nA /layers/1.txt\n"
    assert cli.skiff("image", "diff", "layered").stdout == "C /layers\nA /layers/1.txt\n"
    assert set(cli.skiff("diff", "layered", "busybox").stdout.splitlines()) == {
        "A /layers",
        "A /layers/0.txt",
        "A /layers/1.txt",
    }
    base = cli.skiff("diff", "busybox").stdout.splitlines()
    assert "A /bin/busybox" in base and all(line.startswith("A /") for line in base)
    line = cli.fails("image", "diff", "nosuch")
    assert "nosuch: image not known" in line


# --- export -----------------------------------------------------------------------------------


def tree_listing(root: Path) -> dict[str, tuple[str, int, str]]:
    """path → (type, mode, content or link target) of a tree on disk."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            st = full.lstat()
            if full.is_symlink():
                out[rel] = ("l", 0o777, os.readlink(full))
            elif full.is_dir():
                out[rel] = ("d", st.st_mode & 0o7777, "")
            else:
                out[rel] = ("f", st.st_mode & 0o7777, full.read_bytes().hex())
    return out


def tar_listing(data: bytes) -> dict[str, tuple[str, int, str]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            name = member.name.rstrip("/")
            if member.issym():
                out[name] = ("l", 0o777, member.linkname)
            elif member.isdir():
                out[name] = ("d", member.mode, "")
            else:
                f = tar.extractfile(member)
                assert f is not None
                out[name] = ("f", member.mode, f.read().hex())
    return out


def test_export_writes_the_whole_tree(cli: CliEnv, tmp_shm: Path) -> None:
    create(cli, "c1")
    root = Path(cli.skiff("mount", "c1").stdout.strip())
    change_tree(root)
    expected = tree_listing(root)
    cli.skiff("umount", "c1")
    target = tmp_shm / "out.tar"
    assert cli.skiff("export", "-o", target, "c1").stdout == ""
    data = target.read_bytes()
    assert tar_listing(data) == expected
    # to stdout: the same bytes
    piped = subprocess.run(
        cli.skiff_argv("export", "c1"), capture_output=True, env=cli.environ(), check=True
    )
    assert piped.stdout == data
    # the export did not leave the container mounted
    assert cli.skiff("mount").stdout == ""
    assert sorted(p.name for p in tmp_shm.iterdir() if p.name.endswith(".tmp")) == []


def test_export_failures_leave_nothing(cli: CliEnv, tmp_shm: Path) -> None:
    target = tmp_shm / "out.tar"
    line = cli.fails("export", "-o", target, "nosuch")
    assert "nosuch" in line
    assert not target.exists()
    line = cli.fails("export", "-o", tmp_shm / "no" / "dir" / "x.tar", "busybox")
    assert "busybox" in line  # not a container
    create(cli, "c1")
    line = cli.fails("export", "-o", tmp_shm / "no" / "dir" / "x.tar", "c1")
    assert "cannot write" in line
    assert list(tmp_shm.glob("**/*.tmp")) == []


def test_export_refuses_a_terminal(cli: CliEnv) -> None:
    create(cli, "c1")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            cli.skiff_argv("export", "c1"),
            stdout=follower,
            stderr=subprocess.PIPE,
            env=cli.environ(),
            timeout=60,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 125
    assert proc.stderr.decode().startswith("Error: refusing to export to terminal")


# --- create ----------------------------------------------------------------------------------


def test_create_gives_a_container_its_storage(cli: CliEnv) -> None:
    ctr = create(cli, "web")
    assert cli.skiff("ps", "-a", "--format", "{{.ID}} {{.Names}}").stdout == f"{ctr[:12]} web\n"
    line = cli.fails("create", "--name", "web", "busybox")
    assert "already in use" in line
    assert cli.skiff("image", "inspect", "--format", "{{.Id}}", "busybox").returncode == 0
    df = cli.skiff("system", "df", "--format", "{{.Type}} {{.Total}}").stdout
    assert "Containers 1" in df


def test_a_running_container_stays_mounted(cli: CliEnv) -> None:
    ctr = cli.skiff("run", "-d", "--name", "r1", "busybox", "/bin/busybox", "sleep", "60")
    ctr_id = ctr.stdout.strip()
    try:
        listed = cli.skiff("mount", "--notruncate").stdout
        assert listed.startswith(f"{ctr_id}  ")
        line = cli.fails("umount", "r1")
        assert "cannot unmount storage for container" in line and "it is running" in line
        assert cli.skiff("mount").stdout != ""
        df = cli.skiff("system", "df", "--format", "{{.Type}}: {{.Active}}").stdout
        assert "Containers: 1\n" in df and "Images: 1\n" in df
    finally:
        cli.skiff("rm", "-f", "r1")
    assert cli.skiff("mount").stdout == ""
