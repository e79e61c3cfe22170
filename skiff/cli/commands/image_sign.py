"""``skiff image sign --sign-by KEY [--directory DIR] [--all] IMAGE...`` (podman image sign).

Signs images where they are: the signature is added beside those already
stored, in DIR or in the lookaside registries.d gives for the image
(laid out as REPO@ALG=HEX/signature-N, which podman and skopeo read).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from skiff.cli import imageopts


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="TRANSPORT:REFERENCE to sign")
    parser.add_argument("--sign-by", required=True, metavar="KEY", help="GPG key to sign with")
    parser.add_argument(
        "-d",
        "--directory",
        type=Path,
        metavar="DIR",
        help="store the signatures in DIR (default: the registries.d lookaside)",
    )
    parser.add_argument(
        "-a", "--all", action="store_true", help="sign every instance of a multi-arch image"
    )
    parser.add_argument(
        "--sign-passphrase-file",
        type=Path,
        metavar="PATH",
        help="read the key's passphrase from PATH (first line)",
    )
    imageopts.add_common_options(parser)
    imageopts.add_side_options(parser, "")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.signature.signing import read_passphrase_file, sign_image

    ctx = imageopts.side_context(system_context(args), args, "")
    passphrase = (
        read_passphrase_file(args.sign_passphrase_file) if args.sign_passphrase_file else None
    )
    for image in args.images:
        sign_image(
            ctx,
            image,
            args.sign_by,
            directory=args.directory,
            sign_all=args.all,
            passphrase=passphrase,
        )
    return 0
