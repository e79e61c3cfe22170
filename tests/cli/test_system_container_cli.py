"""``skiff system-container`` end to end, as an administrator types it.

The installed ``skiff`` with a private store (``CliEnv``) and private unit,
tmpfiles and host directories, pulling from the real test registry over
plain HTTP (``--tls-verify=false``). The whole life of a system container:
install (its name taken from the repository), list as a table and as JSON,
inspect as JSON and with ``--format '{{.Rootfs}}'``, update after a new
image was pushed, rollback, uninstall; and the failures a user meets, each
one ``Error:`` line with exit 125.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from skiff.image.copy import CopyOptions, copy_image
from skiff.image.transports import parse_image_name
from skiff.testing.busybox import BusyboxImage, build_busybox_layout
from skiff.testing.cli import CliEnv
from skiff.testing.registry import RunningRegistry

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None,
    reason="system containers are checked out as root and run with runc",
)


class Admin(CliEnv):
    """A CliEnv with the host directories system containers write to."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.units = base / "units"
        self.tmpfiles = base / "tmpfiles.d"
        self.hostroot = base / "host"
        self.rundir = base / "run"
        for path in (self.hostroot, self.rundir):
            path.mkdir()

    def dirs(self) -> list[str]:
        return [
            "--systemd-dir",
            str(self.units),
            "--tmpfiles-dir",
            str(self.tmpfiles),
            "--host-root",
            str(self.hostroot),
        ]

    def sc(self, *args: str | Path, expect: int | None = 0) -> str:
        return self.skiff("system-container", *args, expect=expect).stdout

    def sc_fails(self, *args: str | Path) -> str:
        return self.fails("system-container", *args)


@pytest.fixture
def admin(tmp_shm: Path) -> Admin:
    return Admin(tmp_shm / "admin")


def push(image: BusyboxImage, registry: RunningRegistry, repo: str) -> str:
    copy_image(
        parse_image_name(image.reference),
        parse_image_name(f"docker://{registry.host}/{repo}"),
        CopyOptions(),
        registry.context,
        registry.context,
    )
    return f"{registry.host}/{repo}"


def web(layout: Path, page: bytes, **extra: bytes) -> BusyboxImage:
    return build_busybox_layout(
        layout,
        tag="latest",
        extra_files={
            "var/www/index.html": page,
            **{k.replace("__", "/"): v for k, v in extra.items()},
        },
        config_overrides={
            "config": {
                "Entrypoint": [
                    "/bin/busybox",
                    "httpd",
                    "-f",
                    "-p",
                    "127.0.0.1:1",
                    "-h",
                    "/var/www",
                ],
                "Cmd": [],
                "Labels": {"after": "etcd.service"},
            }
        },
    )


def test_the_life_of_a_system_container(
    admin: Admin, tmp_shm: Path, registry: RunningRegistry, unique_repo: str
) -> None:
    repo = f"{unique_repo}/flannel"
    name = push(web(tmp_shm / "v1", b"v1\n"), registry, repo)
    out = admin.skiff(
        "system-container",
        "install",
        "--tls-verify=false",
        "--set",
        f"RUN_DIRECTORY={admin.rundir}",
        "--set",
        "FLAVOUR=vanilla",
        *admin.dirs(),
        name,
    )
    unit = admin.units / "flannel.service"
    assert f"installed {unit}" in out.stdout.splitlines()
    assert "Note: systemd is not running: skipped systemctl daemon-reload" in out.stderr
    assert "Note: systemd is not running: skipped systemctl enable flannel.service" in out.stderr
    assert "After=etcd.service" in unit.read_text()

    listed = json.loads(admin.sc("list", "--format", "json"))
    assert [v["Name"] for v in listed] == ["flannel"]
    inspected = json.loads(admin.sc("inspect", "flannel"))
    assert len(inspected) == 1
    record = inspected[0]
    for key in ("Name", "Image", "ImageID", "Deployment", "Rootfs", "Unit", "Values"):
        assert key in record
    assert record["Image"] == name and record["Deployment"] == 0
    assert record["Values"] == {"RUN_DIRECTORY": str(admin.rundir), "FLAVOUR": "vanilla"}
    table = [line.split() for line in admin.sc("list").splitlines()]
    assert table == [
        ["NAME", "IMAGE", "IMAGE", "ID", "DEPLOYMENT", "UNIT"],
        ["flannel", name, record["ImageID"][:12], "0", str(unit)],
    ]
    rootfs = admin.sc("inspect", "--format", "{{.Rootfs}}", "flannel")
    assert rootfs == record["Rootfs"] + "\n"
    assert Path(record["Rootfs"], "var/www/index.html").read_text() == "v1\n"
    assert admin.sc("list", "--format", "{{.Name}} {{.Deployment}}") == "flannel 0\n"

    # nothing new in the registry: nothing changes
    same = admin.skiff("system-container", "update", "-q", "--tls-verify=false", "flannel")
    assert "already runs the latest" in same.stderr

    push(web(tmp_shm / "v2", b"v2\n"), registry, repo)
    admin.sc("update", "-q", "--tls-verify=false", "flannel")
    after = json.loads(admin.sc("inspect", "flannel"))[0]
    assert after["Deployment"] == 1 and after["ImageID"] != record["ImageID"]
    assert after["Values"] == record["Values"] and after["UUID"] == record["UUID"]
    assert Path(after["Rootfs"], "var/www/index.html").read_text() == "v2\n"
    assert f"WorkingDirectory={Path(after['Rootfs']).parent}\n" in unit.read_text()

    back = admin.sc("rollback", "flannel")
    assert "switched flannel to deployment 0" in back
    assert admin.sc("inspect", "--format", "{{.Deployment}}", "flannel") == "0\n"
    assert f"WorkingDirectory={Path(record['Rootfs']).parent}\n" in unit.read_text()

    gone = admin.sc("uninstall", "flannel")
    assert f"removed {unit}" in gone.splitlines()
    assert not unit.exists()
    assert json.loads(admin.sc("list", "--format", "json")) == []
    assert admin.sc("list", "--noheading") == ""
    deployments = admin.root / "system-containers" / "deployments"
    assert list(deployments.iterdir()) == []
    assert list((admin.root / "system-containers" / "objects").iterdir()) == []


def test_failures_are_one_line_errors(
    admin: Admin, tmp_shm: Path, registry: RunningRegistry, unique_repo: str
) -> None:
    image = web(tmp_shm / "img", b"x\n")
    ref = image.reference
    assert "not a valid unit name" in admin.sc_fails(
        "install", "-q", "--name", "a/b", *admin.dirs(), ref
    )
    assert "may not end in '.<number>'" in admin.sc_fails(
        "install", "-q", "--name", "etcd.1", *admin.dirs(), ref
    )
    assert "$NAME is computed by skiff" in admin.sc_fails(
        "install", "-q", "--name", "x", "--set", "NAME=y", *admin.dirs(), ref
    )
    assert "is not installed" in admin.sc_fails("inspect", "nothing")
    assert "is not installed" in admin.sc_fails("uninstall", "nothing")
    assert "is not installed" in admin.sc_fails("update", "nothing")

    bad = build_busybox_layout(
        tmp_shm / "bad",
        extra_files={"exports/config.json.template": b'{"process": [$NAME}'},
    )
    message = admin.sc_fails("install", "-q", "--name", "bad", *admin.dirs(), bad.reference)
    assert "config.json.template is not JSON" in message
    unknown = build_busybox_layout(
        tmp_shm / "unknown",
        extra_files={"exports/tmpfiles.template": b"d /run/$NOPE 0755 root root -\n"},
    )
    message = admin.sc_fails("install", "-q", "--name", "unknown", *admin.dirs(), unknown.reference)
    assert "tmpfiles.template uses $NOPE, which has no value" in message
    assert "--set NOPE=VALUE" in message

    admin.sc("install", "-q", "--name", "web", *admin.dirs(), ref)
    assert "already installed" in admin.sc_fails(
        "install", "-q", "--name", "web", *admin.dirs(), ref
    )
    assert "no previous deployment" in admin.sc_fails("rollback", "web")
    wrong = admin.sc_fails("uninstall", "--systemd-dir", tmp_shm / "elsewhere", "web")
    assert f"was installed with --systemd-dir {admin.units}" in wrong
    assert "Error: " not in admin.skiff("system-container", "uninstall", "web").stderr

    # a plain-HTTP registry needs --tls-verify=false
    name = push(image, registry, f"{unique_repo}/web")
    assert "web" in admin.sc_fails("install", "-q", "--name", "web2", *admin.dirs(), name)
    assert admin.sc("list", "--noheading") == ""


def test_help_names_every_command(admin: Admin) -> None:
    text = admin.skiff("system-container", "--help", expect=0).stdout
    for command in ("install", "uninstall", "update", "rollback", "list", "inspect"):
        assert command in text
    install_help = admin.skiff("system-container", "install", "--help").stdout
    for flag in ("--name", "--set", "--rootfs", "--tls-verify", "--systemd-dir"):
        assert flag in install_help
