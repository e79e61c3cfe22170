"""Content digests (``algorithm:hex``) and streaming verification.

A digest is the identity of a blob: the copy engine, the store and the
signature code all compare them, so parsing is strict (lowercase hex of the
algorithm's exact length) and a value that fails is an InvalidReference-style
error rather than something silently normalised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from skiff.errors import DigestMismatch, ImageError

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"\A([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)\Z", re.ASCII)


class InvalidDigest(ImageError):
    """A string is not a valid ``algorithm:hex`` digest."""


@dataclass(frozen=True, order=True)
class Digest:
    """A validated content digest such as ``sha256:4f53...``."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        match = _DIGEST_RE.match(value)
        if not match:
            raise InvalidDigest(
                f"invalid digest {value!r}", "expected ALGORITHM:HEX, e.g. sha256:…"
            )
        algorithm, hexpart = match.groups()
        expected = _HEX_LENGTH.get(algorithm)
        if expected is None:
            raise InvalidDigest(
                f"unsupported digest algorithm {algorithm!r} in {value!r}",
                "only sha256 and sha512 are supported",
            )
        if len(hexpart) != expected or not re.fullmatch(r"[0-9a-f]+", hexpart, re.ASCII):
            raise InvalidDigest(
                f"invalid {algorithm} digest {value!r}",
                f"expected {expected} lowercase hex characters",
            )
        return cls(algorithm, hexpart)

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        import hashlib  # here, not at the top: parsing digests (every command) needs no OpenSSL

        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @property
    def encoded(self) -> str:
        """The hex part, as the OCI spec names it."""
        return self.hex

    def short(self, length: int = 12) -> str:
        return self.hex[:length]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def verify_bytes(self, data: bytes, what: str = "content") -> None:
        """Raise DigestMismatch unless ``data`` hashes to this digest."""
        import hashlib

        actual = hashlib.new(self.algorithm, data).hexdigest()
        if actual != self.hex:
            raise DigestMismatch(
                f"{what} digest mismatch: expected {self}, got {self.algorithm}:{actual}"
            )


def sha256_of(data: bytes) -> Digest:
    import hashlib

    return Digest("sha256", hashlib.sha256(data).hexdigest())


class Reader(Protocol):
    """The minimal stream interface every blob source returns."""

    def read(self, size: int = -1, /) -> bytes: ...


class VerifyingReader:
    """Wrap a stream, hashing and counting what passes through.

    At end of stream (``read`` returning ``b""``) the digest and size are
    checked against the expected values; a mismatch raises DigestMismatch so
    the consumer never commits content that does not match. ``hashlib``
    releases the GIL on large updates, so this costs little beside I/O.
    """

    def __init__(
        self,
        stream: Reader,
        expected: Digest | None,
        expected_size: int | None = None,
        what: str = "blob",
    ) -> None:
        self._stream = stream
        self._expected = expected
        self._expected_size = (
            expected_size if expected_size is not None and expected_size >= 0 else None
        )
        import hashlib

        self._hash = hashlib.new(expected.algorithm if expected else "sha256")
        self._what = what
        self.size = 0
        self._done = False

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        if data:
            self._hash.update(data)
            self.size += len(data)
            if self._expected_size is not None and self.size > self._expected_size:
                raise DigestMismatch(
                    f"{self._what} is larger than its announced size {self._expected_size}",
                )
        elif not self._done and (size != 0):
            self._done = True
            self._check()
        return data

    @property
    def digest(self) -> Digest:
        return Digest(self._hash.name, self._hash.hexdigest())

    def _check(self) -> None:
        if self._expected_size is not None and self.size != self._expected_size:
            raise DigestMismatch(
                f"{self._what} size mismatch: expected {self._expected_size} bytes, got {self.size}"
            )
        if self._expected is not None and self.digest != self._expected:
            raise DigestMismatch(
                f"{self._what} digest mismatch: expected {self._expected}, got {self.digest}"
            )

    def drain(self, chunk: int = 1 << 20) -> None:
        """Read to the end (verifying), discarding the data."""
        while self.read(chunk):
            pass
