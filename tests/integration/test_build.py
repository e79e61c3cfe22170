"""``skiff build`` (skiff.build.executor) against a real store, runc, overlay and vfs.

Every test builds in its own store on tmpfs, with the busybox image as
``localhost/busybox:latest``, RUN steps without a network (``network
"none"``: no test touches the host's default network), and ends by checking
that the build left nothing behind: no working container, no mount under
the test directory, no run bundle.
"""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from skiff.build.builder import PullPolicy, list_builders
from skiff.build.cache import LayerCache
from skiff.build.executor import BuildOptions, BuildReport, build_image
from skiff.config import SystemContext
from skiff.errors import BuildError, SkiffError, UsageError
from skiff.image import transports
from skiff.image.copy import CopyOptions as ImageCopyOptions
from skiff.image.copy import copy_image
from skiff.libimage.names import local_name, storage_reference
from skiff.storage.store import Store
from skiff.testing.busybox import BusyboxImage
from skiff.testing.network import mounts_under

BUSYBOX = "localhost/busybox:latest"


@dataclass
class Env:
    base: Path
    ctx: SystemContext
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def context(self, files: dict[str, str | bytes], name: str = "context") -> Path:
        root = self.base / name
        root.mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, bytes):
                path.write_bytes(data)
            else:
                path.write_text(data)
        return root

    def build(self, context: Path | str, **options: Any) -> BuildReport:
        self.lines.clear()
        self.warnings.clear()
        out = self.base / "run-output"
        with out.open("ab") as sink:
            opts = BuildOptions(
                context=str(context),
                network="none",
                log=self.lines.append,
                warn=self.warnings.append,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            return build_image(self.ctx, replace(opts, **options))

    def output(self) -> str:
        path = self.base / "run-output"
        return path.read_text() if path.exists() else ""

    def store(self) -> Store:
        return Store.open(self.ctx)

    def config(self, image: str) -> dict[str, Any]:
        store = self.store()
        try:
            return json.loads(store.images.lookup(image).config)
        finally:
            store.close()

    def files(self, image: str) -> dict[str, tuple[Any, ...]]:
        """Every path of the image's file system: (type, mode, uid, gid, content or target)."""
        store = self.store()
        try:
            found = store.images.lookup(image)
            if found.top_layer is None:
                return {}
            root = store.mount_image(found.id)
            try:
                return describe(root)
            finally:
                store.unmount_image(found.id)
        finally:
            store.close()

    def image_count(self) -> tuple[int, int]:
        store = self.store()
        try:
            return len(store.images.all()), len(store.layers.all())
        finally:
            store.close()

    def leftovers(self) -> list[str]:
        found = [f"mount {m}" for m in mounts_under(self.base)]
        store = self.store()
        try:
            found += [f"working container {b.name}" for b in list_builders(store)]
            found += [f"storage container {c.name}" for c in store.containers.all()]
        finally:
            store.close()
        bundles = self.ctx.run_root / "containers"
        if bundles.exists():
            found += [f"bundle {p}" for p in bundles.iterdir()]
        return found

    def cache_hits(self) -> list[str]:
        """The STEP lines whose step came from the cache."""
        hits = []
        for number, line in enumerate(self.lines):
            if line.startswith("--> Using cache"):
                hits.append(self.lines[number - 1])
        return hits


def describe(root: Path) -> dict[str, tuple[Any, ...]]:
    import stat

    out: dict[str, tuple[Any, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            what: tuple[Any, ...] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            what = ("dir", None)
        else:
            what = ("file", path.read_bytes())
        out[rel] = (what[0], stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what[1])
    return out


def make_env(base: Path, layout: BusyboxImage, driver: str) -> Env:
    base.mkdir(parents=True, exist_ok=True)
    (base / "registries.conf").write_text("")
    ctx = SystemContext(
        storage_root=base / "root",
        run_root=base / "run",
        storage_driver=driver,
        insecure_policy=True,
        tmp_dir=base,
        registries_conf=base / "registries.conf",
    )
    src = transports.get("oci").parse_reference(f"{layout.layout}:{layout.tag}")
    copy_image(src, storage_reference(local_name("busybox")), ImageCopyOptions(), ctx, ctx)
    return Env(base, ctx)


def close_env(env: Env) -> None:
    left = env.leftovers()
    for mount in sorted(mounts_under(env.base), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    assert not left, f"left behind: {left}"


@pytest.fixture(params=["overlay", "vfs"])
def env(
    request: pytest.FixtureRequest, tmp_shm: Path, busybox_layout: BusyboxImage
) -> Iterator[Env]:
    e = make_env(tmp_shm / "env", busybox_layout, request.param)
    try:
        yield e
    finally:
        close_env(e)


@pytest.fixture
def ovl(tmp_shm: Path, busybox_layout: BusyboxImage) -> Iterator[Env]:
    """One driver only, for tests whose subject is not storage."""
    e = make_env(tmp_shm / "env", busybox_layout, "overlay")
    try:
        yield e
    finally:
        close_env(e)


MULTI_STAGE = """\
FROM localhost/busybox:latest AS gen
RUN mkdir /out && echo generated > /out/gen.txt
FROM localhost/busybox:latest
ENV APP=/app
WORKDIR $APP
COPY a.txt b.txt ./
COPY dir/ /app/dir/
COPY --from=gen /out /app/from-gen
RUN cat a.txt b.txt from-gen/gen.txt > all.txt
CMD ["cat", "/app/all.txt"]
"""


def _multi_stage(env: Env) -> Path:
    return env.context(
        {
            "Containerfile": MULTI_STAGE,
            "a.txt": "alpha\n",
            "b.txt": "beta\n",
            "dir/one": "1\n",
            "dir/sub/two": "2\n",
        }
    )


# --- building and the layer cache ---------------------------------------------------


def test_multi_stage_build_then_fully_cached(env: Env) -> None:
    context = _multi_stage(env)
    started = time.monotonic()
    first = env.build(context, tags=["built"])
    cold = time.monotonic() - started
    assert first.names == ["localhost/built:latest"]
    assert first.cached == 0 and first.steps == 8
    files = env.files("localhost/built")
    assert files["app/all.txt"][4] == b"alpha\nbeta\ngenerated\n"
    assert files["app/dir/sub/two"][4] == b"2\n"
    assert files["app/a.txt"][2:4] == (0, 0)  # context files belong to root
    config = env.config("localhost/built")["config"]
    assert config["WorkingDir"] == "/app"
    assert config["Cmd"] == ["cat", "/app/all.txt"]
    assert "APP=/app" in config["Env"]
    assert env.lines[0] == "[1/2] STEP 1/2: FROM localhost/busybox:latest AS gen"
    assert "[2/2] COMMIT built" in env.lines
    assert env.lines[-1] == "Successfully tagged localhost/built:latest"
    counts = env.image_count()

    started = time.monotonic()
    second = env.build(context, tags=["built"])
    cached = time.monotonic() - started
    assert second.image_id == first.image_id
    assert second.cached == second.steps == 8
    assert second.new_images == []
    assert env.image_count() == counts  # no new image, no new layer
    assert cached < cold
    assert len(env.cache_hits()) == 8


def test_a_changed_file_rebuilds_from_its_copy_on(env: Env) -> None:
    context = env.context(
        {
            "Containerfile": "FROM localhost/busybox:latest\n"
            "COPY a.txt /a\nCOPY b.txt /b\nRUN cat /a /b > /ab\nLABEL done=yes\n",
            "a.txt": "alpha\n",
            "b.txt": "beta\n",
        }
    )
    first = env.build(context)
    (context / "b.txt").write_text("BETA\n")
    second = env.build(context)
    assert second.image_id != first.image_id
    assert env.cache_hits() == ["STEP 2/5: COPY a.txt /a"]
    assert second.cached == 1 and len(second.new_images) == 3
    assert env.files(second.image_id)["ab"][4] == b"alpha\nBETA\n"
    # only the mtime changes: the content digest does not, the cache holds
    os.utime(context / "a.txt", (1, 1))
    third = env.build(context)
    assert third.image_id == second.image_id and third.cached == 4


def test_remembered_file_digests_follow_changes(ovl: Env) -> None:
    big = os.urandom(200_000)
    context = ovl.context(
        {"Containerfile": "FROM localhost/busybox:latest\nCOPY big /big\n", "big": big}
    )
    first = ovl.build(context)
    st = (context / "big").stat()
    store = ovl.store()
    try:
        rows = store.db.read(
            "SELECT size, digest FROM build_file_hashes WHERE dev=? AND ino=?",
            (st.st_dev, st.st_ino),
        )
    finally:
        store.close()
    import hashlib

    assert [(r[0], r[1]) for r in rows] == [(len(big), hashlib.sha256(big).hexdigest())]
    assert ovl.build(context).cached == 1
    # same inode, same size, mtime put back: the ctime still tells the change
    changed = bytes([big[0] ^ 1]) + big[1:]
    with (context / "big").open("r+b") as f:
        f.write(changed)
    os.utime(context / "big", ns=(st.st_atime_ns, st.st_mtime_ns))
    second = ovl.build(context)
    assert second.cached == 0 and second.image_id != first.image_id
    assert ovl.files(second.image_id)["big"][4] == changed


def test_no_cache_rebuilds_and_records(ovl: Env) -> None:
    context = _multi_stage(ovl)
    first = ovl.build(context)
    second = ovl.build(context, no_cache=True)
    assert second.cached == 0 and second.image_id != first.image_id
    third = ovl.build(context)
    assert third.image_id == second.image_id and third.cached == third.steps


def test_removed_intermediate_images_are_cache_misses(ovl: Env) -> None:
    context = ovl.context({"Containerfile": "FROM localhost/busybox:latest\nRUN echo x > /x\n"})
    first = ovl.build(context)
    store = ovl.store()
    try:
        store.delete_image(first.image_id)
        assert LayerCache(store).lookup  # the table survives the image
    finally:
        store.close()
    second = ovl.build(context)
    assert second.cached == 0


def test_build_args_change_the_run_key(ovl: Env) -> None:
    context = ovl.context(
        {"Containerfile": "FROM localhost/busybox:latest\nARG WHO=world\nRUN echo $WHO > /who\n"}
    )
    world = ovl.build(context)
    assert ovl.files(world.image_id)["who"][4] == b"world\n"
    you = ovl.build(context, build_args={"WHO": "you"})
    assert ovl.files(you.image_id)["who"][4] == b"you\n"
    again = ovl.build(context, build_args={"WHO": "you"})
    assert again.image_id == you.image_id and again.cached == 1
    history = ovl.config(you.image_id)["history"]
    assert history[-1]["created_by"] == "|1 WHO=you /bin/sh -c echo $WHO > /who"


# --- stages ------------------------------------------------------------------------------


def test_target_builds_what_it_needs_only(ovl: Env) -> None:
    context = ovl.context(
        {
            "Containerfile": "FROM localhost/busybox:latest AS base\nRUN echo base > /base\n"
            "FROM localhost/busybox:latest AS unused\nRUN echo unused > /unused\n"
            "FROM base AS middle\nRUN echo middle > /middle\n"
            "FROM localhost/busybox:latest\nCOPY --from=middle /middle /\n",
        }
    )
    report = ovl.build(context, target="middle", tags=["mid"])
    steps = [line for line in ovl.lines if "STEP 1/" in line]
    assert steps == [
        "[1/2] STEP 1/2: FROM localhost/busybox:latest AS base",
        "[2/2] STEP 1/2: FROM base AS middle",
    ]
    files = ovl.files(report.image_id)
    assert files["base"][4] == b"base\n" and files["middle"][4] == b"middle\n"
    assert "unused" not in files
    # stages are found by index too, and a later stage may be copied from
    context2 = ovl.context(
        {
            "Containerfile": "FROM localhost/busybox:latest\nCOPY --from=1 /x /x\n"
            "FROM localhost/busybox:latest AS later\nRUN echo later > /x\n",
        },
        name="ctx2",
    )
    report = ovl.build(context2, target="0")
    assert ovl.files(report.image_id)["x"][4] == b"later\n"
    with pytest.raises(BuildError, match="target 'nope' was not found"):
        ovl.build(context, target="nope")


def test_cyclic_from_is_an_error_naming_the_line(ovl: Env) -> None:
    context = ovl.context(
        {
            "Containerfile": "FROM localhost/busybox:latest AS a\nCOPY --from=b /x /x\n"
            "FROM localhost/busybox:latest AS b\nCOPY --from=a /y /y\n",
        }
    )
    with pytest.raises(BuildError) as caught:
        ovl.build(context)
    assert caught.value.message.startswith(f"{context}/Containerfile:4: circular dependency")
    assert "a -> b -> a" in caught.value.message
    selfish = ovl.context(
        {"Containerfile": "FROM localhost/busybox:latest AS a\nCOPY --from=a /x /x\n"},
        name="self",
    )
    with pytest.raises(BuildError, match=r"Containerfile:2: circular dependency .*a -> a"):
        ovl.build(selfish)


def test_independent_stages_in_parallel(ovl: Env) -> None:
    stages = "".join(
        f"FROM localhost/busybox:latest AS s{i}\nRUN echo {i} > /n{i}\n" for i in range(3)
    )
    final = "FROM localhost/busybox:latest\n" + "".join(
        f"COPY --from=s{i} /n{i} /\n" for i in range(3)
    )
    context = ovl.context({"Containerfile": stages + final})
    parallel = ovl.build(context, jobs=3, timestamp=0, no_cache=True)
    files = ovl.files(parallel.image_id)
    assert [files[f"n{i}"][4] for i in range(3)] == [b"0\n", b"1\n", b"2\n"]
    sequential = ovl.build(context, jobs=1, timestamp=0, no_cache=True)
    assert sequential.image_id == parallel.image_id


def test_a_failing_stage_stops_the_parallel_build(ovl: Env) -> None:
    context = ovl.context(
        {
            "Containerfile": "FROM localhost/busybox:latest AS bad\nRUN exit 7\n"
            "FROM localhost/busybox:latest AS good\nRUN echo ok > /ok\n"
            "FROM localhost/busybox:latest\nCOPY --from=bad /x /\nCOPY --from=good /ok /\n",
        }
    )
    with pytest.raises(SkiffError) as caught:
        ovl.build(context, jobs=2)
    assert caught.value.exit_code == 7
    assert ovl.leftovers() == []


# --- errors ---------------------------------------------------------------------------------


def test_errors_name_the_file_and_line(ovl: Env) -> None:
    cases = {
        "FROM localhost/busybox:latest\nFOO bar\n": "Containerfile:2: unknown instruction: FOO",
        "# nothing\nARG X=1\n": "Containerfile:2: no FROM instruction",
        "FROM localhost/busybox:latest\nCOPY ../outside /x\n": "Containerfile:2: ../outside: "
        "the path climbs above the root, outside the build context",
        "FROM localhost/busybox:latest\nCOPY escape /x\n": "Containerfile:2: escape: the symlink "
        "escape points to /etc, outside the build context",
        "FROM localhost/busybox:latest\nCOPY missing /x\n": "Containerfile:2: missing: "
        "no such file or directory",
        "FROM localhost/busybox:latest\nRUN --mount=type=secret,id=x true\n": "Containerfile:2: "
        "RUN --mount=type=secret is not supported",
        "FROM localhost/nothing-here\n": "Containerfile:1: localhost/nothing-here: image not known",
        "FROM localhost/busybox:latest\nEXPOSE 80/foo\n": "Containerfile:2: invalid protocol",
    }
    for number, (text, expected) in enumerate(cases.items()):
        context = ovl.context({"Containerfile": text}, name=f"c{number}")
        (context / "escape").symlink_to("/etc")
        with pytest.raises(SkiffError) as caught:
            ovl.build(context, pull=PullPolicy.NEVER)
        assert f"{context}/{expected}" in caught.value.message, caught.value.message
    assert ovl.leftovers() == []


def test_a_failing_run_stops_with_its_status_and_leaves_nothing(env: Env) -> None:
    context = env.context(
        {"Containerfile": "FROM localhost/busybox:latest\nRUN echo before\nRUN echo out; exit 3\n"}
    )
    with pytest.raises(SkiffError) as caught:
        env.build(context)
    assert caught.value.exit_code == 3
    assert caught.value.message == (
        f'{context}/Containerfile:3: building at STEP "RUN echo out; exit 3": '
        "while running runtime: exit status 3"
    )
    assert "out\n" in env.output()
    assert env.leftovers() == []
    # the step before it was committed and is cached for the next attempt
    (context / "Containerfile").write_text(
        "FROM localhost/busybox:latest\nRUN echo before\nRUN echo fixed\n"
    )
    env.build(context)
    assert env.cache_hits() == ["STEP 2/3: RUN echo before"]


def test_kept_working_containers_when_asked(ovl: Env) -> None:
    context = ovl.context({"Containerfile": "FROM localhost/busybox:latest\nRUN exit 1\n"})
    with pytest.raises(SkiffError):
        ovl.build(context, rm=False)
    store = ovl.store()
    try:
        kept = list_builders(store)
        assert len(kept) == 1
        from skiff.build.builder import remove_builder

        remove_builder(store, kept[0].id)
    finally:
        store.close()
    with pytest.raises(SkiffError):
        ovl.build(context, rm=False, force_rm=True)
    assert ovl.leftovers() == []


def test_bad_options(ovl: Env) -> None:
    context = ovl.context({"Containerfile": "FROM localhost/busybox:latest\n"})
    with pytest.raises(UsageError, match="invalid tag"):
        ovl.build(context, tags=["Bad:Name:x"])
    with pytest.raises(UsageError, match="host's platform only"):
        ovl.build(context, platform="linux/s390x" if os.uname().machine != "s390x" else "linux/arm")
    with pytest.raises(UsageError, match="unknown format"):
        ovl.build(context, format="tar")
    with pytest.raises(BuildError, match="does not exist"):
        ovl.build(ovl.base / "nowhere")
    empty = ovl.context({}, name="empty")
    with pytest.raises(BuildError, match="no Containerfile or Dockerfile"):
        ovl.build(empty)


# --- instructions -----------------------------------------------------------------------------


def test_config_instructions(ovl: Env) -> None:
    context = ovl.context(
        {
            "Containerfile": """\
FROM localhost/busybox:latest
ARG PORT=8080
ENV A=1 B="two words"
ENV PATH=$PATH:/opt/bin
LABEL org.example.k=v "with space"="yes"
EXPOSE $PORT 53/udp 7000-7001
USER www
WORKDIR /srv
WORKDIR data
VOLUME /data /cache
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "-c"]
CMD echo $A
MAINTAINER someone
"""
        }
    )
    report = ovl.build(context)
    config = ovl.config(report.image_id)
    inner = config["config"]
    assert inner["Env"][-3:] == [
        "A=1",
        "B=two words",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/bin",
    ]
    assert inner["Labels"] == {"org.example.k": "v", "with space": "yes"}
    assert sorted(inner["ExposedPorts"]) == ["53/udp", "7000/tcp", "7001/tcp", "8080/tcp"]
    assert inner["User"] == "www"
    assert inner["WorkingDir"] == "/srv/data"
    assert sorted(inner["Volumes"]) == ["/cache", "/data"]
    assert inner["StopSignal"] == "SIGINT"
    assert inner["Entrypoint"] == ["/bin/sh", "-c"]
    assert inner["Cmd"] == ["/bin/sh", "-c", "echo $A"]
    assert config["author"] == "someone"
    # ENTRYPOINT drops a CMD the base image had
    context2 = ovl.context(
        {"Containerfile": 'FROM localhost/busybox:latest\nENTRYPOINT ["/bin/echo"]\n'}, name="c2"
    )
    assert "Cmd" not in ovl.config(ovl.build(context2).image_id)["config"]


def test_docker_format_keeps_docker_only_settings(ovl: Env) -> None:
    context = ovl.context(
        {
            "Containerfile": """\
FROM localhost/busybox:latest
SHELL ["/bin/sh", "-ec"]
HEALTHCHECK --interval=5s --retries=2 CMD wget -q -O- localhost || exit 1
ONBUILD RUN echo triggered > /triggered
RUN echo "$0" "$-" > /shell
"""
        }
    )
    docker = ovl.build(context, format="docker", tags=["parent"])
    inner = ovl.config(docker.image_id)["config"]
    assert inner["Shell"] == ["/bin/sh", "-ec"]
    assert inner["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q -O- localhost || exit 1"],
        "Interval": 5_000_000_000,
        "Retries": 2,
    }
    assert inner["OnBuild"] == ["RUN echo triggered > /triggered"]
    assert _errexit(ovl.files(docker.image_id)["shell"][4])
    oci = ovl.build(context, format="oci")
    assert "Shell" not in ovl.config(oci.image_id)["config"]
    assert any("SHELL is not supported for OCI image format" in w for w in ovl.warnings)
    # the SHELL still applied to the RUN after it
    assert _errexit(ovl.files(oci.image_id)["shell"][4])
    # a child build runs the ONBUILD trigger, and does not pass it on
    child = ovl.context({"Containerfile": "FROM localhost/parent\nRUN test -f /triggered\n"}, "c")
    report = ovl.build(child, format="docker")
    assert ovl.files(report.image_id)["triggered"][4] == b"triggered\n"
    assert "--> ONBUILD RUN echo triggered > /triggered" in ovl.lines
    assert not ovl.config(report.image_id)["config"].get("OnBuild")
    # a stage's triggers run in a stage built FROM it, whatever the format
    staged = ovl.context(
        {
            "Containerfile": "FROM localhost/busybox:latest AS base\n"
            "ONBUILD RUN echo from-stage > /stage-trigger\nFROM base\n"
        },
        "staged",
    )
    report = ovl.build(staged, format="oci")
    assert ovl.files(report.image_id)["stage-trigger"][4] == b"from-stage\n"


def _errexit(shell_line: bytes) -> bool:
    """``$0 $-`` of a shell started as ``/bin/sh -ec``."""
    program, flags = shell_line.split()
    return program == b"/bin/sh" and b"e" in flags


def test_arguments(ovl: Env) -> None:
    context = ovl.context(
        {
            "Containerfile": """\
ARG BASE=localhost/busybox
ARG UNSET
FROM $BASE:latest
ARG BASE
ARG TARGETARCH
ARG LATE=x${BASE}y
ARG NOVALUE
ENV FROM_ENV=env
ARG FROM_ENV=arg
RUN echo "$BASE|$TARGETARCH|$LATE|$FROM_ENV|$HTTP_PROXY|$NOVALUE" > /args
"""
        }
    )
    report = ovl.build(context, build_args={"HTTP_PROXY": "http://127.0.0.1:3128", "NOT_USED": "1"})
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    line = ovl.files(report.image_id)["args"][4].decode()
    assert line == f"localhost/busybox|{arch}|xlocalhost/busyboxy|env|http://127.0.0.1:3128|\n"
    assert any(
        'missing "UNSET" build argument' in w and "Containerfile:2" in w for w in ovl.warnings
    )
    assert any('missing "NOVALUE" build argument' in w for w in ovl.warnings)
    assert "[Warning] one or more build args were not consumed: [NOT_USED]" in ovl.warnings
    # the proxy argument is not part of the history or the cache key
    assert "3128" not in json.dumps(ovl.config(report.image_id)["history"])
    again = ovl.build(context, build_args={"HTTP_PROXY": "http://127.0.0.1:9"})
    assert again.cached == again.steps


def test_heredocs(ovl: Env) -> None:
    context = ovl.context(
        {
            "Containerfile": """\
FROM localhost/busybox:latest
ARG NAME=world
RUN <<EOF
#!/bin/sh
echo "hello $NAME" > /hello
EOF
RUN cat <<A > /a && cat <<B > /b
first
A
second
B
COPY <<conf.ini <<"raw.txt" /etc/app/
name=$NAME
conf.ini
name=$NAME
raw.txt
"""
        }
    )
    report = ovl.build(context)
    files = ovl.files(report.image_id)
    assert files["hello"][4] == b"hello world\n"
    assert files["a"][4] == b"first\n" and files["b"][4] == b"second\n"
    assert files["etc/app/conf.ini"][4] == b"name=world\n"
    assert files["etc/app/raw.txt"][4] == b"name=$NAME\n"
    assert files["etc/app/conf.ini"][1] == 0o644
    assert "dev/pipes" not in str(sorted(files))


def test_copy_rules(env: Env) -> None:
    context = env.context(
        {
            "Containerfile": """\
FROM localhost/busybox:latest
COPY *.txt /globbed/
COPY tree /copied
COPY --chown=www:www --chmod=600 a.txt /owned
COPY tree/sub/deep.txt /renamed.txt
ADD pkg.tar.gz /unpacked/
ADD pkg.tar.gz /kept/pkg.tar.gz.copy
""",
            "a.txt": "a\n",
            "b.txt": "b\n",
            "tree/top.txt": "top\n",
            "tree/sub/deep.txt": "deep\n",
            "pkg.tar.gz": _tar_gz({"pkg/README": b"readme\n"}),
        }
    )
    os.symlink("top.txt", context / "tree" / "link")
    report = env.build(context)
    files = env.files(report.image_id)
    assert files["globbed/a.txt"][4] == b"a\n" and files["globbed/b.txt"][4] == b"b\n"
    assert files["copied/top.txt"][4] == b"top\n"
    assert files["copied/link"] == ("link", 0o777, 0, 0, "top.txt")
    assert files["owned"][1:4] == (0o600, 1000, 1000)
    assert files["renamed.txt"][4] == b"deep\n"
    assert files["unpacked/pkg/README"][4] == b"readme\n"
    # Docker's rule: a local archive is extracted even to a name without "/"
    assert files["kept/pkg.tar.gz.copy/pkg/README"][4] == b"readme\n"


def test_ignore_files(ovl: Env) -> None:
    context = ovl.context(
        {
            "Containerfile": "FROM localhost/busybox:latest\nCOPY . /ctx/\n",
            ".containerignore": "*.log\nsecret/\n!keep.log\n",
            "app.txt": "app\n",
            "debug.log": "debug\n",
            "keep.log": "keep\n",
            "secret/key": "key\n",
        }
    )
    report = ovl.build(context)
    names = {k for k in ovl.files(report.image_id) if k.startswith("ctx/")}
    assert names == {"ctx/app.txt", "ctx/keep.log", "ctx/Containerfile", "ctx/.containerignore"}
    # an ignored file's change does not invalidate the cache
    (context / "debug.log").write_text("changed\n")
    assert ovl.build(context).cached == 1
    custom = ovl.base / "custom.ignore"
    custom.write_text("app.txt\n")
    report = ovl.build(context, ignorefile=custom)
    names = {k for k in ovl.files(report.image_id) if k.startswith("ctx/")}
    assert "ctx/app.txt" not in names and "ctx/debug.log" in names
    naming = ovl.context(
        {"Containerfile": "FROM localhost/busybox:latest\nCOPY secret/key /k\n"}, name="n"
    )
    (naming / ".dockerignore").write_text("secret\n")
    (naming / "secret").mkdir()
    (naming / "secret" / "key").write_text("k\n")
    with pytest.raises(BuildError, match="excluded by the build context's ignore file"):
        ovl.build(naming)


def test_run_mounts(ovl: Env) -> None:
    context = ovl.context(
        {
            "Containerfile": """\
FROM localhost/busybox:latest AS data
RUN echo from-stage > /stage.txt
FROM localhost/busybox:latest
RUN --mount=type=cache,target=/cache sh -c 'echo run >> /cache/log; wc -l < /cache/log > /count'
RUN --mount=type=bind,from=data,source=/stage.txt,target=/mnt/s cp /mnt/s /copied
RUN --mount=type=bind,source=ctx.txt,target=/mnt/c cp /mnt/c /from-context
RUN --mount=type=tmpfs,target=/scratch sh -c 'echo x > /scratch/x && test -f /scratch/x'
""",
            "ctx.txt": "context\n",
        }
    )
    first = ovl.build(context)
    files = ovl.files(first.image_id)
    assert files["copied"][4] == b"from-stage\n"
    assert files["from-context"][4] == b"context\n"
    assert files["count"][4] == b"1\n"
    assert "cache" not in files and "scratch" not in files and "mnt" not in files
    second = ovl.build(context, no_cache=True)
    assert ovl.files(second.image_id)["count"][4] == b"2\n"  # the cache directory is kept
    (context / "ctx.txt").write_text("changed\n")
    third = ovl.build(context)
    assert ovl.cache_hits()[-1].endswith(
        "--mount=type=bind,from=data,source=/stage.txt,target=/mnt/s cp /mnt/s /copied"
    )
    assert ovl.files(third.image_id)["from-context"][4] == b"changed\n"


def test_add_url_and_checksum(ovl: Env) -> None:
    payload = b"downloaded\n"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/file.txt"
        import hashlib

        good = hashlib.sha256(payload).hexdigest()
        context = ovl.context(
            {
                "Containerfile": f"FROM localhost/busybox:latest\nADD --checksum=sha256:{good} {url} /dl/\n"
            }
        )
        report = ovl.build(context)
        entry = ovl.files(report.image_id)["dl/file.txt"]
        assert entry[4] == payload and entry[1] == 0o600
        assert ovl.build(context).cached == 1
        bad = ovl.context(
            {
                "Containerfile": f"FROM localhost/busybox:latest\nADD --checksum=sha256:{'0' * 64} {url} /x\n"
            },
            name="bad",
        )
        with pytest.raises(BuildError, match=r"Containerfile:2: .*checksum mismatch"):
            ovl.build(bad)
        copy = ovl.context(
            {"Containerfile": f"FROM localhost/busybox:latest\nCOPY {url} /x\n"}, "c"
        )
        with pytest.raises(BuildError, match="COPY cannot take a URL"):
            ovl.build(copy)
    finally:
        server.shutdown()
        server.server_close()


def test_scratch_and_context_archive(ovl: Env) -> None:
    archive = ovl.base / "context.tar.gz"
    archive.write_bytes(
        _tar_gz(
            {
                "Containerfile": b'FROM scratch\nCOPY hello /hello\nCMD ["/hello"]\n',
                "hello": b"#!/bin/false\n",
            }
        )
    )
    report = ovl.build(ovl.base / "context.tar.gz", tags=["from-archive"])
    files = ovl.files(report.image_id)
    assert set(files) == {"hello"}
    config = ovl.config(report.image_id)
    assert len(config["rootfs"]["diff_ids"]) == 1
    assert config["config"]["Cmd"] == ["/hello"]
    assert not list(ovl.base.glob("skiff-context-*"))  # the unpacked context is gone
    only = ovl.context({"Containerfile": "FROM scratch\nLABEL a=b\n"}, name="only-config")
    report = ovl.build(only)
    assert ovl.config(report.image_id)["rootfs"]["diff_ids"] == []


def test_context_from_a_url(ovl: Env) -> None:
    served = {
        "/context.tar": _tar_gz(
            {"Containerfile": b"FROM localhost/busybox:latest\nCOPY f /f\n", "f": b"from a url\n"}
        ),
        "/Containerfile": b"FROM localhost/busybox:latest\nLABEL plain=file\n",
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        archive = ovl.build(f"{base}/context.tar")
        assert ovl.files(archive.image_id)["f"][4] == b"from a url\n"
        plain = ovl.build(f"{base}/Containerfile")
        assert ovl.config(plain.image_id)["config"]["Labels"] == {"plain": "file"}
        with pytest.raises(BuildError, match=r"cannot download .*404"):
            ovl.build(f"{base}/missing")
    finally:
        server.shutdown()
        server.server_close()
    assert not list(ovl.base.glob("skiff-context-*"))


def test_run_volumes_and_the_host_platform(ovl: Env) -> None:
    from skiff.oci.platform import host_platform

    shared = ovl.base / "shared"
    shared.mkdir()
    (shared / "input").write_text("from the host\n")
    context = ovl.context(
        {
            "Containerfile": "ARG TARGETPLATFORM\nFROM --platform=$TARGETPLATFORM localhost/busybox:latest\n"
            "RUN cp /host/input /copied\n"
        }
    )
    host = host_platform()
    report = ovl.build(
        context, volumes=[f"{shared}:/host:ro"], platform=f"{host.os}/{host.architecture}"
    )
    files = ovl.files(report.image_id)
    assert files["copied"][4] == b"from the host\n"
    assert "host" not in files  # the mount point is not left in the image


def test_from_only_tags_the_base_and_labels_make_an_image(ovl: Env) -> None:
    context = ovl.context({"Containerfile": "FROM localhost/busybox:latest\n"})
    store = ovl.store()
    try:
        busybox = store.images.lookup(BUSYBOX).id
    finally:
        store.close()
    assert ovl.build(context, tags=["same"]).image_id == busybox
    labelled = ovl.build(context, labels=["a=b"], annotations=["org.example.note=n"])
    assert labelled.image_id != busybox
    assert ovl.config(labelled.image_id)["config"]["Labels"] == {"a": "b"}


def test_labels_annotations_iidfile(ovl: Env) -> None:
    context = ovl.context({"Containerfile": "FROM localhost/busybox:latest\nRUN true\nARG LAST\n"})
    iidfile = ovl.base / "iid"
    report = ovl.build(
        context, labels=["k=v"], annotations=["org.example.a=1"], iidfile=iidfile, tags=["x", "y"]
    )
    assert iidfile.read_text() == f"sha256:{report.image_id}"
    assert ovl.config(report.image_id)["config"]["Labels"] == {"k": "v"}
    store = ovl.store()
    try:
        image = store.images.get(report.image_id)
        assert image.manifest is not None
        manifest = json.loads(image.manifest)
        assert sorted(image.names) == ["localhost/x:latest", "localhost/y:latest"]
    finally:
        store.close()
    assert manifest["annotations"]["org.opencontainers.image.base.name"] == BUSYBOX
    assert manifest["annotations"]["org.example.a"] == "1"
    changed = ovl.build(context, labels=["k=w"])
    # the labels go into the last commit: that step is built again, not the ones before
    assert changed.cached == 0 and changed.steps == 1
    assert ovl.config(changed.image_id)["config"]["Labels"] == {"k": "w"}


def test_timestamp_builds_are_reproducible(tmp_shm: Path, busybox_layout: BusyboxImage) -> None:
    digests = []
    for attempt in range(2):
        env = make_env(tmp_shm / f"store{attempt}", busybox_layout, "overlay")
        try:
            context = _multi_stage(env)
            report = env.build(context, timestamp=1_700_000_000, tags=["repro"])
            digests.append((report.image_id, report.manifest_digest))
            files = env.files(report.image_id)
            assert {f[4] for f in files.values() if f[0] == "file"} >= {b"alpha\n"}
        finally:
            close_env(env)
    assert digests[0] == digests[1]


def test_squash_and_without_layers(env: Env) -> None:
    context = _multi_stage(env)
    layered = env.build(context)
    squashed = env.build(context, squash=True)
    assert len(env.config(squashed.image_id)["rootfs"]["diff_ids"]) == 1
    single = env.build(context, layers=False)
    assert len(env.config(single.image_id)["rootfs"]["diff_ids"]) == 2
    assert single.cached == 0 and len(single.new_images) == 2  # one per stage
    expected = env.files(layered.image_id)
    assert env.files(squashed.image_id) == expected
    assert env.files(single.image_id) == expected


def test_pull_policies(ovl: Env, registry: Any, unique_repo: str) -> None:
    pushed = f"{registry.host}/{unique_repo}:v1"
    store = ovl.store()
    try:
        busybox = store.images.lookup(BUSYBOX).id
    finally:
        store.close()
    dest = transports.get("docker").parse_reference(f"//{pushed}")
    src = storage_reference(image_id=busybox)
    ctx = replace(ovl.ctx, tls_verify=False)
    copy_image(src, dest, ImageCopyOptions(), ctx, ctx)
    ovl.ctx = ctx
    context = ovl.context({"Containerfile": f"FROM {pushed}\nRUN true\n"})
    with pytest.raises(BuildError, match=r"Containerfile:1: .*image not known"):
        ovl.build(context, pull=PullPolicy.NEVER)
    report = ovl.build(context, pull=PullPolicy.MISSING)
    again = ovl.build(context, pull=PullPolicy.ALWAYS)
    assert again.image_id == report.image_id and again.cached == 1


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            info.mtime = 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)
