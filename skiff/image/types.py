"""The shared vocabulary of the image library (containers/image's types.go).

A *transport* (``docker``, ``oci``, ``dir``, ...) parses references; a
*reference* opens an *image source* (to read) or an *image destination* (to
write). Only the copy engine (``skiff.image.copy``) moves images between
them, and it does so in a fixed order:

    dest = ref.new_image_destination(ctx)
    for each blob (config and layers, possibly in parallel when
                   dest.has_thread_safe_put_blob):
        dest.try_reusing_blob(info)  →  reused, or
        dest.put_blob(stream, info, is_config)
    dest.put_manifest(raw [, instance_digest])   # per instance, then top level
    dest.put_signatures(sigs [, instance_digest])
    dest.commit()
    dest.close()

Who checks what:
- The copy engine verifies every blob's digest and size while streaming
  (``BlobStream`` raises DigestMismatch at end of stream) and verifies
  manifests fetched by digest before parsing them. Sources return raw bytes
  and never claim verification.
- A destination trusts ``stream.digest``/``stream.size`` read *after* the
  stream reached its end (the engine computed them); it never rehashes.
- A destination writes to temporary names and makes data visible only in
  ``commit``; ``close`` without ``commit`` removes what it added. Blobs in a
  content-addressed store may stay (they are verified), but nothing that
  names the image (index.json entry, tag, store record) may appear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from skiff.oci.digest import Digest

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.oci.reference import NamedReference


class Compression(Enum):
    """What a destination wants done to layers (containers/image's LayerCompression)."""

    PRESERVE = "preserve"
    COMPRESS = "compress"
    DECOMPRESS = "decompress"


@dataclass(frozen=True)
class BlobInfo:
    """What is known about a blob before it is copied.

    ``digest`` is None and ``size`` -1 when not known in advance (a layer the
    engine is recompressing). ``compression`` is "gzip", "zstd", "" or None
    (unknown: not a layer, or a foreign type).
    """

    digest: Digest | None
    size: int = -1
    media_type: str = ""
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    compression: str | None = None


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class ClosableReader(Reader, Protocol):
    def close(self) -> None: ...


@runtime_checkable
class BlobStream(Protocol):
    """A stream handed to ``put_blob``: read it to the end, then ask what it was."""

    def read(self, size: int = -1, /) -> bytes: ...

    @property
    def digest(self) -> Digest:
        """Digest of everything read; valid once ``read`` returned ``b""``."""
        ...

    @property
    def size(self) -> int: ...


class ImageTransport(Protocol):
    """A named way to reach images: parses ``NAME`` of ``transport:NAME``."""

    @property
    def name(self) -> str: ...

    def parse_reference(self, text: str) -> ImageReference: ...

    def validate_policy_scope(self, scope: str) -> None:
        """Raise ConfigError if ``scope`` cannot be a policy.json scope here."""
        ...


class ImageReference(Protocol):
    """An immutable, parsed reference to one image in one transport."""

    @property
    def transport(self) -> ImageTransport: ...

    def string_within_transport(self) -> str:
        """The reference without the ``transport:`` prefix; parses back to the same."""
        ...

    def docker_reference(self) -> NamedReference | None:
        """The Docker-style name of the image, if the transport has one.

        Used for signature identities and policy lookup.
        """
        ...

    def policy_configuration_identity(self) -> str:
        """The most specific policy.json scope for this reference."""
        ...

    def policy_configuration_namespaces(self) -> list[str]:
        """Less specific scopes, most specific first (without the identity)."""
        ...

    def new_image_source(self, ctx: SystemContext) -> ImageSource: ...

    def new_image_destination(self, ctx: SystemContext) -> ImageDestination: ...

    def delete_image(self, ctx: SystemContext) -> None: ...


class ImageSource(Protocol):
    """Read access to one image (or index) at a transport."""

    @property
    def reference(self) -> ImageReference: ...

    def get_manifest(self, instance_digest: Digest | None = None) -> tuple[bytes, str]:
        """Raw manifest bytes and their media type ("" if the transport cannot tell).

        With ``instance_digest``, the manifest of that instance of an index.
        """
        ...

    def get_blob(self, info: BlobInfo) -> tuple[ClosableReader, int]:
        """A stream of the blob and its size (-1 if unknown). Not verified."""
        ...

    @property
    def has_thread_safe_get_blob(self) -> bool: ...

    def get_signatures(self, instance_digest: Digest | None = None) -> list[bytes]:
        """Simple-signing signatures stored with the image (may be empty)."""
        ...

    def layer_infos_for_copy(self, instance_digest: Digest | None = None) -> list[BlobInfo] | None:
        """Replacement layer infos when the source serves layers differently
        from what its manifest says (e.g. the store serves uncompressed diffs),
        or None to use the manifest's layers."""
        ...

    def close(self) -> None: ...


class ImageDestination(Protocol):
    """Write access to one image at a transport; see the module docstring for the order."""

    @property
    def reference(self) -> ImageReference: ...

    def supported_manifest_types(self) -> list[str]:
        """Manifest media types accepted, preferred first; empty means any."""
        ...

    @property
    def desired_layer_compression(self) -> Compression: ...

    @property
    def accepts_foreign_layer_urls(self) -> bool: ...

    @property
    def must_match_runtime_os(self) -> bool: ...

    @property
    def has_thread_safe_put_blob(self) -> bool: ...

    def supports_signatures(self) -> bool:
        """False when the destination has no place for simple signatures."""
        ...

    def try_reusing_blob(self, info: BlobInfo, can_substitute: bool) -> BlobInfo | None:
        """The blob as the destination already has it (maybe another
        compression when ``can_substitute``), or None if it must be sent."""
        ...

    def put_blob(self, stream: BlobStream, info: BlobInfo, is_config: bool) -> BlobInfo:
        """Store a blob read from ``stream`` to its end; return what was stored."""
        ...

    def put_manifest(self, raw: bytes, instance_digest: Digest | None = None) -> None: ...

    def put_signatures(
        self, signatures: list[bytes], instance_digest: Digest | None = None
    ) -> None: ...

    def commit(self) -> None:
        """Make the image visible. Nothing names it before this succeeds."""
        ...

    def close(self) -> None: ...


ProgressCallback = Callable[[str, int, int], None]
"""(blob digest or label, bytes done, total bytes or -1)."""
