"""Sigstore signatures with a key pair: key files, signing, verifying, the blob form.

Keys (``skiff image generate-sigstore-key``): ECDSA P-256, the one scheme
every sigstore verifier must support. Files as containers/image and cosign
write them, so skopeo ``--sign-by-sigstore-private-key`` and cosign read
ours and we read theirs:

- public: PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo);
- private: PEM ``ENCRYPTED SIGSTORE PRIVATE KEY`` (cosign's own files say
  ``ENCRYPTED COSIGN PRIVATE KEY``; both are read) whose body is the JSON of
  secure-systems-lab's "encrypted" format: the PKCS#8 DER key sealed with
  NaCl secretbox (XSalsa20-Poly1305, PyNaCl) under a scrypt key
  (N=32768, r=8, p=1, 32-byte salt) derived from the passphrase.

A signature is the payload JSON (skiff.signature.simple with type "cosign
container image signature"), its MIME type, and annotations; the
cryptographic signature is ASN.1 DER ECDSA over SHA-256 of the payload,
base64 in the ``dev.cosignproject.cosign/signature`` annotation.

In memory (``ImageSource.get_signatures`` lists, ``dir:`` files,
``containers-storage:``), a sigstore signature is the bytes
``\\x00sigstore-json\\n`` + JSON ``{"mimeType", "payload" (base64),
"annotations"}`` — containers/image's format, which a simple signature (a
raw OpenPGP message, whose first byte has the high bit set) can never be
confused with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.errors import SignatureError
from skiff.signature.errors import InvalidSignature
from skiff.signature.simple import SIGSTORE_TYPE, loads_strict, make_payload

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

    from skiff.oci.digest import Digest
    from skiff.oci.reference import NamedReference

PAYLOAD_MIME_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
BLOB_PREFIX = b"\x00sigstore-json\n"

PRIVATE_PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
_SCRYPT_MAXMEM = 256 << 20


@dataclass(frozen=True)
class SigstoreSignature:
    """One sigstore signature; every field is untrusted until verified."""

    untrusted_mime_type: str
    untrusted_payload: bytes
    untrusted_annotations: dict[str, str] = field(default_factory=dict)

    def to_blob(self) -> bytes:
        document = {
            "mimeType": self.untrusted_mime_type,
            "payload": base64.b64encode(self.untrusted_payload).decode(),
            "annotations": self.untrusted_annotations,
        }
        return BLOB_PREFIX + json.dumps(document, separators=(",", ":")).encode()


def is_sigstore_blob(blob: bytes) -> bool:
    return blob.startswith(BLOB_PREFIX)


def from_blob(blob: bytes) -> SigstoreSignature:
    """Parse the in-memory form; InvalidSignature if it is anything else."""
    if not is_sigstore_blob(blob):
        raise InvalidSignature("not a sigstore signature")
    document = loads_strict(blob[len(BLOB_PREFIX) :], "the sigstore signature")
    if not isinstance(document, dict) or set(document) != {"mimeType", "payload", "annotations"}:
        raise InvalidSignature(
            "the sigstore signature does not have exactly mimeType, payload, annotations"
        )
    mime, payload, annotations = document["mimeType"], document["payload"], document["annotations"]
    if annotations is None:
        annotations = {}
    if (
        not isinstance(mime, str)
        or not isinstance(payload, str)
        or not isinstance(annotations, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
    ):
        raise InvalidSignature("the sigstore signature has members of the wrong type")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSignature("the sigstore signature's payload is not base64") from exc
    return SigstoreSignature(mime, raw, dict(annotations))


# --- keys --------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    """PEM files' contents, as ``generate_key_pair`` makes them."""

    public_pem: bytes
    private_pem: bytes


def _pem(kind: str, body: bytes) -> bytes:
    text = base64.encodebytes(body).decode().replace("\n", "")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n").encode()


def _unpem(data: bytes, kinds: tuple[str, ...], what: str) -> tuple[str, bytes]:
    text = data.decode("ascii", errors="replace")
    for kind in kinds:
        begin, end = f"-----BEGIN {kind}-----", f"-----END {kind}-----"
        start = text.find(begin)
        if start < 0:
            continue
        stop = text.find(end, start)
        if stop < 0:
            break
        body = "".join(text[start + len(begin) : stop].split())
        try:
            return kind, base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SignatureError(f"{what}: the PEM block is not valid base64") from exc
    raise SignatureError(f"{what} is not a PEM file of type {' or '.join(kinds)}")


def _kdf(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)


def generate_key_pair(passphrase: str) -> KeyPair:
    """A new ECDSA P-256 key pair; the private key sealed with ``passphrase``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from nacl.secret import SecretBox

    key = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt, nonce = os.urandom(32), os.urandom(SecretBox.NONCE_SIZE)
    box = SecretBox(_kdf(passphrase.encode(), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    sealed = box.encrypt(pkcs8, nonce).ciphertext
    document = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(public, _pem(PRIVATE_PEM_TYPES[0], json.dumps(document).encode()))


def load_private_key(data: bytes, passphrase: str, what: str = "the private key") -> Any:
    """Decrypt a sigstore/cosign private key file; the cryptography key object."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    _, body = _unpem(data, PRIVATE_PEM_TYPES, what)
    try:
        document = json.loads(body)
        kdf, cipher = document["kdf"], document["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise SignatureError(
                f"{what} uses {kdf['name']}/{cipher['name']}, not scrypt/nacl/secretbox"
            )
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        sealed = base64.b64decode(document["ciphertext"], validate=True)
    except SignatureError:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SignatureError(f"{what} is not an encrypted sigstore private key") from exc
    if n > 1 << 20 or r > 32 or p > 16:
        raise SignatureError(f"{what} asks for unreasonable scrypt parameters N={n} r={r} p={p}")
    try:
        plain = SecretBox(_kdf(passphrase.encode(), salt, n, r, p)).decrypt(sealed, nonce)
    except CryptoError as exc:
        raise SignatureError(
            f"cannot decrypt {what}: wrong passphrase", "check --sign-passphrase-file"
        ) from exc
    key = serialization.load_der_private_key(plain, password=None)
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise SignatureError(f"{what} holds an unsupported key type ({type(key).__name__})")
    return key


def load_public_key(data: bytes, what: str = "the public key") -> PublicKeyTypes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise SignatureError(
            f"{what} is not a PEM public key", "expected -----BEGIN PUBLIC KEY-----"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise SignatureError(f"{what} is an unsupported key type ({type(key).__name__})")
    return key


# --- signing and verifying -----------------------------------------------------


def sign(private_key: Any, manifest_digest: Digest, identity: NamedReference) -> SigstoreSignature:
    """A sigstore signature of ``manifest_digest`` claiming ``identity``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding

    payload = make_payload(manifest_digest, str(identity), signature_type=SIGSTORE_TYPE)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        raw = private_key.sign(payload, ec.ECDSA(hashes.SHA256()))
    elif isinstance(private_key, ed25519.Ed25519PrivateKey):
        raw = private_key.sign(payload)
    else:
        raw = private_key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    return SigstoreSignature(
        PAYLOAD_MIME_TYPE, payload, {SIGNATURE_ANNOTATION: base64.b64encode(raw).decode()}
    )


def verify_signature(public_key: PublicKeyTypes, signature: SigstoreSignature) -> bytes:
    """Check the cryptographic signature; the payload it authenticates.

    Nothing of the payload is read before this succeeds.
    """
    from cryptography.exceptions import InvalidSignature as CryptoInvalid
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    if signature.untrusted_mime_type != PAYLOAD_MIME_TYPE:
        raise InvalidSignature(
            f"sigstore signature of type {signature.untrusted_mime_type!r}, expected {PAYLOAD_MIME_TYPE}"
        )
    encoded = signature.untrusted_annotations.get(SIGNATURE_ANNOTATION)
    if encoded is None:
        raise InvalidSignature(f"sigstore signature without the {SIGNATURE_ANNOTATION} annotation")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSignature("the sigstore signature annotation is not base64") from exc
    payload = signature.untrusted_payload
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(raw, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(raw, payload)
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(raw, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise InvalidSignature(f"unsupported public key type {type(public_key).__name__}")
    except CryptoInvalid as exc:
        raise InvalidSignature(
            "the sigstore signature does not verify with the policy's public key "
            "(signed by another key, or altered)"
        ) from exc
    return payload


def write_key_pair(prefix: Path, pair: KeyPair) -> tuple[Path, Path]:
    """Write ``PREFIX.pub`` and ``PREFIX.private``; never overwrite (skopeo's names)."""
    from skiff.image.transports.localfs import write_all

    public, private = Path(f"{prefix}.pub"), Path(f"{prefix}.private")
    for path in (public, private):
        if path.exists() or path.is_symlink():
            raise SignatureError(f"{path} already exists", "choose another --output-prefix")
    written: list[Path] = []
    try:
        for path, data, mode in (
            (private, pair.private_pem, 0o600),
            (public, pair.public_pem, 0o644),
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(path)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise SignatureError(
            f"cannot write the key pair at {prefix}: {exc.strerror or exc}"
        ) from exc
    return public, private
