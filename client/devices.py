"""tg.config's device listing: list_physical_devices, list_logical_devices, set_logical_device_configuration.

A tensorgrid process has one physical CPU and as many virtual CPU devices as a step names (the
local runtime makes /cpu:1 when an op is placed there), so splitting the CPU into logical devices,
as TF programs do to run MirroredStrategy on CPUs, only records how many there are:
list_logical_devices("CPU") then lists them.
"""

import collections

__all__ = ["PhysicalDevice", "LogicalDevice", "LogicalDeviceConfiguration", "list_physical_devices",
           "list_logical_devices", "set_logical_device_configuration", "get_logical_device_configuration"]

PhysicalDevice = collections.namedtuple("PhysicalDevice", ["name", "device_type"])
LogicalDevice = collections.namedtuple("LogicalDevice", ["name", "device_type"])

_CPU = PhysicalDevice("/physical_device:CPU:0", "CPU")
_logical = {}     # physical device -> its LogicalDeviceConfigurations


class LogicalDeviceConfiguration:
    """One logical device of a physical one (its arguments are accepted; they matter for GPUs only)."""

    def __init__(self, memory_limit=None, experimental_priority=None, experimental_device_ordinal=None):
        self.memory_limit = memory_limit
        self.experimental_priority = experimental_priority
        self.experimental_device_ordinal = experimental_device_ordinal

    def __repr__(self):
        return f"LogicalDeviceConfiguration(memory_limit={self.memory_limit})"


def list_physical_devices(device_type=None):
    """This process's physical devices: its CPU (tensorgrid runs no GPU kernels in-process)."""
    return [_CPU] if device_type is None or str(device_type).upper() == "CPU" else []


def set_logical_device_configuration(device, logical_devices):
    """Splits `device` (the CPU) into len(logical_devices) logical devices; None goes back to one."""
    if device != _CPU:
        raise ValueError(f"Unrecognized device: {device!r} (this process has {_CPU!r})")
    if logical_devices is None:
        _logical.pop(device, None)
        return
    logical_devices = list(logical_devices)
    if not logical_devices or not all(isinstance(d, LogicalDeviceConfiguration) for d in logical_devices):
        raise ValueError(f"logical_devices must be a non-empty list of LogicalDeviceConfiguration, "
                         f"not {logical_devices!r}")
    _logical[device] = logical_devices


def get_logical_device_configuration(device):
    return list(_logical[device]) if device in _logical else None


def list_logical_devices(device_type=None):
    if device_type is not None and str(device_type).upper() != "CPU":
        return []
    n = len(_logical.get(_CPU, [None]))
    return [LogicalDevice(f"/job:localhost/replica:0/task:0/device:CPU:{i}", "CPU") for i in range(n)]
