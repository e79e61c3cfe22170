"""The volume layer against the real thing: a store on tmpfs, real mounts,
real chown/copy-up, another skiff process sharing mount counts, runc.

Containers are stood in for by IDs: the volume layer knows containers only
through ``resolve_mounts``/``mount_volumes``/``unmount_volumes``/``release``
(what the runtime calls) and the ``volume_users`` records they keep. The
data of a volume surviving a real container's removal is the runtime's
tests' business; here the layer itself is pinned: records, directories,
the local driver's tmpfs and bind mounts and their counts, copy-up with
owners and modes (from a plain tree and from an image unpacked into a
real overlay store), anonymous volumes, ``--volumes-from``, and removal
that never reaches through a mount into host data.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from skiff.config import SystemContext
from skiff.errors import ContainerError, StorageError, UsageError, VolumeUnknown
from skiff.oci.config import ImageConfig
from skiff.runtime.specgen.mounts import (
    VolumeMount,
    parse_mount,
    parse_tmpfs,
    parse_volume,
    resolve_host_sources,
)
from skiff.runtime.volumes import (
    CreateOptions,
    VolumeExists,
    VolumeInUse,
    VolumesFrom,
    VolumeStore,
    as_spec_mounts,
    mount_for,
    mount_volumes,
    parse_volumes_from,
    recorded_mounts,
    release,
    resolve_mounts,
    unmount_for,
    unmount_volumes,
    volume_users,
)
from skiff.runtime.volumes.copyup import COPY_PREFIX, secure_join
from skiff.runtime.volumes.manage import (
    create_volume,
    list_volumes,
    prune_candidates,
    prune_volumes,
    remove_volume,
)
from skiff.runtime.volumes.store import mounts_beneath
from skiff.storage.db import boot_id
from skiff.storage.mount import unmount
from skiff.storage.store import Store
from skiff.testing.cli import CliEnv
from skiff.testing.layertar import snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts and chown need root")

NAMED = ("rw", "rprivate", "nosuid", "nodev", "rbind")
IMAGE = ("rprivate", "rw", "nodev", "exec", "nosuid", "rbind")
INSPECT_KEYS = ["Name", "Driver", "Mountpoint", "CreatedAt", "Labels", "Scope", "Options"]


@dataclass
class Env:
    cli: CliEnv
    store: Store
    volumes: VolumeStore
    base: Path

    def cid(self) -> str:
        return secrets.token_hex(32)

    def mountinfo(self, path: Path) -> str:
        """The /proc/self/mountinfo line of the mount at ``path`` ('' if none)."""
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if line.split(" ")[4] == str(path):
                return line
        return ""


@pytest.fixture
def env(tmp_shm: Path) -> Iterator[Env]:
    cli = CliEnv(tmp_shm / "cli")
    store = Store.open(SystemContext(storage_root=cli.root, run_root=cli.runroot))
    try:
        yield Env(cli, store, VolumeStore.of(store), tmp_shm)
    finally:
        store.close()
        # never let the temp dir's removal reach through a mount left by a failure
        for point in mounts_beneath(tmp_shm):
            unmount(point, detach=True)


def entries(path: Path) -> list[str]:
    return sorted(os.listdir(path)) if path.exists() else []


def image_config(*volumes: str) -> ImageConfig:
    return ImageConfig({"config": {"Volumes": {v: {} for v in volumes}}})


def make_tree(root: Path) -> Path:
    """An image-like directory /srv/app with owners, modes, links, a fifo."""
    app = root / "srv" / "app"
    (app / "secret").mkdir(parents=True)
    (app / "conf").write_text("key=value\n")
    os.chown(app / "conf", 1002, 1003)
    os.chmod(app / "conf", 0o640)
    os.link(app / "conf", app / "conf.hard")
    (app / "tool").write_bytes(b"\x7fELF")
    os.chmod(app / "tool", 0o4755)
    os.symlink("conf", app / "link")
    os.mkfifo(app / "pipe", 0o600)
    (app / "secret" / "key").write_text("k\n")
    os.chown(app / "secret", 33, 33)
    os.chmod(app / "secret", 0o700)
    os.chown(app, 1000, 1001)
    os.chmod(app, 0o750)
    os.utime(app, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return app


# --- records, names, directories --------------------------------------------------------


def test_create_records_and_directories(env: Env) -> None:
    volume = env.volumes.create(CreateOptions("data", labels={"tier": "db", "flag": ""}))
    directory = env.volumes.volume_dir("data")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "_data").stat().st_mode) == 0o755
    assert volume.mountpoint == directory / "_data" == env.store.root / "volumes/data/_data"
    found = env.volumes.get("data")
    assert found == volume
    data = found.inspect_json()
    assert list(data) == [*INSPECT_KEYS, "MountCount", "NeedsCopyUp", "NeedsChown"]
    assert data["Labels"] == {"flag": "", "tier": "db"}
    assert data["Scope"] == "local" and data["Driver"] == "local"
    assert data["CreatedAt"].endswith("Z") and data["CreatedAt"][10] == "T"

    owned = env.volumes.create(CreateOptions("owned", options={"o": "uid=1000,gid=100"}))
    assert (owned.mountpoint.stat().st_uid, owned.mountpoint.stat().st_gid) == (1000, 100)
    data = owned.inspect_json()
    assert data["Options"] == {"GID": "100", "UID": "1000", "o": "uid=1000,gid=100"}
    assert (data["UID"], data["GID"]) == (1000, 100)
    assert "NeedsChown" not in data  # podman: an owner was given

    anonymous = env.volumes.create(CreateOptions(anonymous=True))
    assert len(anonymous.name) == 64 and int(anonymous.name, 16) >= 0
    assert anonymous.inspect_json()["Anonymous"] is True
    assert [v.name for v in env.volumes.all()] == sorted([anonymous.name, "data", "owned"])


@pytest.mark.parametrize("name", ["bad name", "_x", "-x", ".x", "a/b", "é", ""])
def test_invalid_names_are_refused_with_podmans_wording(env: Env, name: str) -> None:
    if not name:  # no name means a random one, not an error
        assert len(env.volumes.create(CreateOptions(name=None)).name) == 64
        return
    with pytest.raises(UsageError) as err:
        env.volumes.create(CreateOptions(name))
    assert err.value.message == (
        "running volume create option: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: "
        "invalid argument"
    )
    assert entries(env.volumes.root) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"foo": "bar"}, "invalid mount option foo for driver 'local': invalid argument"),
        (
            {"o": "size=10m"},
            "volume options size and inodes not supported. "
            "Filesystem does not support Project Quota",
        ),
        ({"type": "none", "device": "/srv", "o": "ro"}, "volume v: type=none needs o=bind"),
        ({"type": "none", "o": "bind"}, "volume v: o=bind needs device=/host/path"),
        ({"device": "/dev/sdz"}, "volume v: mount options need a file system type"),
        ({"type": "ext4"}, "volume v: type=ext4 needs a device=… to mount"),
        ({"o": "uid=abc"}, "cannot convert uid 'abc' to an integer for volume v"),
        ({"type": "tmpfs", "o": "size=lots"}, "invalid size 'lots' for the tmpfs volume v"),
    ],
)
def test_bad_driver_options(env: Env, options: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        env.volumes.create(CreateOptions("v", options=options))
    assert err.value.message.startswith(message)
    assert not env.volumes.exists("v")
    assert entries(env.volumes.root) == []


def test_unknown_driver(env: Env) -> None:
    with pytest.raises(UsageError) as err:
        env.volumes.create(CreateOptions("v5", driver="foo"))
    assert err.value.message == (
        "volume v5 uses volume plugin foo but it could not be retrieved: "
        "no volume plugin with name foo available: required plugin missing"
    )


def test_existing_name_and_ignore(env: Env) -> None:
    first = env.volumes.create(CreateOptions("v1"))
    with pytest.raises(VolumeExists) as err:
        env.volumes.create(CreateOptions("v1"))
    assert err.value.message == "volume with name v1 already exists: volume already exists"
    assert create_volume(env.store, CreateOptions("v1", labels={"x": "y"}), ignore=True) == first
    assert os.listdir(env.volumes.root) == ["v1"]


def test_leftovers_of_interrupted_processes_are_removed(env: Env) -> None:
    env.volumes.root.mkdir(parents=True)
    stray = env.volumes.root / "ghost" / "_data"
    stray.mkdir(parents=True)
    (stray / "old").write_text("x")
    dead = env.volumes.root / ".creating-other-999999999-abcd"
    dead.mkdir()
    alive = env.volumes.root / f".removing-busy-{os.getpid()}-abcd"
    alive.mkdir()
    volume = env.volumes.create(CreateOptions("ghost"))
    assert os.listdir(volume.mountpoint) == []
    assert not dead.exists()
    assert alive.exists()  # a live process's directory is its own business


def test_remove_deletes_record_and_directory(env: Env) -> None:
    env.volumes.create(CreateOptions("gone"))
    (env.volumes.mountpoint("gone") / "file").write_text("x")
    assert remove_volume(env.store, "gone").name == "gone"
    assert not env.volumes.exists("gone")
    assert os.listdir(env.volumes.root) == []
    with pytest.raises(VolumeUnknown) as err:
        remove_volume(env.store, "gone")
    assert err.value.message == 'no volume with name "gone" found: no such volume'


def test_concurrent_creates_of_one_name_make_one_volume(env: Env) -> None:
    env.cli.skiff("volume", "ls")  # the store exists before the race
    argv = env.cli.skiff_argv("volume", "create", "racer")
    procs = [
        subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env.cli.environ()
        )
        for _ in range(6)
    ]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert sorted(code for code, _, _ in results) == [0, 125, 125, 125, 125, 125]
    for code, out, err in results:
        if code:
            assert "volume with name racer already exists" in err
        else:
            assert out == "racer\n"
    assert entries(env.volumes.root) == ["racer"]
    assert [v.name for v in env.volumes.all()] == ["racer"]


def test_a_volume_whose_directory_vanished(env: Env) -> None:
    env.volumes.create(CreateOptions("lost"))
    shutil.rmtree(env.volumes.volume_dir("lost"))
    with pytest.raises(StorageError, match="the directory of volume lost is missing"):
        remove_volume(env.store, "lost")
    remove_volume(env.store, "lost", force=True)
    assert not env.volumes.exists("lost")


# --- the local driver: tmpfs and bind, counted across processes ---------------------------


def test_tmpfs_volume_mounted_and_counted_across_processes(env: Env) -> None:
    env.volumes.create(
        CreateOptions("t", options={"type": "tmpfs", "device": "tmpfs", "o": "size=2m,mode=0700"})
    )
    target = env.volumes.mountpoint("t")
    assert env.cli.skiff("volume", "mount", "t").stdout == f"{target}\n"
    line = env.mountinfo(target)
    assert " - tmpfs tmpfs " in line and "size=2048k" in line and "mode=700" in line
    assert env.volumes.get("t").mount_count == 1
    from skiff.runtime.volumes.driver import mount_volume, unmount_volume

    assert mount_volume(env.volumes, "t") == target  # this process, second reference
    (target / "kept").write_text("while mounted")
    assert env.volumes.get("t").mount_count == 2
    assert env.cli.skiff("volume", "unmount", "t").stdout == "t\n"  # another process
    assert env.volumes.get("t").mount_count == 1
    assert (target / "kept").read_text() == "while mounted"
    assert unmount_volume(env.volumes, "t") == 0
    assert env.mountinfo(target) == ""
    assert not (target / "kept").exists()
    assert unmount_volume(env.volumes, "t") == 0  # at zero: nothing to do, no error


def test_bind_volume_read_only_and_host_data_survive_removal(env: Env) -> None:
    host = env.base / "host"
    host.mkdir()
    (host / "precious").write_text("host data\n")
    env.volumes.create(
        CreateOptions("b", options={"type": "none", "device": str(host), "o": "bind,ro"})
    )
    target = env.volumes.mountpoint("b")
    env.cli.skiff("volume", "mount", "b")
    assert (target / "precious").read_text() == "host data\n"
    with pytest.raises(OSError) as err:
        (target / "new").write_text("x")
    assert err.value.errno == 30  # EROFS
    with pytest.raises(VolumeInUse) as in_use:
        remove_volume(env.store, "b")
    assert "is mounted (1 reference(s))" in in_use.value.message
    remove_volume(env.store, "b", force=True)
    assert (host / "precious").read_text() == "host data\n"
    assert mounts_beneath(env.volumes.root) == []
    assert os.listdir(env.volumes.root) == []


def test_leftover_directory_with_a_mount_is_detached_not_emptied(env: Env) -> None:
    """A record lost while a bind mount was up: create() must not rm -rf through it."""
    host = env.base / "host"
    host.mkdir()
    (host / "precious").write_text("x")
    env.volumes.create(
        CreateOptions("b", options={"type": "none", "device": str(host), "o": "bind"})
    )
    env.cli.skiff("volume", "mount", "b")
    with env.volumes.db.write() as conn:
        conn.execute("DELETE FROM volumes WHERE name='b'")
    env.volumes.create(CreateOptions("b"))
    assert (host / "precious").read_text() == "x"
    assert os.listdir(env.volumes.mountpoint("b")) == []


def test_bind_volume_to_a_missing_directory_fails_cleanly(env: Env) -> None:
    env.volumes.create(
        CreateOptions("m", options={"type": "none", "device": str(env.base / "nope"), "o": "bind"})
    )
    failure = env.cli.fails("volume", "mount", "m")
    assert "cannot mount volume m" in failure and "is not a directory" in failure
    assert env.volumes.get("m").mount_count == 0


def test_counts_from_an_earlier_boot_are_zero(env: Env) -> None:
    env.volumes.create(CreateOptions("t", options={"type": "tmpfs"}))
    with env.volumes.db.write() as conn:
        conn.execute("UPDATE volumes SET mount_count=3, mount_boot='another-boot' WHERE name='t'")
    assert env.volumes.get("t").mount_count == 0
    env.cli.skiff("volume", "mount", "t")
    assert env.volumes.get("t").mount_count == 1
    assert env.mountinfo(env.volumes.mountpoint("t")) != ""
    row = env.volumes.db.read_one("SELECT mount_boot FROM volumes WHERE name='t'")
    assert row is not None and row["mount_boot"] == boot_id()
    env.cli.skiff("volume", "unmount", "t")


# --- containers: resolving, anonymous volumes, --volumes-from ---------------------------------


def test_resolve_mounts_names_creates_and_records(env: Env) -> None:
    host = env.base / "hostdir"
    host.mkdir()
    env.volumes.create(CreateOptions("data"))
    specs = resolve_host_sources(
        [
            parse_volume("data:/srv"),
            parse_volume("/anon"),
            parse_volume("auto:/auto:ro,noexec,nocopy"),
            parse_mount("type=volume,src=mnt1,dst=/m,volume-nocopy"),
            parse_volume(f"{host}:/h:ro"),
            parse_tmpfs("/scratch:size=1m"),
        ]
    )
    cid = env.cid()
    resolved = resolve_mounts(env.store, cid, specs, image_config("/srv", "/var/www", "var/lib/x/"))
    by_dest = {m.destination: m for m in resolved}
    assert list(by_dest) == [
        "/srv", "/anon", "/auto", "/m", "/h", "/scratch", "/var/lib/x", "/var/www",
    ]  # fmt: skip
    assert by_dest["/srv"].options == NAMED and by_dest["/srv"].name == "data"
    assert by_dest["/srv"].source == str(env.volumes.mountpoint("data"))
    assert by_dest["/auto"].options == ("noexec", "ro", "rprivate", "nosuid", "nodev", "rbind")
    assert not by_dest["/auto"].copy_up and not by_dest["/m"].copy_up
    assert by_dest["/h"].oci() == {
        "destination": "/h",
        "type": "bind",
        "source": str(host),
        "options": ["ro", "rprivate", "rbind"],
    }
    assert by_dest["/scratch"].oci()["type"] == "tmpfs"
    assert by_dest["/var/www"].options == IMAGE and by_dest["/var/www"].anonymous
    anonymous = {by_dest[d].name for d in ("/anon", "/var/www", "/var/lib/x")}
    assert all(len(n) == 64 for n in anonymous)
    for name in anonymous:
        assert env.volumes.get(name).anonymous
    assert not env.volumes.get("auto").anonymous  # named on first use, as podman does
    assert env.volumes.used_by(cid) == sorted({"data", "auto", "mnt1", *anonymous})
    assert volume_users(env.store, "data") == [cid]
    assert recorded_mounts(env.store, cid) == resolved

    mounts, paths = as_spec_mounts(resolved)
    assert [m.destination for m in mounts] == list(by_dest)
    assert paths["data"] == env.volumes.mountpoint("data")
    assert isinstance(mounts[0], VolumeMount) and mounts[0].flags == ("nosuid", "nodev")

    with pytest.raises(ContainerError):
        resolve_mounts(env.store, cid, specs)


def test_resolve_failure_leaves_no_volume_behind(env: Env) -> None:
    bad = VolumeMount(name="not valid", destination="/x")
    with pytest.raises(UsageError):
        resolve_mounts(env.store, env.cid(), [parse_volume("/anon"), bad])
    assert env.volumes.all() == []
    assert os.listdir(env.volumes.root) == []
    assert env.volumes.in_use() == set()


def test_image_volume_modes_and_duplicates(env: Env) -> None:
    config = image_config("/data")
    assert resolve_mounts(env.store, env.cid(), [], config, image_volumes="ignore") == []
    (tmpfs,) = resolve_mounts(env.store, env.cid(), [], config, image_volumes="tmpfs")
    assert tmpfs.oci() == {
        "destination": "/data",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["rprivate", "rw", "nodev", "exec"],
    }
    assert env.volumes.all() == []
    with pytest.raises(UsageError, match="duplicate mount destination /d"):
        resolve_mounts(env.store, env.cid(), [parse_volume("a:/d"), parse_volume("b:/d")])
    with pytest.raises(UsageError, match="invalid image volume mode"):
        resolve_mounts(env.store, env.cid(), [], config, image_volumes="copy")


def test_volumes_from(env: Env) -> None:
    host = env.base / "h"
    host.mkdir()
    source = env.cid()
    first = resolve_mounts(
        env.store,
        source,
        resolve_host_sources(
            [
                parse_volume("shared:/shared"),
                parse_volume(f"{host}:/host"),
                parse_tmpfs("/tmpfs"),
                parse_volume("mine:/mine"),
            ]
        ),
        image_config("/anon"),
    )
    anon = next(m.name for m in first if m.destination == "/anon")
    assert parse_volumes_from("web:ro,z") == ("web", "ro")
    assert parse_volumes_from("web") == ("web", "")
    with pytest.raises(UsageError, match="can only specify 'ro', 'rw', and 'z'"):
        parse_volumes_from("web:rx")

    other = env.cid()
    inherited = resolve_mounts(
        env.store,
        other,
        [parse_volume("own:/mine")],
        volumes_from=[VolumesFrom(source, recorded_mounts(env.store, source), "ro")],
    )
    by_dest = {m.destination: m for m in inherited}
    assert set(by_dest) == {"/mine", "/shared", "/host", "/anon"}  # not the tmpfs
    assert by_dest["/mine"].name == "own"  # own mounts win
    assert by_dest["/shared"].options == ("ro", "rprivate", "nosuid", "nodev", "rbind")
    assert by_dest["/host"].options == ("ro", "rprivate", "rbind")
    assert by_dest["/anon"].name == anon and by_dest["/anon"].read_only
    assert volume_users(env.store, anon) == sorted([source, other])

    assert release(env.store, source, remove_anonymous=True) == []  # still used by `other`
    assert env.volumes.exists(anon)
    assert release(env.store, other, remove_anonymous=True) == [anon]
    assert not env.volumes.exists(anon)
    assert {v.name for v in env.volumes.all()} == {"shared", "mine", "own"}


def test_release_keeps_anonymous_volumes_without_remove_anonymous(env: Env) -> None:
    cid = env.cid()
    (m,) = resolve_mounts(env.store, cid, [parse_volume("/anon")])
    assert release(env.store, cid, remove_anonymous=False) == []
    assert env.volumes.get(m.name).anonymous
    assert env.volumes.users(m.name) == []
    assert recorded_mounts(env.store, cid) == []


def test_in_use_volumes_are_refused_then_released(env: Env) -> None:
    cid = env.cid()
    resolve_mounts(env.store, cid, [parse_volume("busy:/b")])
    with pytest.raises(VolumeInUse) as err:
        remove_volume(env.store, "busy")
    assert err.value.message == (
        f"volume busy is being used by the following container(s): {cid}: volume is being used"
    )
    assert err.value.exit_code == 2
    with pytest.raises(VolumeInUse):  # force needs a way to remove the container
        remove_volume(env.store, "busy", force=True)
    assert [v.name for v in prune_candidates(env.store)] == []
    removed_containers: list[str] = []

    def remove_container(container_id: str) -> None:
        removed_containers.append(container_id)
        release(env.store, container_id, remove_anonymous=False)

    remove_volume(env.store, "busy", force=True, remove_container=remove_container)
    assert removed_containers == [cid]
    assert not env.volumes.exists("busy")


def test_prune_and_filters(env: Env) -> None:
    env.volumes.create(CreateOptions("a1", labels={"k": "v"}))
    env.volumes.create(CreateOptions("a2", labels={"k": "w", "x": ""}))
    env.volumes.create(CreateOptions("b1", options={"type": "tmpfs"}))
    resolve_mounts(env.store, env.cid(), [parse_volume("used:/u")])

    def names(*filters: str) -> list[str]:
        return [v.name for v in list_volumes(env.store, filters)]

    assert names() == ["a1", "a2", "b1", "used"]
    assert names("name=^a") == ["a1", "a2"]
    assert names("name=1", "name=2") == ["a1", "a2", "b1"]
    assert names("label=k") == ["a1", "a2"]
    assert names("label=k=v") == ["a1"]
    assert names("label=k", "label=x") == ["a2"]
    assert names("label!=k") == ["b1", "used"]
    assert names("opt=type=tmpfs") == ["b1"]
    assert names("opt=type") == ["b1"]
    assert names("dangling=true") == ["a1", "a2", "b1"]
    assert names("dangling=false") == ["used"]
    assert names("name=a", "dangling=false") == []  # different keys: all must match
    assert names("driver=local", "scope=local") == names()
    assert names("until=10m") == []
    assert names("until=2099-01-01T00:00:00Z") == names()
    for bad, message in (
        ("foo=1", '"foo" is an invalid volume filter'),
        ("foo", "filter input must be in the form of filter=value: foo is invalid"),
        ("dangling=x", '"x" is not a valid value for the "dangling" filter'),
        ("until=xyz", 'failed to parse value as time or duration: "xyz"'),
        ("name=[", "error parsing regexp"),
    ):
        with pytest.raises(UsageError) as err:
            names(bad)
        assert err.value.message.startswith(message)

    env.cli.skiff("volume", "mount", "b1")
    assert [v.name for v in prune_candidates(env.store)] == ["a1", "a2"]  # b1 is mounted
    assert prune_volumes(env.store, ["label=k=v"]) == ["a1"]
    env.cli.skiff("volume", "unmount", "b1")
    assert prune_volumes(env.store) == ["a2", "b1"]
    assert names() == ["used"]


# --- start and stop: driver mounts, chown, copy-up ------------------------------------------


def test_copy_up_keeps_owners_modes_links_and_times(env: Env) -> None:
    rootfs = env.base / "rootfs"
    app = make_tree(rootfs)
    cid = env.cid()
    (m,) = resolve_mounts(env.store, cid, [], image_config("/srv/app"))
    assert env.volumes.get(m.name).needs_copy_up
    mount_volumes(env.store, cid, rootfs, uid=1234, gid=1234)
    data = env.volumes.mountpoint(m.name)
    assert snapshot(data) == snapshot(app)
    top, image_top = data.stat(), app.stat()
    assert (top.st_uid, top.st_gid, stat.S_IMODE(top.st_mode)) == (1000, 1001, 0o750)
    assert top.st_mtime_ns == image_top.st_mtime_ns
    volume = env.volumes.get(m.name)
    assert not volume.needs_copy_up and not volume.needs_chown
    assert not any(e.startswith(COPY_PREFIX) for e in os.listdir(data))

    # a second container of another image: the volume holds data, nothing is copied again
    other_root = env.base / "other"
    (other_root / "srv" / "app").mkdir(parents=True)
    (other_root / "srv" / "app" / "intruder").write_text("x")
    other = env.cid()
    resolve_mounts(env.store, other, [parse_volume(f"{m.name}:/srv/app")])
    mount_volumes(env.store, other, other_root)
    assert not (data / "intruder").exists()
    assert snapshot(data) == snapshot(app)


def test_copy_up_from_an_image_in_a_real_overlay_store(env: Env) -> None:
    from skiff.testing.busybox import BUSYBOX, busybox_entries, layer_tar, write_image
    from skiff.testing.layertar import Member
    from skiff.testing.layertar import layer_tar as member_tar

    members = [
        Member("srv/", "dir", mode=0o755),
        Member("srv/app/", "dir", mode=0o750, uid=1000, gid=1001),
        Member("srv/app/conf", data=b"key=value\n", mode=0o640, uid=1002, gid=1003),
        Member("srv/app/conf.hard", "hardlink", linkname="srv/app/conf"),
        Member("srv/app/tool", data=b"\x7fELF", mode=0o4755),
        Member("srv/app/link", "symlink", linkname="conf"),
        Member("srv/app/secret/", "dir", mode=0o700, uid=33, gid=33),
        Member("srv/app/secret/key", data=b"k\n", mode=0o600, uid=33, gid=33),
    ]
    layout = env.base / "layout"
    write_image(
        layout,
        [layer_tar(busybox_entries(BUSYBOX)), member_tar(members)],
        config_overrides={"config": {"Volumes": {"/srv/app": {}}}},
    )
    env.cli.skiff(
        "image",
        "copy",
        f"oci:{layout}:latest",
        "containers-storage:localhost/vt:latest",
    )
    store = Store.open(SystemContext(storage_root=env.cli.root, run_root=env.cli.runroot))
    try:
        image = store.images.find("localhost/vt:latest")
        assert image is not None
        config = ImageConfig.from_bytes(image.config)
        container = store.create_container("vt-ctr", image.id)
        rootfs = store.mount_container(container.id)
        try:
            (m,) = resolve_mounts(store, container.id, [], config)
            mount_volumes(store, container.id, rootfs)
            data = Path(m.source)
            assert snapshot(data) == snapshot(rootfs / "srv/app")
            assert (data / "conf").stat().st_uid == 1002
            assert stat.S_IMODE((data / "tool").stat().st_mode) == 0o4755
            assert (data / "conf").stat().st_ino == (data / "conf.hard").stat().st_ino
            assert (data.stat().st_uid, stat.S_IMODE(data.stat().st_mode)) == (1000, 0o750)
            unmount_volumes(store, container.id)
            assert release(store, container.id, remove_anonymous=True) == [m.name]
        finally:
            store.unmount_container(container.id, force=True)
            store.delete_container(container.id)
    finally:
        store.close()


def test_no_copy_up_for_nocopy_non_empty_or_missing_source(env: Env) -> None:
    rootfs = env.base / "rootfs"
    make_tree(rootfs)
    env.volumes.create(CreateOptions("full"))
    (env.volumes.mountpoint("full") / "mine").write_text("keep")
    cid = env.cid()
    resolve_mounts(
        env.store,
        cid,
        [
            parse_volume("skip:/srv/app:nocopy"),
            parse_volume("full:/srv"),
            parse_volume("fresh:/not/in/image"),
        ],
    )
    mount_volumes(env.store, cid, rootfs, uid=4321, gid=8765)
    assert os.listdir(env.volumes.mountpoint("skip")) == []
    assert env.volumes.get("skip").needs_copy_up  # a later container may still copy
    assert os.listdir(env.volumes.mountpoint("full")) == ["mine"]
    assert not env.volumes.get("full").needs_copy_up
    fresh = env.volumes.get("fresh")
    assert fresh.needs_copy_up and not fresh.needs_chown
    st = fresh.mountpoint.stat()
    assert (st.st_uid, st.st_gid) == (4321, 8765)  # first use: the container's user


def test_copy_up_resolves_symlinks_inside_the_rootfs(env: Env) -> None:
    rootfs = env.base / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "image-marker").write_text("from the image\n")
    os.symlink("/etc", rootfs / "data")  # absolute: must mean the rootfs's /etc
    os.symlink("../../../../../../etc", rootfs / "up")
    assert secure_join(rootfs, "/data") == rootfs / "etc"
    assert secure_join(rootfs, "/up/x/../y") == rootfs / "etc" / "y"
    os.symlink("loop", rootfs / "loop")
    with pytest.raises(StorageError, match="too many symbolic links"):
        secure_join(rootfs, "/loop")
    cid = env.cid()
    (m,) = resolve_mounts(env.store, cid, [parse_volume("d:/data")])
    mount_volumes(env.store, cid, rootfs)
    assert os.listdir(m.source) == ["image-marker"]


def test_an_interrupted_copy_is_cleaned_and_redone(env: Env) -> None:
    rootfs = env.base / "rootfs"
    app = make_tree(rootfs)
    env.volumes.create(CreateOptions("v"))
    partial = env.volumes.mountpoint("v") / f"{COPY_PREFIX}999-dead"
    partial.mkdir()
    (partial / "half").write_text("x")
    cid = env.cid()
    resolve_mounts(env.store, cid, [parse_volume("v:/srv/app")])
    mount_volumes(env.store, cid, rootfs)
    assert snapshot(env.volumes.mountpoint("v")) == snapshot(app)


def test_chown_option_changes_every_file_at_each_start(env: Env) -> None:
    rootfs = env.base / "rootfs"
    make_tree(rootfs)
    cid = env.cid()
    resolve_mounts(env.store, cid, [parse_volume("u:/srv/app:U")])
    mount_volumes(env.store, cid, rootfs, uid=2000, gid=3000)
    data = env.volumes.mountpoint("u")
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in [data, *data.rglob("*")]}
    assert owners == {(2000, 3000)}
    assert os.readlink(data / "link") == "conf"


def test_tmpfs_volume_through_container_starts_and_stops(env: Env) -> None:
    rootfs = env.base / "rootfs"
    app = make_tree(rootfs)
    env.volumes.create(CreateOptions("t", options={"type": "tmpfs", "o": "size=4m"}))
    target = env.volumes.mountpoint("t")
    one, two = env.cid(), env.cid()
    resolve_mounts(env.store, one, [parse_volume("t:/srv/app")])
    resolve_mounts(env.store, two, [parse_volume("t:/srv/app:ro")])
    mount_volumes(env.store, one, rootfs)
    assert " - tmpfs " in env.mountinfo(target)
    assert snapshot(target) == snapshot(app)  # copied into the tmpfs
    mount_volumes(env.store, one, rootfs)  # already active: not counted again
    mount_volumes(env.store, two, rootfs)
    assert env.volumes.get("t").mount_count == 2
    unmount_volumes(env.store, one)
    unmount_volumes(env.store, one)  # idempotent
    assert env.volumes.get("t").mount_count == 1 and env.mountinfo(target) != ""
    with pytest.raises(VolumeInUse):
        remove_volume(env.store, "t")
    release(env.store, two, remove_anonymous=True)
    assert env.volumes.get("t").mount_count == 0 and env.mountinfo(target) == ""
    assert volume_users(env.store, "t") == [one]


def test_a_failed_start_gives_back_the_mounts_it_took(env: Env) -> None:
    env.volumes.create(CreateOptions("t", options={"type": "tmpfs"}))
    env.volumes.create(
        CreateOptions("b", options={"type": "none", "device": str(env.base / "no"), "o": "bind"})
    )
    cid = env.cid()
    resolve_mounts(env.store, cid, [parse_volume("t:/t"), parse_volume("b:/b")])
    with pytest.raises(StorageError, match="cannot mount volume b"):
        mount_volumes(env.store, cid, env.base)
    assert env.volumes.get("t").mount_count == 0
    assert env.mountinfo(env.volumes.mountpoint("t")) == ""


def test_start_and_stop_hooks_of_the_runtime(env: Env) -> None:
    rootfs = env.base / "rootfs"
    make_tree(rootfs)
    cid = env.cid()
    specs = [parse_volume("hooked:/srv/app")]
    paths = mount_for(env.store, cid, specs, image_config("/cache"), rootfs)
    anon = next(m.name for m in recorded_mounts(env.store, cid) if m.destination == "/cache")
    assert paths == {
        "hooked": env.volumes.mountpoint("hooked"),
        anon: env.volumes.mountpoint(anon),
    }
    assert mount_for(env.store, cid, specs, image_config("/cache"), rootfs) == paths  # restart
    unmount_for(env.store, cid)
    assert len(env.volumes.all()) == 2


# --- a real container sees what the spec promises ---------------------------------------------


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed")
def test_runc_container_uses_named_tmpfs_and_read_only_volumes(env: Env) -> None:
    from skiff.runtime.oci import OCIRuntime, select_runtime
    from skiff.runtime.specgen import (
        SpecGenerator,
        generate_spec,
        render_hostname,
        render_hosts,
        render_resolv_conf,
        write_container_files,
    )
    from skiff.testing.busybox import build_busybox_layout
    from skiff.testing.ocibundle import BundleFactory, run_bundle, unique_id

    layout = env.base / "layout"
    build_busybox_layout(layout, config_overrides={"config": {"Volumes": {"/var/www": {}}}})
    factory = BundleFactory(layout, env.base / "bundles")
    bundle = factory.make()
    env.volumes.create(CreateOptions("scratch", options={"type": "tmpfs", "o": "size=1m"}))
    env.volumes.create(CreateOptions("readonly"))
    (env.volumes.mountpoint("readonly") / "note").write_text("read me\n")
    cid = unique_id("volumes")
    resolve_mounts(
        env.store,
        cid,
        [
            parse_volume("out:/out"),
            parse_volume("scratch:/scratch"),
            parse_volume("readonly:/ro:ro"),
        ],
        factory.image_config,
    )
    resolved = mount_volumes(env.store, cid, bundle.rootfs)
    sg = SpecGenerator()
    sg.basic.command = [
        "/bin/busybox",
        "sh",
        "-c",
        "echo written > /out/file; cat /ro/note; touch /ro/x 2>&1; "
        "ls /var/www; grep -E ' /(scratch|out) ' /proc/self/mountinfo",
    ]
    sg.storage.mounts, volume_paths = as_spec_mounts(resolved)
    files = write_container_files(
        bundle.userdata,
        hosts=render_hosts(hostname="v"),
        resolv_conf=render_resolv_conf(host_resolv_conf="nameserver 192.0.2.53\n"),
        hostname=render_hostname("v"),
    )
    spec = generate_spec(
        sg,
        factory.image_config,
        bundle.rootfs,
        container_id=cid,
        container_files=files,
        volumes=volume_paths,
    )
    bundle.write_config(spec)
    run_root = env.base / "runc"
    runtime = OCIRuntime(select_runtime(run_root, "runc"), run_root)
    try:
        result = run_bundle(runtime, bundle, cid)
    finally:
        unmount_volumes(env.store, cid)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "read me" in out and "Read-only file system" in out
    assert "index.html" in out  # the image's /var/www, copied into the anonymous volume
    scratch = next(line for line in out.splitlines() if " /scratch " in line)
    assert " - tmpfs " in scratch and "nosuid" in scratch and "nodev" in scratch
    assert (env.volumes.mountpoint("out") / "file").read_text() == "written\n"
    assert env.mountinfo(env.volumes.mountpoint("scratch")) == ""
    removed = release(env.store, cid, remove_anonymous=True)
    assert len(removed) == 1 and {v.name for v in env.volumes.all()} == {
        "out",
        "scratch",
        "readonly",
    }


def test_volume_dir_owned_by_subprocess_lock_serialises(env: Env) -> None:
    """The per-volume lock is a real flock: another process holding it blocks us."""
    env.volumes.create(CreateOptions("locked"))
    holder = subprocess.Popen(
        ["flock", str(env.volumes.volume_dir("locked")), "sh", "-c", "echo held; read x"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        probe = subprocess.run(
            ["flock", "-n", str(env.volumes.volume_dir("locked")), "true"], check=False
        )
        assert probe.returncode == 1  # the same kind of lock skiff takes
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=10)
    with env.volumes.locked("locked"):
        probe = subprocess.run(
            ["flock", "-n", str(env.volumes.volume_dir("locked")), "true"], check=False
        )
        assert probe.returncode == 1
