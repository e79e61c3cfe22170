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

from collections.abc import Iterator
from pathlib import Path

import pytest
from buildah_peers import (
    BUILDAH_ARTEFACTS,
    Peers,
    copy_buildahs_image_to_skiff,
    describe,
    export_both,
    image_config,
    load_skiffs_image_into_podman,
    peer_envs,
    pin_mtimes,
    requirements,
    unpack,
    write_tarball,
)

from skiff.testing.busybox import BusyboxImage
from skiff.testing.containers import ContainerEnv

pytestmark = requirements

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


@pytest.fixture
def envs(tmp_shm: Path, busybox_layout: BusyboxImage) -> Iterator[tuple[ContainerEnv, Peers]]:
    with peer_envs(tmp_shm, busybox_layout) as (skiff, peers):
        yield skiff, peers


def _context(base: Path) -> Path:
    ctx = base / "context"
    (ctx / "tree" / "sub").mkdir(parents=True)
    (ctx / "tree" / "run.sh").write_text("#!/bin/sh\necho tree\n")
    (ctx / "tree" / "run.sh").chmod(0o755)
    (ctx / "tree" / "sub" / "data").write_text("data\n")
    (ctx / "tree" / "link").symlink_to("run.sh")
    (ctx / "owned.txt").write_text("owned\n")
    (ctx / "secret.txt").write_text("secret\n")
    write_tarball(
        ctx / "pkg.tar.gz", (("pkg/README", b"readme\n"), ("pkg/bin/tool", b"#!/bin/sh\n"))
    )
    pin_mtimes(ctx)
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
    ctr = peers.buildah("from", "--quiet", layout.reference).stdout.strip()
    for verb, options, args in STEPS:
        peers.buildah(verb, *options, ctr, *args, cwd=ctx)
    peers.buildah("config", *CONFIG, ctr)
    peers.buildah("commit", "-q", "--timestamp", "0", ctr, "localhost/built:buildah")
    return ctr


def _build_with_skiff(skiff: ContainerEnv, ctx: Path) -> str:
    ctr = skiff.skiff("from", "busybox").stdout.strip()
    for verb, options, args in STEPS:
        skiff.run(skiff.skiff_argv("builder", verb, *options, ctr, *args), cwd=ctx, timeout=300)
    skiff.skiff("builder", "config", *CONFIG, ctr)
    skiff.skiff("builder", "commit", "-q", "--timestamp", "0", ctr, "localhost/built:skiff")
    return ctr


def test_same_steps_same_image(
    envs: tuple[ContainerEnv, Peers], busybox_layout: BusyboxImage, tmp_shm: Path
) -> None:
    skiff, peers = envs
    ctx = _context(tmp_shm)
    _build_with_buildah(peers, busybox_layout, ctx)
    _build_with_skiff(skiff, ctx)
    layout = tmp_shm / "compare"
    export_both(skiff, peers, layout)
    assert image_config(layout, "skiff", COMPARED_CONFIG) == image_config(
        layout, "buildah", COMPARED_CONFIG
    )
    theirs = describe(unpack(layout, "buildah", tmp_shm / "bundle-buildah"))
    ours = describe(unpack(layout, "skiff", tmp_shm / "bundle-skiff"))
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
    load_skiffs_image_into_podman(skiff, peers, tmp_shm / "skiff-built.tar")
    out = peers.podman(
        "run", "--rm", "--network", "none", "localhost/built:skiff", "id -un; cat /built; pwd"
    )
    assert out.stdout == "www\nbuilt\n/opt\n"
    # buildah's image in skiff
    copy_buildahs_image_to_skiff(skiff, peers, tmp_shm / "from-buildah")
    out = skiff.skiff("run", "--rm", "localhost/from-buildah:1", "id -un; cat /built; echo $A")
    assert out.stdout == "www\nbuilt\n1\n"
    # and a working container on buildah's image builds on its layers
    ctr = skiff.skiff("from", "localhost/from-buildah:1").stdout.strip()
    skiff.skiff("builder", "run", ctr, "--", "sh", "-c", "test -x /srv/pkg/bin/tool")
