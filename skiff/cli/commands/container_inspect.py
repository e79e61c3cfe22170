"""``skiff container inspect`` and the top-level ``skiff inspect`` (podman's).

``container inspect`` looks up containers only. ``inspect`` takes
``--type`` (container, image, volume, network, pod, all); with ``all``
(the default) each name is looked up as a container, then an image, a
volume, a network, a pod — podman's order. Every object found is printed (one
JSON array indented by five spaces, as podman prints it, or the
``--format`` template once per object); a name that matched nothing makes
the command fail afterwards with podman's message and exit 125.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from skiff.errors import SkiffError, UsageError

TYPES = ("container", "image", "volume", "network", "pod", "all")
INSPECT_INDENT = "     "


def register(parser: argparse.ArgumentParser) -> None:
    top_level = parser.prog.split()[-2:] != ["container", "inspect"]
    parser.set_defaults(func=run, inspect_top_level=top_level)
    parser.add_argument("-f", "--format", help="'json' or a Go template (e.g. '{{.State.Pid}}')")
    parser.add_argument("-l", "--latest", action="store_true", help="the latest container")
    parser.add_argument(
        "-s", "--size", action="store_true", help="show the container's size (SizeRw, SizeRootFs)"
    )
    if top_level:
        parser.add_argument("-t", "--type", default="all", help="object type: " + ", ".join(TYPES))
    parser.add_argument("names", nargs="*", metavar="NAME", help="names or IDs to inspect")


@dataclass
class _Found:
    json: Any
    template: Any


def _gojson(obj: object) -> str:
    from skiff.gotemplate.gojson import JSONError, encode

    try:
        return encode(obj, escape_html=True, indent=INSPECT_INDENT)
    except JSONError as exc:
        raise UsageError(f"cannot print as JSON: {exc}", "this is a bug in skiff") from None


class _Lookup:
    """Finds one name as each kind of object (stores opened once, lazily)."""

    def __init__(self, rt: Any, args: argparse.Namespace) -> None:
        self.rt = rt
        self.args = args

    def container(self, name: str) -> _Found | None:
        from skiff.runtime.inspect import inspect_container

        found = self.rt.records.find(name)
        if found is None:
            return None
        data = inspect_container(self.rt, found, size=self.args.size)
        return _Found(data, data)

    def image(self, name: str) -> _Found | None:
        from skiff.libimage.inspect import inspect_images

        report = inspect_images(self.rt.ctx, [name])
        if not report.images:
            return None
        return _Found(report.images[0], report.images[0])

    def volume(self, name: str) -> _Found | None:
        from skiff.runtime.volumes.store import VolumeStore

        volume = VolumeStore.of(self.rt.store).find(name)
        if volume is None:
            return None
        return _Found(volume.inspect_json(), volume.template_data())

    def network(self, name: str) -> _Found | None:
        from skiff.runtime.network.store import NetworkStore

        try:
            network = NetworkStore.of(self.rt.store).get(name)
        except SkiffError:
            return None
        return _Found(network.to_json(), network.template_data())

    def pod(self, name: str) -> _Found | None:
        from skiff.runtime.pods.records import PodRecords
        from skiff.runtime.pods.report import inspect_pod

        pod = PodRecords(self.rt.store.db).find(name)
        if pod is None:
            return None
        data = inspect_pod(self.rt, pod)
        return _Found(data, data)


def _missing_message(kind: str, name: str) -> str:
    if kind == "all":
        return f'inspecting object: no such object: "{name}"'
    if kind == "image":
        return f"inspecting object: {name}: image not known"
    return f"inspecting object: no such {kind} {name}"


def run(args: argparse.Namespace) -> int:
    from skiff.cli.output import format_items, is_json
    from skiff.cli.runtimecli import open_runtime

    kind = getattr(args, "type", "container") if args.inspect_top_level else "container"
    if kind not in TYPES:
        raise UsageError(
            f'invalid type "{kind}": must be "image", "container", "pod", "network", '
            '"volume", or "all"'
        )
    if args.latest and args.names:
        raise UsageError("--latest and names cannot be given together")
    if not args.latest and not args.names:
        raise UsageError(
            "inspect: you must provide at least one name or ID", "or use --latest for a container"
        )
    rt = open_runtime(args)
    try:
        lookup = _Lookup(rt, args)
        names = list(args.names)
        if args.latest:
            everything = rt.records.all()
            if not everything:
                raise UsageError("no containers to inspect with --latest")
            names = [everything[-1].id]
            kind = "container"
        kinds = ("container", "image", "volume", "network", "pod") if kind == "all" else (kind,)
        found: list[_Found] = []
        missing: str | None = None
        for name in names:
            for each in kinds:
                item = getattr(lookup, each)(name)
                if item is not None:
                    found.append(item)
                    break
            else:
                missing = _missing_message(kind, name)
        if args.format is None or is_json(args.format):
            sys.stdout.write(_gojson([f.json for f in found]) + "\n")
        elif found:
            sys.stdout.write(format_items(args.format, [f.template for f in found]))
        sys.stdout.flush()
        if missing is not None:
            raise SkiffError(missing)
        return 0
    finally:
        rt.close()
