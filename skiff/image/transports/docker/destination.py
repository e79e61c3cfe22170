"""Writing an image to a registry (``docker://`` as an ImageDestination).

A push goes to the reference's own registry, never to a mirror (mirrors are
for pulling only, containers-registries.conf(5)); a registry blocked in
registries.conf refuses the push before any request.

Blobs: ``try_reusing_blob`` first asks the repository (HEAD); if the blob is
elsewhere on the same registry — the caller (the blob-info cache) says
where through ``known_locations`` — it is mounted across repositories
instead of uploaded. When substitution is allowed, the blob-info cache's
other compressions of the same layer (``blob_hints``: the gzip original of
a layer a store keeps uncompressed) are looked for the same way, so pushing
an image back to the registry it was pulled from uploads nothing. Opening a
destination wires both hooks to the blob-info cache of the context when
that file exists (it is only read here; pulls and pushes write it).
``put_blob`` uploads what is left:

- small blobs (≤ MONOLITHIC_MAX bytes, read fully into memory): POST, then
  one PUT with the data and its digest. One round trip fewer, and the PUT
  can be retried because the bytes are in memory;
- larger ones: POST, one PATCH streaming the data with chunked transfer
  encoding straight from the copy engine's stream, then PUT ``?digest=``
  with the digest the stream computed. Not retried: the stream cannot be
  replayed (the copy engine retries the blob as a whole).

MONOLITHIC_MAX was measured against the local docker-registry 2.8 over
loopback (``bench/docker_upload.py``): see the numbers beside it.

The manifest PUT is what makes the image visible, so ``commit`` has nothing
left to do; a failed blob upload cancels its session (DELETE) so the
registry drops the partial data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from skiff.errors import DigestMismatch, ImageError, RegistryError, SignatureError
from skiff.image.transports.docker import api
from skiff.image.transports.docker.client import RegistryClient
from skiff.image.types import BlobInfo, BlobStream, Compression
from skiff.oci.digest import Digest
from skiff.oci.manifest import guess_media_type, manifest_digest

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.blobinfocache import Candidate
    from skiff.image.transports.docker.transport import DockerReference
    from skiff.oci.reference import NamedReference

log = logging.getLogger(__name__)

MONOLITHIC_MAX = 4 << 20
"""Blobs up to this size are uploaded with one PUT.

Measured with bench/docker_upload.py (docker-registry 2.8, loopback, 2
cores; median ms, monolithic / streaming): 16 KiB 4.5 / 6.0, 256 KiB
6.3 / 9.4, 1 MiB 10.3 / 13.9, 2 MiB 12.8 / 16.2, 4 MiB 23.5 / 24.2,
8 MiB 46 / 44, 16-64 MiB within run-to-run noise of each other. Below
4 MiB the saved round trip wins; above, monolithic only costs memory
(the blob is held whole), so streaming takes over there."""

READ_CHUNK = 1 << 20

KnownLocations = Callable[[Digest], list[str]]
"""Digest → repositories (``host/path``) where the blob was seen (blob-info cache)."""


class BlobHints(Protocol):
    """What a destination reads from the blob-info cache (``BlobInfoCache`` has it)."""

    def candidates(
        self, transport: str, scope: str, digest: Digest, can_substitute: bool
    ) -> list[Candidate]: ...


SignatureWriter = Callable[["NamedReference", Digest, list[bytes]], None]
"""(repository reference, manifest digest, signatures) → store them (lookaside)."""


def _read_prefix(stream: BlobStream, limit: int) -> tuple[bytes, bool]:
    """Read up to ``limit`` bytes; (data, reached end of stream)."""
    parts: list[bytes] = []
    total = 0
    while total < limit:
        data = stream.read(min(READ_CHUNK, limit - total))
        if not data:
            return b"".join(parts), True
        parts.append(data)
        total += len(data)
    return b"".join(parts), False


class DockerImageDestination:
    """One image at a registry, written through one RegistryClient."""

    def __init__(self, ref: DockerReference, client: RegistryClient) -> None:
        self._ref = ref
        self.client = client
        self.known_locations: KnownLocations | None = None
        """Hook for the blob-info cache: where else this registry may have a blob."""
        self.blob_hints: BlobHints | None = None
        """Hook for the blob-info cache: other compressions of a blob, and where."""
        self.signature_writer: SignatureWriter | None = None
        """Hook for lookaside signature storage (registries.d), set by the signature code."""
        self.manifest_digest: Digest | None = None
        """Digest of the last top-level manifest written."""

    @classmethod
    def open(cls, ctx: SystemContext, ref: DockerReference) -> DockerImageDestination:
        from skiff.image.transports.docker.operations import client_for

        dest = cls(ref, client_for(ctx, ref.ref, actions="pull,push"))
        cache_path = ctx.blob_info_cache_path()
        if cache_path.is_file():
            from skiff.image.blobinfocache import open_cache

            dest.use_blob_hints(open_cache(cache_path))
        return dest

    def use_blob_hints(self, hints: BlobHints) -> None:
        """Take known locations and substitutes from ``hints`` (the blob-info cache)."""
        registry = self.client.registry
        self.blob_hints = hints
        self.known_locations = lambda digest: [
            c.location for c in hints.candidates("docker", registry, digest, False)
        ]

    @property
    def reference(self) -> DockerReference:
        return self._ref

    def supported_manifest_types(self) -> list[str]:
        return []

    @property
    def desired_layer_compression(self) -> Compression:
        return Compression.PRESERVE

    @property
    def accepts_foreign_layer_urls(self) -> bool:
        return True

    @property
    def must_match_runtime_os(self) -> bool:
        return False

    @property
    def has_thread_safe_put_blob(self) -> bool:
        return True

    def supports_signatures(self) -> bool:
        return self.signature_writer is not None

    def try_reusing_blob(self, info: BlobInfo, can_substitute: bool) -> BlobInfo | None:
        """The blob as the registry has it already, or None.

        With ``can_substitute``, another compression of the same layer that
        ``blob_hints`` knows of is accepted too; the BlobInfo returned then
        names that blob (its digest, size and compression).
        """
        if info.digest is None:
            return None
        found = self._reuse_exact(info)
        if found is not None or not can_substitute or self.blob_hints is None:
            return found
        tried = {info.digest}
        for candidate in self.blob_hints.candidates(
            "docker", self.client.registry, info.digest, True
        ):
            # a substitute must say what it is, or the manifest could not describe it
            if candidate.digest in tried or candidate.compression is None:
                continue
            tried.add(candidate.digest)
            variant = BlobInfo(
                digest=candidate.digest,
                size=-1,
                media_type=info.media_type,
                urls=info.urls,
                annotations=info.annotations,
                compression=candidate.compression,
            )
            found = self._reuse_exact(variant)
            if found is not None:
                log.debug("reusing %s for %s", candidate.digest, info.digest)
                return found
        return None

    def _reuse_exact(self, info: BlobInfo) -> BlobInfo | None:
        """This exact blob, in the repository already or mounted from a known one."""
        assert info.digest is not None
        size = api.blob_size(self.client, info.digest)
        if size is not None:
            return self._reused(info, size)
        for location in self._mount_candidates(info.digest):
            try:
                mounted = api.mount_blob(self.client, info.digest, location)
            except RegistryError as exc:
                # Mounting is an optimisation; the blob is then uploaded.
                log.info("mounting %s from %s failed: %s", info.digest, location, exc)
                continue
            if mounted:
                log.debug("mounted %s from %s", info.digest, location)
                size = info.size
                if size < 0:
                    size = api.blob_size(self.client, info.digest) or -1
                return self._reused(info, size)
        return None

    def _mount_candidates(self, digest: Digest) -> list[str]:
        if self.known_locations is None:
            return []
        out = []
        for location in self.known_locations(digest):
            host, _, repository = location.partition("/")
            if host == self.client.registry and repository and repository != self.client.repository:
                out.append(repository)
        return out

    @staticmethod
    def _reused(info: BlobInfo, size: int) -> BlobInfo:
        return BlobInfo(
            digest=info.digest,
            size=size if size >= 0 else info.size,
            media_type=info.media_type,
            urls=info.urls,
            annotations=info.annotations,
            compression=info.compression,
        )

    def put_blob(self, stream: BlobStream, info: BlobInfo, is_config: bool) -> BlobInfo:
        prefix, complete = _read_prefix(stream, MONOLITHIC_MAX + 1)
        upload = api.start_upload(self.client)
        try:
            if complete:
                digest = stream.digest
                api.put_blob_monolithic(self.client, upload, prefix, digest)
            else:
                digest = api.put_blob_streaming(self.client, upload, stream, prefix)
        except BaseException:
            api.cancel_upload(self.client, upload)
            raise
        return BlobInfo(
            digest=digest,
            size=stream.size,
            media_type=info.media_type,
            urls=info.urls,
            annotations=info.annotations,
            compression=info.compression,
        )

    def put_manifest(self, raw: bytes, instance_digest: Digest | None = None) -> None:
        """Top level by the reference's tag (or digest); instances by their digest."""
        computed = manifest_digest(raw)
        ref = self._ref.ref
        if instance_digest is not None:
            if instance_digest.algorithm == "sha256" and instance_digest != computed:
                raise DigestMismatch(
                    f"manifest instance {instance_digest} for {ref.name} has digest {computed}"
                )
            api.put_manifest(self.client, str(instance_digest), raw, guess_media_type(raw))
            return
        if ref.digest is not None and ref.digest != computed:
            raise ImageError(
                f"cannot push to {ref}: the manifest's digest is {computed}",
                "a digest reference can only receive that exact manifest; push by tag instead",
            )
        target = ref.tag if ref.tag is not None else str(ref.digest)
        self.manifest_digest = api.put_manifest(self.client, target, raw, guess_media_type(raw))

    def put_signatures(
        self, signatures: list[bytes], instance_digest: Digest | None = None
    ) -> None:
        if not signatures:
            return
        digest = instance_digest or self.manifest_digest
        if self.signature_writer is None or digest is None:
            raise SignatureError(
                f"cannot store signatures for {self._ref.ref}: no lookaside storage "
                f"(lookaside-staging in registries.d) is configured for {self.client.registry}",
                "configure it in registries.d, or copy with --remove-signatures",
            )
        self.signature_writer(self._ref.ref, digest, signatures)

    def commit(self) -> None:
        """Nothing: the manifest PUT already made the image visible."""

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> DockerImageDestination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
