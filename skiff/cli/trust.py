"""Signing flags for the commands that copy images (``--sign-by`` and friends).

The trust policy needs no wiring here: the copy engine evaluates the policy
of the source context by itself (``--policy``, ``--insecure-policy``), for
every caller. What a command adds is signing: ``add_signing_options``
declares the flags, ``attach_policy_and_signers`` turns them into signers
on the CopyOptions (skopeo's and podman's flag names).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import UsageError

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.copy import CopyOptions


def add_signing_options(parser: argparse.ArgumentParser, *, identity: bool = False) -> None:
    """``--sign-by``, ``--sign-by-sigstore-private-key``, ``--sign-passphrase-file``
    (and skopeo's ``--sign-identity`` when ``identity``)."""
    parser.add_argument(
        "--sign-by", metavar="FINGERPRINT", help="sign the image with this GPG key (simple signing)"
    )
    parser.add_argument(
        "--sign-by-sigstore-private-key",
        type=Path,
        metavar="PATH",
        help="sign the image with the sigstore private key at PATH",
    )
    parser.add_argument(
        "--sign-passphrase-file",
        type=Path,
        metavar="PATH",
        help="read the passphrase of the signing key from PATH (first line)",
    )
    if identity:
        parser.add_argument(
            "--sign-identity",
            metavar="REFERENCE",
            help="identity the signature claims (default: the destination's reference)",
        )


def attach_policy_and_signers(
    options: CopyOptions, ctx: SystemContext, args: argparse.Namespace
) -> None:
    """Add the signers the flags ask for to ``options``."""
    sign_by: str | None = getattr(args, "sign_by", None)
    sigstore_key: Path | None = getattr(args, "sign_by_sigstore_private_key", None)
    passphrase_file: Path | None = getattr(args, "sign_passphrase_file", None)
    identity_text: str | None = getattr(args, "sign_identity", None)
    if not sign_by and not sigstore_key:
        if passphrase_file is not None or identity_text:
            raise UsageError(
                "--sign-passphrase-file and --sign-identity need --sign-by or "
                "--sign-by-sigstore-private-key"
            )
        return
    # imported only to sign: every pull, push, save and load comes through here
    from skiff.signature.signing import (
        gpg_signer,
        parse_identity,
        read_passphrase_file,
        sigstore_signer,
    )

    passphrase = read_passphrase_file(passphrase_file) if passphrase_file is not None else None
    identity = parse_identity(identity_text) if identity_text else None
    if sign_by:
        options.signers.append(gpg_signer(sign_by, passphrase, identity))
    if sigstore_key is not None:
        if passphrase is None:
            passphrase = _prompt(f"Passphrase for key {sigstore_key}: ")
        options.signers.append(sigstore_signer(sigstore_key, passphrase, identity))


def _prompt(text: str) -> str:
    if not sys.stdin.isatty():
        raise UsageError(
            "a passphrase is needed and there is no terminal to ask for it",
            "use --sign-passphrase-file",
        )
    import getpass

    return getpass.getpass(text)
