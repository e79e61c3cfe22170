"""``skiff images|rmi|tag|untag|image inspect|history|image prune|system df|info`` end to end.

Every command runs the installed ``skiff`` with a private store on
/dev/shm (``CliEnv``); images get there with ``skiff image copy
oci:LAYOUT containers-storage:NAME``. What podman prints for the same
images is checked in tests/interop/test_podman_local_images.py; here the
behaviour: names, filters, sorting, removal rules, exit codes, and that
every failure is one ``Error:`` line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from skiff.testing.busybox import BusyboxImage, build_busybox_layout, build_layered_layout
from skiff.testing.cli import CliEnv


@pytest.fixture
def cli(tmp_shm: Path) -> CliEnv:
    return CliEnv(tmp_shm / "cli")


def store_image(cli: CliEnv, image: BusyboxImage, name: str) -> None:
    cli.skiff("image", "copy", "-q", image.reference, f"containers-storage:{name}")


@pytest.fixture
def family(cli: CliEnv, tmp_shm: Path) -> dict[str, BusyboxImage]:
    """busybox, and a parent/child pair (the child's history extends the parent's)."""
    base = build_busybox_layout(tmp_shm / "bb")
    parent = build_layered_layout(tmp_shm / "parent", 1)
    child = build_layered_layout(tmp_shm / "child", 2)
    store_image(cli, base, "docker.io/library/busybox:latest")
    store_image(cli, parent, "localhost/parent:1")
    store_image(cli, child, "quay.io/team/child:2")
    return {"busybox": base, "parent": parent, "child": child}


def table(text: str) -> list[list[str]]:
    """Rows of a podman table split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


# --- images ----------------------------------------------------------------------------


def test_images_default_table(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    out = cli.skiff("images").stdout
    rows = table(out)
    assert rows[0] == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    # all three were created at the same time: the store's order (as added) stays
    assert [r[:3] for r in rows[1:]] == [
        ["docker.io/library/busybox", "latest", family["busybox"].config_digest.hex[:12]],
        ["localhost/parent", "1", family["parent"].config_digest.hex[:12]],
        ["quay.io/team/child", "2", family["child"].config_digest.hex[:12]],
    ]
    assert all(r[3].endswith("ago") for r in rows[1:])
    assert all(re.fullmatch(r"[\d.]+ [kM]B", r[4]) for r in rows[1:])


def test_images_quiet_digests_no_trunc(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    bb = family["busybox"]
    cli.skiff("tag", "busybox", "extra:1")
    quiet = cli.skiff("images", "-q").stdout.split()
    # one line per image, not per name
    assert quiet.count(bb.config_digest.hex[:12]) == 1 and len(quiet) == 3
    full = cli.skiff("images", "-q", "--no-trunc").stdout.split()
    assert f"sha256:{bb.config_digest.hex}" in full
    rows = table(cli.skiff("images", "--digests").stdout)
    assert rows[0][2] == "DIGEST"
    assert [str(bb.manifest_digest)] == [r[2] for r in rows if r[0] == "localhost/extra"]


def test_images_format_templates_and_json(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    names = cli.skiff("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.splitlines()
    assert names == [
        "docker.io/library/busybox:latest",
        "localhost/parent:1",
        "quay.io/team/child:2",
    ]
    table_out = cli.skiff("images", "--format", "table {{.ID}} {{.Size}}", "--noheading").stdout
    assert len(table_out.splitlines()) == 3
    data = cli.skiff("images", "--format", "json").json()
    assert list(data[0]) == [
        "Id",
        "ParentId",
        "RepoTags",
        "RepoDigests",
        "Size",
        "SharedSize",
        "VirtualSize",
        "Labels",
        "Containers",
        "Names",
        "Digest",
        "History",
        "Created",
        "CreatedAt",
    ]
    child = next(e for e in data if e["Names"] == ["quay.io/team/child:2"])
    assert child["ParentId"] == family["parent"].config_digest.hex
    assert child["RepoTags"] is None
    assert child["RepoDigests"] == [f"quay.io/team/child@{family['child'].manifest_digest}"]
    assert child["Digest"] == str(family["child"].manifest_digest)
    assert child["Size"] == child["VirtualSize"] > 2_000_000
    # a template error is one line, exit 125
    line = cli.fails("images", "--format", "{{.Nope}}")
    assert "can't evaluate field Nope" in line


def test_images_filters(cli: CliEnv, family: dict[str, BusyboxImage], tmp_shm: Path) -> None:
    labelled = build_busybox_layout(
        tmp_shm / "lab", config_overrides={"config": {"Labels": {"tier": "web", "x.y": "1"}}},
        extra_files={"/marker": b"labelled\n"},
    )  # fmt: skip
    store_image(cli, labelled, "localhost/labelled:v1")

    def repos(*flags: str) -> list[str]:
        return cli.skiff("images", "--format", "{{.Repository}}", *flags).stdout.split()

    assert repos("--filter", "reference=busybox") == ["docker.io/library/busybox"]
    assert repos("--filter", "reference=*/child") == ["quay.io/team/child"]
    assert repos("--filter", "reference=localhost/*") == ["localhost/parent", "localhost/labelled"]
    assert repos("busybox") == ["docker.io/library/busybox"]
    assert repos("--filter", "label=tier=web") == ["localhost/labelled"]
    assert repos("--filter", "label=x.y") == ["localhost/labelled"]
    assert repos("--filter", "label=tier=db") == []
    assert repos("--filter", "dangling=true") == []
    assert repos("--filter", f"id={family['child'].config_digest.hex[:8]}") == [
        "quay.io/team/child"
    ]
    # two filters: both must hold
    assert repos("--filter", "reference=localhost/*", "--filter", "label=tier=web") == [
        "localhost/labelled"
    ]
    line = cli.fails("images", "--filter", "bogus=1")
    assert 'unsupported image filter "bogus"' in line
    line = cli.fails("images", "--filter", "dangling")
    assert "filter=value" in line
    line = cli.fails("images", "--filter", "since=nosuch")
    assert "nosuch: image not known" in line


def test_images_before_and_since(cli: CliEnv, tmp_shm: Path) -> None:
    old = build_busybox_layout(
        tmp_shm / "old", config_overrides={"created": "2020-01-01T00:00:00Z"}
    )
    new = build_busybox_layout(
        tmp_shm / "new", config_overrides={"created": "2024-01-01T00:00:00Z"}
    )
    mid = build_busybox_layout(
        tmp_shm / "mid", config_overrides={"created": "2022-01-01T00:00:00Z"}
    )
    for image, name in ((old, "old"), (new, "new"), (mid, "mid")):
        store_image(cli, image, f"localhost/{name}:latest")

    def repos(*flags: str) -> list[str]:
        return cli.skiff("images", "--format", "{{.Repository}}", *flags).stdout.split()

    # newest first
    assert repos() == ["localhost/new", "localhost/mid", "localhost/old"]
    assert repos("--filter", "before=mid") == ["localhost/old"]
    assert repos("--filter", "since=mid") == ["localhost/new"]
    assert repos("--filter", "until=2021-01-01T00:00:00Z") == ["localhost/old"]
    assert repos("--sort", "repository") == ["localhost/mid", "localhost/new", "localhost/old"]


def test_intermediate_and_dangling_images(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    parent_id = family["parent"].config_digest.hex
    cli.skiff("untag", "localhost/parent:1")
    # no names but a child: intermediate, shown only with -a, not dangling
    assert parent_id[:12] not in cli.skiff("images", "-q").stdout
    rows = table(cli.skiff("images", "-a").stdout)
    assert ["<none>", "<none>", parent_id[:12]] in [r[:3] for r in rows]
    assert cli.skiff("images", "-a", "-q", "--filter", "dangling=true").stdout == ""
    assert cli.skiff("images", "-a", "-q", "--filter", "intermediate=true").stdout.split() == [
        parent_id[:12]
    ]
    # prune leaves it (it has a child)
    assert cli.skiff("image", "prune", "-f").stdout == ""
    # removing the child takes the nameless parent with it, as podman does
    out = cli.skiff("rmi", "quay.io/team/child:2").stdout
    assert out == (
        "Untagged: quay.io/team/child:2\n"
        f"Deleted: {family['child'].config_digest.hex}\n"
        f"Deleted: {parent_id}\n"
    )
    assert cli.skiff("images", "-a", "-q").stdout.split() == [
        family["busybox"].config_digest.hex[:12]
    ]


# --- short names and lookup --------------------------------------------------------------


def test_short_names_and_id_prefixes(cli: CliEnv, tmp_shm: Path) -> None:
    bb = build_busybox_layout(tmp_shm / "bb")
    other = build_busybox_layout(tmp_shm / "other", extra_files={"/other": b"other\n"})
    store_image(cli, bb, "docker.io/library/busybox:latest")

    def image_id(name: str) -> str:
        return str(cli.skiff("image", "inspect", "--format", "{{.Id}}", name).stdout.strip())

    assert image_id("busybox") == bb.config_digest.hex
    assert image_id("library/busybox:latest") == bb.config_digest.hex
    assert image_id("docker.io/busybox") == bb.config_digest.hex
    assert image_id(bb.config_digest.hex[:5]) == bb.config_digest.hex
    assert image_id(f"sha256:{bb.config_digest.hex}") == bb.config_digest.hex
    assert image_id(f"busybox@{bb.manifest_digest}") == bb.config_digest.hex
    # localhost/NAME wins over docker.io for a short name, as in podman
    store_image(cli, other, "localhost/busybox:latest")
    assert image_id("busybox") == other.config_digest.hex
    line = cli.fails("image", "inspect", "nosuch")
    assert line.startswith("Error: inspecting object: nosuch: image not known")
    assert cli.skiff("image", "exists", "busybox").returncode == 0
    assert cli.skiff("image", "exists", "nosuch", expect=1).stdout == ""


# --- tag / untag ---------------------------------------------------------------------------


def test_tag_and_untag(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    bb = family["busybox"].config_digest.hex
    cli.skiff("tag", "busybox", "foo", "quay.io/x/y:2", "bar:v1")
    names = cli.skiff("image", "inspect", "--format", "{{json .RepoTags}}", "busybox").stdout
    assert json.loads(names) == [
        "docker.io/library/busybox:latest",
        "localhost/foo:latest",
        "quay.io/x/y:2",
        "localhost/bar:v1",
    ]
    # a name moves: tagging the parent with foo takes it from busybox
    cli.skiff("tag", "parent:1", "foo")
    assert cli.skiff("image", "inspect", "--format", "{{.Id}}", "foo").stdout.strip() == (
        family["parent"].config_digest.hex
    )
    cli.skiff("untag", bb[:12], "bar:v1", "quay.io/x/y:2")
    history = cli.skiff("image", "inspect", "--format", "{{json .NamesHistory}}", bb).stdout
    assert json.loads(history) == [
        "docker.io/library/busybox:latest",
        "quay.io/x/y:2",
        "localhost/bar:v1",
        "localhost/foo:latest",
    ]
    line = cli.fails("untag", bb, "nothere")
    assert "localhost/nothere:latest: tag not known" in line
    line = cli.fails("tag", "busybox")
    assert "requires at least 2 arg(s)" in line
    line = cli.fails("tag", "busybox", "Bad:Name")
    assert "Bad" in line
    line = cli.fails("tag", "nosuch", "foo")
    assert "nosuch: image not known" in line
    cli.skiff("untag", bb)
    assert cli.skiff("image", "inspect", "--format", "{{len .RepoTags}}", bb).stdout == "0\n"


# --- rmi ------------------------------------------------------------------------------------


def test_rmi_untags_then_deletes(
    cli: CliEnv, family: dict[str, BusyboxImage], tmp_shm: Path
) -> None:
    solo = lone_image(cli, tmp_shm, "solo")
    cli.skiff("tag", "solo", "two:2")
    assert cli.skiff("rmi", "two:2").stdout == "Untagged: localhost/two:2\n"
    cli.skiff("tag", "solo", "two:2")
    # by ID with several names: refused without --force
    line = cli.fails("rmi", solo[:12])
    assert "by ID with more than one tag" in line and "please force removal" in line
    out = cli.skiff("rmi", "-f", solo[:12]).stdout
    assert out == f"Untagged: localhost/solo:latest\nUntagged: localhost/two:2\nDeleted: {solo}\n"
    assert solo[:12] not in cli.skiff("images", "-a", "-q").stdout
    # an image other images are built on goes without a "Deleted:" line, as in podman
    bb = family["busybox"].config_digest.hex
    out = cli.skiff("rmi", "busybox").stdout
    assert out == "Untagged: docker.io/library/busybox:latest\n"
    assert bb[:12] not in cli.skiff("images", "-a", "-q").stdout
    assert cli.skiff("history", "-q", "parent:1").stdout.split()[-1] == "<missing>"
    assert cli.skiff("system", "check").stdout == "No problems found\n"


def test_rmi_exit_codes_and_ignore(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    line = cli.fails("rmi", "nosuch", code=1)
    assert line.startswith("Error: nosuch: image not known")
    assert cli.skiff("rmi", "-i", "nosuch").stdout == ""
    line = cli.fails("rmi", "nosuch1", "nosuch2", code=1)
    assert "2 errors occurred" in line and "nosuch1" in line and "nosuch2" in line
    # the known one goes even though another name fails
    result = cli.skiff("rmi", "busybox", "nosuch", expect=1)
    assert result.stdout.startswith("Untagged: docker.io/library/busybox:latest\n")
    line = cli.fails("rmi")
    assert "image name or ID must be specified" in line
    line = cli.fails("rmi", "-a", "busybox")
    assert "--all" in line


def test_rmi_refuses_an_image_in_use_unless_forced(cli: CliEnv, tmp_shm: Path) -> None:
    solo = lone_image(cli, tmp_shm, "solo")
    ctr = cli.skiff("create", "--name", "user", "solo").stdout.strip()
    line = cli.fails("rmi", "solo", code=2)
    assert f"image used by {ctr}: image is in use by a container" in line
    assert "solo" in cli.skiff("images", "--format", "{{.Repository}}").stdout
    out = cli.skiff("rmi", "-f", "solo").stdout
    assert out == f"Untagged: localhost/solo:latest\nDeleted: {solo}\n"
    # the container went with it, records and storage
    assert cli.skiff("ps", "-a", "-q").stdout == ""
    cli.fails("mount", "user")
    assert cli.skiff("system", "check").stdout == "No problems found\n"


def test_rmi_all(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    out = cli.skiff("rmi", "-a").stdout
    # images others are built on go silently (podman reports them as untagged only)
    assert out == (
        "Untagged: docker.io/library/busybox:latest\n"
        "Untagged: localhost/parent:1\n"
        "Untagged: quay.io/team/child:2\n"
        f"Deleted: {family['child'].config_digest.hex}\n"
    )
    assert cli.skiff("images", "-a", "-q").stdout == ""
    assert cli.skiff("system", "check").stdout == "No problems found\n"


# --- inspect and history -------------------------------------------------------------------


def test_image_inspect_shape(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    out = cli.skiff("image", "inspect", "quay.io/team/child:2").stdout
    assert out.startswith('[\n     {\n          "Id": ')  # podman's five-space indent
    data = json.loads(out)
    assert len(data) == 1
    child = data[0]
    assert list(child) == [
        "Id", "Digest", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Config",
        "Version", "Author", "Architecture", "Os", "Size", "VirtualSize", "GraphDriver",
        "RootFS", "Labels", "Annotations", "ManifestType", "User", "History", "NamesHistory",
    ]  # fmt: skip
    image = family["child"]
    assert child["Id"] == image.config_digest.hex
    assert child["Digest"] == str(image.manifest_digest)
    assert child["Parent"] == family["parent"].config_digest.hex
    assert child["Created"] == "2023-11-14T22:13:20Z"
    assert child["Config"] == {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
    }
    assert child["RootFS"] == {"Type": "layers", "Layers": [str(d) for d in image.diff_ids]}
    assert child["GraphDriver"]["Name"] in ("overlay", "vfs")
    assert child["ManifestType"] == "application/vnd.oci.image.manifest.v1+json"
    assert child["Labels"] is None and child["Annotations"] == {}
    assert [h["created_by"] for h in child["History"]][-1].startswith("COPY layers/1.txt")
    # several images at once, and templates
    both = cli.skiff("image", "inspect", "--format", "{{.ID}} {{.Os}}", "busybox", "parent:1")
    assert both.stdout.split("\n")[:2] == [
        f"{family['busybox'].config_digest.hex} linux",
        f"{family['parent'].config_digest.hex} linux",
    ]
    result = cli.skiff("image", "inspect", "busybox", "nosuch", expect=125)
    assert len(json.loads(result.stdout)) == 1
    assert result.stderr.strip().startswith("Error: inspecting object: nosuch: image not known")


def test_history(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    child = family["child"].config_digest.hex
    parent = family["parent"].config_digest.hex
    rows = table(cli.skiff("history", "quay.io/team/child:2").stdout)
    assert rows[0] == ["ID", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    # each entry is named by the image in the store that ends on its layer (podman's rule):
    # the child, the parent, busybox (whose only layer is the base layer)
    bb = family["busybox"].config_digest.hex
    assert [r[0] for r in rows[1:]] == [child[:12], parent[:12], bb[:12]]
    assert rows[1][2].startswith("COPY layers/1.txt")
    assert rows[3][3] == "2.14 MB"
    ids = cli.skiff("history", "-q", "--no-trunc", "child:2").stdout.split()
    assert ids == [child, parent, bb]
    cli.skiff("rmi", "busybox")
    assert cli.skiff("history", "-q", "child:2").stdout.split() == [
        child[:12],
        parent[:12],
        "<missing>",
    ]
    data = json.loads(cli.skiff("history", "--format", "json", "child:2").stdout)
    assert list(data[0]) == ["id", "created", "CreatedBy", "size", "Created"]
    assert data[2]["size"] == 2140160
    plain = table(cli.skiff("history", "-H=false", "child:2").stdout)
    assert plain[1][1] == "2023-11-14T22:13:20Z"
    assert cli.fails("history", "nosuch").startswith("Error: nosuch: image not known")


# --- prune, df, info ------------------------------------------------------------------------


def lone_image(cli: CliEnv, tmp_shm: Path, name: str) -> str:
    """An image related to no other (its own base layer); returns its ID."""
    image = build_busybox_layout(tmp_shm / name, extra_files={"/lone": name.encode()})
    store_image(cli, image, f"localhost/{name}:latest")
    return image.config_digest.hex


def test_image_prune(cli: CliEnv, family: dict[str, BusyboxImage], tmp_shm: Path) -> None:
    lone = lone_image(cli, tmp_shm, "lone")
    cli.skiff("untag", "lone")
    # busybox without names is not dangling: the parent image is built on it
    cli.skiff("untag", "busybox")
    # without --force it asks; no answer is no
    asked = cli.skiff("image", "prune", input_text="n\n")
    assert asked.stdout.startswith("WARNING! This command removes all dangling images.\n")
    assert lone[:12] in cli.skiff("images", "-q").stdout
    assert cli.skiff("image", "prune", "-f").stdout == f"{lone}\n"
    cli.skiff("create", "--name", "keep", "parent:1")
    removed = cli.skiff("image", "prune", "-a", "-f").stdout.split()
    # the parent is used by a container (and keeps busybox's layer); the rest goes
    assert sorted(removed) == sorted(
        [family["child"].config_digest.hex, family["busybox"].config_digest.hex]
    )
    assert cli.skiff("images", "-a", "-q", "--no-trunc").stdout.split() == [
        f"sha256:{family['parent'].config_digest.hex}"
    ]
    assert cli.skiff("system", "check").stdout == "No problems found\n"


def test_system_prune(cli: CliEnv, tmp_shm: Path) -> None:
    lone = lone_image(cli, tmp_shm, "lone")
    cli.skiff("untag", "lone")
    out = cli.skiff("system", "prune", "-f").stdout
    assert out.startswith(f"Deleted Images\n{lone}\n")
    assert re.search(r"Total reclaimed space: [\d.]+MB\n$", out)


def test_system_df(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    cli.skiff("create", "--name", "dfc", "busybox")
    rows = table(cli.skiff("system", "df").stdout)
    assert rows[0] == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    # an image is active when a container uses it; a container when it runs
    assert rows[1][:3] == ["Images", "3", "1"]
    assert rows[2][:3] == ["Containers", "1", "0"]
    assert rows[3][:3] == ["Local Volumes", "0", "0"]
    data = cli.skiff("system", "df", "--format", "json").json()
    assert [d["Type"] for d in data] == ["Images", "Containers", "Local Volumes"]
    assert data[0]["Size"] > data[0]["Reclaimable"] > 4_000_000
    raw = cli.skiff("system", "df", "--format", "{{.Type}}={{.RawSize}}").stdout.splitlines()
    assert raw[0] == f"Images={data[0]['Size']}"
    verbose = cli.skiff("system", "df", "-v").stdout
    assert verbose.startswith("Images space usage:\n\nREPOSITORY")
    assert "\nContainers space usage:\n\nCONTAINER ID" in verbose
    assert "\nLocal Volumes space usage:\n\nVOLUME NAME" in verbose
    image_rows = {r[0]: r for r in table(verbose.split("\n\n")[1])[1:]}
    # the parent has a child image: all of it is shared
    assert image_rows["localhost/parent"][5] == image_rows["localhost/parent"][4]
    assert image_rows["localhost/parent"][6] == "0B"
    assert image_rows["docker.io/library/busybox"][7] == "1"


def test_info(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    text = cli.skiff("info").stdout
    assert text.startswith("host:\n  arch: ")
    data = cli.skiff("info", "--format", "json").json()
    assert list(data) == ["host", "registries", "store", "version"]
    assert data["store"]["graphRoot"] == str(cli.root)
    assert data["store"]["runRoot"] == str(cli.runroot)
    assert data["store"]["imageStore"] == {"number": 3}
    assert data["store"]["graphDriverName"] in ("overlay", "vfs")
    out = cli.skiff("info", "--format", "{{.Store.GraphRoot}} {{.Host.Os}}").stdout
    assert out == f"{cli.root} linux\n"
    assert cli.skiff("system", "info", "--format", "{{.Store.ImageStore.Number}}").stdout == "3\n"


def test_image_tree(cli: CliEnv, family: dict[str, BusyboxImage]) -> None:
    out = cli.skiff("image", "tree", "child:2").stdout.splitlines()
    assert out[0] == f"Image ID: {family['child'].config_digest.hex[:12]}"
    assert out[1] == "Tags:     [quay.io/team/child:2]"
    assert re.fullmatch(r"Size:     [\d.]+MB", out[2])
    assert out[3] == "Image Layers"
    assert len(out) == 7
    assert out[4].startswith("├── ID: ") and out[4].endswith(
        "Size:  2.14MB Top Layer of: [docker.io/library/busybox:latest]"
    )
    assert out[5].endswith("Top Layer of: [localhost/parent:1]")
    assert out[6].startswith("└── ID: ") and out[6].endswith(
        "Size: 10.24kB Top Layer of: [quay.io/team/child:2]"
    )
