"""TF1's tf.layers.Layer: variable scoping, weight creation and update collection shared by every layer.

A layer opens its variable scope on its first call: `name` if given, else
a unique one from its snake_case class name (`dense`, `dense_1`, ...), and
creates its weights there with `tg.get_variable` (so they are named
`dense/kernel:0`, honour `reuse=` and the scope's initializer, and a
regularizer's loss goes into REGULARIZATION_LOSSES). Later calls reuse the
weights. The ops of a call are built under the layer's name scope, and
the update ops a call makes (batch normalization's moving averages) go
into the graph's UPDATE_OPS collection, as TF1 does.
"""

import re

from tensorgrid.client import context, scopes
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.framework import dtypes

__all__ = ["Layer"]


def _snake_case(name):
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


class Layer:
    """Base class of the tf.layers layers: subclasses define build(input_shape) and call(inputs, ...)."""

    def __init__(self, trainable=True, name=None, dtype=None, _reuse=None, **kwargs):
        unknown = set(kwargs) - {"_scope", "input_shape", "batch_input_shape", "autocast"}
        if unknown:
            raise TypeError(f"Keyword argument not understood: {sorted(unknown)[0]}")
        self.trainable = trainable
        self._name = name
        self._base_name = _snake_case(type(self).__name__)
        self._dtype = None if dtype is None else dtypes.as_dtype(dtype)
        self._reuse = _reuse
        self._scope = None
        self.built = False
        self._weights = []
        self._trainable_weights = []
        self._updates = []

    # ---- what the layer has ------------------------------------------------------------------
    @property
    def name(self):
        return self._name if self._scope is None else self._scope.name

    @property
    def dtype(self):
        return self._dtype

    @property
    def variables(self):
        return list(self._weights)

    weights = variables

    @property
    def trainable_variables(self):
        return list(self._trainable_weights) if self.trainable else []

    trainable_weights = trainable_variables

    @property
    def non_trainable_variables(self):
        trainable = set(map(id, self.trainable_variables))
        return [w for w in self._weights if id(w) not in trainable]

    non_trainable_weights = non_trainable_variables

    @property
    def updates(self):
        return list(self._updates)

    @property
    def losses(self):
        if self._scope is None:
            return []
        return variables_lib.get_collection(variables_lib.GraphKeys.REGULARIZATION_LOSSES,
                                            re.escape(self._scope.name + "/"))

    # ---- building ----------------------------------------------------------------------------
    def add_weight(self, name, shape, dtype=None, initializer=None, regularizer=None, trainable=True,
                   constraint=None, **kwargs):
        """A variable `<layer scope>/<name>` made (or reused) with tg.get_variable."""
        if constraint is not None:
            raise NotImplementedError(f"{self._base_name}: weight constraints are not supported by tf.layers "
                                      "in tensorgrid")
        trainable = trainable and self.trainable
        v = variables_lib.get_variable(name, shape, dtype=dtype or self._dtype or dtypes.float32,
                                       initializer=initializer, regularizer=regularizer, trainable=trainable)
        if all(v is not w for w in self._weights):
            self._weights.append(v)
            if trainable:
                self._trainable_weights.append(v)
        return v

    def add_update(self, update):
        """Records an update op to run with a training step (put into UPDATE_OPS)."""
        self._updates.append(update)
        if not context.executing_eagerly():
            variables_lib.add_to_collection(variables_lib.GraphKeys.UPDATE_OPS, update)

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, **kwargs):
        return inputs

    def compute_output_shape(self, input_shape):
        raise NotImplementedError(f"{type(self).__name__} does not define compute_output_shape")

    # ---- calling -----------------------------------------------------------------------------
    def __call__(self, inputs, *args, **kwargs):
        """Builds the weights on the first call (in the layer's variable scope), then applies the layer."""
        if self._scope is None:
            with variables_lib.variable_scope(self._name, default_name=self._base_name, reuse=self._reuse) as scope:
                self._scope = scope
                return self._build_and_call(inputs, args, kwargs)
        with variables_lib.variable_scope(self._scope, reuse=True, auxiliary_name_scope=False), \
                scopes.name_scope(self._scope.name):
            return self._build_and_call(inputs, args, kwargs)

    def _build_and_call(self, inputs, args, kwargs):
        inputs = convert_to_tensor(inputs)
        if self._dtype is None:
            self._dtype = inputs.dtype
        if not self.built:
            self.build(inputs.shape)
            self.built = True
        return self.call(inputs, *args, **kwargs)

    apply = __call__
