"""Reading an image from an OCI archive without extracting it.

The archive is indexed once (see ``tarstream``); index.json, manifests and
blobs are then read straight from their offsets in the file. Member names
are validated while indexing, and an OCI archive may hold only regular
files and directories: a link or device is refused as unsafe.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from skiff.errors import ImageNotFound
from skiff.image.transports.oci_layout.layout import (
    BLOBS_DIR,
    INDEX_FILE,
    LAYOUT_FILE,
    MAX_INDEX_SIZE,
    check_layout_version,
    missing_blob,
)
from skiff.image.transports.oci_layout.source import OCILayoutSource
from skiff.image.transports.tarstream import TarIndex

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.transports.oci_archive.transport import OCIArchiveReference
    from skiff.image.types import ClosableReader
    from skiff.oci.digest import Digest


class TarLayoutReader:
    """A LayoutReader over an indexed tar; owns (and closes) the index."""

    def __init__(self, tar: TarIndex) -> None:
        self._tar = tar

    @property
    def label(self) -> str:
        return self._tar.label

    def read_index(self) -> bytes:
        layout = self._tar.read_member(LAYOUT_FILE, 4096)
        if layout is not None:
            check_layout_version(layout, f"{LAYOUT_FILE} in {self.label}")
        raw = self._tar.read_member(INDEX_FILE, MAX_INDEX_SIZE)
        if raw is None:
            raise ImageNotFound(
                f"{self.label} is not an OCI archive: it has no {INDEX_FILE}",
                "for a `docker save` archive use docker-archive:",
            )
        return raw

    def open_blob(self, digest: Digest) -> tuple[ClosableReader, int]:
        found = self._tar.open_member(f"{BLOBS_DIR}/{digest.algorithm}/{digest.hex}")
        if found is None:
            raise missing_blob(self.label, digest)
        return found

    def close(self) -> None:
        self._tar.close()


def open_archive_source(reference: OCIArchiveReference, ctx: SystemContext) -> OCILayoutSource:
    tar = TarIndex.open(
        Path(reference.path), f"OCI archive {reference.path}", tmp_dir=ctx.tmp_dir, links=False
    )
    return OCILayoutSource(reference, TarLayoutReader(tar), reference.image, reference.source_index)
