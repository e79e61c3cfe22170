"""Reading one image (or index) of an OCI layout, in a directory or in a tar.

The entry is chosen when the source opens, so a wrong name or an ambiguous
layout fails before anything is copied. Manifests are returned as the raw
blob bytes with the media type index.json gives them (guessed from the
content when the entry does not say); instances of an index are read by
digest. Every manifest is read by a digest (index.json names the top-level
one), so its bytes are verified here, before anything parses them; blobs
are streamed unverified and the copy engine checks them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skiff.errors import ImageError
from skiff.image.transports.oci_layout.layout import (
    LayoutReader,
    index_descriptors,
    parse_index_json,
    read_blob_bytes,
    select_descriptor,
)
from skiff.oci.manifest import MAX_MANIFEST_SIZE, guess_media_type

if TYPE_CHECKING:
    from skiff.image.types import BlobInfo, ClosableReader, ImageReference
    from skiff.oci.digest import Digest


class OCILayoutSource:
    """An ImageSource over any LayoutReader; closes the reader when closed."""

    def __init__(
        self,
        reference: ImageReference,
        reader: LayoutReader,
        image: str,
        source_index: int | None,
    ) -> None:
        self._reference = reference
        self._reader = reader
        try:
            obj = parse_index_json(reader.read_index(), reader.label)
            entries = index_descriptors(obj, reader.label)
            shown = f"{reference.transport.name}:{reference.string_within_transport()}"
            self._descriptor = select_descriptor(entries, image, source_index, reader.label, shown)
        except BaseException:
            reader.close()
            raise

    @property
    def reference(self) -> ImageReference:
        return self._reference

    @property
    def manifest_digest(self) -> Digest:
        """The digest of the selected index.json entry."""
        return self._descriptor.digest

    def get_manifest(self, instance_digest: Digest | None = None) -> tuple[bytes, str]:
        if instance_digest is None:
            digest, media_type = self._descriptor.digest, self._descriptor.media_type
        else:
            digest, media_type = instance_digest, ""
        raw = read_blob_bytes(self._reader, digest, MAX_MANIFEST_SIZE, "manifest")
        digest.verify_bytes(raw, what=f"manifest {digest} in {self._reader.label}")
        return raw, media_type or guess_media_type(raw)

    def get_blob(self, info: BlobInfo) -> tuple[ClosableReader, int]:
        if info.digest is None:
            raise ImageError(f"cannot read a blob without a digest from {self._reader.label}")
        try:
            return self._reader.open_blob(info.digest)
        except ImageError as exc:
            if info.urls and exc.hint:
                exc.hint += "; the blob is a foreign layer (urls), which skiff does not download"
            raise

    @property
    def has_thread_safe_get_blob(self) -> bool:
        return True

    def get_signatures(self, instance_digest: Digest | None = None) -> list[bytes]:
        return []

    def layer_infos_for_copy(self, instance_digest: Digest | None = None) -> list[BlobInfo] | None:
        return None

    def close(self) -> None:
        self._reader.close()
