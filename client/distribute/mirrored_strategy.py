"""tg.distribute.MirroredStrategy: synchronous replicas on several devices of this process.

`MirroredStrategy()` is one replica on /cpu:0 (TF's default without GPUs). With
`devices=["/cpu:0", "/cpu:1", ...]` it runs one replica per device (virtual CPU devices of this
process: the local runtime runs each device's partition on a thread of its own):

- A `tg.Variable` made in `scope()` is a MirroredVariable: one component variable per device
  (`v`, `v/replica_1`, ...), all starting from the first one's value. Inside `strategy.run` replica
  k reads and updates component k; in the cross-replica context reads give component 0 and
  assigns go to every component.
- `strategy.run(fn, args)` calls fn once per replica, as TF does: each call on a thread of its
  own, the threads taking turns (one runs at a time, in replica order), under `tg.device(device k)`
  so that in a tg.function each replica's ops are placed on its device. An all-reduce
  (`get_replica_context().all_reduce`, an optimizer's gradient aggregation) waits until every
  replica has reached it; the last one builds the sum (in rank order, on the first device) and
  each replica continues with its copy of it on its own device. `run` returns PerReplica values.
- `strategy.reduce` of PerReplica values sums (or averages) the replicas' values;
  `experimental_distribute_dataset` splits each global batch into one slice per replica (rows
  [n*k/N, n*(k+1)/N) of a batch of n, as MultiWorkerMirroredStrategy splits one between workers).

Keras variables (KerasVariable, a layer's weights) are not mirrored: a Keras model under a
MirroredStrategy of several devices is not supported.
"""

import threading

from tensorgrid.client import context, nest
from tensorgrid.client.distribute import distribute_lib
from tensorgrid.client.distribute.distribute_lib import PerReplica, ReduceOp
from tensorgrid.framework import errors
from tensorgrid.framework.device_spec import DeviceSpec

__all__ = ["MirroredStrategy", "OneDeviceStrategy", "MirroredVariable"]


def _canonical(device):
    spec = DeviceSpec.from_string(device)
    if (spec.device_type or "CPU").upper() != "CPU":
        raise errors.InvalidArgumentError(
            None, None, f"MirroredStrategy: device {device!r} is not a device of this process (it has CPU devices "
            f"only: /cpu:0, /cpu:1, ...)")
    return f"/job:localhost/replica:0/task:0/device:CPU:{spec.device_index or 0}"


# ---- variables -------------------------------------------------------------------------------------------

def _make_variable_class():
    from tensorgrid.client.variables import Variable

    class MirroredVariable(Variable):
        """One variable per replica device; reads and updates go to the current replica's component.

        Every attribute it does not have itself is its current component's, so Variable's methods
        (reads, tape records, the handle a trace uses) act on that component."""

        def __init__(self, *args, **kwargs):   # made by _create, not by Variable(...)
            pass

        @classmethod
        def _create(cls, strategy, components):
            mv = object.__new__(cls)
            object.__setattr__(mv, "_mirrored_strategy", strategy)
            object.__setattr__(mv, "_components", tuple(components))
            return mv

        def _component(self):
            ctx = distribute_lib._state.replica
            if ctx is not None and ctx.strategy is self._mirrored_strategy:
                return self._components[ctx._replica_id]
            return self._components[0]

        def __getattr__(self, name):
            if name in ("_components", "_mirrored_strategy"):
                raise AttributeError(name)
            return getattr(self._component(), name)

        @property
        def values(self):
            return self._components

        def _update(self, op_type, value, name, read_value):
            if distribute_lib._state.replica is None:      # cross-replica: every component
                outs = [c._update(op_type, value, name, read_value) for c in self._components]
                if context.executing_eagerly():
                    return self if read_value else None
                from tensorgrid.client import control_flow
                return outs[0] if read_value else control_flow.group(*outs)
            out = self._component()._update(op_type, value, name, read_value)
            return self if out is self._component() else out

        def __repr__(self):
            return f"MirroredVariable:{{{', '.join(f'{i}: {c!r}' for i, c in enumerate(self._components))}}}"

    return MirroredVariable


_variable_class = None


def _mirrored_variable_class():
    global _variable_class
    if _variable_class is None:
        _variable_class = _make_variable_class()
    return _variable_class


def __getattr__(name):
    if name == "MirroredVariable":
        return _mirrored_variable_class()
    raise AttributeError(name)


# ---- replicas taking turns --------------------------------------------------------------------------------

class _Turns:
    """The replica threads of one strategy.run: one runs at a time, in replica order; an all-reduce
    waits for every replica to reach it."""

    def __init__(self, strategy, n, graph):
        self.strategy = strategy
        self.n = n
        self.graph = graph
        self.cond = threading.Condition()
        self.turn = 0
        self.finished = [False] * n
        self.round = [0] * n    # how many all-reduces each replica has started
        self.rounds = {}        # round -> {"deposits": {replica: (op, values)}, "results": ..., "collected": n}
        self.error = None

    # graph state that `with g.device/name_scope/...` changes, which each replica keeps its own of
    def _save(self):
        g = self.graph
        if g is None:
            return None
        return (g._name_stack, list(g._device_stack), list(g._control_stack), list(g._colocation_stack))

    def _restore(self, state):
        g = self.graph
        if g is None or state is None:
            return
        g._name_stack, g._device_stack[:], g._control_stack[:], g._colocation_stack[:] = (
            state[0], state[1], state[2], state[3])

    def _pass(self, k):
        """Gives the turn to the next replica after k that is not finished (cond held)."""
        for step in range(1, self.n + 1):
            j = (k + step) % self.n
            if not self.finished[j]:
                self.turn = j
                break
        self.cond.notify_all()

    def wait_turn(self, k):
        while self.turn != k and self.error is None:
            self.cond.wait()
        if self.error is not None:
            raise _Stop()

    def _check_stuck(self):
        """An all-reduce that a replica ended without can never complete (cond held)."""
        for r, entry in self.rounds.items():
            deposits = entry["deposits"]
            if len(deposits) < self.n and all(self.finished[j] or j in deposits for j in range(self.n)):
                missing = [j for j in range(self.n) if j not in deposits]
                self.error = errors.InvalidArgumentError(
                    None, None, f"MirroredStrategy.run: replicas {sorted(deposits)} reached all-reduce #{r + 1} "
                    f"that replicas {missing} ended without; every replica must run the same collectives")
                self.cond.notify_all()
                return

    def finish(self, k):
        with self.cond:
            self.finished[k] = True
            if self.error is None:
                self._check_stuck()
            self._pass(k)

    def fail(self, k, error):
        with self.cond:
            if self.error is None:
                self.error = error
            self.finished[k] = True
            self.cond.notify_all()

    def all_reduce(self, k, reduce_op, values):
        """Replica k's values reduced over every replica (called on replica k's thread, in its turn)."""
        with self.cond:
            r = self.round[k]
            self.round[k] += 1
            entry = self.rounds.setdefault(r, {"deposits": {}, "results": None, "collected": 0})
            entry["deposits"][k] = (reduce_op, list(values))
            if len(entry["deposits"]) == self.n:
                entry["results"] = self._reduce(entry["deposits"])
            while entry["results"] is None:
                state = self._save()
                self._pass(k)
                self.wait_turn(k)
                self._restore(state)
            out = entry["results"][k]
            entry["collected"] += 1
            if entry["collected"] == self.n:
                del self.rounds[r]
            return out

    def _reduce(self, deposits):
        from tensorgrid.client import array_ops, math_ops, scopes
        ops = {op for op, _ in deposits.values()}
        per_replica = [deposits[j][1] for j in range(self.n)]
        counts = {len(v) for v in per_replica}
        if len(counts) != 1 or len(ops) != 1:
            raise errors.InvalidArgumentError(
                None, None, "MirroredStrategy: the replicas' all-reduces differ (number of tensors or reduce op)")
        devices = self.strategy._devices
        g = self.graph
        clean = g.control_dependencies(None) if g is not None else _null()
        out = [[None] * len(per_replica[0]) for _ in range(self.n)]
        with clean:
            for i in range(len(per_replica[0])):
                with scopes.device(devices[0]):
                    total = math_ops.add_n([per_replica[j][i] for j in range(self.n)]) if self.n > 1 \
                        else per_replica[0][i]
                    if ReduceOp.MEAN in ops:
                        total = total / array_ops.cast(self.n, total.dtype)
                for j in range(self.n):
                    with scopes.device(devices[j]):
                        out[j][i] = array_ops.identity(total)
        return out


class _Stop(Exception):
    """Ends a replica thread whose run failed on another replica."""


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _select(value, k):
    """`value` with each PerReplica in it replaced by its replica-k component (MirroredVariables stay)."""
    if isinstance(value, PerReplica):
        return value.values[k]
    if isinstance(value, dict):
        return {key: _select(v, k) for key, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_select(v, k) for v in value)
    return value


def _per_replica(results):
    """The replicas' return values as one structure with PerReplica leaves (TF's rule)."""
    flat = []
    spec = None
    for r in results:
        leaves = []
        s = nest.flatten(r, lambda x: x, leaves)
        spec = spec or s
        flat.append(leaves)
    if not flat or not flat[0]:
        return results[0] if results else None
    return nest.rebuild(spec, [PerReplica(vals) for vals in zip(*flat)])


class _MirroredExtended(distribute_lib.StrategyExtended):
    def __init__(self, strategy):
        super().__init__(strategy)
        self._local = threading.local()    # .turns, .replica on a replica thread of a run

    def _batch_all_reduce(self, reduce_op, values):
        strategy = self._container_strategy()
        turns = getattr(self._local, "turns", None)
        if turns is None or len(strategy._devices) == 1:
            return list(values)
        return turns.all_reduce(self._local.replica, reduce_op, values)


class MirroredStrategy(distribute_lib.Strategy):
    """Synchronous replicas on the devices of this process (TF's MirroredStrategy on logical CPUs)."""

    _extended_class = _MirroredExtended

    def __init__(self, devices=None, cross_device_ops=None):
        devices = ["/cpu:0"] if devices is None else list(devices)
        if not devices:
            raise ValueError("MirroredStrategy: `devices` cannot be empty")
        names = [_canonical(d) for d in devices]
        if len(set(names)) != len(names):
            raise ValueError(f"MirroredStrategy: duplicated devices {devices}")
        super().__init__(devices=names)
        self._cross_device_ops = cross_device_ops
        self._creating = threading.local()

    @property
    def num_replicas_in_sync(self):
        return len(self._devices)

    # variables made in scope(): one component per device
    def _create_variable(self, cls, args, kwargs):
        if len(self._devices) == 1 or getattr(self._creating, "on", False):
            return None
        from tensorgrid.client import scopes
        name = kwargs.pop("name", None)
        self._creating.on = True
        try:
            components = []
            for k, device in enumerate(self._devices):
                with scopes.device(device):
                    if k == 0:
                        first = cls(*args, name=name, **kwargs)
                        components.append(first)
                    else:
                        rest = dict(kwargs)
                        rest.pop("initial_value", None)
                        start = first.read_value() if first._eager() else first._initial_value
                        components.append(cls(start, *args[1:], name=f"{name or 'Variable'}/replica_{k}", **rest))
                    if components[-1]._eager():
                        components[-1]._local_device = device
        finally:
            self._creating.on = False
        return _mirrored_variable_class()._create(self, components)

    def run(self, fn, args=(), kwargs=None, options=None):
        """fn once per replica, each on its device, taking turns; PerReplica results."""
        n = len(self._devices)
        if n == 1:
            return super().run(fn, args, kwargs, options)
        from tensorgrid.client import scopes
        kwargs = kwargs or {}
        stack = list(context.graph_stack())
        graph = stack[-1] if stack else None
        device_stack = list(context.eager_device_stack())
        name_scope = context.eager_name_scope()
        turns = _Turns(self, n, graph)
        results = [None] * n
        base_state = turns._save()

        def replica(k):
            context.graph_stack()[:] = stack
            context.eager_device_stack()[:] = device_stack
            context.set_eager_name_scope(name_scope)
            self.extended._local.turns = turns
            self.extended._local.replica = k
            distribute_lib._state.replica = distribute_lib.ReplicaContext(self, k)
            distribute_lib._state.scopes.append(self)
            try:
                with turns.cond:
                    turns.wait_turn(k)
                turns._restore(base_state)
                with scopes.device(self._devices[k]):
                    results[k] = fn(*_select(args, k), **_select(kwargs, k))
                turns.finish(k)
            except _Stop:
                turns.finish(k)
            except BaseException as e:  # noqa: BLE001 - re-raised on the caller's thread
                turns.fail(k, e)

        threads = [threading.Thread(target=replica, args=(k,), name=f"tg-mirrored-replica{k}", daemon=True)
                   for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        turns._restore(base_state)
        if turns.error is not None:
            raise turns.error
        return _per_replica(results)

    def experimental_local_results(self, value):
        if isinstance(value, PerReplica):
            return tuple(value.values)
        if hasattr(value, "_components"):
            return tuple(value._components)
        return (value,)

    def reduce(self, reduce_op, value, axis):
        """The replicas' values reduced (SUM or MEAN), over `axis` of each first when it is not None."""
        from tensorgrid.client import array_ops, math_ops
        op = distribute_lib._reduce_op(reduce_op)
        parts = [distribute_lib._dense(v) for v in self.experimental_local_results(value)]
        if not isinstance(value, PerReplica):
            parts = parts[:1] * len(self._devices)     # the same value on every replica
        with _device(self._devices[0]):
            if axis is None:
                total = math_ops.add_n(parts) if len(parts) > 1 else parts[0]
                return total / array_ops.cast(len(parts), total.dtype) if op is ReduceOp.MEAN else total
            sums = [math_ops.reduce_sum(p, axis=axis) for p in parts]
            total = math_ops.add_n(sums) if len(sums) > 1 else sums[0]
            if op is ReduceOp.SUM:
                return total
            count = math_ops.add_n([array_ops.cast(array_ops.shape(p)[axis], total.dtype) for p in parts])
            return total / count

    def experimental_distribute_dataset(self, dataset, options=None):
        """Each global batch of `dataset` as PerReplica slices, one per replica."""
        n = len(self._devices)
        if n == 1:
            return dataset
        return _DistributedDataset(dataset, n)

    def distribute_datasets_from_function(self, dataset_fn, options=None):
        n = len(self._devices)
        if n == 1:
            return dataset_fn(distribute_lib.InputContext(1, 0, 1))
        return _DistributedDataset(dataset_fn(distribute_lib.InputContext(1, 0, n)), n, split=False)

    experimental_distribute_datasets_from_function = distribute_datasets_from_function


def _device(device):
    from tensorgrid.client import scopes
    return scopes.device(device)


class _DistributedDataset:
    """Iterates a dataset as PerReplica values: each element split in n slices (or, split=False, n
    consecutive elements, one per replica)."""

    def __init__(self, dataset, n, split=True):
        self._dataset = dataset
        self._n = n
        self._split = split

    def __iter__(self):
        n = self._n
        it = iter(self._dataset)
        while True:
            if self._split:
                try:
                    element = next(it)
                except StopIteration:
                    return

                def share(t, k):
                    rows = int(t.shape[0])
                    return t[(rows * k) // n:(rows * (k + 1)) // n]
                parts = [distribute_lib.map_structure(lambda t, k=k: share(t, k), element) for k in range(n)]
            else:
                parts = []
                for _ in range(n):
                    try:
                        parts.append(next(it))
                    except StopIteration:
                        return
            yield _per_replica(parts)

    @property
    def element_spec(self):
        return self._dataset.element_spec


class OneDeviceStrategy(distribute_lib.Strategy):
    """Everything on one device: one replica."""

    def __init__(self, device):
        super().__init__(devices=[_canonical(device)])
