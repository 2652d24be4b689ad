"""tg.data.Dataset: an input pipeline as a chain of dataset ops.

A Dataset is a tg.variant tensor (the output of its last dataset op) and
the structure of its elements. Every transformation adds one op (TF's op
names, tensorgrid/ops/dataset_ops.py), in eager mode run at once (the
variant then holds the runtime dataset, which Python iteration walks
directly), in graph mode added to the graph, where an iterator's kernels
build and run the pipeline on the device they are placed on. Functions
(map, filter, flat_map, interleave, reduce) are traced once, like a
tg.function, into a function attr; tensors they read from the graph
being built are captured as extra inputs, variables by handle (read at
every call).

A new source subclasses Dataset: it builds its op with
`dataset_variant(op_type, inputs, structure)` and calls
`Dataset.__init__(self, variant, element_spec)`; its kernel is registered
with tensorgrid.ops.dataset_ops.register_dataset and builds a
worker.data.base.Dataset (see there for the block protocol).
"""

import re

import cloudpickle
import numpy as np

from tensorgrid.client import array_ops, context, math_ops, nest, random_ops
from tensorgrid.client import graph as graph_lib
from tensorgrid.client.data import structure as structure_lib
from tensorgrid.client.data.options import Options
from tensorgrid.client.data.structure import Structure
from tensorgrid.client.function import FuncGraph, trace_function
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.framework import dtypes
from tensorgrid.framework.shapes import TensorShape, as_shape
from tensorgrid.framework.tensor_spec import TensorSpec
from tensorgrid.ops import dataset_ops as _ops  # noqa: F401 - registers the dataset ops
from tensorgrid.ops import registry

__all__ = ["Dataset", "AUTOTUNE", "INFINITE_CARDINALITY", "UNKNOWN_CARDINALITY", "dataset_variant"]

AUTOTUNE = _ops.AUTOTUNE
INFINITE_CARDINALITY = -1
UNKNOWN_CARDINALITY = -2
_MAX_INT64 = np.iinfo(np.int64).max


def dataset_variant(op_type, inputs, structure, attrs=None, name=None):
    """Adds dataset op `op_type` (or runs it, eagerly) with the output_types/output_shapes of
    `structure` (a structure.Structure) as attrs; returns its variant tensor."""
    attrs = dict(attrs or {})
    attrs["output_types"] = structure.types
    attrs["output_shapes"] = structure.shapes
    return apply_op(op_type, inputs, attrs, name=name or op_type)


def _int64(value, what):
    """An int64 scalar tensor of `value` (int tensors of other widths are cast)."""
    t = convert_to_tensor(value, dtype_hint=dtypes.int64)
    if t.dtype is not dtypes.int64:
        if not t.dtype.is_integer:
            raise TypeError(f"{what} must be an integer, got a {t.dtype.name} tensor")
        t = array_ops.cast(t, dtypes.int64)
    return t


def _bool(value):
    return convert_to_tensor(value, dtype=dtypes.bool_)


def _fn_name(fn, what):
    name = getattr(fn, "__name__", type(fn).__name__)
    return "Dataset_" + what + "_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _call_with(fn, element):
    """TF's calling convention: a tuple element is spread over the arguments, anything else is one."""
    return fn(*element) if type(element) is tuple else fn(element)


class _Traced:
    """A function traced over dataset elements: the function attr, its captures, its results' structure."""

    def __init__(self, python_fn, arg_structures, what, result=None, name_of=None):
        """Traces python_fn(*elements), one element per Structure in arg_structures; `result`
        turns its return value into what the function returns (default: its tensors).
        The function is named after `name_of` (the user's function)."""

        def body(*placeholders):
            parts, i = [], 0
            for s in arg_structures:
                parts.append(s.rebuild(list(placeholders[i:i + len(s.specs)])))
                i += len(s.specs)
            value = python_fn(*parts)
            return result(value) if result is not None else structure_lib.results_of(value, what)

        arg_specs = [a for s in arg_structures for a in s.arg_specs()]
        self.traced = trace_function(body, arg_specs, name=_fn_name(name_of or python_fn, what))
        self.function = self.traced.function
        self.captures = self.traced.captures
        self.structure = Structure(self.traced.structure,
                                   [TensorSpec(t.shape, t.dtype) for t in self.traced.outputs])

    @property
    def capture_types(self):
        return [t.dtype for t in self.captures]


class Dataset(structure_lib.Structured):
    """A potentially large set of elements, transformed and iterated as in TF (tf.data.Dataset).

    `Dataset(variant_tensor, element_spec)` wraps the output of a dataset op;
    the static constructors and the transformations below make them.
    """

    def __init__(self, variant_tensor, element_spec, options=None):
        self._variant_tensor = variant_tensor
        self._structure = element_spec if isinstance(element_spec, Structure) else \
            Structure.from_element_spec(element_spec)
        self._options_attr = options

    # ---- what a dataset is -----------------------------------------------------------------
    def _runtime(self, what):
        """The runtime dataset an eager variant holds; RuntimeError in graph mode (DatasetLoopInTrace in a
        tg.function, which then converts its loops: client/data/loops.py)."""
        if isinstance(graph_lib.get_default_graph(), FuncGraph) and not context.executing_eagerly():
            from tensorgrid.client.data import loops
            raise loops.DatasetLoopInTrace(f"{what} over a dataset inside tg.function: {loops.HOW}.")
        if not context.executing_eagerly() or not getattr(self._variant_tensor, "_is_eager_tensor", False):
            raise RuntimeError(f"`tf.data.Dataset` only supports {what} in eager mode or within tf.function.")
        value = self._variant_tensor.numpy()
        return value[()] if isinstance(value, np.ndarray) else value  # a window's dataset comes as a 0-d array

    def __iter__(self):
        from tensorgrid.client.data import iterator_ops
        self._runtime("Python-style iteration")
        return iterator_ops.OwnedIterator(self)

    def __len__(self):
        if not context.executing_eagerly():
            raise TypeError("`tf.data.Dataset` only supports `len` in eager mode. Use "
                            "`tf.data.Dataset.cardinality()` instead.")
        n = self._runtime("`len`").cardinality()
        if n == INFINITE_CARDINALITY:
            raise TypeError("The dataset is infinite.")
        if n == UNKNOWN_CARDINALITY:
            raise TypeError("The dataset length is unknown.")
        return n

    def __bool__(self):
        return True  # a dataset is truthy even where its length is not known

    def __repr__(self):
        op = getattr(getattr(self._variant_tensor, "op", None), "type", None) or type(self).__name__
        return f"<{re.sub(r'(V[0-9]+)$', '', op)} element_spec={self.element_spec}>"

    def _apply(self, op_type, inputs, structure, attrs=None, name=None):
        return Dataset(dataset_variant(op_type, inputs, structure, attrs, name), structure, self._options_attr)

    def cardinality(self):
        """An int64 scalar tensor: the number of elements, INFINITE_CARDINALITY (-1) or UNKNOWN_CARDINALITY (-2)."""
        return apply_op("DatasetCardinality", [self._variant_tensor], name="DatasetCardinality")

    def options(self):
        """The options set on this dataset and those it was made from (tg.data.Options)."""
        return self._options_attr if self._options_attr is not None else Options()

    def with_options(self, options, name=None):
        """The same dataset with `options` merged into its options."""
        return Dataset(self._variant_tensor, self._structure, self.options().merge(options))

    def apply(self, transformation_func):
        """transformation_func(self), which must return a Dataset."""
        out = transformation_func(self)
        if not isinstance(out, Dataset):
            raise TypeError("`transformation_func` must return a `tf.data.Dataset` object.")
        return out

    # ---- sources ---------------------------------------------------------------------------
    @staticmethod
    def from_tensors(tensors, name=None):
        """One element: `tensors` (a tensor or a nest of them)."""
        spec, leaves = structure_lib.tensors_of(tensors)
        s = structure_lib.from_tensors(spec, leaves)
        return Dataset(dataset_variant("TensorDataset", leaves, s, name=name), s)

    @staticmethod
    def from_tensor_slices(tensors, name=None):
        """The slices of `tensors` along their first dimension, one element per row.

        ValueError when the components' first dimensions are known and differ,
        InvalidArgumentError when they differ at run time.
        """
        spec, leaves = structure_lib.tensors_of(tensors)
        s = structure_lib.from_tensors(spec, leaves, sliced=True)
        first = None
        for t in leaves:
            n = t.shape.as_tuple()[0] if t.shape.ndims else None
            if n is not None:
                if first is not None and n != first:
                    raise ValueError(f"Dimensions {first} and {n} are not compatible")
                first = n
        return Dataset(dataset_variant("TensorSliceDataset", leaves, s, name=name), s)

    @staticmethod
    def range(*args, output_type=dtypes.int64, name=None):
        """range(stop), range(start, stop[, step]): integers as Python's range gives them."""
        if not 1 <= len(args) <= 3:
            raise ValueError(f"Invalid arguments to range: {args!r}")
        start, stop, step = (0, args[0], 1) if len(args) == 1 else (args + (1,))[:3]
        s = Structure(("leaf", 0), [TensorSpec([], output_type)])
        inputs = [_int64(v, "range") for v in (start, stop, step)]
        return Dataset(dataset_variant("RangeDataset", inputs, s, name=name), s)

    @staticmethod
    def from_generator(generator, output_types=None, output_shapes=None, args=None, output_signature=None,
                       name=None):
        """The elements `generator(*args)` yields, each converted to the declared structure.

        Declare elements with `output_signature` (a nest of tg.TensorSpec) or
        TF1's `output_types` (+ `output_shapes`). The generator is Python: in
        graph mode it travels as cloudpickle bytes and runs on the worker
        that runs the pipeline, which must allow pickled code (--allow-pickle).
        """
        if not callable(generator):
            raise TypeError("`generator` must be a Python callable.")
        if output_signature is not None:
            if output_types is not None:
                raise TypeError("The `output_types` argument can not be used together with the "
                                "`output_signature` argument.")
            if output_shapes is not None:
                raise TypeError("The `output_shapes` argument can not be used together with the "
                                "`output_signature` argument.")
            s = Structure.from_element_spec(output_signature)
        else:
            if output_types is None:
                raise TypeError("To specify the output signature you need to provide either the "
                                "`output_signature` argument or the `output_types` argument.")
            s = structure_lib.from_types_and_shapes(output_types, output_shapes, "from_generator")
        arg_tensors = [convert_to_tensor(a) for a in (args or ())]
        payload = (generator, s.nest)
        if not context.executing_eagerly():
            payload = cloudpickle.dumps(payload)  # to run wherever the pipeline is placed
        return Dataset(dataset_variant("GeneratorDataset", arg_tensors, s, {"func": payload}, name), s)

    @staticmethod
    def random(seed=None, rerandomize_each_iteration=None, name=None):
        """Random int64 values without end (each pass the same sequence for a seed unless
        rerandomize_each_iteration); not TF's values for that seed."""
        seed, seed2 = random_ops.get_seed(seed, continue_stream=False)
        s = Structure(("leaf", 0), [TensorSpec([], dtypes.int64)])
        return Dataset(dataset_variant("RandomDataset", [_int64(seed, "seed"), _int64(seed2, "seed2")], s,
                                       {"rerandomize_each_iteration": bool(rerandomize_each_iteration)}, name), s)

    @staticmethod
    def choose_from_datasets(datasets, choice_dataset, stop_on_empty_dataset=True):
        """Element i from datasets[choice_i] for each int64 choice_i of choice_dataset, in turn; with
        stop_on_empty_dataset, the end at the first choice of an exhausted dataset, else such choices skipped."""
        datasets = list(datasets)
        if not datasets:
            raise ValueError("Invalid `datasets`. `datasets` should not be empty.")
        if choice_dataset.element_spec != TensorSpec([], dtypes.int64):
            raise TypeError(f"Invalid `choice_dataset`. Elements of `choice_dataset` must be scalar `tf.int64` "
                            f"tensors but are {choice_dataset.element_spec}.")
        s = datasets[0]._structure
        for d in datasets[1:]:
            s = structure_lib.compatible(s, d._structure, "choose_from_datasets")
        inputs = [choice_dataset._variant_tensor] + [d._variant_tensor for d in datasets]
        return Dataset(dataset_variant("DirectedInterleaveDataset", inputs, s,
                                       {"N": len(datasets), "stop_on_empty_dataset": bool(stop_on_empty_dataset)}), s)

    @staticmethod
    def sample_from_datasets(datasets, weights=None, seed=None, stop_on_empty_dataset=False,
                             rerandomize_each_iteration=None):
        """Elements of `datasets` interleaved at random, dataset i drawn with probability weights[i] (default
        uniform); the weights must be known while the pipeline is built."""
        datasets = list(datasets)
        n = len(datasets)
        w = np.full(n, 1.0 / max(n, 1)) if weights is None else _known(weights, "weights")
        if w.shape != (n,) or (w < 0).any() or not w.sum() > 0:
            raise ValueError(f"Invalid `weights`: {n} non-negative weights, not all zero, are needed; got {w}.")
        edges = np.cumsum(w / w.sum())[:-1]

        def pick(r):
            u = array_ops.cast(math_ops.mod(r, np.int64(2 ** 53)), dtypes.float64) * (1.0 / 2 ** 53)
            return math_ops.reduce_sum(array_ops.cast(math_ops.greater_equal(u, edges), dtypes.int64))
        selector = Dataset.random(seed, rerandomize_each_iteration).map(pick)
        return Dataset.choose_from_datasets(datasets, selector, stop_on_empty_dataset)

    @staticmethod
    def counter(start=0, step=1, dtype=dtypes.int64, name=None):
        """start, start + step, ... without end (as TF's: a range to the largest int64)."""
        stop = _MAX_INT64 if step > 0 else np.iinfo(np.int64).min
        return Dataset.range(start, stop, step, output_type=dtypes.as_dtype(dtype), name=name)

    @staticmethod
    def list_files(file_pattern, shuffle=None, seed=None, name=None):
        """The file names a glob pattern (or a list of them) matches, shuffled unless shuffle=False;
        InvalidArgumentError when nothing matches."""
        from tensorgrid.client.data import readers
        return readers.list_files(file_pattern, shuffle, seed, name)

    @staticmethod
    def zip(*args, datasets=None, name=None):
        """Elements of several datasets side by side: zip(a, b) gives (a_i, b_i); zip({"x": a}) {"x": a_i}."""
        if datasets is not None:
            if args:
                raise TypeError("Both `*args` and `datasets` cannot be set.")
            args = (datasets,)
        if not args:
            raise TypeError("Must pass at least one dataset to `zip`.")
        nest_of = args[0] if len(args) == 1 else args
        members = []

        def leaf(d):
            if not isinstance(d, Dataset):
                raise TypeError(f"Invalid input to `zip`. Inputs are expected to be (nested) structures of "
                                f"`tf.data.Dataset` objects. Python `list` is not supported and you should use "
                                f"`tuple` instead. Got {d!r}")
            return d
        spec = nest.flatten(nest_of, leaf, members)
        s = Structure.from_element_spec(nest.rebuild(spec, [d.element_spec for d in members]))
        return Dataset(dataset_variant("ZipDataset", [d._variant_tensor for d in members], s, {"N": len(members)},
                                       name), s)

    # ---- transformations -------------------------------------------------------------------
    def map(self, map_func, num_parallel_calls=None, deterministic=None, name=None):
        """map_func of each element (a tuple element is spread over its arguments), traced once.

        num_parallel_calls (an int or AUTOTUNE) runs that many calls at once on
        threads, results still in input order.
        """
        fn = _Traced(lambda e: _call_with(map_func, e), [self._structure], "map", name_of=map_func)
        attrs = {"f": fn.function, "Targuments": fn.capture_types, "use_inter_op_parallelism": True,
                 "preserve_cardinality": True}
        inputs = [self._variant_tensor] + fn.captures
        if num_parallel_calls is None:
            return self._apply("MapDataset", inputs, fn.structure, attrs, name)
        attrs["deterministic"] = "default" if deterministic is None else ("true" if deterministic else "false")
        return self._apply("ParallelMapDatasetV2", inputs + [_int64(num_parallel_calls, "num_parallel_calls")],
                           fn.structure, attrs, name)

    def _predicate(self, predicate, what):
        fn = _Traced(lambda e: _call_with(predicate, e), [self._structure], what, name_of=predicate)
        spec = fn.structure.specs
        if len(spec) != 1 or spec[0].dtype is not dtypes.bool_ or spec[0].shape.ndims not in (0, None):
            raise ValueError(f"Invalid `predicate`. `predicate` must return a `tf.bool` scalar tensor, but its "
                             f"return type is {fn.structure.element_spec}.")
        return fn

    def filter(self, predicate, name=None):
        """The elements for which predicate (returning a bool scalar) is true."""
        fn = self._predicate(predicate, "filter")
        return self._apply("FilterDataset", [self._variant_tensor] + fn.captures, self._structure,
                           {"predicate": fn.function, "Targuments": fn.capture_types}, name)

    def take_while(self, predicate, name=None):
        """The elements up to (not including) the first for which predicate is false."""
        fn = self._predicate(predicate, "take_while")
        return self._apply("TakeWhileDataset", [self._variant_tensor] + fn.captures, self._structure,
                           {"predicate": fn.function, "Targuments": fn.capture_types}, name)

    def _traced_dataset_fn(self, map_func, what):
        """map_func traced over elements to return a dataset: the _Traced and the inner element Structure."""
        inner = []

        def result(value):
            if not isinstance(value, Dataset):
                raise TypeError(f"The `map_func` argument of `{what}` must return a `Dataset` object, "
                                f"got {type(value).__name__}.")
            inner.append(value._structure)
            return value._variant_tensor

        fn = _Traced(lambda e: _call_with(map_func, e), [self._structure], what, result, name_of=map_func)
        return fn, inner[0]

    def flat_map(self, map_func, name=None):
        """The elements of the dataset map_func returns for each element, one after the other."""
        fn, inner = self._traced_dataset_fn(map_func, "flat_map")
        return self._apply("FlatMapDataset", [self._variant_tensor] + fn.captures, inner,
                           {"f": fn.function, "Targuments": fn.capture_types}, name)

    def interleave(self, map_func, cycle_length=None, block_length=None, num_parallel_calls=None,
                   deterministic=None, name=None):
        """Elements of map_func's datasets, cycle_length open at once, block_length from each in turn."""
        fn, inner = self._traced_dataset_fn(map_func, "interleave")
        inputs = [self._variant_tensor] + fn.captures + [
            _int64(AUTOTUNE if cycle_length is None else cycle_length, "cycle_length"),
            _int64(1 if block_length is None else block_length, "block_length")]
        return self._apply("InterleaveDataset", inputs, inner, {"f": fn.function, "Targuments": fn.capture_types},
                           name)

    def batch(self, batch_size, drop_remainder=False, num_parallel_calls=None, deterministic=None, name=None):
        """Consecutive elements stacked batch_size at a time (the last batch smaller unless drop_remainder)."""
        size = _int64(batch_size, "batch_size")
        s = _batched(self._structure, size, drop_remainder)
        return self._apply("BatchDatasetV2", [self._variant_tensor, size, _bool(drop_remainder)], s,
                           {"parallel_copy": False}, name)

    def padded_batch(self, batch_size, padded_shapes=None, padding_values=None, drop_remainder=False, name=None):
        """Batches of elements padded to padded_shapes (None dims: the batch's largest) with padding_values."""
        st = self._structure
        size = _int64(batch_size, "batch_size")
        if padded_shapes is None:
            for s in st.specs:
                if s.shape.ndims is None:
                    raise ValueError("You must provide `padded_shapes` argument because component "
                                     f"{s} has unknown rank.")
            wanted = st.shapes
        else:
            wanted = [_padded_shape(p) for p in nest.flatten_up_to(st.nest, padded_shapes, "padded_shapes")]
        shape_tensors, padded = [], []
        for s, want in zip(st.specs, wanted):
            if s.shape.ndims is not None and want.ndims != s.shape.ndims:
                raise ValueError(f"The padded shape {want} is not compatible with the shape {s.shape} of the "
                                 "corresponding input component.")
            if not want.is_compatible_with(s.shape) and s.shape.is_fully_defined():
                raise ValueError(f"The padded shape {want} is not compatible with the shape {s.shape} of the "
                                 "corresponding input component.")
            padded.append(TensorSpec(want, s.dtype))
            shape_tensors.append(convert_to_tensor(
                np.array([-1 if d is None else d for d in want.as_tuple()], np.int64)))
        if padding_values is None:
            values = [b"" if s.dtype is dtypes.string else np.zeros((), s.dtype.as_numpy_dtype) for s in st.specs]
        else:
            values = nest.flatten_up_to(st.nest, padding_values, "padding_values")
        value_tensors = [convert_to_tensor(v, dtype=s.dtype) for v, s in zip(values, st.specs)]
        out = _batched(Structure(st.nest, padded), size, drop_remainder)
        inputs = [self._variant_tensor, size] + shape_tensors + value_tensors + [_bool(drop_remainder)]
        return self._apply("PaddedBatchDatasetV2", inputs, out, {"N": len(st.specs), "parallel_copy": False}, name)

    def window(self, size, shift=None, stride=1, drop_remainder=False, name=None):
        """Windows of `size` elements (every stride-th), one starting every `shift` (default size) elements;
        each element is the input's structure with a Dataset per component (flat_map them into batches)."""
        inner = [structure_lib.DatasetSpec(Structure(("leaf", 0), [s])) for s in self._structure.specs]
        size = _int64(size, "size")
        inputs = [self._variant_tensor, size, size if shift is None else _int64(shift, "shift"),
                  _int64(stride, "stride"), _bool(drop_remainder)]
        return self._apply("WindowDataset", inputs, Structure(self._structure.nest, inner), name=name)

    def unbatch(self, name=None):
        """The rows of each element: the inverse of batch."""
        specs = []
        for s in self._structure.specs:
            if s.shape.ndims == 0:
                raise ValueError("Cannot unbatch an input with scalar components.")
            specs.append(TensorSpec(s.shape[1:] if s.shape.ndims is not None else None, s.dtype))
        return self._apply("UnbatchDataset", [self._variant_tensor], Structure(self._structure.nest, specs),
                           name=name)

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=None, name=None):
        """The elements in an order drawn through a buffer of buffer_size elements (TF's algorithm).

        A given seed gives a deterministic order, though not TF's order for
        that seed (see worker/data/shuffle.py); each iteration reshuffles
        unless reshuffle_each_iteration=False.
        """
        seed, seed2 = random_ops.get_seed(seed, continue_stream=False)
        inputs = [self._variant_tensor, _int64(buffer_size, "buffer_size"), _int64(seed, "seed"),
                  _int64(seed2, "seed2")]
        reshuffle = True if reshuffle_each_iteration is None else bool(reshuffle_each_iteration)
        return self._apply("ShuffleDataset", inputs, self._structure, {"reshuffle_each_iteration": reshuffle}, name)

    def repeat(self, count=None, name=None):
        """The dataset count times over (None or -1: forever)."""
        return self._apply("RepeatDataset", [self._variant_tensor, _int64(-1 if count is None else count, "count")],
                           self._structure, name=name)

    def take(self, count, name=None):
        """The first count elements (-1: all)."""
        return self._apply("TakeDataset", [self._variant_tensor, _int64(count, "count")], self._structure, name=name)

    def skip(self, count, name=None):
        """All but the first count elements (-1: none)."""
        return self._apply("SkipDataset", [self._variant_tensor, _int64(count, "count")], self._structure, name=name)

    def shard(self, num_shards, index, name=None):
        """Every num_shards-th element, starting at element index."""
        return self._apply("ShardDataset", [self._variant_tensor, _int64(num_shards, "num_shards"),
                                            _int64(index, "index")], self._structure,
                           {"require_non_empty": False}, name)

    def concatenate(self, dataset, name=None):
        """This dataset's elements, then those of `dataset` (same structure and dtypes)."""
        s = structure_lib.compatible(self._structure, dataset._structure, "concatenate")
        return self._apply("ConcatenateDataset", [self._variant_tensor, dataset._variant_tensor], s, name=name)

    def enumerate(self, start=0, name=None):
        """(index, element) pairs, index an int64 counting from start."""
        counter = Dataset.range(start, _MAX_INT64)
        return Dataset.zip((counter, self), name=name)

    def prefetch(self, buffer_size, name=None):
        """The elements produced ahead by a background thread, up to buffer_size (AUTOTUNE: a few) blocks."""
        return self._apply("PrefetchDataset", [self._variant_tensor, _int64(buffer_size, "buffer_size")],
                           self._structure, name=name)

    def cache(self, filename="", name=None):
        """The first complete pass kept in memory (or in `filename`.tgcache) and replayed after it."""
        return self._apply("CacheDataset", [self._variant_tensor, convert_to_tensor(filename, dtype=dtypes.string)],
                           self._structure, name=name)

    def reduce(self, initial_state, reduce_func, name=None):
        """reduce_func(state, element) folded over every element from initial_state; the final state.

        The state's dtypes must not change; dims that change between calls
        are traced again as unknown, as TF does.
        """
        spec, leaves = structure_lib.tensors_of(initial_state)
        state = structure_lib.from_tensors(spec, leaves)
        while True:
            fn = _Traced(reduce_func, [state, self._structure], "reduce")
            out = fn.structure
            if not out.same_nest(state):
                raise TypeError(f"The element structure of the return value of `reduce_func` {out.element_spec} "
                                f"does not match the structure of the initial state {state.element_spec}.")
            if out.types != state.types:
                raise TypeError(f"The element types of the return value of `reduce_func` {out.types} do not "
                                f"match the types of the initial state {state.types}.")
            relaxed = structure_lib.compatible(state, out, "reduce")
            if relaxed.shapes == state.shapes:
                break
            state = relaxed
        attrs = {"f": fn.function, "Tstate": state.types, "Targuments": fn.capture_types}
        values = dataset_variant("ReduceDataset", [self._variant_tensor] + leaves + fn.captures, state, attrs,
                                 name or "ReduceDataset")
        return state.rebuild(list(values) if isinstance(values, (list, tuple)) else [values])

    def get_single_element(self, name=None):
        """The one element of a dataset of one element; InvalidArgumentError for none or more."""
        s = self._structure
        values = dataset_variant("DatasetToSingleElement", [self._variant_tensor], s, name=name or
                                 "DatasetToSingleElement")
        return s.rebuild(list(values) if isinstance(values, (list, tuple)) else [values])

    def as_numpy_iterator(self):
        """An iterator over the elements as NumPy values (scalars as NumPy scalars, strings as bytes)."""
        from tensorgrid.client.data import iterator_ops
        if not context.executing_eagerly():
            raise RuntimeError("`tf.data.Dataset.as_numpy_iterator()` is only supported in eager mode.")
        return iterator_ops.NumpyIterator(self)

    # ---- TF1 iterators ---------------------------------------------------------------------
    def make_one_shot_iterator(self):
        """TF1: an iterator over this dataset, initialized on first use (see iterator_ops)."""
        from tensorgrid.client.data import iterator_ops
        return iterator_ops.make_one_shot_iterator(self)

    def make_initializable_iterator(self, shared_name=None):
        """TF1: an iterator over this dataset that runs `iterator.initializer` to (re)start."""
        from tensorgrid.client.data import iterator_ops
        return iterator_ops.make_initializable_iterator(self, shared_name)


def _known(value, what):
    """`value` (a list, an array, an eager or constant tensor) as a float64 array, known now."""
    if isinstance(value, graph_lib.Tensor):
        const = graph_lib._const_value(value)
        if const is None:
            raise TypeError(f"`{what}` must be known while the pipeline is built (a list, an array or a constant)")
        value = const
    elif hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value, dtype=np.float64).reshape(-1)


def _padded_shape(p):
    """A padded shape (TensorShape, list, or an int64 tensor's constant value) as a TensorShape."""
    if hasattr(p, "numpy") or isinstance(p, graph_lib.Tensor):
        value = p.numpy() if hasattr(p, "numpy") else graph_lib._const_value(p)
        if value is None:
            raise ValueError("padded_shapes must be known while the graph is built")
        p = [None if d < 0 else int(d) for d in np.ravel(value)]
    elif isinstance(p, (list, tuple)):
        p = [None if d is None or d == -1 else d for d in p]
    return as_shape(p)


def _batched(structure, size, drop_remainder):
    """The structure of batches of `structure`'s elements: a leading dim, known when it must be."""
    n = None
    if drop_remainder is True:
        value = graph_lib._const_value(size) if isinstance(size, graph_lib.Tensor) else size.numpy()
        n = None if value is None else int(value)
    specs = [TensorSpec(TensorShape([n]).concatenate(s.shape), s.dtype) for s in structure.specs]
    return Structure(structure.nest, specs)


registry.not_differentiable(
    "TensorSliceDataset", "TensorDataset", "RangeDataset", "GeneratorDataset", "MapDataset", "ParallelMapDatasetV2",
    "FilterDataset", "FlatMapDataset", "InterleaveDataset", "BatchDatasetV2", "PaddedBatchDatasetV2", "TFRecordDatasetV2",
    "UnbatchDataset", "WindowDataset", "RepeatDataset", "TakeDataset", "SkipDataset", "ShardDataset", "ZipDataset",
    "ConcatenateDataset", "ShuffleDataset", "PrefetchDataset", "CacheDataset", "DatasetCardinality",
    "ReduceDataset", "RandomDataset", "DirectedInterleaveDataset", "TakeWhileDataset", "DatasetToSingleElement", "IteratorV2", "OneShotIterator", "MakeIterator", "IteratorGetNext", "IteratorToStringHandle",
    "IteratorFromStringHandleV2")
