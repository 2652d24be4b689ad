"""tg.data.Options: TF's dataset options, accepted and kept with the dataset.

Every option TF 2.21 names can be set and read back, and `with_options`
merges them as TF does (a later non-default value wins); the pipelines
here decide parallelism and determinism themselves, so the values do not
change how a dataset runs. Setting a name TF does not have is an
AttributeError, as in TF.
"""

import enum


class AutoShardPolicy(enum.IntEnum):
    """How a distribution strategy would split a dataset across workers (TF's enum)."""

    OFF = -1
    AUTO = 0
    FILE = 1
    DATA = 2
    HINT = 3


class ExternalStatePolicy(enum.IntEnum):
    WARN = 0
    IGNORE = 1
    FAIL = 2


class _OptionGroup:
    """A fixed set of named options, None until set; nested groups are made on first read."""

    _fields = {}    # name -> default value, or an _OptionGroup subclass for a nested group

    def __init__(self):
        object.__setattr__(self, "_values", {})

    def __getattr__(self, name):
        fields = type(self)._fields
        if name not in fields:
            raise AttributeError(f"{type(self).__name__} has no option {name!r}")
        values = self.__dict__["_values"]
        if name not in values:
            default = fields[name]
            if isinstance(default, type) and issubclass(default, _OptionGroup):
                values[name] = default()
            else:
                return default
        return values[name]

    def __setattr__(self, name, value):
        if name not in type(self)._fields:
            raise AttributeError(f"Cannot set the property {name} on {type(self).__name__}.")
        self._values[name] = value

    def merge(self, other):
        """A new group: this one's values, overridden by those `other` set."""
        out = type(self)()
        for source in (self, other):
            for name, value in source._values.items():
                if isinstance(value, _OptionGroup):
                    value = getattr(out, name).merge(value)
                out._values[name] = value
        return out

    def __eq__(self, other):
        return type(other) is type(self) and self._values == other._values

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


class AutotuneOptions(_OptionGroup):
    _fields = {"enabled": None, "cpu_budget": None, "ram_budget": None, "autotune_algorithm": None,
               "initial_parallelism": None, "min_parallelism": None}


class DistributeOptions(_OptionGroup):
    _fields = {"auto_shard_policy": AutoShardPolicy.AUTO, "num_devices": None}


class OptimizationOptions(_OptionGroup):
    _fields = {name: None for name in (
        "apply_default_optimizations", "filter_fusion", "filter_parallelization", "inject_prefetch",
        "map_and_batch_fusion", "map_and_filter_fusion", "map_fusion", "map_parallelization", "noop_elimination",
        "parallel_batch", "seq_interleave_prefetch", "shuffle_and_repeat_fusion", "warm_start")}


class ThreadingOptions(_OptionGroup):
    _fields = {"max_intra_op_parallelism": None, "private_threadpool_size": None}


class Options(_OptionGroup):
    """Options of a dataset: `ds.with_options(options)`, read back with `ds.options()`."""

    _fields = {
        "autotune": AutotuneOptions, "deterministic": None, "experimental_deterministic": None,
        "experimental_distribute": DistributeOptions, "experimental_external_state_policy": None,
        "experimental_optimization": OptimizationOptions, "experimental_slack": None,
        "experimental_symbolic_checkpoint": None, "experimental_threading": ThreadingOptions,
        "experimental_warm_start": None, "threading": ThreadingOptions, "framework_type": None,
        "dataset_name": None,
    }
