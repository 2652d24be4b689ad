"""Front-ends of the collective ops, with the names and arguments of TF's collective_ops module.

`all_reduce` and friends (TF1's, group and instance as attrs) and the `_v2` ones (TF2's, as tensors)
work eagerly, in tg.function and in TF1 graphs; the group they reduce over is this process's (set
up by tg.distribute.MultiWorkerMirroredStrategy). tg.raw_ops.CollectiveReduceV2 and the others
are the same ops under their op names.
"""

from tensorgrid.client.graph import apply_op
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape

__all__ = ["all_reduce", "all_reduce_v2", "all_gather", "all_gather_v2", "broadcast_send", "broadcast_recv",
           "broadcast_send_v2", "broadcast_recv_v2"]


def _v1_attrs(group_size, group_key, instance_key, timeout, communication_hint):
    return {"group_size": int(group_size), "group_key": int(group_key), "instance_key": int(instance_key),
            "communication_hint": communication_hint.lower(), "timeout_seconds": float(timeout)}


def _v2_inputs(t, group_size, group_key, instance_key):
    from tensorgrid.client.graph import convert_to_tensor
    keys = [convert_to_tensor(k, dtype=dtypes.int32) for k in (group_size, group_key, instance_key)]
    return ([] if t is None else [t]) + keys


def all_reduce(t, group_size, group_key, instance_key, merge_op="Add", final_op="Id", subdiv_offsets=(0,),
               communication_hint="auto", timeout=0, name=None):
    """Reduces `t` over the group (merge_op Add/Mul/Min/Max, then final_op Id/Div): TF1's CollectiveReduce."""
    if group_size < 1:
        raise ValueError(f"Parameter `group_size` to all_reduce must be at least 1. Received: {group_size}.")
    attrs = _v1_attrs(group_size, group_key, instance_key, timeout, communication_hint)
    attrs.update(merge_op=merge_op, final_op=final_op, subdiv_offsets=list(subdiv_offsets))
    return apply_op("CollectiveReduce", [t], attrs, name=name or "CollectiveReduce")


def all_reduce_v2(t, group_size, group_key, instance_key, merge_op="Add", final_op="Id", communication_hint="auto",
                  timeout=0, ordering_token=None, max_subdivs_per_device=-1, name=None):
    """Reduces `t` over the group; the group and instance are tensors (TF2's CollectiveReduceV2)."""
    attrs = {"merge_op": merge_op, "final_op": final_op, "communication_hint": communication_hint.lower(),
             "timeout_seconds": float(timeout)}
    return apply_op("CollectiveReduceV2", _v2_inputs(t, group_size, group_key, instance_key), attrs,
                    name=name or "CollectiveReduceV2")


def all_gather(t, group_size, group_key, instance_key, communication_hint="auto", timeout=0, name=None):
    """Every member's `t` concatenated on axis 0 in rank order (TF1's CollectiveGather)."""
    if group_size < 1:
        raise ValueError(f"Parameter `group_size` to all_gather must be at least 1. Received: {group_size}.")
    attrs = _v1_attrs(group_size, group_key, instance_key, timeout, communication_hint)
    return apply_op("CollectiveGather", [t], attrs, name=name or "CollectiveGather")


def all_gather_v2(t, group_size, group_key, instance_key, communication_hint="auto", timeout=0, ordering_token=None,
                  name=None):
    """CollectiveGatherV2."""
    attrs = {"communication_hint": communication_hint.lower(), "timeout_seconds": float(timeout)}
    return apply_op("CollectiveGatherV2", _v2_inputs(t, group_size, group_key, instance_key), attrs,
                    name=name or "CollectiveGatherV2")


def broadcast_send(t, shape, dtype, group_size, group_key, instance_key, communication_hint="auto", timeout=0,
                   name=None):
    """Sends `t` to the group's broadcast_recv-s (TF1's CollectiveBcastSend)."""
    attrs = _v1_attrs(group_size, group_key, instance_key, timeout, communication_hint)
    attrs["shape"] = TensorShape(shape)
    return apply_op("CollectiveBcastSend", [t], attrs, name=name or "CollectiveBcastSend")


def broadcast_recv(shape, dtype, group_size, group_key, instance_key, communication_hint="auto", timeout=0,
                   name=None):
    """The tensor the group's broadcast_send sends (TF1's CollectiveBcastRecv)."""
    attrs = _v1_attrs(group_size, group_key, instance_key, timeout, communication_hint)
    attrs.update(shape=TensorShape(shape), T=dtypes.as_dtype(dtype))
    return apply_op("CollectiveBcastRecv", [], attrs, name=name or "CollectiveBcastRecv")


def broadcast_send_v2(t, group_size, group_key, instance_key, communication_hint="auto", timeout=0, name=None):
    """CollectiveBcastSendV2."""
    attrs = {"communication_hint": communication_hint.lower(), "timeout_seconds": float(timeout)}
    return apply_op("CollectiveBcastSendV2", _v2_inputs(t, group_size, group_key, instance_key), attrs,
                    name=name or "CollectiveBcastSendV2")


def broadcast_recv_v2(shape, dtype, group_size, group_key, instance_key, communication_hint="auto", timeout=0,
                      name=None):
    """CollectiveBcastRecvV2."""
    from tensorgrid.client.graph import convert_to_tensor
    attrs = {"T": dtypes.as_dtype(dtype), "communication_hint": communication_hint.lower(),
             "timeout_seconds": float(timeout)}
    inputs = _v2_inputs(None, group_size, group_key, instance_key) + [convert_to_tensor(shape, dtype=dtypes.int32)]
    return apply_op("CollectiveBcastRecvV2", inputs, attrs, name=name or "CollectiveBcastRecvV2")
