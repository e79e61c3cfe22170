"""``skiff image generate-sigstore-key --output-prefix PREFIX`` (skopeo's).

Writes PREFIX.pub and PREFIX.private (ECDSA P-256, the private key
encrypted with a passphrase; cosign-compatible files) and never overwrites.
The passphrase comes from ``--passphrase-file`` or is asked twice on the
terminal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output-prefix",
        required=True,
        type=Path,
        metavar="PREFIX",
        help="write the key pair to PREFIX.pub and PREFIX.private",
    )
    parser.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="PATH",
        help="read the passphrase for the private key from PATH (first line)",
    )
    parser.set_defaults(func=run)


def _ask() -> str:
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for a passphrase", "use --passphrase-file")
    import getpass

    first = getpass.getpass("Enter a passphrase: ")
    if first != getpass.getpass("Re-enter the passphrase: "):
        raise UsageError("the passphrases do not match")
    return first


def run(args: argparse.Namespace) -> int:
    from skiff.signature.signing import read_passphrase_file
    from skiff.signature.sigstore import generate_key_pair, write_key_pair

    passphrase = read_passphrase_file(args.passphrase_file) if args.passphrase_file else _ask()
    public, private = write_key_pair(args.output_prefix, generate_key_pair(passphrase))
    sys.stdout.write(f"Key written to {str(private)!r} and {str(public)!r}\n")
    return 0
