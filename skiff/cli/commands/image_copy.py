"""``skiff image copy SRC DEST`` (skopeo copy)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skiff.cli import imageopts
from skiff.cli.trust import add_signing_options
from skiff.errors import UsageError
from skiff.oci import mediatypes as mt

FORMATS = {"oci": mt.OCI_MANIFEST, "v2s2": mt.DOCKER_V2S2}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE-IMAGE", help="TRANSPORT:REFERENCE to copy from")
    parser.add_argument(
        "destination", metavar="DESTINATION-IMAGE", help="TRANSPORT:REFERENCE to copy to"
    )
    parser.add_argument(
        "-a",
        "--all",
        action="store_true",
        help="copy all images of a manifest list, not only the host platform's",
    )
    parser.add_argument(
        "-f",
        "--format",
        choices=[*sorted(FORMATS), "v2s1"],
        help="manifest type to write (oci, v2s2)",
    )
    parser.add_argument(
        "--dest-compress", action="store_true", help="compress layers at the destination"
    )
    parser.add_argument("--dest-decompress", action="store_true", help="store layers uncompressed")
    parser.add_argument(
        "--dest-compress-format",
        choices=("gzip", "zstd"),
        metavar="FORMAT",
        help="compression algorithm for the destination's layers (gzip, zstd)",
    )
    parser.add_argument(
        "--dest-compress-level",
        type=int,
        metavar="LEVEL",
        help="compression level for the destination's layers",
    )
    parser.add_argument(
        "--preserve-digests", action="store_true", help="fail rather than change any digest"
    )
    parser.add_argument(
        "--remove-signatures", action="store_true", help="do not copy signatures from the source"
    )
    add_signing_options(parser, identity=True)
    parser.add_argument(
        "--digestfile",
        type=Path,
        metavar="PATH",
        help="write the digest of the written manifest to PATH",
    )
    parser.add_argument(
        "--max-parallel", type=int, metavar="N", help="blobs copied at the same time"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    imageopts.add_common_options(parser)
    imageopts.add_side_options(parser, "src")
    imageopts.add_side_options(parser, "dest")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.progress import progress_for
    from skiff.image.copy import CopyOptions, copy_image
    from skiff.image.transports import parse_image_name

    if args.format == "v2s1":
        raise UsageError(
            "writing Docker schema 1 manifests is not supported", "use --format v2s2 or oci"
        )
    if args.dest_compress and args.dest_decompress:
        raise UsageError("--dest-compress and --dest-decompress cannot be used together")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UsageError("--max-parallel must be at least 1")
    base = system_context(args)
    src_ctx = imageopts.side_context(base, args, "src")
    dest_ctx = imageopts.side_context(base, args, "dest")
    src_ref = parse_image_name(args.source)
    dest_ref = parse_image_name(args.destination)
    options = CopyOptions(
        manifest_format=FORMATS.get(args.format) if args.format else None,
        copy_all=args.all,
        compress_format=args.dest_compress_format or ("gzip" if args.dest_compress else None),
        compress_level=args.dest_compress_level,
        decompress=args.dest_decompress,
        preserve_digests=args.preserve_digests,
        remove_signatures=args.remove_signatures,
        progress=progress_for(args.quiet),
    )
    if args.max_parallel:
        options.max_parallel = args.max_parallel
    from skiff.cli.trust import attach_policy_and_signers

    attach_policy_and_signers(options, base, args)
    report = copy_image(src_ref, dest_ref, options, src_ctx, dest_ctx)
    if args.digestfile:
        args.digestfile.write_text(str(report.manifest_digest))
    sys.stdout.flush()
    return 0
