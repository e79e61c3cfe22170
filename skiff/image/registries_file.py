"""Parse and validate one registries.conf file (main file or drop-in).

Split from ``skiff.image.registries`` (which merges files and answers
questions about the result) because validation is most of the code: every
key is type-checked and every error names the file and the key, as
containers-registries.conf(5) users need to find the line to fix. Unknown
keys are warned about, not fatal, so a file written for a newer podman still
loads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skiff.errors import ConfigError, InvalidReference
from skiff.image.registries import (
    AUTH_FILE_HELPER,
    MIRROR_ALL,
    PULL_FROM_MIRROR_VALUES,
    SHORT_NAME_MODES,
    Endpoint,
    Registry,
)
from skiff.oci.reference import parse_normalized_named, split_domain, validate_domain

log = logging.getLogger(__name__)

_MAN = "see containers-registries.conf(5)"
_V2_KEYS = frozenset(
    {
        "unqualified-search-registries",
        "short-name-mode",
        "registry",
        "aliases",
        "credential-helpers",
        "additional-layer-store-auth-helper",
    }
)
_REGISTRY_KEYS = frozenset(
    {
        "prefix",
        "location",
        "insecure",
        "blocked",
        "mirror-by-digest-only",
        "mirror",
        "pull-from-mirror",
    }
)
_MIRROR_KEYS = frozenset({"location", "insecure", "pull-from-mirror"})
_V1_SECTIONS = ("search", "insecure", "block")


@dataclass
class FileLayer:
    """What one file contributes to the merged configuration; None means "not set here"."""

    path: Path
    registries: list[Registry]
    unqualified_search: tuple[str, ...] | None
    short_name_mode: str | None
    aliases: dict[str, str | None]
    credential_helpers: tuple[str, ...] | None


def parse_registries_file(path: Path, drop_in: bool) -> FileLayer:
    """Parse and validate one file; FileNotFoundError passes through."""
    import tomllib

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(
            f"cannot read registries configuration {path}: {exc.strerror}",
            "check the file's permissions",
        ) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}", _MAN) from exc
    return _FileParser(path).parse(data, drop_in)


class _FileParser:
    """Validates one decoded TOML document; every error names the file and key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, where: str, message: str, hint: str = _MAN) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {message}", hint)

    def parse(self, data: dict[str, Any], drop_in: bool) -> FileLayer:
        v1 = self._v1_lists(data)
        v2_set = any(
            key in data
            for key in _V2_KEYS
            if not (key == "short-name-mode" and data.get(key) == "")
        )
        for key in data:
            if key not in _V2_KEYS and key != "registries":
                log.warning("%s: ignoring unknown key %r", self.path, key)
        if v1:
            if drop_in:
                raise self.error("[registries.*]", "drop-in files must use the v2 format", _MAN)
            if v2_set:
                raise self.error(
                    "[registries.*]",
                    "mixing the v1 format ([registries.search/insecure/block]) "
                    "with v2 keys is not supported",
                    "convert the v1 tables to unqualified-search-registries and [[registry]]",
                )
            return self._convert_v1(v1)
        registries = self._registries(data.get("registry", []))
        return FileLayer(
            path=self.path,
            registries=registries,
            unqualified_search=self._search(data),
            short_name_mode=self._mode(data),
            aliases=self._aliases(data.get("aliases", {})),
            credential_helpers=self._helpers(data),
        )

    # top-level keys

    def _search(self, data: dict[str, Any]) -> tuple[str, ...] | None:
        key = "unqualified-search-registries"
        if key not in data:
            return None
        entries = self._str_list(data[key], key)
        return tuple(self._search_entry(entry, key) for entry in entries)

    def _search_entry(self, entry: str, where: str) -> str:
        host = self._location(entry, where)
        try:
            return validate_domain(host)
        except InvalidReference:
            raise self.error(
                where,
                f"invalid entry {entry!r}: expected a registry HOST[:PORT] without a path",
            ) from None

    def _mode(self, data: dict[str, Any]) -> str | None:
        value = data.get("short-name-mode")
        if value is None or value == "":
            return None
        if not isinstance(value, str) or value not in SHORT_NAME_MODES:
            raise self.error(
                "short-name-mode",
                f"invalid value {value!r}",
                f"use one of {', '.join(SHORT_NAME_MODES)}",
            )
        return value

    def _helpers(self, data: dict[str, Any]) -> tuple[str, ...] | None:
        if "additional-layer-store-auth-helper" in data:
            log.debug("%s: additional-layer-store-auth-helper is not used by skiff", self.path)
        if "credential-helpers" not in data:
            return None
        helpers = tuple(self._str_list(data["credential-helpers"], "credential-helpers"))
        external = [helper for helper in helpers if helper != AUTH_FILE_HELPER]
        if external:
            log.warning(
                "%s: credential-helpers %s are not run by skiff; only auth.json files are used",
                self.path,
                ", ".join(external),
            )
        return helpers

    def _aliases(self, value: Any) -> dict[str, str | None]:
        table = self._table(value, "[aliases]")
        aliases: dict[str, str | None] = {}
        problems: list[str] = []
        for name, target in table.items():
            problem = _alias_name_problem(name)
            if problem:
                problems.append(f"{name!r}: {problem}")
                continue
            if not isinstance(target, str):
                problems.append(f"{name!r}: value must be a string")
                continue
            if target == "":
                aliases[name] = None
                continue
            resolved, problem = _alias_value(target)
            if resolved is None:
                problems.append(f"{name!r} = {target!r}: {problem}")
                continue
            aliases[name] = resolved
        if problems:
            # report every bad alias at once rather than one per run
            raise self.error(
                "[aliases]",
                "invalid aliases: " + "; ".join(problems),
                "a name is a short name without tag or digest; a value is a fully "
                "qualified repository (registry/namespace/name) without tag or digest",
            )
        return aliases

    # [[registry]]

    def _registries(self, value: Any) -> list[Registry]:
        if not isinstance(value, list):
            raise self.error("registry", "must be an array of tables ([[registry]])")
        registries: list[Registry] = []
        seen: set[str] = set()
        for index, item in enumerate(value):
            where = f"[[registry]] #{index + 1}"
            registry = self._registry(self._table(item, where), where)
            if registry.prefix in seen:
                # containers/image keeps the first table with a prefix
                log.warning(
                    "%s: %s repeats prefix %r; the earlier table is used",
                    self.path,
                    where,
                    registry.prefix,
                )
                continue
            seen.add(registry.prefix)
            registries.append(registry)
        self._check_conflicts(registries)
        return registries

    def _registry(self, table: dict[str, Any], where: str) -> Registry:
        self._warn_unknown(table, _REGISTRY_KEYS, where)
        location = self._location(self._str(table, "location", where), f"{where} location")
        prefix_text = self._str(table, "prefix", where)
        if table.get("pull-from-mirror"):
            raise self.error(
                f"{where} pull-from-mirror",
                "is only valid inside a [[registry.mirror]] table",
            )
        if prefix_text == "":
            if location == "":
                raise self.error(where, "neither prefix nor location is set")
            prefix = location
        else:
            prefix = self._location(prefix_text, f"{where} prefix")
            if location == "" and not prefix.startswith("*."):
                raise self.error(
                    f"{where} location",
                    "is empty; only a wildcard prefix (*.example.com) may omit it",
                )
        if location:
            if location.startswith("*."):
                raise self.error(
                    f"{where} location", f"{location!r}: wildcards are only valid in prefix"
                )
            self._check_name(location, f"{where} location")
        if prefix.startswith("*."):
            self._check_wildcard(prefix, f"{where} prefix")
        elif prefix != location:
            self._check_name(prefix, f"{where} prefix")

        by_digest_only = self._bool(table, "mirror-by-digest-only", where)
        mirrors: list[Endpoint] = []
        mirror_tables = table.get("mirror", [])
        if not isinstance(mirror_tables, list):
            raise self.error(f"{where} mirror", "must be an array of tables ([[registry.mirror]])")
        for index, item in enumerate(mirror_tables):
            mirror_where = f"{where} [[registry.mirror]] #{index + 1}"
            mirrors.append(
                self._mirror(self._table(item, mirror_where), mirror_where, by_digest_only)
            )
        return Registry(
            prefix=prefix,
            endpoint=Endpoint(location, self._bool(table, "insecure", where)),
            blocked=self._bool(table, "blocked", where),
            mirrors=tuple(mirrors),
            mirror_by_digest_only=by_digest_only,
        )

    def _mirror(self, table: dict[str, Any], where: str, by_digest_only: bool) -> Endpoint:
        self._warn_unknown(table, _MIRROR_KEYS, where)
        location = self._location(self._str(table, "location", where), f"{where} location")
        if not location:
            raise self.error(f"{where} location", "a mirror needs a location")
        if location.startswith("*."):
            raise self.error(
                f"{where} location", f"{location!r}: wildcards are only valid in prefix"
            )
        self._check_name(location, f"{where} location")
        pull_from = self._str(table, "pull-from-mirror", where)
        if pull_from and by_digest_only:
            raise self.error(
                f"{where} pull-from-mirror",
                "cannot be combined with mirror-by-digest-only on the registry",
                "use one of the two settings",
            )
        if pull_from and pull_from not in PULL_FROM_MIRROR_VALUES:
            raise self.error(
                f"{where} pull-from-mirror",
                f"unsupported value {pull_from!r}",
                f"use one of {', '.join(PULL_FROM_MIRROR_VALUES)}",
            )
        return Endpoint(location, self._bool(table, "insecure", where), pull_from or MIRROR_ALL)

    def _check_conflicts(self, registries: list[Registry]) -> None:
        """Tables for the same location must agree on insecure and blocked."""
        first: dict[str, Registry] = {}
        for registry in registries:
            key = registry.endpoint.location or registry.prefix
            other = first.setdefault(key, registry)
            for attribute, mine, theirs in (
                ("insecure", registry.endpoint.insecure, other.endpoint.insecure),
                ("blocked", registry.blocked, other.blocked),
            ):
                if mine != theirs:
                    raise self.error(
                        "[[registry]]",
                        f"registry {key!r} is defined more than once with conflicting "
                        f"{attribute!r} settings",
                        f"use the same {attribute} value for every table with this location",
                    )

    # v1 format

    def _v1_lists(self, data: dict[str, Any]) -> dict[str, list[str]]:
        if "registries" not in data:
            return {}
        section = self._table(data["registries"], "[registries]")
        lists: dict[str, list[str]] = {}
        for name, value in section.items():
            where = f"[registries.{name}]"
            if name not in _V1_SECTIONS:
                log.warning("%s: ignoring unknown table %s", self.path, where)
                continue
            table = self._table(value, where)
            self._warn_unknown(table, frozenset({"registries"}), where)
            if "registries" in table:
                lists[name] = self._str_list(table["registries"], f"{where} registries")
        return lists

    def _convert_v1(self, lists: dict[str, list[str]]) -> FileLayer:
        by_location: dict[str, dict[str, bool]] = {}
        for section, attribute in (("block", "blocked"), ("insecure", "insecure")):
            where = f"[registries.{section}] registries"
            for entry in lists.get(section, []):
                location = self._location(entry, where)
                if not location:
                    raise self.error(where, "entries cannot be empty")
                self._check_name(location, where)
                by_location.setdefault(location, {"blocked": False, "insecure": False})
                by_location[location][attribute] = True
        registries = [
            Registry(
                prefix=location,
                endpoint=Endpoint(location, flags["insecure"]),
                blocked=flags["blocked"],
                mirrors=(),
                mirror_by_digest_only=False,
            )
            for location, flags in by_location.items()
        ]
        search = None
        if "search" in lists:
            where = "[registries.search] registries"
            search = tuple(self._search_entry(entry, where) for entry in lists["search"])
        return FileLayer(self.path, registries, search, None, {}, None)

    # value helpers

    def _location(self, text: str, where: str) -> str:
        """Trailing slashes removed; URL schemes rejected (a location is not a URL)."""
        if text.startswith(("http://", "https://")):
            raise self.error(
                where, f"{text!r}: URL schemes are not supported", "write HOST[:PORT][/PATH]"
            )
        return text.rstrip("/")

    def _check_wildcard(self, prefix: str, where: str) -> None:
        rest = prefix[2:]
        if any(char in rest for char in "/@:") or rest == "":
            raise self.error(
                where,
                f"{prefix!r}: a wildcard prefix must be *.DOMAIN, without port or path",
            )
        try:
            validate_domain(rest)
        except InvalidReference:
            raise self.error(where, f"{prefix!r} is not a valid wildcard domain") from None

    def _check_name(self, text: str, where: str) -> None:
        """``host[:port]`` or ``host[:port]/path`` as a reference would spell it."""
        try:
            if "/" not in text:
                validate_domain(text)
                return
            host = text.partition("/")[0]
            validate_domain(host)
            ref = parse_normalized_named(text)
        except InvalidReference as exc:
            raise self.error(
                where,
                f"{text!r} is not a valid HOST[:PORT][/PATH]: {exc.message}",
            ) from None
        if ref.tag is not None or ref.digest is not None:
            log.warning(
                "%s: %s %r has a tag or digest; prefixes are matched against repository "
                "names, so it will never match",
                self.path,
                where,
                text,
            )

    def _warn_unknown(self, table: dict[str, Any], known: frozenset[str], where: str) -> None:
        for key in table:
            if key not in known:
                log.warning("%s: %s: ignoring unknown key %r", self.path, where, key)

    def _table(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(where, "must be a table")
        return value

    def _str(self, table: dict[str, Any], key: str, where: str) -> str:
        value = table.get(key, "")
        if not isinstance(value, str):
            raise self.error(f"{where} {key}", f"must be a string, not {type(value).__name__}")
        return value

    def _bool(self, table: dict[str, Any], key: str, where: str) -> bool:
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise self.error(f"{where} {key}", f"must be true or false, not {value!r}")
        return value

    def _str_list(self, value: Any, where: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.error(where, "must be an array of strings")
        return value


def _alias_name_problem(name: str) -> str:
    """Why ``name`` cannot be an alias's left-hand side ("" if it can)."""
    if split_domain(name.split("@", 1)[0])[0] is not None:
        return "must be a short name, without registry"
    try:
        ref = parse_normalized_named(name)
    except InvalidReference as exc:
        return exc.message
    if ref.tag is not None or ref.digest is not None:
        return "must not contain a tag or digest"
    return ""


def _alias_value(target: str) -> tuple[str | None, str]:
    """(normalized repository name, "") or (None, why not)."""
    if split_domain(target.split("@", 1)[0])[0] is None:
        return None, "must contain a registry (e.g. docker.io/library/name)"
    try:
        ref = parse_normalized_named(target)
    except InvalidReference as exc:
        return None, exc.message
    if ref.tag is not None or ref.digest is not None:
        return None, "must not contain a tag or digest"
    return ref.name, ""
