"""TF1's tf.nn.rnn_cell: recurrent cells, each a tf.layers Layer whose call(inputs, state) gives
(output, new_state), with TF1's variable names, gate orders and defaults.

A cell makes its variables on its first call, in a variable scope named after it
(`basic_lstm_cell`, `lstm_cell`, `gru_cell`, `basic_rnn_cell`, `multi_rnn_cell/cell_0/...`,
uniquified like any layer's), under the scope of whatever calls it (`rnn/` for dynamic_rnn),
and reuses them after. Weights default to the variable scope's initializer (TF1's
glorot_uniform); biases to zeros (a GRU's gates to ones).
"""

import collections

from tensorgrid.client import array_ops, math_ops, nn_ops
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import Tensor, convert_to_tensor
from tensorgrid.client.layers import base
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape

__all__ = ["RNNCell", "LayerRNNCell", "BasicRNNCell", "GRUCell", "BasicLSTMCell", "LSTMCell", "LSTMStateTuple",
           "MultiRNNCell", "DropoutWrapper"]


class LSTMStateTuple(collections.namedtuple("LSTMStateTuple", ("c", "h"))):
    """An LSTM's state: the cell state c and the output h."""

    __slots__ = ()

    @property
    def dtype(self):
        c, h = self
        if c.dtype != h.dtype:
            raise TypeError(f"Inconsistent internal state: {c.dtype} vs {h.dtype}")
        return c.dtype


def _zeros_of(size, batch_size, dtype):
    if isinstance(size, LSTMStateTuple):
        return LSTMStateTuple(*[_zeros_of(s, batch_size, dtype) for s in size])
    if isinstance(size, (tuple, list)):
        return type(size)(_zeros_of(s, batch_size, dtype) for s in size)
    if isinstance(batch_size, int):
        return array_ops.zeros([batch_size, size], dtype)
    zeros = array_ops.zeros(array_ops.stack([batch_size, size]), dtype)
    if isinstance(zeros, Tensor):
        zeros.set_shape([None, size])
    return zeros


class RNNCell(base.Layer):
    """The base of every cell: state_size, output_size, zero_state and __call__(inputs, state)."""

    @property
    def state_size(self):
        """The size of the state (a nest of sizes for a tuple state): num_units, unless a cell says otherwise."""
        return self._num_units

    @property
    def output_size(self):
        return self._num_units

    def zero_state(self, batch_size, dtype):
        """Zeros shaped as the state for a batch of `batch_size` (an int or an int32 scalar tensor)."""
        from tensorgrid.client import scopes
        with scopes.name_scope(type(self).__name__ + "ZeroState"):
            if not isinstance(batch_size, int):
                batch_size = convert_to_tensor(batch_size, dtype=dtypes.int32)
            return _zeros_of(self.state_size, batch_size, dtypes.as_dtype(dtype))

    def __call__(self, inputs, state, scope=None):
        return super().__call__(inputs, state)

    def _input_depth(self, input_shape):
        depth = TensorShape(input_shape)[-1] if TensorShape(input_shape).ndims else None
        if depth is None:
            raise ValueError(f"Expected inputs.shape[-1] to be known, saw shape: {TensorShape(input_shape)}")
        return int(depth)


LayerRNNCell = RNNCell


def _linear(args, kernel, bias):
    return nn_ops.bias_add(math_ops.matmul(array_ops.concat(args, 1), kernel), bias)


class BasicRNNCell(RNNCell):
    """output = new_state = activation(W [inputs, state] + b) (tanh by default)."""

    def __init__(self, num_units, activation=None, reuse=None, name=None, dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, _reuse=reuse, **kwargs)
        self._num_units = num_units
        self._activation = activation or math_ops.tanh

    def build(self, input_shape):
        depth = self._input_depth(input_shape)
        self._kernel = self.add_weight("kernel", [depth + self._num_units, self._num_units])
        self._bias = self.add_weight("bias", [self._num_units], initializer=variables_lib.zeros_initializer())

    def call(self, inputs, state):
        output = self._activation(_linear([inputs, state], self._kernel, self._bias))
        return output, output


class GRUCell(RNNCell):
    """Cho et al.'s GRU: r, u = sigmoid(W_g [x, h] + b_g); c = tanh(W_c [x, r h] + b_c); h' = u h + (1 - u) c."""

    def __init__(self, num_units, activation=None, reuse=None, kernel_initializer=None, bias_initializer=None,
                 name=None, dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, _reuse=reuse, **kwargs)
        self._num_units = num_units
        self._activation = activation or math_ops.tanh
        self._kernel_initializer = kernel_initializer
        self._bias_initializer = bias_initializer

    def build(self, input_shape):
        depth = self._input_depth(input_shape)
        n = self._num_units
        with variables_lib.variable_scope("gates"):
            self._gate_kernel = self.add_weight("kernel", [depth + n, 2 * n], initializer=self._kernel_initializer)
            self._gate_bias = self.add_weight("bias", [2 * n], initializer=self._bias_initializer
                                              or variables_lib.constant_initializer(1.0))
        with variables_lib.variable_scope("candidate"):
            self._candidate_kernel = self.add_weight("kernel", [depth + n, n], initializer=self._kernel_initializer)
            self._candidate_bias = self.add_weight("bias", [n], initializer=self._bias_initializer
                                                   or variables_lib.zeros_initializer())

    def call(self, inputs, state):
        value = math_ops.sigmoid(_linear([inputs, state], self._gate_kernel, self._gate_bias))
        r, u = array_ops.split(value, 2, axis=1)
        c = self._activation(_linear([inputs, r * state], self._candidate_kernel, self._candidate_bias))
        new_h = u * state + (1 - u) * c
        return new_h, new_h


class BasicLSTMCell(RNNCell):
    """Hochreiter & Schmidhuber's LSTM, gates i, j, f, o of W [x, h] + b in that order; f gets forget_bias."""

    def __init__(self, num_units, forget_bias=1.0, state_is_tuple=True, activation=None, reuse=None, name=None,
                 dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, _reuse=reuse, **kwargs)
        self._num_units = num_units
        self._forget_bias = forget_bias
        self._state_is_tuple = state_is_tuple
        self._activation = activation or math_ops.tanh

    @property
    def state_size(self):
        n = self._num_units
        return LSTMStateTuple(n, n) if self._state_is_tuple else 2 * n

    @property
    def output_size(self):
        return self._num_units

    def build(self, input_shape):
        depth = self._input_depth(input_shape)
        self._kernel = self.add_weight("kernel", [depth + self._num_units, 4 * self._num_units])
        self._bias = self.add_weight("bias", [4 * self._num_units], initializer=variables_lib.zeros_initializer())

    def call(self, inputs, state):
        c, h = state if self._state_is_tuple else array_ops.split(state, 2, axis=1)
        i, j, f, o = array_ops.split(_linear([inputs, h], self._kernel, self._bias), 4, axis=1)
        sigmoid = math_ops.sigmoid
        new_c = c * sigmoid(f + self._forget_bias) + sigmoid(i) * self._activation(j)
        new_h = self._activation(new_c) * sigmoid(o)
        new_state = LSTMStateTuple(new_c, new_h) if self._state_is_tuple else array_ops.concat([new_c, new_h], 1)
        return new_h, new_state


class LSTMCell(RNNCell):
    """The LSTM with optional peepholes (w_*_diag), cell clipping and an output projection (num_proj)."""

    def __init__(self, num_units, use_peepholes=False, cell_clip=None, initializer=None, num_proj=None,
                 proj_clip=None, num_unit_shards=None, num_proj_shards=None, forget_bias=1.0, state_is_tuple=True,
                 activation=None, reuse=None, name=None, dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype, _reuse=reuse, **kwargs)
        if num_unit_shards is not None or num_proj_shards is not None:
            raise NotImplementedError("LSTMCell: num_unit_shards and num_proj_shards (deprecated in TF1) are "
                                      "not supported; use a partitioner in the variable scope")
        self._num_units = num_units
        self._use_peepholes = use_peepholes
        self._cell_clip = cell_clip
        self._initializer = initializer
        self._num_proj = num_proj
        self._proj_clip = proj_clip
        self._forget_bias = forget_bias
        self._state_is_tuple = state_is_tuple
        self._activation = activation or math_ops.tanh

    @property
    def state_size(self):
        out = self._num_proj or self._num_units
        return LSTMStateTuple(self._num_units, out) if self._state_is_tuple else self._num_units + out

    @property
    def output_size(self):
        return self._num_proj or self._num_units

    def build(self, input_shape):
        depth = self._input_depth(input_shape)
        n, h_depth = self._num_units, self._num_proj or self._num_units
        self._kernel = self.add_weight("kernel", [depth + h_depth, 4 * n], initializer=self._initializer)
        self._bias = self.add_weight("bias", [4 * n], initializer=variables_lib.zeros_initializer())
        if self._use_peepholes:
            self._w_f_diag = self.add_weight("w_f_diag", [n], initializer=self._initializer)
            self._w_i_diag = self.add_weight("w_i_diag", [n], initializer=self._initializer)
            self._w_o_diag = self.add_weight("w_o_diag", [n], initializer=self._initializer)
        if self._num_proj is not None:
            with variables_lib.variable_scope("projection"):
                self._proj_kernel = self.add_weight("kernel", [n, self._num_proj], initializer=self._initializer)

    def call(self, inputs, state):
        n = self._num_units
        if self._state_is_tuple:
            c_prev, m_prev = state
        else:
            c_prev = array_ops.slice(state, [0, 0], [-1, n])
            m_prev = array_ops.slice(state, [0, n], [-1, self._num_proj or n])
        i, j, f, o = array_ops.split(_linear([inputs, m_prev], self._kernel, self._bias), 4, axis=1)
        sigmoid = math_ops.sigmoid
        if self._use_peepholes:
            c = sigmoid(f + self._forget_bias + self._w_f_diag * c_prev) * c_prev + \
                sigmoid(i + self._w_i_diag * c_prev) * self._activation(j)
        else:
            c = sigmoid(f + self._forget_bias) * c_prev + sigmoid(i) * self._activation(j)
        if self._cell_clip is not None:
            c = array_ops.clip_by_value(c, -self._cell_clip, self._cell_clip)
        if self._use_peepholes:
            m = sigmoid(o + self._w_o_diag * c) * self._activation(c)
        else:
            m = sigmoid(o) * self._activation(c)
        if self._num_proj is not None:
            m = math_ops.matmul(m, self._proj_kernel)
            if self._proj_clip is not None:
                m = array_ops.clip_by_value(m, -self._proj_clip, self._proj_clip)
        new_state = LSTMStateTuple(c, m) if self._state_is_tuple else array_ops.concat([c, m], 1)
        return m, new_state


class MultiRNNCell(RNNCell):
    """Cells stacked: each one's output is the next one's input; the state is the tuple of theirs.
    Cell k's variables live under `cell_k/`."""

    def __init__(self, cells, state_is_tuple=True):
        super().__init__()
        if not cells:
            raise ValueError("Must specify at least one cell for MultiRNNCell.")
        if not state_is_tuple and any(isinstance(c.state_size, tuple) for c in cells):
            raise ValueError("Some cells return tuples of states, but the flag state_is_tuple is not set.")
        self._cells = list(cells)
        self._state_is_tuple = state_is_tuple

    @property
    def state_size(self):
        sizes = tuple(c.state_size for c in self._cells)
        return sizes if self._state_is_tuple else sum(sizes)

    @property
    def output_size(self):
        return self._cells[-1].output_size

    def zero_state(self, batch_size, dtype):
        if self._state_is_tuple:
            return tuple(c.zero_state(batch_size, dtype) for c in self._cells)
        return super().zero_state(batch_size, dtype)

    def call(self, inputs, state):
        out, new_states, start = inputs, [], 0
        for k, cell in enumerate(self._cells):
            with variables_lib.variable_scope(f"cell_{k}"):
                if self._state_is_tuple:
                    cur = state[k]
                else:
                    size = cell.state_size
                    cur = array_ops.slice(state, [0, start], [-1, size])
                    start += size
                out, new = cell(out, cur)
                new_states.append(new)
        return out, tuple(new_states) if self._state_is_tuple else array_ops.concat(new_states, 1)


class DropoutWrapper(RNNCell):
    """A cell with dropout on its inputs, outputs and state (keep probabilities, as in TF1); the
    wrapped cell's variables keep their names."""

    def __init__(self, cell, input_keep_prob=1.0, output_keep_prob=1.0, state_keep_prob=1.0,
                 variational_recurrent=False, input_size=None, dtype=None, seed=None,
                 dropout_state_filter_visitor=None):
        super().__init__()
        if variational_recurrent:
            raise NotImplementedError("DropoutWrapper: variational_recurrent=True is not supported")
        self._cell = cell
        self._keep = (input_keep_prob, output_keep_prob, state_keep_prob)
        self._seed = seed

    @property
    def state_size(self):
        return self._cell.state_size

    @property
    def output_size(self):
        return self._cell.output_size

    def zero_state(self, batch_size, dtype):
        return self._cell.zero_state(batch_size, dtype)

    def _drop(self, x, keep):
        if isinstance(keep, (int, float)) and keep == 1.0:
            return x
        return nn_ops.dropout(x, rate=1.0 - keep, seed=self._seed)

    def __call__(self, inputs, state, scope=None):
        keep_in, keep_out, keep_state = self._keep
        output, new_state = self._cell(self._drop(convert_to_tensor(inputs), keep_in), state)
        if not (isinstance(keep_state, (int, float)) and keep_state == 1.0):
            from tensorgrid.client import nest
            leaves = []
            spec = nest.flatten(new_state, lambda t: t, leaves)
            new_state = nest.rebuild(spec, [self._drop(t, keep_state) for t in leaves])
        return self._drop(output, keep_out), new_state

