"""``.containerignore``/``.dockerignore``: which build-context paths to leave out.

The pattern language is Docker's (moby/patternmatcher), which buildah uses
too:

* One pattern per line. A line whose first character is ``#`` is a
  comment; blank lines are skipped; other lines are trimmed of surrounding
  whitespace.
* ``!`` before a pattern makes it an exception: it re-includes what it
  matches. The last pattern that matches a path decides.
* Patterns are cleaned like Go's ``filepath.Clean`` (``./a`` → ``a``,
  ``a/`` → ``a``, ``a//b`` → ``a/b``) and a leading ``/`` is dropped: they
  are always relative to the context root.
* Go ``filepath.Match`` syntax per path component — ``*`` (any run of
  characters but ``/``), ``?`` (one character but ``/``), ``[a-z]``,
  ``[^a-z]``, ``\\`` escapes the next character — plus ``**``, any number of
  directories (zero included).
* A pattern that matches a directory matches everything under it.

``walk`` lists what the build may use. It does not enter an excluded
directory unless an exception could re-include something below it — and
then, unlike buildah 1.28 (which only looks for exceptions spelled with the
directory's own path as a prefix), it decides that by matching the
exception's leading components, so ``!**/keep`` re-includes ``dir/keep``
even when ``dir`` is excluded, as BuildKit does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from skiff.errors import BuildError

__all__ = ["IgnoreMatcher", "IgnorePattern", "find_ignore_file"]

IGNORE_FILE_NAMES = (".containerignore", ".dockerignore")
"""Looked for in the context directory, in this order (buildah's rule)."""


def find_ignore_file(context_dir: str | Path, ignorefile: str | Path | None = None) -> Path | None:
    """The ignore file a build of ``context_dir`` uses: ``ignorefile`` if
    given (``--ignorefile``; it must exist), else ``.containerignore``, else
    ``.dockerignore`` in the context directory, else None."""
    if ignorefile is not None:
        path = Path(ignorefile)
        if not path.is_file():
            raise BuildError(
                f"ignore file {ignorefile} does not exist or is not a file",
                "check the path given with --ignorefile",
            )
        return path
    for name in IGNORE_FILE_NAMES:
        candidate = Path(context_dir) / name
        if candidate.is_file():
            return candidate
    return None


def _go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` for ``/``-separated paths."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _translate(pattern: str) -> str:
    """A Docker ignore pattern as a Python regular expression (whole path)."""
    out = ["^"]
    pos = 0
    n = len(pattern)
    while pos < n:
        ch = pattern[pos]
        pos += 1
        if ch == "*":
            if pos < n and pattern[pos] == "*":
                pos += 1
                if pos < n and pattern[pos] == "/":
                    pos += 1
                # "**" at the end matches everything; elsewhere any number
                # of whole directories, including none.
                out.append(".*" if pos >= n else "(?:.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if pos < n:
                out.append(re.escape(pattern[pos]))
                pos += 1
            else:
                out.append(re.escape("\\"))
        elif ch == "[":
            cls, pos = _translate_class(pattern, pos)
            out.append(cls)
        else:
            out.append(re.escape(ch))
    out.append(r"\Z")
    return "".join(out)


def _translate_class(pattern: str, pos: int) -> tuple[str, int]:
    """``[...]`` starting after the ``[``: (regex class, position after ``]``).
    ``^`` negates; ``a-z`` is a range; ``\\`` escapes; everything else is
    literal. Malformed classes raise ValueError, as Go's matcher refuses them."""
    n = len(pattern)
    negate = pos < n and pattern[pos] == "^"
    if negate:
        pos += 1
    items: list[str] = []
    while True:
        if pos >= n:
            raise ValueError("unterminated character class")
        ch = pattern[pos]
        pos += 1
        if ch == "]" and items:
            break
        if ch == "-" and items and pos < n and pattern[pos] != "]" and items[-1] != "-":
            items.append("-")
            continue
        if ch == "\\":
            if pos >= n:
                raise ValueError("unterminated character class")
            ch = pattern[pos]
            pos += 1
        elif ch in "-]":
            raise ValueError(f"misplaced {ch!r} in character class")
        items.append(re.escape(ch))
    if items[-1] == "-":
        raise ValueError("character range without an end")
    return "[" + ("^" if negate else "") + "".join(items) + "]", pos


@dataclass(frozen=True)
class IgnorePattern:
    """One cleaned pattern: ``text`` without the ``!``; ``exception`` if it had one."""

    text: str
    exception: bool
    regex: re.Pattern[str]
    components: tuple[re.Pattern[str] | None, ...]
    """Per ``/``-separated component a regex for one path component, or
    None for a component holding ``**`` (may span directories)."""

    @classmethod
    def compile(cls, raw: str, exception: bool) -> IgnorePattern:
        text = _go_clean(raw)
        if len(text) > 1 and text.startswith("/"):
            text = text[1:]
        regex = re.compile(_translate(text), re.DOTALL)
        components = tuple(
            None if "**" in part else re.compile(_translate(part), re.DOTALL)
            for part in text.split("/")
        )
        return cls(text=text, exception=exception, regex=regex, components=components)

    def matches(self, path: str, parents: Iterable[str]) -> bool:
        """Whether the pattern matches ``path`` or one of its ``parents``."""
        if self.regex.match(path):
            return True
        return any(self.regex.match(parent) for parent in parents)

    def may_match_below(self, dir_parts: list[str]) -> bool:
        """Whether the pattern could match the directory or a path below it."""
        for index, part in enumerate(dir_parts):
            if index >= len(self.components):
                return True  # it matches an ancestor: everything below follows
            component = self.components[index]
            if component is None:
                return True
            if not component.match(part):
                return False
        return True


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _normalize(relpath: str) -> str:
    cleaned = _go_clean(relpath.replace(os.sep, "/"))
    return cleaned.lstrip("/") or "."


class IgnoreMatcher:
    """Decides for context-relative paths whether a build leaves them out."""

    def __init__(self, patterns: Iterable[IgnorePattern] = ()) -> None:
        self.patterns = tuple(patterns)
        self._has_exceptions = any(p.exception for p in self.patterns)

    @classmethod
    def from_lines(cls, lines: Iterable[str], source: str = "ignore file") -> IgnoreMatcher:
        """Parse pattern lines; ``source`` names the file in errors."""
        patterns: list[IgnorePattern] = []
        for number, line in enumerate(lines, start=1):
            text = line.removeprefix("\ufeff") if number == 1 else line
            text = text.rstrip("\r\n")
            if text.startswith("#"):
                continue
            text = text.strip()
            if not text:
                continue
            exception = text.startswith("!")
            if exception:
                text = text[1:].strip()
                if not text:
                    raise BuildError(
                        f"{source}:{number}: illegal exclusion pattern '!'",
                        "write !PATTERN to re-include something, or remove the line",
                    )
            try:
                patterns.append(IgnorePattern.compile(text, exception))
            except (ValueError, re.error) as exc:
                raise BuildError(
                    f"{source}:{number}: invalid pattern {line.strip()!r}: {exc}",
                    "fix the pattern (Go filepath.Match syntax plus **)",
                ) from exc
        return cls(patterns)

    @classmethod
    def from_file(cls, path: str | Path) -> IgnoreMatcher:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise BuildError(
                f"cannot read ignore file {path}: {exc.strerror or exc}",
                "check that the file exists and is readable",
            ) from exc
        except UnicodeDecodeError as exc:
            raise BuildError(f"ignore file {path} is not UTF-8 text", "save it as UTF-8") from exc
        return cls.from_lines(text.split("\n"), source=str(path))

    @classmethod
    def for_context(
        cls, context_dir: str | Path, ignorefile: str | Path | None = None
    ) -> IgnoreMatcher:
        """The matcher a build of ``context_dir`` uses (see find_ignore_file);
        an empty one when there is no ignore file."""
        found = find_ignore_file(context_dir, ignorefile)
        return cls.from_file(found) if found is not None else cls()

    # -- matching ---------------------------------------------------------

    def excluded(self, relpath: str, is_dir: bool = False) -> bool:
        """Whether ``relpath`` (relative to the context, ``/``-separated) is
        left out. ``is_dir`` does not change the answer — Docker's patterns
        match files and directories alike — but callers state it so the
        call reads as what it asks."""
        del is_dir
        path = _normalize(relpath)
        parents = _parents(path)
        excluded = False
        for pattern in self.patterns:
            # A pattern can only change the verdict when it points the other way.
            if pattern.exception != excluded:
                continue
            if pattern.matches(path, parents):
                excluded = not pattern.exception
        return excluded

    def may_descend(self, dir_relpath: str) -> bool:
        """Whether a walk must look inside this directory: it is not
        excluded, or an exception could re-include something below it."""
        if not self.excluded(dir_relpath, is_dir=True):
            return True
        if not self._has_exceptions:
            return False
        parts = _normalize(dir_relpath).split("/")
        return any(p.exception and p.may_match_below(parts) for p in self.patterns)

    def walk(self, context_dir: str | Path) -> Iterator[str]:
        """Relative paths (``/``-separated, sorted, a directory before its
        contents) of every file, symlink and directory the build may use.
        An excluded directory that is only entered to reach re-included
        paths is not itself listed. Symlinks are not followed."""
        root = Path(context_dir)
        yield from self._walk(root, "")

    def _walk(self, root: Path, prefix: str) -> Iterator[str]:
        directory = root / prefix if prefix else root
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise BuildError(
                f"cannot read build context directory {directory}: {exc.strerror or exc}",
                "check the permissions of the build context",
            ) from exc
        for entry in entries:
            rel = f"{prefix}/{entry.name}" if prefix else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError as exc:
                raise BuildError(
                    f"cannot stat {root / rel} in the build context: {exc.strerror or exc}",
                    "check the permissions of the build context",
                ) from exc
            if not self.excluded(rel, is_dir):
                yield rel
                if is_dir:
                    yield from self._walk(root, rel)
            elif is_dir and self.may_descend(rel):
                yield from self._walk(root, rel)
