"""``skiff export [-o FILE] CONTAINER`` (podman export): the container's file system as a tar.

Without ``-o`` the tar goes to stdout, which must not be a terminal
(podman's refusal). With ``-o`` it is written to a temporary name and
renamed into place when complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    parser.add_argument("container", metavar="CONTAINER")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.libimage.changes import export_container

    ctx = system_context(args)
    if args.output is not None:
        export_container(ctx, args.container, output=args.output)
        return 0
    if sys.stdout.isatty():
        raise UsageError("refusing to export to terminal", "use -o FILE, or redirect the output")
    sys.stdout.flush()
    export_container(ctx, args.container, stream=sys.stdout.buffer)
    return 0
