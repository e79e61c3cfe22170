"""The layer cache of ``skiff build --layers``: which image a step already made.

With ``--layers`` (the default) every instruction that changes the image is
committed as an image of its own: unnamed, kept in the store like
buildah's intermediate images (``skiff images -a`` lists them, ``image
prune`` removes them). The next build of the same step finds that image
through the ``build_cache`` table of the store's database instead of
running the step again, and goes on from it.

A step's key is the sha256 of:

- the image it starts from (its ID; ``scratch`` for nothing);
- the instruction with every variable expanded (and any heredoc bodies),
  so that a changed ARG or ENV value that the instruction uses is a
  different key;
- for RUN, the build arguments in effect (they are the command's
  environment; the predefined proxy arguments are left out unless
  declared, as Docker does);
- the content it reads: the digest of the files a COPY/ADD copies from
  the build context (``BuildContext.digest_sources``), of a downloaded
  URL, of a bind-mounted context path, or the ID of the image or stage
  copied or mounted from;
- what shapes every commit: the image format, ``--timestamp``, and for the
  last step the ``--label``/``--annotation`` values.

A hit whose image was removed since (``rmi``, ``image prune``) is dropped
from the table and counts as a miss. ``--no-cache`` skips the lookups but
records what it builds, so the next build can use it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skiff.storage.store import Store

__all__ = ["CACHE_SCHEMA", "LayerCache", "StepKey"]

KEY_VERSION = 1
"""Changes when the key's recipe does: old entries then simply miss."""

CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    parent TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS build_cache_by_image ON build_cache(image_id)
"""


@dataclass(frozen=True)
class StepKey:
    """What a step's result depends on; ``digest()`` is the cache key."""

    parent: str
    """The image the step starts from (its ID), or "scratch"."""
    instruction: str
    """The instruction, expanded, in a canonical form (``Step.key``)."""
    content: str = ""
    args: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        payload = {
            "v": KEY_VERSION,
            "parent": self.parent,
            "instruction": self.instruction,
            "content": self.content,
            "args": sorted(self.args.items()),
            "settings": sorted(self.settings.items()),
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


class LayerCache:
    """The ``build_cache`` table: step keys → intermediate image IDs."""

    def __init__(self, store: Store) -> None:
        self._store = store
        store.db.ensure_schema("build_cache", CACHE_SCHEMA)

    def lookup(self, key: StepKey) -> str | None:
        """The image a step with this key made, if it is still in the store."""
        digest = key.digest()
        row = self._store.db.read_one("SELECT image_id FROM build_cache WHERE key=?", (digest,))
        if row is None:
            return None
        image_id = str(row[0])
        if self._store.images.exists(image_id):
            return image_id
        with self._store.db.write() as conn:
            conn.execute("DELETE FROM build_cache WHERE key=? AND image_id=?", (digest, image_id))
        return None

    def record(self, key: StepKey, image_id: str) -> None:
        with self._store.db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO build_cache(key, image_id, parent, created) VALUES (?,?,?,?)",
                (key.digest(), image_id, key.parent, time.time()),
            )

    def entries(self) -> int:
        """How many steps the table knows (for tests and ``system df``-like reports)."""
        row = self._store.db.read_one("SELECT COUNT(*) FROM build_cache")
        return int(row[0]) if row is not None else 0
