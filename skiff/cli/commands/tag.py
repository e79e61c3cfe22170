"""``skiff tag IMAGE NAME...`` (podman tag): add names to a local image.

A name without a registry is stored under ``localhost/`` (``foo`` →
``localhost/foo:latest``), as podman stores it.
"""

from __future__ import annotations

import argparse

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="ID or name of a local image")
    parser.add_argument("names", nargs="*", metavar="TARGET_NAME[:TAG]")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.libimage.tags import tag_image

    if not args.names:
        raise UsageError(
            "requires at least 2 arg(s), only received 1", "usage: skiff tag IMAGE TARGET_NAME..."
        )
    tag_image(system_context(args), args.image, list(args.names))
    return 0
