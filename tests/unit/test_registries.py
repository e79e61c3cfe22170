"""registries.conf: parsing, validation, drop-in merging, matching, mirrors, caching."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from skiff.config import SystemContext
from skiff.errors import ConfigError, InvalidReference
from skiff.image.registries import (
    Endpoint,
    RegistriesConfig,
    RegistryBlocked,
    load_registries_conf,
    load_registries_files,
)
from skiff.oci.reference import parse_normalized_named

DIGEST = "sha256:" + "0123456789abcdef" * 4


class Confs:
    """A registries.conf and its drop-in directory in a temp dir."""

    def __init__(self, root: Path) -> None:
        self.main = root / "registries.conf"
        self.dir = root / "registries.conf.d"
        self.dir.mkdir()
        self.ctx = SystemContext(registries_conf=self.main, registries_conf_dir=self.dir)

    def load(self, main: str, **drop_ins: str) -> RegistriesConfig:
        self.main.write_text(main)
        for name, text in drop_ins.items():
            (self.dir / name).write_text(text)
        return load_registries_conf(self.ctx)


@pytest.fixture
def confs(tmp_path: Path) -> Confs:
    return Confs(tmp_path)


def sources(config: RegistriesConfig, text: str) -> list[tuple[str, str, bool, bool]]:
    return [
        (str(s.reference), s.endpoint.location, s.endpoint.insecure, s.is_mirror)
        for s in config.pull_sources(parse_normalized_named(text))
    ]


# --- basics -----------------------------------------------------------------------


def test_empty_file_gives_defaults(confs: Confs) -> None:
    config = confs.load("")
    assert config.registries == ()
    assert config.unqualified_search_registries == ()
    assert config.aliases == {}
    assert config.short_name_mode == "permissive"
    assert config.sources == (confs.main,)
    assert sources(config, "quay.io/a/b:1") == [("quay.io/a/b:1", "quay.io", False, False)]
    assert not config.is_insecure("quay.io")


def test_debian_style_commented_file_and_system_config_load() -> None:
    # the host's own configuration (Debian 12: all comments + shortnames.conf)
    config = load_registries_conf(SystemContext())
    assert isinstance(config.short_name_mode, str)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    ctx = SystemContext(registries_conf=tmp_path / "nope.conf", registries_conf_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"nope\.conf does not exist"):
        load_registries_conf(ctx)


def test_missing_optional_main_file_still_loads_drop_ins(tmp_path: Path) -> None:
    drop_in = tmp_path / "a.conf"
    drop_in.write_text('unqualified-search-registries = ["quay.io"]\n')
    config = load_registries_files(tmp_path / "absent.conf", [drop_in], main_optional=True)
    assert config.unqualified_search_registries == ("quay.io",)
    assert config.sources == (drop_in,)


def test_full_v2_file(confs: Confs) -> None:
    config = confs.load(
        """
unqualified-search-registries = ["registry.fedoraproject.org", "quay.io/", "docker.io"]
short-name-mode = "enforcing"

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"alpine" = "docker.io/alpine"

[[registry]]
prefix = "example.com/foo"
location = "internal.example.net/bar"
insecure = false

[[registry.mirror]]
location = "mirror-0.local/mirror-for-foo"

[[registry.mirror]]
location = "mirror-1.local:5000/mirrors/foo/"
insecure = true

[[registry]]
location = "registry.com"
"""
    )
    assert config.unqualified_search_registries == (
        "registry.fedoraproject.org",
        "quay.io",
        "docker.io",
    )
    assert config.short_name_mode == "enforcing"
    assert config.aliases == {
        "fedora": "registry.fedoraproject.org/fedora",
        "alpine": "docker.io/library/alpine",
    }
    assert config.alias_origins["fedora"] == str(confs.main)
    assert config.unqualified_search_origin == str(confs.main)
    assert [r.prefix for r in config.registries] == ["example.com/foo", "registry.com"]
    foo = config.registries[0]
    assert foo.endpoint == Endpoint("internal.example.net/bar", False)
    assert foo.mirrors == (
        Endpoint("mirror-0.local/mirror-for-foo", False),
        Endpoint("mirror-1.local:5000/mirrors/foo", True),
    )
    # the man page's example: mirrors in order, then the rewritten primary
    assert sources(config, "example.com/foo/image:latest") == [
        (
            "mirror-0.local/mirror-for-foo/image:latest",
            "mirror-0.local/mirror-for-foo",
            False,
            True,
        ),
        (
            "mirror-1.local:5000/mirrors/foo/image:latest",
            "mirror-1.local:5000/mirrors/foo",
            True,
            True,
        ),
        ("internal.example.net/bar/image:latest", "internal.example.net/bar", False, False),
    ]


# --- matching ----------------------------------------------------------------------

MATCHING = """
[[registry]]
location = "example.com"
insecure = true
[[registry]]
prefix = "example.com/ns"
location = "ns.example.net"
[[registry]]
prefix = "example.com/ns/repo"
location = "repo.example.net/r"
[[registry]]
prefix = "*.wild.test"
location = ""
blocked = true
[[registry]]
location = "exact.wild.test"
[[registry]]
location = "[::1]:5000"
insecure = true
"""


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("example.com", "example.com"),
        ("example.com/x", "example.com"),
        ("example.com/nsx/y", "example.com"),
        ("example.com/ns", "example.com/ns"),
        ("example.com/ns/other", "example.com/ns"),
        ("example.com/ns/repo", "example.com/ns/repo"),
        ("example.com/ns/repo/sub", "example.com/ns/repo"),
        ("example.com/ns/repository", "example.com/ns"),
        ("example.com:5000/x", None),  # port is not a path boundary (unlike c/image)
        ("example.comx/y", None),
        ("sub.example.com/x", None),
        ("a.wild.test/x", "*.wild.test"),
        ("a.b.wild.test:5000/x", "*.wild.test"),
        ("wild.test/x", None),
        ("awild.test/x", None),
        ("exact.wild.test/x", "exact.wild.test"),  # longer than the wildcard
        ("[::1]:5000/x", "[::1]:5000"),
        ("[::1]/x", None),
    ],
)
def test_longest_prefix_on_component_boundary(confs: Confs, name: str, prefix: str | None) -> None:
    registry = confs.load(MATCHING).find_registry(name)
    assert (registry.prefix if registry else None) == prefix


def test_exact_host_beats_a_wildcard_of_the_same_length(tmp_path: Path) -> None:
    config = Confs(tmp_path).load(
        '[[registry]]\nprefix = "*.example.com"\nblocked = true\n'
        '[[registry]]\nlocation = "a.example.com"\n'
    )
    assert len("*.example.com") == len("a.example.com")
    registry = config.find_registry("a.example.com/x")
    assert registry is not None and registry.prefix == "a.example.com"
    registry = config.find_registry("b.example.com/x")
    assert registry is not None and registry.prefix == "*.example.com"


def test_rewriting_keeps_the_rest_of_the_reference(confs: Confs) -> None:
    config = confs.load(MATCHING)
    assert sources(config, f"example.com/ns/repo/sub:v1@{DIGEST}") == [
        (f"repo.example.net/r/sub:v1@{DIGEST}", "repo.example.net/r", False, False)
    ]
    assert sources(config, "example.com/ns/img:2") == [
        ("ns.example.net/img:2", "ns.example.net", False, False)
    ]
    # location == prefix: the reference is unchanged
    assert sources(config, "example.com/x") == [("example.com/x", "example.com", True, False)]


def test_wildcard_without_location_keeps_the_reference(tmp_path: Path) -> None:
    config = Confs(tmp_path).load(
        '[[registry]]\nprefix = "*.corp.test"\ninsecure = true\n'
        '[[registry.mirror]]\nlocation = "cache.local/corp"\n'
    )
    assert sources(config, "a.corp.test:444/team/app:1") == [
        ("cache.local/corp/team/app:1", "cache.local/corp", False, True),
        ("a.corp.test:444/team/app:1", "a.corp.test:444", True, False),
    ]
    assert config.is_insecure("b.corp.test")
    assert config.is_insecure("b.corp.test:5000")
    assert not config.is_insecure("corp.test")


def test_wildcard_with_location_rewrites_the_host(tmp_path: Path) -> None:
    config = Confs(tmp_path).load('[[registry]]\nprefix = "*.corp.test"\nlocation = "one.local"\n')
    assert sources(config, "x.y.corp.test/app") == [("one.local/app", "one.local", False, False)]


def test_is_insecure_uses_the_host_entry(confs: Confs) -> None:
    config = confs.load(MATCHING)
    assert config.is_insecure("example.com")
    assert config.is_insecure("[::1]:5000")
    assert not config.is_insecure("ns.example.net")
    assert not config.is_insecure("example.com:5000")


def test_rewrite_to_an_invalid_reference_is_reported(tmp_path: Path) -> None:
    config = Confs(tmp_path).load('[[registry]]\nprefix = "quay.io"\nlocation = "docker.io"\n')
    with pytest.raises(InvalidReference, match=r"docker\.io/single"):
        config.pull_sources(parse_normalized_named("quay.io/single"))


def test_docker_io_needs_library_in_the_prefix(tmp_path: Path) -> None:
    config = Confs(tmp_path).load(
        '[[registry]]\nprefix = "docker.io/alpine"\nlocation = "wrong.local/alpine"\n'
        '[[registry]]\nprefix = "docker.io/library/alpine"\nlocation = "right.local/alpine"\n'
    )
    assert sources(config, "alpine:3") == [
        ("right.local/alpine:3", "right.local/alpine", False, False)
    ]
    assert sources(config, "alpine/git") == [
        ("wrong.local/alpine/git", "wrong.local/alpine", False, False)
    ]


# --- mirrors ----------------------------------------------------------------------

MIRRORS = """
[[registry]]
prefix = "r.test"
location = "primary.test"
[[registry.mirror]]
location = "all.test"
[[registry.mirror]]
location = "digest.test"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tag.test"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "default.test"
pull-from-mirror = "all"

[[registry]]
prefix = "d.test"
location = "d-primary.test"
mirror-by-digest-only = true
[[registry.mirror]]
location = "d-mirror.test"
"""


def hosts(config: RegistriesConfig, text: str) -> list[str]:
    return [s.reference.domain for s in config.pull_sources(parse_normalized_named(text))]


def test_pull_from_mirror(confs: Confs) -> None:
    config = confs.load(MIRRORS)
    tag_only = ["all.test", "tag.test", "default.test", "primary.test"]
    digest_only = ["all.test", "digest.test", "default.test", "primary.test"]
    assert hosts(config, "r.test/a:1") == tag_only
    assert hosts(config, "r.test/a") == tag_only  # name only pulls :latest, a tag
    assert hosts(config, f"r.test/a@{DIGEST}") == digest_only
    assert hosts(config, f"r.test/a:1@{DIGEST}") == digest_only  # digest decides
    mirror = config.pull_sources(parse_normalized_named("r.test/a:1"))[1]
    assert mirror.endpoint.pull_from_mirror == "tag-only"
    assert mirror.is_mirror


def test_mirror_by_digest_only(confs: Confs) -> None:
    config = confs.load(MIRRORS)
    assert hosts(config, "d.test/a:1") == ["d-primary.test"]
    assert hosts(config, f"d.test/a@{DIGEST}") == ["d-mirror.test", "d-primary.test"]


# --- blocked ------------------------------------------------------------------------

BLOCKED = """
[[registry]]
location = "evil.test"
blocked = true
[[registry]]
prefix = "ok.test/bad"
location = "ok.test/bad"
blocked = true
[[registry]]
prefix = "m.test"
location = "m-primary.test"
[[registry.mirror]]
location = "evil.test/mirror"
[[registry.mirror]]
location = "good.test/mirror"
[[registry]]
prefix = "all-blocked.test"
location = "evil.test/x"
"""


def test_blocked_registry_and_namespace(confs: Confs) -> None:
    config = confs.load(BLOCKED)
    for text in ("evil.test/a", "ok.test/bad/img:1"):
        ref = parse_normalized_named(text)
        with pytest.raises(RegistryBlocked, match=r"is blocked in .*registries\.conf") as info:
            config.pull_sources(ref)
        assert info.value.hint and "blocked = true" in info.value.hint
        with pytest.raises(RegistryBlocked):
            config.check_blocked(ref)
    config.check_blocked(parse_normalized_named("ok.test/good"))
    assert hosts(config, "ok.test/good") == ["ok.test"]


def test_blocked_mirror_is_skipped_with_a_warning(
    confs: Confs, caplog: pytest.LogCaptureFixture
) -> None:
    config = confs.load(BLOCKED)
    with caplog.at_level(logging.WARNING, logger="skiff.image.registries"):
        assert hosts(config, "m.test/a") == ["good.test", "m-primary.test"]
    assert "evil.test/mirror/a" in caplog.text


def test_every_location_blocked(confs: Confs) -> None:
    config = confs.load(BLOCKED)
    with pytest.raises(RegistryBlocked, match="every location"):
        config.pull_sources(parse_normalized_named("all-blocked.test/a"))


# --- drop-ins -------------------------------------------------------------------------


def test_drop_ins_merge_like_containers_image(confs: Confs) -> None:
    config = confs.load(
        """
unqualified-search-registries = ["main.test"]
short-name-mode = "enforcing"
[aliases]
"a" = "main.test/a"
"b" = "main.test/b"
"c" = "main.test/c"
[[registry]]
location = "replaced.test"
insecure = true
[[registry]]
location = "kept.test"
blocked = true
""",
        **{
            "10-first.conf": """
unqualified-search-registries = ["first.test", "second.test"]
[aliases]
"a" = "first.test/a"
"d" = "first.test/d"
[[registry]]
location = "replaced.test"
[[registry.mirror]]
location = "mirror.test"
[[registry]]
location = "added.test"
""",
            "20-second.conf": """
short-name-mode = "disabled"
[aliases]
"b" = ""
"d" = "second.test/d"
""",
            "30-ignored.txt": "this is [not TOML",
        },
    )
    (confs.dir / "40-subdir.conf").mkdir()
    config = load_registries_conf(confs.ctx)
    assert config.sources == (confs.main, confs.dir / "10-first.conf", confs.dir / "20-second.conf")
    assert config.unqualified_search_registries == ("first.test", "second.test")
    assert config.unqualified_search_origin == str(confs.dir / "10-first.conf")
    assert config.short_name_mode == "disabled"
    assert config.aliases == {
        "a": "first.test/a",
        "c": "main.test/c",
        "d": "second.test/d",
    }
    assert config.alias_origins["d"] == str(confs.dir / "20-second.conf")
    by_prefix = {r.prefix: r for r in config.registries}
    assert sorted(by_prefix) == ["added.test", "kept.test", "replaced.test"]
    assert not by_prefix["replaced.test"].endpoint.insecure  # whole table replaced
    assert by_prefix["replaced.test"].mirrors == (Endpoint("mirror.test", False),)
    assert by_prefix["kept.test"].blocked


def test_drop_in_empty_search_list_clears_it(confs: Confs) -> None:
    config = confs.load(
        'unqualified-search-registries = ["a.test"]\n',
        **{"x.conf": "unqualified-search-registries = []\n", "y.conf": "[aliases]\n"},
    )
    assert config.unqualified_search_registries == ()


def test_drop_in_must_be_v2(confs: Confs) -> None:
    with pytest.raises(ConfigError, match=r"old\.conf.*v2 format"):
        confs.load("", **{"old.conf": "[registries.search]\nregistries = ['a.test']\n"})


def test_default_drop_in_directory_is_beside_the_file(tmp_path: Path) -> None:
    main = tmp_path / "my.conf"
    main.write_text('unqualified-search-registries = ["a.test"]\n')
    beside = tmp_path / "my.conf.d"
    beside.mkdir()
    (beside / "x.conf").write_text('unqualified-search-registries = ["b.test"]\n')
    config = load_registries_conf(SystemContext(registries_conf=main))
    assert config.unqualified_search_registries == ("b.test",)


# --- v1 -----------------------------------------------------------------------------------


def test_v1_format_is_converted(confs: Confs) -> None:
    config = confs.load(
        """
[registries.search]
registries = ['registry1.test', 'registry2.test:5000']
[registries.insecure]
registries = ['registry3.test', 'both.test']
[registries.block]
registries = ['registry.untrusted.test', 'both.test']
"""
    )
    assert config.unqualified_search_registries == ("registry1.test", "registry2.test:5000")
    flags = {r.prefix: (r.endpoint.insecure, r.blocked) for r in config.registries}
    assert flags == {
        "registry3.test": (True, False),
        "both.test": (True, True),
        "registry.untrusted.test": (False, True),
    }
    assert config.is_insecure("registry3.test")


def test_v1_with_empty_lists_is_still_v1(confs: Confs) -> None:
    config = confs.load(
        "[registries.search]\nregistries = []\n[registries.block]\nregistries = []\n"
    )
    assert config.registries == () and config.unqualified_search_registries == ()


@pytest.mark.parametrize(
    "text",
    [
        "unqualified-search-registries = []\n[registries.search]\nregistries = []\n",
        '[registries.insecure]\nregistries = ["a.test"]\n[[registry]]\nlocation = "b.test"\n',
    ],
)
def test_mixing_v1_and_v2_is_an_error(confs: Confs, text: str) -> None:
    with pytest.raises(ConfigError, match="mixing the v1 format"):
        confs.load(text)


# --- validation errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("[[registry]\nlocation = 1", "malformed TOML", ""),
        ('unqualified-search-registries = "quay.io"', "unqualified-search-registries", "array"),
        (
            'unqualified-search-registries = ["quay.io/ns"]',
            "unqualified-search-registries",
            "without a path",
        ),
        (
            'unqualified-search-registries = ["https://quay.io"]',
            "unqualified-search-registries",
            "URL schemes",
        ),
        ('short-name-mode = "prompt"', "short-name-mode", "invalid value"),
        ("[[registry]]\ninsecure = true", "[[registry]] #1", "neither prefix nor location"),
        ('[[registry]]\nprefix = "a.test/ns"', "#1 location", "only a wildcard prefix"),
        ('[[registry]]\nlocation = "https://a.test"', "#1 location", "URL schemes"),
        ('[[registry]]\nlocation = "a.test"\ninsecure = "yes"', "#1 insecure", "true or false"),
        ('[[registry]]\nlocation = "a.test"\nblocked = 1', "#1 blocked", "true or false"),
        ('[[registry]]\nlocation = "a.test/Upper"', "#1 location", "not a valid"),
        ('[[registry]]\nlocation = "a_b.test"', "#1 location", "not a valid"),
        ('[[registry]]\nprefix = "*.a.test/ns"\nlocation = "b.test"', "#1 prefix", "*.DOMAIN"),
        ('[[registry]]\nprefix = "*.a.test:5000"', "#1 prefix", "*.DOMAIN"),
        ('[[registry]]\nprefix = "a.*.test"\nlocation = "b.test"', "#1 prefix", "not a valid"),
        ('[[registry]]\nprefix = "a.test"\nlocation = "*.b.test"', "#1 location", "wildcards"),
        (
            '[[registry]]\nlocation = "a.test"\npull-from-mirror = "all"',
            "pull-from-mirror",
            "only valid inside",
        ),
        (
            '[[registry]]\nlocation = "a.test"\n[[registry.mirror]]\ninsecure = true',
            "#1 [[registry.mirror]] #1 location",
            "needs a location",
        ),
        (
            '[[registry]]\nlocation = "a.test"\n[[registry.mirror]]\nlocation = "m.test"\n'
            'pull-from-mirror = "sometimes"',
            "#1 [[registry.mirror]] #1 pull-from-mirror",
            "unsupported value",
        ),
        (
            '[[registry]]\nlocation = "a.test"\nmirror-by-digest-only = true\n'
            '[[registry.mirror]]\nlocation = "m.test"\npull-from-mirror = "tag-only"',
            "pull-from-mirror",
            "cannot be combined",
        ),
        (
            '[[registry]]\nprefix = "a.test/x"\nlocation = "a.test"\ninsecure = true\n'
            '[[registry]]\nprefix = "a.test/y"\nlocation = "a.test"',
            "[[registry]]",
            "conflicting 'insecure'",
        ),
        (
            '[[registry]]\nprefix = "a.test/x"\nlocation = "a.test"\nblocked = true\n'
            '[[registry]]\nprefix = "a.test/y"\nlocation = "a.test"',
            "[[registry]]",
            "conflicting 'blocked'",
        ),
        ("registry = 5", "registry", "array of tables"),
        ('aliases = "x"', "[aliases]", "must be a table"),
    ],
)
def test_errors_name_the_file_and_key(confs: Confs, text: str, where: str, what: str) -> None:
    with pytest.raises(ConfigError) as info:
        confs.load(text)
    message = str(info.value)
    assert str(confs.main) in message
    assert where in message
    assert what in message


def test_all_bad_aliases_are_reported_together(confs: Confs) -> None:
    with pytest.raises(ConfigError) as info:
        confs.load(
            """
[aliases]
"quay.io/x" = "quay.io/x"
"tagged:1" = "quay.io/tagged"
"noreg" = "library/noreg"
"withtag" = "quay.io/withtag:1"
"good" = "quay.io/good"
"UPPER" = "quay.io/upper"
"""
        )
    message = str(info.value)
    for name in ("quay.io/x", "tagged:1", "noreg", "withtag", "UPPER"):
        assert repr(name) in message
    assert "'good'" not in message


def test_unknown_keys_warn(confs: Confs, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        confs.load(
            'unqualified-search-registry = ["typo.test"]\n'
            '[[registry]]\nlocation = "a.test"\nmirrors = []\n'
        )
    assert "'unqualified-search-registry'" in caplog.text
    assert "'mirrors'" in caplog.text


def test_duplicate_prefix_in_one_file_keeps_the_first(
    confs: Confs, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        config = confs.load(
            '[[registry]]\nprefix = "a.test"\nlocation = "one.test"\n'
            '[[registry]]\nprefix = "a.test"\nlocation = "two.test"\n'
        )
    assert [r.endpoint.location for r in config.registries] == ["one.test"]
    assert "repeats prefix" in caplog.text


def test_credential_helpers_other_than_auth_files_warn(
    confs: Confs, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        config = confs.load('credential-helpers = ["containers-auth.json", "secretservice"]\n')
    assert config.credential_helpers == ("containers-auth.json", "secretservice")
    assert "secretservice" in caplog.text


def test_unreadable_file(confs: Confs) -> None:
    confs.main.mkdir()
    with pytest.raises(ConfigError, match="cannot read registries configuration"):
        load_registries_conf(confs.ctx)


def test_invalid_utf8_is_malformed(confs: Confs) -> None:
    confs.main.write_bytes(b'unqualified-search-registries = ["\xff"]\n')
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_registries_conf(confs.ctx)


# --- cache --------------------------------------------------------------------------------


def test_cache_returns_the_same_object_until_a_file_changes(confs: Confs) -> None:
    first = confs.load('unqualified-search-registries = ["a.test"]\n')
    assert load_registries_conf(confs.ctx) is first

    confs.main.write_text('unqualified-search-registries = ["bb.test"]\n')
    second = load_registries_conf(confs.ctx)
    assert second.unqualified_search_registries == ("bb.test",)
    assert load_registries_conf(confs.ctx) is second

    drop_in = confs.dir / "x.conf"
    drop_in.write_text('unqualified-search-registries = ["c.test"]\n')
    third = load_registries_conf(confs.ctx)
    assert third.unqualified_search_registries == ("c.test",)

    # same size, new mtime
    drop_in.write_text('unqualified-search-registries = ["d.test"]\n')
    st = drop_in.stat()
    os.utime(drop_in, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_registries_conf(confs.ctx).unqualified_search_registries == ("d.test",)

    drop_in.unlink()
    assert load_registries_conf(confs.ctx).unqualified_search_registries == ("bb.test",)


def test_a_broken_file_is_not_cached(confs: Confs) -> None:
    confs.main.write_text("[[broken")
    with pytest.raises(ConfigError):
        load_registries_conf(confs.ctx)
    confs.main.write_text('unqualified-search-registries = ["ok.test"]\n')
    assert load_registries_conf(confs.ctx).unqualified_search_registries == ("ok.test",)
