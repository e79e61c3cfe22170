"""Single-use, expiring tokens for registered streaming requests.

The RPC registers a request and returns ``BASE/exec/TOKEN`` (or attach,
portforward); the client must connect within ``ttl`` seconds, and the
first connection consumes the token, as in the kubelet's and CRI-O's
streaming servers. Tokens are 128 random bits in URL-safe base64, so they
cannot be guessed; at most ``max_in_flight`` requests wait at a time.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from skiff.cri.streaming.model import StreamRequest
from skiff.errors import ContainerError

DEFAULT_TTL = 60.0
DEFAULT_MAX_IN_FLIGHT = 1000


@dataclass(frozen=True)
class _Entry:
    request: StreamRequest
    expires: float


class RequestCache:
    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, e in self._entries.items() if e.expires <= now]:
            del self._entries[token]

    def insert(self, request: StreamRequest) -> str:
        """A new token for ``request``."""
        with self._lock:
            self._expire()
            if len(self._entries) >= self.max_in_flight:
                raise ContainerError(
                    f"cannot register another streaming request: {self.max_in_flight} are "
                    "already waiting for their clients",
                    "retry once clients have connected or their tokens expired",
                )
            token = secrets.token_urlsafe(16)
            self._entries[token] = _Entry(request, self._clock() + self.ttl)
            return token

    def consume(self, token: str) -> StreamRequest | None:
        """The request of ``token`` (forgotten now); None if unknown or expired."""
        with self._lock:
            entry = self._entries.pop(token, None)
            if entry is None or entry.expires <= self._clock():
                return None
            return entry.request
