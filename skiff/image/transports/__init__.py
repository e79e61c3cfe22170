"""The transport registry: the only place that knows every transport.

``parse_image_name("oci:/tmp/x:latest")`` finds the transport by its name
and lets it parse the rest. Transport modules are imported on first use so
that a command touching only ``dir:`` never imports the registry client.
Each transport package exposes a module-level ``TRANSPORT`` object.
"""

from __future__ import annotations

from importlib import import_module
from typing import cast

from skiff.errors import InvalidReference
from skiff.image.types import ImageReference, ImageTransport

_MODULES: dict[str, str] = {
    "docker": "skiff.image.transports.docker",
    "oci": "skiff.image.transports.oci_layout",
    "oci-archive": "skiff.image.transports.oci_archive",
    "docker-archive": "skiff.image.transports.docker_archive",
    "dir": "skiff.image.transports.dir",
    "containers-storage": "skiff.image.transports.containers_storage",
}

_LOADED: dict[str, ImageTransport] = {}


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> ImageTransport:
    transport = _LOADED.get(name)
    if transport is not None:
        return transport
    module_name = _MODULES.get(name)
    if module_name is None:
        raise InvalidReference(
            f"unknown transport {name!r}", f"known transports: {', '.join(names())}"
        )
    transport = cast(ImageTransport, import_module(module_name).TRANSPORT)
    _LOADED[name] = transport
    return transport


def parse_image_name(text: str) -> ImageReference:
    """Parse ``transport:reference`` (``docker://busybox``, ``oci:/x:tag``)."""
    name, sep, rest = text.partition(":")
    if not sep or name not in _MODULES:
        raise InvalidReference(
            f"invalid image name {text!r}: expected TRANSPORT:REFERENCE",
            f"known transports: {', '.join(names())}, e.g. docker://quay.io/a/b:tag",
        )
    return get(name).parse_reference(rest)
