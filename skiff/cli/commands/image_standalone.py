"""``skiff image standalone-sign`` / ``standalone-verify`` (skopeo's), on local files.

    standalone-sign MANIFEST DOCKER-REFERENCE KEY-FINGERPRINT -o SIGNATURE
    standalone-verify MANIFEST DOCKER-REFERENCE KEY-FINGERPRINT[,…] SIGNATURE

Both use the user's GnuPG keyring (``GNUPGHOME``); verification checks the
signer against the fingerprint(s), the digest against MANIFEST and the
claimed identity against DOCKER-REFERENCE, exactly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skiff.errors import UsageError

MAX_FILE = 4 << 20


def register(parser: argparse.ArgumentParser) -> None:
    command = parser.prog.rsplit(" ", 1)[-1]
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="manifest file")
    parser.add_argument(
        "reference", metavar="DOCKER-REFERENCE", help="the identity, e.g. quay.io/a/b:1.0"
    )
    if command == "standalone-sign":
        parser.add_argument("fingerprint", metavar="KEY-FINGERPRINT", help="GPG key to sign with")
        parser.add_argument(
            "-o", "--output", type=Path, required=True, metavar="SIGNATURE", help="write here"
        )
        parser.add_argument(
            "--passphrase-file",
            type=Path,
            metavar="PATH",
            help="read the key's passphrase from PATH (first line)",
        )
        parser.set_defaults(func=run_sign)
    else:
        parser.add_argument(
            "fingerprint",
            metavar="KEY-FINGERPRINT",
            help="accepted signer fingerprint(s), comma-separated",
        )
        parser.add_argument("signature", type=Path, metavar="SIGNATURE", help="signature file")
        parser.set_defaults(func=run_verify)


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE:
        raise UsageError(f"{what} {path} is larger than 4 MiB")
    return data


def run_sign(args: argparse.Namespace) -> int:
    from skiff.image.transports.localfs import atomic_write
    from skiff.signature.signing import read_passphrase_file, standalone_sign

    passphrase = read_passphrase_file(args.passphrase_file) if args.passphrase_file else None
    signature = standalone_sign(
        _read(args.manifest, "manifest"), args.reference, args.fingerprint, passphrase
    )
    atomic_write(args.output, signature)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from skiff.signature.signing import standalone_verify

    result = standalone_verify(
        _read(args.manifest, "manifest"),
        args.reference,
        args.fingerprint.split(","),
        _read(args.signature, "signature"),
    )
    # skopeo 1.9's words (newer skopeo also names the fingerprint)
    sys.stdout.write(f"Signature verified, digest {result.digest}\n")
    return 0
