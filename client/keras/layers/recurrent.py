"""Recurrent layers: SimpleRNN, LSTM, GRU (and their cells, and RNN over any cell) with Keras 3's math.

The loop over time steps is one tg.while_loop over TensorArrays (so a traced
train step holds one While node however long the sequences), or a Python
loop with `unroll=True`. Gate orders and weight shapes are Keras's: LSTM
i, f, c, o in a (in, 4 units) kernel; GRU z, r, h with reset_after and a
(2, 3 units) bias.
"""

from tensorgrid.client import array_ops, context, control_flow, math_ops, nn_ops
from tensorgrid.client.keras import activations, initializers
from tensorgrid.client.keras.layers.base import Layer
from tensorgrid.client.keras.layers.core import _serialize, set_weight_options, weight_options_config
from tensorgrid.client.tensor_array import TensorArray
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape

__all__ = ["RNN", "SimpleRNNCell", "SimpleRNN", "LSTMCell", "LSTM", "GRUCell", "GRU", "Bidirectional"]


class _Cell(Layer):
    """A recurrent cell: call(inputs, states, training) -> (output, new_states)."""

    gates = 1

    def __init__(self, units, activation="tanh", use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        if units <= 0:
            raise ValueError(f"Received an invalid value for argument `units`, expected a positive integer, got "
                             f"{units}.")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        set_weight_options(self, kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
                           bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                           recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
                           kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
                           bias_constraint=bias_constraint)
        self.dropout = min(1.0, max(0.0, dropout))
        self.recurrent_dropout = min(1.0, max(0.0, recurrent_dropout))
        self.seed = seed

    @property
    def state_size(self):
        return [self.units]

    def _build_kernels(self, input_dim, bias_shape):
        n = self.gates * self.units
        self.kernel = self.add_weight(shape=(input_dim, n), name="kernel", initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(shape=(self.units, n), name="recurrent_kernel",
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(shape=bias_shape, name="bias", initializer=self._bias_initializer(),
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)

    def _bias_initializer(self):
        return self.bias_initializer

    def build(self, input_shape):
        self._build_kernels(input_shape[-1], (self.gates * self.units,))

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, activation=activations.serialize(self.activation), use_bias=self.use_bias,
                      dropout=self.dropout, recurrent_dropout=self.recurrent_dropout, seed=self.seed,
                      **weight_options_config(self, "kernel", "recurrent", "bias"))
        return config


class SimpleRNNCell(_Cell):
    """h = activation(x @ kernel + bias + h_prev @ recurrent_kernel)."""

    def call(self, inputs, states, training=None):
        h = math_ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            h = nn_ops.bias_add(h, self.bias)
        h = self.activation(h + math_ops.matmul(states[0], self.recurrent_kernel))
        return h, [h]


class LSTMCell(_Cell):
    """Keras's LSTM step: gates i, f, c, o from one (in + units) x 4 units product."""

    gates = 4

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", unit_forget_bias=True, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.unit_forget_bias = unit_forget_bias

    @property
    def state_size(self):
        return [self.units, self.units]

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        base, units = self.bias_initializer, self.units

        def forget_ones(shape, dtype=None):
            return array_ops.concat([base((units,), dtype=dtype), initializers.Ones()((units,), dtype=dtype),
                                     base((2 * units,), dtype=dtype)], 0)
        return forget_ones

    def build(self, input_shape):
        self._build_kernels(input_shape[-1], (4 * self.units,))

    def call(self, inputs, states, training=None):
        h_prev, c_prev = states
        z = math_ops.matmul(inputs, self.kernel) + math_ops.matmul(h_prev, self.recurrent_kernel)
        if self.bias is not None:
            z = nn_ops.bias_add(z, self.bias)
        i, f, c, o = array_ops.split(z, 4, axis=1)
        i = self.recurrent_activation(i)
        f = self.recurrent_activation(f)
        c = f * c_prev + i * self.activation(c)
        o = self.recurrent_activation(o)
        h = o * self.activation(c)
        return h, [h, c]

    def get_config(self):
        config = super().get_config()
        config.update(recurrent_activation=activations.serialize(self.recurrent_activation),
                      unit_forget_bias=self.unit_forget_bias)
        return config


class GRUCell(_Cell):
    """Keras's GRU step (reset_after=True by default): gates z, r, h; bias rows for the input and recurrent parts."""

    gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", reset_after=True, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.reset_after = reset_after

    def build(self, input_shape):
        bias_shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
        self._build_kernels(input_shape[-1], bias_shape)

    def call(self, inputs, states, training=None):
        h_prev = states[0]
        if self.bias is not None and self.reset_after:
            input_bias, recurrent_bias = array_ops.unstack(self.bias, 2)
        else:
            input_bias, recurrent_bias = self.bias, None
        x = math_ops.matmul(inputs, self.kernel)
        if input_bias is not None:
            x = nn_ops.bias_add(x, input_bias)
        x_z, x_r, x_h = array_ops.split(x, 3, axis=1)
        u = self.units
        if self.reset_after:
            inner = math_ops.matmul(h_prev, self.recurrent_kernel)
            if recurrent_bias is not None:
                inner = nn_ops.bias_add(inner, recurrent_bias)
            r_z, r_r, r_h = array_ops.split(inner, 3, axis=1)
            z = self.recurrent_activation(x_z + r_z)
            r = self.recurrent_activation(x_r + r_r)
            hh = self.activation(x_h + r * r_h)
        else:
            r_z, r_r = array_ops.split(math_ops.matmul(h_prev, self.recurrent_kernel[:, :2 * u]), 2, axis=1)
            z = self.recurrent_activation(x_z + r_z)
            r = self.recurrent_activation(x_r + r_r)
            hh = self.activation(x_h + math_ops.matmul(r * h_prev, self.recurrent_kernel[:, 2 * u:]))
        h = z * h_prev + (1.0 - z) * hh
        return h, [h]

    def get_config(self):
        config = super().get_config()
        config.update(recurrent_activation=activations.serialize(self.recurrent_activation),
                      reset_after=self.reset_after)
        return config


def _dropout_mask(like, rate, seed):
    return nn_ops.dropout(array_ops.ones_like(like), rate=rate, seed=seed)


class RNN(Layer):
    """Runs a cell over the time axis of (batch, time, features) inputs; a (batch, time) mask (a Masking
    layer's) makes the masked steps keep the previous output and states, as Keras's RNN does."""

    supports_masking = True

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False, stateful=False,
                 unroll=False, zero_output_for_mask=False, **kwargs):
        if stateful:
            raise ValueError(f"{type(self).__name__}: stateful=True is not supported by tensorgrid")
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.stateful = stateful
        self.unroll = unroll

    def build(self, input_shape):
        if self.cell.built:
            return
        from tensorgrid.client.keras import backend
        with backend.name_path(self.cell.name):
            self.cell.build((input_shape[0], input_shape[-1]))
        self.cell.built = True
        self.cell._build_shapes = (input_shape[0], input_shape[-1])

    def _initial_states(self, inputs):
        batch = array_ops.shape(inputs)[0]
        return [array_ops.zeros(array_ops.stack([batch, size]), inputs.dtype) for size in self.cell.state_size]

    def call(self, inputs, initial_state=None, mask=None, training=None):
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else \
            ([initial_state] if initial_state is not None else self._initial_states(inputs))
        cell = self.cell
        in_mask = rec_mask = None
        if training and getattr(cell, "dropout", 0) > 0:
            in_mask = _dropout_mask(inputs[:, 0], cell.dropout, cell.seed)
        if training and getattr(cell, "recurrent_dropout", 0) > 0:
            rec_mask = _dropout_mask(states[0], cell.recurrent_dropout, cell.seed)

        def step(x, states, keep=None, previous=None):
            """One timestep; where keep (batch, 1) is False, the previous output and states carry over
            (Keras's masked steps)."""
            old = states
            if in_mask is not None:
                x = x * in_mask
            if rec_mask is not None:
                states = [states[0] * rec_mask] + list(states[1:])
            out, new_states = cell.call(x, states, training=training)
            new_states = list(new_states)
            if keep is not None:
                out = math_ops.where(keep, out, previous)
                new_states = [math_ops.where(keep, n, o) for n, o in zip(new_states, old)]
            return out, new_states
        time_major = array_ops.transpose(inputs, [1, 0] + list(range(2, inputs.shape.rank)))
        mask_major = None
        if mask is not None:
            mask_major = array_ops.expand_dims(array_ops.transpose(array_ops.cast(mask, "bool"), [1, 0]), -1)
        steps = inputs.shape[1]
        if self.unroll or context.executing_eagerly():   # eagerly, the Python loop is the loop
            if steps is None:
                raise ValueError("Cannot unroll a RNN if the time dimension is undefined.")
            outputs = []
            previous = None if mask is None else array_ops.zeros(
                array_ops.stack([array_ops.shape(inputs)[0], self.cell.units]), inputs.dtype)
            order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
            for t in order:
                keep = None if mask_major is None else mask_major[t]
                previous, states = step(time_major[t], states, keep, previous)
                outputs.append(previous)
            sequence = array_ops.stack(outputs, axis=1)
            last = outputs[-1]
        else:
            sequence, last, states = self._loop(step, time_major, states, steps, mask_major)
        if self.return_sequences:
            result = sequence
        else:
            result = last
        if self.return_state:
            return [result] + list(states)
        return result

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def _loop(self, step, time_major, states, static_steps, mask_major=None):
        n = array_ops.shape(time_major)[0]
        element = TensorShape(time_major.shape.as_list()[1:])
        batch = time_major.shape[1]
        inputs_ta = TensorArray(time_major.dtype, size=n, element_shape=element).unstack(time_major)
        out_ta = TensorArray(time_major.dtype, size=n, element_shape=[batch, self.cell.units])
        masked = mask_major is not None
        if masked:
            mask_ta = TensorArray("bool", size=n, element_shape=[batch, 1]).unstack(mask_major)
            states = [array_ops.zeros(array_ops.stack([array_ops.shape(time_major)[1], self.cell.units]),
                                      time_major.dtype)] + list(states)

        def body(t, out_ta, *states):
            index = n - 1 - t if self.go_backwards else t
            x = inputs_ta.read(index)
            x.set_shape(element)
            if masked:
                keep = mask_ta.read(index)
                out, new_states = step(x, list(states[1:]), keep, states[0])
                new_states = [out] + new_states
            else:
                out, new_states = step(x, list(states))
            return (t + 1, out_ta.write(t, out), *new_states)
        t0 = array_ops.constant(0, dtypes.int32, name="time")
        invariants = (t0.shape, TensorShape(None)) + tuple(TensorShape([None, s.shape[1]]) for s in states)
        result = control_flow.while_loop(lambda t, *_: math_ops.less(t, n), body, (t0, out_ta, *states),
                                         shape_invariants=invariants, maximum_iterations=n)
        out_ta, states = result[1], list(result[2 + int(masked):])
        sequence = array_ops.transpose(out_ta.stack(), [1, 0, 2])
        sequence.set_shape(TensorShape([batch, static_steps, self.cell.units]))
        for s in states:
            s.set_shape(TensorShape([batch, s.shape[1]]))
        last = out_ta.read(n - 1)
        last.set_shape(TensorShape([batch, self.cell.units]))
        return sequence, last, states

    def get_config(self):
        config = super().get_config()
        config.update(return_sequences=self.return_sequences, return_state=self.return_state,
                      go_backwards=self.go_backwards, stateful=self.stateful, unroll=self.unroll)
        if type(self) is RNN:
            config["cell"] = _serialize(self.cell)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if cls is RNN:
            from tensorgrid.client.keras import saving
            config = dict(config)
            config["cell"] = saving.deserialize_keras_object(config["cell"], custom_objects=custom_objects)
        return cls(**config)


_RNN_ARGS = ("return_sequences", "return_state", "go_backwards", "stateful", "unroll", "name", "trainable",
             "dtype", "input_shape", "batch_input_shape", "batch_size", "input_dim", "activity_regularizer",
             "zero_output_for_mask")


def _layer_with_cell(cell_cls, doc):
    class _Layer(RNN):
        def __init__(self, units, **kwargs):
            layer_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _RNN_ARGS}
            cell = cell_cls(units, name=f"{cell_cls.__name__[:-4].lower()}_cell".replace("simplernn",
                                                                                        "simple_rnn"),
                            dtype=layer_kwargs.get("dtype"), **kwargs)
            super().__init__(cell, **layer_kwargs)

        def __getattr__(self, name):
            cell = self.__dict__.get("cell")
            if cell is not None and not name.startswith("_") and hasattr(cell, name):
                return getattr(cell, name)
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

        def get_config(self):
            config = self.cell.get_config()
            for key in ("name", "trainable", "dtype"):
                config.pop(key, None)
            config.update(super().get_config())
            return config
    _Layer.__doc__ = doc
    return _Layer


SimpleRNN = _layer_with_cell(SimpleRNNCell, "A fully connected RNN: h_t = tanh(x_t W + h_{t-1} U + b).")
SimpleRNN.__name__ = SimpleRNN.__qualname__ = "SimpleRNN"
LSTM = _layer_with_cell(LSTMCell, "Long short-term memory over (batch, time, features), Keras's gates and weights.")
LSTM.__name__ = LSTM.__qualname__ = "LSTM"
GRU = _layer_with_cell(GRUCell, "Gated recurrent unit over (batch, time, features), Keras 3's reset_after form.")
GRU.__name__ = GRU.__qualname__ = "GRU"


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy of it backwards; merges their outputs (concat by default)."""

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        super().__init__(**kwargs)
        from tensorgrid.client.keras import saving
        self.merge_mode = merge_mode
        config = saving.serialize_keras_object(layer)
        self.forward_layer = layer
        if backward_layer is None:
            config = dict(config)
            inner = dict(config["config"])
            inner["name"] = "backward_" + layer.name
            inner["go_backwards"] = not layer.go_backwards
            config["config"] = inner
            backward_layer = saving.deserialize_keras_object(config)
        self.backward_layer = backward_layer
        self.forward_layer.name = "forward_" + layer.name
        self.return_sequences = layer.return_sequences

    def call(self, inputs, training=None):
        forward = self.forward_layer(inputs, training=training)
        backward = self.backward_layer(inputs, training=training)
        if self.return_sequences:
            backward = array_ops.reverse(backward, [1])
        if self.merge_mode == "concat":
            return array_ops.concat([forward, backward], -1)
        if self.merge_mode == "sum":
            return forward + backward
        if self.merge_mode == "mul":
            return forward * backward
        if self.merge_mode == "ave":
            return (forward + backward) / 2.0
        return [forward, backward]

    def get_config(self):
        from tensorgrid.client.keras import saving
        config = super().get_config()
        config.update(layer=saving.serialize_keras_object(self.forward_layer), merge_mode=self.merge_mode)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from tensorgrid.client.keras import saving
        config = dict(config)
        config["layer"] = saving.deserialize_keras_object(config["layer"], custom_objects=custom_objects)
        return cls(**config)
