"""TF1's recurrent networks: tf.nn.dynamic_rnn, static_rnn, bidirectional_dynamic_rnn and
static_bidirectional_rnn, over the cells of client/rnn_cell.py.

dynamic_rnn is TF1's: one while_loop over the time steps, reading each step's input from a
TensorArray the inputs are unstacked into and writing each output to another, the state a
loop variable (any nest of tensors, as the cell defines it). With `sequence_length`, a
batch entry past its length gets zero outputs and keeps its state, and the loop stops after
the longest sequence. Variables live under `rnn/` (or `scope`), the cell's scope below it.
static_rnn unrolls the cell over a Python list of inputs instead.
"""

from tensorgrid.client import array_ops, context, control_flow, math_ops, nest
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.tensor_array import TensorArray
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape

__all__ = ["dynamic_rnn", "static_rnn", "bidirectional_dynamic_rnn", "static_bidirectional_rnn"]


def _flat(structure):
    leaves = []
    spec = nest.flatten(structure, lambda t: t, leaves)
    return spec, leaves


def _initial_state(cell, initial_state, batch_size, dtype):
    if initial_state is not None:
        return initial_state
    if dtype is None:
        raise ValueError("If there is no initial_state, you must give a dtype.")
    return cell.zero_state(batch_size, dtype)


def _batch_size(inputs, batch_axis):
    static = inputs.shape[batch_axis] if inputs.shape.ndims else None
    return static if isinstance(static, int) else array_ops.shape(inputs)[batch_axis]


def _keep_past_end(time, sequence_length, zero_output, state, output, new_state):
    """Per batch entry: past its length, a zero output and the old state; else the cell's."""
    done = math_ops.greater_equal(time, sequence_length)
    output = math_ops.where_v1(done, zero_output, output)
    spec, old = _flat(state)
    _, new = _flat(new_state)
    return output, nest.rebuild(spec, [math_ops.where_v1(done, o, n) for o, n in zip(old, new)])


def _check_sequence_length(sequence_length):
    if sequence_length is None:
        return None
    sequence_length = array_ops.cast(convert_to_tensor(sequence_length), dtypes.int32)
    if sequence_length.shape.ndims not in (None, 1):
        raise ValueError(f"sequence_length must be a vector of length batch_size, but saw shape: "
                         f"{sequence_length.shape}")
    return array_ops.identity(sequence_length, name="sequence_length")


def dynamic_rnn(cell, inputs, sequence_length=None, initial_state=None, dtype=None, parallel_iterations=None,
                swap_memory=False, time_major=False, scope=None):
    """Runs `cell` over the time steps of `inputs` ([batch, time, ...], or [time, batch, ...] when
    time_major) in a while_loop; returns (outputs in the same layout, final state)."""
    if not callable(cell):
        raise TypeError("cell must be an instance of RNNCell")
    with variables_lib.variable_scope(scope or "rnn"):
        if context.executing_eagerly():
            return _eager_dynamic_rnn(cell, inputs, sequence_length, initial_state, dtype, time_major)
        inputs = convert_to_tensor(inputs)
        if inputs.shape.ndims is not None and inputs.shape.ndims < 2:
            raise ValueError(f"inputs must have rank at least 2, got shape {inputs.shape}")
        if not time_major:
            perm = [1, 0] + list(range(2, inputs.shape.ndims)) if inputs.shape.ndims else None
            inputs = array_ops.transpose(inputs, perm)
        batch_size = _batch_size(inputs, 1)
        state = _initial_state(cell, initial_state, batch_size, dtype or inputs.dtype)
        sequence_length = _check_sequence_length(sequence_length)
        outputs, state = _dynamic_rnn_loop(cell, inputs, state, sequence_length, batch_size,
                                           parallel_iterations or 32, swap_memory)
        if not time_major:
            perm = [1, 0] + list(range(2, outputs.shape.ndims)) if outputs.shape.ndims else None
            outputs = array_ops.transpose(outputs, perm)
        return outputs, state


def _dynamic_rnn_loop(cell, inputs, state, sequence_length, batch_size, parallel_iterations, swap_memory):
    time_steps = array_ops.shape(inputs)[0]
    static_steps = inputs.shape[0] if inputs.shape.ndims else None
    element = TensorShape(inputs.shape.as_list()[1:]) if inputs.shape.ndims else TensorShape(None)
    input_ta = TensorArray(inputs.dtype, size=time_steps, element_shape=element,
                           tensor_array_name="rnn/dynamic_rnn/input_0").unstack(inputs)
    static_batch = batch_size if isinstance(batch_size, int) else None
    output_ta = TensorArray(inputs.dtype, size=time_steps, element_shape=[static_batch, cell.output_size],
                            tensor_array_name="rnn/dynamic_rnn/output_0")
    zero_output = array_ops.zeros(array_ops.stack([batch_size, cell.output_size]) if static_batch is None
                                  else [static_batch, cell.output_size], inputs.dtype)
    bound = time_steps
    if sequence_length is not None:
        bound = math_ops.minimum(time_steps, math_ops.maximum(1, math_ops.reduce_max(sequence_length)))

    def step(time, out_ta, state):
        x = input_ta.read(time)
        x.set_shape(element)
        output, new_state = cell(x, state)
        if sequence_length is not None:
            output, new_state = _keep_past_end(time, sequence_length, zero_output, state, output, new_state)
        return time + 1, out_ta.write(time, output), new_state

    spec, leaves = _flat(state)
    time = array_ops.constant(0, dtypes.int32, name="time")
    invariants = (time.shape, TensorShape(None), nest.rebuild(spec, [_relaxed(t) for t in leaves]))
    _, out_ta, state = control_flow.while_loop(
        lambda time, *_: math_ops.less(time, bound), step, (time, output_ta, state),
        shape_invariants=invariants, parallel_iterations=parallel_iterations, swap_memory=swap_memory,
        maximum_iterations=time_steps)
    outputs = out_ta.stack()
    outputs.set_shape(TensorShape([static_steps, static_batch, cell.output_size]))
    return outputs, state


def _relaxed(t):
    """A state's shape invariant: the batch dimension may be unknown."""
    dims = t.shape.as_tuple()
    return TensorShape(None) if dims is None else TensorShape((None,) + tuple(dims[1:]))


def _eager_dynamic_rnn(cell, inputs, sequence_length, initial_state, dtype, time_major):
    inputs = convert_to_tensor(inputs)
    if not time_major:
        inputs = array_ops.transpose(inputs, [1, 0] + list(range(2, inputs.shape.ndims)))
    steps = array_ops.unstack(inputs)
    state = _initial_state(cell, initial_state, int(inputs.shape[1]), dtype or inputs.dtype)
    outputs, state = _unrolled(cell, steps, state, sequence_length)
    outputs = array_ops.stack(outputs)
    if not time_major:
        outputs = array_ops.transpose(outputs, [1, 0] + list(range(2, outputs.shape.ndims)))
    return outputs, state


def _unrolled(cell, steps, state, sequence_length):
    outputs = []
    if sequence_length is not None:
        sequence_length = array_ops.cast(convert_to_tensor(sequence_length), dtypes.int32)
    zero_output = None
    for t, x in enumerate(steps):
        output, new_state = cell(x, state)
        if sequence_length is not None:
            if zero_output is None:
                zero_output = array_ops.zeros_like(output)
            output, new_state = _keep_past_end(array_ops.constant(t), sequence_length, zero_output, state, output,
                                               new_state)
        outputs.append(output)
        state = new_state
    return outputs, state


def static_rnn(cell, inputs, initial_state=None, dtype=None, sequence_length=None, scope=None):
    """Runs `cell` over a Python list of [batch, ...] inputs, unrolled; returns (outputs, final state)."""
    if not isinstance(inputs, (list, tuple)):
        raise TypeError("inputs must be a sequence")
    if not inputs:
        raise ValueError("inputs must not be empty")
    with variables_lib.variable_scope(scope or "rnn"):
        first = convert_to_tensor(inputs[0])
        state = _initial_state(cell, initial_state, _batch_size(first, 0), dtype or first.dtype)
        return _unrolled(cell, list(inputs), state, sequence_length)


def _reverse_time(x, sequence_length, time_axis, batch_axis):
    if sequence_length is None:
        return array_ops.reverse(x, [time_axis])
    return array_ops.reverse_sequence(x, sequence_length, seq_axis=time_axis, batch_axis=batch_axis)


def bidirectional_dynamic_rnn(cell_fw, cell_bw, inputs, sequence_length=None, initial_state_fw=None,
                              initial_state_bw=None, dtype=None, parallel_iterations=None, swap_memory=False,
                              time_major=False, scope=None):
    """A forward and a backward dynamic_rnn over `inputs` (the backward one over each sequence
    reversed, its outputs reversed back); returns ((out_fw, out_bw), (state_fw, state_bw))."""
    time_axis, batch_axis = (0, 1) if time_major else (1, 0)
    with variables_lib.variable_scope(scope or "bidirectional_rnn"):
        with variables_lib.variable_scope("fw") as fw_scope:
            out_fw, state_fw = dynamic_rnn(cell_fw, inputs, sequence_length, initial_state_fw, dtype,
                                           parallel_iterations, swap_memory, time_major, scope=fw_scope)
        with variables_lib.variable_scope("bw") as bw_scope:
            reversed_inputs = _reverse_time(convert_to_tensor(inputs), sequence_length, time_axis, batch_axis)
            out, state_bw = dynamic_rnn(cell_bw, reversed_inputs, sequence_length, initial_state_bw, dtype,
                                        parallel_iterations, swap_memory, time_major, scope=bw_scope)
        out_bw = _reverse_time(out, sequence_length, time_axis, batch_axis)
    return (out_fw, out_bw), (state_fw, state_bw)


def static_bidirectional_rnn(cell_fw, cell_bw, inputs, initial_state_fw=None, initial_state_bw=None, dtype=None,
                             sequence_length=None, scope=None):
    """static_rnn forwards and backwards over a list of inputs; outputs concatenated per step:
    returns (outputs, state_fw, state_bw)."""
    if not isinstance(inputs, (list, tuple)):
        raise TypeError("inputs must be a list")
    with variables_lib.variable_scope(scope or "bidirectional_rnn"):
        with variables_lib.variable_scope("fw") as fw_scope:
            out_fw, state_fw = static_rnn(cell_fw, inputs, initial_state_fw, dtype, sequence_length, scope=fw_scope)
        with variables_lib.variable_scope("bw") as bw_scope:
            if sequence_length is None:
                backwards = list(reversed(inputs))
            else:
                stacked = _reverse_time(array_ops.stack(inputs), sequence_length, 0, 1)
                backwards = array_ops.unstack(stacked, num=len(inputs))
            tmp, state_bw = static_rnn(cell_bw, backwards, initial_state_bw, dtype, sequence_length, scope=bw_scope)
        if sequence_length is None:
            out_bw = list(reversed(tmp))
        else:
            out_bw = array_ops.unstack(_reverse_time(array_ops.stack(tmp), sequence_length, 0, 1), num=len(inputs))
    return [array_ops.concat([f, b], 1) for f, b in zip(out_fw, out_bw)], state_fw, state_bw

