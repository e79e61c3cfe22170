"""FROM: where a stage starts — scratch, an earlier stage, or an image.

The image is expanded with the global ARGs (and the predefined platform
arguments), then:

- ``scratch``: nothing (the first commit makes an image without layers, or
  with the first RUN's or COPY's layer);
- the name of an earlier stage (case-insensitive): that stage's image, with
  the Docker-only settings (SHELL, HEALTHCHECK) it had;
- anything else: an image, looked up in the store as podman looks names up
  and pulled as ``--pull`` says — ``missing`` (the default: only when the
  store has none), ``always``, ``never``, ``newer`` (pull, but fall back to
  the local image when that fails). A transport reference
  (``oci:DIR:TAG``, ``docker://…``) is always copied in. Pulls go through
  ``skiff.libimage.pull`` and so through the trust policy. One build
  resolves each name once, even when several stages use it.

``--platform`` (on FROM or the command line) is accepted when it names the
host's platform; skiff runs no emulated builds, so any other is an error.

An image's ONBUILD triggers are returned to the executor, which runs them
right after FROM as if they were written there; the stage's image then no
longer carries them (Docker's rule).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skiff.build.dispatch import DOCKER_ONLY_KEYS, BuildScope, StageState, located
from skiff.errors import BuildError, ImageUnknown, SkiffError, UsageError

if TYPE_CHECKING:
    from skiff.build.instructions import Instruction
    from skiff.build.parser import Stage

log = logging.getLogger(__name__)

__all__ = ["ResolvedImage", "check_platform", "resolve_image", "start_stage"]

SCRATCH = "scratch"


@dataclass(frozen=True)
class ResolvedImage:
    image_id: str
    name: str
    """The name it was found or pulled under ("" for an unnamed image)."""
    digest: str
    """Its manifest digest ("" if the store has none)."""


def start_stage(scope: BuildScope, stage: Stage) -> tuple[StageState, list[Instruction]]:
    """The state a stage starts in, and the ONBUILD triggers of its base."""
    from skiff.build.stages import find_stage

    instruction = stage.from_
    try:
        text = scope.expand(instruction.image, scope.global_env).strip()
        if instruction.platform:
            check_platform(scope.expand(instruction.platform, scope.global_env))
    except SkiffError as exc:
        raise located(instruction, exc) from exc
    if not text:
        raise instruction.error(
            f"FROM {instruction.image} names no image (it expands to nothing)",
            "give the base image, or the --build-arg that names it",
        )
    if text.lower() == SCRATCH:
        return StageState(index=stage.index, image_id="", config=_scratch_config()), []
    used = find_stage(scope.containerfile, text, before=stage.index)
    if used is not None and not text.isdecimal():
        image_id = scope.stage_images[used]
        image = scope.store.images.get(image_id)
        config = _image_config(image)
        config.setdefault("config", {}).pop("OnBuild", None)
        docker_only = copy.deepcopy(scope.stage_docker_only.get(used, {}))
        stage_triggers = docker_only.pop("OnBuild", None) or []
        state = StageState(
            index=stage.index,
            image_id=image_id,
            config=config,
            base_name=image_id,
            base_digest=str(image.digest or ""),
            docker_only=docker_only,
        )
        return state, _parse_triggers(scope, stage, stage_triggers, f"stage {text}")
    try:
        resolved = resolve_image(scope, text)
    except SkiffError as exc:
        raise located(instruction, exc) from exc
    image = scope.store.images.get(resolved.image_id)
    config = _image_config(image)
    inner = config.setdefault("config", {})
    docker_only = {key: copy.deepcopy(inner[key]) for key in DOCKER_ONLY_KEYS if inner.get(key)}
    raw_triggers = docker_only.pop("OnBuild", None) or []
    inner.pop("OnBuild", None)
    state = StageState(
        index=stage.index,
        image_id=resolved.image_id,
        config=config,
        base_name=resolved.name,
        base_digest=resolved.digest,
        docker_only=docker_only,
    )
    return state, _parse_triggers(scope, stage, raw_triggers, text)


def _parse_triggers(
    scope: BuildScope, stage: Stage, triggers: list[Any], image: str
) -> list[Instruction]:
    from skiff.build.parser import parse_instruction

    out = []
    for trigger in triggers:
        try:
            out.append(
                parse_instruction(
                    str(trigger),
                    escape=scope.containerfile.escape,
                    path=scope.containerfile.path,
                    line=stage.from_.line,
                )
            )
        except BuildError as exc:
            raise BuildError(
                f"{exc.message} (an ONBUILD trigger of {image})",
                "the base image's ONBUILD instruction is malformed; rebuild it",
            ) from exc
    return out


def check_platform(text: str) -> None:
    """Refuse a platform other than the host's (no emulated builds)."""
    from skiff.oci.platform import Platform, host_platform

    if not text:
        return
    wanted = Platform.parse(text)
    host = host_platform()
    if (wanted.os, wanted.architecture) != (host.os, host.architecture) or (
        wanted.variant and host.variant and wanted.variant != host.variant
    ):
        raise UsageError(
            f"cannot build for platform {text}: skiff builds for the host's platform only ({host})",
            f"drop --platform, or use --platform {host}",
        )


def resolve_image(scope: BuildScope, text: str) -> ResolvedImage:
    """The store image ``text`` names, pulled as the build's ``--pull`` says."""
    with scope.pull_lock:
        found = scope.resolved.get(text)
        if found is None:
            found = _resolve(scope, text)
            scope.resolved[text] = found
        return found


def _resolve(scope: BuildScope, text: str) -> ResolvedImage:
    from skiff.build.builder import PullPolicy
    from skiff.libimage.names import find_local_image, transport_of

    store = scope.store
    policy = scope.pull or PullPolicy.MISSING
    is_transport = transport_of(text) is not None
    local = None
    matched = ""
    if not is_transport:
        try:
            local, named = find_local_image(scope.ctx, store, text)
            matched = str(named) if named is not None else ""
        except ImageUnknown:
            local = None
    if is_transport:
        if policy == PullPolicy.NEVER:
            raise UsageError(
                f"{text}: a transport reference is always copied into the store",
                "drop --pull=never, or give the name of a local image",
            )
        policy = PullPolicy.ALWAYS
    if local is not None and policy in (PullPolicy.MISSING, PullPolicy.NEVER):
        return _described(local.id, matched or (local.names[0] if local.names else ""), store)
    if local is None and policy == PullPolicy.NEVER:
        raise ImageUnknown(f"{text}: image not known", "pull it first, or drop --pull=never")
    from skiff.libimage.pull import PullOptions, pull_image

    try:
        report = pull_image(scope.ctx, text, scope.pull_options or PullOptions())
    except SkiffError:
        if local is not None and policy == PullPolicy.NEWER:
            log.warning("pulling %s failed; using the local image", text)
            return _described(local.id, matched or (local.names[0] if local.names else ""), store)
        raise
    pulled = report.images[0]
    return _described(pulled.image_id, pulled.name or "", store)


def _described(image_id: str, name: str, store: Any) -> ResolvedImage:
    image = store.images.get(image_id)
    return ResolvedImage(
        image_id, name or (image.names[0] if image.names else ""), str(image.digest or "")
    )


def _image_config(image: Any) -> dict[str, Any]:
    # what a working container on the image starts from (the builder library's rule)
    from skiff.build.builder import _base_config

    return _base_config(image)


def _scratch_config() -> dict[str, Any]:
    from skiff.build.builder import _scratch_config as scratch

    return scratch()


def image_config(store: Any, image_id: str) -> dict[str, Any]:
    """The builder-form config of a store image (after a commit or a cache hit)."""
    return _image_config(store.images.get(image_id))
