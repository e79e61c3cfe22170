"""Variable expansion and word splitting (skiff.build.words).

Expected values marked "buildah" were observed with buildah 1.28.2 (``buildah
bud`` of LABEL lines, then ``buildah inspect``); tests/interop/
test_build_buildah.py replays the table against the real tool.
"""

from __future__ import annotations

import pytest

from skiff.build.words import (
    EXPANDING_INSTRUCTIONS,
    ExpansionError,
    expand,
    expand_words,
    raw_words,
    split_words,
)
from skiff.errors import BuildError

ENV = {"A": "abc", "E": "", "1": "one", "SP": " 82  83 ", "Q": 'say "hi"'}

# (text, expected) — expand(text, ENV)
EXPAND_CASES = [
    # plain variables (buildah)
    ("$A", "abc"),
    ("${A}", "abc"),
    ("${A}b", "abcb"),
    ("$Ab", ""),  # the name is Ab
    ("$A_b", ""),  # the name is A_b
    ("$A$A", "abcabc"),
    ("$U", ""),  # unset: nothing
    ("x${U}y", "xy"),
    ("$1", "one"),
    ("$12", "one2"),  # positional names are one digit long
    ("${1}2", "one2"),
    ("$", "$"),
    ("a$", "a$"),
    ("$@", "$@"),  # not a name: kept
    ("$-", "$-"),
    ("$ A", "$ A"),
    ("${}", ""),  # buildah: an empty name, unset
    ("$é", ""),  # letters beyond ASCII make names too
    # :- and :+ (buildah)
    ("${A:-d}", "abc"),
    ("${U:-d}", "d"),
    ("${E:-d}", "d"),  # empty counts as unset for :-
    ("${A:+p}", "p"),
    ("${U:+p}", ""),
    ("${E:+p}", ""),
    ("${A:-${E:-nest}}", "abc"),
    ("${U:-$A}", "abc"),
    ("${U:-${U:-${A}}}", "abc"),
    ("${U:-a b}", "a b"),
    ("${U:-'x'}", "x"),  # quotes inside the word are processed
    ('${U:-"q q"}', "q q"),
    ("${U:-'$A'}", "$A"),
    ("${U:-\\}}", "}"),  # an escaped brace does not close
    ("${U:-$}", "$"),
    ("${A}}", "abc}"),
    ("${U:-a}b}", "ab}"),
    ('${A:-"x}"}', "abc"),
    ('${U:-"x}"}', "x}"),
    # quotes (buildah)
    ("'$A'", "$A"),
    ("'a\\b'", "a\\b"),  # no escapes inside single quotes
    ('"$A"', "abc"),
    ('"${A} x"', "abc x"),
    ('"\\$A"', "$A"),
    ('"a\\nb"', "a\\nb"),  # unknown escapes stay in double quotes
    ('"a\\"b"', 'a"b'),
    ('"a\\\\b"', "a\\b"),
    ('"a\\\\\\"b"', 'a\\"b'),
    ('"\\`"', "\\`"),
    ('a"b c"d', "ab cd"),
    ('""', ""),
    ("''", ""),
    ('"$Q"', 'say "hi"'),  # values are not re-parsed
    ("$Q", 'say "hi"'),
    # escapes outside quotes (buildah)
    ("\\$A", "$A"),
    ("a\\nb", "anb"),
    ("a\\ b", "a b"),
    ("a\\\\b", "a\\b"),
    ("a\\", "a"),  # a trailing escape vanishes
    ("\\'$A\\'", "'abc'"),
    # whitespace is kept by expand
    ("  a   b  ", "  a   b  "),
    ("$SP", " 82  83 "),
]


@pytest.mark.parametrize(("text", "expected"), EXPAND_CASES)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, ENV) == expected


# errors buildah also reports (its messages differ in wording only)
ERROR_CASES = [
    ("${A-d}", "unsupported substitution"),  # buildah: Missing ':' in substitution
    ("${U-d}", "unsupported substitution"),
    ("${U+d}", "unsupported substitution"),
    ("${A#a}", "unsupported substitution"),
    ("${A%c}", "unsupported substitution"),
    ("${A/a/b}", "unsupported substitution"),
    ("${A:?msg}", "unsupported modifier (?)"),  # buildah: Unsupported modifier (?)
    ("${A:=x}", "unsupported modifier (=)"),
    ("${A", "missing '}'"),
    ("${A:-x", "matching }"),
    ("${:}", "matching }"),
    ("${A:}", "matching }"),
    ('"abc', "double-quote"),
    ("'abc", "single-quote"),
    ('${U:-"x}', "double-quote"),
    ("${=}", "unsupported substitution"),
]


@pytest.mark.parametrize(("text", "fragment"), ERROR_CASES)
def test_expand_errors(text: str, fragment: str) -> None:
    with pytest.raises(ExpansionError) as info:
        expand(text, ENV)
    assert fragment in info.value.message
    assert repr(text) in info.value.message  # names the word
    assert info.value.hint
    assert isinstance(info.value, BuildError)


SPLIT_CASES = [
    ("a b  c", ["a", "b", "c"]),
    ("  a  ", ["a"]),
    ("", []),
    ('"a b" c', ["a b", "c"]),
    ("'a b'c d", ["a bc", "d"]),
    ("a\\ b c", ["a b", "c"]),
    ('80$SP"x"', ["80", "82", "83", "x"]),  # buildah: EXPOSE 80$P"x"
    ('"80$SP"', ["80 82  83 "]),  # buildah: EXPOSE "80$P"
    ("$SP", ["82", "83"]),
    ('a "" b', ["a", "b"]),  # an empty quoted word is not ended by the blank
    ('a ""', ["a", ""]),
    ('""', [""]),
    ("$U", []),
    ("x$U y", ["x", "y"]),
    ("${U:-p q}", ["p", "q"]),  # a default's blanks split like a value's
    ("${U:-'p q'}", ["p", "q"]),  # quotes inside ${} do not protect from splitting
]


@pytest.mark.parametrize(("text", "expected"), SPLIT_CASES)
def test_split_words(text: str, expected: list[str]) -> None:
    assert split_words(text, ENV) == expected


def test_split_words_errors() -> None:
    with pytest.raises(ExpansionError):
        split_words('a "b', ENV)


def test_expand_words_keeps_each_word_whole() -> None:
    # buildah: COPY $F $D/ with F="a b" looks for one source named "a b"
    env = {"F": "a b", "D": "/dst"}
    assert expand_words(["$F", "$D/", '"x y"'], env) == ["a b", "/dst/", "x y"]


BACKTICK_CASES = [
    ("a`$b", {"b": "B"}, "a$b"),
    ('"a`"b"', {}, 'a"b'),
    ('"``"', {}, "`"),
    ('"a`b"', {}, "a`b"),
    ("a\\b", {}, "a\\b"),  # a backslash is an ordinary character then
    ('"a\\"', {}, "a\\"),
    ("C:\\path`\\x", {}, "C:\\path\\x"),
    ("a``b", {}, "a`b"),
]


@pytest.mark.parametrize(("text", "env", "expected"), BACKTICK_CASES)
def test_backtick_escape(text: str, env: dict[str, str], expected: str) -> None:
    # The Dockerfile reference and BuildKit honour `# escape=`` here;
    # buildah 1.28 always uses a backslash (documented in docs/containerfile.md).
    assert expand(text, env, escape="`") == expected


def test_escape_must_be_backslash_or_backtick() -> None:
    with pytest.raises(ValueError, match="escape"):
        expand("x", {}, escape="^")


def test_env_is_not_case_folded() -> None:
    assert expand("$a-$A", {"A": "up"}) == "-up"


def test_values_are_not_expanded_twice() -> None:
    assert expand("$X", {"X": "$Y", "Y": "no"}) == "$Y"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("RUN <<EOF", ["RUN", "<<EOF"]),
        ('COPY <<"EOF" /x', ["COPY", '<<"EOF"', "/x"]),
        ("RUN cat <<'A B' $X", ["RUN", "cat", "<<'A B'", "$X"]),
        ("RUN a\\ b", ["RUN", "a\\ b"]),
        ("RUN ${X:-y}", ["RUN", "${X:-y}"]),
        ('RUN echo "unbalanced', []),
    ],
)
def test_raw_words_keep_text(line: str, words: list[str]) -> None:
    assert raw_words(line) == words


def test_expanding_instructions() -> None:
    assert {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER"} <= (
        EXPANDING_INSTRUCTIONS
    )
    assert {"VOLUME", "WORKDIR", "ARG"} <= EXPANDING_INSTRUCTIONS
    for keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "ONBUILD", "HEALTHCHECK", "MAINTAINER"):
        assert keyword not in EXPANDING_INSTRUCTIONS
