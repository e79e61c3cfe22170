"""``skiff untag IMAGE [NAME...]`` (podman untag): remove names (all without NAME)."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="ID or name of a local image")
    parser.add_argument("names", nargs="*", metavar="NAME", help="names to remove (default: all)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.libimage.tags import untag_image

    untag_image(system_context(args), args.image, list(args.names))
    return 0
