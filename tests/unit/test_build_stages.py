"""Pure logic of skiff build: the stage graph (skiff.build.stages) and cache keys
(skiff.build.cache.StepKey)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from skiff.build.cache import StepKey
from skiff.build.parser import parse_containerfile
from skiff.build.stages import find_stage, plan
from skiff.build.words import expand
from skiff.errors import BuildError


def _expand(text: str, env: Mapping[str, str]) -> str:
    return expand(text, env)


def _plan(
    text: str,
    target: str | None = None,
    build_args: dict[str, str] | None = None,
    global_env: dict[str, str] | None = None,
) -> tuple[list[int], dict[int, set[int]], int]:
    cf = parse_containerfile(text)
    result = plan(
        cf,
        target=target,
        build_args=build_args or {},
        global_env=global_env or {},
        expand=_expand,
    )
    return result.order, result.needs, result.target


def test_only_the_target_and_what_it_uses() -> None:
    text = (
        "FROM a AS base\n"
        "FROM b AS unused\n"
        "FROM base AS middle\n"
        "RUN --mount=type=bind,from=tools,target=/t true\n"
        "FROM c AS tools\n"
        "FROM d\n"
        "COPY --from=middle /x /x\n"
    )
    order, needs, target = _plan(text)
    assert target == 4
    assert order == [0, 3, 2, 4]  # middle waits for tools, defined after it
    assert needs == {4: {2}, 2: {0, 3}, 0: set(), 3: set()}
    order, _, target = _plan(text, target="MIDDLE")
    assert (order, target) == ([0, 3, 2], 2)
    order, _, _ = _plan(text, target="1")
    assert order == [1]


def test_from_names_earlier_stages_only_and_never_by_index() -> None:
    order, needs, _ = _plan("FROM later AS first\nFROM x AS later\nFROM 0\n")
    assert needs[2] == set()  # "FROM 0" is an image named 0
    order, needs, _ = _plan("FROM a AS first\nFROM first\n", target=None)
    assert needs == {1: {0}, 0: set()}
    order, needs, _ = _plan("FROM later AS first\nFROM x AS later\n", target="first")
    assert order == [0]  # a later stage's name in FROM is an image


def test_from_values_are_expanded_with_arguments() -> None:
    text = (
        "ARG SRC=one\n"
        "FROM x AS one\n"
        "FROM x AS two\n"
        "FROM x\n"
        "ARG SRC\n"
        "ARG OTHER=two\n"
        "COPY --from=$SRC /a /a\n"
        "COPY --from=${OTHER} /b /b\n"
    )
    _, needs, _ = _plan(text, global_env={"SRC": "one"})
    assert needs[2] == {0, 1}
    _, needs, _ = _plan(text, build_args={"OTHER": "one"}, global_env={"SRC": "one"})
    assert needs[2] == {0}


def test_cycles_name_the_instruction_that_closes_them() -> None:
    text = "FROM x AS a\nCOPY --from=b /x /x\nFROM x AS b\nCOPY --from=a /y /y\nFROM x\nCOPY --from=b /z /z\n"
    with pytest.raises(BuildError) as caught:
        _plan(text)
    assert caught.value.message == (
        "Containerfile:4: circular dependency between build stages: a -> b -> a"
    )
    with pytest.raises(BuildError, match=r"Containerfile:2: .* 0 -> 0"):
        _plan("FROM x\nCOPY --from=0 /x /x\n")
    # a cycle among stages the target does not need is no error
    unrelated = "FROM x AS a\nCOPY --from=b /x /x\nFROM x AS b\nCOPY --from=a /y /y\nFROM x AS c\n"
    assert _plan(unrelated)[0] == [2]


def test_unknown_target() -> None:
    with pytest.raises(BuildError, match="the target 'nope' was not found"):
        _plan("FROM x AS a\n", target="nope")


def test_find_stage() -> None:
    cf = parse_containerfile("FROM x AS Build\nFROM y\n")
    assert find_stage(cf, "build") == 0
    assert find_stage(cf, "BUILD") == 0
    assert find_stage(cf, "1") == 1
    assert find_stage(cf, "2") is None
    assert find_stage(cf, "build", before=0) is None
    assert find_stage(cf, "docker.io/library/busybox") is None


def test_step_keys() -> None:
    key = StepKey(parent="p", instruction="RUN x", content="c", args={"A": "1"})
    assert key.digest() == StepKey("p", "RUN x", "c", {"A": "1"}).digest()
    assert len(key.digest()) == 64
    others = [
        StepKey("q", "RUN x", "c", {"A": "1"}),
        StepKey("p", "RUN y", "c", {"A": "1"}),
        StepKey("p", "RUN x", "d", {"A": "1"}),
        StepKey("p", "RUN x", "c", {"A": "2"}),
        StepKey("p", "RUN x", "c", {"A": "1"}, {"format": "docker"}),
    ]
    assert len({k.digest() for k in others} | {key.digest()}) == 6
    # argument order does not matter
    assert (
        StepKey("p", "i", args={"A": "1", "B": "2"}).digest()
        == StepKey("p", "i", args={"B": "2", "A": "1"}).digest()
    )
