"""Typed Containerfile instructions: one dataclass per instruction.

The parser (``skiff.build.parser``) fills these; the executor reads them.
Arguments stay as written — quotes, escapes and ``$VAR`` included — because
variables are expanded at dispatch time with the ARG/ENV values of that
moment (``skiff.build.words``). What can be checked without those values
(JSON forms, flag names, mount keys, durations, counts of arguments) is
checked here, so that a malformed file fails before anything is built.

Every instruction knows where it came from: ``line``/``end_line`` (1-based,
heredoc bodies included), ``original`` (the logical line: continuations
joined, comment lines dropped — what a cache key should hash, together with
any heredoc bodies) and ``source`` (the lines exactly as in the file, for
error messages). ``error()`` makes a BuildError that starts with
``PATH:LINE:`` as every build error about an instruction should.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from skiff.build.words import unquote_word
from skiff.errors import BuildError

__all__ = [
    "ArgInstruction",
    "CmdInstruction",
    "CopyInstruction",
    "EntrypointInstruction",
    "EnvInstruction",
    "ExposeInstruction",
    "FromInstruction",
    "HealthcheckInstruction",
    "Heredoc",
    "InlineFile",
    "Instruction",
    "LabelInstruction",
    "MaintainerInstruction",
    "OnbuildInstruction",
    "RunInstruction",
    "RunMount",
    "ShellInstruction",
    "StopSignalInstruction",
    "UserInstruction",
    "VolumeInstruction",
    "WorkdirInstruction",
    "expose_ports",
    "heredoc_marker",
    "parse_duration",
    "parse_mount",
    "parse_size",
]


# --- heredocs ---------------------------------------------------------------


_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)


@dataclass(frozen=True)
class Heredoc:
    """A here-document attached to RUN, COPY or ADD (BuildKit syntax).

    ``content`` is every line between the marker line and the terminator,
    each with its line ending, exactly as written (leading tabs kept even
    for ``<<-``). ``expand`` is False when any part of the delimiter was
    quoted (``<<"EOF"``, ``<<'EOF'``): then the builder must not expand
    variables in it. ``fd`` is the number before ``<<`` (``3<<EOF``), 0 if
    none.
    """

    name: str
    content: str
    chomp: bool = False
    expand: bool = True
    fd: int = 0

    def body(self) -> str:
        """The content as a file would hold it: with ``<<-``, leading tabs
        removed from every line."""
        if self.chomp:
            return _LEADING_TABS.sub("", self.content)
        return self.content


_HEREDOC_WORD = re.compile(r"(\d*)<<(-?)([^<]*)\Z", re.DOTALL)


def heredoc_marker(word: str) -> Heredoc | None:
    """The heredoc a word such as ``<<EOF``, ``<<-EOF``, ``<<"EOF"`` or
    ``3<<EOF`` opens (with empty content), or None if it opens none.

    The delimiter is the word with quotes removed; when quoting removed
    anything the body is not expanded, as BuildKit decides it.
    """
    match = _HEREDOC_WORD.match(word)
    if not match or not match.group(3):
        return None
    try:
        plain, raw = unquote_word(match.group(3))
    except BuildError:
        return None
    if len(plain) != 1 or len(raw) != 1:
        return None

    def quotes(text: str) -> int:
        return text.count("'") + text.count('"')

    return Heredoc(
        name=plain[0],
        content="",
        chomp=match.group(2) == "-",
        expand=quotes(plain[0]) == quotes(raw[0]),
        fd=int(match.group(1) or "0"),
    )


@dataclass(frozen=True)
class InlineFile:
    """A file the executor makes visible (read-only) while a RUN executes."""

    path: str
    data: str
    mode: int = 0o755


# --- the base ---------------------------------------------------------------


@dataclass(kw_only=True)
class Instruction:
    """What every instruction has. ``flags`` holds each ``--flag`` as given
    (bool flags as "true"/"false"; a repeated flag keeps its last value —
    the typed fields hold all of them)."""

    keyword: str
    line: int
    end_line: int
    original: str
    flags: dict[str, str] = field(default_factory=dict)
    source: str = ""
    filename: str = "Containerfile"

    expands_variables: ClassVar[bool] = False
    """Whether the builder expands ``$VAR`` in this instruction's arguments."""

    def location(self) -> str:
        return f"{self.filename}:{self.line}"

    def error(self, message: str, hint: str | None = None) -> BuildError:
        """A BuildError about this instruction: ``PATH:LINE: message``."""
        return BuildError(f"{self.location()}: {message}", hint)


# --- FROM and the stage-level ones ------------------------------------------


@dataclass(kw_only=True)
class FromInstruction(Instruction):
    """``FROM [--platform=P] IMAGE [AS NAME]``. ``image`` and ``platform``
    are raw (expanded with the global ARGs only); ``alias`` is lower-cased
    and validated, as stage names are matched case-insensitively."""

    keyword: str = "FROM"
    image: str
    alias: str | None = None
    platform: str | None = None

    expands_variables: ClassVar[bool] = True


@dataclass(kw_only=True)
class ArgInstruction(Instruction):
    """``ARG NAME[=DEFAULT] ...``: several per line; defaults raw."""

    keyword: str = "ARG"
    items: list[tuple[str, str | None]]

    expands_variables: ClassVar[bool] = True


# --- commands ----------------------------------------------------------------


@dataclass(frozen=True)
class RunMount:
    """One ``RUN --mount=...``.

    The fields are what BuildKit's mount syntax names (``target``/``dst``/
    ``destination`` → ``target``, ``source``/``src`` → ``source``, ``ro``/
    ``readonly``/``rw``/``readwrite`` → ``readonly``). buildah's extra
    options (``z``, ``Z``, ``U``, ``relabel=``, ``bind-propagation=``,
    ``bind-nonrecursive``, ``tmpcopyup``, ``notmpcopyup``) are kept in
    ``options`` as written; ``tmpfs-size``/``tmpfs-mode`` fill ``size``/
    ``mode``.

    Values are raw when parsed from a Containerfile: buildah and BuildKit
    expand build variables in them, so a value with a ``$`` cannot be
    checked yet and a numeric field holding one is None until the executor
    calls ``expand`` — which it should always do before using a mount.
    """

    spec: str
    type: str = "bind"
    target: str | None = None
    source: str | None = None
    from_: str | None = None
    id: str | None = None
    sharing: str | None = None
    readonly: bool = True
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    required: bool = False
    env: str | None = None
    options: tuple[str, ...] = ()
    unexpanded: bool = False
    """True when some value still holds a ``$``: call ``expand`` first."""

    def expand(self, expander: Callable[[str], str]) -> RunMount:
        """Parse the spec again with every value passed through ``expander``
        (``lambda w: words.expand(w, env, escape=...)``); now fully checked."""
        return parse_mount(self.spec, expander)


MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_SHARING = ("shared", "private", "locked")
_BUILDAH_FLAG_OPTIONS = ("z", "Z", "U", "bind-nonrecursive", "tmpcopyup", "notmpcopyup")
_BUILDAH_VALUE_OPTIONS = ("relabel", "bind-propagation", "chown")
_MOUNT_KEYS = (
    "type",
    "target",
    "dst",
    "destination",
    "source",
    "src",
    "from",
    "id",
    "sharing",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "read-only",
    "read-write",
    "mode",
    "uid",
    "gid",
    "size",
    "tmpfs-size",
    "tmpfs-mode",
    "required",
    "env",
    *_BUILDAH_FLAG_OPTIONS,
    *_BUILDAH_VALUE_OPTIONS,
)


class MountSyntaxError(BuildError):
    """A ``--mount`` value is malformed (the parser adds the location)."""


def _mount_error(spec: str, what: str) -> MountSyntaxError:
    return MountSyntaxError(
        f"invalid --mount={spec}: {what}",
        "write --mount=type=bind|cache|tmpfs|secret|ssh,target=PATH[,KEY=VALUE...]",
    )


def _parse_bool(spec: str, key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise _mount_error(spec, f"{key}={value} is not a boolean")


def _parse_uint(spec: str, key: str, value: str, base: int) -> int:
    try:
        number = int(value, base)
    except ValueError:
        number = -1
    if number < 0 or number > 0xFFFFFFFF or not value.isascii() or "_" in value:
        kind = "an octal mode" if base == 8 else "a non-negative number"
        raise _mount_error(spec, f"{key}={value} is not {kind}")
    return number


def _split_csv(line: str) -> list[str]:
    """One CSV record as Go's encoding/csv reads it (strict quotes): a field
    may be double-quoted (``""`` inside is a quote); a quote anywhere else
    is an error."""
    fields: list[str] = []
    pos = 0
    n = len(line)
    while True:
        if pos < n and line[pos] == '"':
            pos += 1
            value: list[str] = []
            while True:
                end = line.find('"', pos)
                if end < 0:
                    raise ValueError("a quoted field is not closed")
                value.append(line[pos:end])
                pos = end + 1
                if pos < n and line[pos] == '"':
                    value.append('"')
                    pos += 1
                    continue
                break
            if pos < n and line[pos] != ",":
                raise ValueError('extraneous " in a quoted field')
            fields.append("".join(value))
        else:
            end = line.find(",", pos)
            end = n if end < 0 else end
            field_text = line[pos:end]
            if '"' in field_text:
                raise ValueError('bare " in a field; quote the whole field')
            fields.append(field_text)
            pos = end
        if pos >= n:
            return fields
        pos += 1  # the comma


def parse_mount(spec: str, expander: Callable[[str], str] | None = None) -> RunMount:
    """Parse one ``--mount`` value (comma-separated, CSV-quoted fields).

    Without ``expander`` (parse time) values containing ``$`` are kept raw
    and not checked; with it every value is expanded and checked.
    """
    if not spec:
        raise _mount_error(spec, "empty")
    try:
        fields = _split_csv(spec)
    except ValueError as exc:
        raise _mount_error(spec, f"not a comma-separated list ({exc})") from exc

    values: dict[str, str] = {}
    options: list[str] = []
    readonly: bool | None = None
    unexpanded = False
    for item in fields:
        key, has_value, value = item.partition("=")
        key_l = key.lower() if key not in ("Z", "U") else key
        if not has_value:
            if key_l in ("readonly", "ro", "read-only"):
                readonly = True
            elif key_l in ("readwrite", "rw", "read-write"):
                readonly = False
            elif key_l == "required":
                values["required"] = "true"
            elif key in _BUILDAH_FLAG_OPTIONS:
                options.append(key)
            else:
                raise _mount_error(spec, f"{item!r} must be a KEY=VALUE pair")
            continue
        if key_l not in _MOUNT_KEYS:
            raise _mount_error(
                spec, f"unknown key {key!r} (known: {', '.join(sorted(set(_MOUNT_KEYS)))})"
            )
        if expander is not None:
            value = expander(value)
        elif "$" in value:
            unexpanded = True
        canonical = {
            "dst": "target",
            "destination": "target",
            "src": "source",
            "tmpfs-size": "size",
            "tmpfs-mode": "mode",
        }.get(key_l, key_l)
        if canonical in ("readonly", "ro", "read-only", "readwrite", "rw", "read-write"):
            if "$" in value and expander is None:
                continue
            flag = _parse_bool(spec, key, value)
            readonly = flag if canonical in ("readonly", "ro", "read-only") else not flag
            continue
        if canonical in _BUILDAH_VALUE_OPTIONS or key in _BUILDAH_FLAG_OPTIONS:
            options.append(f"{key}={value}")
            continue
        values[canonical] = value

    def deferred(name: str) -> bool:
        return expander is None and "$" in values.get(name, "")

    mount_type = values.get("type", "bind").lower()
    if deferred("type"):
        return RunMount(spec=spec, unexpanded=True)
    if mount_type not in MOUNT_TYPES:
        raise _mount_error(
            spec, f"unsupported mount type {mount_type!r} (use {', '.join(MOUNT_TYPES)})"
        )

    sharing = values.get("sharing")
    if sharing is not None:
        if mount_type != "cache":
            raise _mount_error(spec, f"sharing= is only for cache mounts, not {mount_type}")
        if not deferred("sharing"):
            sharing = sharing.lower()
            if sharing not in _SHARING:
                raise _mount_error(spec, f"sharing={sharing} (use shared, private or locked)")

    def number(name: str, base: int) -> int | None:
        raw = values.get(name)
        if raw is None or deferred(name):
            return None
        return _parse_uint(spec, name, raw, base)

    mode = number("mode", 8)
    uid = number("uid", 10)
    gid = number("gid", 10)
    size: int | None = None
    if "size" in values:
        if mount_type != "tmpfs":
            raise _mount_error(spec, f"size= is only for tmpfs mounts, not {mount_type}")
        if not deferred("size"):
            try:
                size = parse_size(values["size"])
            except ValueError as exc:
                raise _mount_error(spec, str(exc)) from exc
    if mount_type in ("bind", "tmpfs"):
        for name in ("mode", "uid", "gid"):
            if name in values and not (name == "mode" and mount_type == "tmpfs"):
                raise _mount_error(spec, f"{name}= is not allowed for {mount_type} mounts")
    required = False
    if "required" in values:
        if mount_type not in ("secret", "ssh"):
            raise _mount_error(
                spec, f"required is only for secret and ssh mounts, not {mount_type}"
            )
        required = deferred("required") or _parse_bool(spec, "required", values["required"])
    if "env" in values and mount_type != "secret":
        raise _mount_error(spec, "env= is only for secret mounts")
    if mount_type == "secret":
        if "from" in values:
            raise _mount_error(spec, "a secret mount has no from=")
        if not any(k in values for k in ("source", "target", "id", "env")):
            raise _mount_error(spec, "a secret mount needs id=, source= or target=")
        if "source" in values and "id" in values:
            raise _mount_error(spec, "give either source= or id=, not both")
    if mount_type in ("bind", "cache", "tmpfs") and not values.get("target"):
        raise _mount_error(spec, f"a {mount_type} mount needs target=")
    if readonly is None:
        readonly = mount_type not in ("cache", "tmpfs")
    return RunMount(
        spec=spec,
        type=mount_type,
        target=values.get("target"),
        source=values.get("source"),
        from_=values.get("from"),
        id=values.get("id"),
        sharing=sharing,
        readonly=readonly,
        mode=mode,
        uid=uid,
        gid=gid,
        size=size,
        required=required,
        env=values.get("env"),
        options=tuple(options),
        unexpanded=unexpanded,
    )


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Docker's memory sizes: ``1024``, ``64k``, ``512m``, ``1.5g``,
    ``2GiB`` (binary units, case-insensitive). Raises ValueError."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(
            f"invalid size {text!r} (use a number with an optional k, m, g, t, p unit)"
        )
    exponent = " kmgtp".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * (1024**exponent))


@dataclass(kw_only=True)
class RunInstruction(Instruction):
    """``RUN [--mount=...] [--network=...] [--security=...] COMMAND``.

    ``command`` is a list for the exec (JSON) form and the raw text after the
    flags for the shell form, heredoc markers included; ``shell_script``
    turns a shell form with heredocs into what BuildKit runs.
    """

    keyword: str = "RUN"
    command: list[str] | str
    shell_form: bool
    mounts: list[RunMount] = field(default_factory=list)
    network: str | None = None
    security: str | None = None
    heredocs: list[Heredoc] = field(default_factory=list)

    def shell_script(self) -> tuple[str, list[InlineFile]]:
        """For the shell form: the string to append to SHELL, and the files
        that must exist while it runs.

        Without heredocs that is the command text. ``RUN <<EOF`` alone
        (one heredoc that is the whole command) writes the body to
        ``/dev/pipes/EOF`` (mode 0755) and runs that path through the
        shell, so a ``#!`` line picks the interpreter. Anything else
        (``RUN python3 <<EOF``, several heredocs) hands the shell the
        command followed by every body and its terminator, and the shell
        reads the heredocs itself.
        """
        if not isinstance(self.command, str):
            raise self.error("RUN in exec (JSON) form has no shell script")
        if not self.heredocs:
            return self.command, []
        if len(self.heredocs) == 1 and _is_lone_heredoc(self.command):
            doc = self.heredocs[0]
            path = "/dev/pipes/" + doc.name
            return path, [InlineFile(path=path, data=doc.body())]
        parts = [self.command]
        for doc in self.heredocs:
            parts.append("\n" + doc.content + doc.name)
        return "".join(parts), []


def _is_lone_heredoc(command: str) -> bool:
    return heredoc_marker(command) is not None


@dataclass(kw_only=True)
class CmdInstruction(Instruction):
    """``CMD ["exe", "arg"]`` (``args`` a list) or ``CMD text`` (``args`` the
    raw text; at dispatch it becomes SHELL + [text])."""

    keyword: str = "CMD"
    args: list[str] | str
    shell_form: bool


@dataclass(kw_only=True)
class EntrypointInstruction(Instruction):
    """As CmdInstruction, for ENTRYPOINT."""

    keyword: str = "ENTRYPOINT"
    args: list[str] | str
    shell_form: bool


@dataclass(kw_only=True)
class ShellInstruction(Instruction):
    """``SHELL ["exe", "arg"...]``: JSON form only."""

    keyword: str = "SHELL"
    args: list[str]


@dataclass(kw_only=True)
class HealthcheckInstruction(Instruction):
    """``HEALTHCHECK NONE`` or ``HEALTHCHECK [flags] CMD ...``.

    ``test`` is the image config's form: ``["NONE"]``, ``["CMD", exe,
    args...]`` or ``["CMD-SHELL", text]``. Durations are nanoseconds (None:
    not given, the runtime default applies); ``retries`` None: not given.
    """

    keyword: str = "HEALTHCHECK"
    disabled: bool
    test: list[str]
    interval: int | None = None
    timeout: int | None = None
    start_period: int | None = None
    start_interval: int | None = None
    retries: int | None = None


# --- files ------------------------------------------------------------------


@dataclass(kw_only=True)
class CopyInstruction(Instruction):
    """``COPY``/``ADD`` (``is_add``): ``sources`` and ``dest`` raw, each
    expanded as one word at dispatch. Heredoc sources (``COPY <<EOF /d``)
    are not in ``sources`` but in ``heredocs`` — in order, named by their
    delimiter, which is the file name when ``dest`` is a directory.

    COPY flags: --from, --chown, --chmod, --link, --parents, --exclude; ADD
    flags: --chown, --chmod, --link, --checksum, --keep-git-dir, --exclude.
    """

    keyword: str = "COPY"
    sources: list[str]
    dest: str
    is_add: bool = False
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: list[str] = field(default_factory=list)
    checksum: str | None = None
    keep_git_dir: bool | None = None
    heredocs: list[Heredoc] = field(default_factory=list)
    json_form: bool = False

    expands_variables: ClassVar[bool] = True


@dataclass(kw_only=True)
class VolumeInstruction(Instruction):
    keyword: str = "VOLUME"
    paths: list[str]
    json_form: bool = False

    expands_variables: ClassVar[bool] = True


@dataclass(kw_only=True)
class WorkdirInstruction(Instruction):
    keyword: str = "WORKDIR"
    path: str

    expands_variables: ClassVar[bool] = True


# --- image configuration ------------------------------------------------------


@dataclass(kw_only=True)
class EnvInstruction(Instruction):
    """``ENV a=b c="d e"`` or the legacy ``ENV a b c`` (one pair, the value
    is the rest of the line). Keys and values raw: expand both."""

    keyword: str = "ENV"
    pairs: list[tuple[str, str]]
    legacy_form: bool = False

    expands_variables: ClassVar[bool] = True


@dataclass(kw_only=True)
class LabelInstruction(Instruction):
    """As EnvInstruction, for LABEL."""

    keyword: str = "LABEL"
    pairs: list[tuple[str, str]]
    legacy_form: bool = False

    expands_variables: ClassVar[bool] = True


@dataclass(kw_only=True)
class ExposeInstruction(Instruction):
    """``EXPOSE 80 443/tcp 8000-8010/udp``: raw words; at dispatch split
    with ``words.split_words`` and check with ``expose_ports``."""

    keyword: str = "EXPOSE"
    ports: list[str]

    expands_variables: ClassVar[bool] = True


@dataclass(kw_only=True)
class UserInstruction(Instruction):
    keyword: str = "USER"
    user: str

    expands_variables: ClassVar[bool] = True


@dataclass(kw_only=True)
class StopSignalInstruction(Instruction):
    keyword: str = "STOPSIGNAL"
    signal: str

    expands_variables: ClassVar[bool] = True


@dataclass(kw_only=True)
class MaintainerInstruction(Instruction):
    """Deprecated: sets the image's author. Accepted, with a warning."""

    keyword: str = "MAINTAINER"
    maintainer: str


@dataclass(kw_only=True)
class OnbuildInstruction(Instruction):
    """``ONBUILD INSTRUCTION``: ``inner`` is the parsed trigger (checked now);
    ``text`` is what goes into the image's OnBuild list — the trigger as
    written, with any heredoc bodies appended so it parses back whole."""

    keyword: str = "ONBUILD"
    inner: Instruction
    text: str


# --- values checked at dispatch ------------------------------------------------


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_duration(text: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``1.5h``, ``250ms``) in
    nanoseconds, as HEALTHCHECK flags take them. Raises ValueError."""
    rest = text
    sign = 1
    if rest[:1] in ("+", "-"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(rest):
        match = _DURATION_PART.match(rest, pos)
        if not match:
            raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 1m30s, 500ms)")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * round(total)


_PORT = re.compile(r"^(\d+)(?:-(\d+))?(?:/([A-Za-z]*))?$")


def expose_ports(words: list[str]) -> list[str]:
    """Check expanded EXPOSE words and return Docker's ExposedPorts keys:
    ``80`` → ``80/tcp``, protocols lower-cased (tcp, udp, sctp), a range
    ``8000-8002/udp`` → one key per port, as Docker does (buildah 1.28
    keeps the range as one key and checks nothing). Raises ValueError
    naming the bad word."""
    out: list[str] = []
    for word in words:
        match = _PORT.match(word)
        if not match:
            raise ValueError(f"invalid port {word!r} (use PORT[-PORT][/tcp|udp|sctp])")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        proto = (match.group(3) or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"invalid protocol in port {word!r} (use tcp, udp or sctp)")
        if first > 65535 or last > 65535 or last < first:
            raise ValueError(f"invalid port range in {word!r} (ports are 0-65535, low-high)")
        for port in range(first, last + 1):
            key = f"{port}/{proto}"
            if key not in out:
                out.append(key)
    return out
