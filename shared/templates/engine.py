"""The template engine: a Jinja2 ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``, size and time limits.

Autoescape is on only for HTML (email ``html``); every other field is plain text. Templates reach
nothing but the context they are given, the filters of :mod:`shared.templates.filters` and a whitelist
of Jinja's own. A render is stopped when it runs longer than ``Limits.time_limit``, produces more than
``Limits.max_output_chars`` or builds a string that large.
"""

from __future__ import annotations

import operator
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import FrameType
from typing import Any

from jinja2 import StrictUndefined, Template, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.templates.filters import CADENCIA_FILTERS
from shared.templates.models import DEFAULT_LIMITS, Limits

#: Jinja's built-in filters that are kept; the rest (``center``, ``indent``, ``format``, ``wordwrap``,
#: ``xmlattr``, ``pprint``...) can inflate output or are not needed in messages.
SAFE_BUILTIN_FILTERS = frozenset({
    "abs", "capitalize", "default", "d", "e", "escape", "first", "float", "int", "join", "last",
    "length", "count", "list", "lower", "upper", "title", "trim", "truncate", "replace", "round",
    "safe", "string", "striptags", "sum", "urlencode", "min", "max", "sort", "unique", "batch",
    "select", "reject", "selectattr", "rejectattr", "map", "dictsort", "reverse", "slice", "wordcount",
})
#: String methods that take a width and can allocate arbitrarily much.
_PADDING_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "format", "format_map"})


class TemplateError(Exception):
    """A template could not be compiled or rendered; ``code`` is the finding code it maps to."""

    def __init__(self, message: str, code: str = "render_error", line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.line = message, code, line


class TemplateLimitError(TemplateError):
    """A render was stopped by a size or time limit."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message, "limit_exceeded", line)


# --- the environment -------------------------------------------------------------------------------


class MessageEnvironment(ImmutableSandboxedEnvironment):
    """No internals, no mutation of the context's objects, no arithmetic that allocates without bound."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, html: bool, limits: Limits) -> None:
        super().__init__(autoescape=html, undefined=StrictUndefined, keep_trailing_newline=False)
        self.limits = limits
        self.filters = {k: v for k, v in self.filters.items() if k in SAFE_BUILTIN_FILTERS}
        self.filters.update(CADENCIA_FILTERS)
        self.tests = dict(self.tests)
        self.globals = {"range": self._range}

    def _range(self, *args: int) -> range:
        rng = range(*args)
        if len(rng) > self.limits.max_range:
            raise TemplateLimitError(f"range() is limited to {self.limits.max_range} items")
        return rng

    def _check_size(self, value: Any) -> Any:
        if isinstance(value, str | list | tuple) and len(value) > self.limits.max_output_chars:
            raise TemplateLimitError(f"a value larger than {self.limits.max_output_chars} items was built")
        return value

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            big_exponent = isinstance(right, int | float) and abs(right) > 64
            if big_exponent or isinstance(left, int | float) and abs(left) > 10**9:
                raise SecurityError("exponent too large")
            return operator.pow(left, right)
        if operator_ == "%" and isinstance(left, str):
            raise SecurityError("printf-style formatting is not available; use filters")
        if operator_ == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > self.limits.max_output_chars:
                        raise TemplateLimitError("repetition would exceed the output limit")
        if operator_ == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            if len(left) + len(right) > self.limits.max_output_chars:
                raise TemplateLimitError("concatenation would exceed the output limit")
        return self._check_size(super().call_binop(context, operator_, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if getattr(__obj, "__name__", "") in _PADDING_METHODS and isinstance(getattr(__obj, "__self__", None), str):
            raise SecurityError(f"str.{__obj.__name__}() is not available in templates")
        return __self._check_size(super().call(__context, __obj, *args, **kwargs))


@lru_cache(maxsize=8)
def environment(html: bool = False, limits: Limits = DEFAULT_LIMITS) -> MessageEnvironment:
    """The shared sandbox for plain-text (``html=False``) or HTML fields."""
    return MessageEnvironment(html=html, limits=limits)


@lru_cache(maxsize=1024)
def _compile(source: str, html: bool, limits: Limits) -> Template:
    return environment(html, limits).from_string(source)


def compile_template(source: str, *, html: bool = False, limits: Limits = DEFAULT_LIMITS) -> Template:
    """Compile (cached by source) after checking the source size; raises ``TemplateError`` on syntax errors."""
    from jinja2 import TemplateSyntaxError

    if len(source) > limits.max_source_chars:
        raise TemplateLimitError(f"template source is longer than {limits.max_source_chars} characters")
    try:
        return _compile(source, html, limits)
    except TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", "syntax", exc.lineno) from exc


def parse_template(source: str, *, html: bool = False, limits: Limits = DEFAULT_LIMITS) -> nodes.Template:
    """The Jinja AST of ``source`` (for variable and safety analysis); raises ``TemplateSyntaxError``."""
    return environment(html, limits).parse(source)


@dataclass(frozen=True)
class _Shape:
    """What the watchdog needs to know of a template's source: whether it is straight-line, and the
    context names its code resolves."""

    straight: bool
    names: frozenset[str]


#: The only statements of a straight-line template: text and ``{{ … }}`` output, ``{% if %}``.
_STRAIGHT_STATEMENTS = (nodes.Output, nodes.If)


@lru_cache(maxsize=1024)
def _shape(source: str, html: bool, limits: Limits) -> _Shape:
    ast = parse_template(source, html=html, limits=limits)
    straight = all(isinstance(node, _STRAIGHT_STATEMENTS) for node in ast.find_all(nodes.Stmt))
    return _Shape(straight, frozenset(meta.find_undeclared_variables(ast)))


def _path(node: nodes.Node) -> tuple[str, ...] | None:
    """``account.days_past_due`` → ``("account", "days_past_due")``; None for anything but a name read
    through attributes and constant keys."""
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        base = _path(node.node)
        return None if base is None else (*base, node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str | int):
        base = _path(node.node)
        return None if base is None else (*base, str(node.arg.value))
    return None


def _paths_in(node: nodes.Node, found: set[tuple[str, ...]]) -> None:
    path = _path(node)
    if path is not None:
        found.add(path)
        return
    for child in node.iter_child_nodes():
        _paths_in(child, found)


@lru_cache(maxsize=1024)
def steering_paths(source: str, html: bool = False, limits: Limits = DEFAULT_LIMITS) -> frozenset[tuple[str, ...]]:
    """The values that decide *what* ``source`` renders, not only what it shows: every variable path
    read in a condition (``{% if %}``, ``… if … else …``, a loop's filter), a loop's iterable, or an
    argument of a filter, test or call. Two contexts that agree on these (and on which fields are
    there, and of which type) take the same branches and pass the same arguments, so they render or
    fail alike; a source that does not parse steers on nothing (it fails for every context)."""
    try:
        ast = parse_template(source, html=html, limits=limits)
    except Exception:  # noqa: BLE001 - a syntax error fails whatever the context
        return frozenset()
    found: set[tuple[str, ...]] = set()
    for node in ast.find_all((nodes.If, nodes.CondExpr, nodes.For, nodes.Filter, nodes.Test, nodes.Call)):
        if isinstance(node, nodes.If | nodes.CondExpr):
            _paths_in(node.test, found)
        elif isinstance(node, nodes.For):
            _paths_in(node.iter, found)
            if node.test is not None:
                _paths_in(node.test, found)
        else:  # a filter's, test's or call's arguments (not the value it applies to)
            assert isinstance(node, nodes.Filter | nodes.Test | nodes.Call)
            for arg in (*node.args, *(kw.value for kw in node.kwargs)):
                _paths_in(arg, found)
            for extra in (node.dyn_args, node.dyn_kwargs):
                if extra is not None:
                    _paths_in(extra, found)
    return frozenset(found)


class _Watchdog:
    """Stops template code that runs too long or holds an oversized string, via a trace function.

    Only frames compiled from templates (``<template>``) are traced line by line, so the cost falls
    on template code alone; the previous trace function (a debugger, coverage) is restored after.

    A straight-line template (:func:`_shape`: no loop, macro, call block, filter block or ``set``)
    is not traced: each line of its code runs at most once, and the strings its frame holds are the
    context values it resolves (no ``set``, so nothing it builds is kept in a variable) — checked
    before it runs, as the trace would find them on its first line. Its time is checked at every
    chunk it yields instead of every line, and its output as for any template. The trace could not
    stop it anywhere else: inside one expression (a filter, a call) no template line runs, so the
    trace function is not called there either.
    """

    def __init__(self, limits: Limits, template: Template) -> None:
        self.limits, self.template = limits, template
        # CPU time of this thread, not wall time: a runaway template burns CPU, while a busy machine
        # (or a first load of a locale's CLDR data from disk) must not fail a legitimate render.
        # The thread's CPU clock is a system call; the wall clock is not, and a thread cannot have
        # used more CPU than the time that passed: until ``time_limit`` of wall time has passed the
        # CPU limit cannot have been reached, so the CPU clock is read only after that.
        # (The wall clock is read first, so the CPU time counted from ``deadline``'s start is within it.)
        self.wall_deadline = time.perf_counter() + limits.time_limit
        self.deadline = time.thread_time() + limits.time_limit

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if time.perf_counter() > self.wall_deadline and time.thread_time() > self.deadline:
            raise TemplateLimitError(f"rendering took longer than {self.limits.time_limit}s", self._line(frame))
        for value in frame.f_locals.values():
            if isinstance(value, str) and len(value) > self.limits.max_output_chars:
                raise TemplateLimitError("a string larger than the output limit was built", self._line(frame))
        return self._local

    def _line(self, frame: FrameType) -> int | None:
        try:
            return self.template.get_corresponding_lineno(frame.f_lineno)
        except Exception:  # line mapping is a nicety
            return None

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename == "<template>":
            return self._local(frame, event, arg)
        return None

    def run(self, chunks: Iterator[str], *, traced: bool = True) -> str:
        previous = sys.gettrace()
        if traced:
            sys.settrace(self._global)
        try:
            out: list[str] = []
            size = 0
            for chunk in chunks:
                size += len(chunk)
                if size > self.limits.max_output_chars:
                    raise TemplateLimitError(f"output is longer than {self.limits.max_output_chars} characters")
                if not traced and time.perf_counter() > self.wall_deadline and time.thread_time() > self.deadline:
                    raise TemplateLimitError(f"rendering took longer than {self.limits.time_limit}s")
                out.append(chunk)
            return "".join(out)
        finally:
            if traced:
                sys.settrace(previous)

    def check_context(self, context: Mapping[str, Any], names: frozenset[str]) -> None:
        """What the trace finds on a template's first line: a resolved context value over the limit."""
        for name in names:
            value = context.get(name)
            if isinstance(value, str) and len(value) > self.limits.max_output_chars:
                raise TemplateLimitError("a string larger than the output limit was built", 1)


def render_source(
    source: str, context: Mapping[str, Any], *, html: bool = False, limits: Limits = DEFAULT_LIMITS
) -> str:
    """Render one field. Raises ``TemplateLimitError`` when stopped, ``TemplateError`` for any other failure."""
    template = compile_template(source, html=html, limits=limits)
    shape = _shape(source, html, limits)
    try:
        watchdog = _Watchdog(limits, template)
        if shape.straight:
            watchdog.check_context(context, shape.names)
        return watchdog.run(template.generate(dict(context)), traced=not shape.straight)
    except TemplateError:
        raise
    except SecurityError as exc:
        raise TemplateError(f"not allowed: {exc}", "unsafe") from exc
    except RecursionError as exc:
        raise TemplateLimitError("recursion too deep") from exc
    except MemoryError as exc:
        raise TemplateLimitError("out of memory") from exc
    except Exception as exc:  # undefined variables, filter errors: the template is at fault
        raise TemplateError(f"{type(exc).__name__}: {exc}", _error_code(exc), _template_line(exc)) from exc


def _error_code(exc: Exception) -> str:
    from jinja2 import UndefinedError

    return "undefined" if isinstance(exc, UndefinedError) else "render_error"


def _template_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
