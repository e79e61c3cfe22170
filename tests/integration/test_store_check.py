"""``skiff system check [--repair]`` against real stores with planted damage, both drivers.

Each test breaks a real store the way crashes, bugs or users break them
(a process killed mid-way, a layer directory deleted, a file edited inside
a layer, an unmount behind skiff's back, rows left pointing nowhere), then
checks that ``system check`` names the problem and fails, that ``--repair``
fixes what is safe and leaves what is not, and that the store works again.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.config import SystemContext
from skiff.storage import mount as mnt
from skiff.storage.store import Store
from skiff.testing.busybox import BusyboxImage, build_layered_layout
from skiff.testing.cli import CliEnv

OLD = time.time() - 3600


@pytest.fixture(params=["overlay", "vfs"])
def cli(
    request: pytest.FixtureRequest, tmp_shm: Path, busybox_layout: BusyboxImage
) -> Iterator[CliEnv]:
    env = CliEnv(tmp_shm / "cli")
    env.skiff(
        "--storage-driver", request.param, "image", "copy", "-q",
        busybox_layout.reference, "containers-storage:docker.io/library/busybox:latest",
    )  # fmt: skip
    layered = build_layered_layout(tmp_shm / "layered", 2)
    env.skiff("image", "copy", "-q", layered.reference, "containers-storage:localhost/layered")
    try:
        yield env
    finally:
        # what a failed test left mounted, so that the tmpfs directory can go
        for point in sorted(mnt.mount_points(), reverse=True):
            if point.startswith(f"{env.base}/"):
                mnt.unmount(point, detach=True)


@pytest.fixture
def store(cli: CliEnv) -> Iterator[Store]:
    s = Store.open(SystemContext(storage_root=cli.root, run_root=cli.runroot))
    try:
        yield s
    finally:
        s.close()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def problems(cli: CliEnv, *flags: str) -> list[list[str]]:
    """Run ``system check``, expect it to fail; its rows (PROBLEM, OBJECT, ...)."""
    result = cli.skiff("system", "check", *flags, expect=125)
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["PROBLEM", "OBJECT", "DETAIL"]
    return [line.split(None, 2) for line in lines[1:]]


def kinds(rows: list[list[str]]) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in rows}


def assert_clean(cli: CliEnv) -> None:
    assert cli.skiff("system", "check").stdout == "No problems found\n"


def top_layer(store: Store, name: str) -> str:
    layer = store.images.lookup(name).top_layer
    assert layer is not None
    return layer


def test_a_fresh_store_is_clean(cli: CliEnv) -> None:
    assert_clean(cli)
    assert cli.skiff("system", "check", "--repair").stdout == "No problems found\n"


# --- leftovers ---------------------------------------------------------------------------------


def test_leftovers_of_dead_processes(cli: CliEnv, store: Store) -> None:
    staging = store.root / "staging"
    pid = dead_pid()
    unrecorded = staging / f"{pid}-{secrets.token_hex(8)}"
    (unrecorded / "diff").mkdir(parents=True)
    spool = staging / f"spool-{pid}-12345"
    spool.mkdir()
    stray = staging / "junk"
    stray.mkdir()
    os.utime(stray, (OLD, OLD))
    stray_file = staging / "stray-file"
    stray_file.write_bytes(b"x")
    os.utime(stray_file, (OLD, OLD))
    young = staging / "fresh"
    young.mkdir()  # no owner, but young: may be a live rename
    home = store.driver.home / "dir" if store.driver_name == "vfs" else store.driver.home
    half = home / f"{secrets.token_hex(32)}.creating"
    half.mkdir()
    os.utime(half, (OLD, OLD))
    tmp_split = store.root / "layer-data" / f".{secrets.token_hex(32)}.tar-split.{pid}.tmp"
    tmp_split.write_bytes(b"partial")
    rows = problems(cli)
    assert kinds(rows) == {
        ("staging-leftover", str(unrecorded)),
        ("staging-leftover", str(spool)),
        ("staging-leftover", str(stray)),
        ("staging-leftover", str(stray_file)),
        ("temporary-leftover", str(half)),
        ("temporary-leftover", str(tmp_split)),
    }
    out = cli.skiff("system", "check", "--repair").stdout
    assert "REPAIR" in out.splitlines()[0]
    for path in (unrecorded, spool, stray, stray_file, half, tmp_split):
        assert not path.exists()
    assert young.exists()
    assert_clean(cli)


def test_opening_the_store_removes_recorded_leftovers(cli: CliEnv, store: Store) -> None:
    """Rows of a dead process (staging, incomplete layer) go when the store is opened."""
    pid = dead_pid()
    path = store.root / "staging" / f"{pid}-abc"
    path.mkdir()
    layer_id = secrets.token_hex(32)
    with store.db.write() as conn:
        conn.execute(
            "INSERT INTO staging(path, parent, pid, boot, started) VALUES (?,?,?,?,?)",
            (str(path), None, pid, "boot", time.time()),
        )
        conn.execute(
            "INSERT INTO layers(id, created, incomplete, owner_pid, owner_boot) VALUES (?,?,1,?,?)",
            (layer_id, time.time(), pid, "boot"),
        )
    result = cli.skiff("system", "check")
    assert result.stdout == "No problems found\n"
    assert "left by an interrupted process" in result.stderr
    assert not path.exists()
    assert store.db.read_one("SELECT 1 FROM layers WHERE id=?", (layer_id,)) is None


# --- layers ---------------------------------------------------------------------------------


def test_content_and_records_without_each_other(cli: CliEnv, store: Store) -> None:
    ghost = secrets.token_hex(32)
    home = store.driver.home / "dir" if store.driver_name == "vfs" else store.driver.home
    (home / ghost / "diff").mkdir(parents=True)
    split = store.root / "layer-data" / f"{secrets.token_hex(32)}.tar-split"
    split.write_bytes(b"x")
    nowhere = secrets.token_hex(32)
    with store.db.write() as conn:
        conn.execute(
            "INSERT INTO image_names(name, image_id, added) VALUES (?,?,?)",
            ("localhost/ghost:latest", nowhere, 0.0),
        )
        conn.execute(
            "INSERT INTO image_data(image_id, key, value) VALUES (?,?,?)", (nowhere, "k", b"v")
        )
    rows = problems(cli)
    assert kinds(rows) == {
        ("content-without-layer", ghost),
        ("tar-split-dangling", str(split)),
        ("name-dangling", "localhost/ghost:latest"),
        ("image-rows-dangling", nowhere),
    }
    cli.skiff("system", "check", "--repair")
    assert not (home / ghost).exists() and not split.exists()
    assert store.db.read("SELECT * FROM image_names WHERE image_id=?", (nowhere,)) == []
    assert_clean(cli)
    assert "localhost/layered" in cli.skiff("images").stdout


def test_a_layer_without_content_damages_its_images(cli: CliEnv, store: Store) -> None:
    top = top_layer(store, "localhost/layered:latest")
    base = top_layer(store, "docker.io/library/busybox:latest")
    store.driver.remove(top)
    rows = problems(cli)
    layered_id = store.images.lookup("localhost/layered:latest").id
    assert ("layer-without-content", top) in kinds(rows)
    # a quick check finds it too (it does not read the files)
    assert ("layer-without-content", top) in kinds(problems(cli, "--quick"))
    out = cli.skiff("system", "check", "--repair").stdout
    assert "image removed" in out and "layer removed" in out
    assert_clean(cli)
    assert not store.images.exists(layered_id)
    assert not store.layers.exists(top)
    # busybox shares the base layer and is untouched
    assert store.layers.exists(base)
    path = Path(cli.skiff("image", "mount", "busybox").stdout.strip())
    assert (path / "bin" / "busybox").is_file()
    cli.skiff("image", "umount", "busybox")
    # the image comes back with a copy
    cli.skiff("image", "copy", "-q", f"oci:{cli.base.parent / 'layered'}:latest",
              "containers-storage:localhost/layered")  # fmt: skip
    assert_clean(cli)


def test_edited_layer_content_is_found_unless_quick(cli: CliEnv, store: Store) -> None:
    base = top_layer(store, "docker.io/library/busybox:latest")
    passwd = store.driver.layer_dir(base) / "etc" / "passwd"
    data = passwd.read_bytes()
    passwd.write_bytes(data.replace(b"root", b"toor"))  # same size, other bytes
    rows = problems(cli)
    assert ("layer-content-damaged", base) in kinds(rows)
    assert cli.skiff("system", "check", "--quick").stdout == "No problems found\n"
    cli.skiff("system", "check", "--repair")
    # both images stood on the base layer
    assert cli.skiff("images", "-a", "-q").stdout == ""
    assert not store.layers.all()
    assert_clean(cli)


def test_containers_keep_their_layers_unless_forced(cli: CliEnv, store: Store) -> None:
    ctr = cli.skiff("create", "--name", "victim", "layered").stdout.strip()
    top = top_layer(store, "localhost/layered:latest")
    store.driver.remove(top)
    problems(cli)
    result = cli.skiff("system", "check", "--repair", expect=125)
    assert "kept: use --force" in result.stdout
    assert store.containers.find(ctr) is not None
    assert store.images.lookup("localhost/layered:latest").top_layer == top
    out = cli.skiff("system", "check", "--repair", "--force").stdout
    assert "container removed" in out
    assert cli.skiff("ps", "-a", "-q").stdout == ""
    assert store.containers.find(ctr) is None
    assert_clean(cli)


def test_overlay_links(cli: CliEnv, store: Store) -> None:
    if store.driver_name != "overlay":
        pytest.skip("short links are overlay's")
    top = store.layers.get(top_layer(store, "localhost/layered:latest"))
    (store.driver.home / "l" / top.link).unlink()
    dangling = store.driver.home / "l" / "DANGLINGLINKNAME0123456789"
    dangling.symlink_to("../nonexistent/diff")
    rows = problems(cli)
    assert kinds(rows) == {("layer-link-missing", top.id), ("link-dangling", str(dangling))}
    out = cli.skiff("system", "check", "--repair").stdout
    assert "restored" in out
    assert not dangling.is_symlink()
    # the image mounts again (the lower dirs are named through the links)
    path = Path(cli.skiff("image", "mount", "layered").stdout.strip())
    assert (path / "layers" / "1.txt").read_text() == "layer 1\n"
    cli.skiff("image", "umount", "layered")
    assert_clean(cli)


# --- mounts ----------------------------------------------------------------------------------


def test_mount_counts_and_mounts_agree(cli: CliEnv, store: Store) -> None:
    if store.driver_name != "overlay":
        pytest.skip("vfs has no mounts to compare counts with")
    path = Path(cli.skiff("image", "mount", "busybox").stdout.strip())
    mnt.unmount(path)  # behind skiff's back
    rows = problems(cli)
    base = top_layer(store, "docker.io/library/busybox:latest")
    assert kinds(rows) == {("mount-count-stale", base)}
    cli.skiff("system", "check", "--repair")
    assert cli.skiff("image", "mount").stdout == ""
    # the reverse: mounted, but the count was lost
    path = Path(cli.skiff("image", "mount", "layered").stdout.strip())
    top = top_layer(store, "localhost/layered:latest")
    with store.db.write() as conn:
        conn.execute("UPDATE layers SET mount_count=0 WHERE id=?", (top,))
    assert kinds(problems(cli)) == {("mount-not-counted", str(path))}
    cli.skiff("system", "check", "--repair")
    assert not mnt.is_mounted(path)
    assert_clean(cli)


# --- unused layers ---------------------------------------------------------------------------


def test_max_age_removes_old_unused_layers(cli: CliEnv, store: Store) -> None:
    orphan = store.layers.create_writable(None)
    with store.db.write() as conn:
        conn.execute("UPDATE layers SET created=? WHERE id=?", (OLD, orphan.id))
    # not a problem without --max; a young unused layer is left alone with it
    assert_clean(cli)
    assert cli.skiff("system", "check", "--max", "2h").stdout == "No problems found\n"
    assert kinds(problems(cli, "--max", "30m")) == {("layer-unused", orphan.id)}
    cli.skiff("system", "check", "--repair", "--max", "30m")
    assert not store.layers.exists(orphan.id)
    line = cli.fails("system", "check", "--max", "soon")
    assert "invalid --max duration" in line
