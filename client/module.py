"""tg.Module: a named container of variables, submodules and functions (TF2's tf.Module).

A Module finds what it holds by walking its attributes, in sorted order,
through lists, tuples and dicts (dicts by sorted key): `variables`,
`trainable_variables` and `submodules` are what that walk yields, each object
once, a submodule's own attributes after all of its parent's. Its name scope
is fixed when it is made, under the name scope it was made in, and
`with_name_scope` wraps a method in it.

Modules are trackable (see `client/train/checkpoint.py`): their children, for
tg.train.Checkpoint and tg.saved_model, are their attributes in the order they
were set, as TensorFlow's AutoTrackable tracks them.
"""

import functools
import re

from tensorgrid.client import scopes
from tensorgrid.client import variables as variables_lib

__all__ = ["Module"]

# Called as hook(module, name, value) after an attribute is set (tg.train.Checkpoint's delayed restores).
setattr_hooks = []

_VALID_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_CAMEL_TO_SNAKE = re.compile(r"((?<=[a-z0-9])[A-Z]|(?!^)[A-Z](?=[a-z]))")


def camel_to_snake(value):
    """'MyDenseLayer' -> 'my_dense_layer', 'MLP' -> 'mlp' (a Module's default name from its class)."""
    return _CAMEL_TO_SNAKE.sub(r"_\1", value).lower()


class _ModuleNameScope:
    """A name scope that can be entered again and again: `with module.name_scope:`."""

    def __init__(self, name):
        self.name = name
        self._open = []

    def __enter__(self):
        scope = scopes.name_scope(self.name)
        self._open.append(scope)
        return scope.__enter__()

    def __exit__(self, *exc):
        return self._open.pop().__exit__(*exc)

    def __repr__(self):
        return f"<name_scope {self.name!r}>"


def _is_variable(x):
    return isinstance(x, variables_lib.Variable)


def _is_trainable_variable(x):
    return _is_variable(x) and x.trainable


def _is_non_trainable_variable(x):
    return _is_variable(x) and not x.trainable


def _is_module(x):
    return isinstance(x, Module)


def _leaves_with_paths(value, path):
    """(path, leaf) of a nest of lists, tuples and dicts (dicts by sorted key), in order."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from _leaves_with_paths(value[key], path + (key,))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _leaves_with_paths(item, path + (i,))
    else:
        yield path, value


class Module:
    """Base class for a model part that owns variables (TF2's tf.Module).

        class Dense(tg.Module):
            def __init__(self, n_in, n_out, name=None):
                super().__init__(name=name)
                self.w = tg.Variable(tg.random.normal([n_in, n_out]), name="w")

            @tg.Module.with_name_scope
            def __call__(self, x):
                return tg.nn.relu(x @ self.w)
    """

    # Attributes the walk leaves alone: the module's own naming state.
    _TG_MODULE_IGNORED_PROPERTIES = frozenset(("_name", "_name_scope", "_scope_name"))

    def __init__(self, name=None):
        if name is None:
            name = camel_to_snake(type(self).__name__)
        elif not isinstance(name, str) or not _VALID_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid module name. Module names must be valid Python "
                             f"identifiers (e.g. a valid class name).")
        self._name = name
        with scopes.name_scope(name) as scope_name:
            self._scope_name = scope_name
        self._name_scope = _ModuleNameScope(scope_name)

    @property
    def name(self):
        """The module's name, as given or made from its class name ('MyModule' -> 'my_module')."""
        return self._name

    @property
    def name_scope(self):
        """The module's name scope (entered with `with`), fixed when the module was made."""
        return self._name_scope

    @property
    def variables(self):
        """Every tg.Variable of this module and its submodules, each once, in walk order."""
        return tuple(self._flatten(predicate=_is_variable))

    @property
    def trainable_variables(self):
        """The trainable tg.Variables of this module and its submodules."""
        return tuple(self._flatten(predicate=_is_trainable_variable))

    @property
    def non_trainable_variables(self):
        """The tg.Variables of this module and its submodules that are not trainable."""
        return tuple(self._flatten(predicate=_is_non_trainable_variable))

    @property
    def submodules(self):
        """Every Module inside this one (not itself), parents before their children."""
        return tuple(self._flatten(predicate=_is_module))

    def _flatten(self, recursive=True, predicate=None, attribute_traversal_key=None, with_path=False,
                 expand_composites=False):
        """What the attribute walk finds that `predicate` accepts (with its path of attribute names
        and indices when with_path=True; then an object reached twice is yielded twice)."""
        predicate = predicate or (lambda _: True)
        return _flatten_module(self, recursive, predicate, attribute_traversal_key, with_path, (), {id(self)}, [])

    @classmethod
    def with_name_scope(cls, method):
        """Decorator: runs the method inside its module's name scope."""
        @functools.wraps(method)
        def method_with_name_scope(self, *args, **kwargs):
            with self.name_scope:
                return method(self, *args, **kwargs)
        return method_with_name_scope

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        for hook in setattr_hooks:
            hook(self, name, value)

    def _trackable_children(self):
        """{attribute name: value} of the attributes that hold trackable values, in assignment order."""
        return {k: v for k, v in vars(self).items() if k not in self._TG_MODULE_IGNORED_PROPERTIES}


def _flatten_module(module, recursive, predicate, key, with_path, module_path, seen, stack):
    submodules = []
    if id(module) in stack:
        recursive = False   # a module that holds an ancestor: yield its leaves, do not walk into it again
    attrs = vars(module)
    for name in sorted(attrs, key=key):
        if name in Module._TG_MODULE_IGNORED_PROPERTIES:
            continue
        for leaf_path, leaf in _leaves_with_paths(attrs[name], (name,)):
            if not with_path:
                if id(leaf) in seen:
                    continue
                seen.add(id(leaf))
            if predicate(leaf):
                yield (module_path + leaf_path, leaf) if with_path else leaf
            if recursive and _is_module(leaf):
                submodules.append((module_path + leaf_path, leaf))
    stack.append(id(module))
    for path, sub in submodules:
        yield from _flatten_module(sub, recursive, predicate, key, with_path, path, seen, stack)
    stack.pop()
