"""Functional models: a graph of layer calls (Nodes) from Input KerasTensors to outputs.

The constructor walks back from the outputs, depth first, to order the
nodes (each after the nodes it consumes) and to check every path starts at
one of `inputs`; calling the model runs the nodes in that order on real
tensors, so the same code runs eagerly and inside a traced train step.
"""

from tensorgrid.client import array_ops
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.keras import backend
from tensorgrid.client.keras.layers.base import KerasTensor, flatten, map_structure
from tensorgrid.client.keras.layers.input_layer import InputLayer
from tensorgrid.client.keras.models.model import Model

__all__ = ["Functional"]


class Functional(Model):
    """Model(inputs, outputs): inputs and outputs are KerasTensors, or lists / dicts of them."""

    def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
        Model.__init__(self, name=name or backend.unique_name("functional"), trainable=trainable, **kwargs)
        if isinstance(inputs, dict):
            inputs = dict(inputs)
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        self.inputs = flatten(inputs)
        self.outputs = flatten(outputs)
        for t in self.inputs + self.outputs:
            if not isinstance(t, KerasTensor):
                raise ValueError(f"All `inputs` and `outputs` values must be KerasTensors. Received: "
                                 f"inputs={inputs}, outputs={outputs} (including invalid value {t!r:.100} of type "
                                 f"{type(t).__name__})")
        self._nodes, self._nodes_by_depth, operations = _map_graph(self.inputs, self.outputs)
        self._operations = operations
        object.__setattr__(self, "_layers", list(operations))
        self.built = True
        self._build_shapes = map_structure(lambda t: t.shape, inputs)

    @property
    def layers(self):
        return list(self._operations)

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def input(self):
        return self._inputs_struct

    @property
    def output(self):
        return self._outputs_struct

    def _flat_inputs(self, inputs):
        if isinstance(self._inputs_struct, dict) or (isinstance(inputs, dict) and len(self.inputs) > 0):
            if not isinstance(inputs, dict):
                raise ValueError(f"Model {self.name} expects a dict of inputs with keys "
                                 f"{[t.name for t in self.inputs]}")
            by_name = {t.name: t for t in self.inputs}
            keys = list(self._inputs_struct) if isinstance(self._inputs_struct, dict) else list(by_name)
            missing = [k for k in keys if k not in inputs]
            if missing:
                raise ValueError(f"Missing data for input(s) {missing} of model {self.name}; received keys "
                                 f"{sorted(inputs)}")
            return [inputs[k] for k in keys]
        flat = flatten(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(flat) != len(self.inputs):
            raise ValueError(f"Layer \"{self.name}\" expects {len(self.inputs)} input(s), but it received "
                             f"{len(flat)} input tensors.")
        return flat

    def call(self, inputs, training=None, mask=None):
        values = {}
        for kt, x in zip(self.inputs, self._flat_inputs(inputs)):
            x = convert_to_tensor(x)
            if x.dtype.name != kt.dtype:
                x = array_ops.cast(x, kt.dtype)
            values[id(kt)] = x
        for node in self._nodes:
            if node.is_input:
                continue
            args, kwargs = map_structure(lambda x: values[id(x)] if isinstance(x, KerasTensor) else x,
                                         (node.call_args, node.call_kwargs))
            outputs = node.operation(*args, **kwargs)
            for kt, value in zip(node.output_tensors, flatten(outputs)):
                values[id(kt)] = value
        return map_structure(lambda kt: values[id(kt)], self._outputs_struct)

    def get_config(self):
        from tensorgrid.client.keras.saving import serialization
        return serialization.functional_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from tensorgrid.client.keras.saving import serialization
        return serialization.functional_from_config(cls, config, custom_objects)


def _map_graph(inputs, outputs):
    """(nodes in running order, {depth: nodes}, layers by decreasing depth) of the graph from inputs to outputs."""
    order, seen = [], set()

    def visit(tensor, path):
        if tensor._keras_history is None:
            raise ValueError(f"Output tensors of a Functional model must be the output of a Keras layer; "
                             f"{tensor!r} is not")
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if id(node) in path:
            raise ValueError(f"The graph of layer calls has a cycle through {layer.name}")
        if id(node) in seen:
            return
        for t in node.input_tensors:
            visit(t, path | {id(node)})
        seen.add(id(node))
        order.append(node)
    for t in outputs:
        visit(t, frozenset())
    input_ids = {id(t) for t in inputs}
    for node in order:
        if node.is_input and not any(id(t) in input_ids for t in node.output_tensors):
            consumer = next((n.operation.name for n in order if any(t in n.input_tensors
                                                                    for t in node.output_tensors)), "?")
            raise ValueError(f"Graph disconnected: cannot find parent for tensor {node.output_tensors[0]!r} at layer "
                             f"\"{consumer}\". The following previous layers were accessed without issue: "
                             f"{[n.operation.name for n in order[:order.index(node)]]}")
    for t in inputs:
        if t._keras_history is None or not isinstance(t._keras_history[0], InputLayer):
            raise ValueError(f"Model inputs must come from `keras.Input` (thus holding past layer metadata). "
                             f"They cannot be the output of a previous non-Input layer. Received: {t!r}")
    depth = {}
    for node in reversed(order):
        d = depth.setdefault(id(node), 0)
        for parent in node.parent_nodes:
            depth[id(parent)] = max(depth.get(id(parent), 0), d + 1)
    for t in inputs:   # an input no output depends on still belongs to the model
        node = t._keras_history[0]._inbound_nodes[t._keras_history[1]]
        if id(node) not in seen:
            seen.add(id(node))
            order.insert(0, node)
            depth[id(node)] = max(depth.values(), default=0)
    by_depth = {}
    for node in order:
        by_depth.setdefault(depth[id(node)], []).append(node)
    index = {}
    layer_depth = {}
    for i, node in enumerate(order):
        layer = node.operation
        index.setdefault(id(layer), i)
        layer_depth[id(layer)] = max(layer_depth.get(id(layer), 0), depth[id(node)])
    layers = {id(node.operation): node.operation for node in order}
    ranked = sorted(layers.values(), key=lambda layer: (-layer_depth[id(layer)], index[id(layer)]))
    nodes_by_depth = {d: by_depth[d] for d in sorted(by_depth, reverse=True)}
    return order, nodes_by_depth, ranked
