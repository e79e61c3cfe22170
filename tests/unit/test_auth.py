"""auth.json: lookup order, key specificity, legacy keys, atomic writes, login keys."""

from __future__ import annotations

import base64
import json
import logging
import resource
import signal
import stat
from pathlib import Path

import pytest

from skiff.config import SystemContext
from skiff.errors import ConfigError, UsageError
from skiff.image.auth import (
    Credentials,
    get_credentials,
    normalize_login_key,
    remove_all_credentials,
    remove_credentials,
    set_credentials,
    validate_key,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_auths(path: Path, auths: dict[str, object], **extra: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": auths, **extra}))
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated environment: HOME, XDG dirs, no Docker/auth env overrides."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    for name in ("XDG_CONFIG_HOME", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    return tmp_path / "cfg" / "auth.json"


@pytest.fixture
def ctx(auth_file: Path) -> SystemContext:
    return SystemContext(auth_file=auth_file)


# --- reading -------------------------------------------------------------------------------


def test_no_file_means_anonymous(ctx: SystemContext) -> None:
    assert get_credentials(ctx, "quay.io") is None


def test_most_specific_key_wins(ctx: SystemContext, auth_file: Path) -> None:
    write_auths(
        auth_file,
        {
            "reg.test": {"auth": b64("host:1")},
            "reg.test/ns": {"auth": b64("ns:2")},
            "reg.test/ns/repo": {"auth": b64("repo:3")},
            "reg.test:5000": {"auth": b64("port:4")},
        },
    )
    assert get_credentials(ctx, "reg.test", "ns/repo") == Credentials("repo", "3")
    assert get_credentials(ctx, "reg.test", "reg.test/ns/repo") == Credentials("repo", "3")
    assert get_credentials(ctx, "reg.test", "ns/repo/sub") == Credentials("repo", "3")
    assert get_credentials(ctx, "reg.test", "ns/other") == Credentials("ns", "2")
    assert get_credentials(ctx, "reg.test", "nsx/other") == Credentials("host", "1")
    assert get_credentials(ctx, "reg.test") == Credentials("host", "1")
    assert get_credentials(ctx, "reg.test:5000", "ns/repo") == Credentials("port", "4")
    assert get_credentials(ctx, "other.test", "ns/repo") is None


def test_password_may_contain_colons_and_trailing_nuls_are_dropped(
    ctx: SystemContext, auth_file: Path
) -> None:
    write_auths(auth_file, {"a.test": {"auth": b64("user:pa:ss\x00\x00")}})
    assert get_credentials(ctx, "a.test") == Credentials("user", "pa:ss")


def test_identity_token_is_returned(ctx: SystemContext, auth_file: Path) -> None:
    write_auths(auth_file, {"a.test": {"auth": b64("<token>:"), "identitytoken": "refresh"}})
    assert get_credentials(ctx, "a.test") == Credentials("<token>", "", "refresh")


@pytest.mark.parametrize(
    ("key", "registry"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io", "registry-1.docker.io"),
        ("http://reg.test:5000/v2/", "reg.test:5000"),
        ("https://reg.test", "reg.test"),
    ],
)
def test_legacy_and_url_keys_match_their_host(
    ctx: SystemContext, auth_file: Path, key: str, registry: str
) -> None:
    write_auths(auth_file, {key: {"auth": b64("u:p")}})
    assert get_credentials(ctx, registry, "library/busybox") == Credentials("u", "p")


def test_exact_key_beats_legacy_key(ctx: SystemContext, auth_file: Path) -> None:
    write_auths(
        auth_file,
        {
            "https://index.docker.io/v1/": {"auth": b64("old:1")},
            "docker.io": {"auth": b64("new:2")},
        },
    )
    assert get_credentials(ctx, "docker.io") == Credentials("new", "2")


def test_url_key_with_path_is_not_a_namespace(ctx: SystemContext, auth_file: Path) -> None:
    write_auths(auth_file, {"reg.test/ns": {"auth": b64("ns:1")}})
    assert get_credentials(ctx, "reg.test", "other/repo") is None


def test_creds_option_overrides_and_no_creds_disables(auth_file: Path) -> None:
    write_auths(auth_file, {"a.test": {"auth": b64("file:1")}})
    assert get_credentials(
        SystemContext(auth_file=auth_file, credentials=("cli", "2")), "a.test"
    ) == (Credentials("cli", "2"))
    assert get_credentials(SystemContext(auth_file=auth_file, no_creds=True), "a.test") is None


def test_fallback_files_in_podman_order(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = SystemContext()
    primary = tmp_path / "run" / "containers" / "auth.json"
    xdg = home / ".config" / "containers" / "auth.json"
    docker = home / ".docker" / "config.json"
    legacy = home / ".dockercfg"
    legacy.write_text(json.dumps({"https://legacy.test/v1/": {"auth": b64("legacy:5")}}))
    write_auths(
        docker, {"docker.test": {"auth": b64("docker:4")}, "xdg.test": {"auth": b64("no:0")}}
    )
    write_auths(xdg, {"xdg.test": {"auth": b64("xdg:3")}, "primary.test": {"auth": b64("no:0")}})
    write_auths(primary, {"primary.test": {"auth": b64("primary:2")}})
    assert ctx.auth_file_path() == primary
    assert get_credentials(ctx, "primary.test") == Credentials("primary", "2")
    assert get_credentials(ctx, "xdg.test") == Credentials("xdg", "3")
    assert get_credentials(ctx, "docker.test") == Credentials("docker", "4")
    assert get_credentials(ctx, "legacy.test") == Credentials("legacy", "5")

    # $DOCKER_CONFIG replaces ~/.docker
    other = tmp_path / "dockercfg"
    write_auths(other / "config.json", {"docker.test": {"auth": b64("env:6")}})
    monkeypatch.setenv("DOCKER_CONFIG", str(other))
    assert get_credentials(ctx, "docker.test") == Credentials("env", "6")
    # $XDG_CONFIG_HOME moves the containers file
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nowhere"))
    assert get_credentials(ctx, "xdg.test") is None


def test_explicit_auth_file_disables_fallbacks(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_auths(home / ".docker" / "config.json", {"docker.test": {"auth": b64("docker:1")}})
    assert get_credentials(SystemContext(), "docker.test") == Credentials("docker", "1")
    assert get_credentials(SystemContext(auth_file=tmp_path / "x.json"), "docker.test") is None
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "y.json"))
    assert get_credentials(SystemContext(), "docker.test") is None


def test_entry_without_colon_is_skipped_and_the_next_file_used(
    home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_auths(tmp_path / "run" / "containers" / "auth.json", {"a.test": {"auth": b64("nocolon")}})
    write_auths(home / ".docker" / "config.json", {"a.test": {"auth": b64("u:p")}})
    with caplog.at_level(logging.WARNING, logger="skiff.image.auth"):
        assert get_credentials(SystemContext(), "a.test") == Credentials("u", "p")
    assert "no ':'" in caplog.text
    assert "nocolon" not in caplog.text  # never log secrets


def test_empty_entry_of_a_credential_helper_is_skipped_quietly(
    ctx: SystemContext, auth_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_auths(
        auth_file, {"a.test": {}}, credHelpers={"a.test": "secretservice"}, credsStore="pass"
    )
    with caplog.at_level(logging.WARNING, logger="skiff.image.auth"):
        assert get_credentials(ctx, "a.test") is None
    assert "secretservice" in caplog.text
    assert "'pass'" in caplog.text
    assert "no ':'" not in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "malformed JSON"),
        ("", "malformed JSON"),
        ("[]", "not a JSON object"),
        ('{"auths": []}', '"auths" is not a JSON object'),
        ('{"auths": {"a.test": "x"}}', "is not a JSON object"),
        ('{"auths": {"a.test": {"auth": 5}}}', "must be strings"),
        ('{"auths": {"a.test": {"auth": "***"}}}', "not base64"),
    ],
)
def test_malformed_files_are_config_errors_naming_the_file(
    ctx: SystemContext, auth_file: Path, content: str, message: str
) -> None:
    auth_file.parent.mkdir(parents=True)
    auth_file.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        get_credentials(ctx, "a.test")
    assert str(auth_file) in str(info.value)


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials("user", "hunter2", "tok3n"))
    assert "user" in text
    assert "hunter2" not in text and "tok3n" not in text


# --- writing -----------------------------------------------------------------------------------


def test_set_creates_private_file_and_directory(ctx: SystemContext, auth_file: Path) -> None:
    written = set_credentials(ctx, "reg.test:5000", Credentials("alice", "pa:ss"))
    assert written == auth_file
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(auth_file.parent.stat().st_mode) == 0o700
    assert json.loads(auth_file.read_text()) == {
        "auths": {"reg.test:5000": {"auth": b64("alice:pa:ss")}}
    }
    assert get_credentials(ctx, "reg.test:5000", "any/repo") == Credentials("alice", "pa:ss")
    assert [p.name for p in auth_file.parent.iterdir()] == ["auth.json"]  # no temp file left


def test_set_replaces_atomically_and_keeps_unknown_fields(
    ctx: SystemContext, auth_file: Path
) -> None:
    write_auths(
        auth_file,
        {"keep.test": {"auth": b64("k:1"), "email": "x@y"}, "a.test": {"auth": b64("old:1")}},
        credHelpers={"helper.test": "pass"},
        HttpHeaders={"X-Meta": "1"},
    )
    inode = auth_file.stat().st_ino
    set_credentials(ctx, "a.test", Credentials("new", "2", identity_token="tok"))
    assert auth_file.stat().st_ino != inode  # a new file was renamed into place
    document = json.loads(auth_file.read_text())
    assert document["auths"]["a.test"] == {"auth": b64("new:2"), "identitytoken": "tok"}
    assert document["auths"]["keep.test"] == {"auth": b64("k:1"), "email": "x@y"}
    assert document["credHelpers"] == {"helper.test": "pass"}
    assert document["HttpHeaders"] == {"X-Meta": "1"}
    assert "\t" in auth_file.read_text()  # tab-indented like skopeo/podman


def test_set_for_a_repository_key(ctx: SystemContext) -> None:
    set_credentials(ctx, "reg.test/team", Credentials("team", "1"))
    set_credentials(ctx, "reg.test", Credentials("all", "2"))
    assert get_credentials(ctx, "reg.test", "team/app") == Credentials("team", "1")
    assert get_credentials(ctx, "reg.test", "other/app") == Credentials("all", "2")


def test_failed_write_leaves_the_old_file_and_no_temp_file(
    ctx: SystemContext, auth_file: Path
) -> None:
    write_auths(auth_file, {"a.test": {"auth": b64("u:p")}})
    before = auth_file.read_bytes()
    # a real write failure: the kernel refuses to grow any file past 16 bytes (EFBIG)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16, hard))
    try:
        with pytest.raises(ConfigError, match="cannot write credentials file"):
            set_credentials(ctx, "b.test", Credentials("x", "y"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert auth_file.read_bytes() == before
    assert [p.name for p in auth_file.parent.iterdir()] == ["auth.json"]


def test_remove_one(ctx: SystemContext, auth_file: Path) -> None:
    assert remove_credentials(ctx, "a.test") is False  # no file
    assert not auth_file.exists()
    write_auths(
        auth_file, {"a.test": {"auth": b64("u:p")}, "b.test": {"auth": b64("v:q")}}, credsStore="x"
    )
    assert remove_credentials(ctx, "a.test") is True
    assert remove_credentials(ctx, "a.test") is False
    document = json.loads(auth_file.read_text())
    assert document == {"auths": {"b.test": {"auth": b64("v:q")}}, "credsStore": "x"}


def test_remove_all(ctx: SystemContext, auth_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    remove_all_credentials(ctx)
    assert not auth_file.exists()  # nothing to do, nothing created
    write_auths(auth_file, {"a.test": {"auth": b64("u:p")}}, credHelpers={"h.test": "pass"})
    with caplog.at_level(logging.WARNING, logger="skiff.image.auth"):
        remove_all_credentials(ctx)
    assert json.loads(auth_file.read_text()) == {"auths": {}, "credHelpers": {"h.test": "pass"}}
    assert "credential helpers were not removed" in caplog.text


def test_writes_go_to_the_primary_file_only(home: Path, tmp_path: Path) -> None:
    docker = write_auths(home / ".docker" / "config.json", {"a.test": {"auth": b64("u:p")}})
    ctx = SystemContext()
    assert remove_credentials(ctx, "a.test") is False
    assert json.loads(docker.read_text())["auths"] != {}
    path = set_credentials(ctx, "a.test", Credentials("n", "1"))
    assert path == tmp_path / "run" / "containers" / "auth.json"


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("quay.io", ("quay.io", "quay.io")),
        ("https://quay.io/v1/", ("quay.io", "quay.io")),
        ("http://user@reg.test:5000/v2/x", ("reg.test:5000", "reg.test:5000")),
        ("https://index.docker.io/v1/", ("index.docker.io", "index.docker.io")),
        ("docker.io", ("docker.io", "docker.io")),
        ("docker.io/vendor", ("docker.io/vendor", "docker.io")),  # not library-normalized
        ("quay.io/ns/repo", ("quay.io/ns/repo", "quay.io")),
        ("localhost:5000/foo", ("localhost:5000/foo", "localhost:5000")),
    ],
)
def test_normalize_login_key(arg: str, expected: tuple[str, str]) -> None:
    assert normalize_login_key(arg) == expected


def test_normalize_login_key_without_repositories() -> None:
    assert normalize_login_key("quay.io/ns/repo", accept_repositories=False) == (
        "quay.io",
        "quay.io",
    )


@pytest.mark.parametrize(
    "arg",
    [
        "",
        "quay.io/ns/repo:tag",
        "quay.io/ns/Repo",
        "quay.io/ns@sha256:" + "0" * 64,
        "user/repo",
        "https://",
    ],
)
def test_normalize_login_key_rejects(arg: str) -> None:
    with pytest.raises(UsageError):
        normalize_login_key(arg)


@pytest.mark.parametrize(
    ("key", "namespaced"), [("quay.io", False), ("localhost:5000", False), ("quay.io/a/b", True)]
)
def test_validate_key(key: str, namespaced: bool) -> None:
    assert validate_key(key) is namespaced


@pytest.mark.parametrize("key", ["https://quay.io", "quay.io/a@sha256:x", "quay.io/a:tag", "/a"])
def test_validate_key_rejects(key: str) -> None:
    with pytest.raises(UsageError):
        validate_key(key)
