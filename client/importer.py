"""tg.import_graph_def: adds the nodes of a GraphDef to the default graph."""

from tensorgrid.client import graph as graph_lib
from tensorgrid.framework import errors
from tensorgrid.ops import registry
from tensorgrid.runtime.ir import split_input


def import_graph_def(graph_def, input_map=None, return_elements=None, name=None, op_dict=None,
                     producer_op_list=None):
    """Imports `graph_def` (a GraphDef or its bytes) under prefix `name` ('import' by default).

    `input_map` maps names in graph_def ('x:0') to tensors of the current
    graph that replace them. Returns the elements named in `return_elements`.
    Unknown ops, dangling inputs and cycles raise InvalidArgumentError
    naming the node.
    """
    from tensorgrid.proto import convert, types_pb2
    if isinstance(graph_def, (bytes, bytearray)):
        gd = types_pb2.GraphDef()
        try:
            gd.ParseFromString(bytes(graph_def))
        except Exception as e:
            raise errors.InvalidArgumentError(None, None, f"cannot parse GraphDef bytes: {e}") from None
        graph_def = gd
    ir_graph = convert.graph_def_to_ir(graph_def)
    ir_graph.validate(registry.OPS)
    g = graph_lib.get_default_graph()
    prefix = "import" if name is None else name
    input_map = {(k if ":" in k else k + ":0"): v for k, v in (input_map or {}).items()}
    created = {}
    with g.name_scope(prefix) if prefix else _nullcontext() as scope:
        scope = scope or ""
        for node_name in ir_graph.topological_order():
            node = ir_graph[node_name]
            inputs = []
            for ref in node.inputs:
                src, idx = split_input(ref)
                key = f"{src}:{idx}"
                if key in input_map:
                    inputs.append(graph_lib.convert_to_tensor(input_map[key]))
                else:
                    inputs.append(created[src].outputs[idx])
            ctrl = [created[c] for c in node.control_inputs]
            opdef = registry.get(node.op)
            attrs = dict(node.attrs)
            if "_class" in attrs:
                attrs["_class"] = ["loc:@" + scope + (c.decode() if isinstance(c, bytes) else c)[5:]
                                   for c in attrs["_class"]]
            ctx = registry.InferContext(node.op, node.name, [t.dtype for t in inputs],
                                        [t.shape.as_tuple() for t in inputs], attrs,
                                        [graph_lib._const_value(t) for t in inputs], node.where())
            specs = opdef.infer(ctx)
            with g.device(node.device or None) if node.device else _nullcontext():
                op = g._create_op(node.op, inputs, attrs, node.name, specs, node.source, ctrl)
            if op.name != scope + node.name:
                raise errors.InvalidArgumentError(None, None, f"imported node name clash for '{node.name}'")
            created[node.name] = op
    if return_elements is None:
        return None
    out = []
    for el in return_elements:
        src, sep, idx = el.partition(":")
        if src not in created:
            raise ValueError(f"Requested return_element {el!r} not found in graph_def.")
        out.append(created[src].outputs[int(idx)] if sep else created[src])
    return out


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False

