"""``copy_image``: the only place that moves images between transports.

Order of work (each step may refuse, and nothing is committed until the end):
1. open the source, fetch the top-level manifest; when the reference names a
   digest, verify the bytes against it before parsing anything;
2. ask the trust policy (``options.policy_check``, else the source context's
   policy.json unless ``insecure_policy``) — before reading blobs;
3. pick the image: the whole index (``--all``), or the instance for this
   platform, verified against the digest the index gives;
4. copy blobs and manifest(s) (``single``/``multi``);
5. signatures: carried over only if the manifest is byte-identical; new ones
   from ``options.signers``; dropped with a warning where the destination
   has no place for them;
6. ``dest.commit()``; ``dest.close()`` always (which discards uncommitted data).
"""

from __future__ import annotations

import logging

from skiff.config import SystemContext
from skiff.errors import SignatureError
from skiff.image.copy.multi import copy_index
from skiff.image.copy.options import CopyOptions, CopyReport
from skiff.image.copy.single import copy_single_image
from skiff.image.types import ImageDestination, ImageReference, ImageSource
from skiff.oci import mediatypes as mt
from skiff.oci.manifest import ImageIndex, guess_media_type, parse_manifest
from skiff.oci.platform import wanted_platform

log = logging.getLogger(__name__)


def copy_image(
    src_ref: ImageReference,
    dest_ref: ImageReference,
    options: CopyOptions | None = None,
    src_ctx: SystemContext | None = None,
    dest_ctx: SystemContext | None = None,
) -> CopyReport:
    """Copy the image at ``src_ref`` to ``dest_ref``; return what was written."""
    options = options or CopyOptions()
    src_ctx = src_ctx or SystemContext()
    dest_ctx = dest_ctx or src_ctx
    progress = options.progress
    source = src_ref.new_image_source(src_ctx)
    try:
        raw, media_type = source.get_manifest()
        media_type = media_type or guess_media_type(raw)
        named = src_ref.docker_reference()
        if named is not None and named.digest is not None:
            named.digest.verify_bytes(raw, what=f"manifest of {named}")
        _check_policy(source, raw, media_type, options, src_ctx)

        instance = None
        if mt.is_index(media_type) and not options.copy_all:
            index = parse_manifest(raw, media_type)
            assert isinstance(index, ImageIndex)
            chosen = index.choose(
                wanted_platform(
                    src_ctx.override_os, src_ctx.override_arch, src_ctx.override_variant
                )
            )
            instance = chosen.digest
            raw, media_type = source.get_manifest(instance)
            chosen.digest.verify_bytes(raw, what=f"manifest {chosen.digest}")
            media_type = media_type or chosen.media_type or guess_media_type(raw)

        signatures = [] if options.remove_signatures else source.get_signatures(instance)

        dest = dest_ref.new_image_destination(dest_ctx)
        try:
            if mt.is_index(media_type):
                report = copy_index(source, dest, raw, media_type, options)
            else:
                report = copy_single_image(source, dest, raw, media_type, options)
            written = _write_signatures(dest, report, signatures, dest_ref, options)
            report.signatures_written = written
            if progress is not None:
                progress.note("Writing manifest to image destination")
            dest.commit()
        finally:
            dest.close()
        return report
    finally:
        source.close()


def _check_policy(
    source: ImageSource,
    raw: bytes,
    media_type: str,
    options: CopyOptions,
    src_ctx: SystemContext,
) -> None:
    """Ask the trust policy before anything else is read.

    ``options.policy_check`` when a caller supplies one; otherwise the
    policy of the source context itself (``--policy``, the user's or the
    system policy.json), unless it says ``insecure_policy``. Enforcement
    thus never depends on a caller remembering to ask. The evaluator lives
    in skiff.signature (imported here, lazily, as containers/image's copy
    imports its signature package).
    """
    if options.policy_check is not None:
        options.policy_check(source, raw, media_type)
        return
    if src_ctx.insecure_policy:
        return
    from skiff.signature.policy import check_image

    check_image(src_ctx, source, raw, media_type)


def _write_signatures(
    dest: ImageDestination,
    report: CopyReport,
    existing: list[bytes],
    dest_ref: ImageReference,
    options: CopyOptions,
) -> int:
    if existing and report.manifest_digest != report.source_manifest_digest:
        raise SignatureError(
            "copying this image would change its manifest, which would invalidate its signatures",
            "use --remove-signatures to copy it without them",
        )
    new: list[bytes] = []
    if options.signers:
        identity = dest_ref.docker_reference()
        if identity is None:
            raise SignatureError(
                f"cannot sign an image copied to {dest_ref.transport.name}:, which has no "
                "Docker reference to use as the signature's identity",
            )
        if identity.is_name_only():
            identity = identity.tag_or_latest()
        for signer in options.signers:
            new.append(signer(report.manifest, identity))
    signatures = existing + new
    if not signatures:
        return 0
    if not dest.supports_signatures():
        if new:
            raise SignatureError(
                f"destination {dest_ref.transport.name}: cannot store signatures",
                "sign into a registry with a lookaside configured, dir:, or containers-storage:",
            )
        log.warning(
            "destination %s:%s cannot store signatures; dropping %d signature(s)",
            dest_ref.transport.name,
            dest_ref.string_within_transport(),
            len(existing),
        )
        return 0
    if options.progress is not None:
        options.progress.note("Storing signatures")
    dest.put_signatures(signatures)
    return len(signatures)
