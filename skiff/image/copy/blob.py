"""Copying one blob: reuse at the destination, or stream, verify, (re)compress, store.

The stream handed to the destination is built as a chain of readers:

    source stream → Counting (progress, cancellation) → VerifyingReader (source
    digest and size) → [decompress] → [compress] → [HashingReader] → put_blob

When nothing is converted, the VerifyingReader itself is the BlobStream the
destination reads, so the content is hashed exactly once. When the layer is
converted, reading/verifying and (de)compressing each run on a thread of
their own (``pipeline.Prefetcher``) so the stages use every core.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, replace

from skiff.errors import ImageError
from skiff.image.copy import compression
from skiff.image.copy.options import CopyOptions
from skiff.image.copy.pipeline import CHUNK, Prefetcher
from skiff.image.types import BlobInfo, ClosableReader, ImageDestination, ImageSource, Reader
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, VerifyingReader


class CopyCancelled(ImageError):
    """Another blob of the same copy failed; this one stopped early."""


@dataclass(frozen=True)
class LayerPlan:
    """What to do to a layer's compression; ``target`` None means keep it."""

    target: str | None
    level: int | None = None

    @property
    def changes_content(self) -> bool:
        return self.target is not None


KEEP = LayerPlan(None)


class _Counting:
    """Counts bytes for progress and stops the stream when the copy was cancelled."""

    def __init__(
        self,
        stream: Reader,
        info: BlobInfo,
        options: CopyOptions,
        cancelled: threading.Event,
    ) -> None:
        self._stream = stream
        self._info = info
        self._progress = options.progress
        self._cancelled = cancelled
        self.done = 0

    def read(self, size: int = -1, /) -> bytes:
        if self._cancelled.is_set():
            raise CopyCancelled("copy cancelled after another blob failed")
        data = self._stream.read(size)
        if data and self._progress is not None:
            self.done += len(data)
            self._progress.blob_advanced(self._info, self.done)
        return data


class HashingReader:
    """A BlobStream over converted content: digest and size known only at the end."""

    def __init__(self, stream: Reader) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self._size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        if data:
            self._hash.update(data)
            self._size += len(data)
        return data

    @property
    def digest(self) -> Digest:
        return Digest("sha256", self._hash.hexdigest())

    @property
    def size(self) -> int:
        return self._size


class _DiffIDTee:
    """Passes compressed bytes through while hashing their decompressed form.

    Needed only where a manifest must be built without diff IDs at hand
    (Docker schema 1 sources): the uncompressed digest is the diff ID.
    """

    def __init__(self, stream: Reader, algorithm: str) -> None:
        self._stream = stream
        self._decompressor = compression.IncrementalDecompressor(algorithm)
        self._hash = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        if data:
            self._hash.update(self._decompressor.feed(data))
        return data

    @property
    def diff_id(self) -> Digest:
        return Digest("sha256", self._hash.hexdigest())


def layer_plan(info: BlobInfo, dest: ImageDestination, options: CopyOptions) -> LayerPlan:
    """Decide the compression of a layer at the destination from what it is now."""
    from skiff.image.types import Compression

    current = info.compression
    if current is None:
        return KEEP  # not a known layer type: copy bytes as they are
    wanted = dest.desired_layer_compression
    if options.decompress or wanted is Compression.DECOMPRESS:
        return LayerPlan("") if current else KEEP
    if options.compress_format:
        if current != options.compress_format:
            return LayerPlan(options.compress_format, options.compress_level)
        return KEEP
    if wanted is Compression.COMPRESS and current == "":
        return LayerPlan("gzip", options.compress_level)
    return KEEP


def copy_blob(
    source: ImageSource,
    dest: ImageDestination,
    info: BlobInfo,
    *,
    is_config: bool,
    plan: LayerPlan,
    options: CopyOptions,
    cancelled: threading.Event,
    want_diff_id: bool = False,
) -> tuple[BlobInfo, bool, Digest | None]:
    """Copy one blob. Returns (stored info, reused, diff ID if asked for)."""
    progress = options.progress
    kind = "config" if is_config else "blob"
    if progress is not None:
        progress.blob_started(info, kind)
    # A layer to be compressed may still be reusable: the destination may
    # know (blob-info cache) a compressed variant of it that it already has,
    # e.g. the original blob of a layer pulled from the registry now pushed
    # back. Only a variant with the compression asked for stands in for it.
    if not want_diff_id and (not plan.changes_content or plan.target):
        reused = dest.try_reusing_blob(info, can_substitute=not options.preserve_digests)
        if reused is not None and (not plan.changes_content or reused.compression == plan.target):
            if progress is not None:
                progress.blob_finished(info, skipped=True)
            return reused, True, None
    assert info.digest is not None
    stream, size = source.get_blob(info)
    try:
        expected_size = info.size if info.size >= 0 else size
        counted = _Counting(stream, info, options, cancelled)
        verified = VerifyingReader(counted, info.digest, expected_size, what=f"blob {info.digest}")
        tee: _DiffIDTee | None = None
        if want_diff_id and info.compression is not None:
            tee = _DiffIDTee(verified, info.compression)
        if not plan.changes_content:
            blob_stream: VerifyingReader | HashingReader | _TeeStream
            blob_stream = verified if tee is None else _TeeStream(tee, verified)
            stored = dest.put_blob(blob_stream, info, is_config)
        else:
            stored = _put_converted(dest, verified, info, plan, is_config)
        if progress is not None:
            progress.blob_finished(info, skipped=False)
        diff_id = tee.diff_id if tee is not None else None
        if want_diff_id and diff_id is None:
            diff_id = info.digest
        return stored, False, diff_id
    finally:
        _close(stream)


class _TeeStream:
    """BlobStream over a _DiffIDTee whose digest comes from the verifier under it."""

    def __init__(self, tee: _DiffIDTee, verified: VerifyingReader) -> None:
        self._tee = tee
        self._verified = verified

    def read(self, size: int = -1, /) -> bytes:
        return self._tee.read(size)

    @property
    def digest(self) -> Digest:
        return self._verified.digest

    @property
    def size(self) -> int:
        return self._verified.size


def _put_converted(
    dest: ImageDestination,
    verified: VerifyingReader,
    info: BlobInfo,
    plan: LayerPlan,
    is_config: bool,
) -> BlobInfo:
    assert plan.target is not None
    # Three threads: the source is read and verified on one, decompressed
    # and recompressed on another (zstd adds its own workers), and hashed
    # and stored on the caller's (see ``pipeline``).
    fetched = Prefetcher(verified, name="blob-read")
    converted: Prefetcher | None = None
    try:
        plain, _detected = compression.auto_decompressing_reader(fetched)
        if plan.target == "":
            out: Reader = plain
        else:
            out = compression.compressing_reader(plain, plan.target, plan.level)
        converted = Prefetcher(out, name="blob-convert")
        hashed = HashingReader(converted)
        new_info = BlobInfo(
            digest=None,
            size=-1,
            media_type=info.media_type,
            annotations=info.annotations,
            compression=plan.target,
        )
        stored = dest.put_blob(hashed, new_info, is_config)
        # A no-op when the destination read to the end, as it must: the
        # decompressor consumed the source to its end, so it was verified.
        while fetched.read(CHUNK):
            pass
    finally:
        if converted is not None:
            converted.close()
        fetched.close()
    return replace(stored, compression=plan.target)


def _close(stream: ClosableReader) -> None:
    try:
        stream.close()
    except OSError:
        pass


def converted_media_type(media_type: str, oci: bool, compression_alg: str | None) -> str:
    """The layer media type after a compression change, in the manifest's flavour."""
    if compression_alg is None:
        return media_type
    return mt.layer_type(oci, compression_alg)
