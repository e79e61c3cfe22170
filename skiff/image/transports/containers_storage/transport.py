"""The ``containers-storage:`` transport: images in skiff's local store.

Syntax (containers/image's): ``containers-storage:[SPEC]REF`` where SPEC is
``DRIVER@ROOT+RUNROOT`` (every part optional: ``[ROOT]``, ``[vfs@ROOT]``,
``[ROOT+RUNROOT]``) and REF is ``NAME[:TAG]``, ``NAME@sha256:DIGEST``,
``@ID``, ``NAME@ID`` or a bare 64-hex ID. Names are normalized as docker
references (``busybox`` → ``docker.io/library/busybox:latest``); resolving
short names against the images present is the CLI's job, before it builds
a reference. An empty REF is allowed for destinations (an unnamed image).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import ConfigError, InvalidReference
from skiff.oci.reference import NamedReference, parse_normalized_named

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.types import ImageDestination, ImageSource, ImageTransport

NAME = "containers-storage"
_ID_RE = re.compile(r"\A[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class StoreSpec:
    """Which store: None parts mean "the context's"."""

    driver: str | None = None
    root: str | None = None
    run_root: str | None = None

    def format(self) -> str:
        if self.driver is None and self.root is None and self.run_root is None:
            return ""
        text = ""
        if self.driver:
            text += f"{self.driver}@"
        text += self.root or ""
        if self.run_root:
            text += f"+{self.run_root}"
        return f"[{text}]"

    def apply(self, ctx: SystemContext) -> SystemContext:
        changes: dict[str, object] = {}
        if self.root:
            changes["storage_root"] = Path(self.root)
        if self.run_root:
            changes["run_root"] = Path(self.run_root)
        if self.driver:
            changes["storage_driver"] = self.driver
        return dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]


def _parse_spec(text: str) -> tuple[StoreSpec, str]:
    if not text.startswith("["):
        return StoreSpec(), text
    end = text.find("]")
    if end < 0:
        raise InvalidReference(
            f"invalid containers-storage reference {text!r}: missing ']'",
            "use [DRIVER@ROOT+RUNROOT]NAME",
        )
    spec, rest = text[1:end], text[end + 1 :]
    driver = None
    if "@" in spec:
        driver, spec = spec.split("@", 1)
        if not driver:
            raise InvalidReference(f"invalid containers-storage reference {text!r}: empty driver")
    spec = spec.split(":", 1)[0]  # options (":opt=v,...") are not supported and ignored
    root, _, run_root = spec.partition("+")
    for path in (root, run_root):
        if path and not path.startswith("/"):
            raise InvalidReference(
                f"invalid containers-storage reference {text!r}: {path!r} is not an absolute path"
            )
    return StoreSpec(driver, root or None, run_root or None), rest


class ContainersStorageTransport:
    @property
    def name(self) -> str:
        return NAME

    def parse_reference(self, text: str) -> StorageReference:
        spec, rest = _parse_spec(text)
        named: NamedReference | None = None
        image_id: str | None = None
        if _ID_RE.match(rest):
            image_id = rest
        elif rest:
            name_part, at, tail = rest.rpartition("@")
            if at and _ID_RE.match(tail):
                image_id = tail
                rest = name_part
            if rest:
                named = parse_normalized_named(rest)
                if named.digest is None:
                    named = named.tag_or_latest()
        return StorageReference(spec, named, image_id)

    def validate_policy_scope(self, scope: str) -> None:
        if not scope:
            raise ConfigError(
                "an empty containers-storage: policy scope is invalid", "use [DRIVER@ROOT]"
            )
        if scope.startswith("[") and "]" not in scope:
            raise ConfigError(f"invalid containers-storage: policy scope {scope!r}: missing ']'")


@dataclass(frozen=True)
class StorageReference:
    spec: StoreSpec
    named: NamedReference | None
    image_id: str | None

    @property
    def transport(self) -> ImageTransport:
        return TRANSPORT

    def string_within_transport(self) -> str:
        text = self.spec.format()
        if self.named is not None:
            text += str(self.named)
        if self.image_id is not None:
            text += f"@{self.image_id}"
        return text

    def __str__(self) -> str:
        return f"{NAME}:{self.string_within_transport()}"

    def docker_reference(self) -> NamedReference | None:
        return self.named

    def policy_configuration_identity(self) -> str:
        text = self.spec.format()
        if self.named is not None:
            text += str(self.named)
        if self.image_id is not None:
            text += f"@{self.image_id}"
        return text

    def policy_configuration_namespaces(self) -> list[str]:
        store = self.spec.format()
        out: list[str] = []
        if self.named is not None:
            name = self.named.name
            out.append(store + name)
            while "/" in name:
                name = name.rsplit("/", 1)[0]
                out.append(store + name)
        if store:
            out.append(store)
        if self.spec.driver and self.spec.root:
            out.append(f"[{self.spec.root}]")
        return [n for n in out if n != self.policy_configuration_identity()]

    def context(self, ctx: SystemContext) -> SystemContext:
        return self.spec.apply(ctx)

    def new_image_source(self, ctx: SystemContext) -> ImageSource:
        from skiff.image.transports.containers_storage.source import StorageSource

        return StorageSource(self, self.context(ctx))

    def new_image_destination(self, ctx: SystemContext) -> ImageDestination:
        from skiff.image.transports.containers_storage.destination import StorageDestination

        return StorageDestination(self, self.context(ctx))

    def delete_image(self, ctx: SystemContext) -> None:
        from skiff.image.transports.containers_storage.source import open_image
        from skiff.storage.store import Store

        store = Store.open(self.context(ctx))
        try:
            image = open_image(store, self)
            store.delete_image(image.id)
        finally:
            store.close()


TRANSPORT = ContainersStorageTransport()
