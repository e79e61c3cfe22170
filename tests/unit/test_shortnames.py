"""Short-name resolution: aliases, unqualified-search registries, modes, local hook."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff.config import SystemContext
from skiff.errors import InvalidReference
from skiff.image.shortnames import (
    RATIONALE_ALIAS,
    RATIONALE_FULLY_QUALIFIED,
    RATIONALE_LOCAL,
    RATIONALE_SEARCH,
    AmbiguousShortName,
    local_candidates,
    resolve,
    resolve_short_name,
)
from skiff.oci.reference import NamedReference

DIGEST = "sha256:" + "0123456789abcdef" * 4

BASE = """
unqualified-search-registries = ["quay.io", "docker.io", "localhost:5000"]
short-name-mode = "{mode}"
[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"opensuse/leap" = "registry.opensuse.org/opensuse/leap"
"alpine" = "docker.io/alpine"
"""


def make_ctx(tmp_path: Path, text: str, **drop_ins: str) -> SystemContext:
    main = tmp_path / "registries.conf"
    main.write_text(text)
    directory = tmp_path / "registries.conf.d"
    directory.mkdir(exist_ok=True)
    for name, content in drop_ins.items():
        (directory / name).write_text(content)
    return SystemContext(registries_conf=main, registries_conf_dir=directory)


@pytest.fixture
def ctx(tmp_path: Path) -> SystemContext:
    return make_ctx(tmp_path, BASE.format(mode="permissive"))


def names(refs: list[NamedReference]) -> list[str]:
    return [str(ref) for ref in refs]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("quay.io/a/b", "quay.io/a/b:latest"),
        ("quay.io/a/b:1", "quay.io/a/b:1"),
        (f"quay.io/a/b@{DIGEST}", f"quay.io/a/b@{DIGEST}"),
        ("localhost/x", "localhost/x:latest"),
        ("host:5000/x", "host:5000/x:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ],
)
def test_fully_qualified_names_resolve_to_themselves(
    ctx: SystemContext, text: str, expected: str
) -> None:
    assert names(resolve_short_name(ctx, text)) == [expected]
    assert resolve(ctx, text).rationale == RATIONALE_FULLY_QUALIFIED


def test_search_registries_in_order(ctx: SystemContext) -> None:
    assert names(resolve_short_name(ctx, "busybox")) == [
        "quay.io/busybox:latest",
        "docker.io/library/busybox:latest",
        "localhost:5000/busybox:latest",
    ]
    assert names(resolve_short_name(ctx, "team/app:v2")) == [
        "quay.io/team/app:v2",
        "docker.io/team/app:v2",
        "localhost:5000/team/app:v2",
    ]
    assert (
        names(resolve_short_name(ctx, f"busybox@{DIGEST}"))[1]
        == f"docker.io/library/busybox@{DIGEST}"
    )
    resolution = resolve(ctx, "busybox")
    assert resolution.rationale == RATIONALE_SEARCH
    assert resolution.origin == str(ctx.registries_conf)
    assert resolution.description() == (
        f'Resolving "busybox" using unqualified-search registries ({ctx.registries_conf})'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fedora", "registry.fedoraproject.org/fedora:latest"),
        ("fedora:39", "registry.fedoraproject.org/fedora:39"),
        (f"fedora@{DIGEST}", f"registry.fedoraproject.org/fedora@{DIGEST}"),
        (f"fedora:39@{DIGEST}", f"registry.fedoraproject.org/fedora:39@{DIGEST}"),
        ("opensuse/leap:15.5", "registry.opensuse.org/opensuse/leap:15.5"),
        ("alpine", "docker.io/library/alpine:latest"),
    ],
)
def test_alias_is_used_alone_with_tag_and_digest_put_back(
    ctx: SystemContext, text: str, expected: str
) -> None:
    assert names(resolve_short_name(ctx, text)) == [expected]
    resolution = resolve(ctx, text)
    assert resolution.rationale == RATIONALE_ALIAS
    assert resolution.description().startswith('Resolved "')


def test_alias_wins_even_in_enforcing_mode(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, BASE.format(mode="enforcing"))
    assert names(resolve_short_name(ctx, "fedora")) == ["registry.fedoraproject.org/fedora:latest"]


def test_alias_keys_are_exact(ctx: SystemContext) -> None:
    # "library/fedora" is another short name; no alias for it
    assert len(resolve_short_name(ctx, "library/fedora")) == 3


def test_enforcing_mode_with_several_candidates_fails_without_prompting(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, BASE.format(mode="enforcing"))
    with pytest.raises(AmbiguousShortName, match="ambiguous") as info:
        resolve_short_name(ctx, "busybox")
    assert "quay.io/busybox:latest" in info.value.message
    assert info.value.hint and "never prompts" in info.value.hint
    assert isinstance(info.value, InvalidReference)


def test_enforcing_mode_with_one_search_registry_is_not_ambiguous(tmp_path: Path) -> None:
    ctx = make_ctx(
        tmp_path, 'unqualified-search-registries = ["quay.io"]\nshort-name-mode = "enforcing"\n'
    )
    assert names(resolve_short_name(ctx, "busybox")) == ["quay.io/busybox:latest"]


@pytest.mark.parametrize("mode", ["permissive", "disabled"])
def test_permissive_and_disabled_return_every_candidate(tmp_path: Path, mode: str) -> None:
    ctx = make_ctx(tmp_path, BASE.format(mode=mode))
    assert len(resolve_short_name(ctx, "busybox")) == 3


def test_mode_argument_overrides_the_file(ctx: SystemContext) -> None:
    with pytest.raises(AmbiguousShortName):
        resolve_short_name(ctx, "busybox", mode="enforcing")
    with pytest.raises(InvalidReference, match="unsupported short-name mode"):
        resolve_short_name(ctx, "busybox", mode="prompt")


def test_no_alias_and_no_search_registries_is_an_error(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, "")
    with pytest.raises(InvalidReference, match="no unqualified-search registries") as info:
        resolve_short_name(ctx, "busybox")
    assert str(ctx.registries_conf) in info.value.message


def test_drop_ins_provide_aliases_and_search_list(tmp_path: Path) -> None:
    ctx = make_ctx(
        tmp_path,
        BASE.format(mode="enforcing"),
        **{
            "50-site.conf": (
                'unqualified-search-registries = ["site.test"]\n'
                '[aliases]\n"busybox" = "site.test/mirror/busybox"\n"fedora" = ""\n'
            )
        },
    )
    assert names(resolve_short_name(ctx, "busybox:1")) == ["site.test/mirror/busybox:1"]
    # the erased alias falls back to the (drop-in's) single search registry
    resolution = resolve(ctx, "fedora")
    assert names(list(resolution.candidates)) == ["site.test/fedora:latest"]
    assert resolution.origin.endswith("50-site.conf")


@pytest.mark.parametrize("text", ["", "Busybox", "busybox:", "a b", "busybox\n"])
def test_invalid_input_is_rejected(ctx: SystemContext, text: str) -> None:
    with pytest.raises(InvalidReference):
        resolve_short_name(ctx, text)


def test_search_registry_that_makes_an_invalid_name(tmp_path: Path) -> None:
    long_registry = "r" * 200 + ".test"
    ctx = make_ctx(tmp_path, f'unqualified-search-registries = ["{long_registry}"]\n')
    with pytest.raises(InvalidReference, match="search registry"):
        resolve_short_name(ctx, "n" * 60)


# --- local images hook ---------------------------------------------------------------------


def test_local_candidates_order_like_podman(ctx: SystemContext) -> None:
    assert names(local_candidates(ctx, "busybox:1")) == [
        "localhost/busybox:1",
        "quay.io/busybox:1",
        "docker.io/library/busybox:1",
        "localhost:5000/busybox:1",
    ]
    assert names(local_candidates(ctx, "fedora")) == [
        "registry.fedoraproject.org/fedora:latest",
        "localhost/fedora:latest",
        "quay.io/fedora:latest",
        "docker.io/library/fedora:latest",
        "localhost:5000/fedora:latest",
    ]
    assert names(local_candidates(ctx, "quay.io/x")) == ["quay.io/x:latest"]


def test_local_lookup_short_cuts_to_a_local_image(ctx: SystemContext) -> None:
    asked: list[str] = []

    def lookup(ref: NamedReference) -> bool:
        asked.append(str(ref))
        return str(ref) == "docker.io/library/busybox:latest"

    resolution = resolve(ctx, "busybox", local_lookup=lookup)
    assert names(list(resolution.candidates)) == ["docker.io/library/busybox:latest"]
    assert resolution.rationale == RATIONALE_LOCAL
    assert asked == [
        "localhost/busybox:latest",
        "quay.io/busybox:latest",
        "docker.io/library/busybox:latest",
    ]


def test_local_lookup_without_a_match_falls_back_to_pull_candidates(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, BASE.format(mode="enforcing"))
    assert names(resolve_short_name(ctx, "fedora", local_lookup=lambda ref: False)) == [
        "registry.fedoraproject.org/fedora:latest"
    ]
    # a local image makes an otherwise ambiguous name usable, as in podman
    found = resolve_short_name(ctx, "busybox", local_lookup=lambda ref: ref.domain == "localhost")
    assert names(found) == ["localhost/busybox:latest"]
    with pytest.raises(AmbiguousShortName):
        resolve_short_name(ctx, "busybox", local_lookup=lambda ref: False)
