"""``skiff login`` / ``skiff logout`` end to end against the auth registries.

login must check the credentials with the registry before storing them,
and store them where podman keeps them ($XDG_RUNTIME_DIR/containers/
auth.json), so podman and skopeo use what skiff stored and the reverse.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from skiff.testing.busybox import BusyboxImage
from skiff.testing.cli import CliEnv
from skiff.testing.registry import RunningRegistry

needs_podman = pytest.mark.skipif(
    shutil.which("podman") is None or shutil.which("skopeo") is None,
    reason="needs podman and skopeo",
)


@pytest.fixture
def cli(tmp_shm: Path) -> CliEnv:
    return CliEnv(tmp_shm / "cli")


def _login(
    cli: CliEnv, registry: RunningRegistry, user: str, password: str, expect: int = 0
) -> str:
    assert registry.cert_dir is not None
    result = cli.skiff(
        "login",
        "--cert-dir",
        registry.cert_dir,
        "--username",
        user,
        "--password-stdin",
        registry.host,
        input_text=password + "\n",
        expect=expect,
    )
    return result.stdout if expect == 0 else result.stderr


@pytest.mark.parametrize("fixture", ["auth_registry", "token_registry"])
def test_login_checks_and_stores_where_podman_looks(
    cli: CliEnv, request: pytest.FixtureRequest, fixture: str
) -> None:
    registry: RunningRegistry = request.getfixturevalue(fixture)
    assert registry.credentials is not None
    user, password = registry.credentials.username, registry.credentials.password
    assert _login(cli, registry, user, password) == "Login Succeeded!\n"
    stored = json.loads(cli.auth_file.read_text())
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert stored["auths"][registry.host]["auth"] == token
    assert cli.auth_file.stat().st_mode & 0o077 == 0
    assert cli.skiff("login", "--get-login", registry.host).stdout == f"{user}\n"


@pytest.mark.parametrize("fixture", ["auth_registry", "token_registry"])
def test_wrong_password_stores_nothing(
    cli: CliEnv, request: pytest.FixtureRequest, fixture: str
) -> None:
    registry: RunningRegistry = request.getfixturevalue(fixture)
    assert registry.credentials is not None
    stderr = _login(cli, registry, registry.credentials.username, "wrong", expect=125)
    assert stderr.startswith("Error: ") and len(stderr.splitlines()) == 1
    assert "Traceback" not in stderr
    assert not cli.auth_file.exists()


def test_login_refuses_an_untrusted_certificate(
    cli: CliEnv, auth_registry: RunningRegistry
) -> None:
    assert auth_registry.credentials is not None
    line = cli.fails(
        "login",
        "-u",
        auth_registry.credentials.username,
        "--password-stdin",
        auth_registry.host,
        input_text=auth_registry.credentials.password + "\n",
    )
    assert "certificate" in line.lower() or "tls" in line.lower()
    assert not cli.auth_file.exists()


def test_login_without_a_password_on_a_pipe_fails(
    cli: CliEnv, auth_registry: RunningRegistry
) -> None:
    line = cli.fails("login", "-u", "someone", auth_registry.host)
    assert "password" in line


def test_logout_removes_one_or_all(
    cli: CliEnv, auth_registry: RunningRegistry, token_registry: RunningRegistry
) -> None:
    for registry in (auth_registry, token_registry):
        assert registry.credentials is not None
        _login(cli, registry, registry.credentials.username, registry.credentials.password)
    out = cli.skiff("logout", auth_registry.host).stdout
    assert out == f"Removed login credentials for {auth_registry.host}\n"
    auths = json.loads(cli.auth_file.read_text())["auths"]
    assert list(auths) == [token_registry.host]
    assert "not logged into" in cli.fails("logout", auth_registry.host)
    assert "not logged into" in cli.fails("login", "--get-login", auth_registry.host)
    cli.skiff("logout", "--all")
    assert json.loads(cli.auth_file.read_text())["auths"] == {}


@needs_podman
def test_podman_and_skopeo_use_what_skiff_stored(
    cli: CliEnv, auth_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    assert auth_registry.credentials is not None and auth_registry.cert_dir is not None
    creds = auth_registry.credentials
    _login(cli, auth_registry, creds.username, creds.password)
    assert cli.podman("login", "--get-login", auth_registry.host).stdout == f"{creds.username}\n"
    ref = f"docker://{auth_registry.host}/{unique_repo}:v1"
    # no --creds anywhere: both read the auth file skiff wrote
    cli.skiff(
        "image", "copy", "--dest-cert-dir", auth_registry.cert_dir, busybox_layout.reference, ref
    )
    inspected = cli.skopeo("inspect", "--cert-dir", auth_registry.cert_dir, ref).json()
    assert inspected["Digest"] == str(busybox_layout.manifest_digest)
    cli.skiff("logout", auth_registry.host)
    cli.podman("login", "--get-login", auth_registry.host, expect=125)


@needs_podman
def test_skiff_uses_what_podman_stored(
    cli: CliEnv, auth_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    assert auth_registry.credentials is not None and auth_registry.cert_dir is not None
    creds = auth_registry.credentials
    cli.podman(
        "login",
        "--cert-dir",
        auth_registry.cert_dir,
        "-u",
        creds.username,
        "--password-stdin",
        auth_registry.host,
        input_text=creds.password + "\n",
    )
    assert cli.skiff("login", "--get-login", auth_registry.host).stdout == f"{creds.username}\n"
    ref = f"docker://{auth_registry.host}/{unique_repo}:v1"
    cli.skiff(
        "image", "copy", "--dest-cert-dir", auth_registry.cert_dir, busybox_layout.reference, ref
    )
    tags = cli.skiff(
        "image", "list-tags", "--cert-dir", auth_registry.cert_dir, ref.rsplit(":", 1)[0]
    )
    assert tags.json()["Tags"] == ["v1"]
    # logged out by skiff: podman no longer finds the entry
    cli.skiff("logout", auth_registry.host)
    cli.podman("login", "--get-login", auth_registry.host, expect=125)


def test_authfile_flags_choose_the_credentials_file(
    cli: CliEnv, auth_registry: RunningRegistry, busybox_layout: BusyboxImage, unique_repo: str
) -> None:
    assert auth_registry.credentials is not None and auth_registry.cert_dir is not None
    creds = auth_registry.credentials
    authfile = cli.base / "elsewhere" / "auth.json"
    cli.skiff(
        "login", "--authfile", authfile, "--cert-dir", auth_registry.cert_dir,
        "-u", creds.username, "--password-stdin", auth_registry.host,
        input_text=creds.password + "\n",
    )  # fmt: skip
    assert authfile.exists() and not cli.auth_file.exists()
    ref = f"docker://{auth_registry.host}/{unique_repo}:v1"
    certs = ("--dest-cert-dir", auth_registry.cert_dir)
    # the default file has nothing: refused
    line = cli.fails("image", "copy", "--retry-times", "0", *certs, busybox_layout.reference, ref)
    assert "authentication" in line.lower() or "unauthorized" in line.lower()
    # --authfile (both sides) and --dest-authfile (this side) find the credentials
    cli.skiff("image", "copy", "--authfile", authfile, *certs, busybox_layout.reference, ref)
    cli.skiff("image", "copy", "--dest-authfile", authfile, *certs, busybox_layout.reference, ref)
    out = cli.base / "pulled"
    cli.skiff(
        "image", "copy", "--src-authfile", authfile, "--src-cert-dir", auth_registry.cert_dir,
        ref, f"oci:{out}",
    )  # fmt: skip
    inspected = cli.skiff(
        "image", "inspect", "--authfile", authfile, "--cert-dir", auth_registry.cert_dir, ref
    ).json()
    assert inspected["Digest"] == str(busybox_layout.manifest_digest)
    cli.skiff("logout", "--authfile", authfile, auth_registry.host)
    assert json.loads(authfile.read_text())["auths"] == {}
