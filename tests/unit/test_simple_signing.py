"""The simple-signing payload, sigstore keys and blobs, and the gpg mechanism.

The payload tests feed hand-written JSON to the strict parser; the gpg
tests make keys in a throw-away GNUPGHOME (never the user's keyring).
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skiff.errors import SignatureError
from skiff.oci.digest import Digest, sha256_of
from skiff.oci.reference import parse_named
from skiff.signature import sigstore
from skiff.signature.errors import InvalidSignature, UntrustedSigner
from skiff.signature.mechanism import GPGMechanism, describe_keys, ephemeral_keyring
from skiff.signature.simple import (
    SIGSTORE_TYPE,
    make_payload,
    parse_payload,
)

DIGEST = Digest("sha256", "0123456789abcdef" * 4)


def document(**critical_overrides: Any) -> dict[str, Any]:
    critical: dict[str, Any] = {
        "type": "atomic container signature",
        "image": {"docker-manifest-digest": str(DIGEST)},
        "identity": {"docker-reference": "quay.io/a/b:1"},
    }
    critical.update(critical_overrides)
    return {"critical": critical, "optional": {"creator": "test", "timestamp": 1700000000}}


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_make_and_parse_round_trip() -> None:
    payload = make_payload(DIGEST, "quay.io/a/b:1", timestamp=1700000000)
    parsed = parse_payload(payload)
    assert parsed.untrusted_docker_manifest_digest == DIGEST
    assert parsed.untrusted_docker_reference == "quay.io/a/b:1"
    assert parsed.untrusted_timestamp == 1700000000
    assert parsed.untrusted_creator is not None
    assert parsed.untrusted_creator.startswith("skiff ")
    assert json.loads(payload)["critical"]["type"] == "atomic container signature"


def test_container_signature_example_parses() -> None:
    # the example of container-signature(5), with its members in that order
    text = (
        b'{"critical": {"type": "atomic container signature", "image": '
        b'{"docker-manifest-digest": "sha256:817a12c32a39bbe394944ba49de563e085f1d3c5266eb8e9723256bc4448680e"},'
        b' "identity": {"docker-reference": "docker.io/library/busybox:latest"}},'
        b' "optional": {"creator": "some software package v1.0.1-35", "timestamp": 1483228800}}'
    )
    parsed = parse_payload(text)
    assert parsed.untrusted_docker_reference == "docker.io/library/busybox:latest"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (encode({"critical": document()["critical"]}), "lacks ['optional']"),
        (encode({**document(), "extra": 1}), "unknown members ['extra']"),
        (encode(document(extra="x")), "critical in the signature payload has unknown members"),
        (encode(document(type="cosign container image signature")), "has type"),
        (encode(document(type=1)), "critical.type"),
        (
            encode(document(image={"docker-manifest-digest": str(DIGEST), "size": 3})),
            "critical.image",
        ),
        (encode(document(image={"docker-manifest-digest": "sha256:xyz"})), "digest is invalid"),
        (encode(document(identity={})), "critical.identity"),
        (encode(document(identity={"docker-reference": 5})), "not a string"),
        (encode({**document(), "optional": []}), "optional"),
        (encode({**document(), "optional": {"creator": 1}}), "optional.creator"),
        (encode({**document(), "optional": {"timestamp": "now"}}), "optional.timestamp"),
        (encode({**document(), "optional": {"timestamp": 1.5}}), "optional.timestamp"),
        (encode({**document(), "optional": {"timestamp": 2**64}}), "optional.timestamp"),
        (b'{"critical": {}, "critical": {}, "optional": {}}', "duplicate member 'critical'"),
        (
            b'{"critical": {"type": "atomic container signature", "type": "x"}, "optional": {}}',
            "duplicate member 'type'",
        ),
        (b'{"critical": NaN, "optional": {}}', "non-JSON constant"),
    ],
)
def test_strict_payload_parsing(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidSignature, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_payload(data)


def test_optional_may_carry_unknown_members() -> None:
    value = document()
    value["optional"]["future-field"] = {"anything": True}
    assert parse_payload(encode(value)).untrusted_creator == "test"


def test_sigstore_payload_type_and_null_optional() -> None:
    value = document(type=SIGSTORE_TYPE)
    value["optional"] = None
    with pytest.raises(InvalidSignature):
        parse_payload(encode(value), SIGSTORE_TYPE)
    parsed = parse_payload(encode(value), SIGSTORE_TYPE, optional_may_be_null=True)
    assert parsed.untrusted_docker_manifest_digest == DIGEST
    del value["optional"]
    assert parse_payload(encode(value), SIGSTORE_TYPE, optional_may_be_null=True)


# --- sigstore keys and blobs ------------------------------------------------------


@pytest.fixture(scope="module")
def key_pair() -> sigstore.KeyPair:
    return sigstore.generate_key_pair("correct horse")


def test_key_files_are_cosign_format(key_pair: sigstore.KeyPair) -> None:
    assert key_pair.public_pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    text = key_pair.private_pem.decode()
    assert text.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    body = "".join(text.splitlines()[1:-1])
    sealed = json.loads(base64.b64decode(body))
    assert sealed["kdf"]["name"] == "scrypt"
    assert sealed["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert len(base64.b64decode(sealed["kdf"]["salt"])) == 32
    assert sealed["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(sealed["cipher"]["nonce"])) == 24
    # a cosign-named file is read the same way
    cosign = text.replace("SIGSTORE PRIVATE KEY", "COSIGN PRIVATE KEY").encode()
    assert sigstore.load_private_key(cosign, "correct horse")


def test_sign_and_verify(key_pair: sigstore.KeyPair) -> None:
    key = sigstore.load_private_key(key_pair.private_pem, "correct horse")
    public = sigstore.load_public_key(key_pair.public_pem)
    signed = sigstore.sign(key, DIGEST, parse_named("quay.io/a/b:1"))
    blob = signed.to_blob()
    assert blob.startswith(b"\x00sigstore-json\n")
    again = sigstore.from_blob(blob)
    assert again == signed
    payload = sigstore.verify_signature(public, again)
    assert parse_payload(payload, SIGSTORE_TYPE).untrusted_docker_reference == "quay.io/a/b:1"
    tampered = sigstore.SigstoreSignature(
        again.untrusted_mime_type,
        again.untrusted_payload.replace(b"quay.io/a/b:1", b"quay.io/a/c:1"),
        again.untrusted_annotations,
    )
    with pytest.raises(InvalidSignature, match="does not verify"):
        sigstore.verify_signature(public, tampered)
    other = sigstore.load_public_key(sigstore.generate_key_pair("x").public_pem)
    with pytest.raises(InvalidSignature, match="does not verify"):
        sigstore.verify_signature(other, again)
    unsigned = sigstore.SigstoreSignature(again.untrusted_mime_type, again.untrusted_payload, {})
    with pytest.raises(InvalidSignature, match="without the"):
        sigstore.verify_signature(public, unsigned)


def test_wrong_passphrase_and_bad_key_files(key_pair: sigstore.KeyPair) -> None:
    with pytest.raises(SignatureError, match="wrong passphrase"):
        sigstore.load_private_key(key_pair.private_pem, "wrong")
    with pytest.raises(SignatureError, match="is not a PEM file"):
        sigstore.load_private_key(key_pair.public_pem, "correct horse")
    with pytest.raises(SignatureError, match="not a PEM public key"):
        sigstore.load_public_key(b"garbage")


@pytest.mark.parametrize(
    "blob",
    [
        b"\x89raw openpgp",
        b"\x00sigstore-json\n[]",
        b"\x00sigstore-json\n" + encode({"mimeType": "x", "payload": "!!", "annotations": {}}),
        b"\x00sigstore-json\n" + encode({"mimeType": "x", "payload": "", "annotations": {"a": 1}}),
        b"\x00sigstore-json\n"
        + encode({"mimeType": "x", "payload": "", "annotations": {}, "z": 1}),
    ],
)
def test_malformed_sigstore_blobs(blob: bytes) -> None:
    with pytest.raises(InvalidSignature):
        sigstore.from_blob(blob)


def test_write_key_pair_never_overwrites(tmp_path: Path, key_pair: sigstore.KeyPair) -> None:
    public, private = sigstore.write_key_pair(tmp_path / "k", key_pair)
    assert public.read_bytes() == key_pair.public_pem
    assert private.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SignatureError, match="already exists"):
        sigstore.write_key_pair(tmp_path / "k", key_pair)


# --- gpg ----------------------------------------------------------------------------


def _gen_key(home: Path, uid: str) -> str:
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
         "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    fingerprints = GPGMechanism(home).fingerprints_of(uid)
    assert len(fingerprints) == 1
    return fingerprints[0]


@pytest.fixture(scope="module")
def gpg_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    trusted = _gen_key(home, "Trusted <trusted@example.com>")
    other = _gen_key(home, "Other <other@example.com>")
    yield home, trusted, other
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def export(home: Path, key: str) -> bytes:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--export", key], check=True, capture_output=True
    ).stdout


def test_gpg_sign_and_verify(gpg_home: tuple[Path, str, str]) -> None:
    home, trusted, other = gpg_home
    mech = GPGMechanism(home)
    payload = make_payload(DIGEST, "quay.io/a/b:1")
    signature = mech.sign(payload, trusted)
    verified = mech.verify(signature)
    assert verified.payload == payload
    assert verified.primary_fingerprint == trusted
    with ephemeral_keyring([(export(home, trusted), "trusted key")]) as (keyring, fingerprints):
        assert fingerprints == {trusted}
        assert keyring.verify(signature).payload == payload
        with pytest.raises(UntrustedSigner) as info:
            keyring.verify(mech.sign(payload, other))
        assert info.value.key == other
        with pytest.raises(InvalidSignature):
            keyring.verify(signature[:20] + bytes([signature[20] ^ 0xFF]) + signature[21:])
        with pytest.raises(InvalidSignature, match="not an OpenPGP signed message"):
            keyring.verify(b"just bytes")
        with pytest.raises(InvalidSignature, match="empty"):
            keyring.verify(b"")


def test_gpg_rejects_unsigned_and_encrypted_messages(gpg_home: tuple[Path, str, str]) -> None:
    home, trusted, _ = gpg_home
    literal = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--store", "--output", "-"],
        input=b"payload",
        check=True,
        capture_output=True,
    ).stdout
    symmetric = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
         "--passphrase", "x", "--symmetric", "--output", "-"],
        input=b"payload",
        check=True,
        capture_output=True,
    ).stdout  # fmt: skip
    with ephemeral_keyring([(export(home, trusted), "trusted key")]) as (keyring, _):
        with pytest.raises(InvalidSignature):
            keyring.verify(literal)
        with pytest.raises(InvalidSignature):
            keyring.verify(symmetric)


def test_signing_with_a_missing_key_names_it(gpg_home: tuple[Path, str, str]) -> None:
    home, _, _ = gpg_home
    with pytest.raises(SignatureError, match=r"nobody@example\.com"):
        GPGMechanism(home).sign(b"x", "nobody@example.com")


def test_describe_keys_and_empty_key_files(gpg_home: tuple[Path, str, str]) -> None:
    home, trusted, _ = gpg_home
    keys = describe_keys(export(home, trusted))
    assert [k.fingerprint for k in keys] == [trusted]
    assert keys[0].user_ids == ("Trusted <trusted@example.com>",)
    with (
        pytest.raises(SignatureError, match="contains no OpenPGP public key"),
        ephemeral_keyring([(b"not a key", "policy key x")]),
    ):
        pass


def test_sha256_helper_matches_manifest_digest() -> None:
    from skiff.signature.verify import manifest_matches_digest

    manifest = b'{"schemaVersion": 2}'
    assert manifest_matches_digest(manifest, sha256_of(manifest))
    assert not manifest_matches_digest(manifest + b" ", sha256_of(manifest))
