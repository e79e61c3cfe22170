"""The Containerfile parser: text → stages of typed instructions.

It reads a Containerfile the way BuildKit's Dockerfile frontend does, so a
file that builds with ``docker build``/``buildah bud`` means the same here:

* Parser directives (``# syntax=...``, ``# escape=\\`` or ``# escape=```,
  ``# check=...``; names case-insensitive) count only at the very top:
  the first line that is not one — an instruction, a comment, an empty line,
  an unknown directive — ends them. Each may appear once.
* ``#`` starts a comment only at the beginning of a line (after
  whitespace). Comment lines inside a continued instruction are dropped; so
  are blank ones (with a warning, as BuildKit gives).
* The escape character at the end of a line (trailing blanks allowed)
  continues the instruction on the next line, unless it is itself escaped
  (``\\\\`` at the end ends the line — BuildKit's rule; buildah 1.28 still
  continues there).
* RUN, COPY and ADD in shell form (and ONBUILD wrapping them) may open
  heredocs (``<<EOF``, ``<<-EOF``, ``<<"EOF"``, several per line); their
  bodies follow the instruction's last line.

Splitting one instruction's arguments is ``skiff.build.arguments``' job.
Nothing is expanded here: instructions keep raw text (see
``skiff.build.instructions``) and the executor expands with
``skiff.build.words`` at dispatch. Every error is a BuildError whose
message starts ``FILE:LINE:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from skiff.build.arguments import (
    Context,
    Where,
    build_instruction,
    heredoc_capable,
    heredoc_markers,
)
from skiff.build.instructions import ArgInstruction, FromInstruction, Heredoc, Instruction
from skiff.errors import BuildError

__all__ = [
    "Containerfile",
    "Stage",
    "parse_containerfile",
    "parse_file",
    "parse_instruction",
]


@dataclass
class Stage:
    """One ``FROM`` and the instructions up to the next one."""

    index: int
    name: str | None
    from_: FromInstruction
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Containerfile:
    """A parsed Containerfile.

    ``global_args`` are the ARGs before the first FROM (usable in FROM
    lines). ``directives`` maps lower-case directive names to values
    (``syntax`` is recorded, not acted on). ``warnings`` are BuildKit-style
    notes (deprecated forms, blank continuation lines) for the user.
    """

    path: str
    directives: dict[str, str]
    escape: str
    stages: list[Stage]
    global_args: list[ArgInstruction]
    warnings: list[str] = field(default_factory=list)

    def stage(self, ref: str | int) -> Stage:
        """A stage by name (case-insensitive) or index; BuildError if none."""
        if isinstance(ref, int) or ref.isdecimal():
            index = int(ref)
            if 0 <= index < len(self.stages):
                return self.stages[index]
        else:
            for stage in self.stages:
                if stage.name == ref.lower():
                    return stage
        names = [s.name for s in self.stages if s.name]
        raise BuildError(
            f"{self.path}: no build stage {ref!r}",
            f"stages are numbered 0-{len(self.stages) - 1}"
            + (f" or named {', '.join(names)}" if names else ""),
        )


# --- directives ------------------------------------------------------------------

_DIRECTIVE = re.compile(
    r"#[ \t\n\f\r]*([a-zA-Z][a-zA-Z0-9]*)[ \t\n\f\r]*=[ \t\n\f\r]*(.+?)[ \t\n\f\r]*\Z"
)
_KNOWN_DIRECTIVES = ("escape", "syntax", "check")


class _Directives:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.escape = "\\"
        self.done = False

    def offer(self, token: str, where: Where) -> None:
        """Look at a (left-trimmed) line while directives may still come."""
        if self.done:
            return
        match = _DIRECTIVE.match(token)
        if not match or match.group(1).lower() not in _KNOWN_DIRECTIVES:
            self.done = True
            return
        name, value = match.group(1).lower(), match.group(2)
        if name in self.values:
            raise where.error(
                f"only one {name} parser directive can be used",
                "remove the repeated directive",
            )
        if name == "escape":
            if value not in ("\\", "`"):
                raise where.error(
                    f"invalid escape character {value!r}",
                    "use # escape=\\ (the default) or # escape=`",
                )
            self.escape = value
        self.values[name] = value


# --- lines -----------------------------------------------------------------------------


def _physical_lines(text: str) -> list[str]:
    """Split on \\n only (never on other Unicode breaks); each keeps its ending."""
    if not text:
        return []
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _trim_continuation(line: str, escape: str) -> tuple[str, bool]:
    """(line without the continuation escape, whether it continues)."""
    body = line.rstrip(" \t")
    if not body.endswith(escape):
        return line, False
    before = body[:-1]
    if before.endswith(escape):
        return line, False  # an escaped escape ends the line
    return before, True


def _is_comment(line: str) -> bool:
    return line.rstrip("\r\n").lstrip().startswith("#")


@dataclass
class _Logical:
    text: str
    start: int
    end: int


# --- the file --------------------------------------------------------------------------


class _Reader:
    """Walks the physical lines, yielding instructions with their heredocs."""

    def __init__(self, text: str, path: str, line_offset: int = 0) -> None:
        self.path = path
        self.offset = line_offset
        self.lines = _physical_lines(text.removeprefix("\ufeff"))
        self.pos = 0
        self.directives = _Directives()
        self.warnings: list[str] = []

    def where(self, line: int) -> Where:
        return Where(self.path, line + self.offset)

    def logical(self) -> _Logical | None:
        """The next instruction's joined text, or None at the end."""
        while self.pos < len(self.lines):
            raw = self.lines[self.pos]
            self.pos += 1
            start = self.pos
            token = raw.rstrip("\r\n").lstrip()
            self.directives.offer(token, self.where(start))
            if token.startswith("#"):
                continue
            escape = self.directives.escape
            text, more = _trim_continuation(token, escape)
            if not more and not text:
                continue
            blank_continuation = False
            while more and self.pos < len(self.lines):
                raw = self.lines[self.pos]
                self.pos += 1
                if _is_comment(raw):
                    continue
                piece = raw.rstrip("\r\n")
                if not piece.strip():
                    blank_continuation = True
                    continue
                piece, more = _trim_continuation(piece, escape)
                text += piece
            if blank_continuation:
                self.warnings.append(
                    f"{self.path}:{start + self.offset}: empty continuation line "
                    "(BuildKit will make these errors; remove it or the escape before it)"
                )
            if not text.strip():
                continue  # only escapes and comments: nothing to build
            return _Logical(text=text, start=start, end=self.pos)
        return None

    def heredoc(self, marker: Heredoc, start: int) -> Heredoc:
        body: list[str] = []
        while self.pos < len(self.lines):
            raw = self.lines[self.pos]
            self.pos += 1
            candidate = raw.rstrip("\r\n")
            if marker.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == marker.name:
                return Heredoc(
                    name=marker.name,
                    content="".join(body),
                    chomp=marker.chomp,
                    expand=marker.expand,
                    fd=marker.fd,
                )
            body.append(raw)
        raise self.where(start).error(
            f"unterminated heredoc: no line {marker.name!r} after line {start}",
            f"end the heredoc with a line holding only {marker.name}",
        )

    def instructions(self) -> list[Instruction]:
        out: list[Instruction] = []
        while (logical := self.logical()) is not None:
            where = self.where(logical.start)
            heredocs: list[Heredoc] = []
            if "<<" in logical.text and heredoc_capable(logical.text, where):
                heredocs = [self.heredoc(m, logical.start) for m in heredoc_markers(logical.text)]
            ctx = Context(
                where=where,
                escape=self.directives.escape,
                end_line=self.pos + self.offset,
                original=logical.text.strip(),
                source="".join(self.lines[logical.start - 1 : self.pos]),
                heredocs=heredocs,
                warnings=self.warnings,
            )
            out.append(build_instruction(logical.text, ctx))
        return out


def parse_containerfile(text: str, path: str = "Containerfile") -> Containerfile:
    """Parse a Containerfile's text. ``path`` is how errors name the file."""
    reader = _Reader(text, path)
    instructions = reader.instructions()
    stages: list[Stage] = []
    global_args: list[ArgInstruction] = []
    for instruction in instructions:
        if isinstance(instruction, FromInstruction):
            if instruction.alias is not None and any(s.name == instruction.alias for s in stages):
                raise instruction.error(
                    f"duplicate stage name {instruction.alias!r}",
                    "give every stage its own name",
                )
            stages.append(Stage(index=len(stages), name=instruction.alias, from_=instruction))
        elif stages:
            stages[-1].instructions.append(instruction)
        elif isinstance(instruction, ArgInstruction):
            global_args.append(instruction)
        else:
            raise instruction.error(
                f"{instruction.keyword} before the first FROM",
                "start the build with FROM IMAGE (only ARG may come before it)",
            )
    if not stages:
        last = max(len(reader.lines), 1)
        message = "no FROM instruction" if instructions else "file with no instructions"
        raise reader.where(last).error(message, "a Containerfile starts with FROM IMAGE")
    return Containerfile(
        path=path,
        directives=dict(reader.directives.values),
        escape=reader.directives.escape,
        stages=stages,
        global_args=global_args,
        warnings=reader.warnings,
    )


def parse_file(path: str | Path) -> Containerfile:
    """Read and parse a Containerfile; errors name it as given."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BuildError(
            f"cannot read Containerfile {name}: {exc.strerror or exc}",
            "check the path given with -f/--file",
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BuildError(
            f"{name}: not UTF-8 text (byte {exc.start})", "save the Containerfile as UTF-8"
        ) from exc
    return parse_containerfile(text, name)


def parse_instruction(
    text: str, *, escape: str = "\\", path: str = "ONBUILD", line: int = 1
) -> Instruction:
    """Parse one instruction, heredocs included — an ONBUILD trigger read
    from a base image's config, replayed in a child build. ``path``/``line``
    are what errors cite."""
    reader = _Reader(text, path, line_offset=line - 1)
    reader.directives.done = True
    reader.directives.escape = escape
    found = reader.instructions()
    if len(found) != 1:
        raise Where(path, line).error(
            f"expected one instruction, found {len(found)}: {text!r}",
            "an ONBUILD trigger holds exactly one instruction",
        )
    return found[0]
