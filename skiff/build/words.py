"""Variable expansion and word splitting, as a Containerfile builder does it.

The builder — not a shell — expands ``$VAR`` in the arguments of ADD, COPY,
ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and ARG (and in
the flags of COPY/ADD and RUN --mount). RUN, CMD, ENTRYPOINT, SHELL,
HEALTHCHECK, MAINTAINER and ONBUILD keep their text: the shell in the
container expands it, or a later build does. Expansion happens at dispatch
time, because ARG and ENV values change as a build goes on; the parser keeps
raw text and the executor calls these functions with the environment of the
moment.

The rules are those of the small shell lexer Docker and buildah share:

* ``$NAME`` and ``${NAME}``; a name is letters, digits and ``_``, or a
  single digit (``$12`` is ``$1`` then ``2``); a ``$`` not followed by a
  name stays a ``$`` (``$@``, ``$-``, a trailing ``$``).
* ``${NAME:-word}`` (word if NAME is unset or empty) and ``${NAME:+word}``
  (word if NAME is set and not empty); ``word`` is itself expanded, quotes
  and escapes included. These are the only modifiers buildah 1.28 accepts:
  ``${NAME-word}``, ``${NAME:?word}``, ``${NAME#pat}`` and the like are
  errors, as there (BuildKit accepts some of them; a Containerfile that
  uses them would build differently with buildah, so skiff refuses them).
* Single quotes keep everything literal; double quotes keep everything but
  ``$`` expansions and the escapes ``\\"``, ``\\$`` and ``\\\\`` (any other
  escape stays as written). Outside quotes the escape character makes the
  next character literal and vanishes.
* The escape character is the one the ``# escape=`` directive chose.
  buildah 1.28 always uses a backslash here (it ignores the directive for
  expansion); skiff follows the Dockerfile reference and BuildKit.

``expand`` returns one string (quotes removed, whitespace kept), as the
builder does for single-valued arguments; ``split_words`` also splits on
unquoted whitespace, including whitespace that came out of a variable, as
for EXPOSE.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from skiff.errors import BuildError

__all__ = [
    "EXPANDING_INSTRUCTIONS",
    "ExpansionError",
    "expand",
    "expand_words",
    "split_words",
]

EXPANDING_INSTRUCTIONS: frozenset[str] = frozenset(
    {
        "ADD",
        "ARG",
        "COPY",
        "ENV",
        "EXPOSE",
        "FROM",
        "LABEL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)
"""Instructions whose arguments the builder expands (upper case keywords)."""


class ExpansionError(BuildError):
    """A word could not be expanded: unbalanced quotes or braces, or an
    unsupported ``${...}`` form. The message names the word; the executor
    prefixes the instruction's location."""


_EOF = ""


def _is_name_char(ch: str) -> bool:
    return ch.isalpha() or ch.isdecimal() or ch == "_"


class _Words:
    """Collects the words of ``split_words``.

    Characters from quotes and escapes are "raw": they never split a word,
    and an empty quoted string still makes a word. Characters that came
    from a variable split on whitespace like unquoted text does.
    """

    def __init__(self) -> None:
        self.words: list[str] = []
        self.word = ""
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            # An empty word started by "" is not ended by whitespace: the
            # lexer Docker uses behaves so, and `a "" b` gives ["a", "b"].
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_expanded(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.in_word:
            return [*self.words, self.word]
        return list(self.words)


class _Lexer:
    """One pass over one word. The ``raw_*`` and ``keep_unset`` switches
    serve heredoc detection (quotes and escapes kept, ``$VAR`` left alone)."""

    def __init__(
        self,
        text: str,
        env: Mapping[str, str],
        escape: str,
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        keep_unset: bool = False,
    ) -> None:
        if escape not in ("\\", "`"):
            raise ValueError(f"escape must be a backslash or a backtick, not {escape!r}")
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.keep_unset = keep_unset

    # -- scanning ------------------------------------------------------

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def fail(self, what: str) -> ExpansionError:
        return ExpansionError(
            f"cannot expand {self.text!r}: {what}",
            "quote or escape the text, or use ${NAME}, ${NAME:-default} or ${NAME:+alternative}",
        )

    # -- grammar -------------------------------------------------------

    def run(self, stop: str = _EOF) -> tuple[str, list[str]]:
        """Read up to ``stop`` (consumed) or the end: (joined text, words)."""
        result: list[str] = []
        words = _Words()
        while True:
            ch = self.peek()
            if ch == _EOF:
                if stop:
                    raise self.fail(f"unexpected end of text while looking for matching {stop}")
                break
            if stop and ch == stop:
                self.next()
                break
            if ch == "'":
                piece = self.single_quoted()
                words.add_raw(piece)
            elif ch == '"':
                piece = self.double_quoted()
                words.add_raw(piece)
            elif ch == "$":
                piece = self.dollar()
                words.add_expanded(piece)
            else:
                self.next()
                if ch == self.escape:
                    if self.raw_escapes:
                        result.append(ch)
                        words.add_raw(ch)
                    ch = self.next()
                    if ch == _EOF:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                piece = ch
            result.append(piece)
        return "".join(result), words.result()

    def single_quoted(self) -> str:
        # Everything up to the next single quote, literally; it cannot be escaped.
        quote = self.next()
        out = [quote] if self.raw_quotes else []
        while True:
            ch = self.next()
            if ch == _EOF:
                raise self.fail("unexpected end of text while looking for matching single-quote")
            if ch == "'":
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quoted(self) -> str:
        out: list[str] = []
        quote = self.next()
        if self.raw_quotes:
            out.append(quote)
        while True:
            ch = self.peek()
            if ch == _EOF:
                raise self.fail("unexpected end of text while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.next()
            if ch == self.escape:
                following = self.peek()
                if following == _EOF:
                    continue  # an escape at the very end is dropped
                if following in ('"', "$", self.escape):
                    if self.raw_escapes:
                        out.append(ch)
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        ch = self.peek()
        if ch and ch.isdecimal():
            return self.next()  # positional: one digit only
        start = self.pos
        while self.pos < len(self.text) and _is_name_char(self.text[self.pos]):
            self.pos += 1
        return self.text[start : self.pos]

    def lookup(self, name: str) -> str | None:
        return self.env.get(name)

    def dollar(self) -> str:
        self.next()  # the $
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.keep_unset else ""
            return value
        self.next()  # the {
        name = self.name()
        ch = self.peek()
        if ch == "}":
            self.next()
            value = self.lookup(name)
            if value is None:
                return "${" + name + "}" if self.keep_unset else ""
            return value
        if ch == ":":
            self.next()
            modifier = self.next()
            word, _ = self.run("}")
            value = self.lookup(name)
            if modifier == "-":
                if value is None and self.keep_unset:
                    return "${" + name + ":-" + word + "}"
                return value if value else word
            if modifier == "+":
                if value is None and self.keep_unset:
                    return "${" + name + ":+" + word + "}"
                return word if value else ""
            raise self.fail(
                f"unsupported modifier ({modifier or 'end of text'}) in substitution ${{{name}:{modifier}...}}"
            )
        if ch == _EOF:
            raise self.fail("missing '}' in substitution")
        raise self.fail(
            f"unsupported substitution ${{{name}{ch}...}} (only ${{NAME}}, ${{NAME:-word}} and ${{NAME:+word}})"
        )


def expand(text: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """Expand ``text`` as one word: variables replaced, quotes and escapes
    removed, whitespace kept (Docker's ProcessWord). Unset variables expand
    to nothing. Raises ExpansionError for malformed text."""
    result, _ = _Lexer(text, env, escape).run()
    return result


def split_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand ``text`` and split it into words on unquoted whitespace
    (Docker's ProcessWords): quotes group words, whitespace inside a
    variable's value splits, ``""`` alone is an empty word."""
    _, words = _Lexer(text, env, escape).run()
    return words


def expand_words(words: Iterable[str], env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """Expand each already-split argument as one word (COPY/ADD sources and
    destination, VOLUME paths): ``COPY $FILES /d`` with FILES="a b" names
    one source called ``a b``, as with buildah and Docker."""
    return [expand(word, env, escape=escape) for word in words]


def raw_words(text: str, escape: str = "\\") -> list[str]:
    """Split ``text`` into words keeping quotes, escapes and ``$VAR`` as
    written; used to find heredoc markers (``<<EOF``) in an instruction.
    Returns [] when the text does not lex (an unbalanced quote)."""
    try:
        _, words = _Lexer(
            text, {}, escape, raw_quotes=True, raw_escapes=True, keep_unset=True
        ).run()
    except ExpansionError:
        return []
    return words


def unquote_word(text: str) -> tuple[list[str], list[str]]:
    """The words of ``text`` with quotes removed and with quotes kept (no
    variables expanded): a heredoc delimiter is quoted when the two differ
    in their number of quote characters."""
    plain = _Lexer(text, {}, "\\", keep_unset=True).run()[1]
    raw = _Lexer(text, {}, "\\", raw_quotes=True, keep_unset=True).run()[1]
    return plain, raw
