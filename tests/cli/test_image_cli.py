"""``skiff image copy|inspect|list-tags|delete`` end to end, as a user types them.

Every command runs the installed ``skiff`` as a subprocess with a private
root, home and runtime dir (``skiff.testing.cli.CliEnv``) against the real
test registries; skopeo 1.9.3 is the reference for what inspect and
list-tags print.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from skiff.oci import mediatypes as mt
from skiff.testing.busybox import BusyboxImage, build_layered_layout
from skiff.testing.cli import CliEnv
from skiff.testing.registry import RunningRegistry

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo")


@pytest.fixture
def cli(tmp_shm: Path, registry: RunningRegistry) -> CliEnv:
    """A private environment whose registries.conf knows the plain registry."""
    return CliEnv(tmp_shm / "cli", registries_conf=registry.registries_conf)


@pytest.fixture
def pushed(
    cli: CliEnv, registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> str:
    """``HOST/REPO:v1`` holding the busybox image, pushed with skiff."""
    ref = f"{registry.host}/{unique_repo}:v1"
    cli.skiff("image", "copy", busybox_layout.reference, f"docker://{ref}")
    return ref


# --- copy ------------------------------------------------------------------------------


def test_copy_round_trip_keeps_every_digest(
    cli: CliEnv, registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    ref = f"docker://{registry.host}/{unique_repo}:v1"
    digestfile = cli.base / "digest"
    result = cli.skiff("image", "copy", "--digestfile", digestfile, busybox_layout.reference, ref)
    # not a terminal: no progress output at all
    assert result.stdout == "" and result.stderr == ""
    assert digestfile.read_text() == str(busybox_layout.manifest_digest)

    out = cli.base / "back"
    cli.skiff("image", "copy", "--quiet", ref, f"oci:{out}:back")
    index = json.loads((out / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [str(busybox_layout.manifest_digest)]
    for digest in (busybox_layout.config_digest, *busybox_layout.layer_digests):
        blob = out / "blobs" / digest.algorithm / digest.hex
        assert blob.read_bytes() == busybox_layout.blob_path(digest).read_bytes()


def test_copy_alias_cp_and_max_parallel(
    cli: CliEnv, tmp_shm: Path, registry: RunningRegistry, unique_repo: str
) -> None:
    image = build_layered_layout(tmp_shm / "layered", 4)
    ref = f"docker://{registry.host}/{unique_repo}:layers"
    cli.skiff("image", "cp", "--max-parallel", "1", image.reference, ref)
    cli.skiff("image", "copy", "--max-parallel=4", ref, f"oci:{tmp_shm / 'out'}:x")
    raw = (tmp_shm / "out" / "blobs" / "sha256" / image.manifest_digest.hex).read_bytes()
    assert raw == image.manifest_bytes()


def test_copy_format_and_compression_flags(
    cli: CliEnv, registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    ref = f"docker://{registry.host}/{unique_repo}"
    cli.skiff("image", "copy", "--format", "v2s2", busybox_layout.reference, f"{ref}:v2s2")
    raw = cli.skiff("image", "inspect", "--raw", f"{ref}:v2s2").stdout
    manifest = json.loads(raw)
    assert manifest["mediaType"] == mt.DOCKER_V2S2
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.DOCKER_LAYER_GZIP}

    cli.skiff(
        "image",
        "copy",
        "--dest-compress-format",
        "zstd",
        "--dest-compress-level",
        "5",
        busybox_layout.reference,
        f"{ref}:zstd",
    )
    manifest = json.loads(cli.skiff("image", "inspect", "--raw", f"{ref}:zstd").stdout)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.OCI_LAYER_ZSTD}
    # zstd layers have no place in a Docker v2s2 manifest: refused, nothing pushed
    line = cli.fails(
        "image", "copy", "--format", "v2s2", "--dest-compress-format", "zstd",
        busybox_layout.reference, f"{ref}:bad",
    )  # fmt: skip
    assert "zstd" in line and "v2s2" in line
    assert "bad" not in cli.skiff("image", "list-tags", ref).json()["Tags"]


def test_preserve_digests_refuses_a_conversion(
    cli: CliEnv, tmp_shm: Path, busybox_layout: BusyboxImage
) -> None:
    dest = tmp_shm / "archive.tar"
    line = cli.fails(
        "image", "copy", "--preserve-digests", busybox_layout.reference, f"docker-archive:{dest}"
    )
    assert "--preserve-digests" in line
    assert not dest.exists()
    cli.skiff(
        "image", "copy", "--preserve-digests", busybox_layout.reference, f"oci:{tmp_shm / 'o'}"
    )


# --- inspect ---------------------------------------------------------------------------


def _without_layers_data(output: dict[str, object]) -> dict[str, object]:
    """skiff prints LayersData (the issue asks for it); skopeo 1.9.3 does not."""
    return {k: v for k, v in output.items() if k != "LayersData"}


@needs_skopeo
def test_inspect_docker_matches_skopeo(cli: CliEnv, pushed: str) -> None:
    ours = cli.skiff("image", "inspect", f"docker://{pushed}").stdout
    theirs = cli.skopeo("inspect", f"docker://{pushed}").stdout
    ours_json = json.loads(ours)
    # same keys in the same order, same values
    assert list(_without_layers_data(ours_json)) == list(json.loads(theirs))
    assert _without_layers_data(ours_json) == json.loads(theirs)
    assert ours_json["LayersData"][0]["MIMEType"] == mt.OCI_LAYER_GZIP
    # and byte for byte, once LayersData is taken out (indentation, null vs [])
    text = json.dumps(_without_layers_data(ours_json), indent=4) + "\n"
    assert text == theirs


@needs_skopeo
def test_inspect_oci_matches_skopeo(cli: CliEnv, busybox_layout: BusyboxImage) -> None:
    ref = busybox_layout.reference
    ours = cli.skiff("image", "inspect", ref).json()
    theirs = cli.skopeo("inspect", ref).json()
    assert "Name" not in ours  # omitted when empty, as skopeo does for non-docker transports
    assert list(_without_layers_data(ours)) == list(theirs)
    assert _without_layers_data(ours) == theirs
    assert theirs["RepoTags"] == [] and theirs["Labels"] is None


@needs_skopeo
def test_inspect_raw_and_config_match_skopeo(cli: CliEnv, pushed: str) -> None:
    ref = f"docker://{pushed}"
    assert (
        cli.skiff("image", "inspect", "--raw", ref).stdout
        == cli.skopeo("inspect", "--raw", ref).stdout
    )
    assert (
        cli.skiff("image", "inspect", "--config", ref).json()
        == cli.skopeo("inspect", "--config", ref).json()
    )
    assert (
        cli.skiff("image", "inspect", "--config", "--raw", ref).stdout
        == cli.skopeo("inspect", "--config", "--raw", ref).stdout
    )


def test_inspect_format_json_and_template(cli: CliEnv, pushed: str) -> None:
    ref = f"docker://{pushed}"
    as_json = cli.skiff("image", "inspect", "--format", "json", ref).json()
    assert as_json == cli.skiff("image", "inspect", ref).json()
    digest = cli.skiff("image", "inspect", "--format", "{{.Digest}}", ref).stdout
    assert digest == as_json["Digest"] + "\n"
    tags = cli.skiff("image", "inspect", "-f", "{{range .RepoTags}}{{.}} {{end}}", ref).stdout
    assert tags.split() == ["v1"]
    no_tags = cli.skiff("image", "inspect", "--no-tags", ref).json()
    assert no_tags["RepoTags"] == []


# --- list-tags and delete --------------------------------------------------------------


@needs_skopeo
def test_list_tags_matches_skopeo(
    cli: CliEnv, registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    repo = f"docker://{registry.host}/{unique_repo}"
    for tag in ("b", "a", "1.0"):
        cli.skiff("image", "copy", busybox_layout.reference, f"{repo}:{tag}")
    ours = cli.skiff("image", "list-tags", repo)
    theirs = cli.skopeo("list-tags", repo)
    assert ours.stdout == theirs.stdout
    assert sorted(ours.json()["Tags"]) == ["1.0", "a", "b"]


def test_list_tags_refuses_a_tag_or_another_transport(cli: CliEnv, pushed: str) -> None:
    assert "tag or digest" in cli.fails("image", "list-tags", f"docker://{pushed}")
    assert "only docker://" in cli.fails("image", "list-tags", "oci:/tmp/x")


def test_delete_removes_the_manifest(cli: CliEnv, pushed: str) -> None:
    ref = f"docker://{pushed}"
    cli.skiff("image", "delete", ref)
    line = cli.fails("image", "inspect", ref)
    assert "manifest unknown" in line
    assert cli.fails("image", "delete", ref).startswith("Error: ")


# --- progress --------------------------------------------------------------------------


def _run_on_pty(argv: list[str], env: dict[str, str], deadline: float = 60.0) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; (exit code, output)."""
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, close_fds=True
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed its side
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(1.0, end - time.monotonic()))
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, b"".join(chunks).decode(errors="replace")


def test_progress_bars_on_a_terminal_only(
    cli: CliEnv, tmp_shm: Path, busybox_layout: BusyboxImage
) -> None:
    env = cli.environ()
    code, output = _run_on_pty(
        cli.skiff_argv("image", "copy", busybox_layout.reference, f"oci:{tmp_shm / 'tty'}"), env
    )
    assert code == 0, output
    assert "Getting image source signatures" in output
    for digest in busybox_layout.layer_digests:
        assert f"Copying blob {digest.hex[:12]}" in output
    assert f"Copying config {busybox_layout.config_digest.hex[:12]}" in output
    assert "\x1b[" in output  # redrawn in place
    assert "Writing manifest to image destination" in output

    code, output = _run_on_pty(
        cli.skiff_argv("image", "copy", "-q", busybox_layout.reference, f"oci:{tmp_shm / 'q'}"),
        env,
    )
    assert code == 0 and output == ""


def test_progress_shows_skipped_blobs(
    cli: CliEnv, registry: RunningRegistry, busybox_layout: BusyboxImage, pushed: str
) -> None:
    code, output = _run_on_pty(
        cli.skiff_argv("image", "copy", busybox_layout.reference, f"docker://{pushed}"),
        cli.environ(),
    )
    assert code == 0, output
    assert "skipped: already exists" in output


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("image", "copy", "busybox", "oci:/tmp/x"), "expected TRANSPORT:REFERENCE"),
        (("image", "copy", "nope:x", "oci:/tmp/x"), "known transports"),
        (("image", "copy", "docker://Bad/Name", "oci:/tmp/x"), "invalid reference"),
        (("image", "copy", "docker://host/a b", "oci:/tmp/x"), "invalid reference"),
        (("image", "copy", "docker://host/x@sha256:12", "oci:/tmp/x"), "digest"),
        (("image", "copy", "oci:/tmp/x"), "required"),
        (("image", "copy", "--bogus", "oci:/a", "oci:/b"), "unrecognized arguments"),
        (("image", "copy", "--max-parallel", "0", "oci:/a", "oci:/b"), "--max-parallel"),
        (("image", "copy", "--format", "v2s1", "oci:/a", "oci:/b"), "schema 1"),
        (("image", "copy", "--format", "xml", "oci:/a", "oci:/b"), "invalid choice"),
        (("image", "copy", "--dest-compress", "--dest-decompress", "oci:/a", "oci:/b"), "together"),
        (("image", "copy", "--src-creds", ":pw", "docker://h/a", "oci:/b"), "credentials"),
        (("image", "copy", "--src-tls-verify=maybe", "docker://h/a", "oci:/b"), "boolean"),
        (("image", "inspect", "busybox"), "busybox: image not known"),  # a local image
        (("image", "inspect", "oci:/nonexistent/layout"), "no OCI layout"),
        (("image", "delete", "docker://"), "invalid reference"),
        (("login",), "registry is required"),
        (("logout",), "registry is required"),
    ],
)
def test_bad_invocations_fail_on_one_line(
    cli: CliEnv, args: tuple[str, ...], expected: str
) -> None:
    line = cli.fails(*args)
    assert expected in line


def test_help_exits_zero(cli: CliEnv) -> None:
    for args in (("image", "copy", "--help"), ("image", "--help"), ("login", "--help")):
        result = cli.skiff(*args)
        assert "usage: skiff" in result.stdout
