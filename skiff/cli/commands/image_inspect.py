"""``skiff image inspect``: skopeo's inspect for TRANSPORT:REF, podman's for local images."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from skiff.cli import imageopts

if TYPE_CHECKING:
    from skiff.config import SystemContext


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="TRANSPORT:REFERENCE, or a local image")
    parser.add_argument("more", nargs="*", metavar="IMAGE", help="more local images")
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
        return _inspect_local(ctx, [args.image, *args.more], args.format)
    if args.more:
        from skiff.errors import UsageError

        raise UsageError(
            "TRANSPORT:REFERENCE inspects one image at a time", "run one inspect per image"
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


LOCAL_INDENT = " " * 5  # podman image inspect


def _inspect_local(ctx: SystemContext, names: list[str], fmt: str | None) -> int:
    """podman's ``image inspect`` of local images: a JSON array, or a template per image."""
    from skiff.cli.output import format_items, is_json
    from skiff.gotemplate.gojson import encode
    from skiff.libimage.inspect import inspect_images

    report = inspect_images(ctx, names)
    if fmt is None or is_json(fmt):
        sys.stdout.write(encode(report.images, escape_html=True, indent=LOCAL_INDENT) + "\n")
    else:
        views = [{**data, "ID": data["Id"]} for data in report.images]
        sys.stdout.write(format_items(fmt, views))
    if report.errors:
        for error in report.errors[:-1]:
            print(f"Error: inspecting object: {error}", file=sys.stderr)
        last = report.errors[-1]
        last.message = f"inspecting object: {last.message}"
        raise last
    return 0
