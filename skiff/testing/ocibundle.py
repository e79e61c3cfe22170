"""OCI runtime bundles from the busybox test image, without the rest of skiff.

Runtime tests need a rootfs and a config.json to hand to runc or crun.
``BundleFactory`` unpacks a busybox OCI layout once with ``umoci unpack``
(the peer tool, so the test does not depend on skiff's own layer code) and
gives each test a private copy of the rootfs (``make``): containers write
into their rootfs, and the spec generator creates working directories
there, so tests must not share one.

``run_bundle`` runs a bundle to completion with ``runc run`` (or crun, see
``crun_argv_prefix``) through ``skiff.runtime.oci.OCIRuntime``'s argv
builder and returns the output; the container is deleted afterwards even
when the run fails or times out.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiff.oci.config import ImageConfig
from skiff.runtime.oci import OCIRuntime

_ids = itertools.count()

HIDE_CGROUP2_PREFIX = (
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "/bin/sh",
    "-c",
    'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"',
)
"""Run a runtime in a private mount namespace without the cgroup2 mount at
/sys/fs/cgroup/unified: crun 1.8 then treats this hybrid host as plain
cgroup v1 (/work/shared/bench/crun-legacy explains why). Tests only."""


def unique_id(prefix: str = "skiff-test") -> str:
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


def read_image_config(layout: Path, tag: str = "latest") -> ImageConfig:
    """The config of ``tag`` in the OCI layout ``layout`` (single manifest)."""
    index = json.loads((layout / "index.json").read_text())
    for desc in index.get("manifests", []):
        if (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            algo, hexd = desc["digest"].split(":", 1)
            manifest = json.loads((layout / "blobs" / algo / hexd).read_text())
            algo, hexd = manifest["config"]["digest"].split(":", 1)
            return ImageConfig.from_bytes((layout / "blobs" / algo / hexd).read_bytes())
    raise LookupError(f"no tag {tag!r} in {layout}")


def unpack_rootfs(layout: Path, tag: str, dest: Path) -> Path:
    """``umoci unpack`` ``layout:tag`` into the bundle dir ``dest``; the rootfs."""
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{tag}", str(dest)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return dest / "rootfs"


@dataclass(frozen=True)
class Bundle:
    path: Path
    rootfs: Path
    userdata: Path

    def write_config(self, spec: dict[str, Any]) -> None:
        (self.path / "config.json").write_text(json.dumps(spec, indent=1))


class BundleFactory:
    """Private bundles copied from one unpacked image (see the module docstring)."""

    def __init__(self, layout: Path, workdir: Path, tag: str = "latest") -> None:
        self.layout = layout
        self.tag = tag
        self.workdir = workdir
        self.template = unpack_rootfs(layout, tag, workdir / f"template-{tag}")
        self.image_config = read_image_config(layout, tag)

    def make(self, name: str | None = None) -> Bundle:
        path = self.workdir / (name or unique_id("bundle"))
        path.mkdir(parents=True)
        rootfs = path / "rootfs"
        shutil.copytree(self.template, rootfs, symlinks=True)
        userdata = path / "userdata"
        userdata.mkdir()
        return Bundle(path, rootfs, userdata)


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str


def run_bundle(
    runtime: OCIRuntime,
    bundle: Bundle,
    container_id: str,
    *,
    argv_prefix: Sequence[str] = (),
    timeout: float = 60,
    pass_fds: Sequence[int] = (),
    env: dict[str, str] | None = None,
) -> RunResult:
    """``RUNTIME run`` the bundle to completion (stdin /dev/null, output
    captured), then ``delete --force`` it whatever happened. ``argv_prefix``
    wraps both calls (``HIDE_CGROUP2_PREFIX`` for crun here)."""
    run_argv = [*argv_prefix, *runtime.argv(*runtime.run_args(container_id, bundle.path))]
    try:
        proc = subprocess.run(
            run_argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            pass_fds=tuple(pass_fds),
            close_fds=True,
            env=env,
            check=False,
        )
        return RunResult(proc.returncode, proc.stdout, proc.stderr)
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [*argv_prefix, *runtime.argv("delete", "--force", container_id)],
                capture_output=True,
                timeout=60,
                check=False,
            )
