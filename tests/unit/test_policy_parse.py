"""policy.json parsing: everything that is not exactly a valid policy is an error."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from skiff.errors import ConfigError
from skiff.oci.reference import parse_named
from skiff.signature.policy import InsecureAcceptAnything, Reject, SignedBy, SigstoreSigned
from skiff.signature.policy.identity import (
    ExactReference,
    ExactRepository,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    RemapIdentity,
)
from skiff.signature.policy.parse import load_policy, parse_policy

ACCEPT = {"type": "insecureAcceptAnything"}
SIGNED = {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}


def parse(document: Any) -> Any:
    return parse_policy(json.dumps(document).encode(), "test-policy.json")


def rejects(document: Any, *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(document)
    message = str(info.value)
    assert "test-policy.json" in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def scoped(requirement: Any, transport: str = "docker", scope: str = "quay.io/a") -> Any:
    return {"default": [ACCEPT], "transports": {transport: {scope: [requirement]}}}


def test_minimal_and_full_policies() -> None:
    assert parse({"default": [ACCEPT]}).default == (InsecureAcceptAnything(),)
    policy = parse(
        {
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {
                    "": [ACCEPT],
                    "quay.io": [SIGNED],
                    "*.example.com": [{"type": "reject"}],
                    "quay.io/team/app:1.0": [ACCEPT, SIGNED],
                },
                "dir": {"": [ACCEPT], "/srv/images": [{"type": "reject"}]},
                "docker-daemon": {"": [ACCEPT]},  # a transport skiff has not: kept, unused
            },
        }
    )
    assert policy.default == (Reject(),)
    assert policy.transports["docker"]["quay.io"] == (SignedBy(key_path=Path("/k.gpg")),)
    assert len(policy.transports["docker"]["quay.io/team/app:1.0"]) == 2
    assert set(policy.transports) == {"docker", "dir", "docker-daemon"}


def test_not_json() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_policy(b'{"default": [', "test-policy.json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_policy(b"\xff\xfe", "test-policy.json")


def test_duplicate_members() -> None:
    data = b'{"default": [{"type": "reject"}], "default": [{"type": "insecureAcceptAnything"}]}'
    with pytest.raises(ConfigError, match="duplicate field 'default'"):
        parse_policy(data, "test-policy.json")
    data = b'{"default": [{"type": "reject", "type": "insecureAcceptAnything"}]}'
    with pytest.raises(ConfigError, match="duplicate field 'type'"):
        parse_policy(data, "test-policy.json")


def test_top_level_shape() -> None:
    rejects({}, "missing field 'default'")
    rejects([], "expected a JSON object")
    rejects({"default": [ACCEPT], "defaults": []}, "unknown field 'defaults'")
    rejects({"default": []}, "the requirement list is empty")
    rejects({"default": ACCEPT}, "expected a list of requirements")
    rejects({"default": [ACCEPT], "transports": []}, "transports", "expected a JSON object")
    rejects({"default": [ACCEPT], "transports": {"docker": []}}, "transports.docker")
    rejects({"default": [ACCEPT], "transports": {"docker": {"quay.io": []}}}, "empty")


def test_unknown_requirement_type() -> None:
    rejects({"default": [{"type": "acceptIfNice"}]}, "unknown requirement type 'acceptIfNice'")
    rejects({"default": [{"type": "signedBaseLayer"}]}, "unknown requirement type")
    rejects({"default": [{}]}, "no 'type'")
    rejects({"default": ["reject"]}, "expected a requirement object")


def test_unknown_fields_in_requirements() -> None:
    rejects({"default": [{"type": "reject", "why": "x"}]}, "unknown field 'why'")
    rejects({"default": [{**SIGNED, "keyPaht": "/x"}]}, "unknown field 'keyPaht'")
    rejects(
        {"default": [{**SIGNED, "signedIdentity": {"type": "matchExact", "strict": True}}]},
        "unknown field 'strict'",
    )


def test_signed_by_needs_exactly_one_key_source() -> None:
    message = rejects(
        {"default": [{"type": "signedBy", "keyType": "GPGKeys"}]},
        "exactly one of keyPath, keyPaths, keyData",
        "(has none)",
    )
    assert "default[0]" in message
    rejects(
        {"default": [{**SIGNED, "keyData": base64.b64encode(b"k").decode()}]},
        "has keyPath, keyData",
    )
    rejects({"default": [{**SIGNED, "keyPath": ""}]}, "non-empty string")
    rejects(
        {"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": []}]},
        "non-empty list",
    )
    rejects(
        {"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "%%%"}]},
        "not valid base64",
    )
    rejects({"default": [{"type": "signedBy", "keyPath": "/k"}]}, "missing field 'keyType'")
    rejects({"default": [{**SIGNED, "keyType": "X509Certificates"}]}, "unsupported keyType")


def test_signed_by_key_sources() -> None:
    key_paths = parse(
        {"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": ["/a", "/b"]}]}
    ).default[0]
    assert key_paths.key_paths == (Path("/a"), Path("/b"))
    assert key_paths.key_sources() == [(Path("/a"), None), (Path("/b"), None)]
    data = parse(
        {
            "default": [
                {
                    "type": "signedBy",
                    "keyType": "GPGKeys",
                    "keyData": base64.b64encode(b"KEY").decode(),
                }
            ]
        }
    ).default[0]
    assert data.key_data == b"KEY"
    assert data.signed_identity == MatchRepoDigestOrExact()


def test_sigstore_signed() -> None:
    parsed = parse({"default": [{"type": "sigstoreSigned", "keyPath": "/c.pub"}]}).default[0]
    assert parsed == SigstoreSigned(key_path=Path("/c.pub"))
    rejects({"default": [{"type": "sigstoreSigned"}]}, "exactly one of keyPath, keyData")
    rejects(
        {"default": [{"type": "sigstoreSigned", "fulcio": {}}]},
        "'fulcio' is not supported",
    )
    rejects(
        {"default": [{"type": "sigstoreSigned", "keyPath": "/c", "keyType": "GPGKeys"}]},
        "unknown field 'keyType'",
    )


def identity(value: Any) -> Any:
    return parse({"default": [{**SIGNED, "signedIdentity": value}]}).default[0].signed_identity


def test_signed_identities() -> None:
    assert identity({"type": "matchExact"}) == MatchExact()
    assert identity({"type": "matchRepository"}) == MatchRepository()
    assert identity({"type": "matchRepoDigestOrExact"}) == MatchRepoDigestOrExact()
    assert identity({"type": "exactReference", "dockerReference": "busybox:1"}) == ExactReference(
        parse_named("docker.io/library/busybox:1")
    )
    assert identity(
        {"type": "exactRepository", "dockerRepository": "quay.io/a/b"}
    ) == ExactRepository(parse_named("quay.io/a/b"))
    assert identity(
        {"type": "remapIdentity", "prefix": "mirror:5000/vendor", "signedPrefix": "vendor.io"}
    ) == RemapIdentity("mirror:5000/vendor", "vendor.io")


def test_bad_signed_identities() -> None:
    base = {"default": [{**SIGNED, "signedIdentity": None}]}

    def bad(value: Any, fragment: str) -> None:
        base["default"][0]["signedIdentity"] = value
        rejects(base, fragment)

    bad({"type": "matchSomething"}, "unknown signedIdentity type")
    bad({}, "no 'type'")
    bad("matchExact", "expected an identity object")
    bad({"type": "exactReference"}, "missing field 'dockerReference'")
    bad({"type": "exactReference", "dockerReference": "quay.io/a"}, "no tag or digest")
    bad({"type": "exactReference", "dockerReference": "UPPER/case"}, "dockerReference")
    bad({"type": "exactRepository", "dockerRepository": "quay.io/a:1"}, "not a repository name")
    bad({"type": "remapIdentity", "prefix": "quay.io"}, "missing field 'signedPrefix'")
    bad(
        {"type": "remapIdentity", "prefix": "quay.io/a:tag", "signedPrefix": "x.io"},
        "not a fully expanded repository",
    )
    bad(
        {"type": "remapIdentity", "prefix": "busybox/x", "signedPrefix": "x.io"},
        "not a fully expanded",
    )
    bad({"type": "remapIdentity", "prefix": "bad host!", "signedPrefix": "x.io"}, "not a host")


def test_scopes_are_validated_by_their_transport() -> None:
    rejects(scoped(ACCEPT, scope="busybox:latest"), "not a host name")  # must be canonical
    rejects(scoped(ACCEPT, scope="quay.io/UPPER"), "quay.io/UPPER")
    rejects(scoped(ACCEPT, scope="docker.io/busybox"), "canonical")
    rejects(scoped(ACCEPT, scope="*.example.com:5000"), "wildcard")
    rejects(scoped(ACCEPT, transport="dir", scope="relative/path"), "absolute path")
    rejects(scoped(ACCEPT, transport="dir", scope="/"), '"/"')
    # unknown transports are kept without validation, as containers/image does
    assert parse(scoped(ACCEPT, transport="ostree", scope="anything at all"))


def test_load_policy_files(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    with pytest.raises(ConfigError, match="no trust policy at"):
        load_policy(path)
    path.write_text('{"default": [{"type": "reject"}]}')
    policy = load_policy(path)
    assert policy.path == path
    assert policy.default == (Reject(),)
    path.write_text("not json")
    with pytest.raises(ConfigError, match=str(path)):
        load_policy(path)


def test_round_trip_through_json() -> None:
    document = {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                "quay.io": [
                    {
                        "type": "signedBy",
                        "keyType": "GPGKeys",
                        "keyPaths": ["/a", "/b"],
                        "signedIdentity": {
                            "type": "remapIdentity",
                            "prefix": "quay.io",
                            "signedPrefix": "vendor.io",
                        },
                    },
                    {"type": "sigstoreSigned", "keyPath": "/c.pub"},
                ]
            }
        },
    }
    policy = parse(document)
    assert parse(policy.to_json()) == policy
