"""The parse tree of a Go template (Go's ``text/template/parse/node.go``).

Every node knows its position in the template text (for "template: 1:13:"
error locations) and prints itself as Go does (``str(node)``), because Go's
execution errors quote the node they failed at: ``at <.Labels.nope>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Node:
    pos: int


@dataclass(slots=True)
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


@dataclass(slots=True)
class TextNode(Node):
    text: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass(slots=True)
class DotNode(Node):
    def __str__(self) -> str:
        return "."


@dataclass(slots=True)
class NilNode(Node):
    def __str__(self) -> str:
        return "nil"


@dataclass(slots=True)
class BoolNode(Node):
    value: bool = False

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(slots=True)
class NumberNode(Node):
    """A numeric constant, with every reading Go's parser found valid.

    A constant is untyped until used: ``1.0`` can fill an ``int`` parameter,
    and on its own it is a float64 because its text has a decimal point.
    """

    text: str = ""
    is_int: bool = False
    is_float: bool = False
    is_char: bool = False
    int_value: int = 0
    float_value: float = 0.0

    def __str__(self) -> str:
        return self.text


@dataclass(slots=True)
class StringNode(Node):
    quoted: str = ""
    text: str = ""

    def __str__(self) -> str:
        return self.quoted


@dataclass(slots=True)
class IdentifierNode(Node):
    name: str = ""

    def __str__(self) -> str:
        return self.name


@dataclass(slots=True)
class FieldNode(Node):
    idents: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


@dataclass(slots=True)
class VariableNode(Node):
    idents: list[str] = field(default_factory=list)  # "$x", then fields

    def __str__(self) -> str:
        return ".".join(self.idents)


@dataclass(slots=True)
class ChainNode(Node):
    """A term followed by fields: ``(index .M "k").Name``."""

    node: Node | None = None
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return inner + "".join("." + f for f in self.fields)


@dataclass(slots=True)
class CommandNode(Node):
    args: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


@dataclass(slots=True)
class PipeNode(Node):
    is_assign: bool = False
    decl: list[VariableNode] = field(default_factory=list)
    cmds: list[CommandNode] = field(default_factory=list)

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)


@dataclass(slots=True)
class ActionNode(Node):
    pipe: PipeNode | None = None

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass(slots=True)
class BranchNode(Node):
    """``if``, ``with`` and ``range``: a pipeline, a body, an else part."""

    keyword: str = ""
    pipe: PipeNode | None = None
    body: ListNode | None = None
    else_body: ListNode | None = None

    def __str__(self) -> str:
        s = "{{" + self.keyword + " " + str(self.pipe) + "}}" + str(self.body)
        if self.else_body is not None:
            s += "{{else}}" + str(self.else_body)
        return s + "{{end}}"


@dataclass(slots=True)
class BreakNode(Node):
    def __str__(self) -> str:
        return "{{break}}"


@dataclass(slots=True)
class ContinueNode(Node):
    def __str__(self) -> str:
        return "{{continue}}"


@dataclass(slots=True)
class TemplateNode(Node):
    """``{{template "name" pipeline}}``: run a named template."""

    name: str = ""
    pipe: PipeNode | None = None

    def __str__(self) -> str:
        from skiff.gotemplate.gofmt import quote

        if self.pipe is None:
            return "{{template " + quote(self.name) + "}}"
        return "{{template " + quote(self.name) + " " + str(self.pipe) + "}}"
