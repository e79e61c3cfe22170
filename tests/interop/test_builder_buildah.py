"""Working containers against buildah 1.28 (Debian) and podman as peers.

The same steps — from the busybox image, copy a tree, copy with --chown
and --chmod, add a local tarball, run commands (one deleting a file of the
base image), config, commit --timestamp 0 — are done by buildah (on its
own vfs store on /dev/shm) and by skiff (overlay). Both images are copied
out as OCI layouts (skopeo for buildah's store, skiff for its own),
unpacked by umoci, and must be equal: every path with its type, mode,
owner, size, content, link target and mtime; and the config's Env, Cmd,
Entrypoint, WorkingDir, User, Labels, ExposedPorts and Volumes.

Known differences, left out of the comparison and documented in
docs/builder.md: buildah adds the label ``io.buildah.version``; after a
``run`` buildah leaves the mount points it created (an empty
/etc/hostname and /run) in the container, skiff
removes them.

Then each tool runs the other's image: skiff's through ``podman load`` of
an oci-archive, buildah's through ``skiff image copy`` into skiff's store.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skiff.testing.busybox import BusyboxImage
from skiff.testing.cli import CliEnv, Result
from skiff.testing.containers import ContainerEnv

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("buildah", "podman", "skopeo", "umoci", "runc")),
        reason="needs buildah, podman, skopeo, umoci and runc",
    ),
]

BUILDAH_ARTEFACTS = {"etc/hostname", "run"}
"""Mount points buildah 1.28 leaves behind after ``run``."""
COMPARED_CONFIG = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
)


def _containers_conf(path: Path) -> Path:
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

    def _env(self) -> dict[str, str]:
        return {"CONTAINERS_CONF": str(self.base / "containers.conf")}

    def buildah(self, *args: str | Path, cwd: Path | None = None) -> str:
        result = subprocess.run(
            ["buildah", *self.store_flags, *(str(a) for a in args)],
            capture_output=True,
            text=True,
            env=self.cli.environ(self._env()),
            cwd=cwd or self.base,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"buildah {args}: {result.stderr}"
        return result.stdout.strip()

    def podman(self, *args: str | Path) -> Result:
        return self.cli.run(
            ["podman", *self.store_flags, "--events-backend", "none", *(str(a) for a in args)],
            env=self._env(),
            timeout=300,
        )


@pytest.fixture
def envs(tmp_shm: Path, busybox_layout: BusyboxImage) -> Iterator[tuple[ContainerEnv, Peers]]:
    skiff = ContainerEnv(tmp_shm / "skiff", busybox_layout)
    peers_dir = tmp_shm / "peers"
    peers_dir.mkdir()
    _containers_conf(peers_dir / "containers.conf")
    peers = Peers(peers_dir, skiff)
    try:
        yield skiff, peers
    finally:
        skiff.skiff("builder", "rm", "--all", expect=None)
        subprocess.run(
            ["buildah", *peers.store_flags, "rm", "--all"],
            capture_output=True,
            env=skiff.environ(peers._env()),
            check=False,
        )
        subprocess.run(
            ["podman", *peers.store_flags, "rm", "-a", "-f"],
            capture_output=True,
            env=skiff.environ(peers._env()),
            check=False,
        )
        skiff.close()


def _context(base: Path) -> Path:
    ctx = base / "context"
    (ctx / "tree" / "sub").mkdir(parents=True)
    (ctx / "tree" / "run.sh").write_text("#!/bin/sh\necho tree\n")
    (ctx / "tree" / "run.sh").chmod(0o755)
    (ctx / "tree" / "sub" / "data").write_text("data\n")
    (ctx / "tree" / "link").symlink_to("run.sh")
    (ctx / "owned.txt").write_text("owned\n")
    (ctx / "secret.txt").write_text("secret\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("pkg/README", b"readme\n"), ("pkg/bin/tool", b"#!/bin/sh\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            info.mtime = 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    (ctx / "pkg.tar.gz").write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    for path in ctx.rglob("*"):
        os.utime(path, (1_650_000_000, 1_650_000_000), follow_symlinks=False)
    return ctx


STEPS: list[tuple[str, list[str], list[str]]] = [
    # (verb, options (before the container, as buildah wants them), arguments)
    ("copy", [], ["tree", "/opt/tree/"]),
    ("copy", ["--chown", "www"], ["owned.txt", "/opt/owned.txt"]),
    ("copy", ["--chmod", "600"], ["secret.txt", "/opt/"]),
    ("add", [], ["pkg.tar.gz", "/srv/"]),
    (
        "run",
        ["--network", "none"],
        ["--", "sh", "-c", "echo built > /built && mkdir -p /var/lib/app && rm /etc/group"],
    ),
]
CONFIG = [
    "--env",
    "A=1",
    "--env",
    "PATH=$PATH:/opt/tree",
    "--cmd",
    "echo hi",
    "--entrypoint",
    '["/bin/sh", "-c"]',
    "--workingdir",
    "/opt",
    "--user",
    "www",
    "--label",
    "org.example.k=v",
    "--port",
    "8080/tcp",
    "--volume",
    "/data",
]


def _build_with_buildah(peers: Peers, layout: BusyboxImage, ctx: Path) -> str:
    ctr = peers.buildah("from", "--quiet", layout.reference)
    for verb, options, args in STEPS:
        peers.buildah(verb, *options, ctr, *args, cwd=ctx)
    peers.buildah("config", *CONFIG, ctr)
    peers.buildah("commit", "-q", "--timestamp", "0", ctr, "localhost/built:buildah")
    return ctr


def _build_with_skiff(skiff: ContainerEnv, ctx: Path) -> str:
    ctr = skiff.skiff("from", "busybox").stdout.strip()
    for verb, options, args in STEPS:
        _run_in(skiff, skiff.skiff_argv("builder", verb, *options, ctr, *args), ctx)
    skiff.skiff("builder", "config", *CONFIG, ctr)
    skiff.skiff("builder", "commit", "-q", "--timestamp", "0", ctr, "localhost/built:skiff")
    return ctr


def _run_in(env: CliEnv, argv: list[str], cwd: Path) -> None:
    result = subprocess.run(
        argv, capture_output=True, text=True, env=env.environ(), cwd=cwd, timeout=300, check=False
    )
    assert result.returncode == 0, f"{argv}: {result.stderr}"


def _unpack(layout: Path, tag: str, bundle: Path) -> Path:
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
        check=True,
        capture_output=True,
    )
    return bundle / "rootfs"


def _describe(root: Path) -> dict[str, tuple[Any, ...]]:
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


def _image_config(layout: Path, tag: str) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    entry = next(
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    )
    manifest = json.loads((layout / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_text())
    config = json.loads(
        (layout / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_text()
    )
    inner = dict(config.get("config") or {})
    labels = dict(inner.get("Labels") or {})
    labels.pop("io.buildah.version", None)
    inner["Labels"] = labels
    return {key: inner.get(key) for key in COMPARED_CONFIG}


def test_same_steps_same_image(
    envs: tuple[ContainerEnv, Peers], busybox_layout: BusyboxImage, tmp_shm: Path
) -> None:
    skiff, peers = envs
    ctx = _context(tmp_shm)
    _build_with_buildah(peers, busybox_layout, ctx)
    _build_with_skiff(skiff, ctx)
    layout = tmp_shm / "compare"
    skiff.skopeo(
        "copy",
        "--quiet",
        f"containers-storage:{peers.storage_spec}localhost/built:buildah",
        f"oci:{layout}:buildah",
    )
    skiff.skiff(
        "image", "copy", "-q", "containers-storage:localhost/built:skiff", f"oci:{layout}:skiff"
    )
    assert _image_config(layout, "skiff") == _image_config(layout, "buildah")
    theirs = _describe(_unpack(layout, "buildah", tmp_shm / "bundle-buildah"))
    ours = _describe(_unpack(layout, "skiff", tmp_shm / "bundle-skiff"))
    assert set(theirs) - set(ours) == BUILDAH_ARTEFACTS
    for artefact in BUILDAH_ARTEFACTS:
        del theirs[artefact]
    differing = {k: (ours.get(k), theirs.get(k)) for k in theirs if ours.get(k) != theirs[k]}
    assert not differing
    assert ours == theirs
    assert ours["opt/owned.txt"][3:5] == (1000, 1000)
    assert ours["opt/secret.txt"][2] == 0o600
    assert "etc/group" not in ours and ours["built"][1] == b"built\n"


def test_each_runs_the_others_image(
    envs: tuple[ContainerEnv, Peers], busybox_layout: BusyboxImage, tmp_shm: Path
) -> None:
    skiff, peers = envs
    ctx = _context(tmp_shm)
    _build_with_buildah(peers, busybox_layout, ctx)
    _build_with_skiff(skiff, ctx)
    # skiff's image in podman
    archive = tmp_shm / "skiff-built.tar"
    skiff.skiff(
        "image",
        "copy",
        "-q",
        "containers-storage:localhost/built:skiff",
        f"oci-archive:{archive}:localhost/built:skiff",
    )
    peers.podman("load", "-q", "-i", archive)
    out = peers.podman(
        "run", "--rm", "--network", "none", "localhost/built:skiff", "id -un; cat /built; pwd"
    )
    assert out.stdout == "www\nbuilt\n/opt\n"
    # buildah's image in skiff
    layout = tmp_shm / "from-buildah"
    skiff.skopeo(
        "copy",
        "--quiet",
        f"containers-storage:{peers.storage_spec}localhost/built:buildah",
        f"oci:{layout}:b",
    )
    skiff.skiff(
        "image", "copy", "-q", f"oci:{layout}:b", "containers-storage:localhost/from-buildah:1"
    )
    out = skiff.skiff("run", "--rm", "localhost/from-buildah:1", "id -un; cat /built; echo $A")
    assert out.stdout == "www\nbuilt\n1\n"
    # and a working container on buildah's image builds on its layers
    ctr = skiff.skiff("from", "localhost/from-buildah:1").stdout.strip()
    skiff.skiff("builder", "run", ctr, "--", "sh", "-c", "test -x /srv/pkg/bin/tool")
