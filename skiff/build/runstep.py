"""RUN: a command in a working container on the stage's current image.

The command is the exec form as written, or the stage's SHELL (default
``/bin/sh -c``) followed by the shell form's text; a lone heredoc
(``RUN <<EOF``) is written to ``/dev/pipes/NAME`` and run through the
shell, other heredocs are handed to the shell with the command (see
``RunInstruction.shell_script``). It runs through the working-container
library (``skiff.build.run.run_in_builder``) as the image's User, in its
WorkingDir (created when missing, owned by that user, as buildah does),
with the image's Env plus the build arguments in effect (ENV wins over an
ARG of the same name) and the predefined proxy arguments given with
``--build-arg``.

``--mount`` values are expanded and checked now, then converted to the
library's mounts: ``type=bind`` from the build context, an earlier stage
(``from=NAME``: its image is mounted for the run) or an image;
``type=cache`` (a directory kept in the store, keyed by ``id``, default the
target; ``from=`` is not supported for caches and is an error); ``type=tmpfs``.
``type=secret`` and ``type=ssh`` are errors: skiff has no secrets store.
buildah's own options (``z``, ``Z``, ``U``, ``relabel=``, ...) are accepted
and have no effect (no SELinux, no user namespaces here).

``--network=default|none|host``: ``default`` is the build's ``--network``.
``--security=insecure`` is refused (no privileged build steps).

The step's cache key holds the command, the expanded mounts and network,
the build arguments in effect, and what bind mounts show: the digest of a
context path, or the ID of a stage's or an image's image. The content of a
cache mount is not part of it (Docker's rule: caches only speed steps up).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiff.build.dispatch import (
    PROXY_ARGS,
    BuildScope,
    StageState,
    Step,
    StepFailed,
    mount_image_root,
)
from skiff.build.instructions import InlineFile, RunInstruction, RunMount

if TYPE_CHECKING:
    from skiff.build.builder import Builder
    from skiff.runtime.engine import Runtime

__all__ = ["prepare_run"]

_NETWORKS = ("default", "none", "host")


def prepare_run(scope: BuildScope, state: StageState, instruction: RunInstruction) -> Step:
    from skiff.build.stages import find_stage

    env = state.expansion_env()
    image_env = state.image_env()
    mounts: list[RunMount] = []
    content: list[str] = []
    stage_sources: dict[str, str] = {}
    for raw in instruction.mounts:
        mount = raw.expand(lambda word: scope.expand(word, env))
        if mount.type in ("secret", "ssh"):
            raise instruction.error(
                f"RUN --mount=type={mount.type} is not supported",
                "skiff has no build secrets or SSH agent forwarding; use a bind or cache mount",
            )
        if mount.type == "cache" and mount.from_:
            raise instruction.error(
                "RUN --mount=type=cache,from=... is not supported",
                "drop from=: a cache starts empty and is kept by skiff",
            )
        if mount.type == "bind":
            if mount.from_:
                used = find_stage(scope.containerfile, mount.from_)
                if used is not None:
                    image_id = scope.stage_images[used]
                    stage_sources[mount.from_] = image_id
                    content.append(f"{mount.target}=stage:{image_id}:{mount.source or '/'}")
                else:
                    from skiff.build.basestep import resolve_image

                    image_id = resolve_image(scope, mount.from_).image_id
                    stage_sources[mount.from_] = image_id
                    content.append(f"{mount.target}=image:{image_id}:{mount.source or '/'}")
            else:
                digest = scope.context.digest_path(mount.source or ".")
                content.append(f"{mount.target}=context:{digest}")
        mounts.append(mount)

    inline: list[InlineFile] = []
    if instruction.shell_form:
        script, inline = instruction.shell_script()
        shell = state.shell()
        command = [*shell, script]
        shown = " ".join(shell) + " " + script
    else:
        assert isinstance(instruction.command, list)
        command = list(instruction.command)
        shown = " ".join(command)
    network = instruction.network or "default"
    if network not in _NETWORKS:
        raise instruction.error(f"invalid RUN --network={network}", "use default, none or host")
    if instruction.security not in (None, "sandbox"):
        raise instruction.error(
            f"RUN --security={instruction.security} is not supported",
            "skiff runs build steps sandboxed only",
        )
    run_network = scope.network if network == "default" else network

    declared = {k: v for k, v in state.args.items() if k not in image_env}
    run_env = dict(declared)
    for name in PROXY_ARGS:
        if name in scope.build_args and name not in image_env and name not in run_env:
            run_env[name] = scope.build_args[name]
    history_args = dict(declared)
    created_by = shown
    if history_args:
        pairs = " ".join(f"{k}={v}" for k, v in sorted(history_args.items()))
        created_by = f"|{len(history_args)} {pairs} {shown}"
    key = "RUN " + json.dumps(
        {
            "command": command,
            "mounts": [m.spec for m in instruction.mounts],
            "expanded": [_describe(m) for m in mounts],
            "network": network,
            "inline": [[f.path, f.data, f.mode] for f in inline],
        },
        sort_keys=True,
    )

    def act(rt: Runtime, builder: Builder) -> None:
        _execute(
            scope,
            rt,
            builder,
            instruction,
            command=command,
            env=run_env,
            mounts=mounts,
            stage_sources=stage_sources,
            inline=inline,
            network=run_network,
        )

    return Step(
        instruction,
        key,
        created_by,
        content="\n".join(content),
        act=act,
        args=declared,
    )


def _describe(mount: RunMount) -> list[Any]:
    return [
        mount.type,
        mount.target,
        mount.source,
        mount.from_,
        mount.id,
        mount.sharing,
        mount.readonly,
        mount.mode,
        mount.uid,
        mount.gid,
        mount.size,
    ]


def _execute(
    scope: BuildScope,
    rt: Runtime,
    builder: Builder,
    instruction: RunInstruction,
    *,
    command: list[str],
    env: dict[str, str],
    mounts: list[RunMount],
    stage_sources: dict[str, str],
    inline: list[InlineFile],
    network: str,
) -> None:
    from skiff.build import run as runlib

    with contextlib.ExitStack() as stack:
        sources: dict[str, Path] = {}
        for name, image_id in stage_sources.items():
            sources[name] = mount_image_root(scope, image_id, stack)
        volumes = list(scope.volumes)
        if inline:
            directory = Path(tempfile.mkdtemp(prefix="skiff-heredoc-", dir=scope.ctx.tmp_dir))
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
            for number, item in enumerate(inline):
                host = directory / str(number)
                host.write_text(item.data)
                host.chmod(item.mode)
                volumes.append(f"{host}:{item.path}:ro")
        workdir = str(builder.container_config.get("WorkingDir") or "") or None
        options = runlib.RunOptions(
            command=command,
            env=[f"{k}={v}" for k, v in env.items()],
            workdir=workdir,
            volumes=volumes,
            mounts=[_convert(m) for m in mounts],
            network=network,
            context_dir=scope.context.root,
            sources=sources,
            stdin=subprocess.DEVNULL,
            stdout=scope.stdout,
            stderr=scope.stderr,
        )
        report = runlib.run_in_builder(rt, builder, options)
    if report.exit_code != 0:
        raise StepFailed(
            f'{instruction.location()}: building at STEP "{instruction.original}": '
            f"while running runtime: exit status {report.exit_code}",
            report.exit_code,
            "the command failed; its output is above",
        )


def _convert(mount: RunMount) -> Any:
    """The parser's mount as the working-container library takes it
    (``readonly`` → ``read_only``, absent values as its defaults)."""
    from skiff.build.run import RunMount as LibraryMount

    assert mount.target is not None
    return LibraryMount(
        type=mount.type,
        target=mount.target,
        source=mount.source or "",
        from_=mount.from_ or "",
        id=mount.id or "",
        sharing=mount.sharing or "shared",
        read_only=mount.readonly,
        mode=mount.mode,
        uid=mount.uid,
        gid=mount.gid,
        size=mount.size,
    )
