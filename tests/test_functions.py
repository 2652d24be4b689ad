"""Function-valued attrs: tracing a Python function into a runtime.ir.Function (captures
included), carrying it in a GraphDef's library, and calling it from a kernel."""

import numpy as np
import pytest

import tensorgrid as tg
from tensorgrid.client.function import FuncGraph, trace_function
from tensorgrid.framework import errors
from tensorgrid.proto import convert, types_pb2
from tensorgrid.runtime.ir import Function, GraphIR, Node
from tensorgrid.worker.executor import DeviceContext, Step
from tensorgrid.worker.functions import CompiledFunction
from tensorgrid.worker.rendezvous import LocalRendezvous

F32 = tg.float32


def _call(traced, *args, resources=None):
    """Runs traced's Function once on a CPU device; float args become float32 arrays."""
    device = DeviceContext("/job:localhost/replica:0/task:0/device:CPU:0", resources=resources)
    compiled = CompiledFunction(traced.function, device)
    values = [a if getattr(a, "dtype", None) is object or not isinstance(a, (int, float, list, np.ndarray))
              else np.asarray(a, np.float32) for a in args]
    return compiled(Step(1, LocalRendezvous()), values)


def _literal_function(name, scale):
    """A Function computing arg * scale, built by hand."""
    body = GraphIR([
        Node("x", "Placeholder", attrs={"dtype": F32, "shape": tg.TensorShape([2])}),
        Node("c", "Const", attrs={"dtype": F32, "value": np.float32(scale)}),
        Node("y", "Mul", ["x:0", "c:0"], attrs={"T": F32}),
    ])
    return Function(name, body, ["x"], ["y:0"], [(F32, (2,))])


# ---- tracing -----------------------------------------------------------------------------

def test_trace_function_records_arguments_results_and_structure():
    g = tg.Graph()
    with g.as_default():
        traced = trace_function(lambda a, b: {"sum": a + b, "pair": (a * b, 3)},
                                [(F32, (2,)), (F32, (2,))], name="body")
    fn = traced.function
    assert fn.args == ["arg0", "arg1"]
    assert len(fn.results) == 2 and fn.result_specs == [(F32, (2,)), (F32, (2,))]
    assert traced.captures == []
    out = traced.rebuild(_call(traced, [1, 2], [3, 4]))
    np.testing.assert_allclose(out["sum"], [4, 6])
    np.testing.assert_allclose(out["pair"][0], [3, 8])
    assert out["pair"][1] == 3
    assert not any(op.graph is not traced.graph for op in traced.graph.get_operations())


def test_outer_tensors_are_captured_as_extra_arguments():
    g = tg.Graph()
    with g.as_default():
        c = tg.constant([10.0, 20.0], name="c")
        d = tg.constant([1.0, 1.0], name="d")
        traced = trace_function(lambda x: x * c + c * d, [(F32, (2,))])
    assert [t.name for t in traced.captures] == ["c:0", "d:0"]  # c captured once though read twice
    assert len(traced.function.args) == 3
    result, = _call(traced, [1, 2], [10, 20], [1, 1])
    np.testing.assert_allclose(result, [20, 60])


def test_nested_function_captures_through_each_level():
    g = tg.Graph()
    with g.as_default():
        c = tg.constant([2.0, 3.0], name="c")

        def outer_body(x):
            inner = trace_function(lambda y: y * c, [(F32, (2,))], name="inner")
            # the inner function captured the outer function's placeholder for c, not c itself
            assert inner.captures[0].graph is tg.get_default_graph()
            return x + 1.0

        traced = trace_function(outer_body, [(F32, (2,))], name="outer")
    assert [t.name for t in traced.captures] == ["c:0"]


def test_a_tensor_of_an_unrelated_graph_is_still_refused():
    g1, g2 = tg.Graph(), tg.Graph()
    with g1.as_default():
        foreign = tg.constant(1.0)
    with g2.as_default():
        with pytest.raises(ValueError, match="different graph"):
            trace_function(lambda x: x + foreign, [(F32, ())])


def test_device_scopes_and_seed_carry_into_the_function():
    g = tg.Graph()
    g.seed = 7
    with g.as_default(), tg.device("/job:worker/task:1"):
        traced = trace_function(lambda x: x * 2.0, [(F32, ())])
    assert traced.graph.seed == 7
    mul = [op for op in traced.graph.get_operations() if op.type == "Mul"][0]
    assert mul.device == "/job:worker/task:1"


def test_side_effects_are_control_results_and_run_on_every_call():
    from tensorgrid.client import eager
    v = tg.Variable(0.0, name="counter")
    outer = FuncGraph("outer")  # a tg.function's trace graph: eager outside
    with outer.as_default():
        traced = trace_function(lambda x: (v.assign_add(1.0), x * 2.0)[1], [(F32, ())])
    assert traced.function.control_results
    assert [t.dtype for t in traced.captures] == [tg.resource]
    for _ in range(3):
        result, = _call(traced, 5.0, v._handle.numpy(), resources=eager.resources())
        assert float(result) == 10.0
    assert float(v.numpy()) == 3.0


def test_eager_variable_in_a_nested_function_is_read_through_the_trace_handle():
    v = tg.Variable([1.0, 2.0], name="w")
    outer = FuncGraph("step")
    with outer.as_default():
        traced = trace_function(lambda x: x * v, [(F32, (2,))])
        handle = v._current_handle()
    assert handle.graph is outer  # one handle per trace, in the outermost graph
    assert [t for t in traced.captures] == [handle]


# ---- GraphDef library --------------------------------------------------------------------

def test_functions_round_trip_through_the_graphdef_library():
    shared = _literal_function("scale", 2.0)
    other = _literal_function("scale", 3.0)  # same name, another function: renamed in the library
    outer_body = GraphIR([
        Node("x", "Placeholder", attrs={"dtype": F32, "shape": tg.TensorShape([2])}),
        Node("call", "TestCall", ["x:0"], attrs={"f": shared}),
    ])
    nested = Function("outer", outer_body, ["x"], ["call:0"], [(F32, None)], ["call"])
    graph = GraphIR([
        Node("a", "Placeholder", attrs={"dtype": F32, "shape": tg.TensorShape([2])}),
        Node("n1", "TestCall", ["a:0"], attrs={"f": shared, "branches": [shared, other]}),
        Node("n2", "TestCall", ["a:0"], attrs={"f": nested}),
    ])
    gd = convert.graph_ir_to_proto(graph)
    assert sorted(f.name for f in gd.library.function) == ["outer", "scale", "scale_1"]
    back = convert.graph_def_to_ir(types_pb2.GraphDef.FromString(gd.SerializeToString()))
    f1, (b0, b1) = back["n1"].attrs["f"], back["n1"].attrs["branches"]
    f2 = back["n2"].attrs["f"]
    assert f1 is b0 and f1 is f2.graph["call"].attrs["f"]  # one Function per FunctionDef
    assert b1 is not b0 and b1.graph["c"].attrs["value"] == 3.0
    assert f2.result_specs == [(F32, None)] and f2.control_results == ["call"]
    assert f1.args == ["x"] and f1.results == ["y:0"] and f1.result_specs == [(F32, (2,))]
    assert f1.arg_specs() == [(F32, (2,))]


def _graph_def_calling(name, library):
    gd = types_pb2.GraphDef()
    gd.node.add(name="n", op="TestCall").attr["f"].func.name = name
    gd.library.function.extend(library)
    return gd


def test_bad_libraries_are_invalid_argument():
    good = convert.graph_ir_to_proto(GraphIR([Node("n", "TestCall", attrs={"f": _literal_function("f", 1.0)})]))
    fd = good.library.function[0]
    with pytest.raises(errors.InvalidArgumentError, match="lacks"):
        convert.graph_def_to_ir(_graph_def_calling("missing", [fd]))
    with pytest.raises(errors.InvalidArgumentError, match="defined twice"):
        convert.graph_def_to_ir(_graph_def_calling("f", [fd, fd]))
    loop = types_pb2.FunctionDef(name="loop")
    loop.node_def.add(name="self", op="TestCall").attr["f"].func.name = "loop"
    with pytest.raises(errors.InvalidArgumentError, match="calls itself"):
        convert.graph_def_to_ir(_graph_def_calling("loop", [loop]))
    short = types_pb2.FunctionDef()
    short.CopyFrom(fd)
    del short.ret_type[:]
    with pytest.raises(errors.InvalidArgumentError, match="result types"):
        convert.graph_def_to_ir(_graph_def_calling("f", [short]))
    with pytest.raises(errors.InvalidArgumentError, match="no function library"):
        convert.attr_from_proto(good.node[0].attr["f"])


def test_validate_checks_function_bodies():
    fn = _literal_function("f", 1.0)
    GraphIR([Node("n", "TestCall", attrs={"f": fn})]).validate()
    bad_result = Function("f", fn.graph, ["x"], ["nope:0"], [(F32, None)])
    with pytest.raises(errors.InvalidArgumentError, match="function 'f': result 'nope:0'"):
        GraphIR([Node("n", "TestCall", attrs={"f": bad_result})]).validate()
    bad_arg = Function("f", fn.graph, ["c"], ["y:0"], [(F32, None)])
    with pytest.raises(errors.InvalidArgumentError, match="not a Placeholder"):
        GraphIR([Node("n", "TestCall", attrs={"f": bad_arg})]).validate()
    with pytest.raises(errors.InvalidArgumentError, match="function 'f': node 'y' uses unknown op 'Mul'"):
        GraphIR([Node("n", "TestCall", attrs={"f": fn})]).validate(known_ops={"TestCall", "Placeholder", "Const"})


# ---- calling -----------------------------------------------------------------------------

def test_compiled_function_passes_arguments_through_and_checks_arity():
    g = tg.Graph()
    with g.as_default():
        traced = trace_function(lambda a, b: (a, b * 2.0), [(F32, ()), (F32, ())])
    a, b = _call(traced, 1.5, 2.0)
    assert float(a) == 1.5 and float(b) == 4.0
    device = DeviceContext("/job:localhost/replica:0/task:0/device:CPU:0")
    with pytest.raises(TypeError, match="takes 2 arguments, got 1"):
        CompiledFunction(traced.function, device)(Step(1, LocalRendezvous()), [np.float32(1)])


def test_kernel_errors_inside_a_function_name_the_body_node():
    g = tg.Graph()
    with g.as_default():
        traced = trace_function(lambda a: tg.reshape(a, [3]), [(F32, None)])
    with pytest.raises(errors.InvalidArgumentError, match="Reshape"):
        _call(traced, [1.0, 2.0])

