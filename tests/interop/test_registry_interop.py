"""skiff and skopeo through every registry variant, both directions, via the CLI.

What skiff pushes, skopeo inspects and pulls with the same digests; what
skopeo pushes, skiff pulls and inspects the same way — over plain HTTP
(registries.conf ``insecure``), TLS trusted through a certs.d directory,
basic auth and bearer tokens. Then the cases a single image does not
cover: a multi-platform index copied with ``--all`` (built by the test),
and zstd layers written by one tool and read back by the other.

The local transports (oci:, dir:, archives) against skopeo are in
test_local_transports_skopeo.py; registry-client details in
tests/integration/test_docker_transport.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, sha256_of
from skiff.testing.busybox import BusyboxImage
from skiff.testing.cli import CliEnv
from skiff.testing.multiarch import MultiArchImage, build_multiarch_layout
from skiff.testing.registry import RunningRegistry

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]

VARIANTS = ["registry", "tls_registry", "auth_registry", "token_registry"]


class Peer:
    """One registry as both tools reach it: the flags each side needs."""

    def __init__(self, registry: RunningRegistry, base: Path) -> None:
        self.registry = registry
        self.cli = CliEnv(base, registries_conf=registry.registries_conf)

    def flags(self, side: str) -> list[str]:
        """``--src-…``/``--dest-…`` (side "src"/"dest") or unprefixed (side "")."""
        prefix = f"--{side}-" if side else "--"
        out: list[str] = []
        if self.registry.cert_dir is not None:
            out += [f"{prefix}cert-dir", str(self.registry.cert_dir)]
        if self.registry.credentials is not None:
            out.append(f"{prefix}creds={self.registry.credentials.creds}")
        return out

    def ref(self, repository: str, tag: str) -> str:
        return f"docker://{self.registry.host}/{repository}:{tag}"


@pytest.fixture(params=VARIANTS)
def peer(request: pytest.FixtureRequest, tmp_shm: Path) -> Peer:
    return Peer(request.getfixturevalue(request.param), tmp_shm / "peer")


def layout_index(layout: Path) -> dict[str, object]:
    return json.loads((layout / "index.json").read_text())  # type: ignore[no-any-return]


def layout_blob(layout: Path, digest: str | Digest) -> bytes:
    parsed = Digest.parse(str(digest))
    return (layout / "blobs" / parsed.algorithm / parsed.hex).read_bytes()


def only_manifest(layout: Path) -> tuple[Digest, dict[str, object]]:
    entries = layout_index(layout)["manifests"]
    assert isinstance(entries, list) and len(entries) == 1
    digest = Digest.parse(entries[0]["digest"])
    return digest, json.loads(layout_blob(layout, digest))


# --- one image, every variant, both directions --------------------------------------------


def test_skiff_pushes_skopeo_pulls(
    peer: Peer, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    cli, ref = peer.cli, peer.ref(unique_repo, "from-skiff")
    digestfile = cli.base / "digest"
    cli.skiff(
        "image", "copy", *peer.flags("dest"), "--digestfile", digestfile,
        busybox_layout.reference, ref,
    )  # fmt: skip
    assert digestfile.read_text() == str(busybox_layout.manifest_digest)

    inspected = cli.skopeo("inspect", *peer.flags(""), ref).json()
    assert inspected["Digest"] == str(busybox_layout.manifest_digest)
    assert inspected["Layers"] == [str(d) for d in busybox_layout.layer_digests]

    out = cli.base / "skopeo-pulled"
    cli.skopeo("copy", *peer.flags("src"), ref, f"oci:{out}:pulled")
    digest, manifest = only_manifest(out)
    assert digest == busybox_layout.manifest_digest
    for layer in manifest["layers"]:  # type: ignore[attr-defined]
        assert (
            layout_blob(out, layer["digest"])
            == busybox_layout.blob_path(Digest.parse(layer["digest"])).read_bytes()
        )


def test_skopeo_pushes_skiff_pulls(
    peer: Peer, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    cli, ref = peer.cli, peer.ref(unique_repo, "from-skopeo")
    cli.skopeo("copy", *peer.flags("dest"), busybox_layout.reference, ref)

    ours = cli.skiff("image", "inspect", *peer.flags(""), ref).json()
    theirs = cli.skopeo("inspect", *peer.flags(""), ref).json()
    ours.pop("LayersData")  # skopeo 1.9.3 has no LayersData (docs/compatibility.md)
    assert ours == theirs

    out = cli.base / "skiff-pulled"
    cli.skiff("image", "copy", *peer.flags("src"), ref, f"oci:{out}:pulled")
    digest, _ = only_manifest(out)
    assert digest == busybox_layout.manifest_digest
    # and skopeo reads skiff's layout back: the same image, byte for byte
    back = cli.skopeo("inspect", "--raw", f"oci:{out}:pulled").stdout.encode()
    assert sha256_of(back) == busybox_layout.manifest_digest


def test_skopeo_v2s2_push_is_read_and_converted_by_skiff(
    registry: RunningRegistry, tmp_shm: Path, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    peer = Peer(registry, tmp_shm / "peer")
    ref = peer.ref(unique_repo, "v2s2")
    peer.cli.skopeo("copy", "--format", "v2s2", busybox_layout.reference, ref)
    raw = peer.cli.skiff("image", "inspect", "--raw", ref).stdout
    assert json.loads(raw)["mediaType"] == mt.DOCKER_V2S2
    out = tmp_shm / "oci"
    peer.cli.skiff("image", "copy", ref, f"oci:{out}")
    # an oci: layout takes OCI only: the v2s2 manifest became the original OCI one again
    digest, _ = only_manifest(out)
    assert digest == busybox_layout.manifest_digest


# --- a multi-platform index with --all ---------------------------------------------------


@pytest.fixture
def multiarch(tmp_shm: Path) -> MultiArchImage:
    return build_multiarch_layout(tmp_shm / "multiarch")


def _assert_same_index(layout: Path, tag: str, image: MultiArchImage) -> None:
    entries = [
        e
        for e in layout_index(layout)["manifests"]  # type: ignore[attr-defined]
        if e.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    assert [e["digest"] for e in entries] == [str(image.index_digest)]
    assert layout_blob(layout, image.index_digest) == image.index_bytes
    for instance in image.images.values():
        assert sha256_of(layout_blob(layout, instance.manifest_digest)) == instance.manifest_digest
        for layer in instance.layer_digests:
            assert sha256_of(layout_blob(layout, layer)) == layer


def test_index_pushed_by_skiff_with_all(
    registry: RunningRegistry, tmp_shm: Path, multiarch: MultiArchImage, unique_repo: str
) -> None:
    peer = Peer(registry, tmp_shm / "peer")
    ref = peer.ref(unique_repo, "multi")
    peer.cli.skiff("image", "copy", "--all", multiarch.reference, ref)
    assert peer.cli.skopeo("inspect", "--raw", ref).stdout.encode() == multiarch.index_bytes
    for text, instance in multiarch.images.items():
        _, arch, *variant = text.split("/")
        flags = ["--override-arch", arch] + (["--override-variant", variant[0]] if variant else [])
        inspected = peer.cli.skopeo("inspect", *flags, ref).json()
        assert inspected["Architecture"] == arch
        assert inspected["Layers"] == [str(d) for d in instance.layer_digests]
    out = tmp_shm / "skopeo-all"
    peer.cli.skopeo("copy", "--all", ref, f"oci:{out}:multi")
    _assert_same_index(out, "multi", multiarch)


def test_index_pushed_by_skopeo_with_all(
    registry: RunningRegistry, tmp_shm: Path, multiarch: MultiArchImage, unique_repo: str
) -> None:
    peer = Peer(registry, tmp_shm / "peer")
    ref = peer.ref(unique_repo, "multi")
    peer.cli.skopeo("copy", "--all", multiarch.reference, ref)
    out = tmp_shm / "skiff-all"
    peer.cli.skiff("image", "copy", "--all", ref, f"oci:{out}:multi")
    _assert_same_index(out, "multi", multiarch)
    # without --all both tools pick the same instance for arm/v6
    one = tmp_shm / "one"
    flags = ("--override-arch", "arm", "--override-variant", "v6")
    peer.cli.skiff("image", "copy", *flags, ref, f"oci:{one}")
    digest, _ = only_manifest(one)
    assert digest == multiarch.images["linux/arm/v6"].manifest_digest
    theirs = peer.cli.skopeo("inspect", *flags, ref).json()
    ours = peer.cli.skiff("image", "inspect", *flags, ref).json()
    assert ours["Layers"] == theirs["Layers"]
    assert ours["Digest"] == theirs["Digest"] == str(multiarch.index_digest)


# --- zstd ------------------------------------------------------------------------------


def _diff_id_of_gzip(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()


def test_zstd_written_by_skiff_is_read_by_skopeo(
    registry: RunningRegistry, tmp_shm: Path, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    peer = Peer(registry, tmp_shm / "peer")
    ref = peer.ref(unique_repo, "zstd")
    peer.cli.skiff("image", "copy", "--dest-compress-format", "zstd", busybox_layout.reference, ref)
    manifest = json.loads(peer.cli.skopeo("inspect", "--raw", ref).stdout)
    assert [x["mediaType"] for x in manifest["layers"]] == [mt.OCI_LAYER_ZSTD]
    # skopeo decompresses the zstd layers (and checks them against the config's diff IDs)
    out = tmp_shm / "skopeo-dir"
    peer.cli.skopeo("copy", "--dest-decompress", ref, f"dir:{out}")
    dir_manifest = json.loads((out / "manifest.json").read_text())
    layer = dir_manifest["layers"][0]
    plain = (out / Digest.parse(layer["digest"]).hex).read_bytes()
    assert sha256_of(plain) == busybox_layout.diff_ids[0]
    # and converts them back to gzip: the same diff ID as the original
    regz = tmp_shm / "skopeo-gzip"
    peer.cli.skopeo("copy", "--dest-compress-format", "gzip", ref, f"oci:{regz}")
    _, back = only_manifest(regz)
    blob = layout_blob(regz, back["layers"][0]["digest"])  # type: ignore[index]
    assert _diff_id_of_gzip(blob) == str(busybox_layout.diff_ids[0])


def test_zstd_written_by_skopeo_is_read_by_skiff(
    registry: RunningRegistry, tmp_shm: Path, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    peer = Peer(registry, tmp_shm / "peer")
    ref = peer.ref(unique_repo, "zstd")
    peer.cli.skopeo("copy", "--dest-compress-format", "zstd", busybox_layout.reference, ref)
    out = tmp_shm / "skiff-gzip"
    peer.cli.skiff("image", "copy", "--dest-compress-format", "gzip", ref, f"oci:{out}")
    _, manifest = only_manifest(out)
    layer = manifest["layers"][0]  # type: ignore[index]
    assert layer["mediaType"] == mt.OCI_LAYER_GZIP
    assert _diff_id_of_gzip(layout_blob(out, layer["digest"])) == str(busybox_layout.diff_ids[0])
    # skopeo takes skiff's conversion as its own input again
    peer.cli.skopeo("inspect", f"oci:{out}")
