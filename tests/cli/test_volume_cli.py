"""``skiff volume …`` end to end, as a user types it, with podman's output as reference.

Each test has a private store (``CliEnv``: temp ``--root``/``--runroot``),
and podman gets its own private store beside it (``CliEnv.podman``): the
same commands go to both and the outputs are compared — byte for byte
where nothing differs but paths and times (which are replaced by
placeholders first), message for message for errors (skiff adds a hint in
parentheses after podman's words), exit code for exit code.

Containers using a volume are real skiff containers where the runtime can
make them (``skiff run``), and stand-ins recorded through the volume
layer (``resolve_mounts``) where only the record matters.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skiff.config import SystemContext
from skiff.runtime.specgen.mounts import parse_volume
from skiff.runtime.volumes import resolve_mounts
from skiff.runtime.volumes.store import mounts_beneath
from skiff.storage.mount import unmount
from skiff.storage.store import Store
from skiff.testing.busybox import BusyboxImage
from skiff.testing.cli import CliEnv, Result

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="volume mounts need root")
needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
pytestmark = [needs_root]

_CREATED_JSON = re.compile(r'"CreatedAt": "[^"]+"')


@dataclass
class VolCli:
    env: CliEnv

    @property
    def podman_root(self) -> Path:
        return self.env.base / "podman" / "root"

    def skiff(self, *args: str | Path, expect: int | None = 0, **kw: Any) -> Result:
        return self.env.skiff(*args, expect=expect, **kw)

    def podman(self, *args: str | Path, expect: int | None = 0, **kw: Any) -> Result:
        return self.env.podman(*args, expect=expect, **kw)

    def both(self, *args: str | Path, expect: int | None = 0, **kw: Any) -> tuple[str, str]:
        """stdout of skiff and of podman for the same command, paths and times normalised."""
        ours = self.skiff(*args, expect=expect, **kw)
        theirs = self.podman(*args, expect=expect, **kw)
        return self.normal(ours.stdout), self.normal(theirs.stdout)

    def normal(self, text: str) -> str:
        text = text.replace(str(self.env.root), "ROOT").replace(str(self.podman_root), "ROOT")
        return _CREATED_JSON.sub('"CreatedAt": "TIME"', text)

    def errors(self, *args: str, code: int = 125) -> tuple[str, str]:
        """The Error line of each: skiff's (one clean line) and podman's."""
        ours = self.env.fails(*args, code=code)
        theirs = self.podman(*args, expect=code).stderr.splitlines()
        return ours, next(line for line in theirs if line.startswith("Error: "))

    def store(self) -> Store:
        return Store.open(SystemContext(storage_root=self.env.root, run_root=self.env.runroot))


@pytest.fixture
def cli(tmp_shm: Path) -> Iterator[VolCli]:
    env = CliEnv(tmp_shm / "cli")
    try:
        yield VolCli(env)
    finally:
        for point in mounts_beneath(tmp_shm):
            unmount(point, detach=True)


def _same_error(ours: str, theirs: str) -> None:
    """skiff's line is podman's, possibly followed by a hint in parentheses."""
    assert ours == theirs or ours.startswith(theirs + " ("), f"{ours!r} != {theirs!r}"


# --- create, ls, inspect -----------------------------------------------------------------------


@needs_podman
def test_create_ls_inspect_print_what_podman_prints(cli: VolCli) -> None:
    host = cli.env.base / "host"
    host.mkdir()
    creates = [
        ["v1"],
        ["--label", "a=b", "--label", "c", "v2"],
        ["-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=mode=0700,nodev", "v3"],
        ["-o", "o=uid=1000,gid=100", "vu"],
        ["-o", "type=none", "-o", f"device={host}", "-o", "o=bind", "v4"],
    ]
    for flags in creates:
        ours, theirs = cli.both("volume", "create", *flags)
        assert ours == theirs == f"{flags[-1]}\n"

    for args in (
        ["volume", "ls"],
        ["volume", "list", "-q"],
        ["volume", "ls", "--noheading"],
        ["volume", "ls", "--format", "json"],
        ["volume", "ls", "--format", "{{json .}}"],
        [
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}} {{.Labels}} {{.Options}} {{.MountCount}} "
            "{{.UID}} {{.GID}} {{.Anonymous}} {{.NeedsCopyUp}} {{.NeedsChown}} {{.Mountpoint}}",
        ],
        ["volume", "ls", "--format", "table {{.Name}} {{.MountCount}} {{.NeedsCopyUp}}"],
        ["volume", "inspect", "v1", "v2", "v3", "vu", "v4"],
        ["volume", "inspect", "--all", "--format", "{{.Name}}:{{.Labels}}:{{.Options}}"],
        ["volume", "inspect", "--format", "json", "v2"],
    ):
        ours, theirs = cli.both(*args)
        assert ours == theirs, f"skiff {' '.join(args)}"

    listed = cli.skiff("volume", "ls", "--format", "json").stdout
    assert '"Labels": {\n      \n    },' in listed  # podman's empty map in ls JSON
    inspected = cli.skiff("volume", "inspect", "v1").stdout
    assert inspected.startswith('[\n     {\n          "Name": "v1",')
    assert '"Labels": {},' in inspected


@needs_podman
def test_empty_store_and_filters_like_podman(cli: VolCli) -> None:
    for args in (["volume", "ls"], ["volume", "ls", "--format", "json"], ["volume", "ls", "-q"]):
        ours, theirs = cli.both(*args)
        assert ours == theirs
    assert cli.skiff("volume", "ls").stdout == ""  # podman 4.3: not even the header
    for flags in (["a1", "--label", "k=v"], ["a2", "--label", "k=w"], ["b1", "-o", "type=tmpfs"]):
        cli.both("volume", "create", *flags[1:], flags[0])
    # one filter key at a time: podman 4.3 ORs different keys (see docs/volumes.md)
    for spec in (
        "name=a",
        "name=^b",
        "name=1$",
        "label=k",
        "label=k=v",
        "driver=local",
        "scope=local",
        "opt=type=tmpfs",
        "dangling=true",
        "dangling=false",
        "until=2000-01-01T00:00:00Z",
    ):
        ours, theirs = cli.both("volume", "ls", "-q", "--filter", spec)
        assert ours == theirs, spec
    assert cli.skiff("volume", "ls", "-q", "-f", "name=a", "-f", "label=k=w").stdout == "a2\n"


@needs_podman
def test_errors_use_podmans_words_and_exit_codes(cli: VolCli) -> None:
    cli.both("volume", "create", "v1")
    for args in (
        ["volume", "create", "v1"],
        ["volume", "create", "bad name"],
        ["volume", "create", "_x"],
        ["volume", "create", "--driver", "foo", "v5"],
        ["volume", "create", "-o", "foo=bar", "v6"],
        ["volume", "create", "-o", "o=size=10m", "v7"],
        ["volume", "ls", "--filter", "foo=bar"],
        ["volume", "ls", "--filter", "foo"],
        ["volume", "ls", "--filter", "dangling=x"],
        ["volume", "ls", "--filter", "until=xyz"],
        ["volume", "rm"],
        ["volume", "rm", "--all", "v1"],
        ["volume", "inspect"],
        ["volume", "inspect", "nosuch"],
    ):
        ours, theirs = cli.errors(*args)
        _same_error(ours, theirs)
    ours, theirs = cli.errors("volume", "rm", "nosuch", code=1)
    _same_error(ours, theirs)
    # inspect prints what it found before failing, as podman does
    ours_out = cli.skiff("volume", "inspect", "v1", "nosuch", expect=125).stdout
    theirs_out = cli.podman("volume", "inspect", "v1", "nosuch", expect=125).stdout
    assert cli.normal(ours_out) == cli.normal(theirs_out)
    for args in (["volume", "exists", "v1"], ["volume", "exists", "nosuch"]):
        assert cli.skiff(*args, expect=None).returncode == cli.podman(*args, expect=None).returncode
    assert not (cli.env.root / "volumes" / "v5").exists()
    assert sorted(os.listdir(cli.env.root / "volumes")) == ["v1"]


def test_create_ignore_and_random_names(cli: VolCli) -> None:
    cli.skiff("volume", "create", "--label", "x=1", "keep")
    assert cli.skiff("volume", "create", "--ignore", "--label", "x=2", "keep").stdout == "keep\n"
    assert cli.skiff("volume", "inspect", "keep").json()[0]["Labels"] == {"x": "1"}
    name = cli.skiff("volume", "create").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", name)
    assert cli.skiff("volume", "exists", name).returncode == 0


# --- rm, prune ---------------------------------------------------------------------------------


@needs_podman
def test_prune_prompt_and_output_like_podman(cli: VolCli) -> None:
    ours, theirs = cli.both("volume", "prune", input_text="y\n")
    assert ours == theirs
    assert "No dangling volumes found" in ours
    for flags in (["p1"], ["--label", "k=v", "p2"], ["p3"]):
        cli.both("volume", "create", *flags)
    ours, theirs = cli.both("volume", "prune", input_text="n\n")
    assert ours == theirs
    assert ours.endswith("p1\np2\np3\nAre you sure you want to continue? [y/N] ")
    ours, theirs = cli.both("volume", "prune", "-f", "--filter", "label=k=v")
    assert ours == theirs == "p2\n"
    ours, theirs = cli.both("volume", "prune", input_text="y\n")
    assert ours == theirs
    assert ours.endswith("[y/N] p1\np3\n")
    assert cli.skiff("volume", "ls", "-q").stdout == ""


def test_rm_of_a_volume_in_use_by_a_recorded_container(cli: VolCli) -> None:
    cli.skiff("volume", "create", "free")
    store = cli.store()
    cid = secrets.token_hex(32)
    try:
        resolve_mounts(store, cid, [parse_volume("busy:/b")])
    finally:
        store.close()
    result = cli.skiff("volume", "rm", "busy", "free", "nosuch", expect=2)
    assert result.stdout == "free\n"
    assert result.stderr.splitlines() == [
        "Error: volume busy is being used by the following container(s): "
        f"{cid}: volume is being used (remove those containers first, or use --force)",
        'Error: no volume with name "nosuch" found: no such volume '
        "(list volumes with 'skiff volume ls')",
    ]
    assert cli.skiff("volume", "prune", "-f").stdout == ""
    assert cli.skiff("volume", "ls", "--filter", "dangling=false", "-q").stdout == "busy\n"
    # no container record behind the use: -f drops the stale use, then the volume
    assert cli.skiff("volume", "rm", "-f", "busy").stdout == "busy\n"
    assert cli.skiff("volume", "ls", "-q").stdout == ""


@needs_podman
def test_rm_of_a_volume_used_by_a_real_container(cli: VolCli, busybox_layout: BusyboxImage) -> None:
    image = f"oci:{busybox_layout.layout}:latest"
    cli.skiff("image", "copy", image, "containers-storage:localhost/bb:latest")
    cli.skiff("run", "--name", "user1", "-v", "busy:/b", "localhost/bb:latest", "true")
    cli.podman("pull", "-q", image)
    theirs_id = cli.podman(
        "create", "--name", "user1", "-v", "busy:/b", "localhost" + str(busybox_layout.layout)
    ).stdout.strip()
    ours_id = cli.skiff("ps", "-a", "-q", "--no-trunc").stdout.strip()
    ours, theirs = cli.errors("volume", "rm", "busy", code=2)
    _same_error(ours.replace(ours_id, "ID"), theirs.replace(theirs_id, "ID"))
    ours, theirs = cli.both("volume", "rm", "--force", "busy")
    assert ours == theirs == "busy\n"
    assert cli.skiff("ps", "-a", "-q").stdout == ""  # podman removes the user too
    assert cli.podman("ps", "-a", "-q").stdout == ""


# --- mount, unmount ------------------------------------------------------------------------------


@needs_podman
def test_mount_and_unmount_count_like_podman(cli: VolCli) -> None:
    cli.both("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=mode=0700", "t")
    cli.both("volume", "create", "plain")
    steps = [
        ["volume", "mount", "t"],
        ["volume", "mount", "t"],
        ["volume", "inspect", "--format", "{{.MountCount}}", "t"],
        ["volume", "unmount", "t"],
        ["volume", "inspect", "--format", "{{.MountCount}}", "t"],
        ["volume", "unmount", "t"],
        ["volume", "unmount", "t"],
        ["volume", "mount", "plain"],
        ["volume", "inspect", "--format", "{{.MountCount}}", "plain"],
        ["volume", "unmount", "plain"],
    ]
    for args in steps:
        ours, theirs = cli.both(*args)
        assert ours == theirs, args
    target = cli.env.root / "volumes" / "t" / "_data"
    assert mounts_beneath(target) == []
    cli.skiff("volume", "mount", "t")
    assert mounts_beneath(target) == [str(target)]
    assert cli.skiff("volume", "umount", "t").stdout == "t\n"  # later podman's alias
    assert mounts_beneath(target) == []
    cli.skiff("volume", "mount", "t")
    failure = cli.env.fails("volume", "rm", "t", code=2)
    assert "volume t is mounted (1 reference(s))" in failure
    assert cli.skiff("volume", "rm", "-f", "t").stdout == "t\n"
    assert mounts_beneath(target) == []
    cli.podman("volume", "unmount", "t")
