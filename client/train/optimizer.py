"""The Optimizer base class: gradients, slots and the apply step shared by every TF1 optimizer.

`minimize` is `compute_gradients` then `apply_gradients`. In graph mode the
gradients come from tg.gradients; eagerly `loss` is a callable run under a
GradientTape. Each variable's update is built from primitive ops (reads,
arithmetic, assign/assign_add/assign_sub) by the subclass's `_apply_dense`,
or, for a gradient that is an IndexedSlices (gather, embedding_lookup), by
`_resource_apply_sparse` after repeated rows are summed, as TF1 does: only
those rows change (TF1's sparse Adam excepted: it decays every row of its
slots and moves every row of the variable by them). Each runs under `colocate_with(var)`, where the variable lives, as do the
slots (per-variable accumulators such as `v/Adam`). Gating is TF's: GATE_OP
(the default) makes the gradients each op gives its inputs wait for one
another (so an op's whole gradient is made before any of it is applied),
GATE_GRAPH makes every gradient wait for all of them, GATE_NONE gates
nothing. No update can race a read of the same step either way: an update
writes a variable's array in place only when nothing else holds it
(scatter_ops.writable_value), so a read's value never changes under it. Gradient ops are
colocated with their forward ops unless colocate_gradients_with_ops=False
(tg.gradients' default; TF1's optimizers default to False). `use_locking` is
accepted for TF1 programs: every assign already holds its variable's lock.
"""

from tensorgrid.client import array_ops, context, gradients as gradients_lib, scopes
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.indexed_slices import IndexedSlices

__all__ = ["Optimizer"]


class Optimizer:
    """Base class of the optimizers; subclasses define _create_slots, _prepare and _apply_dense."""

    GATE_NONE = 0
    GATE_OP = 1
    GATE_GRAPH = 2

    def __init__(self, use_locking, name):
        if not name:
            raise ValueError("Must specify the optimizer name")
        self._name = name
        self._slots = {}        # slot name -> {Variable: slot Variable}
        self._non_slots = {}    # (name, graph of the variables, None when eager) -> Variable

    def get_name(self):
        return self._name

    # ---- the public steps ----------------------------------------------------------------
    def minimize(self, loss, global_step=None, var_list=None, gate_gradients=GATE_OP, aggregation_method=None,
                 colocate_gradients_with_ops=True, name=None, grad_loss=None):
        """Adds the ops that update `var_list` (default: trainable variables) to reduce `loss`."""
        grads_and_vars = self.compute_gradients(loss, var_list=var_list, gate_gradients=gate_gradients,
                                                aggregation_method=aggregation_method,
                                                colocate_gradients_with_ops=colocate_gradients_with_ops,
                                                grad_loss=grad_loss)
        if not any(g is not None for g, _ in grads_and_vars):
            raise ValueError("No gradients provided for any variable, check your graph for ops that do not "
                             f"support gradients, between variables {[v.name for _, v in grads_and_vars]} "
                             f"and loss {loss!r}.")
        return self.apply_gradients(grads_and_vars, global_step=global_step, name=name)

    def compute_gradients(self, loss, var_list=None, gate_gradients=GATE_OP, aggregation_method=None,
                          colocate_gradients_with_ops=True, grad_loss=None):
        """[(gradient or None, variable)] of `loss` for each variable in `var_list`."""
        if gate_gradients not in (self.GATE_NONE, self.GATE_OP, self.GATE_GRAPH):
            raise ValueError(f"gate_gradients must be one of: Optimizer.GATE_NONE, Optimizer.GATE_OP, "
                             f"Optimizer.GATE_GRAPH. Not {gate_gradients}")
        if context.executing_eagerly():
            return self._eager_gradients(loss, var_list, grad_loss)
        if callable(loss):
            loss = loss()
        loss = _scale_loss(convert_to_tensor(loss))
        if var_list is None:
            var_list = variables_lib.trainable_variables()
        var_list = list(var_list)
        if not var_list:
            raise ValueError("No variables to optimize.")
        _check_float(loss, var_list)
        grads = gradients_lib.gradients(loss, var_list, grad_ys=grad_loss, aggregation_method=aggregation_method,
                                        colocate_gradients_with_ops=colocate_gradients_with_ops,
                                        gate_gradients=gate_gradients == self.GATE_OP)
        if gate_gradients == self.GATE_GRAPH:
            grads = gradients_lib.tuple_of(grads)
        return list(zip(grads, var_list))

    def _eager_gradients(self, loss, var_list, grad_loss):
        from tensorgrid.client.tape import GradientTape
        if not callable(loss):
            raise RuntimeError("`loss` passed to Optimizer.compute_gradients should be a function when eager "
                               "execution is enabled.")
        with GradientTape() as tape:
            value = _scale_loss(loss())
        if var_list is None:
            var_list = [v for v in tape.watched_variables() if v.trainable]
        var_list = list(var_list)
        if not var_list:
            raise ValueError("No variables to optimize.")
        grads = tape.gradient(value, var_list, output_gradients=grad_loss)
        return list(zip(grads, var_list))

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """Adds the ops that apply each (gradient, variable) pair; returns the training op.

        With `global_step`, the op also increments it once every update has run.
        """
        from tensorgrid.client.distribute import distribute_lib
        # inside strategy.run: every replica's gradients summed (their losses were scaled by 1/replicas)
        grads_and_vars = distribute_lib.aggregate_gradients([(g, v) for g, v in grads_and_vars])
        if not grads_and_vars:
            raise ValueError("No variables provided.")
        pairs = []
        for g, v in grads_and_vars:
            if not isinstance(v, variables_lib.Variable):
                raise TypeError(f"Can not update variable with type {type(v).__name__}: {v!r}")
            if g is not None:
                pairs.append((g if isinstance(g, IndexedSlices) else convert_to_tensor(g), v))
        if not pairs:
            raise ValueError(f"No gradients provided for any variable: {[v.name for _, v in grads_and_vars]}.")
        var_list = [v for _, v in pairs]
        with _outside_control_dependencies():
            self._create_slots(var_list)
        from tensorgrid.client.train import checkpoint
        checkpoint.restore_pending()    # slots made now take the values a restore kept for them
        # TF's names: the training op is `name` itself (the global step's increment when there is one)
        with scopes.name_scope(name, self._name) as scope:
            self._prepare()
            updates = []
            for grad, var in pairs:
                with scopes.name_scope("update_" + var._op_name()), _colocate(var):
                    if isinstance(grad, IndexedSlices):
                        updates.append(self._resource_apply_sparse_duplicate_indices(grad.values, var, grad.indices))
                    else:
                        updates.append(self._apply_dense(grad, var))
            if global_step is None:
                train_op = self._finish(updates, scope)
            else:
                finished = self._finish(updates, "update")
                with scopes.control_dependencies([finished] if finished is not None else []), \
                        _colocate(global_step):
                    train_op = global_step.assign_add(1, name=scope, read_value=False)
        if train_op is not None:
            ops = train_op.graph.get_collection_ref(variables_lib.GraphKeys.TRAIN_OP)
            if train_op not in ops:
                ops.append(train_op)
        return train_op

    # ---- hooks the optimizers define ------------------------------------------------------
    def _create_slots(self, var_list):
        """Creates the slots every variable of `var_list` needs."""

    def _prepare(self):
        """Converts hyperparameters to tensors once per apply_gradients."""

    def _apply_dense(self, grad, var):
        raise NotImplementedError(f"{type(self).__name__} does not define _apply_dense")

    def _resource_apply_sparse_duplicate_indices(self, grad, var, indices):
        """Applies the rows `grad` of the gradient at `indices`, which may repeat: sums repeated rows first."""
        summed, unique_indices = _deduplicate_indexed_slices(grad, indices)
        return self._resource_apply_sparse(summed, var, unique_indices)

    def _resource_apply_sparse(self, grad, var, indices):
        """Applies the rows `grad` of the gradient at the distinct `indices` (only those rows of var change)."""
        raise NotImplementedError(f"{type(self).__name__} does not define _resource_apply_sparse")

    def _finish(self, update_ops, name):
        """The op that runs every update (subclasses add their end-of-step updates)."""
        if context.executing_eagerly():
            return None
        return array_ops.group(*update_ops, name=name)

    # ---- slots -----------------------------------------------------------------------------
    def _trackable_children(self):
        """Its non-slot variables by name (beta1_power, ...): what tg.train.Checkpoint saves of it."""
        return {name: v for (name, _), v in self._non_slots.items()}

    def _trackable_slot_variables(self):
        """[(variable, slot name, slot variable)]: tg.train.Checkpoint saves them beside their variables."""
        return [(var, name, slot) for name in sorted(self._slots) for var, slot in self._slots[name].items()]

    def get_slot_names(self):
        return sorted(self._slots)

    def get_slot(self, var, name):
        """The slot `name` of `var` (e.g. get_slot(v, "m") for Adam), or None."""
        return self._slots.get(name, {}).get(var)

    def variables(self):
        """Every variable this optimizer made: non-slot variables first, then slots."""
        made = list(self._non_slots.values())
        for name in sorted(self._slots):
            made.extend(self._slots[name].values())
        return made

    def _slot_with_initializer(self, var, initializer, slot_name, op_name):
        """The slot `slot_name` of `var`, made on first use as variable `<var>/<op_name>` next to `var`."""
        per_var = self._slots.setdefault(slot_name, {})
        if var not in per_var:
            shape, dtype = var.shape.as_list(), var.dtype
            with _outside_control_dependencies(), _colocate(var), _root_name_scope():
                per_var[var] = variables_lib.Variable(lambda: initializer(shape, dtype=dtype), trainable=False,
                                                      name=f"{var._op_name()}/{op_name}", dtype=dtype)
        return per_var[var]

    def _zeros_slot(self, var, slot_name, op_name):
        return self._slot_with_initializer(var, variables_lib.zeros_initializer(), slot_name, op_name)

    def _non_slot_variable(self, initial_value, name, colocate_with):
        """A variable the optimizer keeps once per graph (Adam's beta1_power), next to `colocate_with`."""
        key = (name, colocate_with.graph)
        if key not in self._non_slots:
            with _outside_control_dependencies(), _colocate(colocate_with), _root_name_scope():
                self._non_slots[key] = variables_lib.Variable(initial_value, trainable=False, name=name)
        return self._non_slots[key]


def _check_float(loss, var_list):
    for t in [loss] + var_list:
        if not t.dtype.is_floating:
            raise ValueError(f"Invalid type {t.dtype.name} for {t.name}, expected: float16, float32, float64.")


def _deduplicate_indexed_slices(values, indices):
    """(values summed per distinct index, the distinct indices in order of first appearance)."""
    unique_indices, positions = array_ops.unique(indices)
    summed = array_ops.unsorted_segment_sum(values, positions, array_ops.shape(unique_indices)[0])
    return summed, unique_indices


def _colocate(var):
    """Colocation with `var`'s handle (in a tg.function trace, the trace's handle of an eager variable)."""
    return scopes.colocate_with(None if context.executing_eagerly() else var.handle.op)


def _outside_control_dependencies():
    return scopes.control_dependencies(None)


def _root_name_scope():
    return scopes.name_scope("")


def _scale_loss(loss):
    """The loss divided by the replicas in sync inside strategy.run (TF1 optimizers' MEAN reduction)."""
    from tensorgrid.client.distribute import distribute_lib
    ctx = distribute_lib.get_replica_context()
    n = ctx.num_replicas_in_sync if ctx is not None else 1
    return loss if n == 1 else loss * (1.0 / n)
