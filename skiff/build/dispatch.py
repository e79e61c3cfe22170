"""One function per Containerfile instruction: what it does to a stage.

Every instruction is first *prepared*: its arguments are expanded with the
ARG and ENV values of that moment, checked, and described — the text its
cache key hashes (``Step.key``), the history entry its commit writes
(``Step.created_by``), and the content it reads (``Step.content``: the
files a COPY copies, another stage's image). Nothing has changed yet, so
the executor can look the step up in the layer cache and skip it. A
prepared Step then does one of two things when it is not cached:

- ``edit(builder)``: change the image config (ENV, LABEL, CMD, ...) — no
  working container is needed, the commit writes no layer;
- ``act(runtime, builder)``: change files in a working container (RUN,
  COPY, ADD; ``skiff.build.runstep``, ``skiff.build.copystep``).

and ``after(state)`` updates what the stage carries from one instruction to
the next (ARG values, SHELL, ONBUILD triggers, whether CMD was set), whether
the step ran or came from the cache. ARG commits nothing (as in buildah);
FROM is ``skiff.build.basestep``.

Docker-only settings (Shell, Healthcheck, OnBuild) are tracked in the
stage's state as well as in the config: an OCI commit drops them from the
intermediate image, but later steps of the same build still use them (a
RUN after SHELL runs with that shell), as buildah does.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import signal
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from skiff.build import words
from skiff.build.instructions import (
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    HealthcheckInstruction,
    Instruction,
    LabelInstruction,
    MaintainerInstruction,
    OnbuildInstruction,
    RunInstruction,
    ShellInstruction,
    StopSignalInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
    expose_ports,
)
from skiff.errors import BuildError, SkiffError

if TYPE_CHECKING:
    from skiff.build.builder import Builder, PullPolicy
    from skiff.build.context import BuildContext
    from skiff.build.parser import Containerfile
    from skiff.config import SystemContext
    from skiff.libimage.pull import PullOptions
    from skiff.runtime.engine import Runtime
    from skiff.storage.store import Store

__all__ = [
    "DEFAULT_SHELL",
    "DOCKER_ONLY_KEYS",
    "PROXY_ARGS",
    "BuildScope",
    "StageState",
    "Step",
    "StepFailed",
    "located",
    "mount_image_root",
    "prepare",
]

DEFAULT_SHELL = ["/bin/sh", "-c"]
DOCKER_ONLY_KEYS = ("Shell", "Healthcheck", "OnBuild")
"""Config keys only the Docker format stores, tracked per stage (see above)."""
PROXY_ARGS = frozenset(
    {
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    }
)
"""Predefined build arguments: passed to every RUN without an ARG line, kept
out of cache keys and history unless declared (Docker's rule)."""

Stream = IO[Any] | int | None


class StepFailed(BuildError):
    """A RUN command exited non-zero; the build exits with its status (buildah's)."""

    def __init__(self, message: str, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


def located(instruction: Instruction, exc: SkiffError) -> BuildError:
    """``exc`` as a BuildError naming the instruction's file and line (kept
    as it is when it already does), with the original's exit code."""
    prefix = f"{instruction.location()}:"
    if isinstance(exc, BuildError) and exc.message.startswith(prefix):
        return exc
    error = BuildError(f"{prefix} {exc.message}", exc.hint)
    error.exit_code = exc.exit_code
    return error


# --- what a build shares, what a stage carries ------------------------------------------


@dataclass
class BuildScope:
    """What every step of one build needs (shared by its stages)."""

    ctx: SystemContext
    store: Store
    containerfile: Containerfile
    context: BuildContext
    runtime: Callable[[], Runtime]
    """The runtime handle, made on first use (a fully cached build needs none)."""
    build_args: dict[str, str] = field(default_factory=dict)
    global_env: dict[str, str] = field(default_factory=dict)
    """Global ARG values and the predefined platform arguments (FROM's view)."""
    pull: PullPolicy | None = None
    pull_options: PullOptions | None = None
    network: str = "private"
    volumes: list[str] = field(default_factory=list)
    stdout: Stream = None
    stderr: Stream = None
    warn: Callable[[str], None] = lambda text: None
    stage_images: dict[int, str] = field(default_factory=dict)
    """Image IDs of the stages built so far (for FROM, --from and mounts)."""
    stage_docker_only: dict[int, dict[str, Any]] = field(default_factory=dict)
    """The SHELL/HEALTHCHECK a finished stage had (a stage built FROM it keeps them)."""
    consumed: set[str] = field(default_factory=set)
    """Build arguments some ARG line used."""
    resolved: dict[str, Any] = field(default_factory=dict)
    """Image names resolved (and pulled) so far: each once per build."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    pull_lock: threading.Lock = field(default_factory=threading.Lock)

    def expand(self, text: str, env: Mapping[str, str]) -> str:
        return words.expand(text, env, escape=self.containerfile.escape)

    def expand_words(self, items: list[str], env: Mapping[str, str]) -> list[str]:
        return words.expand_words(items, env, escape=self.containerfile.escape)


@dataclass
class StageState:
    """A stage between two instructions: its current image and what it carries."""

    index: int
    image_id: str
    """The image the next step starts from ("" for scratch before any commit)."""
    config: dict[str, Any]
    """That image's config as a working container holds it (``Builder.config``)."""
    base_name: str = ""
    """The stage's base image as FROM resolved it ("" for scratch)."""
    base_digest: str = ""
    args: dict[str, str] = field(default_factory=dict)
    """ARG values declared in this stage so far."""
    cmd_set: bool = False
    """Whether this stage set CMD (ENTRYPOINT then keeps it)."""
    docker_only: dict[str, Any] = field(default_factory=dict)

    @property
    def inner(self) -> dict[str, Any]:
        value = self.config.get("config")
        if not isinstance(value, dict):
            value = {}
            self.config["config"] = value
        return value

    def image_env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for entry in self.inner.get("Env") or []:
            key, _, value = str(entry).partition("=")
            out[key] = value
        return out

    def expansion_env(self) -> dict[str, str]:
        """What ``$NAME`` means now: ARG values, ENV winning (Docker's rule)."""
        return {**self.args, **self.image_env()}

    def shell(self) -> list[str]:
        shell = self.docker_only.get("Shell")
        return list(shell) if shell else list(DEFAULT_SHELL)

    def adopt(self, image_id: str, config: dict[str, Any]) -> None:
        """Move on to ``image_id`` (committed or cached), keeping the Docker-only
        settings an OCI commit dropped."""
        self.image_id = image_id
        self.config = config
        inner = self.inner
        for key in DOCKER_ONLY_KEYS:
            value = self.docker_only.get(key)
            if value:
                inner[key] = value
            else:
                inner.pop(key, None)


@dataclass
class Step:
    """A prepared instruction (see the module docstring)."""

    instruction: Instruction
    key: str
    """The instruction expanded, canonical: what its cache key hashes."""
    created_by: str
    """The history entry's ``created_by``."""
    content: str = ""
    commits: bool = True
    edit: Callable[[Builder], None] | None = None
    act: Callable[[Runtime, Builder], None] | None = None
    after: Callable[[StageState], None] | None = None
    args: dict[str, str] = field(default_factory=dict)
    """Build arguments the key includes (RUN's environment)."""

    @property
    def filesystem(self) -> bool:
        return self.act is not None


def mount_image_root(scope: BuildScope, image_id: str, stack: contextlib.ExitStack) -> Path:
    """The root file system of a store image, mounted until ``stack`` closes
    (an empty directory for an image without layers)."""
    image = scope.store.images.get(image_id)
    if image.top_layer is None:
        empty = Path(tempfile.mkdtemp(prefix="skiff-empty-", dir=scope.ctx.tmp_dir))
        stack.callback(os.rmdir, empty)
        return empty
    path = scope.store.mount_image(image_id)
    stack.callback(scope.store.unmount_image, image_id)
    return Path(path)


def nop(text: str) -> str:
    """buildah's ``created_by`` for a step that changed only the config."""
    return f"/bin/sh -c #(nop) {text}"


# --- the table ------------------------------------------------------------------------------


def prepare(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    """Prepare ``instruction`` for ``state``; errors name its file and line."""
    handler = _HANDLERS.get(type(instruction))
    if handler is None:
        raise instruction.error(f"{instruction.keyword} cannot be used here")
    try:
        return handler(scope, state, instruction)
    except SkiffError as exc:
        raise located(instruction, exc) from exc


def _run(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    from skiff.build.runstep import prepare_run

    assert isinstance(instruction, RunInstruction)
    return prepare_run(scope, state, instruction)


def _copy(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    from skiff.build.copystep import prepare_copy

    assert isinstance(instruction, CopyInstruction)
    return prepare_copy(scope, state, instruction)


# --- ARG -------------------------------------------------------------------------------------


def _arg(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, ArgInstruction)
    env = state.expansion_env()
    image_env = state.image_env()
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, default in instruction.items:
        if name in scope.build_args:
            value: str | None = scope.build_args[name]
            with scope.lock:
                scope.consumed.add(name)
        elif default is not None:
            value = scope.expand(default, env)
        else:
            value = scope.global_env.get(name)
        if value is None:
            missing.append(name)
            continue
        values[name] = value
        if name not in image_env:  # ENV wins over ARG
            env[name] = value
    for name in missing:
        scope.warn(
            f'{instruction.location()}: missing "{name}" build argument. '
            f'Try adding "--build-arg {name}=<VALUE>" to the command line'
        )

    def after(s: StageState) -> None:
        s.args.update(values)

    return Step(instruction, "", "", commits=False, after=after)


def global_arg_values(
    items: list[ArgInstruction],
    build_args: Mapping[str, str],
    predefined: Mapping[str, str],
    *,
    escape: str,
    consumed: set[str],
    warn: Callable[[str], None],
) -> dict[str, str]:
    """The values of the ARGs before the first FROM (build arguments win over
    defaults), on top of the predefined platform arguments."""
    env = dict(predefined)
    for instruction in items:
        for name, default in instruction.items:
            if name in build_args:
                env[name] = build_args[name]
                consumed.add(name)
            elif default is not None:
                try:
                    env[name] = words.expand(default, env, escape=escape)
                except SkiffError as exc:
                    raise located(instruction, exc) from exc
            elif name not in env:
                warn(
                    f'{instruction.location()}: missing "{name}" build argument. '
                    f'Try adding "--build-arg {name}=<VALUE>" to the command line'
                )
    return env


# --- configuration instructions --------------------------------------------------------------


ConfigEdit = Callable[[dict[str, Any], "Builder"], None]
"""A change to the working container's config (its inner, Docker-style part)."""


def _config_step(
    instruction: Instruction,
    key: str,
    edit: ConfigEdit,
    after: Callable[[StageState], None] | None = None,
) -> Step:
    def apply(builder: Builder) -> None:
        edit(builder.container_config, builder)

    return Step(instruction, key, nop(instruction.original), edit=apply, after=after)


def _set_field(name: str, value: object) -> ConfigEdit:
    """The edit of an instruction that sets one config field (USER, WORKDIR, ...)."""

    def edit(inner: dict[str, Any], builder: Builder) -> None:
        inner[name] = value

    return edit


def _merge_into(name: str, entries: Mapping[str, Any]) -> ConfigEdit:
    """The edit of an instruction that adds entries to one map of the config
    (LABEL, EXPOSE, VOLUME): what the base image set stays, a key set again
    takes the new value."""

    def edit(inner: dict[str, Any], builder: Builder) -> None:
        merged = dict(inner.get(name) or {})
        merged.update(entries)
        inner[name] = merged

    return edit


def _env(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, EnvInstruction)
    env = state.expansion_env()
    pairs = [(scope.expand(k, env), scope.expand(v, env)) for k, v in instruction.pairs]
    for key, _ in pairs:
        if not key or "=" in key:
            raise instruction.error(f"invalid environment variable name {key!r}")

    def edit(inner: dict[str, Any], builder: Builder) -> None:
        current = [str(e) for e in inner.get("Env") or []]
        for key, value in pairs:
            # buildah's SetEnv: a variable set again moves to the end
            current = [e for e in current if e.partition("=")[0] != key]
            current.append(f"{key}={value}")
        inner["Env"] = current

    return _config_step(instruction, "ENV " + _json(pairs), edit)


def _label(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, LabelInstruction)
    env = state.expansion_env()
    pairs = [(scope.expand(k, env), scope.expand(v, env)) for k, v in instruction.pairs]
    for key, _ in pairs:
        if not key:
            raise instruction.error("LABEL needs a non-empty key", 'write LABEL key="value"')

    return _config_step(instruction, "LABEL " + _json(pairs), _merge_into("Labels", dict(pairs)))


def _expose(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, ExposeInstruction)
    env = state.expansion_env()
    escape = scope.containerfile.escape
    found = [w for raw in instruction.ports for w in words.split_words(raw, env, escape)]
    try:
        ports = expose_ports(found)
    except ValueError as exc:
        raise instruction.error(str(exc), "write EXPOSE PORT[/tcp|udp|sctp]") from None
    edit = _merge_into("ExposedPorts", {port: {} for port in ports})
    return _config_step(instruction, "EXPOSE " + _json(ports), edit)


def _user(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, UserInstruction)
    user = scope.expand(instruction.user, state.expansion_env()).strip()
    if not user:
        raise instruction.error("USER needs a user name or ID", "write USER NAME[:GROUP]")

    return _config_step(instruction, "USER " + _json(user), _set_field("User", user))


def _workdir(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, WorkdirInstruction)
    path = scope.expand(instruction.path, state.expansion_env()).strip()
    if not path:
        raise instruction.error("WORKDIR needs a path", "write WORKDIR /path")
    current = str(state.inner.get("WorkingDir") or "/")
    workdir = posixpath.normpath(posixpath.join(current, path))
    if workdir.startswith("//"):
        workdir = workdir[1:]

    edit = _set_field("WorkingDir", workdir)
    return _config_step(instruction, "WORKDIR " + _json(workdir), edit)


def _volume(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, VolumeInstruction)
    paths = [p for p in scope.expand_words(instruction.paths, state.expansion_env()) if p]
    if not paths:
        raise instruction.error("VOLUME needs at least one path", "write VOLUME /path")

    edit = _merge_into("Volumes", {path: {} for path in paths})
    return _config_step(instruction, "VOLUME " + _json(paths), edit)


def _entrypoint(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, EntrypointInstruction)
    args = _command(state, instruction.args)
    cmd_set = state.cmd_set

    def edit(inner: dict[str, Any], builder: Builder) -> None:
        if args:
            inner["Entrypoint"] = args
        else:
            inner.pop("Entrypoint", None)
        if not cmd_set:
            inner.pop("Cmd", None)  # an inherited CMD does not outlive a new ENTRYPOINT

    return _config_step(instruction, f"ENTRYPOINT {_json(args)} {cmd_set}", edit)


def _cmd(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, CmdInstruction)
    args = _command(state, instruction.args)

    def edit(inner: dict[str, Any], builder: Builder) -> None:
        if args:
            inner["Cmd"] = args
        else:
            inner.pop("Cmd", None)

    def after(s: StageState) -> None:
        s.cmd_set = True

    return _config_step(instruction, "CMD " + _json(args), edit, after)


def _command(state: StageState, args: list[str] | str) -> list[str]:
    """Exec form as written; shell form becomes SHELL + [text]."""
    if isinstance(args, str):
        return [*state.shell(), args]
    return list(args)


def _shell(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, ShellInstruction)
    shell = list(instruction.args)
    if not shell:
        raise instruction.error("SHELL needs a command", 'write SHELL ["/bin/sh", "-c"]')

    def after(s: StageState) -> None:
        s.docker_only["Shell"] = shell

    return _config_step(instruction, "SHELL " + _json(shell), _set_field("Shell", shell), after)


def _stopsignal(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, StopSignalInstruction)
    value = scope.expand(instruction.signal, state.expansion_env()).strip()
    if not _valid_signal(value):
        raise instruction.error(
            f"invalid STOPSIGNAL {value!r}", "use a signal name such as SIGTERM, or its number"
        )

    edit = _set_field("StopSignal", value)
    return _config_step(instruction, "STOPSIGNAL " + _json(value), edit)


def _valid_signal(text: str) -> bool:
    if text.isdecimal():
        return 1 <= int(text) <= int(signal.SIGRTMAX)
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if name.startswith(("SIGRTMIN", "SIGRTMAX")):
        rest = name[8:]
        return not rest or (rest[0] in "+-" and rest[1:].isdecimal())
    return name in signal.Signals.__members__


def _healthcheck(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, HealthcheckInstruction)
    check: dict[str, Any] = {"Test": ["NONE"] if instruction.disabled else list(instruction.test)}
    if not instruction.disabled:
        for key, value in (
            ("Interval", instruction.interval),
            ("Timeout", instruction.timeout),
            ("StartPeriod", instruction.start_period),
            ("StartInterval", instruction.start_interval),
            ("Retries", instruction.retries),
        ):
            if value:
                check[key] = value

    def after(s: StageState) -> None:
        s.docker_only["Healthcheck"] = check

    edit = _set_field("Healthcheck", check)
    return _config_step(instruction, "HEALTHCHECK " + _json(check), edit, after)


def _onbuild(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, OnbuildInstruction)
    trigger = instruction.text
    triggers = [*(state.docker_only.get("OnBuild") or []), trigger]

    def edit(inner: dict[str, Any], builder: Builder) -> None:
        inner["OnBuild"] = list(triggers)

    def after(s: StageState) -> None:
        s.docker_only["OnBuild"] = list(triggers)

    return _config_step(instruction, "ONBUILD " + _json(triggers), edit, after)


def _maintainer(scope: BuildScope, state: StageState, instruction: Instruction) -> Step:
    assert isinstance(instruction, MaintainerInstruction)
    author = instruction.maintainer

    def edit(inner: dict[str, Any], builder: Builder) -> None:
        builder.config["author"] = author

    return _config_step(instruction, "MAINTAINER " + _json(author), edit)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, ensure_ascii=False)


Handler = Callable[[BuildScope, StageState, Instruction], Step]
_HANDLERS: dict[type[Instruction], Handler] = {
    ArgInstruction: _arg,
    CmdInstruction: _cmd,
    CopyInstruction: _copy,
    EntrypointInstruction: _entrypoint,
    EnvInstruction: _env,
    ExposeInstruction: _expose,
    HealthcheckInstruction: _healthcheck,
    LabelInstruction: _label,
    MaintainerInstruction: _maintainer,
    OnbuildInstruction: _onbuild,
    RunInstruction: _run,
    ShellInstruction: _shell,
    StopSignalInstruction: _stopsignal,
    UserInstruction: _user,
    VolumeInstruction: _volume,
    WorkdirInstruction: _workdir,
}
