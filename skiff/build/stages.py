"""The stage graph of a Containerfile: which stages a build needs, in what order.

A stage depends on another when its ``FROM`` names an earlier stage, or when
a ``COPY --from=X``/``ADD --from=X`` or a ``RUN --mount=...,from=X`` names a
stage — by its name (case-insensitive) or its index, earlier or later in
the file, as BuildKit allows. Anything else those flags name is an image.

``plan`` keeps only what the target stage (``--target``, else the last one)
needs, orders it so that every stage comes after the stages it uses (file
order where that is free), and reports a cycle — a stage that, through its
``--from`` references, ends up needing itself — as an error naming the
instruction that closes it.

The ``--from`` values are expanded here the way the executor will expand
them: with the build arguments and the ARG defaults in effect at that line
(global ARGs the stage re-declares included), not with ENV, as BuildKit
does for these flags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from skiff.build.instructions import (
    ArgInstruction,
    CopyInstruction,
    Instruction,
    OnbuildInstruction,
    RunInstruction,
)
from skiff.build.parser import Containerfile, Stage
from skiff.errors import BuildError

__all__ = ["Edge", "StagePlan", "find_stage", "plan", "stage_label"]

Expander = Callable[[str, Mapping[str, str]], str]
"""``(text, env) -> expanded``: ``words.expand`` with the file's escape."""


@dataclass(frozen=True)
class Edge:
    """Stage ``user`` needs stage ``used`` because of ``instruction``."""

    user: int
    used: int
    instruction: Instruction


@dataclass
class StagePlan:
    containerfile: Containerfile
    target: int
    """Index of the stage whose image the build produces."""
    order: list[int]
    """Indexes of the stages to build, each after the stages it uses."""
    needs: dict[int, set[int]] = field(default_factory=dict)
    """For each stage to build, the stages it uses."""

    @property
    def stages(self) -> list[Stage]:
        return [self.containerfile.stages[i] for i in self.order]

    def position(self, index: int) -> int:
        """1-based position of stage ``index`` among the stages built."""
        return self.order.index(index) + 1


def find_stage(cf: Containerfile, text: str, *, before: int | None = None) -> int | None:
    """The index of the stage ``text`` names (a name, case-insensitive, or a
    decimal index), or None when it names no stage (then it is an image).
    ``before``: only stages earlier than this index count (``FROM``'s rule)."""
    limit = len(cf.stages) if before is None else before
    if text.isdecimal():
        index = int(text)
        return index if index < limit else None
    wanted = text.lower()
    for stage in cf.stages[:limit]:
        if stage.name == wanted:
            return stage.index
    return None


def stage_label(stage: Stage) -> str:
    return stage.name if stage.name else str(stage.index)


def plan(
    cf: Containerfile,
    *,
    target: str | None,
    build_args: Mapping[str, str],
    global_env: Mapping[str, str],
    expand: Expander,
) -> StagePlan:
    """The stages a build of ``cf`` for ``target`` needs, in a workable order.

    ``global_env``: the global ARGs' values (defaults and build arguments)
    and the predefined platform arguments, as ``FROM`` lines see them.
    """
    if target is not None:
        target_index = find_stage(cf, target)
        if target_index is None:
            names = [s.name for s in cf.stages if s.name]
            raise BuildError(
                f"the target {target!r} was not found in {cf.path}",
                "stages are named " + ", ".join(names) if names else "the file names no stages",
            )
    else:
        target_index = len(cf.stages) - 1
    edges = [
        edge for stage in cf.stages for edge in _edges(cf, stage, build_args, global_env, expand)
    ]
    needs: dict[int, set[int]] = {}
    by_user: dict[int, list[Edge]] = {}
    for edge in edges:
        by_user.setdefault(edge.user, []).append(edge)
    pending = [target_index]
    while pending:
        index = pending.pop()
        if index in needs:
            continue
        needs[index] = {e.used for e in by_user.get(index, [])}
        pending.extend(needs[index])
    _check_cycles(cf, needs, by_user)
    return StagePlan(cf, target_index, _order(needs), needs)


def _edges(
    cf: Containerfile,
    stage: Stage,
    build_args: Mapping[str, str],
    global_env: Mapping[str, str],
    expand: Expander,
) -> list[Edge]:
    out: list[Edge] = []
    base = expand(stage.from_.image, global_env)
    # FROM takes earlier stages by name only ("FROM 0" is an image)
    used = find_stage(cf, base, before=stage.index) if base and not base.isdecimal() else None
    if used is not None:
        out.append(Edge(stage.index, used, stage.from_))
    env: dict[str, str] = {}
    for instruction in stage.instructions:
        if isinstance(instruction, OnbuildInstruction):
            continue  # a trigger runs in a child build, not here
        if isinstance(instruction, ArgInstruction):
            for name, default in instruction.items:
                if name in build_args:
                    env[name] = build_args[name]
                elif default is not None:
                    env[name] = expand(default, env)
                elif name in global_env:
                    env[name] = global_env[name]
            continue
        for text in _from_texts(instruction):
            ref = expand(text, env)
            index = find_stage(cf, ref)
            if index is not None:
                out.append(Edge(stage.index, index, instruction))
    return out


def _from_texts(instruction: Instruction) -> list[str]:
    if isinstance(instruction, CopyInstruction):
        return [instruction.from_] if instruction.from_ else []
    if isinstance(instruction, RunInstruction):
        return [m.from_ for m in instruction.mounts if m.from_]
    return []


def _check_cycles(
    cf: Containerfile, needs: dict[int, set[int]], by_user: dict[int, list[Edge]]
) -> None:
    """Raise for the first cycle a depth-first walk meets."""
    done: set[int] = set()
    path: list[int] = []

    def visit(index: int) -> None:
        if index in done:
            return
        path.append(index)
        for edge in sorted(by_user.get(index, []), key=lambda e: e.instruction.line):
            if edge.used in path:
                loop = [*path[path.index(edge.used) :], edge.used]
                shown = " -> ".join(stage_label(cf.stages[i]) for i in loop)
                raise edge.instruction.error(
                    f"circular dependency between build stages: {shown}",
                    "a stage cannot use itself, or a stage that uses it, with --from or FROM",
                )
            visit(edge.used)
        path.pop()
        done.add(index)

    for index in sorted(needs):
        visit(index)


def _order(needs: dict[int, set[int]]) -> list[int]:
    """Stages in file order, each moved after the stages it uses."""
    order: list[int] = []
    placed: set[int] = set()
    remaining = sorted(needs)
    while remaining:
        for index in remaining:
            if needs[index] <= placed:
                order.append(index)
                placed.add(index)
                remaining.remove(index)
                break
        else:  # pragma: no cover - _check_cycles ran first
            raise BuildError("circular dependency between build stages")
    return order
