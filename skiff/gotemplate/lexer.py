"""Tokens of Go's text/template language.

The lexer follows Go's ``text/template/parse/lex.go`` closely because the
corner cases users meet are lexical: where a trim marker (``{{- `` and
`` -}}``) needs its space, that a comment must touch its delimiters, that
``{{.Tag}`` fails with "bad character U+007D '}'", that newlines are allowed
inside an action. Error messages use Go's wording so a podman user
recognises them.

Positions are offsets into the template text (characters, where Go counts
bytes: the two agree for ASCII templates).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto


class ItemType(Enum):
    ERROR = auto()
    BOOL = auto()
    CHAR = auto()  # a printable ASCII character: ',' and the like
    CHAR_CONSTANT = auto()
    COMMENT = auto()
    ASSIGN = auto()  # =
    DECLARE = auto()  # :=
    EOF = auto()
    FIELD = auto()  # .Name
    IDENTIFIER = auto()
    LEFT_DELIM = auto()
    LEFT_PAREN = auto()
    NUMBER = auto()
    PIPE = auto()
    RAW_STRING = auto()
    RIGHT_DELIM = auto()
    RIGHT_PAREN = auto()
    SPACE = auto()
    STRING = auto()
    TEXT = auto()
    VARIABLE = auto()  # $name, or $ alone
    # keywords
    BLOCK = auto()
    BREAK = auto()
    CONTINUE = auto()
    DOT = auto()
    DEFINE = auto()
    ELSE = auto()
    END = auto()
    IF = auto()
    NIL = auto()
    RANGE = auto()
    TEMPLATE = auto()
    WITH = auto()


KEYWORDS = {
    "block": ItemType.BLOCK,
    "break": ItemType.BREAK,
    "continue": ItemType.CONTINUE,
    "define": ItemType.DEFINE,
    "else": ItemType.ELSE,
    "end": ItemType.END,
    "if": ItemType.IF,
    "range": ItemType.RANGE,
    "nil": ItemType.NIL,
    "template": ItemType.TEMPLATE,
    "with": ItemType.WITH,
}

_KEYWORD_TYPES = frozenset(KEYWORDS.values()) | {ItemType.DOT}

LEFT_DELIM = "{{"
RIGHT_DELIM = "}}"
LEFT_COMMENT = "/*"
RIGHT_COMMENT = "*/"
SPACE_CHARS = " \t\r\n"
TRIM_MARKER_LEN = 2  # "-" and one space


@dataclass(frozen=True, slots=True)
class Item:
    """One token: its type, its text, and where it starts."""

    typ: ItemType
    pos: int
    val: str
    line: int

    def describe(self) -> str:
        """The token as Go's parser names it in "unexpected X in Y" errors."""
        if self.typ is ItemType.EOF:
            return "EOF"
        if self.typ is ItemType.ERROR:
            return self.val
        if self.typ in _KEYWORD_TYPES:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


class LexError(Exception):
    """A lexical error; the parser reports it with the line it occurred on."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def go_quote(s: str) -> str:
    """Go's %q of a string (strconv.Quote), enough for error messages."""
    from skiff.gotemplate.gofmt import quote

    return quote(s)


def char_u(c: str) -> str:
    """Go's %#U of a rune: U+007D '}'."""
    code = ord(c)
    if c.isprintable():
        return f"U+{code:04X} '{c}'"
    return f"U+{code:04X}"


def _is_space(c: str) -> bool:
    return c in SPACE_CHARS and c != ""


def _is_alnum(c: str) -> bool:
    """Go's isAlphaNumeric: underscore, a letter, or a decimal digit (Nd)."""
    return c == "_" or c.isalpha() or c.isdecimal()


def _has_left_trim(text: str, pos: int) -> bool:
    return text.startswith("-", pos) and pos + 1 < len(text) and text[pos + 1] in SPACE_CHARS


def _has_right_trim(text: str, pos: int) -> bool:
    return pos + 1 < len(text) and text[pos] in SPACE_CHARS and text[pos + 1] == "-"


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.start = 0
        self.items: list[Item] = []
        self.paren_depth = 0

    # --- helpers ------------------------------------------------------------

    def line_at(self, pos: int) -> int:
        return 1 + self.text.count("\n", 0, pos)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def emit(self, typ: ItemType, val: str | None = None) -> None:
        value = self.text[self.start : self.pos] if val is None else val
        self.items.append(Item(typ, self.start, value, self.line_at(self.start)))
        self.start = self.pos

    def error(self, message: str) -> LexError:
        return LexError(message, self.line_at(self.start))

    def at_right_delim(self) -> tuple[bool, bool]:
        """(at a closing delimiter, it carries a trim marker)."""
        if _has_right_trim(self.text, self.pos) and self.text.startswith(
            RIGHT_DELIM, self.pos + TRIM_MARKER_LEN
        ):
            return True, True
        if self.text.startswith(RIGHT_DELIM, self.pos):
            return True, False
        return False, False

    def at_terminator(self) -> bool:
        c = self.peek()
        if c == "" or _is_space(c) or c in ".,|:()":
            return True
        return self.text.startswith(RIGHT_DELIM, self.pos)

    def skip_leading_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in SPACE_CHARS:
            self.pos += 1
        self.start = self.pos

    # --- states ---------------------------------------------------------------

    def run(self) -> list[Item]:
        text = self.text
        while True:
            x = text.find(LEFT_DELIM, self.pos)
            if x < 0:
                self.pos = len(text)
                if self.pos > self.start:
                    self.emit(ItemType.TEXT)
                self.emit(ItemType.EOF, "")
                return self.items
            trim = _has_left_trim(text, x + len(LEFT_DELIM))
            chunk = text[self.start : x]
            if trim:
                chunk = chunk.rstrip(SPACE_CHARS)
            if chunk:
                self.items.append(Item(ItemType.TEXT, self.start, chunk, self.line_at(self.start)))
            self.pos = x
            self.start = x
            self.lex_left_delim(trim)

    def lex_left_delim(self, trim: bool) -> None:
        self.pos += len(LEFT_DELIM)
        after_marker = TRIM_MARKER_LEN if trim else 0
        if self.text.startswith(LEFT_COMMENT, self.pos + after_marker):
            self.pos += after_marker
            self.start = self.pos
            self.lex_comment()
            return
        self.emit(ItemType.LEFT_DELIM)
        self.pos += after_marker
        self.start = self.pos
        self.paren_depth = 0
        self.lex_inside_action()

    def lex_comment(self) -> None:
        self.pos += len(LEFT_COMMENT)
        x = self.text.find(RIGHT_COMMENT, self.pos)
        if x < 0:
            raise self.error("unclosed comment")
        self.pos = x + len(RIGHT_COMMENT)
        delim, trim = self.at_right_delim()
        if not delim:
            raise self.error("comment ends before closing delimiter")
        self.start = self.pos  # comments are dropped: nothing is emitted
        if trim:
            self.pos += TRIM_MARKER_LEN
        self.pos += len(RIGHT_DELIM)
        self.start = self.pos
        if trim:
            self.skip_leading_space()

    def lex_inside_action(self) -> None:
        text = self.text
        while True:
            delim, trim = self.at_right_delim()
            if delim:
                if self.paren_depth != 0:
                    raise self.error("unclosed left paren")
                if trim:
                    self.pos += TRIM_MARKER_LEN
                    self.start = self.pos
                self.pos += len(RIGHT_DELIM)
                self.emit(ItemType.RIGHT_DELIM)
                if trim:
                    self.skip_leading_space()
                return
            c = self.peek()
            if c == "":
                raise self.error("unclosed action")
            if _is_space(c):
                self.lex_space()
                continue
            self.pos += 1
            if c == "=":
                self.emit(ItemType.ASSIGN)
            elif c == ":":
                if self.peek() != "=":
                    raise self.error("expected :=")
                self.pos += 1
                self.emit(ItemType.DECLARE)
            elif c == "|":
                self.emit(ItemType.PIPE)
            elif c == '"':
                self.lex_quote()
            elif c == "`":
                self.lex_raw_quote()
            elif c == "$":
                self.lex_field_or_variable(ItemType.VARIABLE)
            elif c == "'":
                self.lex_char()
            elif c == ".":
                if self.pos < len(text) and text[self.pos].isdigit() and text[self.pos].isascii():
                    self.pos -= 1
                    self.lex_number()
                else:
                    self.lex_field_or_variable(ItemType.FIELD)
            elif c in "+-" or (c.isdigit() and c.isascii()):
                self.pos -= 1
                self.lex_number()
            elif _is_alnum(c):
                self.pos -= 1
                self.lex_identifier()
            elif c == "(":
                self.paren_depth += 1
                self.emit(ItemType.LEFT_PAREN)
            elif c == ")":
                self.paren_depth -= 1
                if self.paren_depth < 0:
                    raise self.error("unexpected right paren")
                self.emit(ItemType.RIGHT_PAREN)
            elif c.isascii() and c.isprintable():
                self.emit(ItemType.CHAR)
            else:
                raise self.error(f"unrecognized character in action: {char_u(c)}")

    def lex_space(self) -> None:
        text = self.text
        spaces = 0
        while self.pos < len(text) and _is_space(text[self.pos]):
            self.pos += 1
            spaces += 1
        # A space followed by "-}}" belongs to the trim marker.
        if _has_right_trim(text, self.pos - 1) and text.startswith(
            RIGHT_DELIM, self.pos - 1 + TRIM_MARKER_LEN
        ):
            self.pos -= 1
            if spaces == 1:
                return
        self.emit(ItemType.SPACE)

    def lex_identifier(self) -> None:
        text = self.text
        while self.pos < len(text) and _is_alnum(text[self.pos]):
            self.pos += 1
        if not self.at_terminator():
            raise self.error(f"bad character {char_u(self.peek())}")
        word = text[self.start : self.pos]
        if word in KEYWORDS:
            self.emit(KEYWORDS[word])
        elif word in ("true", "false"):
            self.emit(ItemType.BOOL)
        else:
            self.emit(ItemType.IDENTIFIER)

    def lex_field_or_variable(self, typ: ItemType) -> None:
        if self.at_terminator():
            self.emit(ItemType.VARIABLE if typ is ItemType.VARIABLE else ItemType.DOT)
            return
        text = self.text
        while self.pos < len(text) and _is_alnum(text[self.pos]):
            self.pos += 1
        if not self.at_terminator():
            raise self.error(f"bad character {char_u(self.peek())}")
        self.emit(typ)

    def lex_quote(self) -> None:
        self._lex_escaped('"', "unterminated quoted string")
        self.emit(ItemType.STRING)

    def lex_raw_quote(self) -> None:
        x = self.text.find("`", self.pos)
        if x < 0:
            raise self.error("unterminated raw quoted string")
        self.pos = x + 1
        self.emit(ItemType.RAW_STRING)

    def lex_char(self) -> None:
        self._lex_escaped("'", "unterminated character constant")
        self.emit(ItemType.CHAR_CONSTANT)

    def _lex_escaped(self, quote: str, unterminated: str) -> None:
        """Past the closing ``quote`` of a "string" or 'c' constant, whose opening
        quote is behind ``pos``: a backslash escapes the next character, and the
        end of the text or a newline before the closing quote is an error."""
        text = self.text
        while True:
            c = text[self.pos] if self.pos < len(text) else ""
            self.pos += 1
            if c == "\\":
                nxt = text[self.pos] if self.pos < len(text) else ""
                self.pos += 1
                if nxt not in ("", "\n"):
                    continue
                raise self.error(unterminated)
            if c in ("", "\n"):
                raise self.error(unterminated)
            if c == quote:
                break

    def accept(self, valid: str) -> bool:
        if self.pos < len(self.text) and self.text[self.pos] in valid:
            self.pos += 1
            return True
        return False

    def accept_run(self, valid: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in valid:
            self.pos += 1

    def lex_number(self) -> None:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if self.pos < len(self.text) and _is_alnum(self.text[self.pos]):
            self.pos += 1
            raise self.error(f"bad number syntax: {go_quote(self.text[self.start : self.pos])}")
        self.emit(ItemType.NUMBER)


def lex(text: str) -> list[Item]:
    """All tokens of ``text``, ending with EOF; raises LexError."""
    return _Lexer(text).run()
