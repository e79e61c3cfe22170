"""Go's text/template, and the small Go libraries podman's output rests on.

podman's ``--format`` is a Go template run by Go's ``text/template`` with
podman's extra functions, printed through Go's ``fmt``, ``encoding/json``
and ``text/tabwriter``; scripts depend on every character of that output.
This package re-implements those pieces for Python data, with no dependency
on the rest of skiff:

    lexer.py, parser.py, nodes.py   the template language (parse once)
    executor.py                     running a parsed template over data
    funcs.py                        builtins (eq, index, printf, ...) and podman's
    values.py                       how Python values stand in for Go values
    gofmt.py                        fmt: Sprint, Sprintf, %v of every value
    gojson.py                       encoding/json output
    tabwriter.py                    text/tabwriter column alignment
    units.py                        go-units: human sizes and durations

Use ``Template(text).execute(data)``; errors are ``TemplateError`` with
Go's message (``template: NAME:1:13: executing "NAME" at <.Nope>: ...``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from skiff.gotemplate.executor import Break, Continue, ExecError, Executor
from skiff.gotemplate.funcs import DEFAULT_FUNCS, Func, FuncError
from skiff.gotemplate.nodes import Node
from skiff.gotemplate.parser import ParseError, parse
from skiff.gotemplate.values import NO_VALUE, Struct

__all__ = [
    "DEFAULT_FUNCS",
    "NO_VALUE",
    "Func",
    "FuncError",
    "Struct",
    "Template",
    "TemplateError",
]


class TemplateError(Exception):
    """A template failed to parse or to execute.

    ``message`` is Go's text for the same failure; ``hint`` (may be None)
    says what would have worked; ``parse`` tells the two kinds apart.
    """

    def __init__(self, message: str, hint: str | None = None, parse: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.parse = parse


class Template:
    """A parsed template, executed as often as needed.

    ``funcs``: the functions the template may call (default: Go's builtins
    and podman's). ``in_range``: the text is the body of podman's implicit
    ``{{range .}}`` (see ``execute_each``), so ``{{break}}`` may appear at
    the top level.
    """

    def __init__(
        self,
        text: str,
        name: str = "template",
        funcs: Mapping[str, Func] | None = None,
        in_range: bool = False,
    ) -> None:
        self.text = text
        self.name = name
        self.funcs = DEFAULT_FUNCS if funcs is None else funcs
        try:
            tree = parse(text, self.funcs, in_range=in_range)
        except ParseError as exc:
            raise TemplateError(f"template: {name}:{exc.line}: {exc.message}", parse=True) from None
        self.root = tree.root
        self.defined = tree.defined

    def _exec_error(self, exc: ExecError) -> TemplateError:
        node: Node | None = exc.node
        if node is None:
            return TemplateError(f"template: {self.name}: {exc.message}", exc.hint)
        before = self.text[: node.pos]
        newline = before.rfind("\n")
        column = node.pos if newline < 0 else node.pos - newline - 1
        line = 1 + before.count("\n")
        return TemplateError(
            f'template: {self.name}:{line}:{column}: executing "{self.name}" '
            f"at <{node}>: {exc.message}",
            exc.hint,
        )

    def execute(self, data: Any) -> str:
        """Run the template once with ``.`` and ``$`` set to ``data``."""
        executor = Executor(self.defined, self.funcs)
        try:
            executor.run(self.root, data, data)
        except ExecError as exc:
            raise self._exec_error(exc) from None
        except (Break, Continue):
            pass  # only possible with in_range: ends the (single) iteration
        except RecursionError:
            raise TemplateError(f"template: {self.name}: nesting too deep") from None
        return "".join(executor.out)

    def execute_each(self, items: Sequence[Any]) -> str:
        """Run the template once per item, as podman's ``{{range .}}...{{end}}``.

        ``.`` is the item and ``$`` the whole sequence; ``{{break}}`` stops,
        ``{{continue}}`` skips to the next item.
        """
        executor = Executor(self.defined, self.funcs)
        try:
            for item in items:
                try:
                    executor.run(self.root, item, items)
                except Continue:
                    continue
        except Break:
            pass
        except ExecError as exc:
            raise self._exec_error(exc) from None
        except RecursionError:
            raise TemplateError(f"template: {self.name}: nesting too deep") from None
        return "".join(executor.out)
