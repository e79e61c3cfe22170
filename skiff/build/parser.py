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

Nothing is expanded here: instructions keep raw text (see
``skiff.build.instructions``) and the executor expands with
``skiff.build.words`` at dispatch. Every error is a BuildError whose
message starts ``FILE:LINE:``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from skiff.build.instructions import (
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    FromInstruction,
    HealthcheckInstruction,
    Heredoc,
    Instruction,
    LabelInstruction,
    MaintainerInstruction,
    MountSyntaxError,
    OnbuildInstruction,
    RunInstruction,
    RunMount,
    ShellInstruction,
    StopSignalInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
    heredoc_marker,
    parse_duration,
    parse_mount,
)
from skiff.build.words import raw_words
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


# --- errors ---------------------------------------------------------------------


class _Where:
    """The file and line an error is about."""

    def __init__(self, path: str, line: int) -> None:
        self.path = path
        self.line = line

    def error(self, message: str, hint: str | None = None) -> BuildError:
        return BuildError(f"{self.path}:{self.line}: {message}", hint)


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

    def offer(self, token: str, where: _Where) -> None:
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


# --- splitting an instruction line ---------------------------------------------------

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")


def _split_command(line: str) -> tuple[str, list[str], str]:
    """(keyword as written, flag words, rest) of one logical line."""
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = _extract_flags(parts[1])
    return parts[0], flags, rest.strip()


def _extract_flags(text: str) -> tuple[str, list[str]]:
    """Leading ``--name[=value]`` words (quotes and backslashes group, as in
    BuildKit); stops at the first other word or a lone ``--``."""
    words: list[str] = []
    pos = 0
    n = len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            return "", words
        if not text.startswith("--", pos):
            return text[pos:], words
        word: list[str] = []
        quote = ""
        while pos < n:
            ch = text[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\" and pos + 1 < n:
                    pos += 1
                    word.append(text[pos])
                elif ch != "\\":
                    word.append(ch)
            elif ch.isspace():
                break
            elif ch in ("'", '"'):
                quote = ch
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word.append(text[pos])
            else:
                word.append(ch)
            pos += 1
        joined = "".join(word)
        if joined == "--":
            return text[pos:], words
        words.append(joined)


def _parse_words(text: str, escape: str) -> list[str]:
    """Split ENV/LABEL/ARG arguments on whitespace outside quotes, keeping
    quotes and escapes in the words (they are removed at expansion)."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    blank_ok = False
    quote = ""
    pos = 0
    n = len(text)
    while pos < n:
        ch = text[pos]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if pos + 1 == n:
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = text[pos]
            word.append(ch)
            pos += 1
            continue
        if not in_word:
            if ch.isspace():
                pos += 1
                continue
            in_word = True
        if ch.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word = []
            in_word = False
            blank_ok = False
            pos += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
        elif ch == escape:
            if pos + 1 == n:
                pos += 1
                continue
            word.append(ch)
            pos += 1
            ch = text[pos]
        word.append(ch)
        pos += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


_NOT_STRINGS = "when using JSON array syntax, arrays must be comprised of strings only"


def _json_array(text: str, where: _Where) -> list[str] | None:
    """The JSON array ``text`` holds, or None when it is not one (then the
    instruction is in shell form, as in Docker). An array of non-strings is
    an error."""
    stripped = text.lstrip()
    if not stripped.startswith("["):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise where.error(_NOT_STRINGS, 'write ["executable", "arg", ...] with quoted strings')
    return value


def _looks_like_json(text: str) -> bool:
    return text.startswith(('["', "['")) and text.rstrip().endswith("]")


# --- flags -------------------------------------------------------------------------

_STR, _BOOL, _LIST = "string", "bool", "list"
_FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": _STR},
    "RUN": {"mount": _LIST, "network": _STR, "security": _STR},
    "COPY": {
        "from": _STR,
        "chown": _STR,
        "chmod": _STR,
        "link": _BOOL,
        "parents": _BOOL,
        "exclude": _LIST,
    },
    "ADD": {
        "chown": _STR,
        "chmod": _STR,
        "link": _BOOL,
        "checksum": _STR,
        "keep-git-dir": _BOOL,
        "exclude": _LIST,
    },
    "HEALTHCHECK": {
        "interval": _STR,
        "timeout": _STR,
        "start-period": _STR,
        "start-interval": _STR,
        "retries": _STR,
    },
}


@dataclass
class _Flags:
    single: dict[str, str]
    lists: dict[str, list[str]]

    def get(self, name: str) -> str | None:
        return self.single.get(name)

    def flag(self, name: str) -> bool:
        return self.single.get(name) == "true"


def _parse_flags(keyword: str, words: list[str], where: _Where) -> _Flags:
    accepted = _FLAGS.get(keyword, {})
    single: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for word in words:
        name, has_value, value = word[2:].partition("=")
        kind = accepted.get(name)
        if kind is None:
            takes = ", ".join("--" + f for f in accepted) if accepted else "no flags"
            raise where.error(f"{keyword} does not take --{name}", f"{keyword} takes {takes}")
        if kind == _LIST:
            if not has_value or value == "":
                raise where.error(f"--{name} needs a value", f"write --{name}=VALUE")
            lists.setdefault(name, []).append(value)
            single[name] = value
            continue
        if name in single:
            raise where.error(f"--{name} given twice", f"give {keyword} one --{name}")
        if kind == _BOOL:
            if not has_value:
                value = "true"
            elif value.lower() not in ("true", "false"):
                raise where.error(
                    f"--{name}={value}: expected true or false", f"write --{name} or --{name}=false"
                )
            single[name] = value.lower()
            continue
        if not has_value:
            raise where.error(f"--{name} needs a value", f"write --{name}=VALUE")
        single[name] = value
    return _Flags(single, lists)


# --- instructions --------------------------------------------------------------------------

_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*\Z")
_HEREDOC_KEYWORDS = ("RUN", "COPY", "ADD")
_ONBUILD_FORBIDDEN = ("ONBUILD", "FROM", "MAINTAINER")


@dataclass
class _Context:
    """Everything an instruction builder needs besides its arguments."""

    where: _Where
    escape: str
    end_line: int
    original: str
    source: str
    heredocs: list[Heredoc]
    warnings: list[str]

    def common(self, keyword: str, flags: _Flags) -> dict[str, object]:
        return {
            "keyword": keyword,
            "line": self.where.line,
            "end_line": self.end_line,
            "original": self.original,
            "source": self.source,
            "filename": self.where.path,
            "flags": dict(flags.single),
        }

    def error(self, message: str, hint: str | None = None) -> BuildError:
        return self.where.error(message, hint)

    def warn(self, message: str) -> None:
        self.warnings.append(f"{self.where.path}:{self.where.line}: {message}")


def _need(args: str, keyword: str, ctx: _Context, usage: str) -> None:
    if not args:
        raise ctx.error(f"{keyword} requires an argument", f"write {usage}")


def _build_from(args: str, flags: _Flags, ctx: _Context) -> Instruction:
    words = _WHITESPACE.split(args) if args else []
    usage = "FROM [--platform=PLATFORM] IMAGE [AS NAME]"
    alias: str | None = None
    if len(words) == 3 and words[1].lower() == "as":
        alias = words[2].lower()
        if not _STAGE_NAME.match(alias):
            raise ctx.error(
                f"invalid name for build stage: {words[2]!r}",
                "a stage name starts with a letter and holds letters, digits, -, _ and .",
            )
    elif len(words) != 1:
        raise ctx.error("FROM requires either one or three arguments", f"write {usage}")
    return FromInstruction(
        **ctx.common("FROM", flags),  # type: ignore[arg-type]
        image=words[0],
        alias=alias,
        platform=flags.get("platform"),
    )


def _build_run(args: str, flags: _Flags, ctx: _Context) -> Instruction:
    _need(args, "RUN", ctx, 'RUN COMMAND or RUN ["EXECUTABLE", "ARG"...]')
    exec_form = _json_array(args, ctx.where)
    if exec_form is not None and not exec_form:
        raise ctx.error("RUN [] has no command", "give the command to run")
    if exec_form is None and _looks_like_json(args):
        ctx.warn(
            "RUN arguments look like a JSON array but are not valid JSON; they run as a shell command"
        )
    mounts: list[RunMount] = []
    for spec in flags.lists.get("mount", []):
        try:
            mounts.append(parse_mount(spec))
        except MountSyntaxError as exc:
            raise ctx.error(exc.message, exc.hint) from exc
    network = flags.get("network")
    if network is not None and network not in ("default", "none", "host"):
        raise ctx.error(f"--network={network}: unknown network mode", "use default, none or host")
    security = flags.get("security")
    if security is not None and security not in ("sandbox", "insecure"):
        raise ctx.error(f"--security={security}: unknown mode", "use sandbox or insecure")
    return RunInstruction(
        **ctx.common("RUN", flags),  # type: ignore[arg-type]
        command=exec_form if exec_form is not None else args,
        shell_form=exec_form is None,
        mounts=mounts,
        network=network,
        security=security,
        heredocs=list(ctx.heredocs),
    )


def _build_cmd_like(keyword: str) -> Callable[[str, _Flags, _Context], Instruction]:
    def build(args: str, flags: _Flags, ctx: _Context) -> Instruction:
        if not args:
            raise ctx.error(
                f"{keyword} requires an argument",
                f'write {keyword} ["EXECUTABLE", "ARG"...], or {keyword} [] to clear it',
            )
        exec_form = _json_array(args, ctx.where)
        if exec_form is None and _looks_like_json(args):
            ctx.warn(
                f"{keyword} arguments look like a JSON array but are not valid JSON; "
                "they run as a shell command"
            )
        value: list[str] | str = exec_form if exec_form is not None else args
        cls = CmdInstruction if keyword == "CMD" else EntrypointInstruction
        return cls(
            **ctx.common(keyword, flags),  # type: ignore[arg-type]
            args=value,
            shell_form=exec_form is None,
        )

    return build


def _build_shell(args: str, flags: _Flags, ctx: _Context) -> Instruction:
    usage = 'SHELL ["EXECUTABLE", "ARG"...]'
    _need(args, "SHELL", ctx, usage)
    shell = _json_array(args, ctx.where)
    if shell is None:
        raise ctx.error("SHELL requires the arguments to be in JSON form", f"write {usage}")
    if not shell:
        raise ctx.error("SHELL requires at least one argument", f"write {usage}")
    return ShellInstruction(**ctx.common("SHELL", flags), args=shell)  # type: ignore[arg-type]


def _build_copy(keyword: str) -> Callable[[str, _Flags, _Context], Instruction]:
    def build(args: str, flags: _Flags, ctx: _Context) -> Instruction:
        usage = f'{keyword} [FLAGS] SOURCE... DEST or {keyword} ["SOURCE", ... "DEST"]'
        json_args = _json_array(args, ctx.where)
        words = json_args if json_args is not None else (_WHITESPACE.split(args) if args else [])
        if len(words) < 2:
            raise ctx.error(
                f"{keyword} requires at least two arguments, a source and a destination",
                f"write {usage}",
            )
        *sources, dest = words
        if json_args is None and heredoc_marker(dest) is not None:
            raise ctx.error(f"{keyword} cannot take a heredoc as its destination", f"write {usage}")
        paths: list[str] = []
        inline: list[Heredoc] = []
        remaining = list(ctx.heredocs)
        for src in sources:
            if json_args is None and heredoc_marker(src) is not None and remaining:
                inline.append(remaining.pop(0))
            else:
                paths.append(src)
        is_add = keyword == "ADD"
        return CopyInstruction(
            **ctx.common(keyword, flags),  # type: ignore[arg-type]
            sources=paths,
            dest=dest,
            is_add=is_add,
            from_=flags.get("from"),
            chown=flags.get("chown"),
            chmod=flags.get("chmod"),
            link=flags.flag("link"),
            parents=flags.flag("parents"),
            excludes=list(flags.lists.get("exclude", [])),
            checksum=flags.get("checksum"),
            keep_git_dir=(flags.flag("keep-git-dir") if "keep-git-dir" in flags.single else None),
            heredocs=inline,
            json_form=json_args is not None,
        )

    return build


def _name_values(keyword: str, args: str, ctx: _Context) -> tuple[list[tuple[str, str]], bool]:
    words = _parse_words(args, ctx.escape)
    if not words:
        raise ctx.error(
            f"{keyword} requires at least one argument", f"write {keyword} NAME=VALUE ..."
        )
    if "=" not in words[0]:
        parts = _WHITESPACE.split(args, maxsplit=1)
        if len(parts) < 2:
            raise ctx.error(
                f"{keyword} {parts[0]} has no value", f"write {keyword} {parts[0]}=VALUE"
            )
        ctx.warn(
            f'legacy "{keyword} name value" form; write "{keyword} {parts[0]}=value" '
            "(the value is the whole rest of the line)"
        )
        return [(parts[0], parts[1])], True
    pairs: list[tuple[str, str]] = []
    for word in words:
        key, has_eq, value = word.partition("=")
        if not has_eq:
            raise ctx.error(
                f"{keyword}: cannot find = in {word!r}",
                f'write {keyword} NAME=VALUE ... (quote values with spaces: NAME="a b")',
            )
        if not key:
            raise ctx.error(f"{keyword} names can not be blank", f"write {keyword} NAME=VALUE")
        pairs.append((key, value))
    return pairs, False


def _build_env(args: str, flags: _Flags, ctx: _Context) -> Instruction:
    pairs, legacy = _name_values("ENV", args, ctx)
    return EnvInstruction(**ctx.common("ENV", flags), pairs=pairs, legacy_form=legacy)  # type: ignore[arg-type]


def _build_label(args: str, flags: _Flags, ctx: _Context) -> Instruction:
    pairs, legacy = _name_values("LABEL", args, ctx)
    return LabelInstruction(**ctx.common("LABEL", flags), pairs=pairs, legacy_form=legacy)  # type: ignore[arg-type]


def _build_arg(args: str, flags: _Flags, ctx: _Context) -> Instruction:
    words = _parse_words(args, ctx.escape)
    if not words:
        raise ctx.error("ARG requires at least one argument", "write ARG NAME[=DEFAULT] ...")
    items: list[tuple[str, str | None]] = []
    for word in words:
        name, has_eq, value = word.partition("=")
        if not name:
            raise ctx.error("ARG names can not be blank", "write ARG NAME[=DEFAULT]")
        items.append((name, value if has_eq else None))
    return ArgInstruction(**ctx.common("ARG", flags), items=items)  # type: ignore[arg-type]


def _build_expose(args: str, flags: _Flags, ctx: _Context) -> Instruction:
    _need(args, "EXPOSE", ctx, "EXPOSE PORT[/PROTOCOL] ...")
    return ExposeInstruction(**ctx.common("EXPOSE", flags), ports=_WHITESPACE.split(args))  # type: ignore[arg-type]


def _build_volume(args: str, flags: _Flags, ctx: _Context) -> Instruction:
    usage = 'VOLUME PATH ... or VOLUME ["PATH", ...]'
    json_args = _json_array(args, ctx.where)
    paths = json_args if json_args is not None else (_WHITESPACE.split(args) if args else [])
    if not paths:
        raise ctx.error("VOLUME requires at least one argument", f"write {usage}")
    if any(not p.strip() for p in paths):
        raise ctx.error("VOLUME specified can not be an empty string", f"write {usage}")
    return VolumeInstruction(
        **ctx.common("VOLUME", flags),  # type: ignore[arg-type]
        paths=paths,
        json_form=json_args is not None,
    )


def _build_single(keyword: str) -> Callable[[str, _Flags, _Context], Instruction]:
    usage = {
        "USER": "USER NAME[:GROUP]",
        "WORKDIR": "WORKDIR PATH",
        "STOPSIGNAL": "STOPSIGNAL SIGNAL",
        "MAINTAINER": "MAINTAINER NAME",
    }[keyword]

    def build(args: str, flags: _Flags, ctx: _Context) -> Instruction:
        if not args:
            raise ctx.error(f"{keyword} requires exactly one argument", f"write {usage}")
        common = ctx.common(keyword, flags)
        if keyword == "USER":
            return UserInstruction(**common, user=args)  # type: ignore[arg-type]
        if keyword == "WORKDIR":
            return WorkdirInstruction(**common, path=args)  # type: ignore[arg-type]
        if keyword == "STOPSIGNAL":
            return StopSignalInstruction(**common, signal=args)  # type: ignore[arg-type]
        ctx.warn("MAINTAINER is deprecated; use LABEL org.opencontainers.image.authors=NAME")
        return MaintainerInstruction(**common, maintainer=args)  # type: ignore[arg-type]

    return build


def _build_healthcheck(args: str, flags: _Flags, ctx: _Context) -> Instruction:
    usage = "HEALTHCHECK NONE or HEALTHCHECK [--interval=D --timeout=D --start-period=D --start-interval=D --retries=N] CMD COMMAND"
    if not args:
        raise ctx.error("HEALTHCHECK requires at least one argument", f"write {usage}")
    head = _WHITESPACE.split(args, maxsplit=1)
    kind, rest = head[0], (head[1] if len(head) > 1 else "")
    kind_u = kind.upper()
    if kind_u == "NONE":
        if rest or flags.single:
            raise ctx.error("HEALTHCHECK NONE takes no arguments", f"write {usage}")
        return HealthcheckInstruction(
            **ctx.common("HEALTHCHECK", flags),  # type: ignore[arg-type]
            disabled=True,
            test=["NONE"],
        )
    if kind_u != "CMD":
        raise ctx.error(f"unknown type {kind!r} in HEALTHCHECK", f"write {usage}")
    if not rest:
        raise ctx.error("missing command after HEALTHCHECK CMD", f"write {usage}")
    exec_form = _json_array(rest, ctx.where)
    if exec_form is not None and not exec_form:
        raise ctx.error("missing command after HEALTHCHECK CMD", f"write {usage}")
    test = ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", rest]

    def duration(name: str) -> int | None:
        raw = flags.get(name)
        if raw is None or raw == "":
            return None
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            raise ctx.error(f"--{name}: {exc}", "write a duration such as 30s or 1m30s") from exc
        if value == 0:
            return 0
        if value < 1_000_000:
            raise ctx.error(
                f"--{name}={raw} cannot be less than 1ms", "use a duration of 1ms or more"
            )
        return value

    retries: int | None = None
    raw_retries = flags.get("retries")
    if raw_retries:
        if not re.fullmatch(r"[+-]?\d+", raw_retries):
            raise ctx.error(f"--retries={raw_retries} is not a number", "write --retries=N")
        retries = int(raw_retries)
        if retries < 0 or retries > 2**31 - 1:
            raise ctx.error(f"--retries={raw_retries} is out of range", "write a count from 0 up")
    return HealthcheckInstruction(
        **ctx.common("HEALTHCHECK", flags),  # type: ignore[arg-type]
        disabled=False,
        test=test,
        interval=duration("interval"),
        timeout=duration("timeout"),
        start_period=duration("start-period"),
        start_interval=duration("start-interval"),
        retries=retries,
    )


def _build_onbuild(args: str, flags: _Flags, ctx: _Context) -> Instruction:
    if not args:
        raise ctx.error("ONBUILD requires at least one argument", "write ONBUILD INSTRUCTION")
    inner_keyword = _WHITESPACE.split(args, maxsplit=1)[0].upper()
    if inner_keyword == "ONBUILD":
        raise ctx.error("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if inner_keyword in _ONBUILD_FORBIDDEN:
        raise ctx.error(f"{inner_keyword} isn't allowed as an ONBUILD trigger")
    inner_ctx = _Context(
        where=ctx.where,
        escape=ctx.escape,
        end_line=ctx.end_line,
        original=args,
        source=ctx.source,
        heredocs=ctx.heredocs,
        warnings=ctx.warnings,
    )
    inner = _build_instruction(args, inner_ctx)
    text = args + "".join("\n" + doc.content + doc.name for doc in ctx.heredocs)
    return OnbuildInstruction(**ctx.common("ONBUILD", flags), inner=inner, text=text)  # type: ignore[arg-type]


_BUILDERS: dict[str, Callable[[str, _Flags, _Context], Instruction]] = {
    "ADD": _build_copy("ADD"),
    "ARG": _build_arg,
    "CMD": _build_cmd_like("CMD"),
    "COPY": _build_copy("COPY"),
    "ENTRYPOINT": _build_cmd_like("ENTRYPOINT"),
    "ENV": _build_env,
    "EXPOSE": _build_expose,
    "FROM": _build_from,
    "HEALTHCHECK": _build_healthcheck,
    "LABEL": _build_label,
    "MAINTAINER": _build_single("MAINTAINER"),
    "ONBUILD": _build_onbuild,
    "RUN": _build_run,
    "SHELL": _build_shell,
    "STOPSIGNAL": _build_single("STOPSIGNAL"),
    "USER": _build_single("USER"),
    "VOLUME": _build_volume,
    "WORKDIR": _build_single("WORKDIR"),
}


def _keyword(word: str, where: _Where) -> str:
    keyword = word.upper()
    if keyword not in _BUILDERS:
        raise where.error(
            f"unknown instruction: {word}",
            "instructions are " + ", ".join(sorted(_BUILDERS)),
        )
    return keyword


def _build_instruction(line: str, ctx: _Context) -> Instruction:
    word, flag_words, args = _split_command(line)
    keyword = _keyword(word, ctx.where)
    flags = _parse_flags(keyword, flag_words, ctx.where)
    return _BUILDERS[keyword](args, flags, ctx)


def _heredoc_capable(line: str, where: _Where) -> bool:
    """Whether ``line`` is an instruction that may open heredocs: RUN, COPY
    or ADD not in JSON form, directly or as an ONBUILD trigger."""
    word, _, args = _split_command(line)
    keyword = word.upper()
    if keyword == "ONBUILD" and args:
        word, _, args = _split_command(args)
        keyword = word.upper()
    if keyword not in _HEREDOC_KEYWORDS:
        return False
    try:
        return _json_array(args, where) is None
    except BuildError:
        return False


def _heredoc_markers(line: str) -> list[Heredoc]:
    markers = []
    for word in raw_words(line):
        marker = heredoc_marker(word)
        if marker is not None:
            markers.append(marker)
    return markers


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

    def where(self, line: int) -> _Where:
        return _Where(self.path, line + self.offset)

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
            if "<<" in logical.text and _heredoc_capable(logical.text, where):
                heredocs = [self.heredoc(m, logical.start) for m in _heredoc_markers(logical.text)]
            ctx = _Context(
                where=where,
                escape=self.directives.escape,
                end_line=self.pos + self.offset,
                original=logical.text.strip(),
                source="".join(self.lines[logical.start - 1 : self.pos]),
                heredocs=heredocs,
                warnings=self.warnings,
            )
            out.append(_build_instruction(logical.text, ctx))
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
        raise _Where(path, line).error(
            f"expected one instruction, found {len(found)}: {text!r}",
            "an ONBUILD trigger holds exactly one instruction",
        )
    return found[0]
