"""``skiff image prune [-a] [-f] [--filter]`` (podman image prune): remove unused images.

Asks first, as podman does, unless ``--force``; prints the IDs removed.
"""

from __future__ import annotations

import argparse
import sys

DANGLING_WARNING = "WARNING! This command removes all dangling images.\n"
ALL_WARNING = (
    "WARNING! This command removes all images without at least one container associated "
    "with them.\n"
)
QUESTION = "Are you sure you want to continue? [y/N] "


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a",
        "--all",
        action="store_true",
        help="remove all images not in use by containers, not just dangling ones",
    )
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--filter", action="append", default=[], help="only images matching (label=, until=)"
    )
    parser.set_defaults(func=run)


def confirm(warning: str) -> bool:
    """Print podman's question and read the answer from stdin (no answer: no)."""
    sys.stdout.write(warning + QUESTION)
    sys.stdout.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.libimage.remove import PruneOptions, prune_images

    if not args.force and not confirm(ALL_WARNING if args.all else DANGLING_WARNING):
        return 0
    report = prune_images(
        system_context(args), PruneOptions(all=args.all, filters=tuple(args.filter))
    )
    sys.stdout.write("".join(f"{image_id}\n" for image_id in report.removed))
    return 0
