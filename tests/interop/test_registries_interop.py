"""registries.conf, short names and auth.json against skopeo and podman.

The peers are asked in ways that make them reveal their decisions: a pull
from a registry that has none of the candidates makes skopeo log every
source it tries ("Trying to access ...") and podman every short-name
candidate ("Trying to pull ..."), in order; those lists must equal what
skiff computes for the same files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from skiff.config import SystemContext
from skiff.image.auth import Credentials, get_credentials, remove_credentials, set_credentials
from skiff.image.registries import RegistryBlocked, load_registries_conf
from skiff.image.shortnames import AmbiguousShortName, resolve_short_name
from skiff.oci.reference import parse_normalized_named
from skiff.testing.registry import RunningRegistry

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        shutil.which("skopeo") is None or shutil.which("podman") is None,
        reason="needs skopeo and podman",
    ),
]

DIGEST = "sha256:" + "0123456789abcdef" * 4
TIMEOUT = 120


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        check=False,
    )


def skopeo_sources(conf: Path, reference: str) -> list[str]:
    """The sources skopeo tries, in order, for ``docker://reference``."""
    result = run(
        [
            "skopeo",
            "--registries-conf",
            str(conf),
            "--debug",
            "inspect",
            "--raw",
            f"docker://{reference}",
        ]
    )
    assert result.returncode != 0, "expected every source to miss"
    return re.findall(r'Trying to access \\"([^"\\]+)\\"', result.stderr)


def skiff_sources(conf: Path, reference: str) -> list[str]:
    ctx = SystemContext(registries_conf=conf, registries_conf_dir=conf.parent / "none.d")
    return [
        str(s.reference)
        for s in load_registries_conf(ctx).pull_sources(parse_normalized_named(reference))
    ]


@pytest.fixture
def mirror_conf(registry: RunningRegistry, tmp_shm: Path) -> Path:
    host = registry.host
    conf = tmp_shm / "mirrors.conf"
    conf.write_text(
        f"""
[[registry]]
prefix = "logical.test/lib"
location = "{host}/primary/lib"
insecure = true
[[registry.mirror]]
location = "{host}/m-all"
insecure = true
[[registry.mirror]]
location = "{host}/m-digest"
insecure = true
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "{host}/m-tag"
insecure = true
pull-from-mirror = "tag-only"

[[registry]]
prefix = "bydigest.test"
location = "{host}/bd-primary"
insecure = true
mirror-by-digest-only = true
[[registry.mirror]]
location = "{host}/bd-mirror"
insecure = true

[[registry]]
prefix = "*.wild.test"
insecure = true
[[registry.mirror]]
location = "{host}/wild-mirror"
insecure = true
"""
    )
    return conf


@pytest.mark.parametrize(
    "reference",
    [
        "logical.test/lib/foo:v1",
        f"logical.test/lib/foo@{DIGEST}",
        "bydigest.test/x/y:1",
        f"bydigest.test/x/y@{DIGEST}",
        "a.wild.test/team/app:2",
    ],
)
def test_pull_sources_match_skopeo(mirror_conf: Path, reference: str) -> None:
    expected = skiff_sources(mirror_conf, reference)
    tried = skopeo_sources(mirror_conf, reference)
    # skopeo gives up when it cannot even reach a.wild.test (no DNS); compare the prefix it reached
    assert tried == expected[: len(tried)]
    assert len(tried) >= len(expected) - (1 if "wild" in reference else 0)


def test_blocked_prefix_refused_by_both(registry: RunningRegistry, tmp_shm: Path) -> None:
    conf = tmp_shm / "blocked.conf"
    conf.write_text(
        f'[[registry]]\nprefix = "{registry.host}/secret"\nlocation = "{registry.host}/secret"\nblocked = true\n'
    )
    reference = f"{registry.host}/secret/app:1"
    result = run(
        ["skopeo", "--registries-conf", str(conf), "inspect", "--raw", f"docker://{reference}"]
    )
    assert "is blocked" in result.stderr
    with pytest.raises(RegistryBlocked):
        skiff_sources(conf, reference)


def test_host_prefix_does_not_cover_other_ports_in_skiff(
    registry: RunningRegistry, tmp_shm: Path
) -> None:
    """Documented difference: containers/image lets "127.0.0.1" match "127.0.0.1:PORT"."""
    conf = tmp_shm / "quirk.conf"
    conf.write_text('[[registry]]\nlocation = "127.0.0.1"\nblocked = true\n')
    reference = f"{registry.host}/x:1"
    result = run(
        ["skopeo", "--registries-conf", str(conf), "inspect", "--raw", f"docker://{reference}"]
    )
    assert "is blocked" in result.stderr
    assert skiff_sources(conf, reference) == [reference]


# --- short names -----------------------------------------------------------------------------------


def podman_candidates(conf: Path, root: Path, name: str) -> subprocess.CompletedProcess[str]:
    return run(
        [
            "podman",
            "--root",
            str(root / "root"),
            "--runroot",
            str(root / "runroot"),
            "--storage-driver",
            "vfs",
            "pull",
            name,
        ],
        env={"CONTAINERS_REGISTRIES_CONF": str(conf)},
    )


@pytest.fixture
def search_conf(registry: RunningRegistry, tmp_shm: Path) -> Path:
    # the same registry under a second name: a miss there is a 404, which
    # podman does not retry (a refused connection costs 3 s of retries)
    other = registry.host.replace("127.0.0.1", "localhost")
    conf = tmp_shm / "search.conf"
    conf.write_text(
        f"""
unqualified-search-registries = ["{registry.host}", "{other}"]
short-name-mode = "permissive"
[aliases]
"skiff-aliased" = "{other}/aliased/target"
[[registry]]
location = "{registry.host}"
insecure = true
[[registry]]
location = "{other}"
insecure = true
"""
    )
    return conf


@pytest.mark.parametrize(
    "name", ["skiff-nothing/here:v1", "skiff-aliased:2", f"skiff-nothing@{DIGEST}"]
)
def test_short_name_candidates_match_podman(search_conf: Path, tmp_shm: Path, name: str) -> None:
    result = podman_candidates(search_conf, tmp_shm, name)
    assert result.returncode != 0
    tried = re.findall(r"Trying to pull (\S+)\.\.\.", result.stdout + result.stderr)
    ctx = SystemContext(registries_conf=search_conf, registries_conf_dir=tmp_shm / "none.d")
    assert tried == [str(ref) for ref in resolve_short_name(ctx, name)]


def test_enforcing_mode_without_tty_fails_in_both(search_conf: Path, tmp_shm: Path) -> None:
    search_conf.write_text(search_conf.read_text().replace('"permissive"', '"enforcing"'))
    result = podman_candidates(search_conf, tmp_shm, "skiff-nothing/here")
    assert "short-name resolution enforced but cannot prompt without a TTY" in result.stderr
    ctx = SystemContext(registries_conf=search_conf, registries_conf_dir=tmp_shm / "none.d")
    with pytest.raises(AmbiguousShortName):
        resolve_short_name(ctx, "skiff-nothing/here")


# --- auth.json -------------------------------------------------------------------------------------


def test_auth_json_written_by_skiff_is_read_by_skopeo(
    registry: RunningRegistry, tmp_shm: Path
) -> None:
    auth = tmp_shm / "auth" / "auth.json"
    ctx = SystemContext(auth_file=auth)
    set_credentials(ctx, registry.host, Credentials("alice", "s3:cret"))
    result = run(["skopeo", "login", "--get-login", "--authfile", str(auth), registry.host])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "alice"
    result = run(["skopeo", "logout", "--authfile", str(auth), registry.host])
    assert result.returncode == 0, result.stderr
    assert get_credentials(ctx, registry.host) is None


def test_auth_json_written_by_skopeo_is_read_by_skiff(
    registry: RunningRegistry, tmp_shm: Path
) -> None:
    auth = tmp_shm / "auth.json"
    for key, user in ((registry.host, "host-user"), (f"{registry.host}/team/app", "repo-user")):
        result = run(
            [
                "skopeo",
                "login",
                "--tls-verify=false",
                "--authfile",
                str(auth),
                "-u",
                user,
                "-p",
                "pa:ss",
                key,
            ]
        )
        assert result.returncode == 0, result.stderr
    ctx = SystemContext(auth_file=auth)
    assert get_credentials(ctx, registry.host, "team/app") == Credentials("repo-user", "pa:ss")
    assert get_credentials(ctx, registry.host, "team/other") == Credentials("host-user", "pa:ss")
    assert remove_credentials(ctx, f"{registry.host}/team/app")
    result = run(["skopeo", "login", "--get-login", "--authfile", str(auth), registry.host])
    assert result.stdout.strip() == "host-user"
