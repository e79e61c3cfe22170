"""skiff's local image commands against podman 4.3's, over the same images.

The same OCI layouts are written into a private podman store (by skopeo,
under the same names) and into skiff's store; then ``images``, ``image
inspect``, ``history``, ``system df``, ``rmi`` print the same bytes in
both (GraphDriver paths and layer IDs aside: the stores live in different
places, and containers/image derives layer IDs its own way); the trees
``image mount`` shows are the same as podman's and as ``umoci unpack``'s;
and ``diff`` reports the same changes for the same edits of a container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skiff.testing import shm_tempdir
from skiff.testing.busybox import BusyboxImage, build_busybox_layout, build_layered_layout
from skiff.testing.cli import CliEnv, Result

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("podman") is None or shutil.which("skopeo") is None,
        reason="needs podman and skopeo",
    ),
]

RICH_HISTORY = [
    {"created": "2023-11-14T22:13:20Z", "created_by": "COPY busybox /", "comment": "base"},
    {
        "created": "2024-01-01T00:00:00.5Z",
        "created_by": "/bin/sh -c #(nop) ENV A=1",
        "empty_layer": True,
        "author": "me",
    },
    {
        "created": "2024-02-01T00:00:00+02:00",
        "created_by": "COPY layers/0.txt / and a command line longer than forty-five characters",
    },
    {"created": "2024-03-01T00:00:00Z", "created_by": "COPY layers/1.txt /"},
    {"created": "2024-03-02T00:00:00Z", "created_by": "LABEL x=y", "empty_layer": True},
]
RICH_CONFIG = {
    "history": RICH_HISTORY,
    "created": "2024-03-02T00:00:00Z",
    "author": "A U Thor",
    "config": {
        "Labels": {"x": "y", "a.b": "<c&d>"},
        "User": "www",
        "ExposedPorts": {"80/tcp": {}},
        "WorkingDir": "/var/www",
        "Entrypoint": ["/bin/sh", "-c"],
        "StopSignal": "SIGTERM",
        "Volumes": {"/data": {}},
    },
}


@dataclass
class Pair:
    """The same images in a podman store and a skiff store."""

    base: Path
    cli: CliEnv
    podman_driver: str
    layouts: dict[str, BusyboxImage]

    def podman(self, *args: str, expect: int | None = 0) -> Result:
        store = self.base / "podman"
        argv = [
            "podman",
            "--root", str(store / "root"),
            "--runroot", str(store / "run"),
            "--storage-driver", self.podman_driver,
            "--events-backend", "none",
            *args,
        ]  # fmt: skip
        return self.cli.run(argv, expect=expect)

    def skiff(self, *args: str, expect: int | None = 0) -> Result:
        return self.cli.skiff(*args, expect=expect)

    def both(self, *args: str) -> tuple[str, str]:
        return self.skiff(*args).stdout, self.podman(*args).stdout

    def add(self, image: BusyboxImage, name: str) -> None:
        store = self.base / "podman"
        spec = f"[{self.podman_driver}@{store / 'root'}+{store / 'run'}]"
        self.cli.skopeo("copy", "-q", image.reference, f"containers-storage:{spec}{name}")
        self.skiff("image", "copy", "-q", image.reference, f"containers-storage:{name}")


def make_pair(base: Path, busybox: BusyboxImage, podman_driver: str) -> Pair:
    cli = CliEnv(base / "cli")
    layouts = {
        "busybox": busybox,
        "parent": build_layered_layout(base / "parent", 1),
        "child": build_layered_layout(base / "child", 2),
        "rich": build_layered_layout(base / "rich", 2, config_overrides=RICH_CONFIG),
        "lone": build_busybox_layout(base / "lone", extra_files={"/lone": b"lone\n"}),
    }
    pair = Pair(base, cli, podman_driver, layouts)
    cli.skiff("--storage-driver", podman_driver, "info")  # the store takes podman's driver
    pair.add(layouts["busybox"], "docker.io/library/busybox:latest")
    pair.add(layouts["parent"], "localhost/parent:1")
    pair.add(layouts["child"], "quay.io/team/child:2")
    pair.add(layouts["rich"], "localhost/rich:latest")
    pair.add(layouts["lone"], "localhost/lone:latest")
    for tool in (pair.skiff, pair.podman):
        tool("tag", "busybox", "extra:1", "example.org/ns/box:v2")
    return pair


@pytest.fixture(scope="module")
def pair(busybox_layout: BusyboxImage) -> Iterator[Pair]:
    with shm_tempdir("skiff-podman-images-") as base:
        yield make_pair(base, busybox_layout, "vfs")


# --- listing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["-a"],
        ["--digests"],
        ["--no-trunc"],
        ["-q"],
        ["-q", "--no-trunc"],
        ["--noheading"],
        ["--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}} {{.Containers}}"],
        ["--format", "table {{.ID}}\\t{{.Digest}}\\t{{.VirtualSize}}\\t{{.Names}}"],
        ["--format", "{{.Labels}} {{.Dangling}} {{.History}} {{.CreatedAt}} {{.ParentId}}"],
        ["--filter", "reference=busybox"],
        ["--filter", "reference=*/child"],
        ["--filter", "reference=localhost/*"],
        ["--filter", "label=x=y"],
        ["--filter", "label=a.b"],
        ["--filter", "dangling=true"],
        ["--filter", "before=rich"],
        ["--filter", "since=busybox"],
        ["busybox"],
        ["--sort", "repository"],
        ["--sort", "size"],
    ],
    ids=lambda flags: " ".join(flags) or "default",
)
def test_images_output_matches_podman(pair: Pair, flags: list[str]) -> None:
    ours, theirs = pair.both("images", *flags)
    assert ours == theirs


def test_images_json_matches_podman(pair: Pair) -> None:
    ours, theirs = pair.both("images", "--format", "json")
    assert json.loads(ours) == json.loads(theirs)
    assert ours == theirs


def test_untagged_images_match_podman(pair: Pair, tmp_shm: Path) -> None:
    """Dangling and intermediate images: listing, JSON, prune."""
    local = make_pair(tmp_shm, pair.layouts["busybox"], "vfs")
    for tool in (local.skiff, local.podman):
        tool("untag", "lone")
        tool("untag", "parent:1")
    for flags in (["-a"], [], ["-a", "--filter", "dangling=true"], ["--format", "json"]):
        ours, theirs = local.both("images", *flags)
        assert ours == theirs, flags
    ours, theirs = local.both("image", "prune", "-f")
    assert ours == theirs == f"{local.layouts['lone'].config_digest.hex}\n"
    # removing the child takes the nameless parent along, in both
    ours, theirs = local.both("rmi", "child:2")
    assert ours.splitlines()[:2] == theirs.splitlines()[:2]
    ours, theirs = local.both("images", "-a")
    assert ours == theirs


# --- inspect and history --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["busybox", "parent:1", "quay.io/team/child:2", "rich"])
def test_image_inspect_matches_podman(pair: Pair, name: str) -> None:
    ours, theirs = pair.both("image", "inspect", name)
    ours_data, theirs_data = json.loads(ours), json.loads(theirs)
    for data in (ours_data[0], theirs_data[0]):
        data["GraphDriver"].pop("Data")
    assert ours_data == theirs_data
    assert list(ours_data[0]) == list(theirs_data[0])
    # byte for byte once the driver data agree
    theirs_fixed = json.loads(theirs)
    theirs_fixed[0]["GraphDriver"] = json.loads(ours)[0]["GraphDriver"]
    from skiff.gotemplate.gojson import encode

    assert ours == encode(theirs_fixed, escape_html=True, indent=" " * 5) + "\n"


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--no-trunc"],
        ["-H=false"],
        ["-q"],
        ["--format", "json"],
        ["--format", "{{.ID}}|{{.Created}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}|{{.CreatedAt}}"],
    ],
    ids=lambda flags: " ".join(flags) or "default",
)
@pytest.mark.parametrize("name", ["rich", "quay.io/team/child:2"])
def test_history_matches_podman(pair: Pair, name: str, flags: list[str]) -> None:
    ours, theirs = pair.both("history", *flags, name)
    assert ours == theirs


def test_errors_match_podman(pair: Pair) -> None:
    for args, code in (
        (["rmi", "nosuch"], 1),
        (["history", "nosuch"], 125),
        (["image", "inspect", "nosuch"], 125),
        (["untag", "busybox", "nothere"], 125),
        (["images", "--filter", "bogus=1"], 125),
    ):
        ours = pair.skiff(*args, expect=code)
        theirs = pair.podman(*args, expect=code)
        # podman's message, before skiff's hint in parentheses
        message = theirs.stderr.strip()
        assert ours.stderr.strip().startswith(message), (args, ours.stderr, theirs.stderr)


# --- system df -------------------------------------------------------------------------------


def test_system_df_matches_podman(pair: Pair) -> None:
    ours, theirs = pair.both("system", "df")
    assert ours == theirs
    ours, theirs = pair.both("system", "df", "--format", "{{.Type}} {{.RawSize}} {{.Reclaimable}}")
    assert ours == theirs
    ours, theirs = pair.both("system", "df", "-v")
    # the image section is equal (podman lists volumes and containers the same way: none)
    assert ours == theirs


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
def test_system_df_with_a_container_matches_podman(
    tmp_shm: Path, busybox_layout: BusyboxImage, driver: str
) -> None:
    local = make_pair(tmp_shm, busybox_layout, driver)
    for tool in (local.skiff, local.podman):
        tool("create", "--name", "dfc", "child:2")
        root = Path(tool("mount", "dfc").stdout.strip())
        (root / "hello").write_text("hello\n")
        (root / "etc" / "motd").write_text("welcome\n")
        tool("umount", "dfc")
    ours, theirs = local.both("system", "df")
    assert ours == theirs
    ours, theirs = local.both("system", "df", "-v")
    ours_parts, theirs_parts = ours.split("\n\n"), theirs.split("\n\n")
    assert ours_parts[:2] == theirs_parts[:2]  # the images

    # containers: every cell but the ID and the age (the two were made seconds apart)
    def cells(text: str) -> list[list[str]]:
        rows = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
        return [row[1:5] + row[6:] for row in rows]

    assert cells(ours_parts[3]) == cells(theirs_parts[3])
    assert "second" in re.split(r"\s{2,}", ours_parts[3].splitlines()[1])[5]
    for tool in (local.skiff, local.podman):
        tool("rm", "dfc")


# --- rmi ---------------------------------------------------------------------------------------


def test_rmi_output_matches_podman(pair: Pair, tmp_shm: Path) -> None:
    local = make_pair(tmp_shm, pair.layouts["busybox"], "vfs")
    for args in (["rmi", "extra:1"], ["rmi", "-f", "busybox"], ["rmi", "-a"]):
        ours, theirs = local.both(*args)
        assert ours == theirs, args
    assert (
        local.both("images", "-a")
        == ("REPOSITORY  TAG         IMAGE ID    CREATED     SIZE\n",) * 2
    )


# --- mounted trees ------------------------------------------------------------------------------


def listing(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``root``: type, mode, owner, size (files), link target."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st = full.lstat()
            kind = stat.S_IFMT(st.st_mode)
            out[str(full.relative_to(root))] = (
                kind,
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                st.st_size if stat.S_ISREG(st.st_mode) else 0,
                os.readlink(full) if stat.S_ISLNK(st.st_mode) else "",
            )
    return out


@pytest.mark.parametrize("skiff_driver", ["overlay", "vfs"])
@pytest.mark.parametrize("image", ["rich", "child", "busybox"])
def test_mounted_trees_match_podman_and_umoci(
    tmp_shm: Path, busybox_layout: BusyboxImage, skiff_driver: str, image: str
) -> None:
    if shutil.which("umoci") is None:
        pytest.skip("needs umoci")
    layouts = {
        "busybox": busybox_layout,
        "child": build_layered_layout(tmp_shm / "child", 2),
        "rich": build_layered_layout(tmp_shm / "rich", 2, config_overrides=RICH_CONFIG),
    }
    layout = layouts[image]
    cli = CliEnv(tmp_shm / "cli")
    pair = Pair(tmp_shm, cli, "overlay", {image: layout})
    cli.skiff(
        "--storage-driver", skiff_driver, "image", "copy", "-q", layout.reference,
        "containers-storage:localhost/img",
    )  # fmt: skip
    store = tmp_shm / "podman"
    spec = f"[overlay@{store / 'root'}+{store / 'run'}]"
    cli.skopeo("copy", "-q", layout.reference, f"containers-storage:{spec}localhost/img")
    ours = Path(cli.skiff("image", "mount", "localhost/img").stdout.strip())
    theirs = Path(pair.podman("image", "mount", "localhost/img").stdout.strip())
    bundle = tmp_shm / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout.layout}:{layout.tag}", str(bundle)],
        check=True,
        capture_output=True,
    )
    try:
        expected = listing(bundle / "rootfs")
        assert listing(theirs) == expected
        assert listing(ours) == expected
    finally:
        cli.skiff("image", "umount", "localhost/img")
        pair.podman("image", "umount", "localhost/img")


# --- diff -----------------------------------------------------------------------------------------


def edit(root: Path) -> None:
    (root / "newfile").write_text("hi\n")
    (root / "newdir" / "sub").mkdir(parents=True)
    (root / "newdir" / "sub" / "f").write_text("x\n")
    with (root / "etc" / "passwd").open("a") as f:
        f.write("extra:x:5:5::/:/bin/false\n")
    (root / "etc" / "hosts").unlink()
    (root / "bin" / "ls").unlink()
    (root / "var" / "www" / "index.html").unlink()
    (root / "var" / "www").rmdir()
    (root / "tmp" / "link").symlink_to("/etc/passwd")
    os.chmod(root / "root", 0o750)


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
def test_diff_matches_podman(tmp_shm: Path, busybox_layout: BusyboxImage, driver: str) -> None:
    cli = CliEnv(tmp_shm / "cli")
    pair = Pair(tmp_shm, cli, driver, {"busybox": busybox_layout})
    cli.skiff("--storage-driver", driver, "info")
    pair.add(busybox_layout, "docker.io/library/busybox:latest")
    for tool in (pair.skiff, pair.podman):
        tool("create", "--name", "c1", "busybox")
        root = Path(tool("mount", "c1").stdout.strip())
        edit(root)
        tool("umount", "c1")
    ours, theirs = pair.both("diff", "c1")
    # podman's order is Go's map order (random); the lines are the same
    assert sorted(ours.splitlines()) == sorted(theirs.splitlines())
    ours, theirs = pair.both("diff", "--format", "json", "c1")
    ours_data, theirs_data = json.loads(ours), json.loads(theirs)
    assert list(ours_data) == list(theirs_data)
    assert {k: sorted(v) for k, v in ours_data.items()} == {
        k: sorted(v) for k, v in theirs_data.items()
    }
    assert re.match(r"\{\n {5}\"changed\"", ours) and re.match(r"\{\n {5}\"changed\"", theirs)
    ours, theirs = pair.both("diff", "busybox")
    assert sorted(ours.splitlines()) == sorted(theirs.splitlines())
    # export: the same members with the same attributes (times differ: edited apart)
    exports = []
    for tool, name in ((pair.skiff, "ours.tar"), (pair.podman, "theirs.tar")):
        tool("export", "-o", str(tmp_shm / name), "c1")
        exports.append(tar_members(tmp_shm / name))
    assert exports[0] == exports[1]
    for tool in (pair.skiff, pair.podman):
        tool("rm", "c1")


def tar_members(path: Path) -> dict[str, tuple[Any, ...]]:
    """Members and attributes; modes without the file-type bits containers/storage
    adds to the mode field (Docker's pre-Go-1.9 habit; skiff writes POSIX modes)."""
    import tarfile

    with tarfile.open(path) as tar:
        return {
            m.name.rstrip("/"): (m.type, m.mode & 0o7777, m.uid, m.gid, m.size, m.linkname)
            for m in tar.getmembers()
        }
