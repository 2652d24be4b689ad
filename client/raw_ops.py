"""tg.raw_ops: ops called by their op names with keyword arguments, as tf.raw_ops (the collective ops)."""

from tensorgrid.client.distribute import collective_ops as _co

__all__ = ["CollectiveReduceV2", "CollectiveGatherV2", "CollectiveBcastSendV2", "CollectiveBcastRecvV2",
           "CollectiveReduce", "CollectiveGather", "CollectiveBcastSend", "CollectiveBcastRecv"]


def CollectiveReduceV2(*, input, group_size, group_key, instance_key, merge_op, final_op,  # noqa: N802,A002
                       ordering_token=(), communication_hint="auto", timeout_seconds=0, is_stateless=False,
                       max_subdivs_per_device=-1, name=None):
    return _co.all_reduce_v2(input, group_size, group_key, instance_key, merge_op, final_op, communication_hint,
                             timeout_seconds, name=name)


def CollectiveGatherV2(*, input, group_size, group_key, instance_key, ordering_token=(),  # noqa: N802,A002
                       communication_hint="auto", timeout_seconds=0, is_stateless=False, name=None):
    return _co.all_gather_v2(input, group_size, group_key, instance_key, communication_hint, timeout_seconds,
                             name=name)


def CollectiveBcastSendV2(*, input, group_size, group_key, instance_key, communication_hint="auto",  # noqa: N802,A002
                          timeout_seconds=0, name=None):
    return _co.broadcast_send_v2(input, group_size, group_key, instance_key, communication_hint, timeout_seconds,
                                 name=name)


def CollectiveBcastRecvV2(*, group_size, group_key, instance_key, shape, T, communication_hint="auto",  # noqa: N802,N803
                          timeout_seconds=0, name=None):
    return _co.broadcast_recv_v2(shape, T, group_size, group_key, instance_key, communication_hint, timeout_seconds,
                                 name=name)


def CollectiveReduce(*, input, group_size, group_key, instance_key, merge_op, final_op, subdiv_offsets,  # noqa: N802,A002
                     wait_for=(), communication_hint="auto", timeout_seconds=0, name=None):
    return _co.all_reduce(input, group_size, group_key, instance_key, merge_op, final_op, subdiv_offsets,
                          communication_hint, timeout_seconds, name=name)


def CollectiveGather(*, input, group_size, group_key, instance_key, shape, communication_hint="auto",  # noqa: N802,A002
                     timeout_seconds=0, name=None):
    return _co.all_gather(input, group_size, group_key, instance_key, communication_hint, timeout_seconds, name=name)


def CollectiveBcastSend(*, input, group_size, group_key, instance_key, shape, communication_hint="auto",  # noqa: N802,A002
                        timeout_seconds=0, name=None):
    return _co.broadcast_send(input, shape, None, group_size, group_key, instance_key, communication_hint,
                              timeout_seconds, name=name)


def CollectiveBcastRecv(*, T, group_size, group_key, instance_key, shape, communication_hint="auto",  # noqa: N802,N803
                        timeout_seconds=0, name=None):
    return _co.broadcast_recv(shape, T, group_size, group_key, instance_key, communication_hint, timeout_seconds,
                              name=name)
