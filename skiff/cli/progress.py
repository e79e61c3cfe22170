"""Progress display for pull, push, copy and build.

On a terminal: one line per blob, redrawn in place at most ten times a
second (``Copying blob 9ad63333ebc9 [=====>    ] 12.3MiB / 40.1MiB``), the
skopeo/podman look without their Go progress library. Not on a terminal, or
with ``-q``: nothing (a caller that wants plain lines uses ``LineProgress``).
Thread-safe: the copy engine reports from several worker threads.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from skiff.image.types import BlobInfo

BAR_WIDTH = 30
REDRAW_INTERVAL = 0.1


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n:.1f}GiB"


def _label(info: BlobInfo, kind: str) -> str:
    digest = info.digest.hex[:12] if info.digest is not None else "(new)"
    return f"Copying {kind} {digest}"


class TerminalProgress:
    """Per-blob bars on a TTY."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._rows: dict[str, list[object]] = {}  # key → [label, done, total, state]
        self._drawn = 0
        self._last = 0.0
        self._header_printed = False

    def _key(self, info: BlobInfo) -> str:
        return str(info.digest) if info.digest is not None else f"new-{id(info)}"

    def blob_started(self, info: BlobInfo, kind: str) -> None:
        with self._lock:
            if not self._header_printed:
                self._stream.write("Getting image source signatures\n")
                self._header_printed = True
            self._rows[self._key(info)] = [_label(info, kind), 0, info.size, ""]
            self._redraw(force=True)

    def blob_advanced(self, info: BlobInfo, done: int) -> None:
        with self._lock:
            row = self._rows.get(self._key(info))
            if row is not None:
                row[1] = done
            self._redraw(force=False)

    def blob_finished(self, info: BlobInfo, skipped: bool) -> None:
        with self._lock:
            row = self._rows.get(self._key(info))
            if row is not None:
                row[3] = "skipped: already exists" if skipped else "done"
            self._redraw(force=True)

    def note(self, message: str) -> None:
        with self._lock:
            self._redraw(force=True)
            self._rows.clear()
            self._drawn = 0
            self._stream.write(message + "\n")
            self._stream.flush()

    def _redraw(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last < REDRAW_INTERVAL:
            return
        self._last = now
        out = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}F")
        for label, done, total, state in self._rows.values():
            assert isinstance(done, int) and isinstance(total, int)
            if state:
                line = f"{label} {state}"
            elif total > 0:
                filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
                bar = (
                    "=" * filled
                    + (">" if filled < BAR_WIDTH else "")
                    + " " * (BAR_WIDTH - filled - 1)
                )
                line = f"{label} [{bar[:BAR_WIDTH]}] {_size(done)} / {_size(total)}"
            else:
                line = f"{label} {_size(done)}"
            out.append(f"\x1b[2K{line}\n")
        self._drawn = len(self._rows)
        self._stream.write("".join(out))
        self._stream.flush()


class LineProgress:
    """skopeo's plain lines (used when output is not a terminal but wanted)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._header_printed = False

    def blob_started(self, info: BlobInfo, kind: str) -> None:
        with self._lock:
            if not self._header_printed:
                self._stream.write("Getting image source signatures\n")
                self._header_printed = True

    def blob_advanced(self, info: BlobInfo, done: int) -> None:
        return None

    def blob_finished(self, info: BlobInfo, skipped: bool) -> None:
        with self._lock:
            kind = "blob"
            if info.media_type.endswith(("config.v1+json", "container.image.v1+json")):
                kind = "config"
            state = "skipped: already exists" if skipped else "done"
            self._stream.write(f"{_label(info, kind)} {state}\n")
            self._stream.flush()

    def note(self, message: str) -> None:
        with self._lock:
            self._stream.write(message + "\n")
            self._stream.flush()


def progress_for(quiet: bool, stream: TextIO | None = None) -> TerminalProgress | None:
    """The progress display for a command: bars on a TTY, else none."""
    stream = stream or sys.stderr
    if quiet or not stream.isatty():
        return None
    return TerminalProgress(stream)


class PodmanLines:
    """podman's progress when stderr is not a terminal: one line per blob as it starts.

    ``Copying blob sha256:HEX`` / ``Copying config sha256:HEX`` (the source's
    digests, in full), as containers/image prints them without a terminal;
    scripts and CI logs that grep podman's output see the same lines.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._header_printed = False

    def blob_started(self, info: BlobInfo, kind: str) -> None:
        with self._lock:
            if not self._header_printed:
                self._stream.write("Getting image source signatures\n")
                self._header_printed = True
            digest = str(info.digest) if info.digest is not None else "(new)"
            self._stream.write(f"Copying {kind} {digest}\n")
            self._stream.flush()

    def blob_advanced(self, info: BlobInfo, done: int) -> None:
        return None

    def blob_finished(self, info: BlobInfo, skipped: bool) -> None:
        return None

    def note(self, message: str) -> None:
        with self._lock:
            self._stream.write(message + "\n")
            self._stream.flush()


class PodmanNotes:
    """Puts the copy engine's closing notes in podman's order and wording.

    podman ends every copy with "Writing manifest to image destination" and
    then "Storing signatures" (printed even when there are none); the engine
    notes "Storing signatures" only when it writes some, and before the
    manifest. Everything else passes through.
    """

    def __init__(self, inner: TerminalProgress | PodmanLines) -> None:
        self._inner = inner

    def blob_started(self, info: BlobInfo, kind: str) -> None:
        self._inner.blob_started(info, kind)

    def blob_advanced(self, info: BlobInfo, done: int) -> None:
        self._inner.blob_advanced(info, done)

    def blob_finished(self, info: BlobInfo, skipped: bool) -> None:
        self._inner.blob_finished(info, skipped)

    def note(self, message: str) -> None:
        if message == "Storing signatures":
            return
        self._inner.note(message)
        if message == "Writing manifest to image destination":
            self._inner.note("Storing signatures")


def podman_progress(quiet: bool, stream: TextIO | None = None) -> PodmanNotes | None:
    """Progress for pull/push/save/load as podman shows it: bars on a TTY, else lines."""
    stream = stream or sys.stderr
    if quiet:
        return None
    inner = TerminalProgress(stream) if stream.isatty() else PodmanLines(stream)
    return PodmanNotes(inner)
