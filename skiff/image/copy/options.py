"""Options, hooks and the report of the copy engine."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from skiff.oci.digest import Digest

if TYPE_CHECKING:
    from skiff.image.types import BlobInfo, ImageSource
    from skiff.oci.reference import NamedReference


class CopyProgress(Protocol):
    """Receives progress events; called from worker threads, so be thread-safe."""

    def blob_started(self, info: BlobInfo, kind: str) -> None:
        """``kind`` is "blob" or "config"."""
        ...

    def blob_advanced(self, info: BlobInfo, done: int) -> None: ...

    def blob_finished(self, info: BlobInfo, skipped: bool) -> None: ...

    def note(self, message: str) -> None:
        """A step without bytes: "Writing manifest to image destination"."""
        ...


class PolicyCheck(Protocol):
    """Decides whether an image may be copied (the trust policy).

    Called with the source and its unparsed top-level manifest before any
    blob is read; raises PolicyRejected to refuse.
    """

    def __call__(self, source: ImageSource, manifest: bytes, manifest_type: str) -> None: ...


Signer = Callable[[bytes, "NamedReference"], bytes]
"""(manifest bytes, identity) → a signature blob; used for ``--sign-by``."""


class BlobLocations(Protocol):
    """The blob-info cache as the copy engine uses it (see storage's blob-info cache)."""

    def candidate_locations(self, digest: Digest, transport: str, scope: str) -> list[str]: ...

    def record_location(
        self, digest: Digest, transport: str, scope: str, location: str
    ) -> None: ...

    def record_compression(
        self, compressed: Digest, uncompressed: Digest, algorithm: str
    ) -> None: ...


def default_parallelism() -> int:
    """Blob transfers at once: I/O bound, but (de)compression wants cores."""
    return max(2, min(6, 2 * (os.cpu_count() or 1)))


@dataclass
class CopyOptions:
    """What ``copy_image`` should do beyond copying bytes (skopeo copy's flags)."""

    manifest_format: str | None = None
    """Force a manifest media type (``--format oci|v2s2``); None keeps what works."""
    copy_all: bool = False
    """``--all``: copy every instance of an index, not just the host platform's."""
    compress_format: str | None = None
    """``--dest-compress-format gzip|zstd``: (re)compress layers to this algorithm."""
    compress_level: int | None = None
    decompress: bool = False
    """``--dest-decompress``: store layers uncompressed."""
    preserve_digests: bool = False
    """Fail rather than change any digest (no conversion, no recompression)."""
    remove_signatures: bool = False
    max_parallel: int = field(default_factory=default_parallelism)
    progress: CopyProgress | None = None
    policy_check: PolicyCheck | None = None
    signers: list[Signer] = field(default_factory=list)
    blob_locations: BlobLocations | None = None
    source_ctx_label: str = ""


@dataclass(frozen=True)
class BlobResult:
    source_digest: Digest
    digest: Digest
    size: int
    media_type: str
    reused: bool


@dataclass
class CopyReport:
    """What was written at the destination."""

    manifest: bytes
    manifest_type: str
    manifest_digest: Digest
    source_manifest_digest: Digest
    config_digest: Digest | None
    blobs: list[BlobResult] = field(default_factory=list)
    instances: list[CopyReport] = field(default_factory=list)
    signatures_written: int = 0
