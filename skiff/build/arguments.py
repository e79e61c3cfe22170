"""One instruction's logical line → its typed Instruction.

The parser (``skiff.build.parser``) finds where an instruction starts and
ends — directives, continuations, comments, heredoc bodies — and hands the
joined line here, where it is split the way BuildKit splits it: the keyword,
the leading ``--flags`` (checked against what that instruction takes), and
the arguments in the instruction's own form (JSON array or shell text,
NAME=VALUE words, whitespace-separated words, the rest of the line). Errors
name the file and the instruction's first line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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

__all__ = ["Context", "Where", "build_instruction", "heredoc_capable", "heredoc_markers"]


# --- errors ---------------------------------------------------------------------


class Where:
    """The file and line an error is about."""

    def __init__(self, path: str, line: int) -> None:
        self.path = path
        self.line = line

    def error(self, message: str, hint: str | None = None) -> BuildError:
        return BuildError(f"{self.path}:{self.line}: {message}", hint)


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


def _json_array(text: str, where: Where) -> list[str] | None:
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


def _parse_flags(keyword: str, words: list[str], where: Where) -> _Flags:
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
class Context:
    """Everything an instruction builder needs besides its arguments."""

    where: Where
    escape: str
    end_line: int
    original: str
    source: str
    heredocs: list[Heredoc]
    warnings: list[str]

    def common(self, keyword: str, flags: _Flags) -> dict[str, Any]:
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


def _need(args: str, keyword: str, ctx: Context, usage: str) -> None:
    if not args:
        raise ctx.error(f"{keyword} requires an argument", f"write {usage}")


def _build_from(args: str, flags: _Flags, ctx: Context) -> Instruction:
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
        **ctx.common("FROM", flags),
        image=words[0],
        alias=alias,
        platform=flags.get("platform"),
    )


def _build_run(args: str, flags: _Flags, ctx: Context) -> Instruction:
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
        **ctx.common("RUN", flags),
        command=exec_form if exec_form is not None else args,
        shell_form=exec_form is None,
        mounts=mounts,
        network=network,
        security=security,
        heredocs=list(ctx.heredocs),
    )


def _build_cmd_like(keyword: str) -> Callable[[str, _Flags, Context], Instruction]:
    def build(args: str, flags: _Flags, ctx: Context) -> Instruction:
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
            **ctx.common(keyword, flags),
            args=value,
            shell_form=exec_form is None,
        )

    return build


def _build_shell(args: str, flags: _Flags, ctx: Context) -> Instruction:
    usage = 'SHELL ["EXECUTABLE", "ARG"...]'
    _need(args, "SHELL", ctx, usage)
    shell = _json_array(args, ctx.where)
    if shell is None:
        raise ctx.error("SHELL requires the arguments to be in JSON form", f"write {usage}")
    if not shell:
        raise ctx.error("SHELL requires at least one argument", f"write {usage}")
    return ShellInstruction(**ctx.common("SHELL", flags), args=shell)


def _build_copy(keyword: str) -> Callable[[str, _Flags, Context], Instruction]:
    def build(args: str, flags: _Flags, ctx: Context) -> Instruction:
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
            **ctx.common(keyword, flags),
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


def _name_values(keyword: str, args: str, ctx: Context) -> tuple[list[tuple[str, str]], bool]:
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


def _build_env(args: str, flags: _Flags, ctx: Context) -> Instruction:
    pairs, legacy = _name_values("ENV", args, ctx)
    return EnvInstruction(**ctx.common("ENV", flags), pairs=pairs, legacy_form=legacy)


def _build_label(args: str, flags: _Flags, ctx: Context) -> Instruction:
    pairs, legacy = _name_values("LABEL", args, ctx)
    return LabelInstruction(**ctx.common("LABEL", flags), pairs=pairs, legacy_form=legacy)


def _build_arg(args: str, flags: _Flags, ctx: Context) -> Instruction:
    words = _parse_words(args, ctx.escape)
    if not words:
        raise ctx.error("ARG requires at least one argument", "write ARG NAME[=DEFAULT] ...")
    items: list[tuple[str, str | None]] = []
    for word in words:
        name, has_eq, value = word.partition("=")
        if not name:
            raise ctx.error("ARG names can not be blank", "write ARG NAME[=DEFAULT]")
        items.append((name, value if has_eq else None))
    return ArgInstruction(**ctx.common("ARG", flags), items=items)


def _build_expose(args: str, flags: _Flags, ctx: Context) -> Instruction:
    _need(args, "EXPOSE", ctx, "EXPOSE PORT[/PROTOCOL] ...")
    return ExposeInstruction(**ctx.common("EXPOSE", flags), ports=_WHITESPACE.split(args))


def _build_volume(args: str, flags: _Flags, ctx: Context) -> Instruction:
    usage = 'VOLUME PATH ... or VOLUME ["PATH", ...]'
    json_args = _json_array(args, ctx.where)
    paths = json_args if json_args is not None else (_WHITESPACE.split(args) if args else [])
    if not paths:
        raise ctx.error("VOLUME requires at least one argument", f"write {usage}")
    if any(not p.strip() for p in paths):
        raise ctx.error("VOLUME specified can not be an empty string", f"write {usage}")
    return VolumeInstruction(
        **ctx.common("VOLUME", flags),
        paths=paths,
        json_form=json_args is not None,
    )


def _build_single(keyword: str) -> Callable[[str, _Flags, Context], Instruction]:
    usage = {
        "USER": "USER NAME[:GROUP]",
        "WORKDIR": "WORKDIR PATH",
        "STOPSIGNAL": "STOPSIGNAL SIGNAL",
        "MAINTAINER": "MAINTAINER NAME",
    }[keyword]

    def build(args: str, flags: _Flags, ctx: Context) -> Instruction:
        if not args:
            raise ctx.error(f"{keyword} requires exactly one argument", f"write {usage}")
        common = ctx.common(keyword, flags)
        if keyword == "USER":
            return UserInstruction(**common, user=args)
        if keyword == "WORKDIR":
            return WorkdirInstruction(**common, path=args)
        if keyword == "STOPSIGNAL":
            return StopSignalInstruction(**common, signal=args)
        ctx.warn("MAINTAINER is deprecated; use LABEL org.opencontainers.image.authors=NAME")
        return MaintainerInstruction(**common, maintainer=args)

    return build


def _build_healthcheck(args: str, flags: _Flags, ctx: Context) -> Instruction:
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
            **ctx.common("HEALTHCHECK", flags),
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
        **ctx.common("HEALTHCHECK", flags),
        disabled=False,
        test=test,
        interval=duration("interval"),
        timeout=duration("timeout"),
        start_period=duration("start-period"),
        start_interval=duration("start-interval"),
        retries=retries,
    )


def _build_onbuild(args: str, flags: _Flags, ctx: Context) -> Instruction:
    if not args:
        raise ctx.error("ONBUILD requires at least one argument", "write ONBUILD INSTRUCTION")
    inner_keyword = _WHITESPACE.split(args, maxsplit=1)[0].upper()
    if inner_keyword == "ONBUILD":
        raise ctx.error("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if inner_keyword in _ONBUILD_FORBIDDEN:
        raise ctx.error(f"{inner_keyword} isn't allowed as an ONBUILD trigger")
    inner_ctx = Context(
        where=ctx.where,
        escape=ctx.escape,
        end_line=ctx.end_line,
        original=args,
        source=ctx.source,
        heredocs=ctx.heredocs,
        warnings=ctx.warnings,
    )
    inner = build_instruction(args, inner_ctx)
    text = args + "".join("\n" + doc.content + doc.name for doc in ctx.heredocs)
    return OnbuildInstruction(**ctx.common("ONBUILD", flags), inner=inner, text=text)


_BUILDERS: dict[str, Callable[[str, _Flags, Context], Instruction]] = {
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


def _keyword(word: str, where: Where) -> str:
    keyword = word.upper()
    if keyword not in _BUILDERS:
        raise where.error(
            f"unknown instruction: {word}",
            "instructions are " + ", ".join(sorted(_BUILDERS)),
        )
    return keyword


def build_instruction(line: str, ctx: Context) -> Instruction:
    word, flag_words, args = _split_command(line)
    keyword = _keyword(word, ctx.where)
    flags = _parse_flags(keyword, flag_words, ctx.where)
    return _BUILDERS[keyword](args, flags, ctx)


def heredoc_capable(line: str, where: Where) -> bool:
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


def heredoc_markers(line: str) -> list[Heredoc]:
    markers = []
    for word in raw_words(line):
        marker = heredoc_marker(word)
        if marker is not None:
            markers.append(marker)
    return markers
