"""``docker://`` reference parsing and policy scopes (no network)."""

from __future__ import annotations

import sys

import pytest

from skiff.errors import ConfigError, InvalidReference
from skiff.image.transports import parse_image_name
from skiff.image.transports.docker import TRANSPORT, DockerReference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical", "within"),
    [
        ("//busybox", "docker.io/library/busybox:latest", "//busybox:latest"),
        ("//busybox:1.36", "docker.io/library/busybox:1.36", "//busybox:1.36"),
        ("//quay.io/a/b", "quay.io/a/b:latest", "//quay.io/a/b:latest"),
        (
            "//localhost:5000/x@" + DIGEST,
            f"localhost:5000/x@{DIGEST}",
            f"//localhost:5000/x@{DIGEST}",
        ),
        (
            "//127.0.0.1:5000/ns/repo:tag@" + DIGEST,
            f"127.0.0.1:5000/ns/repo:tag@{DIGEST}",
            f"//127.0.0.1:5000/ns/repo:tag@{DIGEST}",
        ),
        ("//index.docker.io/user/img", "docker.io/user/img:latest", "//user/img:latest"),
    ],
)
def test_parse(text: str, canonical: str, within: str) -> None:
    ref = TRANSPORT.parse_reference(text)
    assert str(ref.docker_reference()) == canonical
    assert ref.string_within_transport() == within
    assert TRANSPORT.parse_reference(ref.string_within_transport()) == ref
    assert parse_image_name(f"docker:{text}") == ref


@pytest.mark.parametrize(
    "text", ["busybox", "/busybox", "//", "//quay.io/UPPER/case", "//a:b:c", "//x@sha256:12"]
)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidReference):
        TRANSPORT.parse_reference(text)


def test_slashes_are_required_with_a_hint() -> None:
    with pytest.raises(InvalidReference, match="must start with '//'") as info:
        TRANSPORT.parse_reference("busybox")
    assert "docker://" in str(info.value)


def test_manifest_reference_prefers_the_digest() -> None:
    assert TRANSPORT.parse_reference("//a.io/b:t").manifest_reference() == "t"
    assert TRANSPORT.parse_reference(f"//a.io/b:t@{DIGEST}").manifest_reference() == DIGEST


def test_policy_identity_and_namespaces() -> None:
    ref = TRANSPORT.parse_reference("//registry.sub.example.com:5000/ns/team/app:v1")
    assert ref.policy_configuration_identity() == "registry.sub.example.com:5000/ns/team/app:v1"
    assert ref.policy_configuration_namespaces() == [
        "registry.sub.example.com:5000/ns/team/app",
        "registry.sub.example.com:5000/ns/team",
        "registry.sub.example.com:5000/ns",
        "registry.sub.example.com:5000",
        "*.sub.example.com",
        "*.example.com",
        "*.com",
    ]
    hub = TRANSPORT.parse_reference(f"//busybox@{DIGEST}")
    assert hub.policy_configuration_identity() == f"docker.io/library/busybox@{DIGEST}"
    assert hub.policy_configuration_namespaces() == [
        "docker.io/library/busybox",
        "docker.io/library",
        "docker.io",
        "*.io",
    ]
    local = TRANSPORT.parse_reference("//localhost/x")
    assert local.policy_configuration_namespaces() == ["localhost/x", "localhost"]


def test_every_namespace_is_a_valid_scope() -> None:
    ref = TRANSPORT.parse_reference("//registry.example.com:5000/ns/app:v1")
    for scope in [ref.policy_configuration_identity(), *ref.policy_configuration_namespaces()]:
        TRANSPORT.validate_policy_scope(scope)


@pytest.mark.parametrize(
    "scope",
    [
        "*.example.com",
        "example.com",
        "example.com:5000",
        "docker.io/library/busybox",
        "docker.io/library/busybox:latest",
        f"quay.io/a/b@{DIGEST}",
    ],
)
def test_valid_scopes(scope: str) -> None:
    TRANSPORT.validate_policy_scope(scope)


@pytest.mark.parametrize(
    "scope",
    [
        "*.example.com:5000",  # wildcards carry no port
        "*",
        "*.",
        "ex ample.com",
        "docker.io/busybox",  # not canonical: docker.io/library/busybox
        "busybox/x",  # not canonical: docker.io/busybox/x
        "quay.io/UPPER",
    ],
)
def test_invalid_scopes(scope: str) -> None:
    with pytest.raises(ConfigError, match="invalid docker policy scope"):
        TRANSPORT.validate_policy_scope(scope)


def test_parsing_imports_no_http_code() -> None:
    """``docker://`` parsing must stay cheap: urllib3 is loaded only to talk."""
    import subprocess

    code = (
        "import sys; from skiff.image.transports import parse_image_name; "
        "parse_image_name('docker://busybox').policy_configuration_namespaces(); "
        "print('urllib3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_from_named_adds_latest() -> None:
    from skiff.oci.reference import parse_normalized_named

    ref = DockerReference.from_named(parse_normalized_named("quay.io/a/b"))
    assert ref.ref.tag == "latest"
    assert str(ref) == "docker://quay.io/a/b:latest"
