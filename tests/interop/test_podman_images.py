"""skiff and podman 4.3 exchange images: archives both ways, registries both ways.

podman runs with a private vfs store under the test's directory
(``CliEnv.podman``), never the system store. What one tool saves the other
loads with the same image ID (config digest) and the same layer diff IDs;
what one pushes the other pulls by the same manifest digest and image ID.
The names are compared too, since both tools write and read RepoTags and
the OCI ref name annotation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from skiff.oci.config import ImageConfig
from skiff.storage.store import Store, StoreOptions
from skiff.testing.busybox import BusyboxImage, build_layered_layout
from skiff.testing.cli import CliEnv
from skiff.testing.registry import RunningRegistry

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
]


@pytest.fixture
def cli(tmp_shm: Path, registry: RunningRegistry) -> CliEnv:
    return CliEnv(tmp_shm / "env", registries_conf=registry.registries_conf)


@pytest.fixture
def layered(tmp_shm: Path) -> BusyboxImage:
    return build_layered_layout(tmp_shm / "layered", 2)


def podman_image(cli: CliEnv, name: str) -> tuple[str, list[str], list[str]]:
    """(ID, RootFS layer diff IDs, names) of an image in podman's store."""
    data = cli.podman("image", "inspect", name).json()[0]
    return data["Id"], data["RootFS"]["Layers"], data["RepoTags"]


def skiff_image(cli: CliEnv, name: str) -> tuple[str, list[str], list[str]]:
    store = Store(StoreOptions(root=cli.root, run_root=cli.runroot))
    try:
        image = store.images.lookup(name)
        diff_ids = [str(d) for d in ImageConfig.from_bytes(image.config).diff_ids]
        return image.id, diff_ids, list(image.names)
    finally:
        store.close()


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_skiff_save_podman_load(cli: CliEnv, layered: BusyboxImage, fmt: str) -> None:
    cli.skiff("image", "copy", "-q", layered.reference, "containers-storage:quay.io/skiff/l:1")
    archive = cli.base / f"skiff-{fmt}.tar"
    cli.skiff("save", "-q", "--format", fmt, "-o", archive, "quay.io/skiff/l:1")
    loaded = cli.podman("load", "-i", archive)
    assert loaded.stdout.strip() == "Loaded image: quay.io/skiff/l:1"
    image_id, layers, names = podman_image(cli, "quay.io/skiff/l:1")
    assert image_id == layered.config_digest.hex
    assert layers == [str(d) for d in layered.diff_ids]
    assert names == ["quay.io/skiff/l:1"]
    assert (image_id, layers) == skiff_image(cli, "quay.io/skiff/l:1")[:2]


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_podman_save_skiff_load(cli: CliEnv, layered: BusyboxImage, fmt: str) -> None:
    cli.podman("pull", "-q", layered.reference)
    cli.podman("tag", f"{layered.layout.name}:latest", "quay.io/skiff/from-podman:2")
    archive = cli.base / f"podman-{fmt}.tar"
    cli.podman("save", "-q", "--format", fmt, "-o", archive, "quay.io/skiff/from-podman:2")
    loaded = cli.skiff("load", "-q", "-i", archive)
    expected = podman_image(cli, "quay.io/skiff/from-podman:2")
    image_id, layers, names = skiff_image(cli, "quay.io/skiff/from-podman:2")
    assert loaded.stdout == "Loaded image: quay.io/skiff/from-podman:2\n"
    assert (image_id, layers) == expected[:2]
    assert image_id == layered.config_digest.hex
    assert names == ["quay.io/skiff/from-podman:2"]


def test_multi_image_archives_both_ways(cli: CliEnv, tmp_shm: Path, layered: BusyboxImage) -> None:
    other = build_layered_layout(tmp_shm / "other", 1)
    for image, name in ((layered, "localhost/a:1"), (other, "localhost/b:2")):
        cli.skiff("image", "copy", "-q", image.reference, f"containers-storage:{name}")
    archive = cli.base / "multi.tar"
    cli.skiff("save", "-q", "-m", "-o", archive, "localhost/a:1", "localhost/b:2")
    loaded = cli.podman("load", "-i", archive).stdout.splitlines()
    assert sorted(loaded) == ["Loaded image: localhost/a:1", "Loaded image: localhost/b:2"]
    back = cli.base / "back.tar"
    cli.podman("save", "-q", "-m", "-o", back, "localhost/a:1", "localhost/b:2")
    fresh = CliEnv(tmp_shm / "fresh")
    result = fresh.skiff("load", "-q", "-i", back)
    assert sorted(result.stdout.splitlines()) == sorted(loaded)
    assert skiff_image(fresh, "localhost/b:2")[0] == other.config_digest.hex


def test_skiff_push_podman_pull(
    cli: CliEnv, registry: RunningRegistry, layered: BusyboxImage, unique_repo: str
) -> None:
    cli.skiff("image", "copy", "-q", layered.reference, "containers-storage:localhost/p:1")
    ref = f"{registry.host}/{unique_repo}:from-skiff"
    digestfile = cli.base / "digest"
    cli.skiff("push", "-q", "--digestfile", digestfile, "localhost/p:1", ref)
    cli.podman("pull", "-q", ref)
    data = cli.podman("image", "inspect", ref).json()[0]
    assert data["Id"] == layered.config_digest.hex
    assert data["Digest"] == digestfile.read_text()
    assert data["RootFS"]["Layers"] == [str(d) for d in layered.diff_ids]


def test_podman_push_skiff_pull(
    cli: CliEnv, registry: RunningRegistry, layered: BusyboxImage, unique_repo: str
) -> None:
    cli.podman("pull", "-q", layered.reference)
    ref = f"{registry.host}/{unique_repo}:from-podman"
    digestfile = cli.base / "podman-digest"
    cli.podman("push", "-q", "--digestfile", digestfile, f"{layered.layout.name}:latest", ref)
    result = cli.skiff("pull", "-q", ref)
    assert result.stdout.strip() == layered.config_digest.hex
    store = Store(StoreOptions(root=cli.root, run_root=cli.runroot))
    try:
        image = store.images.get(layered.config_digest.hex)
        assert image.digest is not None and str(image.digest) == digestfile.read_text()
        assert image.names == (ref,)
    finally:
        store.close()
    # and skiff pushes it back unchanged: the same manifest, nothing uploaded
    again = cli.base / "again"
    cli.skiff("push", "-q", "--digestfile", again, ref, f"{ref}-again")
    assert again.read_text() == digestfile.read_text()
    manifest = cli.skopeo("inspect", "--raw", f"docker://{ref}-again").stdout
    assert json.loads(manifest)["config"]["digest"] == str(layered.config_digest)
