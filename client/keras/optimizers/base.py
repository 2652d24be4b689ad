"""The Keras 3 Optimizer base class: variables, gradient clipping, weight decay, EMA, the apply step.

`apply_gradients(grads_and_vars)` (or `apply(grads, trainable_variables)`) does, in Keras 3's order:
drop None gradients (warning), build the optimizer on the first call (its slot variables, made
once and lifted out of a tg.function trace, as TF2 makes a function's variables on its first trace
only), divide by `loss_scale_factor`, clip (`clipnorm` per gradient, `global_clipnorm` over all,
`clipvalue` per element), decay the weights (`var -= var * weight_decay * lr` for the variables not
excluded), run `update_step(gradient, variable, learning_rate)` per variable, update the moving averages
(`use_ema`), and add 1 to `iterations`. It works eagerly and inside tg.function alike: inside a trace
the updates become ops that run in program order on every call.

`variables` lists, in creation order, `iteration` (int64), `learning_rate` (float32; absent when it
is a schedule or a callable) and the slots made by `build`, variable by variable (Adam: each
variable's momentum then its velocity), the order Keras saves them in `.keras` files.
IndexedSlices gradients stay sparse where Keras's TensorFlow backend keeps them so (`assign*` of an
IndexedSlices scatters its rows: SGD without momentum, Adagrad); elsewhere they are densified.
"""

import contextlib
import re
import warnings

import numpy as np

from tensorgrid.client import array_ops, context, math_ops, remote_eager, scopes
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.distribute import distribute_lib
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.indexed_slices import IndexedSlices
from tensorgrid.client.keras.naming import auto_name
from tensorgrid.client.keras.optimizers import schedules as schedules_lib
from tensorgrid.framework import dtypes

__all__ = ["Optimizer"]

class Optimizer:
    """Base class of the Keras optimizers: subclasses define build(var_list) and update_step."""

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None, name=None, **kwargs):
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.")
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if gradient_accumulation_steps is not None:
            raise NotImplementedError("gradient_accumulation_steps is not supported by tg.keras optimizers; "
                                      f"received gradient_accumulation_steps={gradient_accumulation_steps}")
        self.name = name or auto_name(type(self).__name__)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.global_clipnorm = global_clipnorm
        self.clipvalue = clipvalue
        self.use_ema = use_ema
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        if use_ema:
            if ema_momentum > 1 or ema_momentum < 0:
                raise ValueError(f"`ema_momentum` must be in the range [0, 1]. Received: ema_momentum={ema_momentum}")
            if ema_overwrite_frequency and (not isinstance(ema_overwrite_frequency, int)
                                            or ema_overwrite_frequency < 1):
                raise ValueError(f"`ema_overwrite_frequency` must be an integer >= 1 or None. Received: "
                                 f"ema_overwrite_frequency={ema_overwrite_frequency}")
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. Received: "
                             f"clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}")
        self.built = False
        self._variables = []
        self._trainable_variables = []
        self._trainable_variables_indices = {}
        self._exclude_ids = set()
        self._exclude_pattern = None
        self._iterations = self._make_variable(np.int64(0), "iteration", dtypes.int64)
        if isinstance(learning_rate, schedules_lib.LearningRateSchedule) or callable(learning_rate):
            self._learning_rate = learning_rate
        else:
            if not isinstance(learning_rate, float):
                raise ValueError(f"Argument `learning_rate` should be float, or an instance of LearningRateSchedule, "
                                 f"or a callable (that takes in the current iteration value and returns the "
                                 f"corresponding learning rate value). Received instead: "
                                 f"learning_rate={learning_rate}")
            self._learning_rate = self._make_variable(np.float32(learning_rate), "learning_rate", dtypes.float32)

    # ---- variables ------------------------------------------------------------------------
    def _make_variable(self, value, name, dtype, colocate_with=None):
        """A non-trainable variable `<optimizer name>/<name>`, tracked in `variables`."""
        place = colocate_with is not None and not context.executing_eagerly() and \
            not variables_lib._in_function_trace()
        # an eager variable on a cluster: its slot goes to its device (a ps task under ParameterServerStrategy)
        remote = colocate_with is not None and not place and getattr(colocate_with, "_remote", None) is not None
        with scopes.control_dependencies(None), \
                (scopes.colocate_with(colocate_with.handle.op) if place else contextlib.nullcontext()), \
                (remote_eager.variables_on(colocate_with._remote_device) if remote else contextlib.nullcontext()):
            variable = variables_lib.Variable(lambda: np.asarray(value, dtype=dtype.as_numpy_dtype),
                                              trainable=False, name=f"{self.name}/{name}", dtype=dtype)
        self._variables.append(variable)
        return variable

    def add_variable(self, shape, initializer="zeros", dtype=None, aggregation="none", layout=None, name=None):
        """A new optimizer variable of `shape` (float32 unless `dtype`), filled by `initializer`."""
        dtype = dtypes.as_dtype(dtype or "float32")
        return self._make_variable(_initial_value(initializer, tuple(shape), dtype), name or "variable", dtype)

    def add_variable_from_reference(self, reference_variable, name=None, initializer="zeros"):
        """A variable shaped like `reference_variable`, named `<its name>_<name>` (Keras's slot naming)."""
        path = getattr(reference_variable, "path", None) or reference_variable.name
        slot_name = f"{str(path).replace('/', '_').replace(':', '_')}_{name or 'var'}"
        shape = tuple(reference_variable.shape.as_list())
        dtype = dtypes.as_dtype(reference_variable.dtype)
        return self._make_variable(_initial_value(initializer, shape, dtype), slot_name, dtype,
                                   colocate_with=reference_variable)

    def add_optimizer_variables(self, trainable_variables, name, initializer="zeros"):
        """One slot per variable for `name` (a list of slot lists when `name` is a list of names)."""
        names = [name] if isinstance(name, str) else list(name)
        inits = [initializer] * len(names) if not isinstance(initializer, (list, tuple)) else list(initializer)
        if len(names) != len(inits):
            raise ValueError(f"The number of provided names must match the number of provided initializers.  "
                             f"Received name='{name}', initializer='{initializer}'")
        made = tuple([] for _ in names)
        for variable in trainable_variables:
            for i, (slot, init) in enumerate(zip(names, inits)):
                made[i].append(self.add_variable_from_reference(variable, name=slot, initializer=init))
        return made[0] if isinstance(name, str) else made

    def build(self, variables):
        """Records the variables this optimizer updates (subclasses then make their slots)."""
        if self.use_ema:
            self._model_variables_moving_average = self.add_optimizer_variables(variables, "average")
        for i, variable in enumerate(variables):
            self._trainable_variables_indices[self._var_key(variable)] = i
        self._trainable_variables = list(variables)
        self.built = True

    def _var_key(self, variable):
        return id(variable)

    def _get_variable_index(self, variable):
        return self._trainable_variables_indices[self._var_key(variable)]

    def _trackable_children(self):
        """tf.train.Checkpoint's children, with tf.keras's names: `_iterations`, `_learning_rate` (when a
        variable) and `_variables`, whose slots are keyed `_variables/N` after the two (the object graph
        keeps each variable under its first path), so checkpoint keys match TF's."""
        items = {"_iterations": self._iterations}
        if isinstance(self._learning_rate, variables_lib.Variable):
            items["_learning_rate"] = self._learning_rate
        items["_variables"] = list(self._variables)
        return items

    @property
    def variables(self):
        return list(self._variables)

    @property
    def iterations(self):
        return self._iterations

    # ---- the learning rate ----------------------------------------------------------------
    @property
    def learning_rate(self):
        """The current rate: the variable, or the schedule's value at `iterations` (a tensor)."""
        if isinstance(self._learning_rate, schedules_lib.LearningRateSchedule):
            return self._learning_rate(self._iterations)
        if isinstance(self._learning_rate, variables_lib.Variable):
            return self._learning_rate
        return self._learning_rate()

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        previous = self._learning_rate if isinstance(self._learning_rate, variables_lib.Variable) else None
        if isinstance(learning_rate, schedules_lib.LearningRateSchedule) or callable(learning_rate):
            self._learning_rate = learning_rate
        else:
            if isinstance(self._learning_rate, schedules_lib.LearningRateSchedule):
                raise TypeError("This optimizer was created with a `LearningRateSchedule` object as its "
                                "`learning_rate` constructor argument, hence its learning rate is not settable. If "
                                "you need the learning rate to be settable, you should instantiate the optimizer "
                                "with a float `learning_rate` argument.")
            if previous is None:
                self._learning_rate = self._make_variable(np.float32(learning_rate), "learning_rate",
                                                          dtypes.float32)
            else:
                self._learning_rate.assign(np.float32(learning_rate))
        if previous is not None and not isinstance(self._learning_rate, variables_lib.Variable):
            self._variables = [v for v in self._variables if v is not previous]

    # ---- assignment helpers (IndexedSlices scatter their rows) ----------------------------
    def assign(self, variable, value):
        return _update(variable, value, "assign", "scatter_update")

    def assign_add(self, variable, value):
        return _update(variable, value, "assign_add", "scatter_add")

    def assign_sub(self, variable, value):
        return _update(variable, value, "assign_sub", "scatter_sub")

    # ---- the step -------------------------------------------------------------------------
    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError(f"{type(self).__name__} does not define update_step")

    def apply_gradients(self, grads_and_vars):
        """Applies (gradient, variable) pairs; returns `iterations` (tf.keras's return value)."""
        pairs = list(grads_and_vars)
        if not pairs:   # Keras 3 fails here too (its `zip(*grads_and_vars)` unpacks nothing)
            raise ValueError("apply_gradients() got no (gradient, variable) pairs: the list of variables is empty "
                             "(a model's trainable_variables are empty until the model is first called)")
        grads, trainable_variables = zip(*pairs)
        self.apply(list(grads), list(trainable_variables))
        return self._iterations

    def apply(self, grads, trainable_variables=None):
        """Applies `grads`, one per variable of `trainable_variables` (default: those it was built with)."""
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError("When passing `grads` without `variables`, the optimizer must already be built on "
                                 "a list of variables. Call `optimizer.build(trainable_variables)` first. ")
            if len(grads) != len(self._trainable_variables_indices):
                raise ValueError(f"When passing `grads` as a list of gradient tensors, the gradients must match "
                                 f"`optimizer.variables` one-to-on. Received a list of {len(grads)} gradients, but "
                                 f"the optimizer is tracking {len(self._trainable_variables)} trainable variables.")
            trainable_variables = self._trainable_variables
        else:
            trainable_variables = list(trainable_variables)
            for v in trainable_variables:
                if not isinstance(v, variables_lib.Variable):
                    raise TypeError(f"Can not update variable with type {type(v).__name__}: {v!r}")
            if not self.built:
                with scopes.name_scope(self.name):
                    self.build(trainable_variables)
                self.built = True
            for v in trainable_variables:
                if self._var_key(v) not in self._trainable_variables_indices:
                    raise ValueError(f"Unknown variable: {v}. This optimizer can only be called for the variables "
                                     f"it was originally built with. When working with a new set of variables, you "
                                     f"should recreate a new optimizer instance.")
        with scopes.name_scope(self.name):
            grads, trainable_variables = _filter_empty_gradients(grads, trainable_variables)
            grads = [g if isinstance(g, IndexedSlices) else convert_to_tensor(g) for g in grads]
            if self.loss_scale_factor is not None:
                grads = [_scale(g, 1.0 / self.loss_scale_factor) for g in grads]
            grads = self._clip_gradients(grads)
            self._apply_weight_decay(trainable_variables)
            # inside a tg.distribute strategy's run: the replicas' gradients summed (after clipping, as Keras's)
            grads = [g for g, _ in distribute_lib.aggregate_gradients(zip(grads, trainable_variables))]
            learning_rate = self.learning_rate
            for grad, variable in zip(grads, trainable_variables):
                with scopes.name_scope("update_" + _op_name(variable)):
                    self.update_step(grad, variable, learning_rate)
            if self.use_ema:
                self._update_moving_averages()
            self._iterations.assign_add(np.int64(1))

    # ---- clipping, weight decay, EMA ------------------------------------------------------
    def _clip_gradients(self, grads):
        if self.clipnorm and self.clipnorm > 0:
            return [_clip_by_norm(g, self.clipnorm) for g in grads]
        if self.global_clipnorm and self.global_clipnorm > 0:
            return clip_by_global_norm(grads, self.global_clipnorm)
        if self.clipvalue and self.clipvalue > 0:
            v = self.clipvalue
            return [_map_values(g, lambda x: array_ops.clip_by_value(x, -v, v)) for g in grads]
        return grads

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Leaves the variables of `var_list`, and those whose name contains one of `var_names`, undecayed."""
        if self.built:
            raise ValueError("`exclude_from_weight_decay()` can only be configured before the optimizer is built.")
        self._exclude_ids = {self._var_key(v) for v in var_list or []}
        self._exclude_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _use_weight_decay(self, variable):
        if self._var_key(variable) in self._exclude_ids:
            return False
        return self._exclude_pattern is None or self._exclude_pattern.search(variable.name) is None

    def _apply_weight_decay(self, trainable_variables):
        if self.weight_decay is None:
            return
        for variable in trainable_variables:
            if self._use_weight_decay(variable):
                lr = array_ops.cast(self.learning_rate, variable.dtype)
                wd = array_ops.cast(self.weight_decay, variable.dtype)
                variable.assign(variable - variable * wd * lr)

    def _update_moving_averages(self):
        # the first step copies the variables (momentum 0), as Keras's EMA does
        not_first = array_ops.cast(math_ops.not_equal(self._iterations, 0), dtypes.float32)
        for variable, average in zip(self._trainable_variables, self._model_variables_moving_average):
            momentum = array_ops.cast(not_first * self.ema_momentum, variable.dtype)
            average.assign(momentum * average + (1 - momentum) * variable)
        if self.ema_overwrite_frequency:
            overwrite = math_ops.equal((self._iterations + 1) % self.ema_overwrite_frequency, 0)
            for variable, average in zip(self._trainable_variables, self._model_variables_moving_average):
                variable.assign(math_ops.where(overwrite, convert_to_tensor(average), convert_to_tensor(variable)))

    def finalize_variable_values(self, var_list):
        """With use_ema, sets the model's variables to their moving averages (fit calls this at the end)."""
        if self.use_ema:
            for variable, average in zip(var_list, self._model_variables_moving_average):
                variable.assign(average)

    # ---- Keras 2's minimize, weights and config -------------------------------------------
    def minimize(self, loss, var_list, tape=None):
        """Computes the gradients of `loss` (a callable, or a tensor recorded on `tape`) and applies them."""
        from tensorgrid.client.tape import GradientTape
        if callable(var_list):
            var_list = var_list()
        var_list = list(var_list)
        if not callable(loss) and tape is None:
            raise ValueError("`tape` is required when a `Tensor` loss is passed. Received: loss={loss}, "
                             "tape={tape}.")
        if callable(loss):
            with GradientTape() as tape:
                tape.watch(var_list)
                loss = loss()
        grads = tape.gradient(loss, var_list)
        return self.apply_gradients(zip(grads, var_list))

    def get_weights(self):
        return [np.array(v.numpy()) for v in self._variables]

    def set_weights(self, weights):
        if not self.built:
            raise ValueError("You are calling `set_weights()` on an optimizer that has not yet been built. Please "
                             "call `optimizer.build(trainable_variables)` to create the optimizer weights before "
                             "calling `set_weights()`.")
        for variable, weight in zip(self._variables, weights):
            weight = np.asarray(weight)
            if tuple(variable.shape.as_list()) != weight.shape:
                raise ValueError(f"Optimizer variable {variable.name} has shape {tuple(variable.shape.as_list())} "
                                 f"not compatible with provided weight shape {weight.shape}.")
            variable.assign(weight.astype(variable.dtype.as_numpy_dtype))

    def save_own_variables(self, store):
        """Writes `variables` into the dict-like `store` under "0", "1", ... (the .keras layout)."""
        for i, variable in enumerate(self._variables):
            store[str(i)] = np.array(variable.numpy())

    def load_own_variables(self, store):
        if len(store.keys()) != len(self._variables):
            msg = (f"Skipping variable loading for optimizer '{self.name}', because it has {len(self._variables)} "
                   f"variables whereas the saved optimizer has {len(store.keys())} variables. ")
            if len(self._variables) == 0:
                msg += "This is likely because the optimizer has not been called/built yet."
            warnings.warn(msg, stacklevel=2)
            return
        for i, variable in enumerate(self._variables):
            variable.assign(np.asarray(store[str(i)]).astype(variable.dtype.as_numpy_dtype))

    def get_config(self):
        if isinstance(self._learning_rate, schedules_lib.LearningRateSchedule):
            learning_rate = schedules_lib.serialize(self._learning_rate)
        elif isinstance(self._learning_rate, variables_lib.Variable):
            learning_rate = float(self._learning_rate.numpy())
        else:
            learning_rate = self._learning_rate
        return {"name": self.name, "learning_rate": learning_rate, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue,
                "use_ema": self.use_ema, "ema_momentum": self.ema_momentum,
                "ema_overwrite_frequency": self.ema_overwrite_frequency,
                "loss_scale_factor": self.loss_scale_factor,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules_lib.deserialize(config["learning_rate"], custom_objects)
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__module__}.{type(self).__name__} name={self.name!r}>"


def _initial_value(initializer, shape, dtype):
    """The numpy starting value of a slot: "zeros", "ones", a number, or a callable(shape, dtype)."""
    if isinstance(initializer, str):
        if initializer not in ("zeros", "ones"):
            raise ValueError(f"Unknown optimizer variable initializer: {initializer!r}")
        return np.full(shape, 0 if initializer == "zeros" else 1, dtype=dtype.as_numpy_dtype)
    if isinstance(initializer, (int, float)):
        return np.full(shape, initializer, dtype=dtype.as_numpy_dtype)
    value = initializer(shape, dtype=dtype)
    return np.asarray(getattr(value, "numpy", lambda: value)(), dtype=dtype.as_numpy_dtype)


def _op_name(variable):
    return variable.name.split(":")[0].replace("/", "_")


def _update(variable, value, dense_method, sparse_method):
    if isinstance(value, IndexedSlices):
        values = array_ops.cast(value.values, variable.dtype)
        return getattr(variable, sparse_method)(IndexedSlices(values, value.indices, value.dense_shape))
    return getattr(variable, dense_method)(array_ops.cast(convert_to_tensor(value), variable.dtype))


def _map_values(g, fn):
    if isinstance(g, IndexedSlices):
        return IndexedSlices(fn(g.values), g.indices, g.dense_shape)
    return fn(g)


def _scale(g, factor):
    return _map_values(g, lambda x: x * array_ops.cast(factor, x.dtype))


def _clip_by_norm(g, clip_norm):
    """g scaled to L2 norm at most clip_norm (an IndexedSlices by the norm of its values, as tf.clip_by_norm)."""
    return _map_values(g, lambda x: math_ops.clip_by_norm(x, array_ops.cast(clip_norm, x.dtype)))


def global_norm(value_list):
    """sqrt of the sum of squares of every gradient (IndexedSlices counted by their values)."""
    squares = [math_ops.reduce_sum(math_ops.square(g.values if isinstance(g, IndexedSlices) else g))
               for g in value_list if g is not None]
    return math_ops.sqrt(math_ops.add_n(squares))


def clip_by_global_norm(value_list, clip_norm):
    """Every gradient scaled by clip_norm / max(global norm, clip_norm); NaN when the norm is not finite."""
    norm = global_norm(value_list)
    scale = clip_norm * math_ops.minimum(1.0 / norm, 1.0 / clip_norm)
    scale = scale + (norm - norm)
    return [None if g is None else _scale(g, scale) for g in value_list]


def _filter_empty_gradients(grads, trainable_variables):
    kept = [(g, v) for g, v in zip(grads, trainable_variables) if g is not None]
    if not kept:
        raise ValueError("No gradients provided for any variable.")
    missing = [v.name for g, v in zip(grads, trainable_variables) if g is None]
    if missing:
        warnings.warn(f"Gradients do not exist for variables {missing} when minimizing the loss. If using "
                      f"`model.compile()`, did you forget to provide a `loss` argument?")
    return [g for g, _ in kept], [v for _, v in kept]


def densify(g):
    """A dense tensor for an IndexedSlices gradient (rows of repeated indices summed); tensors pass through."""
    return convert_to_tensor(g) if isinstance(g, IndexedSlices) else g
