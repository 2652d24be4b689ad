"""`for element in dataset:` inside a tg.function: the loop becomes one Dataset.reduce.

tensorgrid has no AutoGraph, so Python control flow in a tg.function runs
once, while tracing. A loop over a dataset cannot: its length is known only
when the graph runs. When a traced function iterates a dataset,
Dataset.__iter__ raises DatasetLoopInTrace; tg.function then converts the
function's source once (`convert`) and traces the converted function
instead. The conversion rewrites each `for` statement of the function
itself (not of functions it calls) into a call of `for_stmt`, with the loop
body as a nested function over the element and the names the body assigns
as its state; `for_stmt` runs a Python loop for any other iterable, and for
a dataset in a graph traces the body once into a ReduceDataset op over the
names holding tensors (or numbers), so each call of the function walks the
whole dataset. Side effects in the body (variable updates, an optimizer's
step) run for every element. A loop body with break, continue, return or
yield, or a name that holds a Python value which the body rebinds, is not
converted (the error says so); the names the body makes for itself are
undefined after the loop.
"""

import ast
import functools
import inspect
import itertools
import sys
import textwrap

import numpy as np

from tensorgrid.client import context
from tensorgrid.client import graph as graph_lib

RUNTIME = "tg_loops__"
_ids = itertools.count()


class DatasetLoopInTrace(RuntimeError):
    """Python iteration over a dataset while a tg.function is traced (see the module docstring)."""


class _Undefined:
    """The value of a name a loop body makes before the loop has run."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<undefined {self.name}>"


class ConversionError(Exception):
    """Why a function's loops cannot be converted."""


# ---- the source rewrite -------------------------------------------------------------------------


class _Scan(ast.NodeVisitor):
    """The names a loop body binds, and whether it leaves the loop early; nested scopes are skipped."""

    def __init__(self):
        self.names, self.exits = [], []

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Store) and node.id not in self.names:
            self.names.append(node.id)

    def _nested_scope(self, node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name not in self.names:
            self.names.append(node.name)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _nested_scope

    def visit_Lambda(self, node):
        pass

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_Lambda

    def _exit(self, node):
        self.exits.append(type(node).__name__.lower())

    visit_Return = visit_Yield = visit_YieldFrom = visit_Await = _exit

    def _loop(self, node):
        # break / continue inside a nested loop belong to it
        for child in ast.iter_child_nodes(node):
            if child in node.body or child in node.orelse:
                inner = _Scan()
                inner.visit(child)
                self.names.extend(n for n in inner.names if n not in self.names)
                self.exits.extend(e for e in inner.exits if e not in ("break", "continue"))
            else:
                self.visit(child)

    visit_For = visit_While = visit_AsyncFor = _loop

    def visit_Break(self, node):
        self.exits.append("break")

    def visit_Continue(self, node):
        self.exits.append("continue")


def _names_in(target):
    scan = _Scan()
    scan.visit(target)
    return scan.names


class _Rewriter(ast.NodeTransformer):
    """Rewrites the `for` statements of one function (not of the functions nested in it)."""

    def __init__(self, declared_global):
        self.declared_global = declared_global
        self.depth = 0

    def visit_FunctionDef(self, node):
        if self.depth:
            return node      # a nested function keeps its own loops
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        return node

    visit_ClassDef = visit_Lambda

    def visit_For(self, node):
        self.generic_visit(node)
        scan = _Scan()
        for stmt in node.body:
            scan.visit(stmt)
        if node.orelse or scan.exits:
            return node      # left as a Python loop: iterating a dataset there fails with the reason
        targets = _names_in(node.target)
        names = [n for n in targets + scan.names if n not in self.declared_global]
        names = list(dict.fromkeys(names))
        state = [n for n in names if n not in targets]
        i = next(_ids)
        body, get, put, elem = f"tg_body_{i}__", f"tg_get_{i}__", f"tg_set_{i}__", f"tg_elem_{i}__"
        nonlocal_ = [ast.Nonlocal(names=names)] if names else []
        state_nonlocal = [ast.Nonlocal(names=state)] if state else []
        tuple_of = lambda ctx: ast.Tuple([ast.Name(n, ctx()) for n in state], ctx())  # noqa: E731
        out = []
        for n in names:  # bind every name in this scope, so the nested functions can declare it nonlocal
            out.append(ast.Try(
                body=[ast.Expr(ast.Name(n, ast.Load()))],
                handlers=[ast.ExceptHandler(ast.Name("NameError", ast.Load()), None, [ast.Assign(
                    [ast.Name(n, ast.Store())],
                    ast.Call(ast.Attribute(ast.Name(RUNTIME, ast.Load()), "undefined", ast.Load()),
                             [ast.Constant(n)], []))])],
                orelse=[], finalbody=[]))
        out.append(ast.FunctionDef(
            body, ast.arguments([], [ast.arg(elem)], None, [], [], None, []),
            nonlocal_ + [ast.Assign([node.target], ast.Name(elem, ast.Load()))] + node.body, [], None))
        out.append(ast.FunctionDef(get, ast.arguments([], [], None, [], [], None, []),
                                   [ast.Return(tuple_of(ast.Load))], [], None))
        out.append(ast.FunctionDef(put, ast.arguments([], [ast.arg("values__")], None, [], [], None, []),
                                   state_nonlocal + ([ast.Assign([tuple_of(ast.Store)],
                                                                 ast.Name("values__", ast.Load()))]
                                                     if state else [ast.Pass()]), [], None))
        out.append(ast.Expr(ast.Call(
            ast.Attribute(ast.Name(RUNTIME, ast.Load()), "for_stmt", ast.Load()),
            [node.iter, ast.Name(body, ast.Load()), ast.Name(get, ast.Load()), ast.Name(put, ast.Load()),
             ast.Tuple([ast.Constant(n) for n in state], ast.Load())], [])))
        for stmt in out:
            ast.copy_location(stmt, node)
        return out


def _globals_of(fdef):
    out = set()
    for n in ast.walk(fdef):
        if isinstance(n, ast.Global):
            out.update(n.names)
    return out


@functools.lru_cache(maxsize=None)
def _convert_code(target):
    try:
        source = textwrap.dedent(inspect.getsource(target))
    except (OSError, TypeError) as e:
        raise ConversionError(f"its source is not available ({e})") from None
    tree = ast.parse(source)
    fdef = tree.body[0] if tree.body else None
    if not isinstance(fdef, ast.FunctionDef) or fdef.name != target.__name__:
        raise ConversionError("it is not a plain `def` function (a lambda, or defined in an expression)")
    fdef.decorator_list = []
    ast.increment_lineno(tree, target.__code__.co_firstlineno - 1)
    _Rewriter(_globals_of(fdef)).visit(fdef)
    free = list(target.__code__.co_freevars)
    factory = ast.FunctionDef(
        "tg_factory__", ast.arguments([], [ast.arg(RUNTIME)] + [ast.arg(n) for n in free], None, [], [], None, []),
        [fdef, ast.Return(ast.Name(fdef.name, ast.Load()))], [], None)
    module = ast.fix_missing_locations(ast.Module([factory], []))
    return compile(module, target.__code__.co_filename, "exec")


def convert(fn):
    """`fn` with its `for` statements rewritten as the module docstring says; ConversionError when it cannot be."""
    rewrap = getattr(fn, "_tg_rewrap", None)
    target = inspect.unwrap(fn) if rewrap is not None else fn
    if inspect.ismethod(target):
        target, owner = target.__func__, target.__self__
        rewrap = lambda new: new.__get__(owner)  # noqa: E731
    if not inspect.isfunction(target):
        raise ConversionError(f"{target!r} is not a Python function")
    code = _convert_code(target)
    namespace = {}
    exec(code, target.__globals__, namespace)  # noqa: S102 - the user's own function, recompiled
    try:
        cells = [c.cell_contents for c in (target.__closure__ or ())]
    except ValueError:
        raise ConversionError("a variable it uses from an enclosing function is not set yet") from None
    new = namespace["tg_factory__"](sys.modules[__name__], *cells)
    new.__defaults__, new.__kwdefaults__ = target.__defaults__, target.__kwdefaults__
    functools.update_wrapper(new, target)
    return rewrap(new) if rewrap is not None else new


# ---- what the converted code calls --------------------------------------------------------------


def undefined(name):
    return _Undefined(name)


def _carried(value):
    if isinstance(value, graph_lib.Tensor) or getattr(value, "_is_eager_tensor", False):
        return True
    return isinstance(value, (int, float, np.ndarray, np.generic)) and not isinstance(value, bool)


def for_stmt(iterable, body, get_state, set_state, names):
    """The loop: Python's for anything but a dataset in a graph, else one Dataset.reduce."""
    from tensorgrid.client.data.dataset_ops import Dataset
    if not isinstance(iterable, Dataset) or context.executing_eagerly():
        for element in iterable:
            body(element)
        return
    before = list(get_state())
    carried = [i for i, v in enumerate(before) if _carried(v)]
    counter = graph_lib.convert_to_tensor(np.int64(0))
    initial = (counter,) + tuple(graph_lib.convert_to_tensor(before[i]) for i in carried)

    def step(state, element):
        values = list(before)
        for i, v in zip(carried, state[1:]):
            values[i] = v
        set_state(values)
        body(element)
        after = get_state()
        for i, (old, new) in enumerate(zip(before, after)):
            if i not in carried and new is not old and not isinstance(old, _Undefined):
                raise ValueError(f"'{names[i]}' holds a Python value ({old!r:.60}) that the loop over a dataset "
                                 "rebinds; inside tg.function make it a tensor before the loop")
        return (state[0] + 1,) + tuple(after[i] for i in carried)

    final = iterable.reduce(initial, step)
    values = [_Undefined(n) if isinstance(v, _Undefined) else v for n, v in zip(names, before)]
    for i, v in zip(carried, final[1:]):
        values[i] = v
    set_state(values)



HOW = ("a `for` statement over a dataset works in the body of the tg.function itself, which tensorgrid then "
       "converts into one Dataset.reduce; not in a function it calls, nor with break, continue or return in the "
       "loop. Or pass iter(dataset) to the function and call next() on it there")


def converted(fn, error):
    """`fn` converted after `error` (a DatasetLoopInTrace) stopped its trace; the error, explained, when it cannot be."""
    try:
        return convert(fn)
    except ConversionError as why:
        raise DatasetLoopInTrace(f"{error} (this function cannot be converted: {why})") from None
