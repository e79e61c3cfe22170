"""``skiff cp`` end to end: podman's rules for names and destinations, owners,
tar streams, running and stopped containers, and the errors.

Every rule here was checked against podman 4.3.1 on this machine (a private
store, the same busybox image): where the file lands, what it is called,
who owns it, and which cases are errors.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from skiff.testing.containers import ContainerEnv

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
]


@pytest.fixture
def host(tmp_shm: Path) -> Path:
    """A host tree: file (owned 1234:1234, mode 0640), dir/sub/g, links."""
    base = tmp_shm / "host"
    (base / "dir" / "sub").mkdir(parents=True)
    (base / "file").write_text("file\n")
    os.chown(base / "file", 1234, 1234)
    (base / "file").chmod(0o640)
    (base / "dir" / "sub" / "g").write_text("g\n")
    (base / "dir" / "top").write_text("top\n")
    (base / "flink").symlink_to("file")
    return base


@pytest.fixture
def running(env: ContainerEnv) -> str:
    """A running container whose user is www (1000:1000)."""
    env.run_detached(
        "--name", "live", "--network", "none", "--user", "www", env.image, "sleep", "1000"
    )
    return "live"


@pytest.fixture
def stopped(env: ContainerEnv) -> str:
    env.skiff("run", "--name", "dead", "--network", "none", env.image, "true")
    return "dead"


def tar_listing(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def cp_out(env: ContainerEnv, src: str) -> dict[str, tarfile.TarInfo]:
    """``skiff cp SRC -`` parsed."""
    result = subprocess.run(
        env.skiff_argv("cp", src, "-"), capture_output=True, env=env.environ(), check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return tar_listing(result.stdout)


def cp_out_bytes(env: ContainerEnv, src: str) -> bytes:
    result = subprocess.run(
        env.skiff_argv("cp", src, "-"), capture_output=True, env=env.environ(), check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def file_of(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


# --- into a running container ----------------------------------------------------------


def test_file_to_new_name_is_owned_by_the_container_user(
    env: ContainerEnv, running: str, host: Path
) -> None:
    env.skiff("cp", host / "file", f"{running}:/tmp/copy")
    st = (env.rootfs(running) / "tmp" / "copy").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (env.rootfs(running) / "tmp" / "copy").read_text() == "file\n"


def test_archive_false_keeps_the_source_owner(env: ContainerEnv, running: str, host: Path) -> None:
    env.skiff("cp", "--archive=false", host / "file", f"{running}:/tmp/kept")
    st = (env.rootfs(running) / "tmp" / "kept").stat()
    assert (st.st_uid, st.st_gid) == (1234, 1234)


def test_file_into_existing_directory_takes_its_basename(
    env: ContainerEnv, running: str, host: Path
) -> None:
    env.skiff("cp", host / "file", f"{running}:/tmp/")
    env.skiff("cp", host / "file", f"{running}:/home")
    assert (env.rootfs(running) / "tmp" / "file").read_text() == "file\n"
    assert (env.rootfs(running) / "home" / "file").read_text() == "file\n"


def test_file_replaces_an_existing_file(env: ContainerEnv, running: str, host: Path) -> None:
    env.skiff("cp", host / "file", f"{running}:/etc/passwd")
    assert (env.rootfs(running) / "etc" / "passwd").read_text() == "file\n"


def test_directory_forms(env: ContainerEnv, running: str, host: Path) -> None:
    root = env.rootfs(running)
    env.skiff("cp", host / "dir", f"{running}:/new")  # missing: created with the contents
    env.skiff("cp", host / "dir", f"{running}:/tmp")  # existing: nested by name
    env.skiff("cp", f"{host / 'dir'}/.", f"{running}:/home")  # /. : contents only
    env.skiff("cp", f"{host / 'dir'}/", f"{running}:/new2")
    assert (root / "new" / "sub" / "g").read_text() == "g\n"
    assert (root / "tmp" / "dir" / "sub" / "g").read_text() == "g\n"
    assert (root / "home" / "top").read_text() == "top\n"
    assert (root / "home" / "sub" / "g").is_file()
    assert (root / "new2" / "top").is_file()
    assert not (root / "home" / "dir").exists()


def test_host_symlink_source_is_followed_and_named_as_given(
    env: ContainerEnv, running: str, host: Path
) -> None:
    env.skiff("cp", host / "flink", f"{running}:/tmp/")
    copied = env.rootfs(running) / "tmp" / "flink"
    assert not copied.is_symlink()
    assert copied.read_text() == "file\n"


def test_destination_symlink_is_followed_inside_the_container(
    env: ContainerEnv, running: str, host: Path
) -> None:
    root = env.rootfs(running)
    (root / "tmp" / "etclink").symlink_to("/etc")
    env.skiff("cp", host / "file", f"{running}:/tmp/etclink")
    assert (root / "etc" / "file").read_text() == "file\n"


def test_hard_links_long_and_unicode_names_survive(
    env: ContainerEnv, running: str, tmp_shm: Path
) -> None:
    src = tmp_shm / "names"
    src.mkdir()
    long_name = "n" * 180
    (src / long_name).write_text("long\n")
    (src / "h1").write_text("linked\n")
    os.link(src / "h1", src / "h2")
    (src / "ünïcødé").write_text("u\n")
    env.skiff("cp", src, f"{running}:/tmp")
    dest = env.rootfs(running) / "tmp" / "names"
    assert (dest / long_name).read_text() == "long\n"
    assert (dest / "ünïcødé").read_text() == "u\n"
    assert (dest / "h1").stat().st_ino == (dest / "h2").stat().st_ino


def test_tar_from_stdin_goes_into_a_directory(env: ContainerEnv, running: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("fromtar/a.txt")
        info.size = 3
        info.uid = info.gid = 777
        tar.addfile(info, io.BytesIO(b"abc"))
    for args in ((), ("--archive=false",)):
        result = subprocess.run(
            env.skiff_argv("cp", *args, "-", f"{running}:/tmp"),
            input=buf.getvalue(),
            capture_output=True,
            env=env.environ(),
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        st = (env.rootfs(running) / "tmp" / "fromtar" / "a.txt").stat()
        assert (st.st_uid, st.st_gid) == ((777, 777) if args else (1000, 1000))
    assert (env.rootfs(running) / "tmp" / "fromtar" / "a.txt").read_bytes() == b"abc"
    # a file as destination of a stream is an error
    result = subprocess.run(
        env.skiff_argv("cp", "-", f"{running}:/etc/passwd"),
        input=buf.getvalue(),
        capture_output=True,
        env=env.environ(),
        check=False,
    )
    assert result.returncode == 125
    assert b"destination must be a directory" in result.stderr


def test_overwrite_is_needed_to_replace_a_directory_by_a_file(
    env: ContainerEnv, running: str, tmp_shm: Path
) -> None:
    root = env.rootfs(running)
    (root / "tmp" / "thing").mkdir()
    (root / "tmp" / "thing" / "keep").write_text("keep\n")
    src = tmp_shm / "src"
    src.mkdir()
    (src / "thing").write_text("now a file\n")
    message = env.fails("cp", f"{src}/.", f"{running}:/tmp")
    assert "cannot overwrite directory" in message and "--overwrite" in message
    assert (root / "tmp" / "thing" / "keep").is_file()
    env.skiff("cp", "--overwrite", f"{src}/.", f"{running}:/tmp")
    assert (root / "tmp" / "thing").read_text() == "now a file\n"


# --- out of a container --------------------------------------------------------------------


def test_copy_out_to_the_host(env: ContainerEnv, running: str, tmp_shm: Path) -> None:
    root = env.rootfs(running)
    (root / "tmp" / "d" / "sub").mkdir(parents=True)
    (root / "tmp" / "d" / "sub" / "f").write_text("inner\n")
    (root / "tmp" / "d" / "etclink").symlink_to("/etc")
    (root / "tmp" / "own").write_text("own\n")
    os.chown(root / "tmp" / "own", 77, 88)
    out = tmp_shm / "out"
    out.mkdir()
    env.skiff("cp", f"{running}:/tmp/d", out / "d")
    env.skiff("cp", f"{running}:/tmp/d/.", out / "dot")
    env.skiff("cp", f"{running}:/tmp/own", out)
    env.skiff("cp", "--archive=false", f"{running}:/tmp/own", out / "own-kept")
    assert (out / "d" / "sub" / "f").read_text() == "inner\n"
    assert (out / "d" / "etclink").is_symlink()
    assert os.readlink(out / "d" / "etclink") == "/etc"  # copied as a link, never followed
    assert (out / "dot" / "sub" / "f").is_file()
    assert (out / "own").stat().st_uid == os.getuid()
    assert ((out / "own-kept").stat().st_uid, (out / "own-kept").stat().st_gid) == (77, 88)


def test_container_symlink_source_resolves_inside_the_container(
    env: ContainerEnv, running: str, tmp_shm: Path
) -> None:
    root = env.rootfs(running)
    (root / "tmp" / "etclink").symlink_to("/etc")
    out = tmp_shm / "etc-copy"
    env.skiff("cp", f"{running}:/tmp/etclink", out)
    # the container's /etc (its hosts file is skiff's), not the host's
    assert (out / "passwd").read_bytes() == (root / "etc" / "passwd").read_bytes()
    assert not (out / "os-release").exists()


def test_copy_out_as_a_tar_stream_keeps_container_owners(env: ContainerEnv, running: str) -> None:
    root = env.rootfs(running)
    (root / "tmp" / "t" / "x").mkdir(parents=True)
    (root / "tmp" / "t" / "x" / "f").write_text("data\n")
    os.chown(root / "tmp" / "t" / "x" / "f", 5, 6)
    members = cp_out(env, f"{running}:/tmp/t")
    assert set(members) == {"t", "t/x", "t/x/f"}
    assert (members["t/x/f"].uid, members["t/x/f"].gid) == (5, 6)
    assert file_of(cp_out_bytes(env, f"{running}:/tmp/t/x/f"), "f") == b"data\n"


def test_copying_a_running_container_root_skips_the_runtime_mounts(
    env: ContainerEnv, running: str
) -> None:
    members = cp_out(env, f"{running}:/")
    assert "etc/passwd" in members and "bin/busybox" in members
    for special in ("proc", "sys", "dev"):
        assert special in members
        assert not [m for m in members if m.startswith(special + "/")], special


def test_container_to_container(env: ContainerEnv, running: str, stopped: str) -> None:
    env.skiff("cp", f"{stopped}:/etc/group", f"{running}:/tmp/group-from-dead")
    assert (env.rootfs(running) / "tmp" / "group-from-dead").read_bytes().startswith(b"root:")


# --- stopped containers ---------------------------------------------------------------------


def test_stopped_container_both_ways_leaves_no_mount(
    env: ContainerEnv, stopped: str, host: Path, tmp_shm: Path
) -> None:
    env.skiff("cp", host / "dir", f"{stopped}:/srv")
    out = tmp_shm / "back"
    env.skiff("cp", f"{stopped}:/srv", out)
    assert (out / "sub" / "g").read_text() == "g\n"
    assert not [m for m in env.leftovers() if m.startswith("mount")]
    # the files are in the container's layer: a start sees them
    env.skiff("start", stopped)
    env.skiff("wait", stopped)
    assert "srv/sub/g" in cp_out(env, f"{stopped}:/srv")


def test_stopped_container_volumes_and_binds_are_read_and_written(
    env: ContainerEnv, tmp_shm: Path
) -> None:
    bound = tmp_shm / "bound"
    bound.mkdir()
    (bound / "on-host").write_text("host\n")
    env.skiff(
        "run", "--name", "vol", "--network", "none", "-v", "cpvol:/data", "-v", f"{bound}:/bound",
        env.image, "sh", "-c", "echo in-volume > /data/written; mkdir -p /data/sub",
    )  # fmt: skip
    out = tmp_shm / "out"
    env.skiff("cp", "vol:/data/written", out)
    assert out.read_text() == "in-volume\n"
    env.skiff("cp", "vol:/bound/on-host", tmp_shm / "from-bind")
    assert (tmp_shm / "from-bind").read_text() == "host\n"
    assert "data/sub" in cp_out(env, "vol:/data")  # the directory itself, as a tree
    (tmp_shm / "new").write_text("new\n")
    env.skiff("cp", tmp_shm / "new", "vol:/data/sub/")
    env.skiff("cp", tmp_shm / "new", "vol:/bound/new")
    assert (bound / "new").read_text() == "new\n"
    # a new container on the same volume sees what cp wrote into it
    seen = env.skiff(
        "run", "--rm", "--network", "none", "-v", "cpvol:/v", env.image, "cat", "/v/sub/new"
    )
    assert seen.stdout == "new\n"
    assert not [m for m in env.leftovers() if m.startswith("mount")]
    env.skiff("rm", "vol")
    env.skiff("volume", "rm", "cpvol")


# --- errors -------------------------------------------------------------------------------------


def test_errors(env: ContainerEnv, running: str, host: Path, tmp_shm: Path) -> None:
    assert '"/nodir/x" could not be found on container live' in env.fails(
        "cp", host / "file", f"{running}:/nodir/x"
    )
    assert "could not be found on container live" in env.fails(
        "cp", host / "file", f"{running}:/missing/"
    )
    assert "destination must be a directory when copying a directory" in env.fails(
        "cp", host / "dir", f"{running}:/etc/passwd"
    )
    assert '"/nonexistent" could not be found on container live' in env.fails(
        "cp", f"{running}:/nonexistent", tmp_shm / "x"
    )
    assert "could not be found on the host" in env.fails("cp", tmp_shm / "nope", f"{running}:/tmp")
    assert "could not be found on the host" in env.fails(
        "cp", f"{running}:/etc/passwd", tmp_shm / "nodir" / "x"
    )
    assert "no such container" in env.fails("cp", host / "file", "ghost:/tmp")
    assert "one of the paths must be in a container" in env.fails("cp", host / "file", tmp_shm)
    (host / ".wh.secret").write_text("x\n")
    assert "whiteout" in env.fails("cp", host / ".wh.secret", f"{running}:/tmp/")
