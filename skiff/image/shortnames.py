"""Short-name resolution: which fully qualified names ``busybox`` may mean.

A *short name* names no registry (``busybox``, ``library/busybox:1.36``,
``opensuse/leap``); ``quay.io/x``, ``localhost/x`` and ``host:5000/x`` are
fully qualified and resolve to themselves (with ``:latest`` added when
neither tag nor digest is given). For a short name, podman (containers/image
``pkg/shortnames``) and skiff do, in order:

1. Strip the tag/digest, look the name up in ``[aliases]`` of the merged
   registries.conf (main file and drop-ins). An alias is used alone, in any
   mode, with the tag/digest put back.
2. Otherwise build one candidate per ``unqualified-search-registries`` entry,
   in order (``docker.io`` + ``busybox`` → ``docker.io/library/busybox``).
   No entries and no alias is an error.
3. ``short-name-mode`` decides what happens with more than one candidate:
   ``disabled`` and ``permissive`` return all of them, to be tried in order
   until one pulls; ``enforcing`` would make podman prompt on a terminal and
   fail without one ("short-name resolution enforced but cannot prompt
   without a TTY" — checked with podman 4.3 here and in containers/image's
   source). **skiff never prompts**, so in enforcing mode an ambiguous short
   name is always an error (AmbiguousShortName), on a terminal or not; a
   single candidate is not ambiguous and is returned. podman records a
   prompted choice in short-name-aliases.conf; skiff neither prompts nor
   records, and does not read that machine-written file.

Local images: podman also resolves a short name against the local store
(alias, then ``localhost/NAME``, then each search registry, then
``docker.io/NAME`` — its debug log shows this order) before pulling when the
pull policy allows a local image. Storage is not part of the image library,
so that is a hook: ``local_candidates`` gives the names to look up, and
``resolve_short_name(..., local_lookup=...)`` returns the first one the
caller's store has instead of pull candidates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skiff.errors import InvalidReference
from skiff.image.registries import SHORT_NAME_MODES, RegistriesConfig, load_registries_conf
from skiff.oci.reference import (
    NamedReference,
    is_short_name,
    parse_normalized_named,
)

if TYPE_CHECKING:
    from skiff.config import SystemContext

log = logging.getLogger(__name__)

LocalLookup = Callable[[NamedReference], bool]
"""Answers whether the local store has an image by this exact name."""

RATIONALE_FULLY_QUALIFIED = "fully-qualified"
RATIONALE_ALIAS = "alias"
RATIONALE_SEARCH = "unqualified-search"
RATIONALE_LOCAL = "local"


class AmbiguousShortName(InvalidReference):
    """A short name has several candidates and short-name-mode is enforcing."""


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving a name, with where it came from (for messages)."""

    candidates: tuple[NamedReference, ...]
    rationale: str
    """One of the RATIONALE_* values."""
    origin: str = ""
    """The file the alias or search list came from ("" if none applies)."""
    user_input: str = ""

    def description(self) -> str:
        """A line to show before pulling, as podman prints it ("" for none)."""
        if self.rationale == RATIONALE_ALIAS:
            return f'Resolved "{self.user_input}" as an alias ({self.origin})'
        if self.rationale == RATIONALE_SEARCH:
            return (
                f'Resolving "{self.user_input}" using unqualified-search registries ({self.origin})'
            )
        return ""


def resolve_short_name(
    ctx: SystemContext,
    text: str,
    *,
    local_lookup: LocalLookup | None = None,
    mode: str | None = None,
) -> list[NamedReference]:
    """Candidates to pull for ``text``, in the order to try them.

    A fully qualified name gives ``[it]``. ``local_lookup`` (see the module
    docstring) short-cuts to a local image; ``mode`` overrides
    ``short-name-mode`` from registries.conf.
    """
    return list(resolve(ctx, text, local_lookup=local_lookup, mode=mode).candidates)


def resolve(
    ctx: SystemContext,
    text: str,
    *,
    local_lookup: LocalLookup | None = None,
    mode: str | None = None,
) -> Resolution:
    """``resolve_short_name`` with the rationale and origin podman reports."""
    config = load_registries_conf(ctx)
    if local_lookup is not None:
        for candidate in _local_candidates(config, text):
            if local_lookup(candidate):
                return Resolution((candidate,), RATIONALE_LOCAL, "", text)
    return resolve_with_config(config, text, mode=mode)


def resolve_with_config(config: RegistriesConfig, text: str, mode: str | None = None) -> Resolution:
    """Pull candidates for ``text`` under an already loaded configuration."""
    mode = mode or config.short_name_mode
    if mode not in SHORT_NAME_MODES:
        raise InvalidReference(
            f"unsupported short-name mode {mode!r}", f"use one of {', '.join(SHORT_NAME_MODES)}"
        )
    ref = _parse(text)
    if not is_short_name(text):
        return Resolution((ref.tag_or_latest(),), RATIONALE_FULLY_QUALIFIED, "", text)

    name = _repository_part(text, ref)
    alias = config.aliases.get(name)
    if alias is not None:
        resolved = _with_tag_and_digest(parse_normalized_named(alias), ref)
        log.debug(
            "resolved short name %r to alias %s (%s)",
            text,
            resolved,
            config.alias_origins.get(name, ""),
        )
        return Resolution((resolved,), RATIONALE_ALIAS, config.alias_origins.get(name, ""), name)

    if not config.unqualified_search_registries:
        raise InvalidReference(
            f'short name "{text}" did not resolve to an alias and no unqualified-search '
            f"registries are defined in {config.describe_sources()}",
            "use a fully qualified name (e.g. docker.io/library/NAME), or add an alias or "
            "unqualified-search-registries to registries.conf",
        )
    candidates = tuple(
        _search_candidate(registry, text) for registry in config.unqualified_search_registries
    )
    log.debug("short name %r candidates: %s", text, ", ".join(str(c) for c in candidates))
    if mode == "enforcing" and len(candidates) > 1:
        raise AmbiguousShortName(
            f'short name "{text}" is ambiguous: short-name-mode is enforcing and it could be '
            f"any of {', '.join(str(c) for c in candidates)}",
            "skiff never prompts: use a fully qualified name, add an [aliases] entry, or set "
            "short-name-mode to permissive in registries.conf",
        )
    return Resolution(candidates, RATIONALE_SEARCH, config.unqualified_search_origin, name)


def local_candidates(ctx: SystemContext, text: str) -> list[NamedReference]:
    """Names to look up in a local store for ``text``, most preferred first."""
    return _local_candidates(load_registries_conf(ctx), text)


def _local_candidates(config: RegistriesConfig, text: str) -> list[NamedReference]:
    ref = _parse(text)
    if not is_short_name(text):
        return [ref.tag_or_latest()]
    name = _repository_part(text, ref)
    found: list[NamedReference] = []
    alias = config.aliases.get(name)
    if alias is not None:
        found.append(_with_tag_and_digest(parse_normalized_named(alias), ref))
    for registry in ("localhost", *config.unqualified_search_registries, "docker.io"):
        candidate = _search_candidate(registry, text)
        if candidate not in found:
            found.append(candidate)
    return found


def _parse(text: str) -> NamedReference:
    if not text:
        raise InvalidReference("invalid reference: empty string", "name an image, e.g. busybox")
    return parse_normalized_named(text)


def _repository_part(text: str, ref: NamedReference) -> str:
    """The name as typed, without tag and digest (the alias lookup key)."""
    name = text.split("@", 1)[0]
    if ref.tag is not None:
        name = name[: -(len(ref.tag) + 1)]
    return name


def _with_tag_and_digest(alias: NamedReference, ref: NamedReference) -> NamedReference:
    return NamedReference(alias.domain, alias.path, ref.tag, ref.digest).tag_or_latest()


def _search_candidate(registry: str, text: str) -> NamedReference:
    try:
        return parse_normalized_named(f"{registry}/{text}").tag_or_latest()
    except InvalidReference as exc:
        raise InvalidReference(
            f"cannot build a reference from search registry {registry!r} and {text!r}: {exc.message}",
            exc.hint,
        ) from exc
