"""Container escapes, end to end through the ``skiff`` CLI.

``skiff cp`` (CVE-2018-15664, CVE-2019-10152): a container controls every
path in its root filesystem. A path component that is a symlink to ``/``,
to ``../../..`` or to a host path, or that a running container swaps for
such a symlink while the copy runs, must never make skiff read or write a
host file. Each test keeps a *victim* directory on the host — at an
absolute path the container's symlinks name — and checks it is untouched,
and that nothing copied out ever holds the host's secret.

The other escapes have spec-level tests in test_security_escapes.py; here
each is tried once through ``skiff run`` as a user would meet it:
CVE-2024-21626 (working directory through a leaked fd; no host fd reaches
the container), CVE-2022-27651 (inheritable/ambient capabilities empty),
CVE-2024-9676 (the image's /etc/passwd a symlink to a host file), and a
bind-mount source that is a symlink (resolved once, at create).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from skiff.testing.busybox import LayerEntry, busybox_entries, layer_tar, write_image
from skiff.testing.cli import assert_clean_failure
from skiff.testing.containers import ContainerEnv, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("conmon") is None, reason="conmon is not installed"),
]

SECRET = "host-secret\n"


@pytest.fixture
def victim(tmp_shm: Path) -> Path:
    """A host directory the container's symlinks point at, with a secret in it."""
    path = tmp_shm / "victim"
    path.mkdir()
    (path / "secret").write_text(SECRET)
    return path


def victim_state(victim: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in victim.iterdir()}


def copied_files(out: Path) -> list[str]:
    """Contents of the regular files a copy made (symlinks never followed)."""
    if out.is_symlink() or not out.exists():
        return []
    if out.is_file():
        return [out.read_text(errors="replace")]
    found = []
    for dirpath, _, files in os.walk(out, followlinks=False):
        for name in files:
            path = Path(dirpath, name)
            if not path.is_symlink():
                found.append(path.read_text(errors="replace"))
    return found


def plant_links(root: Path, victim: Path) -> None:
    """Symlinks a hostile container holds: to /, climbing out, and to the host path."""
    (root / "escape").symlink_to("/")
    (root / "up").symlink_to("../../../../../../../../../..")
    (root / "abs").symlink_to(str(victim))
    (root / "rel").symlink_to("../../../../../../../.." + str(victim))
    (root / "w").mkdir()
    (root / "w" / "inner").symlink_to(str(victim))


def cp(env: ContainerEnv, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        env.skiff_argv("cp", *args), capture_output=True, env=env.environ(), check=False
    )


def host_paths_through_links(victim: Path) -> list[str]:
    """Container paths that name the victim if resolved on the host."""
    tail = str(victim).lstrip("/")
    return [
        "/abs",
        "/rel",
        "/w/inner",
        f"/escape/{tail}",
        f"/up/{tail}",
        f"/escape/../../{tail}",
    ]


@pytest.fixture(params=["running", "stopped"])
def hostile(request: pytest.FixtureRequest, env: ContainerEnv, victim: Path) -> str:
    """A container (running, or stopped with its storage unmounted) holding the links."""
    name = f"hostile-{request.param}"
    if request.param == "running":
        env.run_detached("--name", name, "--network", "none", env.image, "sleep", "1000")
        plant_links(env.rootfs(name), victim)
    else:
        env.skiff("run", "--name", name, "--network", "none", env.image, "true")
        with env.mounted(name) as rootfs:
            plant_links(rootfs, victim)
    return name


# --- CVE-2018-15664 / CVE-2019-10152: static links -------------------------------------------


@pytest.mark.slow
def test_copy_in_through_links_never_writes_the_host(
    env: ContainerEnv, hostile: str, victim: Path, tmp_shm: Path
) -> None:
    src = tmp_shm / "payload"
    src.mkdir()
    (src / "secret").write_text("overwritten\n")
    (src / "pwned").write_text("pwned\n")
    before = victim_state(victim)
    for path in host_paths_through_links(victim):
        for source in (src / "pwned", f"{src}/."):
            cp(env, source, f"{hostile}:{path}")
            cp(env, source, f"{hostile}:{path}/")
            cp(env, "--overwrite", source, f"{hostile}:{path}/pwned")
        # a tar stream with members under the link
        stream = subprocess.run(
            ["tar", "-C", str(src), "-cf", "-", "."], capture_output=True, check=True
        ).stdout
        subprocess.run(
            env.skiff_argv("cp", "-", f"{hostile}:{path}"),
            input=stream,
            capture_output=True,
            env=env.environ(),
            check=False,
        )
        assert victim_state(victim) == before, path
    # climbing out stays at the container's root
    result = cp(env, src / "pwned", f"{hostile}:/up/tmp/pwned-at-root")
    assert result.returncode == 0, result.stderr.decode()
    assert not Path("/tmp/pwned-at-root").exists()


@pytest.mark.slow
def test_copy_out_through_links_never_reads_the_host(
    env: ContainerEnv, hostile: str, victim: Path, tmp_shm: Path
) -> None:
    for n, path in enumerate(host_paths_through_links(victim)):
        for source in (f"{path}/secret", path, f"{path}/."):
            result = cp(env, f"{hostile}:{source}", "-")
            assert SECRET.encode() not in result.stdout, source
            out = tmp_shm / f"out-{n}-{len(source)}"
            cp(env, f"{hostile}:{source}", out)
            assert SECRET not in copied_files(out), source


def test_container_links_are_copied_as_links(
    env: ContainerEnv, hostile: str, victim: Path, tmp_shm: Path
) -> None:
    out = tmp_shm / "tree"
    result = cp(env, f"{hostile}:/w", out)
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "inner").is_symlink()
    assert os.readlink(out / "inner") == str(victim)
    # copying that tree back over a host directory holding a link to the victim:
    # the link is replaced (with --overwrite) or refused, never written through
    dest = tmp_shm / "dest"
    dest.mkdir()
    (dest / "inner").symlink_to(victim)
    before = victim_state(victim)
    cp(env, f"{hostile}:/w/.", dest)
    cp(env, "--overwrite", f"{hostile}:/w/.", dest)
    assert victim_state(victim) == before


def test_host_link_in_destination_is_not_written_through(
    env: ContainerEnv, victim: Path, tmp_shm: Path
) -> None:
    """Copying out into a host directory where a name the container uses is a
    symlink to the victim: the container's directory of that name must not
    land in the victim."""
    env.run_detached("--name", "src", "--network", "none", env.image, "sleep", "1000")
    root = env.rootfs("src")
    (root / "tree" / "x").mkdir(parents=True)
    (root / "tree" / "x" / "dropped").write_text("dropped\n")
    dest = tmp_shm / "dest"
    dest.mkdir()
    (dest / "x").symlink_to(victim)
    before = victim_state(victim)
    result = cp(env, "src:/tree/.", dest)
    assert result.returncode == 125
    assert b"cannot overwrite non-directory" in result.stderr
    assert victim_state(victim) == before
    env.skiff("cp", "--overwrite", "src:/tree/.", dest)
    assert victim_state(victim) == before
    assert not (dest / "x").is_symlink()
    assert (dest / "x" / "dropped").read_text() == "dropped\n"


# --- the race: a running container swapping a directory for a symlink -----------------------


@pytest.mark.slow
def test_swapping_symlink_race_never_reaches_the_host(
    env: ContainerEnv, victim: Path, tmp_shm: Path
) -> None:
    script = (
        "mkdir -p /w; echo ready > /tmp/ready; "
        "while true; do "
        "rm -rf /w/d; mkdir /w/d; echo container > /w/d/secret; "
        f"rm -rf /w/d; ln -s {victim} /w/d; "
        "done"
    )
    env.run_detached("--name", "racer", "--network", "none", env.image, "sh", "-c", script)
    ready = env.rootfs("racer") / "tmp" / "ready"
    wait_for(ready.exists, "the racer to start")
    payload = tmp_shm / "payload"
    payload.write_text("pwned\n")
    before = victim_state(victim)
    copied_in = copied_out = 0
    # 25 rounds, and more (up to 100) until some copy met the directory: on
    # a loaded machine every copy of 25 once met the symlink state
    for n in range(100):
        if n >= 25 and copied_in + copied_out > 0:
            break
        result = cp(env, payload, "racer:/w/d/pwned")
        copied_in += result.returncode == 0
        result = cp(env, "racer:/w/d/secret", "-")
        assert SECRET.encode() not in result.stdout
        copied_out += result.returncode == 0
        out = tmp_shm / f"out{n}"
        cp(env, "racer:/w/d", out)
        assert SECRET not in copied_files(out)
        assert victim_state(victim) == before
    assert victim_state(victim) == before
    # the race was real: some copies met the directory, some the symlink
    assert copied_in + copied_out > 0


# --- the other escapes, through skiff run ----------------------------------------------------


def test_cve_2024_21626_workdir_through_a_leaked_fd_is_refused(env: ContainerEnv) -> None:
    for n in (3, 7, 8):
        result = env.skiff(
            "run",
            "--rm",
            "--network",
            "none",
            "-w",
            f"/proc/self/fd/{n}",
            env.image,
            "true",
            expect=125,
        )
        assert_clean_failure(result)
        assert "/proc" in result.stderr
    assert not env.records()


def test_no_host_fd_reaches_the_container(env: ContainerEnv, victim: Path) -> None:
    fd = os.open(victim, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.set_inheritable(fd, True)
        result = subprocess.run(
            env.skiff_argv(
                "run", "--rm", "--network", "none", env.image, "ls", "-l", "/proc/self/fd"
            ),
            capture_output=True,
            text=True,
            env=env.environ(),
            pass_fds=(fd,),
            check=False,
        )
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr
    fds = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r" (\d+) -> (.*)$", result.stdout, re.MULTILINE)
    }
    assert {0, 1, 2} <= set(fds)
    for number, target in fds.items():
        if number > 2:  # only ls's own listing of /proc/self/fd may be open
            assert re.fullmatch(r"/proc/\d+/fd", target), (number, target)
    assert str(victim) not in result.stdout


def test_cve_2022_27651_no_inheritable_or_ambient_caps(env: ContainerEnv) -> None:
    for extra in ([], ["--cap-add", "NET_ADMIN"], ["--user", "www"]):
        out = env.skiff(
            "run", "--rm", "--network", "none", *extra, env.image, "cat", "/proc/self/status"
        ).stdout
        masks = dict(re.findall(r"^(Cap\w+):\s*([0-9a-f]+)$", out, re.MULTILINE))
        assert int(masks["CapInh"], 16) == 0, extra
        assert int(masks["CapAmb"], 16) == 0, extra
        if extra == ["--user", "www"]:
            assert int(masks["CapEff"], 16) == 0


def test_cve_2024_9676_passwd_symlink_to_the_host_is_not_read(
    env: ContainerEnv, tmp_shm: Path
) -> None:
    hostetc = tmp_shm / "hostetc"
    hostetc.mkdir()
    (hostetc / "passwd").write_text("marker:x:4242:4243:marker:/markerhome:/bin/sh\n")
    (hostetc / "group").write_text("markergroup:x:4244:marker\n")
    entries = busybox_entries()
    entries["etc/passwd"] = LayerEntry(tarfile.SYMTYPE, 0o777, target=str(hostetc / "passwd"))
    entries["etc/group"] = LayerEntry(tarfile.SYMTYPE, 0o777, target=str(hostetc / "group"))
    layout = write_image(tmp_shm / "evil-layout", [layer_tar(entries)])
    env.skiff(
        "image",
        "copy",
        "-q",
        layout.reference,
        f"containers-storage:[{env.driver}@{env.root}+{env.runroot}]localhost/evil:latest",
    )
    message = env.fails(
        "run", "--rm", "--network", "none", "--user", "marker", "localhost/evil", "true"
    )
    assert "unable to find user marker" in message
    message = env.fails(
        "run", "--rm", "--network", "none", "--group-add", "markergroup", "localhost/evil", "true"
    )
    assert "unable to find group markergroup" in message
    out = env.skiff(
        "run", "--rm", "--network", "none", "--user", "4242", "localhost/evil", "id"
    ).stdout
    assert "uid=4242" in out and "gid=0" in out
    assert not env.records()


def test_bind_source_symlink_is_resolved_once(env: ContainerEnv, tmp_shm: Path) -> None:
    (tmp_shm / "a").mkdir()
    (tmp_shm / "b").mkdir()
    (tmp_shm / "a" / "which").write_text("a\n")
    (tmp_shm / "b" / "which").write_text("b\n")
    link = tmp_shm / "link"
    link.symlink_to(tmp_shm / "a")
    env.run_detached(
        "--name", "binder", "--network", "none", "-v", f"{link}:/data", env.image, "sleep", "1000"
    )
    assert (env.rootfs("binder") / "data" / "which").read_text() == "a\n"
    link.unlink()
    link.symlink_to(tmp_shm / "b")  # re-pointed after create
    env.skiff("restart", "-t", "0", "binder")
    env.wait_state("binder", "running")
    assert (env.rootfs("binder") / "data" / "which").read_text() == "a\n"
