"""``skiff info`` / ``skiff system info`` (podman info).

YAML by default (podman's keys), ``--format json`` as indented JSON, or a
Go template over podman's field names (``{{.Store.GraphRoot}}``).
"""

from __future__ import annotations

import argparse
import sys

JSON_INDENT = "  "  # podman info --format json


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--format", help="'json', 'yaml', or a Go template")
    parser.add_argument(
        "-D", "--debug", action="store_true", help="accepted for podman compatibility; no effect"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from skiff.cli.context import system_context
    from skiff.cli.output import is_json, render_template
    from skiff.runtime.sysinfo import system_info, template_view

    data = system_info(system_context(args))
    if is_json(args.format):
        from skiff.gotemplate.gojson import encode

        sys.stdout.write(encode(data, escape_html=True, indent=JSON_INDENT) + "\n")
        return 0
    if args.format is None or args.format.strip() == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
        return 0
    sys.stdout.write(render_template(args.format, template_view(data)))
    return 0
