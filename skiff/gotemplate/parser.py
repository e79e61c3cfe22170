"""Parse a Go template into a tree (Go's ``text/template/parse/parse.go``).

The parser checks at parse time what Go checks at parse time — unknown
functions, undefined variables, ``{{break}}`` outside ``{{range}}``, empty
pipelines — with Go's messages, so a template podman rejects is rejected here
before any output is written.

Beyond Go 1.19 (the Go podman 4.3 is built with) the parser accepts
``{{else with}}`` (Go 1.23); see docs/format.md.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from skiff.gotemplate.lexer import Item, ItemType, LexError, _Lexer
from skiff.gotemplate.nodes import (
    ActionNode,
    BoolNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
)

T = ItemType

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1


class ParseError(Exception):
    """A template does not parse; ``line`` is where Go would report it."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(slots=True)
class Tree:
    """A parsed template: its body and the templates it defines."""

    root: ListNode
    defined: dict[str, ListNode]


@dataclass(slots=True)
class _End(Node):
    def __str__(self) -> str:
        return "{{end}}"


@dataclass(slots=True)
class _Else(Node):
    def __str__(self) -> str:
        return "{{else}}"


def _lex(text: str) -> list[Item]:
    """Tokens up to the first lexical error, which becomes an ERROR token.

    Go's lexer runs in step with the parser, so a parse error before a
    lexical error is the one reported; ending the token list with an ERROR
    token keeps that order.
    """
    lexer = _Lexer(text)
    try:
        return lexer.run()
    except LexError as exc:
        lexer.items.append(Item(T.ERROR, lexer.start, exc.message, exc.line))
        return lexer.items


def parse(text: str, funcs: Collection[str], in_range: bool = False) -> Tree:
    """Parse ``text``; ``funcs`` are the function names it may call.

    ``in_range``: the text is the body of an implicit ``{{range .}}`` (how
    podman runs a user's template once per item), so ``{{break}}`` and
    ``{{continue}}`` are allowed at the top level.
    """
    return _Parser(_lex(text), funcs, in_range).parse()


def _is_empty(body: ListNode) -> bool:
    return all(isinstance(n, TextNode) and not n.text.strip() for n in body.nodes)


class _Parser:
    def __init__(self, items: list[Item], funcs: Collection[str], in_range: bool) -> None:
        self.items = items
        self.i = 0
        self.funcs = funcs
        self.vars = ["$"]
        self.range_depth = 1 if in_range else 0
        self.defined: dict[str, ListNode] = {}
        self.action_line = 0

    # --- token stream ---------------------------------------------------------

    def next(self) -> Item:
        item = self.items[min(self.i, len(self.items) - 1)]
        self.i += 1
        return item

    def backup(self, n: int = 1) -> None:
        self.i -= n

    def peek(self) -> Item:
        return self.items[min(self.i, len(self.items) - 1)]

    def next_non_space(self) -> Item:
        while True:
            item = self.next()
            if item.typ is not T.SPACE:
                return item

    def peek_non_space(self) -> Item:
        item = self.next_non_space()
        self.backup()
        return item

    # --- errors -----------------------------------------------------------------

    def error(self, message: str) -> ParseError:
        line = self.items[min(max(self.i - 1, 0), len(self.items) - 1)].line
        return ParseError(message, line)

    def unexpected(self, item: Item, context: str) -> ParseError:
        if item.typ is T.ERROR:
            extra = ""
            if self.action_line and self.action_line != item.line:
                extra = f" in action started at line {self.action_line}"
                if item.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            return ParseError(item.val + extra, item.line)
        return self.error(f"unexpected {item.describe()} in {context}")

    def expect(self, typ: ItemType, context: str) -> Item:
        item = self.next_non_space()
        if item.typ is not typ:
            raise self.unexpected(item, context)
        return item

    # --- structure ----------------------------------------------------------------

    def parse(self) -> Tree:
        root = ListNode(self.peek().pos)
        while self.peek().typ is not T.EOF:
            if self.peek().typ is T.LEFT_DELIM:
                start = self.i
                self.next()
                if self.next_non_space().typ is T.DEFINE:
                    self.parse_definition()
                    continue
                self.i = start
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                raise self.error(f"unexpected {node}")
            root.nodes.append(node)
        return Tree(root, self.defined)

    def add_definition(self, name: str, body: ListNode) -> None:
        existing = self.defined.get(name)
        if existing is None or _is_empty(existing):
            self.defined[name] = body
        elif not _is_empty(body):
            raise self.error(f"template: multiple definition of template {_quote(name)}")

    def parse_definition(self) -> None:
        context = "define clause"
        item = self.next_non_space()
        if item.typ not in (T.STRING, T.RAW_STRING):
            raise self.unexpected(item, context)
        name = self.unquote(item.val)
        self.expect(T.RIGHT_DELIM, context)
        body, end = self.separate_list()
        if not isinstance(end, _End):
            raise self.error(f"unexpected {end} in {context}")
        self.add_definition(name, body)

    def separate_list(self) -> tuple[ListNode, Node]:
        """A body parsed as its own template: fresh variables, no enclosing range."""
        saved_vars, saved_depth = self.vars, self.range_depth
        self.vars, self.range_depth = ["$"], 0
        try:
            return self.item_list()
        finally:
            self.vars, self.range_depth = saved_vars, saved_depth

    def item_list(self) -> tuple[ListNode, Node]:
        body = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ is not T.EOF:
            node = self.text_or_action()
            if isinstance(node, (_End, _Else)):
                return body, node
            body.nodes.append(node)
        raise self.error("unexpected EOF")

    def text_or_action(self) -> Node:
        item = self.next_non_space()
        if item.typ is T.TEXT:
            return TextNode(item.pos, item.val)
        if item.typ is T.LEFT_DELIM:
            self.action_line = item.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        raise self.unexpected(item, "input")

    def action(self) -> Node:
        item = self.next_non_space()
        typ = item.typ
        if typ is T.BLOCK:
            return self.block_control()
        if typ is T.BREAK or typ is T.CONTINUE:
            return self.loop_control(item)
        if typ is T.ELSE:
            return self.else_control()
        if typ is T.END:
            return _End(self.expect(T.RIGHT_DELIM, "end").pos)
        if typ is T.IF:
            return self.branch("if")
        if typ is T.RANGE:
            return self.branch("range")
        if typ is T.TEMPLATE:
            return self.template_control()
        if typ is T.WITH:
            return self.branch("with")
        self.backup()
        start = self.peek()
        return ActionNode(start.pos, self.pipeline("command", T.RIGHT_DELIM))

    def loop_control(self, item: Item) -> Node:
        word = item.val
        nxt = self.next_non_space()
        if nxt.typ is not T.RIGHT_DELIM:
            raise self.unexpected(nxt, "{{" + word + "}}")
        if self.range_depth == 0:
            raise self.error("{{" + word + "}} outside {{range}}")
        return BreakNode(item.pos) if item.typ is T.BREAK else ContinueNode(item.pos)

    def else_control(self) -> Node:
        peek = self.peek_non_space()
        if peek.typ is T.IF or peek.typ is T.WITH:
            # "{{else if x}}" is "{{else}}{{if x}}...{{end}}" with the end shared
            return _Else(peek.pos)
        item = self.expect(T.RIGHT_DELIM, "else")
        return _Else(item.pos)

    def branch(self, keyword: str) -> BranchNode:
        saved = len(self.vars)
        try:
            pipe = self.pipeline(keyword, T.RIGHT_DELIM)
            if keyword == "range":
                self.range_depth += 1
            body, nxt = self.item_list()
            if keyword == "range":
                self.range_depth -= 1
            else_body: ListNode | None = None
            if isinstance(nxt, _Else):
                follow = self.peek().typ
                if keyword == "if" and follow is T.IF:
                    self.next()
                    else_body = ListNode(nxt.pos, [self.branch("if")])
                elif keyword == "with" and follow is T.WITH:
                    self.next()
                    else_body = ListNode(nxt.pos, [self.branch("with")])
                else:
                    else_body, end = self.item_list()
                    if not isinstance(end, _End):
                        raise self.error(f"expected end; found {end}")
            return BranchNode(pipe.pos, keyword, pipe, body, else_body)
        finally:
            del self.vars[saved:]

    def template_name(self, item: Item, context: str) -> str:
        if item.typ in (T.STRING, T.RAW_STRING):
            return self.unquote(item.val)
        raise self.unexpected(item, context)

    def template_control(self) -> Node:
        context = "template clause"
        item = self.next_non_space()
        name = self.template_name(item, context)
        pipe: PipeNode | None = None
        if self.next_non_space().typ is not T.RIGHT_DELIM:
            self.backup()
            pipe = self.pipeline(context, T.RIGHT_DELIM)
        return TemplateNode(item.pos, name, pipe)

    def block_control(self) -> Node:
        context = "block clause"
        item = self.next_non_space()
        name = self.template_name(item, context)
        pipe = self.pipeline(context, T.RIGHT_DELIM)
        body, end = self.separate_list()
        if not isinstance(end, _End):
            raise self.error(f"unexpected {end} in {context}")
        self.add_definition(name, body)
        return TemplateNode(item.pos, name, pipe)

    # --- pipelines --------------------------------------------------------------

    def pipeline(self, context: str, end: ItemType) -> PipeNode:
        pipe = PipeNode(self.peek_non_space().pos)
        while True:  # declarations: "$x :=", "$x =", "$i, $e :="
            v = self.peek_non_space()
            if v.typ is not T.VARIABLE:
                break
            v_index = self.i
            self.next_non_space()
            nxt = self.peek_non_space()
            if nxt.typ is T.ASSIGN or nxt.typ is T.DECLARE:
                pipe.is_assign = nxt.typ is T.ASSIGN
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, [v.val]))
                self.vars.append(v.val)
                break
            if nxt.typ is T.CHAR and nxt.val == ",":
                self.next_non_space()
                pipe.decl.append(VariableNode(v.pos, [v.val]))
                self.vars.append(v.val)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().typ in (T.VARIABLE, T.RIGHT_DELIM, T.RIGHT_PAREN):
                        continue
                    raise self.error("range can only initialize variables")
                raise self.error(f"too many declarations in {context}")
            self.i = v_index  # "$x" is an operand, not a declaration
            break
        while True:
            item = self.next_non_space()
            if item.typ is end:
                self.check_pipeline(pipe, context)
                return pipe
            if item.typ in (
                T.BOOL,
                T.CHAR_CONSTANT,
                T.DOT,
                T.FIELD,
                T.IDENTIFIER,
                T.NUMBER,
                T.NIL,
                T.RAW_STRING,
                T.STRING,
                T.VARIABLE,
                T.LEFT_PAREN,
            ):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(item, context)

    def check_pipeline(self, pipe: PipeNode, context: str) -> None:
        if not pipe.cmds:
            raise self.error(f"missing value for {context}")
        for i, cmd in enumerate(pipe.cmds[1:]):
            if isinstance(cmd.args[0], (BoolNode, DotNode, NilNode, NumberNode, StringNode)):
                raise self.error(f"non executable command in pipeline stage {i + 2}")

    def command(self) -> CommandNode:
        cmd = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            item = self.next()
            if item.typ is T.SPACE:
                continue
            if item.typ is T.RIGHT_DELIM or item.typ is T.RIGHT_PAREN:
                self.backup()
            elif item.typ is not T.PIPE:
                raise self.unexpected(item, "operand")
            break
        if not cmd.args:
            raise self.error("empty command")
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ is T.FIELD:
            chain_pos = self.peek().pos
            fields: list[str] = []
            while self.peek().typ is T.FIELD:
                fields.append(self.next().val[1:])
            if isinstance(node, FieldNode):
                return FieldNode(chain_pos, node.idents + fields)
            if isinstance(node, VariableNode):
                return VariableNode(chain_pos, node.idents + fields)
            if isinstance(node, (BoolNode, StringNode, NumberNode, NilNode, DotNode)):
                raise self.error(f"unexpected . after term {_quote(str(node))}")
            return ChainNode(chain_pos, node, fields)
        return node

    def term(self) -> Node | None:
        item = self.next_non_space()
        typ = item.typ
        if typ is T.IDENTIFIER:
            if item.val not in self.funcs:
                raise self.error(f"function {_quote(item.val)} not defined")
            return IdentifierNode(item.pos, item.val)
        if typ is T.DOT:
            return DotNode(item.pos)
        if typ is T.NIL:
            return NilNode(item.pos)
        if typ is T.VARIABLE:
            if item.val not in self.vars:
                raise self.error(f"undefined variable {_quote(item.val)}")
            return VariableNode(item.pos, [item.val])
        if typ is T.FIELD:
            return FieldNode(item.pos, [item.val[1:]])
        if typ is T.BOOL:
            return BoolNode(item.pos, item.val == "true")
        if typ is T.NUMBER or typ is T.CHAR_CONSTANT:
            return self.number(item)
        if typ is T.LEFT_PAREN:
            return self.pipeline("parenthesized pipeline", T.RIGHT_PAREN)
        if typ is T.STRING or typ is T.RAW_STRING:
            return StringNode(item.pos, item.val, self.unquote(item.val))
        self.backup()
        return None

    # --- literals -----------------------------------------------------------------

    def unquote(self, quoted: str) -> str:
        try:
            return unquote(quoted)
        except ValueError:
            raise self.error("invalid syntax") from None

    def number(self, item: Item) -> NumberNode:
        text = item.val
        node = NumberNode(item.pos, text)
        if item.typ is T.CHAR_CONSTANT:
            try:
                rune = unquote(text)
            except ValueError:
                raise self.error("invalid syntax") from None
            if len(rune) != 1:
                raise self.error(f"malformed character constant: {text}")
            node.is_char = node.is_int = node.is_float = True
            node.int_value = ord(rune)
            node.float_value = float(node.int_value)
            return node
        if text.endswith("i"):
            raise self.error(f"complex constants are not supported: {_quote(text)}")
        value = _parse_go_int(text)
        if value is not None:
            if not _INT64_MIN <= value <= _UINT64_MAX:
                raise self.error(f"integer overflow: {_quote(text)}")
            if value <= _INT64_MAX:
                node.is_int = True
                node.int_value = value
            node.is_float = True
            node.float_value = float(value)
            return node
        f = _parse_go_float(text)
        if f is None:
            raise self.error(f"illegal number syntax: {_quote(text)}")
        if not any(c in text for c in ".eEpP"):
            raise self.error(f"integer overflow: {_quote(text)}")
        node.is_float = True
        node.float_value = f
        if f == int(f) and _INT64_MIN <= int(f) <= _INT64_MAX:
            node.is_int = True
            node.int_value = int(f)
        return node


def _quote(s: str) -> str:
    from skiff.gotemplate.gofmt import quote

    return quote(s)


def _parse_go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, ...) without the range check, or None."""
    sign = ""
    body = text
    if body[:1] in "+-":
        sign, body = body[0], body[1:]
    if not body or "." in body:
        return None
    try:
        if len(body) > 1 and body[0] == "0" and body[1] not in "xXoObB":
            if "__" in body or body.endswith("_"):
                return None
            value = int(body[1:].replace("_", ""), 8)
        else:
            value = int(body, 0)
    except ValueError:
        return None
    return -value if sign == "-" else value


def _parse_go_float(text: str) -> float | None:
    body = text.lstrip("+-")
    negative = text.startswith("-")
    try:
        if body[:2] in ("0x", "0X"):
            value = float.fromhex(body.replace("_", ""))
        else:
            if body.startswith("_") or body.endswith("_") or "__" in body:
                return None
            value = float(body.replace("_", ""))
    except ValueError:
        return None
    return -value if negative else value


_SIMPLE_ESCAPES = {
    "a": 7,
    "b": 8,
    "f": 12,
    "n": 10,
    "r": 13,
    "t": 9,
    "v": 11,
    "\\": 92,
}


def unquote(quoted: str) -> str:
    """strconv.Unquote for "…", `…` and '…' literals; ValueError if malformed.

    Escapes yield bytes as in Go (``\\xc3\\xa9`` is é); bytes that are not
    UTF-8 become U+FFFD.
    """
    if len(quoted) < 2 or quoted[0] != quoted[-1] or quoted[0] not in "\"'`":
        raise ValueError("invalid syntax")
    q = quoted[0]
    body = quoted[1:-1]
    if q == "`":
        if "`" in body:
            raise ValueError("invalid syntax")
        return body.replace("\r", "")
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c in (q, "\n"):
            raise ValueError("invalid syntax")
        if c != "\\":
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= n:
            raise ValueError("invalid syntax")
        e = body[i + 1]
        i += 2
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
        elif e == q:
            out += e.encode()
        elif e == "x":
            hexpart = body[i : i + 2]
            if len(hexpart) != 2 or not all(h in "0123456789abcdefABCDEF" for h in hexpart):
                raise ValueError("invalid syntax")
            out.append(int(hexpart, 16))
            i += 2
        elif e in "01234567":
            octal = body[i - 1 : i + 2]
            if len(octal) != 3 or not all(o in "01234567" for o in octal):
                raise ValueError("invalid syntax")
            value = int(octal, 8)
            if value > 255:
                raise ValueError("invalid syntax")
            out.append(value)
            i += 2
        elif e in "uU":
            size = 4 if e == "u" else 8
            hexpart = body[i : i + size]
            if len(hexpart) != size or not all(h in "0123456789abcdefABCDEF" for h in hexpart):
                raise ValueError("invalid syntax")
            code = int(hexpart, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ValueError("invalid syntax")
            out += chr(code).encode()
            i += size
        else:
            raise ValueError("invalid syntax")
    result = out.decode("utf-8", "replace")
    if q == "'" and len(result) != 1:
        raise ValueError("invalid syntax")
    return result
