"""Signature storage for ``docker://`` sources and destinations.

The docker transport calls ``attach_source_hooks``/``attach_destination_hooks``
when it opens a source or destination, so every caller of the copy engine
— pull, push, copy, build, the CRI — reads and writes registry signatures
the same way, from the registries.d of the context it was given:

- simple signatures in the lookaside store the configuration names (the
  built-in default directory when it names none);
- sigstore signatures as ``sha256-HEX.sig`` attachments, only where
  ``use-sigstore-attachments`` is true (otherwise an image is treated as
  having none, and writing one is an error), through the source's or
  destination's own registry client (same auth, TLS and mirror).

Reads are remembered per digest: the policy check and the copy engine both
ask for the same signatures, and asking the lookaside twice would cost a
round trip (and could, with a changing store, give two answers).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from skiff.errors import SignatureError
from skiff.signature.lookaside import LookasideReader, LookasideWriter, RegistriesD

if TYPE_CHECKING:
    from skiff.config import SystemContext
    from skiff.image.transports.docker.client import RegistryClient
    from skiff.image.transports.docker.destination import DockerImageDestination
    from skiff.image.transports.docker.source import DockerImageSource
    from skiff.oci.digest import Digest
    from skiff.oci.reference import NamedReference


class RegistrySignatureReader:
    """A docker source's ``signature_reader``."""

    def __init__(self, config: RegistriesD, client: RegistryClient, timeout: float) -> None:
        self.config = config
        self.client = client
        self.timeout = timeout
        self._cache: dict[tuple[str, str], list[bytes]] = {}
        self._lock = threading.Lock()

    def describe(self, ref: NamedReference, digest: Digest) -> str:
        """Where signatures of ``ref``@``digest`` are looked for (for messages)."""
        where = (
            f"lookaside {LookasideReader(self.config.base_url(ref, False)).location(ref, digest)}"
        )
        if self.config.use_sigstore_attachments(ref):
            from skiff.signature.attachments import signature_tag

            where += f", sigstore attachment {ref.name}:{signature_tag(digest)}"
        return where

    def __call__(self, ref: NamedReference, digest: Digest) -> list[bytes]:
        key = (str(ref), str(digest))
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return list(cached)
            reader = LookasideReader(self.config.base_url(ref, False), self.timeout)
            signatures = reader.read(ref, digest)
            if self.config.use_sigstore_attachments(ref):
                from skiff.signature.attachments import read_attachments

                signatures += [s.to_blob() for s in read_attachments(self.client, digest)]
            self._cache[key] = signatures
            return list(signatures)


class RegistrySignatureWriter:
    """A docker destination's ``signature_writer``."""

    def __init__(self, config: RegistriesD, client: RegistryClient) -> None:
        self.config = config
        self.client = client

    def __call__(self, ref: NamedReference, digest: Digest, signatures: list[bytes]) -> None:
        from skiff.signature.sigstore import from_blob, is_sigstore_blob

        simple = [s for s in signatures if not is_sigstore_blob(s)]
        sigstore = [from_blob(s) for s in signatures if is_sigstore_blob(s)]
        if sigstore:
            if not self.config.use_sigstore_attachments(ref):
                raise SignatureError(
                    f"cannot store sigstore signatures of {ref}: sigstore attachments are not "
                    f"enabled for it in {self.config.directory}",
                    "set use-sigstore-attachments: true for the registry in registries.d",
                )
            from skiff.signature.attachments import write_attachments

            write_attachments(self.client, digest, sigstore)
        if simple:
            LookasideWriter(self.config.base_url(ref, True)).write(ref, digest, simple)


def attach_source_hooks(source: DockerImageSource, ctx: SystemContext) -> None:
    config = RegistriesD.load(ctx.registries_d_path())
    source.signature_reader = RegistrySignatureReader(config, source.client, ctx.lookaside_timeout)


def attach_destination_hooks(dest: DockerImageDestination, ctx: SystemContext) -> None:
    config = RegistriesD.load(ctx.registries_d_path())
    dest.signature_writer = RegistrySignatureWriter(config, dest.client)
