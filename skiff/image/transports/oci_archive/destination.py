"""Writing one image as an OCI archive.

The image is written as an OCI layout in a private temporary directory
(``ctx.tmp_dir``) by the ``oci:`` destination, and ``commit`` archives that
layout into a temporary file beside FILE and renames it onto FILE. Until
then FILE is untouched; ``close`` removes the temporary directory and file.
As in containers/image, the archive holds only the image being written: an
existing FILE is replaced, not extended.

Members are written as ``oci-layout``, ``index.json``, then ``blobs/…`` in
sorted order, owner 0:0 and mtime 0, so one image always gives the same
archive bytes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from skiff.image.transports.localfs import ArchiveOutput, os_error
from skiff.image.transports.oci_layout.destination import OCILayoutDestination
from skiff.image.transports.oci_layout.layout import BLOBS_DIR, INDEX_FILE, LAYOUT_FILE
from skiff.image.transports.tarstream import TarWriter

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.transports.oci_archive.transport import OCIArchiveReference
    from skiff.image.types import BlobInfo, BlobStream, Compression, ImageReference
    from skiff.oci.digest import Digest


class OCIArchiveDestination:
    """An ImageDestination producing FILE from a temporary OCI layout."""

    def __init__(self, reference: OCIArchiveReference, ctx: SystemContext) -> None:
        self._reference = reference
        self._output = ArchiveOutput(
            Path(reference.path),
            f"OCI archive {reference.path}",
            ctx.tmp_dir,
            refuse_existing=False,
        )
        try:
            self._workdir = Path(tempfile.mkdtemp(prefix="skiff-oci-archive-", dir=ctx.tmp_dir))
        except OSError as exc:
            self._output.close()
            raise os_error(exc, f"cannot create a temporary directory in {ctx.tmp_dir}") from exc
        try:
            self._layout = OCILayoutDestination(
                reference, self._workdir / "layout", reference.image, durable=False
            )
        except BaseException:
            self._output.close()
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise

    @property
    def reference(self) -> ImageReference:
        return self._reference

    def supported_manifest_types(self) -> list[str]:
        return self._layout.supported_manifest_types()

    @property
    def desired_layer_compression(self) -> Compression:
        return self._layout.desired_layer_compression

    @property
    def accepts_foreign_layer_urls(self) -> bool:
        return self._layout.accepts_foreign_layer_urls

    @property
    def must_match_runtime_os(self) -> bool:
        return self._layout.must_match_runtime_os

    @property
    def has_thread_safe_put_blob(self) -> bool:
        return self._layout.has_thread_safe_put_blob

    def supports_signatures(self) -> bool:
        return self._layout.supports_signatures()

    def try_reusing_blob(self, info: BlobInfo, can_substitute: bool) -> BlobInfo | None:
        return self._layout.try_reusing_blob(info, can_substitute)

    def put_blob(self, stream: BlobStream, info: BlobInfo, is_config: bool) -> BlobInfo:
        return self._layout.put_blob(stream, info, is_config)

    def put_manifest(self, raw: bytes, instance_digest: Digest | None = None) -> None:
        self._layout.put_manifest(raw, instance_digest)

    def put_signatures(
        self, signatures: list[bytes], instance_digest: Digest | None = None
    ) -> None:
        self._layout.put_signatures(signatures, instance_digest)

    def commit(self) -> None:
        self._layout.commit()
        try:
            write_layout_tar(self._workdir / "layout", self._output.fd)
        except OSError as exc:
            raise os_error(exc, f"cannot write {self._reference.path}") from exc
        self._output.commit()

    def close(self) -> None:
        try:
            self._layout.close()
        finally:
            self._output.close()
            shutil.rmtree(self._workdir, ignore_errors=True)


def write_layout_tar(root: Path, fd: int) -> None:
    """Archive the layout directory ``root`` onto ``fd`` (layout files first)."""
    writer = TarWriter(fd)
    writer.add_file(LAYOUT_FILE, root / LAYOUT_FILE)
    writer.add_file(INDEX_FILE, root / INDEX_FILE)
    blobs = root / BLOBS_DIR
    writer.add_dir(BLOBS_DIR)
    for algorithm in sorted(p.name for p in blobs.iterdir() if p.is_dir()):
        writer.add_dir(f"{BLOBS_DIR}/{algorithm}")
        for blob in sorted(p.name for p in (blobs / algorithm).iterdir() if p.is_file()):
            writer.add_file(f"{BLOBS_DIR}/{algorithm}/{blob}", blobs / algorithm / blob)
    writer.finish()
