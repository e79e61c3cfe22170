"""Making signatures: copy-engine signers, ``image sign``, standalone sign/verify.

- ``gpg_signer``/``sigstore_signer`` build the ``Signer`` callables the
  copy engine runs on the manifest it wrote (``--sign-by``,
  ``--sign-by-sigstore-private-key``): the signature names that manifest's
  digest and the destination's reference (or ``--sign-identity``).
- ``sign_image`` (podman image sign) signs an image where it is, adding the
  signature beside any already there in a lookaside directory.
- ``standalone_sign``/``standalone_verify`` (skopeo's) work on a manifest
  file and a signature file, with the user's keyring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import InvalidReference, SignatureError, UsageError
from skiff.oci.manifest import manifest_digest
from skiff.oci.reference import NamedReference, parse_normalized_named
from skiff.signature.errors import SignedIdentityMismatch, UntrustedSigner
from skiff.signature.mechanism import GPGMechanism
from skiff.signature.simple import make_payload, parse_payload

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.oci.digest import Digest

Signer = Callable[[bytes, NamedReference], bytes]


def gpg_signer(
    key: str,
    passphrase: str | None = None,
    identity: NamedReference | None = None,
    mechanism: GPGMechanism | None = None,
) -> Signer:
    """A simple-signing signer with ``key`` from the user's keyring."""
    mech = mechanism or GPGMechanism()

    def sign(manifest: bytes, destination: NamedReference) -> bytes:
        payload = make_payload(manifest_digest(manifest), str(identity or destination))
        return mech.sign(payload, key, passphrase)

    return sign


def sigstore_signer(
    private_key: Path, passphrase: str, identity: NamedReference | None = None
) -> Signer:
    """A sigstore signer with the private key file ``private_key`` (decrypted once)."""
    from skiff.signature import sigstore

    try:
        data = private_key.read_bytes()
    except OSError as exc:
        raise SignatureError(
            f"cannot read sigstore private key {private_key}: {exc.strerror or exc}"
        ) from exc
    key = sigstore.load_private_key(data, passphrase, f"sigstore private key {private_key}")

    def sign(manifest: bytes, destination: NamedReference) -> bytes:
        signed = sigstore.sign(key, manifest_digest(manifest), identity or destination)
        return signed.to_blob()

    return sign


def parse_identity(text: str) -> NamedReference:
    """``--sign-identity``: a fully specified reference (tag or digest)."""
    try:
        ref = parse_normalized_named(text)
    except InvalidReference as exc:
        raise UsageError(f"invalid --sign-identity {text!r}: {exc.message}") from exc
    if ref.is_name_only():
        raise UsageError(
            f"invalid --sign-identity {text!r}: it has no tag or digest",
            "give a full reference such as registry.example.com/app:1.0",
        )
    return ref


def read_passphrase_file(path: Path) -> str:
    """The first line of ``path`` without its line ending (skopeo's rule)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read passphrase file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"passphrase file {path} is not text") from exc
    return text.split("\n", 1)[0].rstrip("\r")


# --- image sign ------------------------------------------------------------------


@dataclass(frozen=True)
class SignedInstance:
    reference: NamedReference
    digest: Digest
    location: str
    """Where the signature was stored (lookaside directory URL)."""


def sign_image(
    ctx: SystemContext,
    image: str,
    key: str,
    *,
    directory: Path | None = None,
    sign_all: bool = False,
    passphrase: str | None = None,
) -> list[SignedInstance]:
    """Sign ``image`` (TRANSPORT:REF) in place, as ``podman image sign`` does.

    The signature goes to ``directory`` (laid out as a lookaside: REPO@ALG=HEX/
    signature-N) or to the registries.d staging location for the image, next
    to the signatures already there. ``sign_all``: sign each instance of an
    index instead of the index itself.
    """
    from skiff.image.transports import parse_image_name
    from skiff.oci import mediatypes as mt
    from skiff.oci.manifest import ImageIndex, guess_media_type, parse_manifest
    from skiff.signature.lookaside import LookasideWriter, RegistriesD

    ref = parse_image_name(image)
    named = ref.docker_reference()
    if named is None:
        raise UsageError(
            f"cannot sign {image}: the {ref.transport.name}: transport gives it no Docker "
            "reference to sign as",
            "sign a docker:// or containers-storage: image",
        )
    if named.is_name_only():
        named = named.tag_or_latest()
    if directory is not None:
        base = directory.absolute().as_uri()
    else:
        base = RegistriesD.load(ctx.registries_d_path()).base_url(named, write=True)
    writer = LookasideWriter(base)
    mech = GPGMechanism()
    source = ref.new_image_source(ctx)
    try:
        raw, media_type = source.get_manifest()
        media_type = media_type or guess_media_type(raw)
        manifests: list[bytes] = [raw]
        if sign_all:
            if not mt.is_index(media_type):
                raise UsageError(f"{image} is not a multi-architecture image (index)")
            index = parse_manifest(raw, media_type)
            assert isinstance(index, ImageIndex)
            manifests = []
            for entry in index.manifests:
                instance, _ = source.get_manifest(entry.digest)
                entry.digest.verify_bytes(instance, what=f"manifest {entry.digest}")
                manifests.append(instance)
    finally:
        source.close()
    done = []
    for manifest in manifests:
        digest = manifest_digest(manifest)
        signature = mech.sign(make_payload(digest, str(named)), key, passphrase)
        writer.write(named, digest, [signature])
        done.append(SignedInstance(named, digest, writer.location(named, digest)))
    return done


# --- standalone ------------------------------------------------------------------


def standalone_sign(
    manifest: bytes, reference: str, key: str, passphrase: str | None = None
) -> bytes:
    """A signature of ``manifest`` claiming ``reference`` (skopeo standalone-sign)."""
    try:
        parse_normalized_named(reference)
    except InvalidReference as exc:
        raise UsageError(f"invalid docker reference {reference!r}: {exc.message}") from exc
    return GPGMechanism().sign(make_payload(manifest_digest(manifest), reference), key, passphrase)


@dataclass(frozen=True)
class StandaloneResult:
    fingerprint: str
    digest: Digest
    reference: str


def standalone_verify(
    manifest: bytes, reference: str, fingerprints: list[str], signature: bytes
) -> StandaloneResult:
    """Verify with the user's keyring that ``signature`` is by one of ``fingerprints``,
    for ``manifest``, claiming exactly ``reference`` (skopeo standalone-verify)."""
    from skiff.signature.verify import check_digest

    try:
        expected = parse_normalized_named(reference)
    except InvalidReference as exc:
        raise UsageError(f"invalid docker reference {reference!r}: {exc.message}") from exc
    wanted = {f.strip().upper() for f in fingerprints if f.strip()}
    if not wanted:
        raise UsageError("no key fingerprint given")
    verified = GPGMechanism().verify(signature)
    if not verified.fingerprints & wanted:
        raise UntrustedSigner(
            f"signature by key {verified.primary_fingerprint} does not match the expected "
            f"fingerprint(s) {', '.join(sorted(wanted))}",
            verified.primary_fingerprint,
        )
    payload = parse_payload(verified.payload)
    check_digest(payload, manifest)
    try:
        signed = parse_normalized_named(payload.untrusted_docker_reference)
    except InvalidReference as exc:
        raise SignedIdentityMismatch(
            f"the signature claims an invalid reference {payload.untrusted_docker_reference!r}"
        ) from exc
    if str(signed) != str(expected):
        raise SignedIdentityMismatch(
            f"the signature is for {payload.untrusted_docker_reference!r}, not {reference!r}"
        )
    fingerprint = (
        verified.primary_fingerprint
        if verified.primary_fingerprint in wanted
        else verified.signer_fingerprint
    )
    return StandaloneResult(fingerprint, payload.untrusted_docker_manifest_digest, reference)
