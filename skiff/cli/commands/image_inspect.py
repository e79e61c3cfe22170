"""``skiff image inspect``: skopeo's inspect for TRANSPORT:REF, podman's for local images."""

from __future__ import annotations

import argparse
import json
import sys

from skiff.cli import imageopts


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="TRANSPORT:REFERENCE, or a local image")
    parser.add_argument(
        "--raw", action="store_true", help="print the raw manifest (or config with --config)"
    )
    parser.add_argument("--config", action="store_true", help="print the image config")
    parser.add_argument(
        "-n", "--no-tags", action="store_true", help="do not list the repository's tags"
    )
    parser.add_argument("-f", "--format", help="'json' or a Go template applied to the result")
    imageopts.add_common_options(parser)
    imageopts.add_side_options(parser, "")
    parser.set_defaults(func=run)


def _has_transport(text: str) -> bool:
    from skiff.image.transports import names

    prefix, sep, _ = text.partition(":")
    return bool(sep) and prefix in names()


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context

    ctx = imageopts.side_context(system_context(args), args, "")
    if not _has_transport(args.image):
        from skiff.errors import InvalidReference

        raise InvalidReference(
            f"{args.image!r} names no transport",
            "use TRANSPORT:REFERENCE, e.g. docker://quay.io/a/b:tag or oci:/path:tag",
        )
    from skiff.image import inspect as lib
    from skiff.image.transports import parse_image_name

    ref = parse_image_name(args.image)
    if args.raw and not args.config:
        sys.stdout.buffer.write(lib.raw_manifest(ref, ctx))
        sys.stdout.flush()
        return 0
    info = lib.inspect_reference(ref, ctx)
    if args.config:
        if args.raw and info.raw_config is not None:
            sys.stdout.buffer.write(info.raw_config)
        else:
            print(json.dumps(info.config.data, indent=4))
        return 0
    tags: list[str] | None = None
    if ref.transport.name == "docker" and not args.no_tags:
        from skiff.image.transports.docker import list_tags

        tags = list_tags(ctx, ref)
    output = lib.skopeo_inspect_output(info, tags)
    if args.format and args.format != "json":
        from skiff.cli.output import render_template

        sys.stdout.write(render_template(args.format, output))
    else:
        print(json.dumps(output, indent=4))
    return 0
