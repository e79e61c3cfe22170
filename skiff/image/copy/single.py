"""Copying one image (not an index): config, layers in parallel, manifest.

Decides the destination manifest type and each layer's compression first,
so that ``--preserve-digests`` can refuse before a byte moves; then copies
the blobs (layers in parallel when both ends allow it) and writes the
manifest — unchanged bytes when nothing changed, a rebuilt one otherwise.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

from skiff.errors import DigestMismatch, ImageError, ManifestError, UnsupportedConversion
from skiff.image.copy.blob import CopyCancelled, LayerPlan, copy_blob, layer_plan
from skiff.image.copy.options import BlobResult, CopyOptions, CopyReport
from skiff.image.copy.schema1 import schema1_to_config
from skiff.image.types import BlobInfo, ImageDestination, ImageSource
from skiff.oci import mediatypes as mt
from skiff.oci.config import ImageConfig
from skiff.oci.digest import Digest, VerifyingReader
from skiff.oci.manifest import (
    MAX_CONFIG_SIZE,
    Descriptor,
    ImageManifest,
    Schema1Manifest,
    manifest_digest,
    parse_manifest,
)


@dataclass
class _Layer:
    info: BlobInfo
    plan: LayerPlan


def blob_info(desc: Descriptor) -> BlobInfo:
    return BlobInfo(
        digest=desc.digest,
        size=desc.size,
        media_type=desc.media_type,
        urls=desc.urls,
        annotations=dict(desc.annotations),
        compression=mt.layer_compression(desc.media_type),
    )


def choose_manifest_type(source_type: str, dest: ImageDestination, options: CopyOptions) -> str:
    """The manifest type to write: forced by --format, else the source's if accepted."""
    supported = dest.supported_manifest_types()
    forced = options.manifest_format
    if forced:
        if supported and forced not in supported:
            raise UnsupportedConversion(
                f"destination {dest.reference.transport.name}: does not accept manifest type {forced}",
                f"it accepts: {', '.join(supported)}",
            )
        return forced
    if not supported or source_type in supported:
        if source_type in (mt.DOCKER_V2S1, mt.DOCKER_V2S1_SIGNED) and (
            options.compress_format or options.decompress
        ):
            return mt.DOCKER_V2S2
        return source_type
    for candidate in supported:
        if candidate in (mt.OCI_MANIFEST, mt.DOCKER_V2S2):
            return candidate
    raise UnsupportedConversion(
        f"destination {dest.reference.transport.name}: accepts none of the manifest types skiff can write",
        f"it accepts: {', '.join(supported)}",
    )


def read_config(source: ImageSource, desc: Descriptor) -> bytes:
    """Fetch a config blob fully (bounded), verified against its descriptor."""
    if desc.size > MAX_CONFIG_SIZE:
        raise ManifestError(f"config blob {desc.digest} is {desc.size} bytes, above the limit")
    stream, _ = source.get_blob(blob_info(desc))
    try:
        reader = VerifyingReader(stream, desc.digest, desc.size, what=f"config {desc.digest}")
        chunks = []
        total = 0
        while chunk := reader.read(1 << 20):
            total += len(chunk)
            if total > MAX_CONFIG_SIZE:
                raise ManifestError(
                    f"config blob {desc.digest} is above the {MAX_CONFIG_SIZE}-byte limit"
                )
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        stream.close()


class _BytesBlob:
    """BlobStream over bytes already verified (the config)."""

    def __init__(self, data: bytes, digest: Digest) -> None:
        self._io = io.BytesIO(data)
        self._digest = digest
        self._size = len(data)

    def read(self, size: int = -1, /) -> bytes:
        return self._io.read(size)

    @property
    def digest(self) -> Digest:
        return self._digest

    @property
    def size(self) -> int:
        return self._size


def copy_single_image(
    source: ImageSource,
    dest: ImageDestination,
    raw_manifest: bytes,
    manifest_type: str,
    options: CopyOptions,
    *,
    instance_digest: Digest | None = None,
    forced_type: str | None = None,
) -> CopyReport:
    """Copy one image whose manifest (already verified) is ``raw_manifest``.

    ``instance_digest`` is set when this image is an instance of an index
    being copied whole (the manifest is then stored under that digest).
    """
    manifest = parse_manifest(raw_manifest, manifest_type)
    if not isinstance(manifest, ImageManifest | Schema1Manifest):
        raise ManifestError("expected an image manifest, got an index")
    source_digest = manifest_digest(raw_manifest)
    target_type = forced_type or choose_manifest_type(manifest.media_type, dest, options)

    config_raw: bytes | None = None
    if isinstance(manifest, ImageManifest):
        config_raw = read_config(source, manifest.config)
        config = ImageConfig.from_bytes(config_raw)
        _check_runtime_os(config, dest)
        replacements = source.layer_infos_for_copy(instance_digest)
        infos = (
            replacements if replacements is not None else [blob_info(d) for d in manifest.layers]
        )
    else:
        infos = [
            BlobInfo(digest=d, size=-1, media_type=mt.DOCKER_LAYER_GZIP, compression="gzip")
            for d, empty in manifest.layers_oldest_first()
            if not empty
        ]

    layers = [_Layer(info, _plan(info, dest, options)) for info in infos]
    converting = target_type != manifest.media_type
    if options.preserve_digests and (converting or any(x.plan.changes_content for x in layers)):
        raise _preserve_error(source)
    if target_type == mt.DOCKER_V2S2 and any(
        (x.plan.target if x.plan.changes_content else x.info.compression) == "zstd"
        for x in layers
        if not x.info.urls
    ):
        # refused before a byte moves (_build_manifest would refuse after)
        raise _zstd_in_v2s2_error()

    keep_schema1 = isinstance(manifest, Schema1Manifest) and target_type == manifest.media_type
    want_diff_ids = isinstance(manifest, Schema1Manifest) and not keep_schema1
    # The config is final already (it is not derived from the layers): send
    # it beside them rather than after them when the destination allows.
    config_pool: ThreadPoolExecutor | None = None
    early_config: Future[None] | None = None
    if isinstance(manifest, ImageManifest) and _parallel_puts(dest, options):
        assert config_raw is not None
        config_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="config")
        early_config = config_pool.submit(
            _put_config, source, dest, manifest.config, config_raw, options
        )
    try:
        results, diff_ids = _copy_layers(source, dest, layers, options, want_diff_ids)
    finally:
        if config_pool is not None:
            config_pool.shutdown(wait=True)
    if early_config is not None:
        early_config.result()  # the config's own failure, if any
    if keep_schema1:
        dest.put_manifest(raw_manifest, instance_digest)
        return CopyReport(
            manifest=raw_manifest,
            manifest_type=manifest.media_type,
            manifest_digest=source_digest,
            source_manifest_digest=source_digest,
            config_digest=None,
            blobs=[
                BlobResult(
                    x.info.digest or stored.digest or source_digest,
                    _stored_digest(stored),
                    stored.size,
                    stored.media_type,
                    reused,
                )
                for x, (stored, reused) in zip(layers, results, strict=True)
            ],
        )

    if isinstance(manifest, Schema1Manifest):
        config_raw = schema1_to_config(manifest, diff_ids)
        config_desc = Descriptor(
            media_type=mt.OCI_CONFIG if target_type == mt.OCI_MANIFEST else mt.DOCKER_CONFIG,
            digest=Digest.from_bytes(config_raw),
            size=len(config_raw),
        )
    else:
        config_desc = manifest.config
    assert config_raw is not None
    if early_config is None:
        _put_config(source, dest, config_desc, config_raw, options)

    blob_results = [
        BlobResult(
            source_digest=layer.info.digest or stored.digest or Digest("sha256", "0" * 64),
            digest=_stored_digest(stored),
            size=stored.size,
            media_type=stored.media_type,
            reused=reused,
        )
        for layer, (stored, reused) in zip(layers, results, strict=True)
    ]

    out_raw, out_type = _build_manifest(manifest, target_type, config_desc, layers, results)
    if _same_image(manifest, target_type, out_raw):
        out_raw, out_type = raw_manifest, manifest.media_type
    elif options.preserve_digests:
        raise _preserve_error(source)
    # instances are stored under the digest of what is written
    dest.put_manifest(out_raw, manifest_digest(out_raw) if instance_digest is not None else None)
    return CopyReport(
        manifest=out_raw,
        manifest_type=out_type,
        manifest_digest=manifest_digest(out_raw),
        source_manifest_digest=source_digest,
        config_digest=config_desc.digest,
        blobs=blob_results,
    )


def _zstd_in_v2s2_error() -> UnsupportedConversion:
    return UnsupportedConversion(
        "zstd-compressed layers cannot be stored in a Docker v2s2 manifest",
        "use --format oci, or --dest-compress-format gzip",
    )


def _preserve_error(source: ImageSource) -> UnsupportedConversion:
    ref = source.reference
    return UnsupportedConversion(
        f"copying {ref.transport.name}:{ref.string_within_transport()} would change its manifest "
        "digest (conversion or recompression) and --preserve-digests is set",
        "drop --preserve-digests or pick a destination that takes the image as it is",
    )


def _same_image(manifest: ImageManifest | Schema1Manifest, target_type: str, built: bytes) -> bool:
    """Whether the rebuilt manifest describes exactly the source's blobs.

    Then the source's bytes are written unchanged, keeping its digest (and
    signatures valid), even when the blobs took a detour (a store serving
    plain diffs whose compressed originals the destination already had).
    """
    if not isinstance(manifest, ImageManifest) or target_type != manifest.media_type:
        return False
    rebuilt = parse_manifest(built, target_type)
    assert isinstance(rebuilt, ImageManifest)

    def key(d: Descriptor) -> tuple[str, Digest, int]:
        return (d.media_type, d.digest, d.size)

    return key(rebuilt.config) == key(manifest.config) and [key(d) for d in rebuilt.layers] == [
        key(d) for d in manifest.layers
    ]


def _plan(info: BlobInfo, dest: ImageDestination, options: CopyOptions) -> LayerPlan:
    if info.urls and dest.accepts_foreign_layer_urls:
        return LayerPlan(None)
    return layer_plan(info, dest, options)


def _parallel_puts(dest: ImageDestination, options: CopyOptions) -> bool:
    return options.max_parallel > 1 and dest.has_thread_safe_put_blob


def _check_runtime_os(config: ImageConfig, dest: ImageDestination) -> None:
    if dest.must_match_runtime_os and config.os and config.os != "linux":
        raise UnsupportedConversion(
            f"image operating system {config.os!r} cannot be used on this platform (linux)",
            "choose another platform with --override-os/--override-arch",
        )


def _stored_digest(stored: BlobInfo) -> Digest:
    if stored.digest is None:
        raise ImageError("destination did not report the digest of a stored blob")
    return stored.digest


def _copy_layers(
    source: ImageSource,
    dest: ImageDestination,
    layers: list[_Layer],
    options: CopyOptions,
    want_diff_ids: bool,
) -> tuple[list[tuple[BlobInfo, bool]], list[Digest]]:
    cancelled = threading.Event()
    unique: dict[tuple[Digest | None, LayerPlan], int] = {}
    order: list[int] = []
    for index, layer in enumerate(layers):
        key = (layer.info.digest, layer.plan)
        if key not in unique:
            unique[key] = index
        order.append(unique[key])

    def run(index: int) -> tuple[BlobInfo, bool, Digest | None]:
        layer = layers[index]
        if layer.info.urls and dest.accepts_foreign_layer_urls:
            return layer.info, True, layer.info.digest
        return copy_blob(
            source,
            dest,
            layer.info,
            is_config=False,
            plan=layer.plan,
            options=options,
            cancelled=cancelled,
            want_diff_id=want_diff_ids,
        )

    firsts = sorted(set(order))
    parallel = len(firsts) > 1 and _parallel_puts(dest, options) and source.has_thread_safe_get_blob
    if parallel:
        # Largest first: the biggest blob is the critical path of the copy,
        # so it must not wait for a free worker behind small ones.
        firsts.sort(key=lambda index: -layers[index].info.size)
    done: dict[int, tuple[BlobInfo, bool, Digest | None]] = {}
    if not parallel:
        for index in firsts:
            done[index] = run(index)
    else:
        with ThreadPoolExecutor(
            max_workers=options.max_parallel, thread_name_prefix="blob"
        ) as pool:
            futures: dict[Future[tuple[BlobInfo, bool, Digest | None]], int] = {
                pool.submit(run, index): index for index in firsts
            }
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failure = _first_failure(finished)
            if failure is not None:
                cancelled.set()
                wait(futures)
                raise failure
            for future, index in futures.items():
                done[index] = future.result()
    results = [(done[i][0], done[i][1]) for i in order]
    diff_ids = [done[i][2] or Digest("sha256", "0" * 64) for i in order]
    return results, diff_ids


def _first_failure(
    finished: set[Future[tuple[BlobInfo, bool, Digest | None]]],
) -> BaseException | None:
    failures = [f.exception() for f in finished if f.exception() is not None]
    real = [e for e in failures if not isinstance(e, CopyCancelled)]
    if real:
        return real[0]
    return failures[0] if failures else None


def _put_config(
    source: ImageSource,
    dest: ImageDestination,
    desc: Descriptor,
    raw: bytes,
    options: CopyOptions,
) -> None:
    info = BlobInfo(digest=desc.digest, size=len(raw), media_type=desc.media_type)
    progress = options.progress
    if progress is not None:
        progress.blob_started(info, "config")
    reused = dest.try_reusing_blob(info, can_substitute=False)
    if reused is None:
        stored = dest.put_blob(_BytesBlob(raw, desc.digest), info, True)
        if stored.digest is not None and stored.digest != desc.digest:
            raise DigestMismatch(f"destination stored config {desc.digest} as {stored.digest}")
    if progress is not None:
        progress.blob_finished(info, skipped=reused is not None)


def _build_manifest(
    manifest: ImageManifest | Schema1Manifest,
    target_type: str,
    config_desc: Descriptor,
    layers: list[_Layer],
    results: list[tuple[BlobInfo, bool]],
) -> tuple[bytes, str]:
    to_oci = target_type == mt.OCI_MANIFEST
    if target_type not in (mt.OCI_MANIFEST, mt.DOCKER_V2S2):
        raise UnsupportedConversion(f"cannot write a manifest of type {target_type}")
    new_layers = []
    for layer, (stored, _) in zip(layers, results, strict=True):
        compression = (
            stored.compression if stored.compression is not None else layer.info.compression
        )
        if layer.info.urls:
            media_type = layer.info.media_type
        elif compression is not None:
            media_type = mt.layer_type(to_oci, compression)
        else:
            media_type = stored.media_type or layer.info.media_type
        new_layers.append(
            Descriptor(
                media_type=media_type,
                digest=_stored_digest(stored),
                size=stored.size,
                urls=layer.info.urls,
                annotations=dict(layer.info.annotations) if to_oci else {},
            )
        )
    if compression_is_zstd(new_layers) and not to_oci:
        raise _zstd_in_v2s2_error()
    config = replace(config_desc, media_type=mt.OCI_CONFIG if to_oci else mt.DOCKER_CONFIG)
    annotations = manifest.annotations if isinstance(manifest, ImageManifest) and to_oci else {}
    subject = manifest.subject if isinstance(manifest, ImageManifest) and to_oci else None
    out = ImageManifest(
        media_type=target_type,
        config=config,
        layers=new_layers,
        annotations=dict(annotations),
        subject=subject,
    )
    return out.to_bytes(), target_type


def compression_is_zstd(layers: list[Descriptor]) -> bool:
    return any(mt.layer_compression(d.media_type) == "zstd" for d in layers)
