"""Working containers, pure logic: config edits, config shapes, names, parsing."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from skiff.build.builder import Builder, PullPolicy, _name_stem
from skiff.build.commit import docker_config, dropped_for_oci, oci_config, restamp, rfc3339
from skiff.build.config import (
    ConfigOptions,
    apply_config,
    parse_duration,
    parse_entrypoint,
    parse_healthcheck_test,
    parse_words,
)
from skiff.build.run import RunMount, parse_run_mount
from skiff.cli.commands.builder import containers_line
from skiff.errors import UsageError

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def builder(**config: Any) -> Builder:
    return Builder(
        id="c" * 64,
        name="base-working-container",
        container_id="c" * 64,
        from_image="localhost/base:latest",
        from_image_id="b" * 64,
        from_image_digest="sha256:" + "d" * 64,
        created=0.0,
        config={
            "created": "2023-11-14T22:13:20Z",
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": [PATH], "Cmd": ["sh"], **config},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "e" * 64]},
            "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "base"}],
        },
    )


def edit(b: Builder, environ: dict[str, str] | None = None, **options: Any) -> list[str]:
    return apply_config(b, ConfigOptions(**options), environ or {})


def test_env_sets_expands_takes_and_removes() -> None:
    b = builder()
    edit(b, env=["A=1", "P2=$PATH:/x", "B=${A}${NOPE}b"])
    assert b.container_config["Env"] == [PATH, "A=1", "P2=" + PATH[5:] + ":/x", "B=1b"]
    edit(b, env=["A=2", "HOME"], environ={"HOME": "/root"})
    # set again: moved to the end (buildah's SetEnv)
    assert b.container_config["Env"][-2:] == ["A=2", "HOME=/root"]
    edit(b, env=["P2-", "B-"])
    assert b.container_config["Env"] == [PATH, "A=2", "HOME=/root"]
    with pytest.raises(UsageError, match='setting env "UNSET": no value given'):
        edit(b, env=["UNSET"])


def test_labels_annotations_ports_volumes() -> None:
    b = builder()
    edit(
        b,
        labels=["a=1", "b=2", "empty"],
        annotations=["x=1", "y=2"],
        ports=["80", "53/udp"],
        volumes=["/data", "/cache"],
    )
    edit(b, labels=["b-"], annotations=["y-"], ports=["80-"], volumes=["/cache-"])
    inner = b.container_config
    assert inner["Labels"] == {"a": "1", "empty": ""}
    assert b.annotations == {"x": "1"}
    assert inner["ExposedPorts"] == {"53/udp": {}}
    assert inner["Volumes"] == {"/data": {}}
    edit(b, labels=["a-", "empty-"], ports=["53/udp-"])
    assert "Labels" not in b.container_config and "ExposedPorts" not in b.container_config
    with pytest.raises(UsageError):
        edit(b, volumes=["relative"])


def test_entrypoint_cmd_and_shell_forms() -> None:
    assert parse_entrypoint('["/bin/app", "--flag"]') == ["/bin/app", "--flag"]
    assert parse_entrypoint("exec app --x") == ["/bin/sh", "-c", "exec app --x"]
    assert parse_entrypoint("") is None
    with pytest.raises(UsageError):
        parse_entrypoint('["unterminated"')
    assert parse_words("ls -l 'a b'", "--cmd") == ["ls", "-l", "a b"]
    assert parse_words('["a", "b c"]', "--cmd") == ["a", "b c"]
    with pytest.raises(UsageError):
        parse_words("'open", "--cmd")
    b = builder()
    warnings = edit(b, entrypoint='["/bin/app"]')
    assert warnings == ['cmd "sh" exists and will be passed to entrypoint as a parameter']
    assert edit(b, entrypoint="x", cmd="") == []
    assert b.container_config["Cmd"] == []
    edit(b, entrypoint="", shell='["/bin/ash", "-c"]')
    assert "Entrypoint" not in b.container_config
    assert b.container_config["Shell"] == ["/bin/ash", "-c"]


def test_healthcheck() -> None:
    assert parse_healthcheck_test("NONE") == ["NONE"]
    assert parse_healthcheck_test("CMD curl -f x") == ["CMD", "curl", "-f", "x"]
    assert parse_healthcheck_test('CMD ["a", "b c"]') == ["CMD", "a", "b c"]
    assert parse_healthcheck_test("CMD-SHELL curl -f x || exit 1") == [
        "CMD-SHELL",
        "curl -f x || exit 1",
    ]
    assert parse_healthcheck_test("") is None
    with pytest.raises(UsageError):
        parse_healthcheck_test("CURL x")
    assert parse_duration("1m30s", "--x") == 90_000_000_000
    assert parse_duration("500ms", "--x") == 500_000_000
    with pytest.raises(UsageError):
        parse_duration("5 s", "--x")
    b = builder()
    edit(b, healthcheck="CMD true", healthcheck_timeout="3s", healthcheck_retries=5)
    assert b.container_config["Healthcheck"] == {
        "Test": ["CMD", "true"],
        "Interval": 30_000_000_000,
        "Timeout": 3_000_000_000,
        "Retries": 5,
    }
    edit(b, healthcheck_start_period="10s")
    assert b.container_config["Healthcheck"]["StartPeriod"] == 10_000_000_000
    edit(b, healthcheck="")
    assert "Healthcheck" not in b.container_config
    with pytest.raises(UsageError):
        edit(b, healthcheck_interval="5s")


def test_scalars_and_a_bad_flag_changes_nothing() -> None:
    b = builder()
    edit(
        b,
        user="www",
        workingdir="/srv",
        stop_signal="SIGQUIT",
        author="me",
        created_by="step",
        comment="c",
        history_comment="h",
        arch="arm64",
        variant="v8",
    )
    assert b.container_config["User"] == "www"
    assert b.container_config["WorkingDir"] == "/srv"
    assert b.container_config["StopSignal"] == "SIGQUIT"
    assert (b.config["author"], b.config["architecture"], b.config["variant"]) == (
        "me",
        "arm64",
        "v8",
    )
    assert (b.created_by, b.comment, b.history_comment) == ("step", "c", "h")
    before = b.to_data()
    with pytest.raises(UsageError):
        edit(b, env=["NEW=1"], labels=["l=1"], stop_signal="SIGNOPE")
    assert b.to_data() == before


def test_oci_and_docker_config_shapes() -> None:
    b = builder(Healthcheck={"Test": ["NONE"]}, OnBuild=["RUN x"], User="www")
    b.config["author"] = "me"
    oci = oci_config(b, created="1970-01-01T00:00:00Z", history=[])
    assert list(oci) == ["created", "author", "architecture", "os", "config", "rootfs"]
    assert list(oci["config"]) == ["User", "Env", "Cmd"]
    docker = docker_config(b, created="1970-01-01T00:00:00Z", container=False)
    assert list(docker) == [
        "created",
        "container_config",
        "author",
        "config",
        "architecture",
        "os",
        "parent",
        "rootfs",
        "history",
    ]
    assert docker["config"]["Volumes"] is None and docker["config"]["OnBuild"] == ["RUN x"]
    assert docker["config"]["Healthcheck"] == {"Test": ["NONE"]}
    assert docker["parent"] == "sha256:" + "b" * 64
    warnings = dropped_for_oci(b)
    assert warnings[0].startswith("HEALTHCHECK is not supported for OCI image format")
    assert "RUN x will be ignored" in warnings[1]


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_500_000_000_120_000_000) == "2017-07-14T02:40:00.12Z"


def test_restamp_sets_every_mtime() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mtime in (("a", 5), ("dir/.wh.b", 6)):
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    out = b"".join(restamp(iter([buf.getvalue()]), 42))
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        assert [(m.name, m.mtime) for m in tar.getmembers()] == [("a", 42), ("dir/.wh.b", 42)]
        extracted = tar.extractfile("a")
        assert extracted is not None and extracted.read() == b"x"


@pytest.mark.parametrize(
    ("image", "stem"),
    [
        ("busybox", "busybox-working-container"),
        ("docker.io/library/busybox:1.36", "busybox-working-container"),
        ("quay.io/a/b@sha256:" + "0" * 64, "b-working-container"),
        ("localhost:5000/x/y:tag", "y-working-container"),
        ("docker://quay.io/org/app:1", "app-working-container"),
        ("oci:/tmp/layouts/my-layout:latest", "my-layout-working-container"),
        ("scratch", "working-container"),
    ],
)
def test_container_names(image: str, stem: str) -> None:
    assert _name_stem(image) == stem


def test_pull_policies() -> None:
    assert PullPolicy.parse("true") is PullPolicy.MISSING
    assert PullPolicy.parse("ifnewer") is PullPolicy.NEWER
    assert PullPolicy.parse("Never") is PullPolicy.NEVER
    with pytest.raises(UsageError):
        PullPolicy.parse("sometimes")


def test_run_mounts_parse() -> None:
    assert parse_run_mount(
        "type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=1,gid=2"
    ) == RunMount(
        type="cache",
        target="/root/.cache",
        id="pip",
        sharing="locked",
        mode=0o700,
        uid=1,
        gid=2,
    )
    assert parse_run_mount("type=bind,src=x,dst=/y,from=stage,rw") == RunMount(
        type="bind", target="/y", source="x", from_="stage", read_only=False
    )
    assert parse_run_mount("target=/t,readonly=false").read_only is False
    assert parse_run_mount("type=tmpfs,target=/t,size=100").size == 100
    for bad in ("type=volume,target=/x", "type=bind", "type=cache,target=rel", "target=/x,bogus"):
        with pytest.raises(UsageError):
            parse_run_mount(bad)


def test_containers_table_lines() -> None:
    row = {
        "id": "e4c93ddfcc3b" + "0" * 52,
        "builder": True,
        "imageid": "b319bf8d7374" + "1" * 52,
        "imagename": "localhost/dev/shm/b2exp/layout:latest",
        "containername": "layout-working-container",
    }
    # buildah 1.28's bytes for the same row
    assert containers_line(row, truncate=True) == (
        "e4c93ddfcc3b     *     b319bf8d7374 localhost/dev/shm/b2exp/layou... "
        "layout-working-container"
    )
    scratch = {**row, "imageid": "", "imagename": "scratch", "containername": "foo"}
    assert containers_line(scratch, truncate=True) == (
        "e4c93ddfcc3b     *                  scratch                          foo"
    )
    assert containers_line(scratch, truncate=False).startswith(row["id"] + "    *     ")
