"""Keras's Layer on tensorgrid: weights as tg.Variables, build on first call, symbolic calls for models.

A layer makes its weights on its first call (`build(input_shape)`), always
eagerly, even when that call is being traced by a tg.function, so weights
live in the eager variable store and a traced train step reads them through
its handles. Calling a layer on KerasTensors (the symbolic tensors of
`keras.Input`) records a Node, the edge the functional API builds models
from: the layer is built, its `call` is traced once into a scratch graph to
learn the output shapes and dtypes from tensorgrid's shape functions, and
KerasTensors of those shapes come back. So every layer's `compute_output_shape`
comes from the same code that runs it.
"""

import inspect
import math

import numpy as np

from tensorgrid.client import array_ops, context, nest
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import Tensor, convert_to_tensor
from tensorgrid.client.keras import backend, constraints, initializers, regularizers
from tensorgrid.client.scopes import name_scope
from tensorgrid.framework import dtypes

__all__ = ["Layer", "KerasTensor", "KerasVariable", "Node"]


def map_structure(fn, structure):
    """`structure` with fn applied to each leaf (dicts, lists, tuples and namedtuples kept)."""
    leaves = []
    spec = nest.flatten(structure, lambda x: x, leaves)
    return nest.rebuild(spec, [fn(x) for x in leaves])


def flatten(structure):
    leaves = []
    nest.flatten(structure, lambda x: x, leaves)
    return leaves


def map_shapes(fn, shapes):
    """fn of each shape in `shapes` (a shape is a tuple/list of ints and None; lists and dicts of them nest)."""
    if shapes is None:
        return None
    if isinstance(shapes, dict):
        return {k: map_shapes(fn, v) for k, v in shapes.items()}
    if all(d is None or isinstance(d, (int, np.integer)) for d in shapes):
        return fn(tuple(shapes))
    return [map_shapes(fn, s) for s in shapes]


def _snake_case(name):
    import re
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def _shape_tuple(shape):
    if shape is None:
        return None
    if hasattr(shape, "as_tuple"):
        return shape.as_tuple()
    return tuple(None if d is None else int(d) for d in shape)


def _policy_config(dtype_name):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype_name}, "registered_name": None}


def _dtype_name(dtype):
    """The dtype a `dtype=` argument names: None (floatx), a string, a tg/numpy dtype or a policy config."""
    if dtype is None:
        return backend.floatx()
    if isinstance(dtype, dict):
        return dtype.get("config", {}).get("name", backend.floatx())
    if hasattr(dtype, "name") and not isinstance(dtype, str) and not isinstance(dtype, dtypes.DType):
        return _dtype_name(dtype.name)
    return dtypes.as_dtype(dtype).name


class KerasTensor:
    """A symbolic tensor of the functional API: a shape (batch dimension None), a dtype and where it came from."""

    def __init__(self, shape, dtype="float32", name=None):
        self.shape = _shape_tuple(shape)
        self.dtype = dtypes.as_dtype(dtype).name
        self.name = name or backend.unique_name("keras_tensor")
        self._keras_history = None      # (layer, node_index, tensor_index) once a layer made it

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return (f"<KerasTensor shape={self.shape}, dtype={self.dtype}, sparse=False, ragged=False, "
                f"name={self.name}>")

    def __bool__(self):
        raise TypeError("A symbolic KerasTensor cannot be used as a boolean.")

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"A KerasTensor is symbolic: it's a placeholder for a shape and a dtype. It doesn't have "
                        f"any actual numerical value. You cannot convert it to a NumPy array. ({self!r})")

    def _op(self, fn, *others):
        from tensorgrid.client.keras.layers.core import Lambda
        return Lambda(lambda xs: fn(*xs), name=backend.unique_name("tf_op_layer"))([self, *others])


def _install_operators():
    import operator
    for name in ("add", "sub", "mul", "truediv", "floordiv", "pow", "matmul", "mod"):
        op = getattr(operator, name)

        def forward(self, other, _op=op):
            if isinstance(other, KerasTensor):
                return self._op(_op, other)
            return self._op(lambda x: _op(x, other))

        def reverse(self, other, _op=op):
            return self._op(lambda x: _op(other, x))
        setattr(KerasTensor, f"__{name}__", forward)
        setattr(KerasTensor, f"__r{name}__", reverse)
    KerasTensor.__neg__ = lambda self: self._op(operator.neg)
    KerasTensor.__abs__ = lambda self: self._op(abs)
    KerasTensor.__getitem__ = lambda self, key: self._op(lambda x: x[key])


_install_operators()


class Node:
    """One call of a layer on KerasTensors: its arguments and the KerasTensors it made."""

    def __init__(self, operation, call_args, call_kwargs, outputs):
        self.operation = operation
        self.call_args = call_args
        self.call_kwargs = call_kwargs
        self.arguments_structure = (call_args, call_kwargs)
        self.input_tensors = [x for x in flatten((call_args, call_kwargs)) if isinstance(x, KerasTensor)]
        self.outputs = outputs
        self.output_tensors = flatten(outputs)
        node_index = len(operation._inbound_nodes)
        operation._inbound_nodes.append(self)
        for i, t in enumerate(self.output_tensors):
            t._keras_history = (operation, node_index, i)
        self.parent_nodes = []
        for t in self.input_tensors:
            if t._keras_history is not None:
                layer, index, _ = t._keras_history
                self.parent_nodes.append(layer._inbound_nodes[index])

    @property
    def is_input(self):
        return not self.input_tensors

    def __repr__(self):
        return f"<Node of {self.operation.name}: {len(self.input_tensors)} inputs, {len(self.output_tensors)} outputs>"


class KerasVariable(variables_lib.Variable):
    """A layer's weight: a tg.Variable with Keras 3's `name` ('kernel') and `path` ('dense/kernel')."""

    def __init__(self, initializer, shape, dtype, trainable, name, regularizer=None, constraint=None):
        self._keras_name = name
        self.path = backend.current_path(name)
        self.regularizer = regularizer
        self.constraint = constraint
        with variables_lib._init_scope():
            value = initializer(shape, dtype=dtype) if callable(initializer) else np.asarray(initializer, dtype)
            super().__init__(value, trainable=trainable, name=self.path, dtype=dtypes.as_dtype(dtype))

    @property
    def name(self):
        return self._keras_name

    @property
    def value(self):
        return self.read_value()

    def __repr__(self):
        value = np.array2string(self.numpy()) if context.executing_eagerly() else "<symbolic>"
        return f"<Variable path={self.path}, shape={self.shape.as_tuple()}, dtype={self.dtype.name}, value={value}>"


_LAYER_KWARGS = {"input_shape", "batch_input_shape", "batch_size", "input_dim", "weights"}


class Layer:
    """Base class of Keras layers: subclasses define build(input_shape) (optional) and call(inputs, ...).

    Masks (Keras's): a layer's output carries `_keras_mask` when compute_mask gives one (Masking, Embedding
    with mask_zero, an RNN with return_sequences); a layer whose call takes `mask` gets its input's.
    """

    supports_masking = False

    def __init__(self, *, activity_regularizer=None, trainable=True, dtype=None, autocast=True, name=None,
                 **kwargs):
        unknown = set(kwargs) - _LAYER_KWARGS
        if unknown:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}: "
                             f"{ {k: kwargs[k] for k in sorted(unknown)} }")
        object.__setattr__(self, "_tracking", True)
        self._layers = []
        self._trainable_variables = []
        self._non_trainable_variables = []
        self._losses = []
        self._inbound_nodes = []
        self._build_shapes = None
        self.built = False
        self._trainable = bool(trainable)
        self._dtype_name = _dtype_name(dtype)
        self.autocast = autocast
        self.activity_regularizer = regularizers.get(activity_regularizer)
        if name is not None and not isinstance(name, str):
            raise ValueError(f"Argument `name` must be a string. Received: name={name!r}")
        self.name = name or backend.unique_name(_snake_case(type(self).__name__))
        input_shape = kwargs.get("input_shape")
        if kwargs.get("input_dim") is not None:
            input_shape = (kwargs["input_dim"],)
        if kwargs.get("batch_input_shape") is not None:
            self._input_shape_arg = tuple(kwargs["batch_input_shape"])
        elif input_shape is not None:
            self._input_shape_arg = (kwargs.get("batch_size"),) + tuple(input_shape)
        else:
            self._input_shape_arg = None
        self._initial_weights = kwargs.get("weights")
        params = inspect.signature(self.call).parameters
        self._call_has_training = "training" in params
        self._call_has_mask = "mask" in params

    # ---- tracking ---------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if name.startswith("_") or not self.__dict__.get("_tracking", False):
            object.__setattr__(self, name, value)
            return
        for item in flatten(value) if isinstance(value, (list, tuple, dict)) else [value]:
            if isinstance(item, Layer) and item is not self and all(item is not x for x in self._layers):
                self._layers.append(item)
            elif isinstance(item, KerasVariable) and not any(item is v for v in self._own_variables()):
                (self._trainable_variables if item.trainable else self._non_trainable_variables).append(item)
        object.__setattr__(self, name, value)

    def _own_variables(self):
        return self._trainable_variables + self._non_trainable_variables

    def _flatten_layers(self, include_self=True, recursive=True):
        seen = set()
        out = []

        def visit(layer):
            for sub in layer._layers:
                if id(sub) not in seen:
                    seen.add(id(sub))
                    out.append(sub)
                    if recursive:
                        visit(sub)
        if include_self:
            seen.add(id(self))
            out.append(self)
        visit(self)
        return out

    # ---- weights ------------------------------------------------------------------------------
    @property
    def dtype(self):
        return self._dtype_name

    @property
    def compute_dtype(self):
        return self._dtype_name

    @property
    def variable_dtype(self):
        return self._dtype_name

    @property
    def dtype_policy(self):
        return _policy_config(self._dtype_name)

    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        for layer in self._flatten_layers():
            layer._trainable = bool(value)

    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True, autocast=True, regularizer=None,
                   constraint=None, aggregation="none", overwrite_with_gradient=False, name=None):
        """Makes a weight of this layer (eagerly, whatever graph is being traced) and tracks it."""
        shape = () if shape is None else tuple(int(d) for d in shape)
        dtype = _dtype_name(dtype if dtype is not None else self._dtype_name)
        if initializer is None:
            initializer = "glorot_uniform" if dtypes.as_dtype(dtype).is_floating else "zeros"
        initializer = initializers.get(initializer)
        name = name or backend.unique_name("variable")
        with backend.name_path(self.name) if not self._in_path() else _null():
            variable = KerasVariable(initializer, shape, dtype, trainable, name, regularizers.get(regularizer),
                                     constraints.get(constraint))
        (self._trainable_variables if trainable else self._non_trainable_variables).append(variable)
        return variable

    add_variable = add_weight

    def _in_path(self):
        return backend._local.path[-1:] == [self.name]

    def _collect(self, own, sub):
        out, seen = [], set()
        for v in own + [w for layer in self._layers for w in sub(layer)]:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    @property
    def weights(self):
        return self._collect(self._own_variables(), lambda layer: layer.weights)

    variables = weights

    @property
    def trainable_weights(self):
        if not self._trainable:
            return []
        return self._collect(list(self._trainable_variables), lambda layer: layer.trainable_weights)

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self):
        if not self._trainable:
            return self.weights
        return self._collect(list(self._non_trainable_variables), lambda layer: layer.non_trainable_weights)

    non_trainable_variables = non_trainable_weights

    def get_weights(self):
        """The values of `weights`, as numpy arrays, in the same order."""
        return [np.array(v.numpy()) for v in self.weights]

    def set_weights(self, weights):
        """Assigns numpy arrays to `weights`, in order (ValueError for a wrong count or shape)."""
        own = self.weights
        if len(own) != len(weights):
            raise ValueError(f"You called `set_weights(weights)` on layer '{self.name}' with a weight list of "
                             f"length {len(weights)}, but the layer was expecting {len(own)} weights.")
        for variable, value in zip(own, weights):
            value = np.asarray(value)
            if tuple(variable.shape.as_tuple()) != value.shape:
                raise ValueError(f"Layer {self.name} weight shape {variable.shape.as_tuple()} is not compatible "
                                 f"with provided weight shape {value.shape}.")
        for variable, value in zip(own, weights):
            variable.assign(np.asarray(value, dtype=variable.dtype.as_numpy_dtype))

    def count_params(self):
        if not self.built:
            raise ValueError(f"You tried to call `count_params` on layer '{self.name}', but the layer isn't built. "
                             f"You can build it manually via: `layer.build(input_shape)`.")
        return int(sum(math.prod(v.shape.as_tuple()) for v in self.weights))

    # ---- losses -------------------------------------------------------------------------------
    def add_loss(self, loss):
        """Adds a scalar to the losses of the current call (cleared when the outermost call starts)."""
        self._losses.append(loss)

    @property
    def losses(self):
        """This call's added losses, then a penalty per regularized weight, this layer's then its sublayers'."""
        out = []
        for layer in self._flatten_layers():
            out.extend(layer._losses)
            for v in layer._own_variables():
                if v.regularizer is not None:
                    out.append(v.regularizer(v))
        return out

    def _clear_losses(self):
        for layer in self._flatten_layers():
            layer._losses = []

    # ---- building and calling -----------------------------------------------------------------
    def build(self, input_shape):
        self.built = True

    def build_from_config(self, config):
        shape = config.get("input_shape") if config else None
        if shape is not None and not self.built:
            self._maybe_build(_config_shapes(shape))

    def get_build_config(self):
        if self._build_shapes is None:
            return None
        return {"input_shape": _json_shapes(self._build_shapes)}

    def _maybe_build(self, shapes):
        if self.built:
            return
        with variables_lib._init_scope(), backend.name_path(self.name):
            self.build(shapes)
        self.built = True
        self._build_shapes = shapes
        if self._initial_weights is not None:
            weights, self._initial_weights = self._initial_weights, None
            self.set_weights(weights)

    def call(self, inputs, *args, **kwargs):
        return inputs

    def _convert(self, x):
        if isinstance(x, (Tensor, KerasTensor)) or getattr(x, "_is_eager_tensor", False):
            t = x
        elif isinstance(x, variables_lib.Variable):
            t = x.value() if not isinstance(x, KerasVariable) else x.read_value()
        elif isinstance(x, (np.ndarray, np.generic)):
            t = convert_to_tensor(np.asarray(x))
        else:
            return x
        if isinstance(t, KerasTensor):
            return t
        if self.autocast and t.dtype.is_floating and t.dtype.name != self.compute_dtype \
                and dtypes.as_dtype(self.compute_dtype).is_floating:
            t = array_ops.cast(t, self.compute_dtype)
        return t

    def __call__(self, *args, **kwargs):
        if any(isinstance(x, KerasTensor) for x in flatten((args, kwargs))):
            return self._symbolic_call(args, kwargs)
        if not args and "inputs" in kwargs:
            args = (kwargs.pop("inputs"),)
        args = tuple(map_structure(self._convert, a) if i == 0 else a for i, a in enumerate(args))
        outermost = not backend._local.training and not backend._local.path
        if outermost:
            self._clear_losses()
        training = kwargs.get("training")
        if self._call_has_training:
            if training is None:
                training = backend.inherited_training()
            if training is None:
                default = inspect.signature(self.call).parameters["training"].default
                training = None if default is inspect.Parameter.empty else default
            kwargs["training"] = training
        elif "training" in kwargs:
            kwargs.pop("training")
        previous_mask = kwargs.pop("mask", None)
        if previous_mask is None and args:
            previous_mask = getattr(args[0], "_keras_mask", None)
        if self._call_has_mask and previous_mask is not None:
            kwargs["mask"] = previous_mask
        if args:
            self._maybe_build(map_structure(lambda t: _shape_tuple(getattr(t, "shape", None)), args[0]))
        else:
            self._maybe_build(None)
        scope = name_scope(self.name) if not context.executing_eagerly() else _null()
        with backend.training_scope(training), backend.name_path(self.name), scope:
            outputs = self.call(*args, **kwargs)
        if args and (self.supports_masking or type(self).compute_mask is not Layer.compute_mask):
            output_mask = self.compute_mask(args[0], previous_mask)
            if output_mask is not None and hasattr(outputs, "shape"):
                outputs._keras_mask = output_mask
        if self.activity_regularizer is not None:
            for out in flatten(outputs):
                self.add_loss(self.activity_regularizer(out) / array_ops.cast(array_ops.shape(out)[0], out.dtype))
        return outputs

    def _symbolic_call(self, args, kwargs):
        """Records a Node: the output KerasTensors come from tracing call() into a scratch graph."""
        from tensorgrid.client.function import FuncGraph
        first = args[0] if args else kwargs.get("inputs")
        self._maybe_build(map_structure(lambda t: t.shape if isinstance(t, KerasTensor) else
                                        _shape_tuple(getattr(t, "shape", None)), first))
        graph = FuncGraph(f"{self.name}_symbolic")

        def to_placeholder(x):
            if isinstance(x, KerasTensor):
                return array_ops.placeholder(x.dtype, shape=x.shape, name="input")
            return x
        with graph.as_default():
            tensor_args = map_structure(to_placeholder, args)
            tensor_kwargs = map_structure(to_placeholder, kwargs)
            saved = {id(layer): list(layer._losses) for layer in self._flatten_layers()}
            try:
                outputs = self.__call__(*tensor_args, **tensor_kwargs)
            finally:
                for layer in self._flatten_layers():
                    layer._losses = saved.get(id(layer), [])
            symbolic = map_structure(lambda t: KerasTensor(_shape_tuple(t.shape), t.dtype), outputs)
        Node(self, args, kwargs, symbolic)
        return symbolic

    def compute_mask(self, inputs, mask=None):
        """The mask of this layer's output: the input's where the layer supports masking, else None."""
        return mask if self.supports_masking else None

    def compute_output_shape(self, input_shape):
        """The output shape(s) for input_shape, found by tracing call() on placeholders of that shape."""
        specs = map_shapes(lambda s: KerasTensor(s, self.compute_dtype), input_shape)
        return self.compute_output_spec(specs, _record=False, _shape_only=True)

    def compute_output_spec(self, inputs, _record=False, _shape_only=False):
        from tensorgrid.client.function import FuncGraph
        self._maybe_build(map_structure(lambda t: t.shape, inputs))
        graph = FuncGraph(f"{self.name}_spec")
        with graph.as_default():
            placeholders = map_structure(lambda t: array_ops.placeholder(t.dtype, shape=t.shape), inputs)
            saved = {id(layer): list(layer._losses) for layer in self._flatten_layers()}
            try:
                outputs = self.__call__(placeholders)
            finally:
                for layer in self._flatten_layers():
                    layer._losses = saved.get(id(layer), [])
        if _shape_only:
            return map_structure(lambda t: _shape_tuple(t.shape), outputs)
        return map_structure(lambda t: KerasTensor(_shape_tuple(t.shape), t.dtype), outputs)

    # ---- connectivity -------------------------------------------------------------------------
    def _single(self, attr, what):
        if not self._inbound_nodes:
            raise AttributeError(f"The layer {self.name} has never been called and thus has no defined {what}.")
        tensors = getattr(self._inbound_nodes[0], attr)
        return tensors[0] if len(tensors) == 1 else tensors

    @property
    def input(self):
        return self._single("input_tensors", "input")

    @property
    def output(self):
        return self._single("output_tensors", "output")

    # ---- config -------------------------------------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": _policy_config(self._dtype_name)}
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _json_shapes(shapes):
    """Shapes (a tuple, or a nest of them) as JSON-friendly lists."""
    return map_shapes(lambda s: [None if d is None else int(d) for d in s], shapes)


def _config_shapes(shapes):
    """The inverse of _json_shapes: a list of ints/None is one shape (a tuple), a list of lists several."""
    return map_shapes(tuple, shapes)
