"""Reading an image from a registry (``docker://`` as an ImageSource).

Opening a source resolves where to pull from: registries.conf may list
mirrors for the reference (``pull_sources``, mirrors first, the primary
location last). Each is tried in order by fetching the top-level manifest;
the first that serves it is used for everything else (so blobs come from
the same place as the manifest), and ``pull_source`` records which it was.
If all fail, the primary location's error is raised with the mirrors'
failures appended, as containers/image reports them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from skiff.errors import BlobUnknown, ImageError, SkiffError
from skiff.image.transports.docker import api
from skiff.image.transports.docker.client import RegistryClient
from skiff.image.transports.docker.stream import ResumableBody
from skiff.image.types import BlobInfo
from skiff.oci.digest import Digest
from skiff.oci.manifest import manifest_digest

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.registries import PullSource
    from skiff.image.transports.docker.transport import DockerReference
    from skiff.oci.reference import NamedReference

log = logging.getLogger(__name__)

SignatureReader = Callable[["NamedReference", Digest], list[bytes]]
"""(repository reference, manifest digest) → simple-signing signatures."""


class DockerImageSource:
    """One image (or index) at a registry, read through one RegistryClient."""

    def __init__(
        self,
        ref: DockerReference,
        client: RegistryClient,
        pull_source: PullSource | None,
        manifest: tuple[bytes, str],
    ) -> None:
        self._ref = ref
        self.client = client
        self.pull_source = pull_source
        """The registries.conf source (mirror or primary) the image was found at."""
        self._manifest = manifest
        self.signature_reader: SignatureReader | None = None
        """Hook for lookaside signatures (registries.d); the signature code
        sets it. Without it ``get_signatures`` returns []."""

    @classmethod
    def open(cls, ctx: SystemContext, ref: DockerReference) -> DockerImageSource:
        from skiff.image.registries import load_registries_conf

        sources = load_registries_conf(ctx).pull_sources(ref.ref)
        failures: list[tuple[PullSource, SkiffError]] = []
        for source in sources:
            target = source.reference
            # --creds and --registry-token are for the registry the user
            # named, not for a mirror on another host (containers/image).
            side = ctx
            if target.domain != ref.ref.domain:
                side = dataclasses.replace(ctx, credentials=None, registry_token=None)
            client = RegistryClient(
                side,
                target.domain,
                target.path,
                actions="pull",
                insecure=source.endpoint.insecure,
            )
            wanted = str(target.digest) if target.digest is not None else (target.tag or "latest")
            try:
                manifest = api.get_manifest(client, wanted)
            except SkiffError as exc:
                client.close()
                log.info("pulling %s from %s failed: %s", ref.ref, target, exc)
                failures.append((source, exc))
                continue
            log.debug("pulling %s from %s", ref.ref, target)
            return cls(ref, client, source, manifest)
        if not failures:
            raise ImageError(f"no location to pull {ref.ref} from", "check registries.conf")
        primary = failures[-1][1]
        if len(failures) > 1:
            mirrors = "; ".join(f"{s.reference}: {e.message}" for s, e in failures[:-1])
            primary.message += f" (mirrors also failed: {mirrors})"
        raise primary

    @property
    def reference(self) -> DockerReference:
        return self._ref

    def get_manifest(self, instance_digest: Digest | None = None) -> tuple[bytes, str]:
        if instance_digest is None:
            return self._manifest
        return api.get_manifest(self.client, str(instance_digest))

    def get_blob(self, info: BlobInfo) -> tuple[ResumableBody, int]:
        """Stream a blob; foreign layers come from their ``urls`` first.

        When every URL of a foreign layer fails, the registry is asked
        (some mirror foreign layers); the copy engine verifies the digest
        whichever answered.
        """
        if info.digest is None:
            raise BlobUnknown(
                f"cannot fetch a blob of {self.client.registry}/{self.client.repository} "
                "without its digest"
            )
        for url in info.urls:
            try:
                body = api.open_external_blob(self.client, url, f"blob {info.digest}")
            except SkiffError as exc:
                log.warning("fetching %s from %s failed: %s", info.digest, url, exc)
                continue
            return body, body.size
        body = api.open_blob(self.client, info.digest, info.size)
        return body, body.size

    @property
    def has_thread_safe_get_blob(self) -> bool:
        return True

    def get_signatures(self, instance_digest: Digest | None = None) -> list[bytes]:
        if self.signature_reader is None:
            return []
        digest = instance_digest or manifest_digest(self._manifest[0])
        return self.signature_reader(self._ref.ref, digest)

    def layer_infos_for_copy(self, instance_digest: Digest | None = None) -> list[BlobInfo] | None:
        return None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> DockerImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
