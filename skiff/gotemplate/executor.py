"""Run a parsed template over data (Go's ``text/template/exec.go``).

The walk mirrors Go's: pipelines pass their value as the last argument of
the next command, variables live on a stack that ``if``/``with``/``range``
unwind, ``range`` visits maps in key order and binds ``$i, $e``, arguments
are checked against the function's parameter types before the call.
Errors name the node they failed at (``at <.Nope>``) and its position.

How Python data stands in for Go data is in ``values.py``.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping, Sequence
from typing import Any

from skiff.gotemplate.funcs import GO_TYPE_NAMES, Func, FuncError
from skiff.gotemplate.gofmt import format_value
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
from skiff.gotemplate.values import (
    NO_VALUE,
    Struct,
    is_struct,
    is_true,
    sorted_items,
    struct_fields,
    type_name,
)

MAX_TEMPLATE_DEPTH = 100


class ExecError(Exception):
    """Execution failed at ``node``; ``hint`` may say what would have worked."""

    def __init__(self, message: str, node: Node | None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.hint = hint


class _Missing:
    """No final value: the command is the first of its pipeline."""


_MISSING: Any = _Missing()


class Break(Exception):
    """``{{break}}``: leave the innermost range."""


class Continue(Exception):
    """``{{continue}}``: next iteration of the innermost range."""


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """``CreatedAt`` → ``created_at``, ``ID`` → ``id``, ``HTTPPort`` → ``http_port``."""
    return _CAMEL.sub("_", name).lower()


def _struct_hint(value: object) -> str | None:
    try:
        names = [name for name, _ in struct_fields(value)] if is_struct(value) else None
    except TypeError:
        names = None
    if names is None and hasattr(value, "__dict__"):
        names = [n for n in vars(value) if not n.startswith("_")]
    if not names:
        return None
    return "the fields are: " + ", ".join(names)


def _method_arity(method: types.MethodType) -> tuple[int, int, bool] | None:
    """(required, maximum, variadic) positional arguments of a bound method."""
    code = getattr(method.__func__, "__code__", None)
    if code is None:
        return None
    total = code.co_argcount - 1
    defaults = len(method.__func__.__defaults__ or ())
    variadic = bool(code.co_flags & 0x04)
    return total - defaults, total, variadic


class Executor:
    """One execution: output buffer, variable stack, current node."""

    def __init__(self, defined: Mapping[str, ListNode], funcs: Mapping[str, Func]) -> None:
        self.defined = defined
        self.funcs = funcs
        self.out: list[str] = []
        self.vars: list[tuple[str, Any]] = []
        self.node: Node | None = None
        self.depth = 0

    # --- errors and variables ------------------------------------------------------

    def error(self, message: str, hint: str | None = None) -> ExecError:
        return ExecError(message, self.node, hint)

    def push(self, name: str, value: Any) -> None:
        self.vars.append((name, value))

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.error(f"undefined variable: {name}")

    def set_top_var(self, n: int, value: Any) -> None:
        name = self.vars[-n][0]
        self.vars[-n] = (name, value)

    def var_value(self, name: str) -> Any:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                return self.vars[i][1]
        raise self.error(f"undefined variable: {name}")

    # --- statements -------------------------------------------------------------------

    def run(self, body: ListNode, dot: Any, root: Any) -> None:
        """Execute ``body`` with ``dot``; ``$`` is ``root``."""
        self.vars = [("$", root)]
        self.walk(dot, body)

    def walk(self, dot: Any, node: Node) -> None:
        if isinstance(node, TextNode):
            self.out.append(node.text)
        elif isinstance(node, ActionNode):
            assert node.pipe is not None
            value = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, value)
        elif isinstance(node, ListNode):
            for child in node.nodes:
                self.walk(dot, child)
        elif isinstance(node, BranchNode):
            if node.keyword == "range":
                self.walk_range(dot, node)
            else:
                self.walk_if_or_with(dot, node)
        elif isinstance(node, BreakNode):
            raise Break
        elif isinstance(node, ContinueNode):
            raise Continue
        elif isinstance(node, TemplateNode):
            self.walk_template(dot, node)
        else:
            raise self.error(f"unknown node: {node}")

    def print_value(self, node: Node, value: Any) -> None:
        self.node = node
        if value is NO_VALUE:
            self.out.append("<no value>")
            return
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
            raise self.error(f"can't print {node} of type func")
        self.out.append(format_value(value))

    def walk_if_or_with(self, dot: Any, node: BranchNode) -> None:
        mark = len(self.vars)
        try:
            assert node.pipe is not None and node.body is not None
            value = self.eval_pipeline(dot, node.pipe)
            if is_true(value):
                self.walk(value if node.keyword == "with" else dot, node.body)
            elif node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: Any, node: BranchNode) -> None:
        mark = len(self.vars)
        try:
            assert node.pipe is not None and node.body is not None
            pipe = node.pipe
            value = self.eval_pipeline(dot, pipe)
            inner = len(self.vars)
            if isinstance(value, (list, tuple)):
                pairs: Any = enumerate(value)
            elif isinstance(value, Mapping) and not isinstance(value, Struct):
                pairs = sorted_items(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                if len(pipe.decl) > 1:
                    raise self.error(f"can't use {value} to iterate over more than one variable")
                pairs = ((i, i) for i in range(value))
            elif value is None or value is NO_VALUE:
                pairs = ()
            else:
                raise self.error(f"range can't iterate over {format_value(value)}")
            ran = False
            try:
                for index, elem in pairs:
                    ran = True
                    self.one_iteration(pipe, node.body, index, elem, inner)
            except Break:
                pass
            if not ran and node.else_body is not None:
                self.walk(dot, node.else_body)
        finally:
            del self.vars[mark:]

    def one_iteration(
        self, pipe: PipeNode, body: ListNode, index: Any, elem: Any, mark: int
    ) -> None:
        decl = pipe.decl
        if decl:
            if pipe.is_assign:
                self.set_var(decl[0].idents[0], index if len(decl) > 1 else elem)
            else:
                self.set_top_var(1, elem)
        if len(decl) > 1:
            if pipe.is_assign:
                self.set_var(decl[1].idents[0], elem)
            else:
                self.set_top_var(2, index)
        try:
            self.walk(elem, body)
        except Continue:
            pass
        finally:
            del self.vars[mark:]

    def walk_template(self, dot: Any, node: TemplateNode) -> None:
        self.node = node
        body = self.defined.get(node.name)
        if body is None:
            from skiff.gotemplate.gofmt import quote

            raise self.error(f"template {quote(node.name)} not defined")
        if self.depth >= MAX_TEMPLATE_DEPTH:
            raise self.error(f"exceeded maximum template depth ({MAX_TEMPLATE_DEPTH})")
        value = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else NO_VALUE
        saved = self.vars
        self.vars = [("$", value)]
        self.depth += 1
        try:
            self.walk(value, body)
        finally:
            self.depth -= 1
            self.vars = saved

    # --- expressions ------------------------------------------------------------------

    def eval_pipeline(self, dot: Any, pipe: PipeNode) -> Any:
        self.node = pipe
        value = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.idents[0], value)
            else:
                self.push(var.idents[0], value)
        return value

    def not_a_function(self, args: Sequence[Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            raise self.error(f"can't give argument to non-function {args[0]}")

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            return self.eval_field_node(dot, first, cmd.args, final)
        if isinstance(first, ChainNode):
            return self.eval_chain_node(dot, first, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, VariableNode):
            return self.eval_variable_node(dot, first, cmd.args, final)
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, BoolNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):
            raise self.error("nil is not a command")
        if isinstance(first, NumberNode):
            return self.ideal_constant(first)
        if isinstance(first, StringNode):
            return first.text
        raise self.error(f"can't evaluate command {first}")

    def ideal_constant(self, node: NumberNode) -> Any:
        """An untyped constant standing alone: float64 if it is written as one, else int."""
        self.node = node
        text = node.text
        body = text.lstrip("+-")
        is_hex_int = body[:2] in ("0x", "0X") and "p" not in body and "P" not in body
        if (
            node.is_float
            and not is_hex_int
            and not node.is_char
            and any(c in text for c in ".eEpP")
        ):
            return node.float_value
        if node.is_int:
            return node.int_value
        raise self.error(f"{text} overflows int")

    def eval_field_node(self, dot: Any, field: FieldNode, args: Sequence[Node], final: Any) -> Any:
        self.node = field
        return self.eval_field_chain(dot, dot, field, field.idents, args=args, final=final)

    def eval_chain_node(
        self, dot: Any, chain: ChainNode, args: Sequence[Node] | None, final: Any
    ) -> Any:
        self.node = chain
        if isinstance(chain.node, NilNode):
            raise self.error(f"indirection through explicit nil in {chain}")
        assert chain.node is not None
        receiver = self.eval_arg(dot, "value", chain.node)
        return self.eval_field_chain(dot, receiver, chain, chain.fields, args=args, final=final)

    def eval_variable_node(
        self, dot: Any, var: VariableNode, args: Sequence[Node] | None, final: Any
    ) -> Any:
        self.node = var
        value = self.var_value(var.idents[0])
        if len(var.idents) == 1:
            self.not_a_function(args or [var], final)
            return value
        return self.eval_field_chain(dot, value, var, var.idents[1:], args=args, final=final)

    def eval_field_chain(
        self,
        dot: Any,
        receiver: Any,
        node: Node,
        idents: Sequence[str],
        *,
        args: Sequence[Node] | None,
        final: Any,
    ) -> Any:
        for name in idents[:-1]:
            receiver = self.eval_field(dot, name, node, receiver, args=None, final=_MISSING)
        return self.eval_field(dot, idents[-1], node, receiver, args=args, final=final)

    def eval_field(
        self,
        dot: Any,
        name: str,
        node: Node,
        receiver: Any,
        *,
        args: Sequence[Node] | None,
        final: Any,
    ) -> Any:
        if receiver is NO_VALUE or receiver is None:
            return NO_VALUE
        has_args = (args is not None and len(args) > 1) or final is not _MISSING
        if isinstance(receiver, Struct):
            if name in receiver.data:
                if has_args:
                    raise self.error(f"{name} has arguments but cannot be invoked as function")
                return receiver.data[name]
            raise self.cant_evaluate(name, receiver)
        if isinstance(receiver, Mapping):
            if has_args:
                raise self.error(f"{name} is not a method but has arguments")
            try:
                return receiver[name]
            except KeyError:
                return NO_VALUE
        if isinstance(receiver, (str, int, float, bool, complex, list, tuple, bytes)):
            raise self.cant_evaluate(name, receiver)
        if name.startswith("_"):
            raise self.cant_evaluate(name, receiver)
        attr = self.get_attr(receiver, name)
        if attr is _MISSING:
            attr = self.get_attr(receiver, snake_case(name))
        if attr is _MISSING:
            raise self.cant_evaluate(name, receiver)
        if isinstance(attr, types.MethodType) and attr.__self__ is receiver:
            return self.eval_call(dot, attr, node, name, args=args, final=final)
        if has_args:
            raise self.error(f"{name} has arguments but cannot be invoked as function")
        return attr

    def get_attr(self, receiver: Any, name: str) -> Any:
        try:
            return getattr(receiver, name, _MISSING)
        except Exception as exc:  # a property failed: report it like a method's error
            raise self.error(f"error calling {name}: {exc}") from exc

    def cant_evaluate(self, name: str, receiver: Any) -> ExecError:
        return self.error(
            f"can't evaluate field {name} in type {type_name(receiver)}", _struct_hint(receiver)
        )

    def eval_function(
        self,
        dot: Any,
        ident: IdentifierNode,
        cmd: Node,
        args: Sequence[Node] | None,
        final: Any,
    ) -> Any:
        self.node = ident
        func = self.funcs.get(ident.name)
        if func is None:
            from skiff.gotemplate.gofmt import quote

            raise self.error(f"{quote(ident.name)} is not a defined function")
        return self.eval_call(dot, func, cmd, ident.name, args=args, final=final)

    def eval_call(
        self,
        dot: Any,
        callee: Func | types.MethodType,
        node: Node,
        name: str,
        *,
        args: Sequence[Node] | None,
        final: Any,
    ) -> Any:
        """Call a function or a method: check the arguments, evaluate them, call."""
        arg_nodes = list(args[1:]) if args else []
        num_in = len(arg_nodes) + (0 if final is _MISSING else 1)
        if isinstance(callee, Func):
            func = callee
        else:
            method = callee
            arity = _method_arity(method)
            if arity is not None:
                required, maximum, variadic = arity
                if variadic and num_in < required:
                    raise self.error(
                        f"wrong number of args for {name}: want at least {required} got {num_in}"
                    )
                if not variadic and not required <= num_in <= maximum:
                    raise self.error(
                        f"wrong number of args for {name}: want {required} got {num_in}"
                    )
            func = Func(method, (), "any")
        params, variadic_kind = func.params, func.variadic
        if variadic_kind is not None:
            if num_in < len(params):
                raise self.error(
                    f"wrong number of args for {name}: want at least {len(params)} "
                    f"got {len(arg_nodes)}"
                )
        elif num_in != len(params):
            raise self.error(f"wrong number of args for {name}: want {len(params)} got {num_in}")

        def kind_of(i: int) -> str:
            return params[i] if i < len(params) else str(variadic_kind)

        if func.short_circuit is not None:
            want = func.short_circuit == "or"
            value: Any = NO_VALUE
            for arg in arg_nodes:
                value = self.eval_arg(dot, "value", arg)
                if is_true(value) == want:
                    return value
            if final is not _MISSING:
                value = final
            return value
        argv = [self.eval_arg(dot, kind_of(i), arg) for i, arg in enumerate(arg_nodes)]
        if final is not _MISSING:
            argv.append(self.validate(final, kind_of(num_in - 1)))
        self.node = node
        try:
            return func.fn(*argv)
        except FuncError as exc:
            raise self.error(f"error calling {name}: {exc}") from exc
        except ExecError:
            raise
        except Exception as exc:
            raise self.error(f"error calling {name}: {exc}") from exc

    def validate(self, value: Any, kind: str) -> Any:
        """Go's validateType: is ``value`` assignable to a parameter of ``kind``?"""
        if kind == "value":
            return value
        if kind == "any":
            return None if value is NO_VALUE else value
        expected = GO_TYPE_NAMES.get(kind, kind)
        if value is NO_VALUE:
            raise self.error(f"invalid value; expected {expected}")
        ok = False
        if kind == "string":
            ok = isinstance(value, str)
        elif kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "bool":
            ok = isinstance(value, bool)
        elif kind == "[]string":
            if value is None:
                return []
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        if not ok:
            raise self.error(f"wrong type for value; expected {expected}; got {type_name(value)}")
        return value

    def eval_arg(self, dot: Any, kind: str, node: Node) -> Any:
        self.node = node
        if isinstance(node, DotNode):
            return self.validate(dot, kind)
        if isinstance(node, NilNode):
            if kind == "[]string":
                return []
            if kind in ("value", "any"):
                return None
            raise self.error(f"cannot assign nil to {GO_TYPE_NAMES.get(kind, kind)}")
        if isinstance(node, FieldNode):
            return self.validate(self.eval_field_node(dot, node, [node], _MISSING), kind)
        if isinstance(node, VariableNode):
            return self.validate(self.eval_variable_node(dot, node, None, _MISSING), kind)
        if isinstance(node, PipeNode):
            return self.validate(self.eval_pipeline(dot, node), kind)
        if isinstance(node, IdentifierNode):
            return self.validate(self.eval_function(dot, node, node, None, _MISSING), kind)
        if isinstance(node, ChainNode):
            return self.validate(self.eval_chain_node(dot, node, None, _MISSING), kind)
        if kind == "bool":
            if isinstance(node, BoolNode):
                return node.value
            raise self.error(f"expected bool; found {node}")
        if kind == "int":
            if isinstance(node, NumberNode) and node.is_int:
                return node.int_value
            raise self.error(f"expected integer; found {node}")
        if kind == "string":
            if isinstance(node, StringNode):
                return node.text
            raise self.error(f"expected string; found {node}")
        if kind in ("value", "any"):
            if isinstance(node, BoolNode):
                return node.value
            if isinstance(node, NumberNode):
                return self.ideal_constant(node)
            if isinstance(node, StringNode):
                return node.text
        raise self.error(f"can't handle {node} for arg of type {GO_TYPE_NAMES.get(kind, kind)}")
