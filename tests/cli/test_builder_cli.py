"""``skiff builder …`` as a user types it: the seed flow, buildah's output, errors.

Each test has a private store with busybox as ``localhost/busybox:latest``
(``ContainerEnv``); at the end every working container is removed through
the CLI and the host must hold nothing of the store (mounts, runtime
state, storage containers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.testing.busybox import BusyboxImage
from skiff.testing.cli import assert_clean_failure
from skiff.testing.containers import ContainerEnv, wait_for
from skiff.testing.network import mounts_under

HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")


@pytest.fixture
def cli(tmp_shm: Path, busybox_layout: BusyboxImage) -> Iterator[ContainerEnv]:
    env = ContainerEnv(tmp_shm / "cli", busybox_layout)
    try:
        yield env
    finally:
        env.skiff("builder", "rm", "--all", expect=None)
        env.close()


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_seed_flow(cli: ContainerEnv) -> None:
    """CID=$(skiff builder from busybox); MNT=$(skiff builder mount $CID);
    make install DESTDIR=$MNT; skiff builder commit $CID myimage."""
    project = cli.base / "project"
    project.mkdir()
    (project / "hello.sh").write_text("#!/bin/sh\necho hello from myimage\n")
    (project / "Makefile").write_text(
        "install:\n"
        "\tinstall -D -m 0755 hello.sh $(DESTDIR)/usr/local/bin/hello\n"
        "\tinstall -D -m 0644 hello.sh $(DESTDIR)/usr/local/share/hello/source\n"
    )
    cid = cli.skiff("builder", "from", "busybox").stdout.strip()
    assert cid == "busybox-working-container"
    mnt = cli.skiff("builder", "mount", cid).stdout.strip()
    assert Path(mnt).is_dir() and (Path(mnt) / "bin" / "busybox").exists()
    cli.run(["make", "-C", str(project), "install", f"DESTDIR={mnt}"])
    result = cli.skiff("builder", "commit", cid, "myimage")
    assert HEX64.match(result.stdout.strip()), result.stdout
    assert "Writing manifest to image destination" in result.stderr
    out = cli.skiff("run", "--rm", "myimage", "/usr/local/bin/hello").stdout
    assert out == "hello from myimage\n"
    full_id = cli.skiff("builder", "inspect", "--format", "{{.ContainerID}}", cid).stdout.strip()
    assert cli.skiff("builder", "umount", cid).stdout.strip() == full_id
    assert cli.skiff("builder", "rm", cid).stdout.strip() == full_id


def test_from_alias_names_and_listing(cli: ContainerEnv) -> None:
    assert cli.skiff("from", "busybox").stdout == "busybox-working-container\n"
    assert cli.skiff("from", "scratch").stdout == "working-container\n"
    assert cli.skiff("builder", "from", "--name", "mine", "busybox").stdout == "mine\n"
    table = lines(cli.skiff("builder", "containers").stdout)
    assert (
        table[0]
        == "CONTAINER ID  BUILDER  IMAGE ID     IMAGE NAME                       CONTAINER NAME"
    )
    assert re.fullmatch(
        r"[0-9a-f]{12}     \*     [0-9a-f]{12} localhost/busybox:latest {9}busybox-working-container",
        table[1],
    )
    assert re.fullmatch(r"[0-9a-f]{12}     \* {18}scratch {26}working-container", table[2])
    rows = cli.skiff("builder", "containers", "--json").json()
    assert [r["containername"] for r in rows] == [
        "busybox-working-container",
        "working-container",
        "mine",
    ]
    assert rows[1]["imagename"] == "scratch" and rows[1]["imageid"] == ""
    ids = lines(cli.skiff("builder", "containers", "-q").stdout)
    assert ids == [r["id"] for r in rows]
    names = cli.skiff("builder", "ls", "--format", "{{.ContainerName}}|{{.Builder}}").stdout
    assert lines(names) == [
        "busybox-working-container|   *",
        "working-container|   *",
        "mine|   *",
    ]
    assert cli.skiff("builder", "mount").stdout == ""
    path = cli.skiff("builder", "mount", "mine").stdout.strip()
    assert cli.skiff("builder", "mount").stdout == f"mine {path}\n"
    removed = lines(cli.skiff("builder", "rm", "-a").stdout)
    assert sorted(removed) == sorted(ids)
    assert cli.skiff("builder", "containers", "--noheading").stdout == ""


def test_run_shows_output_and_exit_code(cli: ContainerEnv) -> None:
    cid = cli.skiff("from", "busybox").stdout.strip()
    result = cli.skiff(
        "builder", "run", cid, "--", "sh", "-c", "echo out; echo err >&2; exit 3", expect=3
    )
    assert result.stdout == "out\n"
    assert lines(result.stderr) == ["err", "Error: while running runtime: exit status 3"]
    result = cli.skiff(
        "builder",
        "run",
        "-e",
        "X=1",
        "--user",
        "www",
        "--workingdir",
        "/srv",
        cid,
        "sh",
        "-c",
        "echo $X $(id -u) $(pwd)",
    )
    assert result.stdout == "1 1000 /srv\n"
    missing = cli.skiff("builder", "run", cid, "--", "no-such-command", expect=127)
    assert (
        missing.stderr.strip()
        .splitlines()[-1]
        .startswith("Error: no-such-command: executable file not found in $PATH")
    )
    assert not cli.runtime_states()


def test_copy_config_commit_inspect(cli: ContainerEnv) -> None:
    ctx = cli.base / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "main.sh").write_text("#!/bin/sh\necho app\n")
    (ctx / "notes.txt").write_text("notes\n")
    cid = cli.skiff("from", "busybox").stdout.strip()
    digest = cli.skiff(
        "builder",
        "copy",
        "--contextdir",
        ctx,
        "--chown",
        "www",
        "--chmod",
        "755",
        cid,
        "app",
        "/opt/app/",
    ).stdout.strip()
    assert HEX64.match(digest)
    again = cli.skiff(
        "builder",
        "copy",
        "--contextdir",
        ctx,
        "--chown",
        "www",
        "--chmod",
        "755",
        cid,
        "app",
        "/opt/app/",
    )
    assert again.stdout.strip() == digest
    assert cli.skiff("builder", "add", "-q", cid, str(ctx / "notes.txt"), "/opt/").stdout == ""
    cli.skiff(
        "builder",
        "config",
        "--entrypoint",
        '["/opt/app/main.sh"]',
        "--cmd",
        "",
        "--env",
        "MODE=prod",
        "--label",
        "org.example=1",
        "--port",
        "8080/tcp",
        "--volume",
        "/data",
        "--workingdir",
        "/opt",
        "--user",
        "www",
        "--annotation",
        "note=yes",
        cid,
    )
    shown = cli.skiff(
        "builder", "inspect", "--format", "{{.FromImage}} {{.Container}} {{.Type}}", cid
    ).stdout
    assert shown == f"localhost/busybox:latest {cid} buildah 0.0.1\n"
    data = cli.skiff("builder", "inspect", cid).json()
    assert data["OCIv1"]["config"]["Entrypoint"] == ["/opt/app/main.sh"]
    assert data["ImageAnnotations"]["note"] == "yes"
    iidfile = cli.base / "iid"
    image_id = cli.skiff(
        "builder", "commit", "-q", "--iidfile", iidfile, "--format", "docker", cid, "app:1"
    ).stdout.strip()
    assert iidfile.read_text() == f"sha256:{image_id}"
    assert cli.skiff("run", "--rm", "app:1").stdout == "app\n"
    owner = cli.skiff(
        "run", "--rm", "--entrypoint", "stat", "app:1", "-c", "%u %a", "/opt/app/main.sh"
    )
    assert owner.stdout == "1000 755\n"
    copied = cli.base / "app-layout"
    cli.skiff("image", "copy", "-q", "containers-storage:localhost/app:1", f"oci:{copied}:1")
    index = json.loads((copied / "index.json").read_text())
    assert len(index["manifests"]) == 1


def test_timestamp_commits_are_reproducible(cli: ContainerEnv) -> None:
    ids = []
    for name in ("a", "b"):
        cli.skiff("from", "--name", name, "busybox")
        cli.skiff("builder", "run", name, "--", "sh", "-c", "echo same > /same")
        ids.append(
            cli.skiff(
                "builder", "commit", "-q", "--rm", "--timestamp", "0", name, f"r:{name}"
            ).stdout
        )
    assert ids[0] == ids[1]
    assert cli.skiff("builder", "containers", "-q").stdout == ""


def test_clear_errors(cli: ContainerEnv) -> None:
    ctx = cli.base / "ctx"
    ctx.mkdir()
    (ctx / "ok").write_text("ok\n")
    (cli.base / "secret").write_text("secret\n")
    (ctx / "escape").symlink_to(cli.base / "secret")
    cid = cli.skiff("from", "busybox").stdout.strip()
    for verb in (
        ["builder", "run", "nope", "true"],
        ["builder", "copy", "nope", "/etc/hostname", "/"],
        ["builder", "commit", "nope", "x"],
        ["builder", "mount", "nope"],
        ["builder", "rm", "nope"],
        ["builder", "inspect", "nope"],
        ["builder", "config", "--env", "A=1", "nope"],
    ):
        assert "no working container named 'nope'" in cli.fails(*verb)
    error = cli.fails("builder", "copy", "--contextdir", ctx, cid, "../secret", "/")
    assert "outside the build context" in error
    error = cli.fails("builder", "copy", "--contextdir", ctx, cid, "escape", "/")
    assert "outside the build context" in error
    error = cli.fails("builder", "copy", "--chown", "nobody-here", cid, str(ctx / "ok"), "/")
    assert "unknown user 'nobody-here'" in error
    error = cli.fails("builder", "copy", "--contextdir", ctx, cid, "ok", "ok", "/file")
    assert "must be a directory" in error
    assert "invalid pull policy" in cli.fails("from", "--pull", "sometimes", "busybox")
    assert "image not known" in cli.fails("from", "--pull", "never", "localhost/absent")
    result = cli.skiff("builder", "run", cid, "--", "sh", "-c", "exit 9", expect=9)
    assert_clean_failure(result)
    # the working container holds its image
    in_use = cli.fails("rmi", "localhost/busybox:latest", code=2)
    assert "image is in use by a container" in in_use


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_is_cleaned_up(cli: ContainerEnv, sig: int, code: int) -> None:
    cid = cli.skiff("from", "busybox").stdout.strip()
    marker = f"{os.getpid()}{sig}"
    proc = cli.popen("builder", "run", cid, "--", "busybox", "sleep", marker)
    try:
        wait_for(lambda: bool(cli.runtime_states()), "the run to start", timeout=30)
        wait_for(lambda: _sleeping(marker), "the command to run", timeout=30)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    assert proc.stderr.read().startswith("Error: ")
    wait_for(lambda: not _sleeping(marker), "the command to be gone", timeout=30)
    assert not cli.runtime_states()
    assert not mounts_under(cli.base)
    assert not list((cli.runroot / "containers").iterdir())


def _sleeping(marker: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline == b"busybox\0sleep\0" + marker.encode() + b"\0":
                return True
    return False
