"""Dataset and iterator ops (tg.data): TF's op names, inputs and attrs.

A dataset op outputs a tg.variant scalar: the runtime dataset
(worker/data/) its kernel builds from its inputs, on the device that runs
it. Dataset ops join the colocation group of the datasets they take, and
iterator ops that of their iterator, so a whole pipeline and its iterator
sit on one device (variant values never travel). Ops with a function attr
(map's `f`, filter's `predicate`, ...) compile it once per kernel and call
it per element; the outer tensors it captured are extra inputs
(`other_arguments`). Every kernel is CPU only: pipelines run on the host.

A new source registers its op with `register_dataset(name, kernel)`,
`kernel(node)` returning a callable from the op's input values to a
`worker.data.base.Dataset`.
"""

import json

import cloudpickle
import numpy as np

from tensorgrid.framework import dtypes, errors
from tensorgrid.framework.shapes import TensorShape
from tensorgrid.ops.io_ops import open_for
from tensorgrid.ops.misc_ops import refuse_pickle
from tensorgrid.ops.registry import register
from tensorgrid.worker.data import (base, batching, cache, functional, iterator, prefetch, readers, sequence, shuffle,
                                   sources)
from tensorgrid.worker.functions import CompiledFunction, device_of
from tensorgrid.worker.resources import find_resource, resource_for

AUTOTUNE = -1


def _infer_dataset(ctx):
    return [(dtypes.variant, ())]


def _taking_constants(kernel):
    """`kernel` whose dataset inputs may also come as a Const's 0-d object array (an eager dataset that a
    tg.function captured), unwrapped to the runtime dataset."""
    def factory(node):
        run = kernel(node)

        def call(*args):
            return run(*[a[()] if type(a) is np.ndarray and a.dtype == object and a.ndim == 0
                         and isinstance(a[()], base.Dataset) else a for a in args])
        return call
    return factory


def register_dataset(name, kernel, doc="", colocate=0, stateful=False):
    """Declares dataset op `name`: a tg.variant scalar output, a CPU kernel from `kernel(node)`,
    colocated with input `colocate` (the input dataset; "all" for ops that take several, None for
    sources)."""
    return register(name, _infer_dataset, _taking_constants(kernel), cpu_only=True, colocate_with_input=colocate,
                    stateful=stateful, doc=doc)


def _int(value):
    return int(np.asarray(value))


def _parallelism(value):
    n = _int(value)
    return base.autotune_parallelism() if n == AUTOTUNE else n


def _call(node, attr="f"):
    """A kernel factory's compiled function attr, for functional.Call."""
    return CompiledFunction(node.attr(attr), device_of(node))


# ---- sources -------------------------------------------------------------------------------

register_dataset("TensorSliceDataset", lambda node: lambda *components: sources.TensorSlices(components),
                 colocate=None, doc="The slices of its inputs along their first dimension; attrs Toutput_types, "
                 "output_shapes (of an element).")
register_dataset("TensorDataset", lambda node: lambda *components: sources.Tensors(components), colocate=None,
                 doc="One element: its inputs.")


def _range_kernel(node):
    dtype = dtypes.as_dtype(node.attr("output_types")[0]).as_numpy_dtype
    return lambda start, stop, step: sources.Range(_int(start), _int(stop), _int(step), dtype)


register_dataset("RangeDataset", _range_kernel, colocate=None,
                 doc="start, start + step, ... below stop (int64 inputs); attr output_types gives the element dtype.")


def _generator_kernel(node):
    payload = node.attr("func")
    if isinstance(payload, bytes):
        refuse_pickle(node)
        payload = cloudpickle.loads(payload)
    make, structure = payload
    types = [dtypes.as_dtype(t) for t in node.attr("output_types")]
    shapes = [TensorShape(s) for s in node.attr("output_shapes")]
    where = f"{node.op} '{node.name}' on {node.device}"

    def build(*args):
        values = [a[()] if np.ndim(a) == 0 else a for a in args]
        return sources.Generator(make, values, structure, types, shapes, where)
    return build


register_dataset("GeneratorDataset", _generator_kernel, colocate=None, stateful=True,
                 doc="The values a Python generator yields: attr func is cloudpickle bytes of (callable, nest spec), "
                 "called with the op's inputs; runs only where pickled code is allowed.")



def _tfrecord_kernel(node):
    def build(filenames, compression_type, buffer_size, byte_offsets=None):
        names = np.ravel(np.asarray(filenames, dtype=object)).tolist()
        return readers.TFRecords(names, np.asarray(compression_type, dtype=object)[()], _int(buffer_size),
                                 lambda path: open_for(node, path, "rb"))
    return build


register_dataset("TFRecordDatasetV2", _tfrecord_kernel, colocate=None,
                 doc="The records of TFRecord files; inputs: filenames (a string scalar or vector), compression_type "
                 "('', 'ZLIB', 'GZIP'), buffer_size (bytes; <= 0: 256 KiB), byte_offsets (unused, may be left out).")

def _scalar_text(value):
    x = np.asarray(value, dtype=object)[()]
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _csv_kernel(node):
    types = [dtypes.as_dtype(t).as_numpy_dtype for t in node.attr("output_types")]

    def build(filenames, compression_type, buffer_size, header, field_delim, use_quote_delim, na_value,
              select_cols, *rest):
        record_defaults, exclude_cols = rest[:len(types)], rest[len(types):]
        if np.asarray(compression_type, dtype=object)[()] not in ("", b""):
            raise errors.UnimplementedError(f"{node.op} '{node.name}': compressed CSV files are not supported")
        if exclude_cols and np.size(exclude_cols[0]):
            raise errors.UnimplementedError(f"{node.op} '{node.name}': exclude_cols is not supported")
        defaults = []
        for dtype, d in zip(types, record_defaults):
            value = None if np.size(d) == 0 else np.ravel(d)[0]    # an empty default: the column is required
            defaults.append((np.dtype(dtype), value.encode("utf-8") if isinstance(value, str) else value))
        cols = np.ravel(select_cols).astype(np.int64).tolist()
        if cols and (len(cols) != len(types) or any(b <= a for a, b in zip(cols, cols[1:]))):
            raise errors.InvalidArgumentError(f"{node.op} '{node.name}': select_cols must be increasing, one per "
                                              f"record default ({len(types)}), got {cols}")
        names = np.ravel(np.asarray(filenames, dtype=object)).tolist()
        return readers.CsvRecords(names, defaults, bool(np.asarray(header)), _scalar_text(field_delim),
                                  bool(np.asarray(use_quote_delim)), _scalar_text(na_value), cols or None,
                                  lambda path: open_for(node, path, "rb"))
    return build


register_dataset("CsvDatasetV2", _csv_kernel, colocate=None,
                 doc="The rows of CSV files; inputs: filenames, compression_type (''), buffer_size, header, "
                 "field_delim, use_quote_delim, na_value, select_cols, record_defaults (one tensor per output, "
                 "empty where required), exclude_cols (empty).")

# ---- functions per element -----------------------------------------------------------------


def _per_element(cls, attr="f"):
    """The kernel of an op calling function attr `attr` per element: cls(dataset, Call(fn, captured))."""
    def kernel(node):
        fn = _call(node, attr)
        return lambda dataset, *captured: cls(dataset, functional.Call(fn, captured))
    return kernel


def _parallel_map_kernel(node):
    fn = _call(node)

    def build(dataset, *rest):
        *captured, parallel = rest
        return functional.ParallelMap(dataset, functional.Call(fn, captured), _parallelism(parallel))
    return build


def _interleave_kernel(node):
    fn = _call(node)

    def build(dataset, *rest):
        *captured, cycle_length, block_length = rest
        return functional.Interleave(dataset, functional.Call(fn, captured), _parallelism(cycle_length),
                                     _int(block_length))
    return build


register_dataset("MapDataset", _per_element(functional.Map), doc="f of each element; inputs: dataset, other_arguments (captures).")
register_dataset("ParallelMapDatasetV2", _parallel_map_kernel,
                 doc="MapDataset with its calls on num_parallel_calls threads (the last input; -1: AUTOTUNE).")
register_dataset("FilterDataset", _per_element(functional.Filter, "predicate"), doc="The elements for which function attr predicate is true.")
register_dataset("TakeWhileDataset", _per_element(functional.TakeWhile, "predicate"),
                 doc="The elements before the first for which function attr predicate is false.")
register_dataset("FlatMapDataset", _per_element(functional.FlatMap), doc="The elements of the dataset f returns per element.")
register_dataset("InterleaveDataset", _interleave_kernel,
                 doc="f's datasets interleaved; inputs: dataset, other_arguments, cycle_length, block_length.")

# ---- batching ------------------------------------------------------------------------------

register_dataset("BatchDatasetV2", lambda node: lambda dataset, batch_size, drop_remainder: batching.Batch(
    dataset, _int(batch_size), bool(drop_remainder)), doc="Elements stacked batch_size at a time.")


def _padded_batch_kernel(node):
    n = node.attr("N")

    def build(dataset, batch_size, *rest):
        return batching.PaddedBatch(dataset, _int(batch_size), rest[:n], rest[n:2 * n], bool(rest[2 * n]))
    return build


register_dataset("PaddedBatchDatasetV2", _padded_batch_kernel,
                 doc="Batches padded per component; inputs: dataset, batch_size, N padded_shapes (int64 vectors, "
                 "-1: the batch's largest), N padding_values, drop_remainder.")
register_dataset("UnbatchDataset", lambda node: batching.Unbatch, doc="The rows of each element.")
register_dataset("WindowDataset", lambda node: lambda dataset, size, shift, stride, drop_remainder: batching.Window(
    dataset, _int(size), _int(shift), _int(stride), bool(drop_remainder)),
    doc="Windows of size elements (every stride-th), one every shift elements; each element a dataset per "
    "component (variant scalars).")

# ---- the element sequence ------------------------------------------------------------------

register_dataset("RepeatDataset", lambda node: lambda dataset, count: sequence.Repeat(dataset, _int(count)),
                 doc="The input count times over (-1: forever).")
register_dataset("TakeDataset", lambda node: lambda dataset, count: sequence.Take(dataset, _int(count)),
                 doc="The first count elements (-1: all).")
register_dataset("SkipDataset", lambda node: lambda dataset, count: sequence.Skip(dataset, _int(count)),
                 doc="All but the first count elements (-1: none).")
register_dataset("ShardDataset", lambda node: lambda dataset, num_shards, index: sequence.Shard(
    dataset, _int(num_shards), _int(index)), doc="Every num_shards-th element from element index.")
register_dataset("RandomDataset", lambda node: lambda seed, seed2: sources.Random(
    _int(seed), _int(seed2), node.attr("rerandomize_each_iteration", False)), colocate=None,
    doc="Random int64 values without end; inputs seed, seed2; attr rerandomize_each_iteration.")


def _directed_interleave_kernel(node):
    stop = node.attr("stop_on_empty_dataset", False)
    return lambda selector, *datasets: sequence.DirectedInterleave(selector, datasets, stop)


register_dataset("DirectedInterleaveDataset", _directed_interleave_kernel, colocate="all",
                 doc="For each int64 the selector_input_dataset gives, the next element of that one of the N "
                 "data_input_datasets; attr stop_on_empty_dataset.")
register_dataset("ZipDataset", lambda node: lambda *datasets: sequence.Zip(datasets), colocate="all",
                 doc="Elements of N datasets side by side (attr N).")
register_dataset("ConcatenateDataset", lambda node: sequence.Concatenate, colocate="all",
                 doc="input_dataset's elements, then another_dataset's.")


def _shuffle_kernel(node):
    reshuffle = node.attr("reshuffle_each_iteration", True)
    return lambda dataset, buffer_size, seed, seed2: shuffle.Shuffle(
        dataset, _int(buffer_size), _int(seed), _int(seed2), reshuffle)


register_dataset("ShuffleDataset", _shuffle_kernel,
                 doc="The elements in an order drawn through a buffer; inputs: dataset, buffer_size, seed, seed2; "
                 "attr reshuffle_each_iteration.")
register_dataset("PrefetchDataset", lambda node: lambda dataset, buffer_size: prefetch.Prefetch(
    dataset, _int(buffer_size)), doc="The input produced ahead by a background thread (buffer_size -1: AUTOTUNE).")
register_dataset("CacheDataset", lambda node: lambda dataset, filename: cache.Cache(
    dataset, np.asarray(filename, dtype=object)[()], f"{node.op} '{node.name}' on {node.device}"), doc="The first complete pass kept (filename '': in memory).")

# ---- whole-dataset ops ---------------------------------------------------------------------

register("DatasetCardinality", lambda ctx: [(dtypes.int64, ())],
         _taking_constants(lambda node: lambda dataset: np.int64(dataset.cardinality())), cpu_only=True,
         colocate_with_input=0,
         doc="The number of elements of a dataset: -1 infinite, -2 unknown.")


def _infer_structure(ctx):
    return [(dtypes.as_dtype(t), TensorShape(s).as_tuple())
            for t, s in zip(ctx.attr("output_types"), ctx.attr("output_shapes"))]


def _outputs(values):
    return values[0] if len(values) == 1 else tuple(values)


def _reduce_kernel(node):
    fn = _call(node)
    n = len(node.attr("Tstate"))

    def run(dataset, *rest):
        return _outputs(functional.reduce_dataset(dataset, functional.Call(fn, rest[n:]), rest[:n], base.Context()))
    return run


register("ReduceDataset", _infer_structure, _taking_constants(_reduce_kernel), cpu_only=True, colocate_with_input=0,
         num_outputs=lambda attrs: len(attrs["output_types"]), stateful=True,
         doc="f(state, element) folded over a dataset; inputs: dataset, initial_state, other_arguments. Stateful: "
             "f's side effects (a loop body's updates) run in it.")

register("DatasetToSingleElement", _infer_structure,
         _taking_constants(lambda node: lambda dataset: _outputs(functional.single_element(dataset, base.Context()))),
         cpu_only=True, colocate_with_input=0, num_outputs=lambda attrs: len(attrs["output_types"]),
         doc="The components of the one element of a dataset (InvalidArgumentError for none or more).")

# ---- iterators -----------------------------------------------------------------------------


def _infer_iterator(ctx):
    return [(dtypes.resource, ())]


def _iterator_key(node):
    """(container, shared name, node name): an iterator with a shared name is shared by the sessions
    that name it, one without is its session's own (worker/resources.py's container rule)."""
    return (node.attr("container", ""), node.attr("shared_name", ""), node.name)


def _iterator_state(node):
    key = _iterator_key(node)
    return resource_for(node.resources, *key, lambda: iterator.IteratorState(key))


def _iterator_kernel(node):
    state = _iterator_state(node)
    return lambda: state


def _one_shot_kernel(node):
    state = _iterator_state(node)
    factory = CompiledFunction(node.attr("dataset_factory"), device_of(node))

    def run():
        state.initialize_once(lambda: factory(base.Context().step, [])[0])
        return state
    return run


def _make_iterator_kernel(node):
    def run(dataset, state):
        state.initialize(dataset)
    return run


def _get_next_kernel(node):
    return lambda state: _outputs(state.get_next())


def _to_string_handle_kernel(node):
    return lambda state: np.array(json.dumps([node.device, *state.key]).encode(), dtype=object)


def _from_string_handle_kernel(node):
    where = f"{node.op} '{node.name}' on {node.device}"

    def run(handle):
        text = np.asarray(handle, dtype=object)[()]
        try:
            device, container, shared_name, node_name = json.loads(text)
        except (TypeError, ValueError):
            raise errors.InvalidArgumentError(None, None, f"{where}: {text!r} is not an iterator's string handle") \
                from None
        if device != node.device:
            raise errors.InvalidArgumentError(
                None, None, f"{where}: the handle names an iterator on {device}; an iterator is used on its own "
                "device, so place from_string_handle with the iterators whose handles it takes")
        state = find_resource(node.resources, container, shared_name, node_name)
        if state is None:
            raise errors.NotFoundError(
                None, None, f"{where}: no iterator {shared_name or node_name!r} here (another session's, or reset)")
        return state
    return run


register("IteratorV2", _infer_iterator, _iterator_kernel, cpu_only=True, stateful=True,
         doc="An iterator's state in the device's resource store: shared under attr shared_name, else the "
             "session's own; attrs container, output_types, output_shapes.")
register("OneShotIterator", _infer_iterator, _one_shot_kernel, cpu_only=True, stateful=True,
         doc="An iterator initialized, on its first run only, with the dataset its function attr "
             "dataset_factory makes.")
register("MakeIterator", lambda ctx: [], _taking_constants(_make_iterator_kernel), cpu_only=True, stateful=True, num_outputs=0,
         colocate_with_input="all", doc="(Re)starts iterator (input 1) on dataset (input 0).")
register("IteratorToStringHandle", lambda ctx: [(dtypes.string, ())], _to_string_handle_kernel, cpu_only=True,
         stateful=True, colocate_with_input=0, doc="A string naming the iterator (its device and shared name).")
register("IteratorFromStringHandleV2", _infer_iterator, _from_string_handle_kernel, cpu_only=True, stateful=True,
         doc="The iterator a string handle names, looked up at run time on this device; attrs output_types, "
             "output_shapes.")
register("IteratorGetNext", _infer_structure, _get_next_kernel, cpu_only=True, stateful=True,
         colocate_with_input=0, num_outputs=lambda attrs: len(attrs["output_types"]),
         doc="The iterator's next element; OutOfRangeError at the end.")
