"""``skiff save [-o FILE] [--format F] [-m] IMAGE...`` (podman save)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from skiff.errors import UsageError

FORMATS = ("docker-archive", "oci-archive", "oci-dir", "docker-dir")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="images to save")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="write to PATH (default: stdout, which must not be a terminal)",
    )
    parser.add_argument(
        "--format",
        default="docker-archive",
        choices=FORMATS,
        help="docker-archive (default), oci-archive, oci-dir or docker-dir",
    )
    parser.add_argument(
        "-m",
        "--multi-image-archive",
        action="store_true",
        help="every IMAGE is an image, not a tag of the first (docker-archive only)",
    )
    parser.add_argument(
        "--compress", action="store_true", help="gzip the layers of oci-dir/docker-dir output"
    )
    parser.add_argument(
        "--uncompressed",
        action="store_true",
        help="accepted as podman does; layers leave the store uncompressed anyway",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.progress import podman_progress
    from skiff.cli.trust import attach_policy_and_signers
    from skiff.image.copy import CopyOptions
    from skiff.libimage.saveload import SaveOptions, save_images

    ctx = system_context(args)
    copy = CopyOptions(progress=podman_progress(args.quiet))
    attach_policy_and_signers(copy, ctx, args)
    options = SaveOptions(
        format=args.format,
        multi_image=args.multi_image_archive,
        compress=args.compress,
        copy=copy,
    )
    if args.output is not None:
        save_images(ctx, args.images, args.output, options)
        return 0
    if args.format not in ("docker-archive", "oci-archive"):
        raise UsageError(f"--format {args.format} writes a directory", "give it with -o DIR")
    if sys.stdout.isatty():
        raise UsageError("refusing to save to terminal. Use -o flag or redirect")
    # the archive is complete before a byte reaches stdout, so a failed save
    # never leaves half an archive in the reader's hands
    with tempfile.TemporaryDirectory(prefix="skiff-save-", dir=ctx.tmp_dir) as tmp:
        archive = Path(tmp) / "archive.tar"
        save_images(ctx, args.images, archive, options)
        _copy_to_stdout(archive)
    return 0


def _copy_to_stdout(path: Path) -> None:
    sys.stdout.flush()
    out = sys.stdout.fileno()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        try:
            while offset < size:
                sent = os.sendfile(out, f.fileno(), offset, size - offset)
                if sent == 0:
                    break
                offset += sent
        except OSError:
            # stdout is not something sendfile writes to: copy by hand
            f.seek(offset)
            while chunk := f.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
