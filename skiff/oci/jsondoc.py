"""JSON documents of the image formats: size limits, decoding with a clear
error, and the Go tools' serialisation.

Split from ``skiff.oci.manifest`` (which still exports these names) so that
reading an image config — every ``skiff run`` does — needs neither the
manifest classes nor OpenSSL's hashlib.
"""

from __future__ import annotations

import json
from typing import Any

from skiff.errors import ManifestError

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
"""No manifest or config above this is accepted (as containers/image)."""

MAX_CONFIG_SIZE = 4 * 1024 * 1024


def loads_json(raw: bytes, what: str) -> Any:
    """Decode JSON bytes with a clear error instead of a traceback."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"{what} is not valid JSON: {exc}", "the source served a truncated or corrupt document"
        ) from exc


def dumps_json(value: Any) -> bytes:
    """Serialise as the Go tools do for new documents: indented, stable."""
    return json.dumps(value, indent=3, ensure_ascii=False).encode() + b"\n"
