"""``skiff image delete TRANSPORT:REF`` (skopeo delete)."""

from __future__ import annotations

import argparse

from skiff.cli import imageopts


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="TRANSPORT:REFERENCE to delete")
    imageopts.add_common_options(parser)
    imageopts.add_side_options(parser, "")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.image.transports import parse_image_name

    ctx = imageopts.side_context(system_context(args), args, "")
    parse_image_name(args.image).delete_image(ctx)
    return 0
