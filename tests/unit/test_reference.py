"""Docker reference parsing: properties (hypothesis) and docker's normalization table."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from skiff.errors import InvalidReference
from skiff.oci.digest import Digest
from skiff.oci.reference import (
    NAME_TOTAL_LENGTH_MAX,
    NamedReference,
    is_short_name,
    parse_named,
    parse_normalized_named,
    split_domain,
    validate_domain,
    validate_tag,
)

HEX64 = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX64}"

# --- strategies ---------------------------------------------------------------

alnum = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)
separator = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def path_components(draw: st.DrawFn) -> str:
    parts = [draw(alnum)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(separator), draw(alnum)]
    return "".join(parts)


paths = st.lists(path_components(), min_size=1, max_size=4).map("/".join)
domain_component = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
ports = st.integers(1, 65535).map(str)


@st.composite
def domains(draw: st.DrawFn) -> str:
    """Domains that read as a registry when written first (".", ":" or localhost)."""
    kind = draw(st.sampled_from(["dotted", "port", "localhost", "ipv6"]))
    if kind == "localhost":
        host = "localhost"
    elif kind == "ipv6":
        host = draw(st.sampled_from(["[::1]", "[2001:db8::1]", "[fe80::a:b]"]))
    elif kind == "dotted":
        host = ".".join(draw(st.lists(domain_component, min_size=2, max_size=4)))
    else:
        host = draw(domain_component)
    if kind == "port" or draw(st.booleans()):
        host += ":" + draw(ports)
    return host


tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
digests = st.sampled_from(
    [DIGEST, "sha256:" + "a" * 64, "sha512:" + "0f" * 64],
)


@st.composite
def qualified_texts(draw: st.DrawFn) -> str:
    """Fully qualified reference texts, possibly not normalized (docker.io/x)."""
    domain = draw(st.one_of(domains(), st.sampled_from(["docker.io", "index.docker.io"])))
    text = f"{domain}/{draw(paths)}"
    if draw(st.booleans()):
        text += ":" + draw(tags)
    if draw(st.booleans()):
        text += "@" + draw(digests)
    return text


@st.composite
def short_texts(draw: st.DrawFn) -> str:
    """Names without a registry (``busybox``, ``user/repo:tag``)."""
    path = draw(paths)
    assume(split_domain(path)[0] is None)
    text = path
    if draw(st.booleans()):
        text += ":" + draw(tags)
    if draw(st.booleans()):
        text += "@" + draw(digests)
    return text


any_texts = st.one_of(qualified_texts(), short_texts())


def _parse_or_skip(text: str) -> NamedReference:
    """Parse, skipping inputs that are only invalid for being too long."""
    try:
        return parse_normalized_named(text)
    except InvalidReference as exc:
        assume("must not be more than" not in exc.message)
        raise


# --- properties ---------------------------------------------------------------


@given(any_texts)
def test_str_parses_back_to_the_same_reference(text: str) -> None:
    ref = _parse_or_skip(text)
    assert parse_named(str(ref)) == ref
    assert parse_normalized_named(str(ref)) == ref


@given(any_texts)
def test_familiar_parses_back_to_the_same_reference(text: str) -> None:
    ref = _parse_or_skip(text)
    assert parse_normalized_named(ref.familiar()) == ref
    assert parse_normalized_named(ref.familiar_name()) == ref.name_only()


@given(any_texts)
def test_parse_keeps_tag_and_digest(text: str) -> None:
    ref = _parse_or_skip(text)
    name, at, digest = text.partition("@")
    assert (str(ref.digest) if ref.digest else None) == (digest if at else None)
    last = name.rsplit("/", 1)[-1]
    assert ref.tag == (last.split(":", 1)[1] if ":" in last else None)


@given(domains(), paths)
def test_explicit_domain_is_kept_and_path_not_prefixed(domain: str, path: str) -> None:
    ref = _parse_or_skip(f"{domain}/{path}")
    assert (ref.domain, ref.path) == (domain, path)
    assert not is_short_name(f"{domain}/{path}")


@given(short_texts())
def test_short_names_go_to_docker_hub(text: str) -> None:
    ref = _parse_or_skip(text)
    assert ref.domain == "docker.io"
    assert is_short_name(text)
    name = (
        text.split("@", maxsplit=1)[0].rsplit(":", 1)[0]
        if ref.tag
        else text.split("@", maxsplit=1)[0]
    )
    expected = f"library/{name}" if "/" not in name else name
    assert ref.path == expected


@given(any_texts, st.sampled_from(["\n", " ", "\t", "\x00", "é", "A"]), st.data())
def test_a_foreign_character_in_the_name_is_rejected(
    text: str, char: str, data: st.DataObject
) -> None:
    # anywhere in the repository path (not the domain: uppercase is legal there)
    domain, rest = split_domain(text.split("@", maxsplit=1)[0])
    start = len(domain) + 1 if domain else 0
    path_end = start + len(rest.split(":")[0])
    position = data.draw(st.integers(start, path_end))
    if char == "A" and domain is None and "/" in rest:
        # an uppercase first component is read as a registry, as docker does
        assume(position > rest.index("/"))
    mutated = text[:position] + char + text[position:]
    with pytest.raises(InvalidReference):
        parse_normalized_named(mutated)


@given(any_texts)
def test_trailing_newline_is_rejected(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_normalized_named(text + "\n")


@settings(max_examples=500)
@given(st.text(max_size=80))
def test_arbitrary_text_parses_consistently_or_raises_invalid_reference(text: str) -> None:
    try:
        ref = parse_normalized_named(text)
    except InvalidReference:
        return
    assert parse_named(str(ref)) == ref


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-:/@", max_size=40))
def test_reference_alphabet_fuzz(text: str) -> None:
    try:
        ref = parse_normalized_named(text)
    except InvalidReference:
        return
    assert parse_named(str(ref)) == ref
    assert parse_normalized_named(ref.familiar()) == ref


# --- docker's normalization table ------------------------------------------------

NORMALIZED = [
    ("busybox", "docker.io/library/busybox"),
    ("busybox:latest", "docker.io/library/busybox:latest"),
    ("busybox:1.36.1-musl", "docker.io/library/busybox:1.36.1-musl"),
    ("library/busybox", "docker.io/library/busybox"),
    ("docker.io/busybox", "docker.io/library/busybox"),
    ("docker.io/library/busybox", "docker.io/library/busybox"),
    ("index.docker.io/busybox", "docker.io/library/busybox"),
    ("index.docker.io/library/busybox:tag", "docker.io/library/busybox:tag"),
    ("user/repo", "docker.io/user/repo"),
    ("user/repo/sub", "docker.io/user/repo/sub"),
    ("docker.io/user/repo", "docker.io/user/repo"),
    ("localhost/foo", "localhost/foo"),
    ("localhost:5000/foo:bar", "localhost:5000/foo:bar"),
    ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b"),
    ("quay.io/a/b", "quay.io/a/b"),
    ("Registry.Example.COM/a", "Registry.Example.COM/a"),
    ("[2001:db8::1]:5000/foo", "[2001:db8::1]:5000/foo"),
    ("[::1]/foo:tag", "[::1]/foo:tag"),
    ("example.com:5000", "docker.io/library/example.com:5000"),  # tag, not port
    ("localhost:5000", "docker.io/library/localhost:5000"),
    ("foo__bar", "docker.io/library/foo__bar"),
    ("foo---bar", "docker.io/library/foo---bar"),
    ("a.b_c-d", "docker.io/library/a.b_c-d"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
    (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}"),
    ("busybox:" + "t" * 128, "docker.io/library/busybox:" + "t" * 128),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZED)
def test_docker_normalization(text: str, expected: str) -> None:
    ref = parse_normalized_named(text)
    assert str(ref) == expected
    assert parse_named(expected) == ref


INVALID = [
    "",
    ":",
    "@",
    "busybox:",
    "busybox@",
    "Busybox",
    "user/Repo",
    "-foo",
    "foo-",
    "foo___bar",
    "foo..bar",
    "foo/",
    "/foo",
    "foo//bar",
    "docker.io/",
    "localhost:abc/foo",
    "exa_mple.com/foo",
    "-example.com/foo",
    "busybox:" + "t" * 129,
    "busybox:-tag",
    "busybox:tag!",
    "busybox:tagé",
    "busybox@sha256:abc",
    f"busybox@md5:{'0' * 32}",
    f"busybox@sha256:{HEX64.upper()}",
    HEX64,
    "busybox\n",
    " busybox",
    "foo bar",
    "example.com/" + "a" * (NAME_TOTAL_LENGTH_MAX - len("example.com/") + 1),
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid_references_are_rejected(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_normalized_named(text)


def test_name_length_limit_counts_the_normalized_name() -> None:
    path = "a" * (NAME_TOTAL_LENGTH_MAX - len("docker.io/library/"))
    assert len(parse_normalized_named(path).name) == NAME_TOTAL_LENGTH_MAX
    with pytest.raises(InvalidReference, match="must not be more than"):
        parse_normalized_named(path + "a")


def test_uppercase_path_message_says_lowercase() -> None:
    with pytest.raises(InvalidReference, match="must be lowercase"):
        parse_normalized_named("quay.io/Foo/bar")


def test_64_hex_is_an_id_not_a_name() -> None:
    with pytest.raises(InvalidReference, match="64-byte hexadecimal"):
        parse_normalized_named(HEX64)


FAMILIAR = [
    ("docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox", "busybox"),
    ("docker.io/user/repo", "user/repo"),
    ("docker.io/library/a/b", "library/a/b"),
    ("quay.io/a/b:t", "quay.io/a/b:t"),
    ("localhost/x", "localhost/x"),
    (f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
    # would read back as registry "foo.bar" / "localhost" without the domain
    ("docker.io/foo.bar/baz", "docker.io/foo.bar/baz"),
    ("docker.io/localhost/x", "docker.io/localhost/x"),
]


@pytest.mark.parametrize(("canonical", "familiar"), FAMILIAR)
def test_familiar(canonical: str, familiar: str) -> None:
    assert parse_named(canonical).familiar() == familiar


@pytest.mark.parametrize(
    "text", ["busybox", "docker.io/busybox", "index.docker.io/library/busybox", "user/repo"]
)
def test_parse_named_requires_canonical_form(text: str) -> None:
    with pytest.raises(InvalidReference, match="canonical"):
        parse_named(text)


@pytest.mark.parametrize(
    ("text", "short"),
    [
        ("busybox", True),
        ("busybox:1", True),
        (f"busybox@{DIGEST}", True),
        ("library/busybox", True),
        ("localhost:5000", True),
        ("localhost/x", False),
        ("quay.io/x", False),
        ("host:5000/x", False),
        ("docker.io/busybox", False),
    ],
)
def test_is_short_name(text: str, short: bool) -> None:
    assert is_short_name(text) is short


def test_tag_and_digest_helpers() -> None:
    ref = parse_normalized_named("busybox")
    assert ref.is_name_only()
    assert str(ref.tag_or_latest()) == "docker.io/library/busybox:latest"
    digested = ref.with_digest(Digest.parse(DIGEST))
    assert digested.tag_or_latest() == digested
    assert str(ref.with_tag("v1")) == "docker.io/library/busybox:v1"
    with pytest.raises(InvalidReference):
        ref.with_tag("bad tag")
    assert parse_normalized_named("busybox:1@" + DIGEST).name_only() == ref
    assert validate_tag("v1.0_rc-1") == "v1.0_rc-1"
    with pytest.raises(InvalidReference):
        validate_tag("v1\n")


@pytest.mark.parametrize("domain", ["quay.io", "localhost:5000", "[::1]:5000", "Reg.Example"])
def test_validate_domain_accepts(domain: str) -> None:
    assert validate_domain(domain) == domain


@pytest.mark.parametrize("domain", ["", "quay.io/x", "host:", "host:port", "a_b.com", "quay.io\n"])
def test_validate_domain_rejects(domain: str) -> None:
    with pytest.raises(InvalidReference):
        validate_domain(domain)
