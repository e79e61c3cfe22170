"""System containers against the real pieces: runc, the store, systemd-analyze.

Images are busybox layouts built here (``build_busybox_layout``) with the
``/exports`` files and labels each test needs, installed through the copy
engine from ``oci:`` layouts. This machine's PID 1 is not systemd, so the
generated unit is proven the other way round: ``systemd-analyze verify``
accepts it (with the real runtime path as ``ExecStart``), and its
``ExecStartPre``/``ExecStart``/``ExecStop``/``ExecStopPost`` lines, parsed
as systemd parses them, are run here directly: busybox httpd serves on
127.0.0.1 with the host's network, ``ExecStop`` ends it.

Covered: the default unit and config (read-only rootfs, host network,
ordering from an ``after`` label); files shared by inode across
containers, images and deployments, and whiteouts in checkouts; templates
with every variable, the manifest, hostfs and its conflicts; update →
rollback → uninstall leaving nothing behind; ``kill -9`` at every step of
install, update, rollback and uninstall, and from outside during a
checkout; bad input (names, templates, values, policy).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from skiff.config import SystemContext
from skiff.errors import SystemContainerError, UsageError
from skiff.system import install as sc
from skiff.system import query
from skiff.system.install import ChangeOptions, HostDirs, InstallOptions, UpdateOptions
from skiff.system.objects import ObjectStore
from skiff.system.templates import TemplateError, parse_set_values, substitute
from skiff.system.units import check_name, ordering_from_labels, quote_exec_arg
from skiff.testing.busybox import (
    BusyboxImage,
    build_busybox_layout,
    busybox_entries,
    files_entries,
    layer_tar,
    write_image,
)
from skiff.testing.cli import CliEnv
from skiff.testing.network import free_port, wait_for

RUNC = shutil.which("runc") or "/usr/sbin/runc"

needs_root_and_runc = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(RUNC), reason="running containers needs root and runc"
)


# --- the host of one test ---------------------------------------------------------------------


@dataclass
class Host:
    """A private store and private "host" directories for units, tmpfiles and hostfs."""

    base: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for path in (self.root, self.runroot, self.rundir, self.hostroot):
            path.mkdir(parents=True, exist_ok=True)
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))

    root = property(lambda self: self.base / "root")
    runroot = property(lambda self: self.base / "runroot")
    units = property(lambda self: self.base / "units")
    tmpfiles = property(lambda self: self.base / "tmpfiles.d")
    hostroot = property(lambda self: self.base / "host")
    rundir = property(lambda self: self.base / "run")
    policy = property(lambda self: self.base / "policy.json")

    @property
    def ctx(self) -> SystemContext:
        return SystemContext(storage_root=self.root, run_root=self.runroot, policy_path=self.policy)

    @property
    def dirs(self) -> HostDirs:
        return HostDirs(self.units, self.tmpfiles, self.hostroot)

    @property
    def deployments(self) -> Path:
        return self.root / "system-containers" / "deployments"

    @property
    def objects(self) -> Path:
        return self.root / "system-containers" / "objects"

    def install(self, image: str, name: str, **kwargs: Any) -> sc.ChangeReport:
        values = {"RUN_DIRECTORY": str(self.rundir), **kwargs.pop("values", {})}
        return sc.install(
            self.ctx, image, InstallOptions(name=name, values=values, dirs=self.dirs, **kwargs)
        )

    def unit(self, name: str) -> Path:
        return self.units / f"{name}.service"

    def cli(self) -> CliEnv:
        return CliEnv(self.base / "cli")

    def skiff_argv(self, *args: str | Path) -> list[str]:
        cli = self.cli()
        return [
            cli.skiff_path,
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--policy",
            str(self.policy),
            *(str(a) for a in args),
        ]

    def dir_flags(self) -> list[str]:
        return [
            "--systemd-dir",
            str(self.units),
            "--tmpfiles-dir",
            str(self.tmpfiles),
            "--host-root",
            str(self.hostroot),
        ]

    def stop_everything(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        state = self.runroot / "system-containers" / "runc"
        if state.is_dir():
            for entry in state.iterdir():
                subprocess.run(
                    [RUNC, "--root", str(state), "delete", "--force", entry.name],
                    capture_output=True,
                    check=False,
                )


@pytest.fixture
def host(tmp_shm: Path) -> Iterator[Host]:
    h = Host(tmp_shm / "host")
    try:
        yield h
    finally:
        h.stop_everything()


def web_image(
    layout: Path,
    tag: str,
    port: int,
    *,
    page: bytes = b"v1\n",
    labels: dict[str, str] | None = None,
    files: dict[str, bytes] | None = None,
) -> BusyboxImage:
    """busybox httpd on 127.0.0.1:PORT serving ``page`` as its index."""
    return build_busybox_layout(
        layout,
        tag=tag,
        extra_files={"var/www/index.html": page, **(files or {})},
        config_overrides={
            "config": {
                "Entrypoint": [
                    "/bin/busybox",
                    "httpd",
                    "-f",
                    "-p",
                    f"127.0.0.1:{port}",
                    "-h",
                    "/var/www",
                ],
                "Cmd": [],
                "Labels": labels or {},
            }
        },
    )


def get(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


# --- running a unit as systemd would ------------------------------------------------------------


def unit_entries(path: Path) -> dict[str, list[str]]:
    """``Key=Value`` lines of a unit file, per key, in order (all sections)."""
    out: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def exec_argv(line: str) -> tuple[list[str], bool]:
    """An ``Exec*=`` line as systemd reads it: (argv, failure ignored)."""
    ignore = False
    while line[:1] in ("-", "@", "+", "!", ":"):
        ignore = ignore or line[0] == "-"
        line = line[1:]
    return [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(line)], ignore


def verify_unit(path: Path) -> None:
    """``systemd-analyze verify``: exit 0 and nothing said about this unit."""
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert path.name not in result.stderr, result.stderr


class RunningUnit:
    """The unit's commands run in order, as systemd would run them."""

    def __init__(self, host: Host, unit: Path) -> None:
        self.host = host
        self.entries = unit_entries(unit)
        self.cwd = self.entries.get("WorkingDirectory", ["/"])[-1]
        self.main: subprocess.Popen[bytes] | None = None

    def _run(self, key: str) -> None:
        for line in self.entries.get(key, []):
            argv, ignore = exec_argv(line)
            result = subprocess.run(argv, cwd=self.cwd, capture_output=True, check=False)
            assert ignore or result.returncode == 0, (key, argv, result.stderr)

    def start(self) -> None:
        self._run("ExecStartPre")
        argv, _ = exec_argv(self.entries["ExecStart"][-1])
        self.main = subprocess.Popen(
            argv,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.host.processes.append(self.main)

    def stop(self, timeout: float = 20.0) -> int:
        assert self.main is not None
        self._run("ExecStop")
        code = self.main.wait(timeout=timeout)
        self._run("ExecStopPost")
        return code


def serve_and_stop(host: Host, unit: Path, port: int, expect: str) -> None:
    running = RunningUnit(host, unit)
    running.start()
    try:
        wait_for(lambda: get(port) == expect, f"{expect!r} on port {port}", timeout=20)
    finally:
        running.stop()
    assert get(port) is None
    state = host.runroot / "system-containers" / "runc"
    assert not state.is_dir() or not any(state.iterdir())


# --- the default unit and config --------------------------------------------------------------------


@needs_root_and_runc
def test_default_unit_runs_the_container_and_stops_it(host: Host, tmp_shm: Path) -> None:
    port = free_port()
    image = web_image(tmp_shm / "layout", "web", port, labels={"after": "etcd.service"})
    report = host.install(image.reference, "web")
    assert report.deployment == 0
    unit = host.unit("web")
    verify_unit(unit)
    entries = unit_entries(unit)
    assert entries["After"] == ["etcd.service"]
    assert entries["Restart"] == ["on-failure"]
    assert entries["WantedBy"] == ["multi-user.target"]
    argv, _ = exec_argv(entries["ExecStart"][0])
    assert argv[0] == RUNC and "run" in argv and argv[-1] == "web"
    deployment = host.deployments / "web.0"
    assert (host.deployments / "web").resolve() == deployment.resolve()
    config = json.loads((deployment / "config.json").read_text())
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert "network" not in {ns["type"] for ns in config["linux"]["namespaces"]}
    assert "uts" not in {ns["type"] for ns in config["linux"]["namespaces"]}
    assert "rlimits" not in config["process"]
    serve_and_stop(host, unit, port, "v1\n")
    # the pid file went where $PIDFILE says
    info = query.inspect_system_container(host.ctx, "web")
    assert info.Unit == str(unit) and info.Deployment == 0
    assert info.Rootfs == str(deployment / "rootfs")


@needs_root_and_runc
def test_the_rootfs_is_read_only_inside_the_container(host: Host, tmp_shm: Path) -> None:
    image = build_busybox_layout(
        tmp_shm / "layout",
        tag="ro",
        config_overrides={"config": {"Entrypoint": ["/bin/busybox", "touch", "/etc/passwd"]}},
    )
    host.install(image.reference, "ro")
    running = RunningUnit(host, host.unit("ro"))
    running.start()
    assert running.main is not None
    assert running.main.wait(timeout=30) != 0
    running.stop()
    passwd = host.deployments / "ro.0" / "rootfs" / "etc" / "passwd"
    assert passwd.stat().st_mtime == 0  # untouched object (canonical mtime)


# --- the object store -----------------------------------------------------------------------------


@needs_root_and_runc
def test_files_are_shared_by_inode_across_containers_images_and_deployments(
    host: Host, tmp_shm: Path
) -> None:
    base = web_image(tmp_shm / "a", "a", free_port())
    other = web_image(tmp_shm / "b", "b", free_port(), page=b"other\n")
    for n in range(3):
        host.install(base.reference, f"same{n}")
    host.install(other.reference, "other")
    busyboxes = [
        host.deployments / f"{n}.0" / "rootfs/bin/busybox"
        for n in ("same0", "same1", "same2", "other")
    ]
    inodes = {p.stat().st_ino for p in busyboxes}
    assert len(inodes) == 1
    assert busyboxes[0].stat().st_nlink == 5  # four deployments and the object
    pages = {
        (host.deployments / f"{n}.0/rootfs/var/www/index.html").stat().st_ino
        for n in ("same0", "same1", "other")
    }
    assert len(pages) == 2  # the same page once, the other page once
    # uninstalling one keeps the objects the others use
    sc.uninstall(host.ctx, "same0", ChangeOptions())
    assert busyboxes[1].stat().st_nlink == 4
    for n in ("same1", "same2", "other"):
        sc.uninstall(host.ctx, n, ChangeOptions())
    assert ObjectStore(host.objects).count() == 0


@needs_root_and_runc
def test_checkout_applies_whiteouts_and_opaque_directories(host: Host, tmp_shm: Path) -> None:
    base = busybox_entries(extra_files={"opt/a/keep": b"k", "opt/b/old": b"o", "opt/gone": b"g"})
    top = files_entries({"opt/.wh.gone": b"", "opt/b/.wh..wh..opq": b"", "opt/b/new": b"n"})
    image = write_image(
        tmp_shm / "layout",
        [layer_tar(base), layer_tar(top)],
        tag="wh",
        config_overrides={"config": {"Cmd": ["/bin/busybox", "true"]}},
    )
    host.install(image.reference, "wh")
    rootfs = host.deployments / "wh.0" / "rootfs"
    assert (rootfs / "opt/a/keep").read_bytes() == b"k"
    assert not (rootfs / "opt/gone").exists()
    assert sorted(os.listdir(rootfs / "opt/b")) == ["new"]
    assert not glob.glob(str(rootfs / "**/.wh.*"), recursive=True)
    assert (rootfs / "opt/b/new").stat().st_nlink == 2


# --- templates ------------------------------------------------------------------------------------

ALL_VARIABLES = (
    "NAME",
    "DESTDIR",
    "EXEC_START",
    "EXEC_STOP",
    "EXEC_STARTPRE",
    "EXEC_STOPPOST",
    "HOST_UID",
    "HOST_GID",
    "IMAGE_ID",
    "IMAGE_NAME",
    "PIDFILE",
    "RUN_DIRECTORY",
    "STATE_DIRECTORY",
    "UUID",
    "RUNTIME",
)

SERVICE_TEMPLATE = """[Unit]
Description=templated $NAME from ${IMAGE_NAME}

[Service]
Environment=GREETING=${GREETING} PORT=$PORT
ExecStartPre=$EXEC_STARTPRE
ExecStart=$EXEC_START
ExecStop=$EXEC_STOP
ExecStopPost=$EXEC_STOPPOST
WorkingDirectory=$DESTDIR
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

TMPFILES_TEMPLATE = "d ${STATE_DIRECTORY}/$NAME 0700 $HOST_UID $HOST_GID -\n"


def config_template(port_var: str = "$PORT") -> str:
    return json.dumps(
        {
            "ociVersion": "1.0.2-dev",
            "process": {
                "terminal": False,
                "user": {"uid": 0, "gid": 0},
                "args": [
                    "/bin/busybox",
                    "httpd",
                    "-f",
                    "-p",
                    f"127.0.0.1:{port_var}",
                    "-h",
                    "/var/www",
                ],
                "env": ["PATH=/bin", "GREETING=${GREETING}", "UUID=$UUID"],
                "cwd": "/",
                "capabilities": {
                    k: ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
                    for k in ("bounding", "effective", "permitted")
                },
            },
            "root": {"path": "rootfs", "readonly": True},
            "hostname": "$NAME",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {
                    "destination": "/dev",
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid", "mode=755"],
                },
            ],
            "linux": {
                "namespaces": [
                    {"type": "pid"},
                    {"type": "mount"},
                    {"type": "ipc"},
                    {"type": "uts"},
                ],
                "cgroupsPath": "/skiff-system/$NAME",
            },
            "annotations": {"every": " ".join(f"{v}=${{{v}}}" for v in ALL_VARIABLES)},
        },
        indent=2,
    )


def templated_image(
    layout: Path, tag: str, *, port_default: str, page: bytes = b"templated\n", **overrides: Any
) -> BusyboxImage:
    manifest = {
        "defaultValues": {"PORT": port_default, "GREETING": "hello"},
        "installedFilesTemplate": ["/usr/local/bin/$tool"],
    }
    files = {
        "var/www/index.html": page,
        "exports/config.json.template": config_template().encode(),
        "exports/service.template": SERVICE_TEMPLATE.encode(),
        "exports/tmpfiles.template": TMPFILES_TEMPLATE.encode(),
        "exports/manifest.json": json.dumps(manifest).encode(),
        "exports/hostfs/usr/local/bin/$tool": b"#!/bin/sh\necho $NAME ${GREETING} $$HOME\n",
        "exports/hostfs/etc/plain.conf": b"left $ALONE\n",
    }
    for key, value in overrides.items():
        files[key.replace("__", "/")] = value
    # httpd is PID 1 in this config (no init): it ignores SIGTERM, so the
    # image asks to be stopped with SIGKILL, and ExecStop sends that
    return build_busybox_layout(
        layout, tag=tag, extra_files=files, config_overrides={"config": {"StopSignal": "SIGKILL"}}
    )


@needs_root_and_runc
def test_templates_with_every_variable(host: Host, tmp_shm: Path) -> None:
    port = free_port()
    image = templated_image(tmp_shm / "layout", "tpl", port_default="1")
    report = host.install(
        image.reference, "tpl", values={"PORT": str(port), "STATE_DIRECTORY": str(host.base)}
    )
    view = query.inspect_system_container(host.ctx, "tpl")
    deployment = host.deployments / "tpl.0"
    assert sorted(view.Templates) == ["config", "hostfs", "service", "tmpfiles"]
    config = json.loads((deployment / "config.json").read_text())
    every = dict(
        item.split("=", 1)
        for item in config["annotations"]["every"].split(" ")
        if "=" in item and item.split("=", 1)[0] in ALL_VARIABLES
    )
    assert every["NAME"] == "tpl"
    assert every["DESTDIR"] == str(deployment)
    assert every["HOST_UID"] == str(os.getuid()) and every["HOST_GID"] == str(os.getgid())
    assert every["IMAGE_ID"] == image.config_digest.hex == view.ImageID
    assert every["IMAGE_NAME"] == view.ImageName == "localhost/tpl:latest"
    assert every["PIDFILE"] == f"{host.rundir}/container-tpl.pid"
    assert every["RUN_DIRECTORY"] == str(host.rundir)
    assert every["STATE_DIRECTORY"] == str(host.base)
    assert every["UUID"] == view.UUID and len(view.UUID) == 36
    assert every["RUNTIME"] == RUNC
    text = config["annotations"]["every"]
    for var in ("EXEC_START", "EXEC_STOP", "EXEC_STARTPRE", "EXEC_STOPPOST"):
        assert f"{var}=" in text
    assert f"run --bundle {deployment} --pid-file {host.rundir}/container-tpl.pid tpl" in text
    assert "kill tpl 9" in text  # the image's StopSignal
    assert config["process"]["env"] == ["PATH=/bin", "GREETING=hello", f"UUID={view.UUID}"]
    assert config["process"]["args"][4] == f"127.0.0.1:{port}"  # --set beat defaultValues
    assert config["hostname"] == "tpl"

    unit = host.unit("tpl")
    verify_unit(unit)
    entries = unit_entries(unit)
    assert entries["Description"] == ["templated tpl from localhost/tpl:latest"]
    assert entries["Environment"] == [f"GREETING=hello PORT={port}"]
    tmpfiles = host.tmpfiles / "tpl.conf"
    assert tmpfiles.read_text() == f"d {host.base}/tpl 0700 {os.getuid()} {os.getgid()} -\n"
    tool = host.hostroot / "usr/local/bin/$tool"
    assert tool.read_text() == "#!/bin/sh\necho tpl hello $HOME\n"
    assert tool.stat().st_mode & 0o777 == 0o755
    assert (host.hostroot / "etc/plain.conf").read_text() == "left $ALONE\n"  # not a template
    assert sorted(view.InstalledFiles) == sorted(
        [str(unit), str(tmpfiles), str(tool), str(host.hostroot / "etc/plain.conf")]
    )
    assert report.notes == [n for n in report.notes if "systemd" in n]
    serve_and_stop(host, unit, port, "templated\n")


@needs_root_and_runc
def test_a_variable_without_value_is_an_error_naming_it(host: Host, tmp_shm: Path) -> None:
    image = build_busybox_layout(
        tmp_shm / "layout",
        tag="novalue",
        extra_files={"exports/service.template": b"[Service]\nExecStart=/bin/true $MISSING_ONE\n"},
    )
    with pytest.raises(TemplateError, match=r"service.template uses \$MISSING_ONE"):
        host.install(image.reference, "novalue")
    assert_nothing_installed(host, "novalue")
    # the same image with the value given installs
    host.install(image.reference, "novalue", values={"MISSING_ONE": "x"})
    assert "ExecStart=/bin/true x" in host.unit("novalue").read_text()


@needs_root_and_runc
def test_a_config_template_that_is_not_json_is_refused(host: Host, tmp_shm: Path) -> None:
    image = build_busybox_layout(
        tmp_shm / "layout",
        tag="notjson",
        extra_files={"exports/config.json.template": b'{"root": {"path": $NAME}}'},
    )
    with pytest.raises(TemplateError, match=r"config\.json\.template is not JSON"):
        host.install(image.reference, "notjson")
    assert_nothing_installed(host, "notjson")


@needs_root_and_runc
def test_hostfs_never_overwrites_a_host_file_unless_forced(host: Host, tmp_shm: Path) -> None:
    image = build_busybox_layout(
        tmp_shm / "layout",
        tag="hostfs",
        extra_files={"exports/hostfs/etc/tool.conf": b"from the image\n"},
        config_overrides={"config": {"Cmd": ["/bin/busybox", "true"]}},
    )
    existing = host.hostroot / "etc" / "tool.conf"
    existing.parent.mkdir(parents=True)
    existing.write_text("the admin's\n")
    with pytest.raises(SystemContainerError, match=r"would overwrite .*tool\.conf"):
        host.install(image.reference, "hostfs")
    assert existing.read_text() == "the admin's\n"
    assert_nothing_installed(host, "hostfs")
    # another system container cannot take it either, even forced
    host.install(image.reference, "hostfs", force=True)
    assert existing.read_text() == "from the image\n"
    with pytest.raises(SystemContainerError, match="system container hostfs installed"):
        host.install(image.reference, "hostfs2", force=True)
    # a unit of the same name that is not ours is protected the same way
    host.units.mkdir(exist_ok=True)
    (host.units / "mine.service").write_text("[Service]\nExecStart=/bin/true\n")
    # a directory in the way is refused before anything changes, --force or not
    (host.hostroot / "etc/tool.conf.d").mkdir()
    dirimage = build_busybox_layout(
        tmp_shm / "dir", tag="d", extra_files={"exports/hostfs/etc/tool.conf.d": b"x"}
    )
    with pytest.raises(SystemContainerError, match="would replace the directory"):
        host.install(dirimage.reference, "dirs", force=True)
    assert_nothing_installed(host, "dirs")
    plain = web_image(tmp_shm / "plain", "plain", free_port())
    with pytest.raises(SystemContainerError, match=r"would overwrite .*/mine\.service, not"):
        host.install(plain.reference, "mine")
    assert (host.units / "mine.service").read_text() == "[Service]\nExecStart=/bin/true\n"
    # uninstall keeps a hostfs file the admin changed since
    existing.write_text("edited\n")
    report = sc.uninstall(host.ctx, "hostfs", ChangeOptions())
    assert existing.read_text() == "edited\n"
    assert any("kept" in n and "tool.conf" in n for n in report.notes)


@needs_root_and_runc
def test_no_container_service_installs_only_files(host: Host, tmp_shm: Path) -> None:
    image = build_busybox_layout(
        tmp_shm / "layout",
        tag="files",
        extra_files={
            "exports/manifest.json": b'{"noContainerService": true}',
            "exports/hostfs/usr/share/files/data": b"data\n",
        },
    )
    host.install(image.reference, "files")
    view = query.inspect_system_container(host.ctx, "files")
    assert view.NoContainerService and view.Unit == ""
    assert not host.unit("files").exists()
    assert not (host.deployments / "files.0" / "config.json").exists()
    data = host.hostroot / "usr/share/files/data"
    assert data.read_text() == "data\n"
    sc.uninstall(host.ctx, "files", ChangeOptions())
    assert not (host.hostroot / "usr").exists()  # directories skiff made went too


@needs_root_and_runc
def test_rootfs_option_runs_on_a_host_directory(host: Host, tmp_shm: Path) -> None:
    port = free_port()
    image = web_image(tmp_shm / "layout", "web", port, page=b"image\n")
    external = tmp_shm / "external"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{image.layout}:web", str(tmp_shm / "b")],
        check=True,
        capture_output=True,
    )
    shutil.move(tmp_shm / "b" / "rootfs", external)
    (external / "var/www/index.html").write_text("external\n")
    host.install(image.reference, "ext", rootfs=external)
    config = json.loads((host.deployments / "ext.0/config.json").read_text())
    assert config["root"] == {"path": str(external), "readonly": True}
    assert query.inspect_system_container(host.ctx, "ext").Rootfs == str(external)
    serve_and_stop(host, host.unit("ext"), port, "external\n")


# --- update, rollback, uninstall --------------------------------------------------------------


def snapshot(host: Host) -> dict[str, list[str]]:
    """What system containers have on "the host" and in the store."""

    def tree(path: Path) -> list[str]:
        if not path.exists():
            return []
        return sorted(str(p.relative_to(path)) for p in path.rglob("*"))

    return {
        "units": tree(host.units),
        "tmpfiles": tree(host.tmpfiles),
        "hostroot": tree(host.hostroot),
        "deployments": tree(host.deployments),
        "objects": tree(host.objects),
    }


def assert_nothing_installed(host: Host, name: str) -> None:
    assert not (host.deployments / name).is_symlink()
    assert not glob.glob(str(host.deployments / f"{name}.*"))
    assert not glob.glob(str(host.deployments / ".staging-*"))
    assert all(v.Name != name for v in query.list_system_containers(host.ctx))
    assert not host.unit(name).exists()


@needs_root_and_runc
def test_update_rollback_uninstall_leaves_nothing_behind(host: Host, tmp_shm: Path) -> None:
    port = free_port()
    layout = tmp_shm / "layout"
    templated_image(layout, "app", port_default=str(port), page=b"one\n")
    before = snapshot(host)
    host.install(f"oci:{layout}:app", "app")
    serve_and_stop(host, host.unit("app"), port, "one\n")

    # nothing new: no new deployment
    same = sc.update(host.ctx, "app", UpdateOptions())
    assert not same.changed and same.deployment == 0

    templated_image(layout, "app", port_default=str(port), page=b"two\n")
    report = sc.update(host.ctx, "app", UpdateOptions())
    assert report.changed and report.deployment == 1
    assert os.readlink(host.deployments / "app") == "app.1"
    unit_text = host.unit("app").read_text()
    assert str(host.deployments / "app.1") in unit_text
    verify_unit(host.unit("app"))
    serve_and_stop(host, host.unit("app"), port, "two\n")
    # the busybox binary is one object for both deployments
    a, b = (host.deployments / f"app.{i}/rootfs/bin/busybox" for i in (0, 1))
    assert a.stat().st_ino == b.stat().st_ino

    back = sc.rollback(host.ctx, "app", ChangeOptions())
    assert back.deployment == 0
    assert os.readlink(host.deployments / "app") == "app.0"
    assert str(host.deployments / "app.0") in host.unit("app").read_text()
    serve_and_stop(host, host.unit("app"), port, "one\n")
    view = query.inspect_system_container(host.ctx, "app")
    assert [(d.Index, d.Active) for d in view.Deployments] == [(0, True), (1, False)]

    # updating again replaces the inactive deployment
    templated_image(layout, "app", port_default=str(port), page=b"three\n")
    sc.update(host.ctx, "app", UpdateOptions())
    serve_and_stop(host, host.unit("app"), port, "three\n")

    sc.uninstall(host.ctx, "app", ChangeOptions())
    assert snapshot(host) == before
    assert query.list_system_containers(host.ctx) == []
    with pytest.raises(SystemContainerError, match="not installed"):
        sc.uninstall(host.ctx, "app", ChangeOptions())


@needs_root_and_runc
def test_rebase_switches_image_and_keeps_values(host: Host, tmp_shm: Path) -> None:
    port = free_port()
    templated_image(tmp_shm / "one", "one", port_default="1", page=b"one\n")
    templated_image(tmp_shm / "two", "two", port_default="1", page=b"two\n")
    host.install(f"oci:{tmp_shm / 'one'}:one", "app", values={"PORT": str(port)})
    first = query.inspect_system_container(host.ctx, "app")
    sc.update(host.ctx, "app", UpdateOptions(rebase=f"oci:{tmp_shm / 'two'}:two"))
    view = query.inspect_system_container(host.ctx, "app")
    assert view.Image == f"oci:{tmp_shm / 'two'}:two"
    assert view.Values["PORT"] == str(port)
    assert view.UUID == first.UUID
    serve_and_stop(host, host.unit("app"), port, "two\n")


@needs_root_and_runc
def test_directories_must_match_the_recorded_ones(host: Host, tmp_shm: Path) -> None:
    image = web_image(tmp_shm / "layout", "web", free_port())
    host.install(image.reference, "web")
    with pytest.raises(UsageError, match="was installed with --systemd-dir"):
        sc.uninstall(host.ctx, "web", ChangeOptions(dirs=HostDirs(systemd_dir=tmp_shm / "else")))
    assert host.unit("web").exists()


# --- crashes ------------------------------------------------------------------------------------


def run_cli(
    host: Host, *args: str | Path, crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop(sc.CRASH_ENV, None)
    if crash_at is not None:
        env[sc.CRASH_ENV] = crash_at
    return subprocess.run(
        host.skiff_argv(*args), capture_output=True, text=True, env=env, timeout=120, check=False
    )


def assert_consistent(host: Host, name: str, port: int, expect: str) -> None:
    """After a command (recovery) the record, the symlink and the unit agree, and it serves."""
    view = query.inspect_system_container(host.ctx, name)
    assert os.readlink(host.deployments / name) == f"{name}.{view.Deployment}"
    assert f"{name}.{view.Deployment}" in host.unit(name).read_text()
    serve_and_stop(host, host.unit(name), port, expect)


@needs_root_and_runc
@pytest.mark.slow
@pytest.mark.parametrize("point", ["deployed", "switched", "files", "record"])
def test_update_killed_at_each_step_leaves_a_working_service(
    host: Host, tmp_shm: Path, point: str
) -> None:
    port = free_port()
    layout = tmp_shm / "layout"
    web_image(layout, "web", port, page=b"old\n")
    ok = run_cli(
        host,
        "system-container",
        "install",
        "-q",
        "--name",
        "web",
        "--set",
        f"RUN_DIRECTORY={host.rundir}",
        *host.dir_flags(),
        f"oci:{layout}:web",
    )
    assert ok.returncode == 0, ok.stderr
    web_image(layout, "web", port, page=b"new\n")
    killed = run_cli(host, "system-container", "update", "-q", "web", crash_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # right after the kill: the unit on the host runs a complete deployment
    served = "old\n" if point in ("deployed", "switched") else "new\n"
    serve_and_stop(host, host.unit("web"), port, served)
    # the next command puts everything in line with the symlink
    listed = run_cli(host, "system-container", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    active = "old\n" if point == "deployed" else "new\n"
    assert_consistent(host, "web", port, active)
    if point == "deployed":  # the slot the killed update built was never active: gone
        assert not (host.deployments / "web.1").exists()
        assert [d.Index for d in query.inspect_system_container(host.ctx, "web").Deployments] == [0]
    # and the container can still be updated, rolled back and removed cleanly
    if point == "deployed":
        assert run_cli(host, "system-container", "update", "-q", "web").returncode == 0
    assert run_cli(host, "system-container", "rollback", "web").returncode == 0
    assert_consistent(host, "web", port, "old\n")
    assert run_cli(host, "system-container", "uninstall", "web").returncode == 0
    assert_nothing_installed(host, "web")
    assert ObjectStore(host.objects).count() == 0


@needs_root_and_runc
@pytest.mark.slow
@pytest.mark.parametrize("point", ["deployed", "switched", "files", "record"])
def test_first_install_killed_at_each_step(host: Host, tmp_shm: Path, point: str) -> None:
    port = free_port()
    image = web_image(tmp_shm / "layout", "web", port)
    install = (
        "system-container",
        "install",
        "-q",
        "--name",
        "web",
        "--set",
        f"RUN_DIRECTORY={host.rundir}",
        *host.dir_flags(),
        image.reference,
    )
    killed = run_cli(host, *install, crash_at=point)
    assert killed.returncode == -signal.SIGKILL
    listed = run_cli(host, "system-container", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    names = [v["Name"] for v in json.loads(listed.stdout)]
    if point == "deployed":  # before the switch: as if nothing happened
        assert names == []
        assert_nothing_installed(host, "web")
        assert run_cli(host, *install).returncode == 0
    else:
        assert names == ["web"]
    assert_consistent(host, "web", port, "v1\n")


@needs_root_and_runc
@pytest.mark.slow
@pytest.mark.parametrize("point", ["switched", "files", "record"])
def test_rollback_killed_at_each_step(host: Host, tmp_shm: Path, point: str) -> None:
    port = free_port()
    layout = tmp_shm / "layout"
    web_image(layout, "web", port, page=b"old\n")
    host.install(f"oci:{layout}:web", "web")
    web_image(layout, "web", port, page=b"new\n")
    sc.update(host.ctx, "web", UpdateOptions())
    killed = run_cli(host, "system-container", "rollback", "web", crash_at=point)
    assert killed.returncode == -signal.SIGKILL
    assert run_cli(host, "system-container", "list").returncode == 0
    assert_consistent(host, "web", port, "old\n")


@needs_root_and_runc
@pytest.mark.slow
@pytest.mark.parametrize("point", ["uninstall-files", "unlinked"])
def test_uninstall_killed_is_finished_by_the_next_command(
    host: Host, tmp_shm: Path, point: str
) -> None:
    image = templated_image(tmp_shm / "layout", "tpl", port_default="1")
    before = snapshot(host)
    host.install(image.reference, "tpl")
    killed = run_cli(host, "system-container", "uninstall", "tpl", crash_at=point)
    assert killed.returncode == -signal.SIGKILL
    again = run_cli(host, "system-container", "uninstall", "tpl")
    assert again.returncode == 0, again.stderr
    assert snapshot(host) == before


@needs_root_and_runc
@pytest.mark.slow
def test_uninstall_works_when_the_interrupted_change_cannot_be_completed(
    host: Host, tmp_shm: Path
) -> None:
    layout = tmp_shm / "layout"
    web_image(layout, "web", free_port(), page=b"old\n", files={"exports/hostfs/etc/w": b"w"})
    host.install(f"oci:{layout}:web", "web")
    web_image(layout, "web", free_port(), page=b"new\n", files={"exports/hostfs/etc/w2": b"2"})
    killed = run_cli(host, "system-container", "update", "-q", "web", crash_at="switched")
    assert killed.returncode == -signal.SIGKILL
    # something now stands where the unit must go: completing the update fails
    host.unit("web").unlink()
    host.unit("web").mkdir()
    listed = run_cli(host, "system-container", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert "could not complete the interrupted change of web" in listed.stderr
    removed = run_cli(host, "system-container", "uninstall", "web")
    assert removed.returncode == 0, removed.stderr
    assert f"kept {host.unit('web')}: it is no longer a file" in removed.stderr
    assert not (host.deployments / "web").is_symlink()
    assert list(host.deployments.iterdir()) == []
    assert ObjectStore(host.objects).count() == 0
    assert not (host.hostroot / "etc/w").exists() and not (host.hostroot / "etc/w2").exists()
    assert query.list_system_containers(host.ctx) == []


@needs_root_and_runc
@pytest.mark.slow
def test_update_killed_from_outside_during_checkout(host: Host, tmp_shm: Path) -> None:
    """A real outside ``kill -9`` while the new deployment is being checked out."""
    port = free_port()
    layout = tmp_shm / "layout"
    web_image(layout, "web", port, page=b"old\n")
    host.install(f"oci:{layout}:web", "web")
    many = {f"data/{i // 100}/{i}.txt": f"file {i}\n".encode() for i in range(4000)}
    web_image(layout, "web", port, page=b"new\n", files=many)
    process = subprocess.Popen(
        host.skiff_argv("system-container", "update", "-q", "web"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    try:
        while not glob.glob(str(host.deployments / ".staging-web.1-*/rootfs/data/3*")):
            assert process.poll() is None, "update finished before the checkout was seen"
            assert time.monotonic() < deadline, "no checkout started"
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
    assert os.readlink(host.deployments / "web") == "web.0"
    serve_and_stop(host, host.unit("web"), port, "old\n")
    assert run_cli(host, "system-container", "list").returncode == 0
    assert not glob.glob(str(host.deployments / ".staging-*"))
    assert run_cli(host, "system-container", "update", "-q", "web").returncode == 0
    assert_consistent(host, "web", port, "new\n")


# --- bad input and policy -------------------------------------------------------------------


@needs_root_and_runc
def test_the_trust_policy_applies(host: Host, tmp_shm: Path) -> None:
    from skiff.errors import PolicyRejected

    image = web_image(tmp_shm / "layout", "web", free_port())
    host.policy.write_text(json.dumps({"default": [{"type": "reject"}]}))
    with pytest.raises(PolicyRejected):
        host.install(image.reference, "web")
    assert_nothing_installed(host, "web")


@pytest.mark.parametrize(
    "name", ["", "-x", "a/b", "a b", "x.0", "etcd.12", "x@y", "x.service", "é", "a" * 201]
)
def test_names_that_are_not_unit_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError):
        check_name(name)


@pytest.mark.parametrize("name", ["etcd", "flannel-1", "a.b_c", "_x", "A" * 200])
def test_unit_names_are_accepted(name: str) -> None:
    check_name(name)


def test_substitution_rules() -> None:
    values = {"A": "1", "LONG_NAME": "two"}
    assert substitute("$A ${A}x $LONG_NAME $$A $$ $1 ${", values, what="t") == "1 1x two $A $ $1 ${"
    with pytest.raises(TemplateError, match=r"t uses \$B, \$C, which have no value"):
        substitute("$B ${C} $A", values, what="t")


def test_set_values_are_checked() -> None:
    assert parse_set_values(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    for bad in ("A", "1A=2", "A-B=1", "NAME=x", "DESTDIR=/x", "A=x\ny"):
        with pytest.raises(UsageError):
            parse_set_values([bad])


def test_ordering_labels_name_units_only() -> None:
    assert ordering_from_labels({"after": "etcd.service, network-online.target"}) == {
        "After": ["etcd.service", "network-online.target"]
    }
    with pytest.raises(SystemContainerError):
        ordering_from_labels({"after": "etcd.service\nExecStartPre=/bin/evil"})


def test_exec_arguments_are_quoted_for_systemd() -> None:
    assert quote_exec_arg("/usr/sbin/runc") == "/usr/sbin/runc"
    assert quote_exec_arg("/a b/c") == '"/a b/c"'
    assert quote_exec_arg("100%") == "100%%"
    assert quote_exec_arg("$HOME") == '"$$HOME"'
    assert exec_argv(quote_exec_arg('a "b" $c%d'))[0] == ['a "b" $c%d']
