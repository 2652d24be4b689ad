"""What every strategy shares: ReduceOp, the strategy and replica contexts, scope(), run() and reduce().

- `with strategy.scope():` makes `strategy` the one `get_strategy()` returns; variables made inside
  are the strategy's (MultiWorkerMirroredStrategy starts them equal on every worker, placing them
  is ParameterServerStrategy's job).
- `strategy.run(fn, args)` calls fn in a replica context: `get_replica_context()` is then the
  replica's, and its `all_reduce` reduces over every replica in sync. Outside any scope the default
  strategy (one replica, no communication) is in force, as in TF.
- Optimizers aggregate gradients through `aggregate_gradients` (TF's rule: a SUM over replicas;
  TF1 optimizers scale their loss by 1/num_replicas_in_sync first, Keras's expect a loss scaled by
  the global batch size, as tg.nn.compute_average_loss makes it).
"""

import contextlib
import enum
import threading

from tensorgrid.client import nest

__all__ = ["ReduceOp", "Strategy", "ReplicaContext", "InputContext", "InputOptions", "RunOptions",
           "get_strategy", "has_strategy", "get_replica_context", "in_cross_replica_context",
           "experimental_set_strategy", "get_loss_reduction"]


class ReduceOp(enum.Enum):
    """How values of the replicas combine: SUM or MEAN."""

    SUM = "SUM"
    MEAN = "MEAN"

    @staticmethod
    def from_variable_aggregation(aggregation):
        name = getattr(aggregation, "name", str(aggregation)).upper()
        if name in ("SUM", "MEAN"):
            return ReduceOp[name]
        raise ValueError(f"Could not convert from `tf.VariableAggregation` {aggregation} to `tf.distribute.ReduceOp`")


def _reduce_op(op):
    if isinstance(op, ReduceOp):
        return op
    if isinstance(op, str) and op.upper() in ("SUM", "MEAN"):
        return ReduceOp[op.upper()]
    raise ValueError(f"reduce_op must be tf.distribute.ReduceOp.SUM or MEAN (or 'sum'/'mean'), not {op!r}")


class InputContext:
    """What a dataset_fn of distribute_datasets_from_function is told about its input pipeline."""

    def __init__(self, num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=1):
        self.num_input_pipelines = num_input_pipelines
        self.input_pipeline_id = input_pipeline_id
        self.num_replicas_in_sync = num_replicas_in_sync

    def get_per_replica_batch_size(self, global_batch_size):
        if global_batch_size % self.num_replicas_in_sync:
            raise ValueError(f"The `global_batch_size` {global_batch_size} is not divisible by "
                             f"`num_replicas_in_sync` {self.num_replicas_in_sync}")
        return global_batch_size // self.num_replicas_in_sync

    def __repr__(self):
        return (f"tf.distribute.InputContext(input pipeline id {self.input_pipeline_id}, total: "
                f"{self.num_input_pipelines})")


class InputOptions:
    """Options of experimental_distribute_dataset (accepted; one device per worker needs none of them)."""

    def __init__(self, experimental_fetch_to_device=None, experimental_replication_mode=None,
                 experimental_place_dataset_on_device=False, experimental_per_replica_buffer_size=1):
        self.experimental_fetch_to_device = experimental_fetch_to_device
        self.experimental_replication_mode = experimental_replication_mode
        self.experimental_place_dataset_on_device = experimental_place_dataset_on_device
        self.experimental_per_replica_buffer_size = experimental_per_replica_buffer_size


class RunOptions:
    """Options of strategy.run (accepted for TF programs)."""

    def __init__(self, experimental_enable_dynamic_batch_size=True, experimental_bucketizing_dynamic_shape=False,
                 experimental_xla_options=None):
        self.experimental_enable_dynamic_batch_size = experimental_enable_dynamic_batch_size
        self.experimental_bucketizing_dynamic_shape = experimental_bucketizing_dynamic_shape
        self.experimental_xla_options = experimental_xla_options


# ---- which strategy and replica is current -----------------------------------------------------------------

class _State(threading.local):
    def __init__(self):
        self.scopes = []      # strategies entered with scope(), innermost last
        self.replica = None   # the ReplicaContext of the strategy.run in progress on this thread


_state = _State()
_global_strategy = None   # experimental_set_strategy's


def get_strategy():
    """The strategy of the innermost scope(), else the one set by experimental_set_strategy, else the default."""
    if _state.replica is not None:
        return _state.replica.strategy
    if _state.scopes:
        return _state.scopes[-1]
    return _global_strategy if _global_strategy is not None else _default_strategy()


def has_strategy():
    """True inside a strategy's scope (or run), or when experimental_set_strategy set one."""
    return get_strategy() is not _default_strategy()


def get_replica_context():
    """The ReplicaContext of the strategy.run in progress; None in a strategy's cross-replica scope; the
    default replica context when no strategy is in force."""
    if _state.replica is not None:
        return _state.replica
    if has_strategy():
        return None
    return _default_strategy()._default_replica


def in_cross_replica_context():
    return _state.replica is None and has_strategy()


def experimental_set_strategy(strategy):
    """Sets (or, with None, clears) a process-wide strategy, as entering its scope for good."""
    global _global_strategy
    _global_strategy = strategy


def get_loss_reduction():
    """The loss reduction the current replica context's optimizer expects (TF1 optimizers: MEAN)."""
    return "MEAN"


def aggregate_gradients(grads_and_vars):
    """`grads_and_vars` with each gradient SUMmed over the replicas in sync (unchanged with one replica).

    The hook optimizers call in apply_gradients: inside strategy.run the gradients of all replicas
    are all-reduced, packed into as few collectives as their dtypes allow.
    """
    ctx = _state.replica
    pairs = list(grads_and_vars)
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return pairs
    grads = [g for g, _ in pairs]
    present = [i for i, g in enumerate(grads) if g is not None]
    reduced = ctx.strategy.extended._batch_all_reduce(ReduceOp.SUM, [_dense(grads[i]) for i in present])
    for i, r in zip(present, reduced):
        grads[i] = r
    return [(g, v) for g, (_, v) in zip(grads, pairs)]


def map_structure(fn, value):
    """`value` with fn applied to each of its leaves (tensors)."""
    leaves = []
    spec = nest.flatten(value, lambda x: x, leaves)
    return nest.rebuild(spec, [fn(x) for x in leaves])


def _dense(value):
    from tensorgrid.client.graph import convert_to_tensor
    return convert_to_tensor(value)


# ---- strategies --------------------------------------------------------------------------------------------

class StrategyExtended:
    """The strategy's internals (TF's `strategy.extended`): how it reduces and where its variables go."""

    def __init__(self, strategy):
        self._container_strategy_weakref = strategy

    def _container_strategy(self):
        return self._container_strategy_weakref

    @property
    def experimental_between_graph(self):
        return False

    @property
    def experimental_should_init(self):
        return True

    @property
    def should_checkpoint(self):
        return True

    @property
    def should_save_summary(self):
        return True

    @property
    def parameter_devices(self):
        return tuple(self._container_strategy()._devices)

    @property
    def worker_devices(self):
        return tuple(self._container_strategy()._devices)

    def _batch_all_reduce(self, reduce_op, values):
        """Each tensor of `values` reduced over the replicas; the default: one replica, unchanged."""
        return list(values)

    def _variable_created(self, variable):
        """Called for every variable made in this strategy's scope."""

    def _variable_device(self):
        """The device of an eager variable made now on a connected cluster ("" leaves it to tg.device)."""
        return ""

    def batch_reduce_to(self, reduce_op, value_destination_pairs, options=None):
        return self._batch_all_reduce(_reduce_op(reduce_op), [v for v, _ in value_destination_pairs])

    def reduce_to(self, reduce_op, value, destinations, options=None):
        return self._batch_all_reduce(_reduce_op(reduce_op), [value])[0]

    def update(self, var, fn, args=(), kwargs=None, group=True):
        return fn(var, *args, **(kwargs or {}))

    def colocate_vars_with(self, colocate_with_variable):
        return contextlib.nullcontext()


class Strategy:
    """A way to run one program over several replicas (the base of every tg.distribute strategy)."""

    _extended_class = StrategyExtended

    def __init__(self, extended=None, devices=("/cpu:0",)):
        self._devices = list(devices)
        self._extended = extended if extended is not None else self._extended_class(self)
        self._default_replica = ReplicaContext(self, 0)

    @property
    def extended(self):
        return self._extended

    @property
    def num_replicas_in_sync(self):
        return 1

    @property
    def cluster_resolver(self):
        return getattr(self, "_cluster_resolver", None)

    @contextlib.contextmanager
    def scope(self):
        """Makes this the current strategy; variables made inside are this strategy's."""
        current = get_strategy()
        if current is not self and current is not _default_strategy() and _state.scopes:
            raise ValueError(f"Mixing different tf.distribute.Strategy objects: {current} is not {self}")
        _state.scopes.append(self)
        try:
            yield self
        finally:
            _state.scopes.pop()

    def _replica_id(self):
        return 0

    def run(self, fn, args=(), kwargs=None, options=None):
        """Calls fn(*args, **kwargs) in this process's replica context and returns its result."""
        kwargs = kwargs or {}
        outer = _state.replica
        _state.replica = ReplicaContext(self, self._replica_id())
        _state.scopes.append(self)
        try:
            with self._run_scope():
                return fn(*args, **kwargs)
        finally:
            _state.scopes.pop()
            _state.replica = outer

    def _run_scope(self):
        return contextlib.nullcontext()

    def reduce(self, reduce_op, value, axis):
        """The value reduced over the replicas (and over `axis` first, when not None), in the cross-replica
        context."""
        from tensorgrid.client import array_ops, math_ops
        op = _reduce_op(reduce_op)
        value = self.experimental_local_results(value)[0] if isinstance(value, PerReplica) else value
        value = _dense(value)
        if axis is None:
            out = self.extended._batch_all_reduce(op, [value])[0]
            return out / self.num_replicas_in_sync if op is ReduceOp.MEAN else out
        total = math_ops.reduce_sum(value, axis=axis)
        if op is ReduceOp.SUM:
            return self.extended._batch_all_reduce(op, [total])[0]
        count = array_ops.cast(array_ops.shape(value)[axis], value.dtype)
        total, count = self.extended._batch_all_reduce(ReduceOp.SUM, [total, count])
        return total / count

    def gather(self, value, axis):
        """Every replica's value concatenated along `axis` (in the cross-replica context)."""
        return self.extended._all_gather(_dense(value), axis) if hasattr(self.extended, "_all_gather") else \
            _dense(value)

    def experimental_local_results(self, value):
        if isinstance(value, PerReplica):
            return tuple(value.values)
        return (value,)

    def experimental_distribute_dataset(self, dataset, options=None):
        """The dataset as this process's replicas see it: each batch of the global batch size split over
        the replicas in sync, this worker's share."""
        return dataset

    def distribute_datasets_from_function(self, dataset_fn, options=None):
        """dataset_fn(InputContext) as this worker's input pipeline; its batches are per replica."""
        return dataset_fn(InputContext(1, 0, self.num_replicas_in_sync))

    experimental_distribute_datasets_from_function = distribute_datasets_from_function

    def experimental_distribute_values_from_function(self, value_fn):
        from tensorgrid.client.distribute.values import ValueContext
        return value_fn(ValueContext(self._replica_id(), self.num_replicas_in_sync))

    def __repr__(self):
        return f"<{type(self).__module__.replace('tensorgrid.client', 'tg')}.{type(self).__name__}>"


class ReplicaContext:
    """One replica's view inside strategy.run: its id, the number in sync, and all_reduce over them."""

    def __init__(self, strategy, replica_id_in_sync_group):
        self._strategy = strategy
        self._replica_id = replica_id_in_sync_group

    @property
    def strategy(self):
        return self._strategy

    @property
    def num_replicas_in_sync(self):
        return self._strategy.num_replicas_in_sync

    @property
    def replica_id_in_sync_group(self):
        from tensorgrid.client.graph import convert_to_tensor
        from tensorgrid.framework import dtypes
        return convert_to_tensor(self._replica_id, dtype=dtypes.int32)

    @property
    def devices(self):
        return (self._strategy._devices[0],)

    def all_reduce(self, reduce_op, value, options=None):
        """Every tensor of the nest `value` reduced (SUM or MEAN) over the replicas in sync."""
        op = _reduce_op(reduce_op)
        flat = []
        spec = nest.flatten(value, _dense, flat)
        reduced = self._strategy.extended._batch_all_reduce(ReduceOp.SUM, flat)
        if op is ReduceOp.MEAN:
            reduced = [r / _cast_count(r, self.num_replicas_in_sync) for r in reduced]
        return nest.rebuild(spec, reduced)

    def all_gather(self, value, axis, options=None):
        ext = self._strategy.extended
        return map_structure(lambda v: ext._all_gather(_dense(v), axis) if hasattr(ext, "_all_gather")
                             else _dense(v), value)

    def merge_call(self, merge_fn, args=(), kwargs=None):
        """merge_fn(strategy, *args, **kwargs), in the cross-replica context."""
        outer = _state.replica
        _state.replica = None
        try:
            return merge_fn(self._strategy, *args, **(kwargs or {}))
        finally:
            _state.replica = outer

    def __repr__(self):
        return f"ReplicaContext(replica {self._replica_id} of {self.num_replicas_in_sync})"


def _cast_count(value, n):
    from tensorgrid.client import array_ops
    return array_ops.cast(n, value.dtype)


class PerReplica(tuple):
    """Values of several replicas of one process (MirroredStrategy's), one per replica.

    A tuple, so that a tg.function takes it as an argument (a placeholder per replica) and returns it."""

    def __new__(cls, values):
        return super().__new__(cls, values)

    @property
    def values(self):
        return tuple(self)

    def __repr__(self):
        return "PerReplica:{" + ", ".join(f"{i}: {v!r}" for i, v in enumerate(self.values)) + "}"


_DEFAULT = None


def _default_strategy():
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Strategy()
    return _DEFAULT


def create_variable(cls, args, kwargs):
    """The variable the current strategy makes for `cls(*args, **kwargs)` (MirroredStrategy: a
    MirroredVariable), or None for an ordinary one."""
    if not args and not kwargs:     # Variable.__new__(Variable): a variable rebuilt from its parts (from_proto)
        return None
    strategy = get_strategy()
    create = getattr(strategy, "_create_variable", None)
    return create(cls, args, kwargs) if create is not None else None


def _on_variable_created(variable):
    strategy = get_strategy()
    if strategy is not _default_strategy():
        strategy.extended._variable_created(variable)


def _install_hook():
    from tensorgrid.client import variables
    if _on_variable_created not in variables.CREATED_HOOKS:
        variables.CREATED_HOOKS.append(_on_variable_created)


_install_hook()
