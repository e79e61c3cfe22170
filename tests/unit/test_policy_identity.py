"""signedIdentity matchers and the most-specific-scope lookup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skiff.image.transports import parse_image_name
from skiff.oci.reference import NamedReference, parse_named
from skiff.signature.policy.identity import (
    ExactReference,
    ExactRepository,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    RemapIdentity,
)
from skiff.signature.policy.parse import parse_policy

DIGEST = "sha256:" + "a" * 64
TAGGED = parse_named("quay.io/team/app:1.0")
BY_DIGEST = parse_named(f"quay.io/team/app@{DIGEST}")
NAME_ONLY = parse_named("quay.io/team/app")
BOTH = parse_named(f"quay.io/team/app:1.0@{DIGEST}")


@pytest.mark.parametrize(
    ("image", "signed", "expected"),
    [
        (TAGGED, "quay.io/team/app:1.0", True),
        (TAGGED, "quay.io/team/app:2.0", False),
        (TAGGED, "quay.io/team/app", False),  # a signature must be exact
        (TAGGED, "quay.io/team/other:1.0", False),
        (BY_DIGEST, "quay.io/team/app:anything", True),  # by digest: same repository
        (BY_DIGEST, "quay.io/team/other:1.0", False),
        (BOTH, "quay.io/team/app:1.0", False),  # tag and digest: exact string
        (NAME_ONLY, "quay.io/team/app:1.0", False),
        (None, "quay.io/team/app:1.0", False),  # no Docker identity (dir:, oci:)
        (TAGGED, "not a reference!", False),
        (parse_named("docker.io/library/busybox:latest"), "busybox:latest", True),  # normalized
    ],
)
def test_match_repo_digest_or_exact(
    image: NamedReference | None, signed: str, expected: bool
) -> None:
    assert MatchRepoDigestOrExact().matches(image, signed) is expected


def test_match_exact() -> None:
    assert MatchExact().matches(TAGGED, "quay.io/team/app:1.0")
    assert not MatchExact().matches(BY_DIGEST, "quay.io/team/app:1.0")
    assert MatchExact().matches(BY_DIGEST, f"quay.io/team/app@{DIGEST}")
    assert not MatchExact().matches(NAME_ONLY, "quay.io/team/app")
    assert not MatchExact().matches(None, "quay.io/team/app:1.0")


def test_match_repository() -> None:
    assert MatchRepository().matches(TAGGED, "quay.io/team/app:2.0")
    assert MatchRepository().matches(TAGGED, "quay.io/team/app")  # cosign signs repositories
    assert not MatchRepository().matches(TAGGED, "quay.io/team/app2:1.0")
    assert not MatchRepository().matches(None, "quay.io/team/app:1.0")


def test_exact_reference_and_repository() -> None:
    exact = ExactReference(parse_named("vendor.io/app:1.0"))
    assert exact.matches(None, "vendor.io/app:1.0")  # works without an image identity
    assert exact.matches(TAGGED, "vendor.io/app:1.0")
    assert not exact.matches(TAGGED, "vendor.io/app:1.1")
    assert not exact.matches(TAGGED, "vendor.io/app")
    repo = ExactRepository(parse_named("vendor.io/app"))
    assert repo.matches(None, "vendor.io/app:9")
    assert not repo.matches(TAGGED, "vendor.io/other:1.0")


def test_remap_identity() -> None:
    remap = RemapIdentity("mirror.local:5000/vendor", "vendor.io")
    image = parse_named("mirror.local:5000/vendor/product/app:1.0")
    assert remap.matches(image, "vendor.io/product/app:1.0")
    assert not remap.matches(image, "mirror.local:5000/vendor/product/app:1.0")
    assert not remap.matches(image, "vendor.io/product/app:1.1")
    # the prefix only matches whole components
    other = parse_named("mirror.local:5000/vendorx/app:1.0")
    assert remap.remap(other) == other
    assert remap.matches(other, "mirror.local:5000/vendorx/app:1.0")  # unchanged, then exact
    by_digest = parse_named(f"mirror.local:5000/vendor/app@{DIGEST}")
    assert remap.matches(by_digest, "vendor.io/app:whatever")
    assert not remap.matches(None, "vendor.io/app:1.0")


# --- scope lookup -------------------------------------------------------------------


def policy_with(scopes: dict[str, str], transport: str = "docker") -> object:
    document = {
        "default": [{"type": "reject"}],
        "transports": {
            transport: {
                scope: [{"type": "insecureAcceptAnything"}]
                if kind == "accept"
                else [{"type": kind}]
                for scope, kind in scopes.items()
            }
        },
    }
    return parse_policy(json.dumps(document).encode())


def scope_for(policy: object, image: str) -> str:
    from skiff.signature.policy import Policy

    assert isinstance(policy, Policy)
    return str(policy.requirements_for(parse_image_name(image))[0])


def test_most_specific_docker_scope_wins() -> None:
    policy = policy_with(
        {
            "": "accept",
            "*.example.com": "accept",
            "*.sub.example.com": "accept",
            "reg.sub.example.com": "accept",
            "reg.sub.example.com/team": "accept",
            "reg.sub.example.com/team/app": "accept",
            "reg.sub.example.com/team/app:1.0": "accept",
        }
    )
    base = "docker://reg.sub.example.com"
    assert scope_for(policy, f"{base}/team/app:1.0") == 'docker "reg.sub.example.com/team/app:1.0"'
    assert scope_for(policy, f"{base}/team/app:2.0") == 'docker "reg.sub.example.com/team/app"'
    assert scope_for(policy, f"{base}/team/other") == 'docker "reg.sub.example.com/team"'
    assert scope_for(policy, f"{base}/solo") == 'docker "reg.sub.example.com"'
    assert scope_for(policy, "docker://other.sub.example.com/x") == 'docker "*.sub.example.com"'
    assert scope_for(policy, "docker://a.example.com:5000/x") == 'docker "*.example.com"'
    assert scope_for(policy, "docker://quay.io/x") == 'transport "docker" default ("")'
    assert scope_for(policy, "oci:/tmp/layout:x") == "default"


def test_only_the_most_specific_list_applies() -> None:
    policy = policy_with({"quay.io": "reject", "quay.io/ok": "accept"})
    from skiff.signature.policy import InsecureAcceptAnything, Policy, Reject

    assert isinstance(policy, Policy)
    assert policy.requirements_for(parse_image_name("docker://quay.io/ok/app"))[1] == (
        InsecureAcceptAnything(),
    )
    assert policy.requirements_for(parse_image_name("docker://quay.io/bad/app"))[1] == (Reject(),)


def test_dir_scopes(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "one").mkdir(parents=True)
    policy = policy_with({str(images): "accept"}, transport="dir")
    assert scope_for(policy, f"dir:{images / 'one'}") == f'dir "{images}"'
    assert scope_for(policy, f"dir:{tmp_path / 'elsewhere'}") == "default"
