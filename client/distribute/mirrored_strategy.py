"""tg.distribute.MirroredStrategy: replicas on the devices of one process.

This process has one CPU device, and so, as TF's on a machine without GPUs, MirroredStrategy()
runs one replica there (num_replicas_in_sync 1) and its all-reduces are the identity. Several
devices of one process (`devices=["/cpu:0", "/cpu:1"]`) are not supported: run one process per
replica under MultiWorkerMirroredStrategy instead (same-host workers share memory for the
all-reduce).
"""

from tensorgrid.client.distribute import distribute_lib
from tensorgrid.framework import errors
from tensorgrid.framework.device_spec import DeviceSpec

__all__ = ["MirroredStrategy", "OneDeviceStrategy"]


def _canonical(device):
    spec = DeviceSpec.from_string(device)
    if (spec.device_type or "CPU").upper() != "CPU":
        raise errors.InvalidArgumentError(
            None, None, f"MirroredStrategy: device {device!r} is not a device of this process (it has /cpu:0)")
    return f"/job:localhost/replica:0/task:0/device:CPU:{spec.device_index or 0}"


class MirroredStrategy(distribute_lib.Strategy):
    """Synchronous replicas on the devices of this process (here: its CPU)."""

    def __init__(self, devices=None, cross_device_ops=None):
        devices = ["/cpu:0"] if devices is None else list(devices)
        if not devices:
            raise ValueError("MirroredStrategy: `devices` cannot be empty")
        names = list(dict.fromkeys(_canonical(d) for d in devices))
        if len(names) > 1:
            raise errors.UnimplementedError(
                None, None, f"MirroredStrategy over {len(names)} devices of one process ({', '.join(devices)}) is "
                "not supported: tensorgrid processes have one CPU device; run one process per replica with "
                "tg.distribute.MultiWorkerMirroredStrategy")
        super().__init__(devices=names)
        self._cross_device_ops = cross_device_ops


class OneDeviceStrategy(distribute_lib.Strategy):
    """Everything on one device: one replica."""

    def __init__(self, device):
        super().__init__(devices=[_canonical(device)])
