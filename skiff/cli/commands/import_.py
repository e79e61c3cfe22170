"""``skiff import TARBALL|URL|- [REFERENCE]`` (podman import): prints ``sha256:ID``."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from skiff.errors import UsageError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="TARBALL", help="a tarball, an http(s) URL, or - for stdin"
    )
    parser.add_argument(
        "reference", nargs="?", metavar="REFERENCE", help="name for the image (NAME[:TAG])"
    )
    parser.add_argument(
        "-c",
        "--change",
        action="append",
        default=[],
        metavar="INSTRUCTION",
        help="apply a Dockerfile instruction: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, "
        "STOPSIGNAL, USER, VOLUME, WORKDIR",
    )
    parser.add_argument("-m", "--message", default="", help="commit message for the image")
    parser.add_argument("--arch", help="architecture of the image (default: the machine's)")
    parser.add_argument("--os", help="operating system of the image (default: linux)")
    parser.add_argument("--variant", help="architecture variant of the image")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.progress import podman_progress
    from skiff.cli.trust import attach_policy_and_signers
    from skiff.image.copy import CopyOptions
    from skiff.libimage.importer import ImportOptions, config_from_changes, import_image

    ctx = system_context(args)
    config_from_changes(args.change)  # refuse bad changes before reading any input
    copy = CopyOptions(progress=podman_progress(args.quiet))
    attach_policy_and_signers(copy, ctx, args)
    options = ImportOptions(
        changes=args.change,
        message=args.message,
        os=args.os,
        arch=args.arch,
        variant=args.variant,
        copy=copy,
    )
    if args.source != "-":
        report = import_image(ctx, args.source, args.reference, options)
    else:
        if sys.stdin.isatty():
            raise UsageError(
                "cannot read a tarball from a terminal", "redirect stdin or name a file"
            )
        with tempfile.TemporaryDirectory(prefix="skiff-import-stdin-", dir=ctx.tmp_dir) as tmp:
            spooled = Path(tmp) / "stdin.tar"
            with spooled.open("wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            report = import_image(ctx, str(spooled), args.reference, options)
    print(f"sha256:{report.image_id}")
    return 0
