"""Working containers against the real store, runc, overlay/vfs and netavark.

Every test has its own store on tmpfs with the busybox image as
``localhost/busybox:latest``, and ends by checking that nothing of it is
left on the host: no mount under the test directory, no runtime state, no
run bundle, no network namespace.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import hashlib
import http.server
import io
import json
import lzma
import os
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import zstandard

from skiff.build.builder import (
    METADATA_KEY,
    Builder,
    FromOptions,
    PullPolicy,
    find_builder,
    from_image,
    get_builder,
    inspect_builder,
    list_builders,
    mount_builder,
    remove_builder,
    save_builder,
    unmount_builder,
)
from skiff.build.commit import CommitOptions, commit_builder
from skiff.build.config import ConfigOptions, configure
from skiff.build.copy import CopyOptions, copy_into
from skiff.build.run import RunOptions, parse_run_mount, run_in_builder
from skiff.config import SystemContext
from skiff.errors import (
    BuildError,
    CommandNotFound,
    ContainerUnknown,
    ImageInUse,
    ImageUnknown,
    NameInUse,
    UsageError,
)
from skiff.image import transports
from skiff.image.copy import CopyOptions as ImageCopyOptions
from skiff.image.copy import copy_image
from skiff.libimage.names import local_name, storage_reference
from skiff.oci import mediatypes as mt
from skiff.runtime.engine import Runtime
from skiff.testing.busybox import BusyboxImage
from skiff.testing.network import free_subnet, interface_exists, mounts_under

BUSYBOX = "localhost/busybox:latest"


@dataclasses.dataclass
class Env:
    base: Path
    ctx: SystemContext
    rt: Runtime

    @property
    def store(self) -> Any:
        return self.rt.store

    def new(self, image: str = "busybox", name: str | None = None) -> Builder:
        return from_image(self.rt, image, name=name)

    def run(self, builder: Builder | str, *command: str, **options: Any) -> tuple[int, str]:
        """Run ``command``; (exit code, stdout+stderr)."""
        out = self.base / "run-output"
        with out.open("wb") as f:
            report = run_in_builder(
                self.rt,
                builder if isinstance(builder, str) else builder.name,
                RunOptions(
                    command=list(command),
                    stdin=subprocess.DEVNULL,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    **options,
                ),
            )
        return report.exit_code, out.read_text()

    def rootfs(self, builder: Builder) -> Path:
        return Path(self.store.mount_container(builder.container_id))

    def release(self, builder: Builder) -> None:
        self.store.unmount_container(builder.container_id)

    def layer_members(self, image_id: str, index: int = -1) -> dict[str, tarfile.TarInfo]:
        image = self.store.images.get(image_id)
        layer_id = self.store.image_layers(image)[index]
        reader = self.store.layer_tar(layer_id)
        try:
            data = reader.read()
        finally:
            reader.close()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return {m.name.rstrip("/"): m for m in tar.getmembers()}

    def config(self, image_id: str) -> dict[str, Any]:
        return json.loads(self.store.images.get(image_id).config)

    def manifest(self, image_id: str) -> dict[str, Any]:
        raw = self.store.images.get(image_id).manifest
        assert raw is not None
        return json.loads(raw)

    def leftovers(self) -> list[str]:
        found = [f"mount {m}" for m in mounts_under(self.base)]
        state = self.store.run_root / "runtime"
        for runtime_dir in state.glob("*"):
            if runtime_dir.is_dir() and not runtime_dir.name.endswith(".logs"):
                found += [f"runtime state {p}" for p in runtime_dir.iterdir()]
        bundles = self.store.run_root / "containers"
        if bundles.exists():
            found += [f"bundle {p}" for p in bundles.iterdir()]
        netns = self.store.run_root / "netns"
        if netns.exists():
            found += [f"netns {p}" for p in netns.iterdir()]
        return found


def make_env(base: Path, layout: BusyboxImage, driver: str) -> Env:
    ctx = SystemContext(
        storage_root=base / "root",
        run_root=base / "run",
        storage_driver=driver,
        insecure_policy=True,
        tmp_dir=base,
        registries_conf=base / "registries.conf",
    )
    base.mkdir(parents=True, exist_ok=True)
    (base / "registries.conf").write_text("")
    src = transports.get("oci").parse_reference(f"{layout.layout}:{layout.tag}")
    copy_image(src, storage_reference(local_name("busybox")), ImageCopyOptions(), ctx, ctx)
    return Env(base, ctx, Runtime(ctx))


def close_env(env: Env) -> None:
    for builder in list_builders(env.store):
        remove_builder(env.store, builder.id)
    left = env.leftovers()
    env.rt.close()
    for mount in sorted(mounts_under(env.base), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    assert not left, f"left behind: {left}"


@pytest.fixture(params=["overlay", "vfs"])
def env(
    request: pytest.FixtureRequest, tmp_shm: Path, busybox_layout: BusyboxImage
) -> Iterator[Env]:
    e = make_env(tmp_shm, busybox_layout, request.param)
    try:
        yield e
    finally:
        close_env(e)


@pytest.fixture
def ovl(tmp_shm: Path, busybox_layout: BusyboxImage) -> Iterator[Env]:
    """One driver only, for tests whose subject is not storage."""
    e = make_env(tmp_shm, busybox_layout, "overlay")
    try:
        yield e
    finally:
        close_env(e)


@pytest.fixture
def context_dir(tmp_shm: Path) -> Path:
    ctx = tmp_shm / "context"
    (ctx / "dir" / "sub").mkdir(parents=True)
    (ctx / "a.txt").write_text("alpha\n")
    (ctx / "b.txt").write_text("beta\n")
    (ctx / "dir" / "one").write_text("1\n")
    (ctx / "dir" / "sub" / "two").write_text("2\n")
    (ctx / "dir" / "link").symlink_to("one")
    return ctx


# --- from ----------------------------------------------------------------------------------


def test_from_names_like_buildah(ovl: Env) -> None:
    assert ovl.new().name == "busybox-working-container"
    assert ovl.new().name == "busybox-working-container-1"
    assert ovl.new(BUSYBOX).name == "busybox-working-container-2"
    assert ovl.new("scratch").name == "working-container"
    assert ovl.new("scratch").name == "working-container-1"
    named = ovl.new(name="mine")
    assert named.name == "mine"
    assert named.from_image == BUSYBOX
    assert named.from_image_id == ovl.store.images.lookup(BUSYBOX).id
    with pytest.raises(NameInUse):
        ovl.new(name="mine")
    with pytest.raises(UsageError):
        ovl.new(name="bad/name")
    scratch = get_builder(ovl.store, "working-container")
    assert scratch.from_image == "" and scratch.base_name == "scratch"
    assert scratch.config["rootfs"] == {"type": "layers", "diff_ids": []}


def test_from_transport_reference_and_pull_policies(
    tmp_shm: Path, busybox_layout: BusyboxImage, registry: Any
) -> None:
    env = make_env(tmp_shm, busybox_layout, "overlay")
    try:
        # a transport reference is copied in and names the container
        b = from_image(env.rt, busybox_layout.reference)
        assert b.name == f"{busybox_layout.layout.name}-working-container"
        assert b.from_image_id == busybox_layout.config_digest.hex
        # a registry image: never → unknown, missing → pulled, then found locally
        remote = f"{registry.host}/t/builder-from:1"
        src = transports.get("oci").parse_reference(f"{busybox_layout.layout}:latest")
        dest = transports.get("docker").parse_reference(f"//{remote}")
        copy_image(src, dest, ImageCopyOptions(), env.ctx, registry.context)
        ctx = dataclasses.replace(
            registry.context,
            storage_root=env.ctx.storage_root,
            run_root=env.ctx.run_root,
            storage_driver="overlay",
            insecure_policy=True,
        )
        with Runtime(ctx) as rt:
            with pytest.raises(ImageUnknown):
                from_image(rt, remote, options=FromOptions(pull=PullPolicy.NEVER))
            pulled = from_image(rt, remote)
            assert pulled.from_image == remote
            assert pulled.name == "builder-from-working-container"
            again = from_image(rt, remote, options=FromOptions(pull=PullPolicy.NEVER))
            assert again.from_image_id == pulled.from_image_id
            always = from_image(rt, remote, options=FromOptions(pull=PullPolicy.ALWAYS))
            assert always.from_image_id == pulled.from_image_id
    finally:
        close_env(env)


# --- the seed flow: host writes into the mounted root ------------------------------------------


def test_mount_write_commit(env: Env) -> None:
    b = env.new()
    path = Path(mount_builder(env.store, b))
    assert get_builder(env.store, b.name).mount_point == str(path)
    assert inspect_builder(env.store, get_builder(env.store, b.name))["MountPoint"] == str(path)
    (path / "usr" / "local" / "bin").mkdir(parents=True)
    tool = path / "usr" / "local" / "bin" / "hello"
    tool.write_text("#!/bin/sh\necho hello from the image\n")
    tool.chmod(0o755)
    (path / "var" / "www" / "index.html").unlink()
    report = commit_builder(env.rt, b.name, "myimage")
    assert report.names == ["localhost/myimage:latest"]
    members = env.layer_members(report.image_id)
    assert members["usr/local/bin/hello"].mode == 0o755
    assert "var/www/.wh.index.html" in members
    # a normal store image: a new working container runs it
    unmount_builder(env.store, get_builder(env.store, b.name))
    assert get_builder(env.store, b.name).mount_point == ""
    child = env.new("myimage")
    code, out = env.run(child, "sh", "-c", "hello; test -e /var/www/index.html || echo gone")
    assert (code, out) == (0, "hello from the image\ngone\n")
    # and it copies out like a pulled image (diff IDs verified on the way)
    layout = env.base / "out-layout"
    copy_image(
        storage_reference(local_name("myimage")),
        transports.get("oci").parse_reference(f"{layout}:x"),
        ImageCopyOptions(),
        env.ctx,
        env.ctx,
    )
    assert (layout / "index.json").exists()


# --- commit ------------------------------------------------------------------------------------


def _same_steps(env: Env, name: str, mtime: int) -> Builder:
    b = env.new(name=name)
    root = env.rootfs(b)
    try:
        (root / "srv").mkdir()
        (root / "srv" / "data").write_text("same content\n")
        os.utime(root / "srv" / "data", (mtime, mtime))
        os.utime(root / "srv", (mtime, mtime))
    finally:
        env.release(b)
    configure(env.store, b.name, ConfigOptions(env=["A=1"], cmd="/bin/sh", labels=["k=v"]))
    return b


def test_timestamp_makes_commits_reproducible(env: Env) -> None:
    first = _same_steps(env, "one", 1_600_000_000)
    second = _same_steps(env, "two", 1_700_000_000)
    a = commit_builder(env.rt, "one", "repro:a", CommitOptions(timestamp=1234))
    b = commit_builder(env.rt, "two", "repro:b", CommitOptions(timestamp=1234))
    assert a.image_id == b.image_id
    assert a.manifest_digest == b.manifest_digest
    members = env.layer_members(a.image_id)
    assert {m.mtime for m in members.values()} == {1234}
    config = env.config(a.image_id)
    assert config["created"] == "1970-01-01T00:20:34Z"
    assert config["history"][-1]["created"] == "1970-01-01T00:20:34Z"
    assert config["history"][-1]["comment"] == f"FROM {BUSYBOX}"
    # the other names stayed on the one image
    assert set(env.store.images.get(a.image_id).names) == {
        "localhost/repro:a",
        "localhost/repro:b",
    }
    # without a timestamp, the created time (and file times) differ
    c = commit_builder(env.rt, first.name, None)
    d = commit_builder(env.rt, second.name, None)
    assert c.image_id != d.image_id
    assert env.store.images.get(c.image_id).names == ()


def test_timestamp_gives_the_same_image_on_both_drivers(
    tmp_shm: Path, busybox_layout: BusyboxImage
) -> None:
    ids = []
    for driver in ("overlay", "vfs"):
        env = make_env(tmp_shm / driver, busybox_layout, driver)
        try:
            b = _same_steps(env, "x", 1)
            code, _ = env.run(b, "sh", "-c", "echo ran > /srv/ran")
            assert code == 0
            ids.append(commit_builder(env.rt, "x", None, CommitOptions(timestamp=5)).image_id)
        finally:
            close_env(env)
    assert ids[0] == ids[1]


def test_formats(ovl: Env) -> None:
    b = ovl.new()
    configure(
        ovl.store,
        b.name,
        ConfigOptions(
            healthcheck="CMD-SHELL wget -q localhost || exit 1",
            healthcheck_interval="5s",
            shell='["/bin/ash", "-c"]',
            onbuild=["RUN make"],
            annotations=["org.example.a=1"],
            author="me",
            created_by="made by hand",
            comment="a comment",
            stop_signal="SIGINT",
        ),
    )
    oci = commit_builder(ovl.rt, b.name, "fmt:oci")
    assert any("HEALTHCHECK" in w for w in oci.warnings)
    assert any("ONBUILD" in w and "RUN make" in w for w in oci.warnings)
    assert any("SHELL" in w for w in oci.warnings)
    assert any("COMMENT" in w for w in oci.warnings)
    config = ovl.config(oci.image_id)
    assert "Healthcheck" not in config["config"] and "Shell" not in config["config"]
    assert config["config"]["StopSignal"] == "SIGINT"
    assert config["author"] == "me"
    assert config["history"][-1] == {
        "created": config["created"],
        "created_by": "made by hand",
        "author": "me",
        "comment": f"FROM {BUSYBOX}",
    }
    manifest = ovl.manifest(oci.image_id)
    assert manifest["mediaType"] == mt.OCI_MANIFEST
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.OCI_LAYER}
    assert [layer["digest"] for layer in manifest["layers"]] == config["rootfs"]["diff_ids"]
    base = ovl.store.images.get(b.from_image_id)
    assert manifest["annotations"] == {
        "org.example.a": "1",
        "org.opencontainers.image.base.digest": str(base.digest),
        "org.opencontainers.image.base.name": BUSYBOX,
    }
    docker = commit_builder(ovl.rt, b.name, "fmt:docker", CommitOptions(format="docker"))
    assert docker.warnings == []
    config = ovl.config(docker.image_id)
    assert config["config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
        "Interval": 5_000_000_000,
        "Timeout": 30_000_000_000,
        "Retries": 3,
    }
    assert config["config"]["Shell"] == ["/bin/ash", "-c"]
    assert config["config"]["OnBuild"] == ["RUN make"]
    assert config["container_config"] == config["config"]
    assert config["comment"] == "a comment"
    assert config["parent"] == f"sha256:{b.from_image_id}"
    assert config["container"] == b.container_id
    manifest = ovl.manifest(docker.image_id)
    assert manifest["mediaType"] == mt.DOCKER_V2S2
    assert manifest["config"]["mediaType"] == mt.DOCKER_CONFIG
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.DOCKER_LAYER}
    assert "annotations" not in manifest
    stored = ovl.store.images.get(docker.image_id)
    assert stored.manifest_type == mt.DOCKER_V2S2


def test_empty_commit_adds_the_empty_layer_as_buildah(ovl: Env) -> None:
    b = ovl.new()
    report = commit_builder(ovl.rt, b.name, None)
    # buildah commits even an unchanged container as a layer: the empty tar
    assert str(report.new_layer) == (
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    )


def test_empty_layer_and_pending_history(ovl: Env) -> None:
    b = ovl.new()
    b.add_history("/bin/sh -c #(nop) ENV A=1")
    b.add_history("/bin/sh -c #(nop) LABEL x=y", comment="why")
    save_builder(ovl.store, b)
    report = commit_builder(
        ovl.rt,
        b.name,
        None,
        CommitOptions(empty_layer=True, created_by='/bin/sh -c #(nop) CMD ["sh"]'),
    )
    assert report.new_layer is None
    config = ovl.config(report.image_id)
    base = ovl.config(b.from_image_id)
    assert config["rootfs"] == base["rootfs"]
    history = config["history"][len(base["history"]) :]
    assert [h["created_by"] for h in history] == [
        "/bin/sh -c #(nop) ENV A=1",
        "/bin/sh -c #(nop) LABEL x=y",
        '/bin/sh -c #(nop) CMD ["sh"]',
    ]
    assert all(h["empty_layer"] for h in history)
    assert history[1]["comment"] == "why"


def test_squash(env: Env) -> None:
    b = env.new()
    root = env.rootfs(b)
    try:
        (root / "added").write_text("x")
        (root / "etc" / "group").unlink()
    finally:
        env.release(b)
    report = commit_builder(env.rt, b.name, "squashed", CommitOptions(squash=True))
    config = env.config(report.image_id)
    assert len(config["rootfs"]["diff_ids"]) == 1
    assert [bool(h.get("empty_layer")) for h in config["history"]] == [True, False]
    members = env.layer_members(report.image_id, 0)
    assert "bin/busybox" in members and "added" in members
    assert "etc/group" not in members and not any(".wh." in n for n in members)


def test_rm_iidfile_and_transport_destination(ovl: Env) -> None:
    b = ovl.new()
    iid = ovl.base / "iid"
    layout = ovl.base / "committed"
    report = commit_builder(
        ovl.rt, b.name, f"oci:{layout}:v1", CommitOptions(iidfile=iid, remove=True)
    )
    assert iid.read_text() == f"sha256:{report.image_id}"
    assert report.destination == f"oci:{layout}:v1"
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    assert find_builder(ovl.store, b.name) is None
    assert ovl.store.containers.find(b.container_id) is None


# --- run ------------------------------------------------------------------------------------------


def test_run_options_and_exit_code(ovl: Env) -> None:
    b = ovl.new()
    code, out = ovl.run(
        b,
        "sh",
        "-c",
        "id -u; id -g; echo $FOO; pwd; hostname; exit 7",
        env=["FOO=bar"],
        user="www",
        workdir="/work",
    )
    assert code == 7
    assert out == f"1000\n1000\nbar\n/work\n{b.id[:12]}\n"
    root = ovl.rootfs(b)
    try:
        assert (root / "work").stat().st_uid == 1000
    finally:
        ovl.release(b)


def test_run_uses_the_config_being_built(ovl: Env) -> None:
    b = ovl.new()
    configure(
        ovl.store,
        b.name,
        ConfigOptions(env=["GREETING=hi"], user="www", workingdir="/var/www", entrypoint="false"),
    )
    code, out = ovl.run(b, "sh", "-c", "echo $GREETING $(id -un) $(pwd)")
    assert (code, out) == (0, "hi www /var/www\n")


def test_run_networks(ovl: Env) -> None:
    b = ovl.new()
    code, out = ovl.run(b, "cat", "/proc/net/dev")
    assert code == 0
    assert [line.split(":")[0].strip() for line in out.splitlines()[2:]] == ["lo"]
    host_lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    code, out = ovl.run(b, "cat", "/proc/net/dev", network="host")
    assert code == 0 and len(out.splitlines()[2:]) == len(host_lines)
    code, out = ovl.run(b, "cat", "/etc/hosts")
    assert f"127.0.0.1\t{b.id[:12]} {b.name}" in out


def test_run_on_a_network(ovl: Env) -> None:
    from skiff.runtime.network.store import CreateOptions, NetworkStore

    bridge = f"skb{os.getpid() % 100000}"
    subnet = free_subnet()
    networks = NetworkStore.of(ovl.store)
    network = networks.create(
        CreateOptions(name="buildnet", interface_name=bridge, subnets=[subnet], dns=False)
    )
    try:
        b = ovl.new()
        code, out = ovl.run(b, "ip", "-4", "-o", "addr", "show", "eth0", network="buildnet")
        assert code == 0, out
        assert subnet.rsplit(".", 1)[0] in out
        assert not ovl.leftovers()
    finally:
        networks.delete(network.id)
        if interface_exists(bridge):
            subprocess.run(["ip", "link", "del", bridge], check=False)


def test_run_leaves_no_mount_points(env: Env) -> None:
    b = env.new()
    host_dir = env.base / "hostdir"
    host_dir.mkdir()
    (host_dir / "f").write_text("from the host\n")
    code, out = env.run(
        b, "sh", "-c", "cat /mnt/in/f; echo made > /made", volumes=[f"{host_dir}:/mnt/in:ro"]
    )
    assert (code, out) == (0, "from the host\n")
    report = commit_builder(env.rt, b.name, None)
    assert set(env.layer_members(report.image_id)) == {"made"}


def test_run_mounts(ovl: Env, context_dir: Path) -> None:
    b = ovl.new()
    cache = parse_run_mount("type=cache,target=/cache,id=c1")
    code, _ = ovl.run(b, "sh", "-c", "echo kept > /cache/f", mounts=[cache])
    assert code == 0
    code, out = ovl.run(b, "cat", "/cache/f", mounts=[cache])
    assert (code, out) == (0, "kept\n")
    owned = parse_run_mount("type=cache,target=/owned,uid=1000,gid=1000,mode=0700,sharing=locked")
    code, out = ovl.run(b, "stat", "-c", "%u %g %a", "/owned", mounts=[owned])
    assert (code, out) == (0, "1000 1000 700\n")
    code, out = ovl.run(
        b,
        "sh",
        "-c",
        "cat /ctx/a.txt; (echo x > /ctx/new) 2>/dev/null || echo read-only",
        mounts=[parse_run_mount("type=bind,target=/ctx")],
        context_dir=context_dir,
    )
    assert (code, out) == (0, "alpha\nread-only\n")
    code, out = ovl.run(
        b,
        "sh",
        "-c",
        "echo x > /ctx/new && cat /ctx/new",
        mounts=[parse_run_mount("type=bind,target=/ctx,rw")],
        context_dir=context_dir,
    )
    assert (code, out) == (0, "x\n")
    assert not (context_dir / "new").exists()
    code, out = ovl.run(
        b,
        "sh",
        "-c",
        "echo t > /tmpfs/f && grep -c ' /tmpfs tmpfs' /proc/mounts",
        mounts=[parse_run_mount("type=tmpfs,target=/tmpfs,size=1048576")],
    )
    assert (code, out) == (0, "1\n")
    with pytest.raises(BuildError, match="outside the build context"):
        ovl.run(
            b,
            "true",
            mounts=[parse_run_mount("type=bind,target=/x,source=../..")],
            context_dir=context_dir,
        )
    other = ovl.new()
    root = ovl.rootfs(other)
    try:
        (root / "stage-file").write_text("from the other container\n")
    finally:
        ovl.release(other)
    code, out = ovl.run(
        b,
        "cat",
        "/from/stage-file",
        mounts=[parse_run_mount(f"type=bind,target=/from,from={other.name}")],
    )
    assert (code, out) == (0, "from the other container\n")
    report = commit_builder(ovl.rt, b.name, None)
    assert set(ovl.layer_members(report.image_id)) == set()
    with pytest.raises(UsageError):
        parse_run_mount("type=volume,target=/x")


def test_run_failures(ovl: Env) -> None:
    b = ovl.new()
    with pytest.raises(CommandNotFound):
        ovl.run(b, "no-such-command")
    with pytest.raises(UsageError):
        ovl.run(b)
    with pytest.raises(ContainerUnknown):
        ovl.run("no-such-container", "true")
    with pytest.raises(UsageError):
        ovl.run(b, "true", volumes=["named-volume:/x"])
    assert not ovl.leftovers()


# --- copy / add ----------------------------------------------------------------------------------


def _tree(root: Path, top: str) -> dict[str, str]:
    base = root / top.lstrip("/")
    out = {}
    for path in sorted(base.rglob("*")):
        rel = str(path.relative_to(base))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = path.read_text()
    return out


def test_copy_destination_rules(env: Env, context_dir: Path) -> None:
    b = env.new()
    opts = CopyOptions(context_dir=context_dir)
    copy_into(env.rt, b, ["a.txt"], "/files/", opts)
    copy_into(env.rt, b, ["a.txt"], "/renamed.txt", opts)
    copy_into(env.rt, b, ["dir"], "/contents", opts)
    copy_into(env.rt, b, ["*.txt"], "/glob/", opts)
    copy_into(env.rt, b, ["a.txt", "dir/sub"], "/many/", opts)
    with pytest.raises(BuildError, match="must be a directory"):
        copy_into(env.rt, b, ["a.txt", "b.txt"], "/notadir", opts)
    with pytest.raises(BuildError, match="no files found"):
        copy_into(env.rt, b, ["*.none"], "/x/", opts)
    configure(env.store, b.name, ConfigOptions(workingdir="/app"))
    copy_into(env.rt, get_builder(env.store, b.name), ["b.txt"], "rel/", opts)
    root = env.rootfs(b)
    try:
        assert _tree(root, "/files") == {"a.txt": "alpha\n"}
        assert (root / "renamed.txt").read_text() == "alpha\n"
        assert _tree(root, "/contents") == {
            "link": "-> one",
            "one": "1\n",
            "sub": "dir",
            "sub/two": "2\n",
        }
        assert _tree(root, "/glob") == {"a.txt": "alpha\n", "b.txt": "beta\n"}
        assert _tree(root, "/many") == {"a.txt": "alpha\n", "two": "2\n"}
        assert _tree(root, "/app/rel") == {"b.txt": "beta\n"}
        st = (root / "files" / "a.txt").stat()
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert int(st.st_mtime) == int((context_dir / "a.txt").stat().st_mtime)
    finally:
        env.release(b)


def test_copy_owner_and_mode(ovl: Env, context_dir: Path) -> None:
    b = ovl.new()
    ctx = context_dir
    copy_into(ovl.rt, b, ["a.txt"], "/o/www", CopyOptions(context_dir=ctx, chown="www"))
    copy_into(ovl.rt, b, ["a.txt"], "/o/num", CopyOptions(context_dir=ctx, chown="1234"))
    copy_into(ovl.rt, b, ["a.txt"], "/o/grp", CopyOptions(context_dir=ctx, chown="www:root"))
    copy_into(ovl.rt, b, ["dir"], "/o/tree", CopyOptions(context_dir=ctx, chown="1:2", chmod="750"))
    with pytest.raises(BuildError, match="unknown user 'nosuch'"):
        copy_into(ovl.rt, b, ["a.txt"], "/o/x", CopyOptions(context_dir=ctx, chown="nosuch"))
    with pytest.raises(BuildError, match="unknown group 'nogroup'"):
        copy_into(ovl.rt, b, ["a.txt"], "/o/x", CopyOptions(context_dir=ctx, chown="www:nogroup"))
    with pytest.raises(UsageError):
        copy_into(ovl.rt, b, ["a.txt"], "/o/x", CopyOptions(context_dir=ctx, chmod="9z"))
    root = ovl.rootfs(b)
    try:

        def owner(rel: str) -> tuple[int, int, int]:
            st = (root / rel).lstat()
            return st.st_uid, st.st_gid, st.st_mode & 0o7777

        assert owner("o/www")[:2] == (1000, 1000)
        assert owner("o/num")[:2] == (1234, 1234)
        assert owner("o/grp")[:2] == (1000, 0)
        assert owner("o/tree") == (1, 2, 0o755)  # the directory made for the copy
        assert owner("o/tree/one") == (1, 2, 0o750)
        assert owner("o/tree/sub") == (1, 2, 0o750)
        assert not (root / "o" / "x").exists()
    finally:
        ovl.release(b)


def test_copy_never_reads_outside_the_context(ovl: Env, context_dir: Path, tmp_shm: Path) -> None:
    outside = tmp_shm / "secret"
    outside.write_text("secret\n")
    (context_dir / "abs-link").symlink_to(outside)
    (context_dir / "rel-link").symlink_to("../secret")
    (context_dir / "dir-link").symlink_to("dir")
    (context_dir / "chain").symlink_to("dir-link/one")
    b = ovl.new()
    opts = CopyOptions(context_dir=context_dir)
    for source in ("../secret", "dir/../../secret", "abs-link", "rel-link", "/../secret"):
        with pytest.raises(BuildError, match="outside the build context"):
            copy_into(ovl.rt, b, [source], "/x/", opts)
    # links that stay inside are followed as sources
    copy_into(ovl.rt, b, ["chain"], "/in/chain", opts)
    copy_into(ovl.rt, b, ["dir-link"], "/in/dir", opts)
    root = ovl.rootfs(b)
    try:
        assert (root / "in" / "chain").read_text() == "1\n"
        assert (root / "in" / "dir" / "one").read_text() == "1\n"
        assert not (root / "x").exists()
    finally:
        ovl.release(b)


def test_copy_destination_symlinks_stay_in_the_container(
    ovl: Env, context_dir: Path, tmp_shm: Path
) -> None:
    target = tmp_shm / "host-target"
    target.mkdir()
    b = ovl.new()
    root = ovl.rootfs(b)
    try:
        (root / "escape").symlink_to(str(target))
        (root / "up").symlink_to("../../../../../../" + str(target).lstrip("/"))
    finally:
        ovl.release(b)
    opts = CopyOptions(context_dir=context_dir)
    copy_into(ovl.rt, b, ["a.txt"], "/escape/", opts)
    copy_into(ovl.rt, b, ["b.txt"], "/up/", opts)
    assert list(target.iterdir()) == []
    root = ovl.rootfs(b)
    try:
        inside = root / str(target).lstrip("/")
        assert sorted(p.name for p in inside.iterdir()) == ["a.txt", "b.txt"]
    finally:
        ovl.release(b)


def test_copy_from_another_container_or_image(ovl: Env) -> None:
    b = ovl.new()
    other = ovl.new()
    root = ovl.rootfs(other)
    try:
        (root / "built").mkdir()
        (root / "built" / "artifact").write_text("artifact\n")
        os.chown(root / "built" / "artifact", 1000, 1000)
        (root / "built" / "abs").symlink_to("/built/artifact")
    finally:
        ovl.release(other)
    copy_into(ovl.rt, b, ["/built/"], "/from-ctr/", CopyOptions(from_=other.name))
    copy_into(ovl.rt, b, ["/built/abs"], "/via-link", CopyOptions(from_=other.name))
    copy_into(ovl.rt, b, ["/etc/passwd"], "/from-image", CopyOptions(from_=BUSYBOX))
    root = ovl.rootfs(b)
    try:
        st = (root / "from-ctr" / "artifact").stat()
        assert (st.st_uid, st.st_gid) == (1000, 1000)  # kept from a container
        assert (root / "via-link").read_text() == "artifact\n"  # resolved in its root
        assert (root / "from-image").read_text().startswith("root:x:0:0:")
    finally:
        ovl.release(b)


def test_copy_digest_keys_on_content_not_time(ovl: Env, context_dir: Path) -> None:
    b = ovl.new()
    opts = CopyOptions(context_dir=context_dir)
    first = copy_into(ovl.rt, b, ["dir"], "/d/", opts).digest
    assert copy_into(ovl.rt, b, ["dir"], "/d/", opts).digest == first
    os.utime(context_dir / "dir" / "one", (1, 1))
    assert copy_into(ovl.rt, b, ["dir"], "/d/", opts).digest == first
    (context_dir / "dir" / "one").write_text("changed\n")
    assert copy_into(ovl.rt, b, ["dir"], "/d/", opts).digest != first
    assert copy_into(ovl.rt, b, ["dir"], "/elsewhere/", opts).digest != first


def test_copy_refuses_whiteout_names(ovl: Env, context_dir: Path) -> None:
    (context_dir / "dir" / ".wh.trick").write_text("")
    b = ovl.new()
    with pytest.raises(BuildError, match="whiteout"):
        copy_into(ovl.rt, b, ["dir"], "/d/", CopyOptions(context_dir=context_dir))


class _Ignore:
    def excluded(self, relpath: str, is_dir: bool) -> bool:
        return relpath.endswith(".txt") or relpath == "dir/sub"

    def may_descend(self, dir_relpath: str) -> bool:
        return False


def test_copy_applies_the_ignore_file(ovl: Env, context_dir: Path) -> None:
    b = ovl.new()
    opts = CopyOptions(context_dir=context_dir, ignore=_Ignore())
    copy_into(ovl.rt, b, ["."], "/all/", opts)
    with pytest.raises(BuildError, match="excluded"):
        copy_into(ovl.rt, b, ["a.txt"], "/x/", opts)
    root = ovl.rootfs(b)
    try:
        assert _tree(root, "/all") == {"dir": "dir", "dir/link": "-> one", "dir/one": "1\n"}
    finally:
        ovl.release(b)


def _archive(kind: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("pkg/readme", b"inside\n"), ("pkg/bin/tool", b"#!/bin/sh\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.uid = info.gid = 42
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return {
        "tar": raw,
        "gz": gzip.compress(raw, mtime=0),  # the same bytes on every call
        "bz2": bz2.compress(raw),
        "xz": lzma.compress(raw),
        "zst": zstandard.ZstdCompressor().compress(raw),
    }[kind]


@pytest.mark.parametrize("kind", ["tar", "gz", "bz2", "xz", "zst"])
def test_add_extracts_local_archives(ovl: Env, context_dir: Path, kind: str) -> None:
    (context_dir / f"pkg.{kind}").write_bytes(_archive(kind))
    (context_dir / "notes.gz").write_bytes(gzip.compress(b"just text\n"))
    b = ovl.new()
    add = CopyOptions(context_dir=context_dir, add=True)
    copy_into(ovl.rt, b, [f"pkg.{kind}"], "/opt/", add)
    copy_into(ovl.rt, b, ["notes.gz"], "/opt/", add)
    copy_into(ovl.rt, b, [f"pkg.{kind}"], "/copied/", CopyOptions(context_dir=context_dir))
    root = ovl.rootfs(b)
    try:
        assert (root / "opt" / "pkg" / "readme").read_text() == "inside\n"
        assert (root / "opt" / "pkg" / "bin" / "tool").stat().st_uid == 42
        assert gzip.decompress((root / "opt" / "notes.gz").read_bytes()) == b"just text\n"
        assert (root / "copied" / f"pkg.{kind}").read_bytes() == _archive(kind)
    finally:
        ovl.release(b)


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Last-Modified", formatdate(1_500_000_000, usegmt=True))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_add_url(ovl: Env, http_server: str) -> None:
    _Handler.files = {"/file.txt": b"downloaded\n", "/pkg.tar.gz": _archive("gz")}
    b = ovl.new()
    add = CopyOptions(add=True)
    report = copy_into(ovl.rt, b, [f"{http_server}/file.txt"], "/dl/", add)
    assert report.digest.hex != hashlib.sha256(b"").hexdigest()
    copy_into(ovl.rt, b, [f"{http_server}/file.txt"], "/dl/named", add)
    copy_into(ovl.rt, b, [f"{http_server}/pkg.tar.gz"], "/dl/", add)
    with pytest.raises(BuildError, match="404"):
        copy_into(ovl.rt, b, [f"{http_server}/missing"], "/dl/", add)
    with pytest.raises(BuildError, match="URL"):
        copy_into(ovl.rt, b, [f"{http_server}/file.txt"], "/dl/", CopyOptions())
    root = ovl.rootfs(b)
    try:
        st = (root / "dl" / "file.txt").stat()
        assert (st.st_mode & 0o7777, int(st.st_mtime)) == (0o600, 1_500_000_000)
        assert (root / "dl" / "named").read_text() == "downloaded\n"
        assert (root / "dl" / "pkg.tar.gz").read_bytes() == _archive("gz")  # not extracted
    finally:
        ovl.release(b)


# --- removal, rmi, inspect -----------------------------------------------------------------------


def test_working_containers_hold_their_image(ovl: Env) -> None:
    from skiff.libimage.remove import RemoveOptions, remove_images

    b = ovl.new()
    with pytest.raises(ImageInUse):
        ovl.store.delete_image(b.from_image_id)
    report = remove_images(ovl.ctx, [BUSYBOX], RemoveOptions())
    failure = report.failure()
    assert failure is not None and failure.exit_code == 2
    remove_builder(ovl.store, b.name)
    assert remove_images(ovl.ctx, [BUSYBOX], RemoveOptions()).failure() is None


def test_rm_removes_everything(env: Env) -> None:
    b = env.new()
    mount_builder(env.store, b)
    container = env.store.containers.get(b.container_id)
    assert remove_builder(env.store, b.name) == b.id
    assert find_builder(env.store, b.name) is None
    assert env.store.containers.find(b.container_id) is None
    assert not env.store.layers.exists(container.layer_id)
    assert not mounts_under(env.base)
    with pytest.raises(ContainerUnknown):
        remove_builder(env.store, b.name)
    # a storage container whose record was never written (a killed from)
    orphan = env.store.create_container("orphan", None, metadata={METADATA_KEY: True})
    assert remove_builder(env.store, "orphan") == orphan.id
    env.store.create_container("not-ours", None)
    with pytest.raises(ContainerUnknown):
        remove_builder(env.store, "not-ours")
    env.store.delete_container(env.store.containers.get("not-ours").id)


def test_inspect(ovl: Env) -> None:
    b = ovl.new()
    configure(ovl.store, b.name, ConfigOptions(env=["X=1"], ports=["80/tcp"]))
    data = inspect_builder(ovl.store, get_builder(ovl.store, b.name))
    assert data["Type"] == "buildah 0.0.1"
    assert data["FromImage"] == BUSYBOX
    assert data["FromImageID"] == b.from_image_id
    assert data["Container"] == b.name and data["ContainerID"] == b.container_id
    assert data["MountPoint"] == ""
    assert data["OCIv1"]["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert "X=1" in data["Docker"]["config"]["Env"]
    assert json.loads(data["Config"]) == data["OCIv1"]
