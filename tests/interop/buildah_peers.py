"""buildah, podman and skopeo as skiff's peers for the build comparisons.

test_build_buildah_images.py (``skiff build`` beside ``buildah bud``) and
test_builder_buildah.py (working containers beside ``buildah from/copy/
run/commit``) check the same thing the same way: each tool makes an image,
both images are copied out into one OCI layout (skopeo for buildah's
store, skiff for its own), unpacked by umoci and compared path by path and
config field by config field; then each tool runs the other's image. The
peers work on one private vfs store on /dev/shm, never the host's.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skiff.testing.busybox import BusyboxImage
from skiff.testing.cli import CliEnv, Result
from skiff.testing.containers import ContainerEnv

requirements = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("buildah", "podman", "skopeo", "umoci", "runc")),
        reason="needs buildah, podman, skopeo, umoci and runc",
    ),
]
"""The modules' ``pytestmark``: the peers and umoci must be installed."""

BUILDAH_ARTEFACTS = {"etc/hostname", "run"}
"""Mount points buildah 1.28 leaves behind after RUN (their parents' mtimes differ too)."""


def containers_conf(path: Path) -> Path:
    """runc, cgroupfs and rlimits this host lets a runtime set (see bench/benchlib.py)."""
    nofile = min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nproc = min(pid_max, 32768, hard if hard != resource.RLIM_INFINITY else 1 << 30)
    path.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        f'tmp_dir = "{path.parent}/libpod-tmp"\n'
    )
    return path


@dataclass
class Peers:
    """buildah, podman and skopeo on one private vfs store under ``base``."""

    base: Path
    cli: CliEnv

    @property
    def store_flags(self) -> list[str]:
        return [
            "--root",
            str(self.base / "root"),
            "--runroot",
            str(self.base / "run"),
            "--storage-driver",
            "vfs",
        ]

    @property
    def storage_spec(self) -> str:
        return f"[vfs@{self.base / 'root'}+{self.base / 'run'}]"

    def env(self) -> dict[str, str]:
        return {"CONTAINERS_CONF": str(self.base / "containers.conf")}

    def buildah(self, *args: str | Path, cwd: Path | None = None) -> Result:
        return self.cli.run(
            ["buildah", *self.store_flags, *(str(a) for a in args)],
            env=self.env(),
            timeout=300,
            cwd=cwd,
        )

    def podman(self, *args: str | Path) -> Result:
        return self.cli.run(
            ["podman", *self.store_flags, "--events-backend", "none", *(str(a) for a in args)],
            env=self.env(),
            timeout=300,
        )


@contextmanager
def peer_envs(base: Path, layout: BusyboxImage) -> Iterator[tuple[ContainerEnv, Peers]]:
    """skiff's environment (with the busybox image) and the peers' under ``base``;
    on exit every working container of both sides is removed, then skiff's
    environment is closed (which fails if skiff left anything behind)."""
    skiff = ContainerEnv(base / "skiff", layout)
    peers_dir = base / "peers"
    peers_dir.mkdir()
    containers_conf(peers_dir / "containers.conf")
    peers = Peers(peers_dir, skiff)
    try:
        yield skiff, peers
    finally:
        skiff.skiff("builder", "rm", "--all", expect=None)
        for argv in (
            ["buildah", *peers.store_flags, "rm", "--all"],
            ["podman", *peers.store_flags, "rm", "-a", "-f"],
        ):
            subprocess.run(argv, capture_output=True, env=skiff.environ(peers.env()), check=False)
        skiff.close()


# --- the context both tools build from ---------------------------------------------------


def write_tarball(path: Path, members: tuple[tuple[str, bytes], ...]) -> None:
    """A gzipped tar of executable files (mode 0755, one fixed mtime, gzip mtime 0)
    for ADD to unpack: the same bytes on every run."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            info.mtime = 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))


def pin_mtimes(root: Path) -> None:
    """Every path under ``root`` at one fixed mtime, so that both images get the
    same file times from COPY (the comparison includes mtimes)."""
    for path in root.rglob("*"):
        os.utime(path, (1_650_000_000, 1_650_000_000), follow_symlinks=False)


# --- comparing the two images -----------------------------------------------------------


def export_both(skiff: ContainerEnv, peers: Peers, layout: Path) -> None:
    """buildah's ``localhost/built:buildah`` and skiff's ``localhost/built:skiff``
    into one OCI layout, tagged ``buildah`` and ``skiff``."""
    skiff.skopeo(
        "copy",
        "--quiet",
        f"containers-storage:{peers.storage_spec}localhost/built:buildah",
        f"oci:{layout}:buildah",
    )
    skiff.skiff(
        "image", "copy", "-q", "containers-storage:localhost/built:skiff", f"oci:{layout}:skiff"
    )


def unpack(layout: Path, tag: str, bundle: Path) -> Path:
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
        check=True,
        capture_output=True,
    )
    return bundle / "rootfs"


def describe(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root``: its type and content or target, mode, owner, mtime."""
    out: dict[str, tuple[Any, ...]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            what: tuple[Any, ...] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            what = ("dir",)
        else:
            what = ("file", path.read_bytes())
        out[rel] = (*what, mode, st.st_uid, st.st_gid, int(st.st_mtime))
    return out


def image_config(layout: Path, tag: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """The ``keys`` of the tagged image's container config, buildah's version label dropped."""
    index = json.loads((layout / "index.json").read_text())
    entry = next(
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    )
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / entry["digest"].split(":")[1]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_text())
    inner = dict(config.get("config") or {})
    labels = dict(inner.get("Labels") or {})
    labels.pop("io.buildah.version", None)
    inner["Labels"] = labels
    return {key: inner.get(key) for key in keys}


# --- each runs the other's image --------------------------------------------------------


def load_skiffs_image_into_podman(skiff: ContainerEnv, peers: Peers, archive: Path) -> None:
    """skiff's ``localhost/built:skiff`` into podman's store, through an oci-archive."""
    skiff.skiff(
        "image",
        "copy",
        "-q",
        "containers-storage:localhost/built:skiff",
        f"oci-archive:{archive}:localhost/built:skiff",
    )
    peers.podman("load", "-q", "-i", archive)


def copy_buildahs_image_to_skiff(skiff: ContainerEnv, peers: Peers, layout: Path) -> None:
    """buildah's ``localhost/built:buildah`` into skiff's store as
    ``localhost/from-buildah:1``, through an OCI layout skopeo writes."""
    skiff.skopeo(
        "copy",
        "--quiet",
        f"containers-storage:{peers.storage_spec}localhost/built:buildah",
        f"oci:{layout}:b",
    )
    skiff.skiff(
        "image", "copy", "-q", f"oci:{layout}:b", "containers-storage:localhost/from-buildah:1"
    )
