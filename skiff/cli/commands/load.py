"""``skiff load [-i FILE]`` (podman load): ``Loaded image: NAME`` lines on stdout."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i",
        "--input",
        type=Path,
        metavar="PATH",
        help="archive or layout directory to load (default: stdin)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.progress import podman_progress
    from skiff.cli.trust import attach_policy_and_signers
    from skiff.image.copy import CopyOptions
    from skiff.libimage.saveload import LoadOptions, load_images

    ctx = system_context(args)
    copy = CopyOptions(progress=podman_progress(args.quiet))
    attach_policy_and_signers(copy, ctx, args)
    options = LoadOptions(copy=copy)
    if args.input is not None:
        report = load_images(ctx, args.input, options)
    else:
        if sys.stdin.isatty():
            raise UsageError(
                "cannot read from terminal, use command-line redirection or the --input flag"
            )
        # archives are read by offset, so stdin is spooled to a file first
        with tempfile.TemporaryDirectory(prefix="skiff-load-", dir=ctx.tmp_dir) as tmp:
            spooled = Path(tmp) / "stdin.tar"
            with spooled.open("wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            report = load_images(ctx, spooled, options)
    for line in report.lines:
        print(line)
    return 0
