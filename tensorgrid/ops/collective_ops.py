"""Collective ops (TF's names): all-reduce, all-gather and broadcast between the members of a group.

- V2 (TF2's, what tf.distribute emits): CollectiveReduceV2(input, group_size, group_key, instance_key;
  merge_op, final_op, communication_hint, timeout_seconds), CollectiveGatherV2(input, group_size,
  group_key, instance_key), CollectiveBcastSendV2(input, group_size, group_key, instance_key),
  CollectiveBcastRecvV2(group_size, group_key, instance_key, shape; T).
- V1 (TF1 graphs): CollectiveReduce, CollectiveGather, CollectiveBcastSend, CollectiveBcastRecv with
  group_size, group_key and instance_key as attrs.

The kernels run the collective through this process's group (worker/collectives.py:
`Communicator`, set up by tg.distribute.MultiWorkerMirroredStrategy); a group of size 1 needs none.
An all-reduce whose every member is in one step never reaches these kernels: the plan turns it into a
`_CollectiveMerge` (below) and Identities (runtime/in_graph_collectives.py).
They wait on other processes, so they are asynchronous kernels: two collectives of one step never
wait behind each other, whatever order the members start them in.
"""

import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops.registry import not_differentiable, register


def _describe(node):
    return f"{node.op} '{node.name}' on {node.device or 'this process'}"


def _group(node, group_size):
    from tensorgrid.worker import collectives
    comm = collectives.current()
    if comm is None and group_size != 1:
        raise errors.FailedPreconditionError(
            None, None, f"{_describe(node)}: group_size {group_size}, but this process has no collective group "
            "(create a tg.distribute.MultiWorkerMirroredStrategy first; its TF_CONFIG names the members)")
    return comm


def _timeout(node):
    t = node.attr("timeout_seconds", 0.0) or 0.0
    return float(t) if t > 0 else None


def _wrap(node, fn):
    """Runs fn(), naming the node in the error it raises."""
    try:
        return fn()
    except errors.OpError as e:
        raise type(e)(None, None, f"{_describe(node)}: {e.message}") from None


def _member_kernel(v1, call):
    """The kernel factory of a collective over an input: call(comm, node, x, group_size, group_key, instance_key,
    step, timeout) runs it; in a group of one the input comes back."""
    def factory(node):
        def run(step, x, *keys):
            group_size, group_key, instance_key = _keys(node, v1, keys)
            comm = _group(node, group_size)
            if comm is None:
                return np.array(x, copy=True)
            return _wrap(node, lambda: call(comm, node, x, group_size, group_key, instance_key, step, _timeout(node)))
        return run
    return factory


def _all_reduce(comm, node, x, *args):
    # communication_hint "ring" (TF's CommunicationImplementation.RING) keeps even small tensors on the
    # ring; "auto" picks by size (worker/collectives.py)
    return comm.all_reduce(x, *args[:3], node.attr("merge_op", "Add"), node.attr("final_op", "Id"), *args[3:],
                           ring=node.attr("communication_hint", "auto") == "ring")


def _all_gather(comm, node, x, *args):
    return comm.all_gather(x, *args)


def _broadcast_send(comm, node, x, *args):
    return comm.broadcast_send(x, *args)


def _recv_kernel(v1):
    def factory(node):
        dtype = dtypes.as_dtype(node.attr("T")).as_numpy_dtype

        def run(step, *args):
            if v1:
                group_size, group_key, instance_key = _keys(node, True, ())
                shape = TensorShape(node.attr("shape")).as_list()
            else:
                group_size, group_key, instance_key = _keys(node, False, args[:3])
                shape = np.asarray(args[3]).reshape(-1)
            comm = _group(node, group_size)
            if comm is None:
                raise errors.InvalidArgumentError(
                    None, None, f"{_describe(node)}: a broadcast in a group of one has no source to receive from")
            return _wrap(node, lambda: comm.broadcast_recv(shape, dtype, group_size, group_key, instance_key, step,
                                                           _timeout(node)))
        return run
    return factory


def _keys(node, v1, keys):
    if v1:
        return int(node.attr("group_size")), int(node.attr("group_key")), int(node.attr("instance_key"))
    return tuple(int(np.asarray(k)) for k in keys)


def _same(ctx):
    return [(ctx.input_dtypes[0], ctx.input_shapes[0])]


def _gathered(ctx):
    shape = ctx.input_shapes[0]
    if shape is not None and len(shape) == 0:
        raise ctx.error("the input of a gather must have at least one dimension")
    return [(ctx.input_dtypes[0], None if shape is None else (None,) + tuple(shape[1:]))]


def _received_v2(ctx):
    shape = ctx.const_values[3]
    return [(dtypes.as_dtype(ctx.attr("T")), None if shape is None else tuple(int(d) for d in np.reshape(shape, -1)))]


def _received_v1(ctx):
    return [(dtypes.as_dtype(ctx.attr("T")), tuple(TensorShape(ctx.attr("shape")).as_list()))]


_COMMON = dict(needs_step=True, stateful=True, is_async=True, cpu_only=True)

register("CollectiveReduceV2", _same, _member_kernel(False, _all_reduce), **_COMMON,
         doc="All-reduce (merge_op Add/Mul/Min/Max, final_op Id/Div) of `input` over the group; ring over the "
             "data plane.")
register("CollectiveGatherV2", _gathered, _member_kernel(False, _all_gather), **_COMMON,
         doc="Every member's `input` concatenated on axis 0 in rank order.")
register("CollectiveBcastSendV2", _same, _member_kernel(False, _broadcast_send), **_COMMON,
         doc="Sends `input` to every other member of the group; outputs it.")
register("CollectiveBcastRecvV2", _received_v2, _recv_kernel(False), **_COMMON,
         doc="The tensor the group's CollectiveBcastSendV2 sends.")
register("CollectiveReduce", _same, _member_kernel(True, _all_reduce), **_COMMON,
         doc="TF1's CollectiveReduce: CollectiveReduceV2 with the group and instance as attrs.")
register("CollectiveGather", _gathered, _member_kernel(True, _all_gather), **_COMMON,
         doc="TF1's CollectiveGather.")
register("CollectiveBcastSend", _same, _member_kernel(True, _broadcast_send), **_COMMON,
         doc="TF1's CollectiveBcastSend.")
register("CollectiveBcastRecv", _received_v1, _recv_kernel(True), **_COMMON,
         doc="TF1's CollectiveBcastRecv.")

def _merge_kernel(node):
    """An in-graph all-reduce (runtime/in_graph_collectives.py): its members' inputs merged in rank order."""
    from tensorgrid.worker import collectives
    merge = collectives.MERGE_OPS[node.attr("merge_op", "Add")]
    final = node.attr("final_op", "Id")

    def run(*values):
        out = np.array(values[0], copy=True)
        for v in values[1:]:
            out = merge(out, v).astype(out.dtype)
        return collectives._divide(out, len(values)) if final == "Div" else out
    return run


register("_CollectiveMerge", _same, _merge_kernel, cpu_only=True,
         doc="The members' inputs of an all-reduce that one step holds whole, merged (merge_op, then final_op).")

not_differentiable("CollectiveReduceV2", "CollectiveGatherV2", "CollectiveBcastSendV2", "CollectiveBcastRecvV2",
                   "CollectiveReduce", "CollectiveGather", "CollectiveBcastSend", "CollectiveBcastRecv")
