"""``skiff push IMAGE [DESTINATION]`` (podman push): progress on stderr, nothing on stdout."""

from __future__ import annotations

import argparse
from pathlib import Path

from skiff.cli.commands.pull import registry_context, registry_options
from skiff.cli.trust import add_signing_options
from skiff.errors import UsageError
from skiff.oci import mediatypes as mt

FORMATS = {"oci": mt.OCI_MANIFEST, "v2s2": mt.DOCKER_V2S2, "v2s1": mt.DOCKER_V2S1}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="local image (name or ID)")
    parser.add_argument(
        "destination",
        nargs="?",
        metavar="DESTINATION",
        help="REGISTRY/REPOSITORY[:TAG] or TRANSPORT:REFERENCE (default: the image's name)",
    )
    parser.add_argument(
        "-f",
        "--format",
        choices=sorted(FORMATS),
        help="manifest type to write (default: the image's, with fallbacks)",
    )
    parser.add_argument(
        "--compression-format",
        choices=("gzip", "zstd"),
        help="compress layers with this (default: as they were pulled, else gzip)",
    )
    parser.add_argument(
        "--compress",
        action="store_true",
        help="compress layers also for destinations that take them uncompressed (dir:)",
    )
    parser.add_argument(
        "--remove-signatures", action="store_true", help="do not copy the image's signatures"
    )
    add_signing_options(parser)
    parser.add_argument(
        "--digestfile",
        type=Path,
        metavar="PATH",
        help="write the digest of the pushed manifest to PATH",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    registry_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.progress import podman_progress
    from skiff.cli.trust import attach_policy_and_signers
    from skiff.image.copy import CopyOptions
    from skiff.image.transports.localfs import atomic_write
    from skiff.libimage.push import PushOptions, push_image

    if args.format == "v2s1":
        raise UsageError("pushing Docker schema 1 manifests is not supported", "use -f v2s2 or oci")
    ctx = registry_context(args)
    copy_options = CopyOptions(
        manifest_format=FORMATS[args.format] if args.format else None,
        compress_format=args.compression_format,
        remove_signatures=args.remove_signatures,
        progress=podman_progress(args.quiet),
    )
    attach_policy_and_signers(copy_options, ctx, args)
    report = push_image(
        ctx, args.image, args.destination, PushOptions(copy=copy_options, compress=args.compress)
    )
    if args.digestfile:
        atomic_write(args.digestfile, str(report.manifest_digest).encode())
    return 0
