"""Known container escapes, each tried against skiff's spec generation and runtime calls.

- CVE-2024-21626 (runc "Leaky Vessels"): a working directory of
  /proc/self/fd/N reaches a host directory through an fd runc leaked into
  the container. skiff refuses such a working directory itself, and even
  with the check bypassed the runtime must fail or stay inside the
  container; skiff must not hand the runtime any fd beyond 0, 1, 2.
- Host fds must never reach the container's processes.
- CVE-2022-27651: a non-empty inheritable capability set lets file
  capabilities of any binary in the image raise a process's privileges;
  inheritable and ambient stay empty unless asked for.
- CVE-2024-9676: /etc/passwd (or /etc/group, or /etc itself) in the image
  is a symlink to a host path; the user lookup must never read the host's
  file.
- A bind-mount source that is a symlink is resolved once, on the host side
  at create time, and the recorded path is what later runs use: re-pointing
  the link cannot redirect the mount.
- The image's WorkingDir as a symlink to a host path: the directory is made
  inside the rootfs, never on the host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from skiff.errors import ContainerError
from skiff.runtime.oci import OCIRuntime, select_runtime
from skiff.runtime.specgen import (
    ContainerFiles,
    SpecGenerator,
    generate_spec,
    parse_volume,
    resolve_host_sources,
    resolve_user,
)
from skiff.testing.busybox import build_busybox_layout
from skiff.testing.ocibundle import Bundle, BundleFactory, RunResult, run_bundle, unique_id

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
    pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed"),
]

BB = "/bin/busybox"
ROOTFS_MARKER = ".skiff-rootfs-marker"


@pytest.fixture(scope="module")
def workdir(session_shm: Path) -> Path:
    path = session_shm / "security-escapes"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def factory(workdir: Path) -> BundleFactory:
    layout = workdir / "layout"
    build_busybox_layout(layout, extra_files={ROOTFS_MARKER: b"inside\n"})
    return BundleFactory(layout, workdir / "bundles")


@pytest.fixture(scope="module")
def runc(workdir: Path) -> OCIRuntime:
    run_root = workdir / "run"
    return OCIRuntime(select_runtime(run_root, "runc"), run_root)


def generate(factory: BundleFactory, bundle: Bundle, sg: SpecGenerator, cid: str) -> dict[str, Any]:
    return generate_spec(
        sg, factory.image_config, bundle.rootfs, container_id=cid, container_files=ContainerFiles()
    )


def run_spec(
    runc: OCIRuntime, bundle: Bundle, cid: str, spec: dict[str, Any], **kw: Any
) -> RunResult:
    bundle.write_config(spec)
    return run_bundle(runc, bundle, cid, **kw)


def status_mask(out: str, name: str) -> int:
    match = re.search(rf"^{name}:\s*([0-9a-f]+)$", out, re.MULTILINE)
    assert match, out
    return int(match.group(1), 16)


# --- CVE-2024-21626: working directory through a leaked fd ------------------------------


@pytest.mark.parametrize("n", range(1, 21))
def test_workdir_proc_self_fd_is_refused(factory: BundleFactory, n: int) -> None:
    bundle = factory.make()
    sg = SpecGenerator()
    sg.basic.command = [BB, "true"]
    sg.basic.workdir = f"/proc/self/fd/{n}"
    with pytest.raises(ContainerError, match="inside /proc"):
        generate(factory, bundle, sg, unique_id("cwd"))


def test_workdir_through_dev_fd_symlink_is_refused(factory: BundleFactory) -> None:
    sg = SpecGenerator()
    sg.basic.command = [BB, "true"]
    sg.basic.workdir = "/dev/fd/7"
    with pytest.raises(ContainerError, match="inside /dev"):
        generate(factory, factory.make(), sg, unique_id("cwd"))


def test_image_workdir_symlink_into_proc_is_refused(workdir: Path) -> None:
    layout = workdir / "layout-cwdlink"
    build_busybox_layout(layout, config_overrides={"config": {"WorkingDir": "/app"}})
    factory = BundleFactory(layout, workdir / "bundles-cwdlink")
    bundle = factory.make()
    (bundle.rootfs / "app").symlink_to("/proc/self/fd/7")
    sg = SpecGenerator()
    sg.basic.command = [BB, "true"]
    with pytest.raises(ContainerError, match="inside /proc"):
        generate(factory, bundle, sg, unique_id("cwd"))


def test_forced_proc_self_fd_cwd_fails_or_stays_inside(
    factory: BundleFactory, runc: OCIRuntime
) -> None:
    """With skiff's check bypassed (cwd written into the spec), the runtime
    must refuse or the process must be inside the container's root."""
    sg = SpecGenerator()
    sg.basic.command = [BB, "ls", "-a", "../" * 30]
    outcomes = []
    for n in range(1, 21):
        bundle = factory.make()
        cid = unique_id("leaky")
        spec = generate(factory, bundle, sg, cid)
        spec["process"]["cwd"] = f"/proc/self/fd/{n}"
        result = run_spec(runc, bundle, cid, spec)
        if result.returncode == 0:
            assert ROOTFS_MARKER in result.stdout.split(), (n, result.stdout)
            outcomes.append("inside")
        else:
            outcomes.append("refused")
    assert len(outcomes) == 20


def _planted_fds(path: Path, count: int = 3) -> list[int]:
    """Inheritable fds on a unique file, as a careless parent would leave them."""
    fds = []
    for _ in range(count):
        fd = os.open(path, os.O_RDONLY)
        os.set_inheritable(fd, True)
        fds.append(fd)
    return fds


def _runtime_fds_via_hook(
    factory: BundleFactory, runc: OCIRuntime, workdir: Path, create: Any
) -> str:
    """What fds the ``runc create`` process holds, listed by a createRuntime
    hook (a child of that runc process: ``/proc/$PPID/fd``)."""
    listing = workdir / f"runtime-fds-{unique_id()}"
    sg = SpecGenerator()
    sg.basic.command = [BB, "true"]
    bundle = factory.make()
    cid = unique_id("fds")
    spec = generate(factory, bundle, sg, cid)
    spec["hooks"] = {
        "createRuntime": [
            {
                "path": BB,
                "args": [
                    "busybox",
                    "sh",
                    "-c",
                    f"ls -l /proc/$PPID/fd/ > {listing} 2>/dev/null; true",
                ],
            }
        ]
    }
    bundle.write_config(spec)
    try:
        create(cid, bundle)
    finally:
        runc.delete(cid, force=True)
    return listing.read_text()


def test_runtime_calls_pass_no_extra_fds(
    factory: BundleFactory, runc: OCIRuntime, workdir: Path
) -> None:
    """Fds skiff holds (even inheritable ones) are not handed to the runtime."""
    secret = workdir / f"host-secret-{unique_id()}"
    secret.write_text("host only\n")
    fds = _planted_fds(secret)
    try:
        careless = _runtime_fds_via_hook(
            factory,
            runc,
            workdir,
            lambda cid, bundle: subprocess.run(
                runc.argv(*runc.create_args(cid, bundle.path)),
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # the created container keeps its stdio open
                stderr=subprocess.DEVNULL,
                timeout=60,
                check=True,
            ),
        )
        assert str(secret) in careless  # the probe sees leaked fds when there are some
        ours = _runtime_fds_via_hook(
            factory, runc, workdir, lambda cid, bundle: runc.create(cid, bundle.path)
        )
        assert str(secret) not in ours
    finally:
        for fd in fds:
            os.close(fd)


def test_container_process_has_only_stdio(factory: BundleFactory, runc: OCIRuntime) -> None:
    sg = SpecGenerator()
    sg.basic.command = [BB, "sleep", "30"]
    bundle = factory.make()
    cid = unique_id("fds")
    bundle.write_config(generate(factory, bundle, sg, cid))
    try:
        runc.create(cid, bundle.path)
        runc.start(cid)
        state = runc.state(cid)
        assert state is not None
        pid = int(state["pid"])
        deadline = time.monotonic() + 10
        while b"sleep" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd")) == [0, 1, 2]
    finally:
        runc.delete(cid, force=True)


def test_no_host_fd_reaches_the_container(
    factory: BundleFactory, runc: OCIRuntime, workdir: Path
) -> None:
    """Even when the runtime is started with extra fds (and LISTEN_FDS set),
    the container's process sees only its stdio."""
    secret = workdir / f"host-secret-{unique_id()}"
    secret.write_text("host only\n")
    fds = _planted_fds(secret)
    sg = SpecGenerator()
    sg.basic.command = [BB, "ls", "-l", "/proc/self/fd/"]
    bundle = factory.make()
    cid = unique_id("fds")
    try:
        result = run_spec(
            runc,
            bundle,
            cid,
            generate(factory, bundle, sg, cid),
            pass_fds=fds,
            env={**os.environ, "LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid())},
        )
    finally:
        for fd in fds:
            os.close(fd)
    assert result.returncode == 0, result.stderr
    entries = {}
    for line in result.stdout.splitlines():
        match = re.search(r"\s(\d+) -> (.*)$", line)
        if match:
            entries[int(match.group(1))] = match.group(2)
    assert str(secret) not in result.stdout
    assert set(entries) - {0, 1, 2} <= {3}  # 3: ls's own handle on /proc/self/fd
    if 3 in entries:
        assert entries[3].startswith("/proc/")


# --- CVE-2022-27651: inheritable and ambient capabilities ------------------------------------


@pytest.mark.parametrize(
    ("user", "cap_add"),
    [("", []), ("", ["NET_ADMIN", "SYS_PTRACE"]), ("www", []), ("0", ["ALL"])],
)
def test_inheritable_and_ambient_are_empty(
    factory: BundleFactory, runc: OCIRuntime, user: str, cap_add: list[str]
) -> None:
    sg = SpecGenerator()
    sg.basic.command = [BB, "cat", "/proc/self/status"]
    sg.security.user = user or None
    sg.security.cap_add = cap_add
    bundle = factory.make()
    cid = unique_id("caps")
    spec = generate(factory, bundle, sg, cid)
    assert "inheritable" not in spec["process"]["capabilities"]
    assert "ambient" not in spec["process"]["capabilities"]
    result = run_spec(runc, bundle, cid, spec)
    assert result.returncode == 0, result.stderr
    assert status_mask(result.stdout, "CapInh") == 0
    assert status_mask(result.stdout, "CapAmb") == 0
    if user == "www":
        assert status_mask(result.stdout, "CapEff") == 0
        assert status_mask(result.stdout, "CapPrm") == 0


# --- CVE-2024-9676: the image's user database as a symlink to the host --------------------------


@pytest.fixture
def host_passwd(workdir: Path) -> Path:
    """A host file with a marker user, at an absolute host path."""
    directory = workdir / f"hostetc-{unique_id()}"
    directory.mkdir()
    (directory / "passwd").write_text("marker:x:4242:4243:marker:/markerhome:/bin/sh\n")
    (directory / "group").write_text("markergroup:x:4244:marker\n")
    return directory / "passwd"


def _replace_with_symlink(path: Path, target: str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("how", ["absolute", "relative", "etc-dir"])
def test_passwd_symlink_to_host_is_never_read(
    factory: BundleFactory, host_passwd: Path, how: str
) -> None:
    bundle = factory.make()
    etc = bundle.rootfs / "etc"
    if how == "absolute":
        _replace_with_symlink(etc / "passwd", str(host_passwd))
        _replace_with_symlink(etc / "group", str(host_passwd.with_name("group")))
    elif how == "relative":
        up = "../" * (len(etc.parts) + 3)
        _replace_with_symlink(etc / "passwd", up + str(host_passwd).lstrip("/"))
        _replace_with_symlink(etc / "group", up + str(host_passwd.with_name("group")).lstrip("/"))
    else:
        _replace_with_symlink(etc, str(host_passwd.parent))
    with pytest.raises(ContainerError, match="unable to find user marker"):
        resolve_user(bundle.rootfs, "marker")
    numeric = resolve_user(bundle.rootfs, "4242")
    assert (numeric.uid, numeric.gid, numeric.home) == (4242, 0, "/")
    with pytest.raises(ContainerError, match="unable to find group markergroup"):
        resolve_user(bundle.rootfs, "", ["markergroup"])
    # and through the whole spec generation
    sg = SpecGenerator()
    sg.basic.command = [BB, "true"]
    sg.security.user = "marker"
    with pytest.raises(ContainerError, match="unable to find user marker"):
        generate(factory, bundle, sg, unique_id("passwd"))


def test_symlink_resolving_inside_the_rootfs_is_followed(factory: BundleFactory) -> None:
    """A symlink that stays inside the image is a normal image: it works."""
    bundle = factory.make()
    etc = bundle.rootfs / "etc"
    (bundle.rootfs / "srv").mkdir(exist_ok=True)
    (etc / "passwd").rename(bundle.rootfs / "srv" / "passwd")
    (etc / "passwd").symlink_to("/srv/passwd")
    assert resolve_user(bundle.rootfs, "www").uid == 1000


def test_passwd_fifo_does_not_hang(factory: BundleFactory) -> None:
    bundle = factory.make()
    passwd = bundle.rootfs / "etc" / "passwd"
    passwd.unlink()
    os.mkfifo(passwd)
    with pytest.raises(ContainerError, match="not a regular file"):
        resolve_user(bundle.rootfs, "www")


# --- bind sources and working directories ------------------------------------------------------


def test_bind_source_symlink_is_resolved_once(
    factory: BundleFactory, runc: OCIRuntime, workdir: Path
) -> None:
    base = workdir / f"binds-{unique_id()}"
    (base / "a").mkdir(parents=True)
    (base / "b").mkdir()
    (base / "a" / "which").write_text("a\n")
    (base / "b" / "which").write_text("b\n")
    link = base / "link"
    link.symlink_to(base / "a")
    recorded = resolve_host_sources([parse_volume(f"{link}:/data")])
    assert recorded[0].source == str(base / "a")  # type: ignore[union-attr]
    assert recorded[0].given_source == str(link)  # type: ignore[union-attr]
    link.unlink()
    link.symlink_to(base / "b")  # re-pointed after create
    sg = SpecGenerator()
    sg.basic.command = [BB, "cat", "/data/which"]
    sg.storage.mounts = recorded
    bundle = factory.make()
    cid = unique_id("bind")
    spec = generate(factory, bundle, sg, cid)
    assert {"destination": "/data", "type": "bind", "source": str(base / "a")}.items() <= next(
        m for m in spec["mounts"] if m["destination"] == "/data"
    ).items()
    result = run_spec(runc, bundle, cid, spec)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a\n"


def test_image_workdir_symlink_to_host_path_stays_in_rootfs(workdir: Path) -> None:
    # a host directory outside /dev (a path under /dev would be refused: the
    # runtime mounts its own /dev there)
    host_dir = Path(tempfile.mkdtemp(prefix="skiff-host-wd-"))
    try:
        layout = workdir / "layout-wdlink"
        build_busybox_layout(layout, config_overrides={"config": {"WorkingDir": "/app/sub"}})
        factory = BundleFactory(layout, workdir / "bundles-wdlink")
        bundle = factory.make()
        (bundle.rootfs / "app").symlink_to(str(host_dir))
        sg = SpecGenerator()
        sg.basic.command = [BB, "true"]
        spec = generate(factory, bundle, sg, unique_id("wd"))
        assert spec["process"]["cwd"] == "/app/sub"
        assert list(host_dir.iterdir()) == []  # nothing made on the host
        inside = bundle.rootfs / str(host_dir).lstrip("/") / "sub"
        assert inside.is_dir() and not inside.is_symlink()
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)
