"""``skiff save``, ``skiff load`` and ``skiff import`` end to end.

Round trips through every save format (docker-archive, oci-archive,
oci-dir, docker-dir) into a fresh store keep the image ID and diff IDs;
names travel as podman writes and reads them (RepoTags, the OCI ref name
annotation, ``Loaded image:`` lines); stdout and stdin work as podman's
do, a terminal is refused. ``import`` builds podman's config from
``--change`` instructions, from a file, a URL on a loopback HTTP server, or
stdin. Every failure is one line and leaves nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from skiff.oci.config import ImageConfig
from skiff.storage.store import Store, StoreOptions
from skiff.testing.busybox import BusyboxImage, build_layered_layout
from skiff.testing.cli import CliEnv
from skiff.testing.tlsutil import LoopbackServer


@pytest.fixture
def cli(tmp_shm: Path) -> CliEnv:
    return CliEnv(tmp_shm / "cli")


@pytest.fixture
def other(tmp_shm: Path) -> CliEnv:
    """A second, empty store to load into."""
    return CliEnv(tmp_shm / "other")


@pytest.fixture
def layered(tmp_shm: Path) -> BusyboxImage:
    return build_layered_layout(tmp_shm / "layered", 2)


def stored(env: CliEnv) -> dict[str, tuple[str, ...]]:
    store = Store(StoreOptions(root=env.root, run_root=env.runroot))
    try:
        return {image.id: image.names for image in store.images.all()}
    finally:
        store.close()


def stored_config(env: CliEnv, image_id: str) -> ImageConfig:
    store = Store(StoreOptions(root=env.root, run_root=env.runroot))
    try:
        return ImageConfig.from_bytes(store.images.get(image_id).config)
    finally:
        store.close()


def into_store(env: CliEnv, image: BusyboxImage, name: str) -> None:
    env.skiff("image", "copy", "-q", image.reference, f"containers-storage:{name}")


def archive_member(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


# --- save and load -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive", "oci-dir", "docker-dir"])
def test_round_trip_through_every_format(
    cli: CliEnv, other: CliEnv, layered: BusyboxImage, fmt: str
) -> None:
    into_store(cli, layered, "localhost/layered:v1")
    out = cli.base / f"saved-{fmt}"
    result = cli.skiff("save", "-q", "--format", fmt, "-o", out, "localhost/layered:v1")
    assert result.stdout == "" and result.stderr == ""
    loaded = other.skiff("load", "-q", "-i", out)
    image_id = layered.config_digest.hex
    if fmt == "docker-dir":  # a dir: image carries no name
        assert loaded.stdout == f"Loaded image: sha256:{image_id}\n"
        assert stored(other) == {image_id: ()}
    else:
        assert loaded.stdout == "Loaded image: localhost/layered:v1\n"
        assert stored(other) == {image_id: ("localhost/layered:v1",)}
    assert stored_config(other, image_id).diff_ids == list(layered.diff_ids)


def test_docker_archive_is_what_podman_writes(cli: CliEnv, layered: BusyboxImage) -> None:
    into_store(cli, layered, "localhost/layered:v1")
    into_store(cli, layered, "localhost/other:v2")
    out = cli.base / "image.tar"
    cli.skiff("save", "-o", out, "localhost/layered:v1", "extra:1")
    items = json.loads(archive_member(out, "manifest.json"))
    assert items == [
        {
            "Config": f"{layered.config_digest.hex}.json",
            "RepoTags": ["localhost/layered:v1", "localhost/extra:1"],
            "Layers": [f"{d.hex}.tar" for d in layered.diff_ids],
        }
    ]
    for diff_id in layered.diff_ids:
        layer = archive_member(out, f"{diff_id.hex}.tar")
        assert hashlib.sha256(layer).hexdigest() == diff_id.hex
    # an existing archive is never written over
    before = out.read_bytes()
    line = cli.fails("save", "-q", "-o", out, "localhost/layered:v1")
    assert "already exists" in line
    assert out.read_bytes() == before


def test_multi_image_archive_and_load_lines(
    cli: CliEnv, other: CliEnv, tmp_shm: Path, layered: BusyboxImage
) -> None:
    single = build_layered_layout(tmp_shm / "single", 0)
    into_store(cli, layered, "localhost/layered:v1")
    into_store(cli, single, "quay.io/some/single:v2")
    out = cli.base / "multi.tar"
    cli.skiff("save", "-q", "-m", "-o", out, "localhost/layered:v1", "quay.io/some/single:v2")
    items = json.loads(archive_member(out, "manifest.json"))
    assert [item["RepoTags"] for item in items] == [
        ["localhost/layered:v1"],
        ["quay.io/some/single:v2"],
    ]
    result = other.skiff("load", "-i", out)
    assert result.stdout.splitlines() == [
        "Loaded image: localhost/layered:v1",
        "Loaded image: quay.io/some/single:v2",
    ]
    assert "Writing manifest to image destination" in result.stderr
    assert stored(other) == {
        layered.config_digest.hex: ("localhost/layered:v1",),
        single.config_digest.hex: ("quay.io/some/single:v2",),
    }
    line = cli.fails("save", "-m", "--format", "oci-archive", "-o", cli.base / "x.tar", "a", "b")
    assert "docker-archive" in line
    assert not (cli.base / "x.tar").exists()


def test_save_by_id_has_no_tag_and_loads_unnamed(
    cli: CliEnv, other: CliEnv, layered: BusyboxImage
) -> None:
    into_store(cli, layered, "localhost/layered:v1")
    out = cli.base / "byid.tar"
    cli.skiff("save", "-q", "-o", out, layered.config_digest.hex[:12])
    assert json.loads(archive_member(out, "manifest.json"))[0]["RepoTags"] == []
    result = other.skiff("load", "-q", "-i", out)
    assert result.stdout == f"Loaded image: sha256:{layered.config_digest.hex}\n"


def test_save_to_stdout_and_load_from_stdin(
    cli: CliEnv, other: CliEnv, layered: BusyboxImage
) -> None:
    import subprocess

    into_store(cli, layered, "localhost/layered:v1")
    piped = subprocess.run(
        cli.skiff_argv("save", "-q", "localhost/layered:v1"),
        env=cli.environ(),
        capture_output=True,
        check=True,
    )
    file_out = cli.base / "file.tar"
    cli.skiff("save", "-q", "-o", file_out, "localhost/layered:v1")
    assert piped.stdout == file_out.read_bytes()
    loaded = subprocess.run(
        other.skiff_argv("load", "-q"),
        env=other.environ(),
        input=piped.stdout,
        capture_output=True,
        check=True,
    )
    assert loaded.stdout == b"Loaded image: localhost/layered:v1\n"
    # a gzip-compressed archive loads too (docker save | gzip)
    third = CliEnv(cli.base.parent / "third")
    gz = cli.base / "file.tar.gz"
    gz.write_bytes(gzip.compress(piped.stdout))
    assert third.skiff("load", "-q", "-i", gz).stdout == "Loaded image: localhost/layered:v1\n"


def test_a_terminal_is_refused(cli: CliEnv, layered: BusyboxImage) -> None:
    from tests.cli.test_image_cli import _run_on_pty

    into_store(cli, layered, "localhost/layered:v1")
    code, output = _run_on_pty(cli.skiff_argv("save", "localhost/layered:v1"), cli.environ())
    assert code == 125
    assert output.strip() == "Error: refusing to save to terminal. Use -o flag or redirect"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("save", "-o", "{base}/out.tar", "localhost/nosuch"), "localhost/nosuch: image not known"),
        (("save", "--format", "oci-dir", "localhost/layered:v1"), "-o"),
        (("save", "--format", "zip", "-o", "{base}/x", "x"), "invalid choice"),
        (("load", "-i", "{base}/nonexistent.tar"), "no such file"),
        (("load", "-i", "{base}/garbage.tar"), "neither a docker archive"),
        (("load", "-i", "{base}"), "neither an OCI layout"),
    ],
)
def test_bad_save_and_load_fail_on_one_line(
    cli: CliEnv, layered: BusyboxImage, args: tuple[str, ...], expected: str
) -> None:
    into_store(cli, layered, "localhost/layered:v1")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    (cli.base / "garbage.tar").write_bytes(buf.getvalue())
    before = stored(cli)
    line = cli.fails(*(a.format(base=cli.base) for a in args))
    assert expected in line
    assert stored(cli) == before
    assert not (cli.base / "out.tar").exists()


# --- import ------------------------------------------------------------------------


def rootfs_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CHANGES = [
    'CMD ["/bin/sh","-c","echo hi"]',
    "ENV FOO=bar",
    'ENV QUOTED="a b"',
    "EXPOSE 80/tcp",
    "EXPOSE 53/UDP",
    "EXPOSE 8080",
    "LABEL a=b",
    "USER nobody",
    "VOLUME /data /cache",
    'VOLUME ["/json"]',
    "WORKDIR /w",
    "WORKDIR sub",
    "STOPSIGNAL SIGTERM",
    "ENTRYPOINT /bin/true",
    "ONBUILD RUN true",
]


def test_import_builds_podmans_config(cli: CliEnv) -> None:
    tarball = cli.base / "rootfs.tar"
    data = rootfs_tar({"etc/hello": b"hi\n"})
    tarball.write_bytes(data)
    args = [a for change in CHANGES for a in ("--change", change)]
    result = cli.skiff("import", *args, "-m", "my message", tarball, "foo")
    image_id = result.stdout.strip().removeprefix("sha256:")
    assert result.stdout == f"sha256:{image_id}\n"
    assert stored(cli) == {image_id: ("localhost/foo:latest",)}
    config = stored_config(cli, image_id)
    diff_id = hashlib.sha256(data).hexdigest()
    assert config.data["config"] == {
        "User": "nobody",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8080/tcp": {}},
        "Env": ["FOO=bar", "QUOTED=a b"],
        "Entrypoint": ["/bin/sh", "-c", "/bin/true"],
        "Cmd": ["/bin/sh", "-c", "echo hi"],
        "Volumes": {"/data": {}, "/cache": {}, "/json": {}},
        "WorkingDir": "/w/sub",
        "Labels": {"a": "b"},
        "StopSignal": "15",
        "OnBuild": ["RUN true"],
    }
    assert config.diff_ids[0].hex == diff_id
    assert config.os == "linux" and config.architecture
    [history] = config.history
    assert history["created_by"] == f"/bin/sh -c #(nop) ADD file:{diff_id} in /"
    assert history["comment"] == "my message"
    assert history["created"] == config.created
    # the image's one layer holds the tarball's files
    store = Store(StoreOptions(root=cli.root, run_root=cli.runroot))
    try:
        mounted = store.mount_image(image_id)
        try:
            assert (mounted / "etc" / "hello").read_bytes() == b"hi\n"
        finally:
            store.unmount_image(image_id)
    finally:
        store.close()


def test_import_from_stdin_and_compressed(cli: CliEnv) -> None:
    data = rootfs_tar({"a.txt": b"a\n"})
    line = cli.fails("import", "-q", "-", "localhost/fromstdin:1")  # stdin is /dev/null
    assert "empty" in line
    import subprocess

    piped = subprocess.run(
        cli.skiff_argv("import", "-q", "--change", "CMD=/bin/sh", "-", "fromstdin:1"),
        env=cli.environ(),
        input=data,
        capture_output=True,
        check=True,
    )
    image_id = piped.stdout.decode().strip().removeprefix("sha256:")
    assert stored(cli)[image_id] == ("localhost/fromstdin:1",)
    assert stored_config(cli, image_id).cmd == ["/bin/sh", "-c", "/bin/sh"]
    gz = cli.base / "rootfs.tar.gz"
    gz.write_bytes(gzip.compress(data))
    out = cli.skiff("import", "-q", gz).stdout.strip().removeprefix("sha256:")
    config = stored_config(cli, out)
    assert config.diff_ids[0].hex == hashlib.sha256(data).hexdigest()
    assert out in stored(cli) and stored(cli)[out] == ()


@pytest.fixture
def http_dir(tmp_shm: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_shm / "www"
    root.mkdir()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = LoopbackServer(Handler)
    server.start()
    try:
        yield server.url, root
    finally:
        server.stop()


def test_import_from_a_url(cli: CliEnv, http_dir: tuple[str, Path]) -> None:
    url, root = http_dir
    data = rootfs_tar({"from/url.txt": b"url\n"})
    (root / "rootfs.tar").write_bytes(data)
    result = cli.skiff("import", "-q", f"{url}/rootfs.tar", "fromurl")
    image_id = result.stdout.strip().removeprefix("sha256:")
    assert stored(cli) == {image_id: ("localhost/fromurl:latest",)}
    line = cli.fails("import", "-q", f"{url}/missing.tar", "nothing")
    assert "404" in line
    assert stored(cli) == {image_id: ("localhost/fromurl:latest",)}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("BOGUS x", "invalid instruction BOGUS"),
        ("EXPOSE 99999", "EXPOSE port"),
        ("EXPOSE 80/sctp", "EXPOSE protocol"),
        ("STOPSIGNAL SIGNOPE", "STOPSIGNAL"),
        ("LABEL novalue", "LABEL must be formatted key=value"),
        ("USER", "KEY VALUE"),
        ("WORKDIR ", "WORKDIR"),
    ],
)
def test_bad_changes_fail_before_anything_is_stored(
    cli: CliEnv, change: str, expected: str
) -> None:
    tarball = cli.base / "rootfs.tar"
    tarball.write_bytes(rootfs_tar({"x": b"x"}))
    line = cli.fails("import", "--change", change, tarball, "bad")
    assert expected in line
    assert not (cli.root / "db.sqlite").exists() or stored(cli) == {}


def test_import_of_something_else_fails_on_one_line(cli: CliEnv) -> None:
    line = cli.fails("import", cli.base / "missing.tar")
    assert "no such file" in line
    (cli.base / "empty.tar").write_bytes(b"")
    line = cli.fails("import", cli.base / "empty.tar")
    assert "empty" in line
    (cli.base / "text.tar").write_bytes(b"this is not a tar archive at all\n" * 40)
    line = cli.fails("import", "-q", cli.base / "text.tar", "text")
    assert "tar header" in line
    assert stored(cli) == {}


def test_pull_from_archives_names_images_as_load(
    cli: CliEnv, other: CliEnv, layered: BusyboxImage
) -> None:
    into_store(cli, layered, "localhost/layered:v1")
    docker = cli.base / "docker.tar"
    oci = cli.base / "oci.tar"
    cli.skiff("save", "-q", "-o", docker, "localhost/layered:v1")
    cli.skiff("save", "-q", "--format", "oci-archive", "-o", oci, "localhost/layered:v1")
    image_id = layered.config_digest.hex
    assert other.skiff("pull", "-q", f"docker-archive:{docker}").stdout.strip() == image_id
    assert stored(other) == {image_id: ("localhost/layered:v1",)}
    other.skiff("pull", "-q", f"oci-archive:{oci}:localhost/layered:v1")
    assert stored(other) == {image_id: ("localhost/layered:v1",)}
    third = CliEnv(cli.base.parent / "third")
    third.skiff("pull", "-q", f"docker-archive:{docker}:localhost/layered:v1")
    assert stored(third) == {image_id: ("localhost/layered:v1",)}
