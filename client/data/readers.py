"""File datasets: tg.data.TFRecordDataset, and Dataset.list_files's file names."""

from tensorgrid.client import array_ops, misc_ops
from tensorgrid.client.data.dataset_ops import AUTOTUNE, Dataset, dataset_variant, _int64
from tensorgrid.client.data.structure import Structure
from tensorgrid.client.graph import convert_to_tensor
from tensorgrid.client.io import matching_files
from tensorgrid.client.scopes import control_dependencies
from tensorgrid.framework import dtypes, tfrecord
from tensorgrid.framework.tensor_spec import TensorSpec

__all__ = ["TFRecordDataset", "CsvDataset", "list_files"]

_RECORD = Structure(("leaf", 0), [TensorSpec([], dtypes.string)])


def _one_pass(filenames, compression_type, buffer_size, name=None):
    """The TFRecordDatasetV2 op over a string scalar or vector of file names."""
    inputs = [filenames, convert_to_tensor(compression_type, dtype=dtypes.string),
              _int64(-1 if buffer_size is None else buffer_size, "buffer_size"), _int64(0, "byte_offsets")]
    return dataset_variant("TFRecordDatasetV2", inputs, _RECORD, {"metadata": ""}, name or "TFRecordDatasetV2")


class TFRecordDataset(Dataset):
    """The records (string scalars) of TFRecord files, one file after the other (tf.data.TFRecordDataset).

    `filenames`: a path, a list or string tensor of them, or a Dataset of
    them; compression_type "", "ZLIB" or "GZIP"; buffer_size the read
    buffer in bytes. With num_parallel_reads, that many files are read at
    once, their records interleaved one by one (files in a Dataset are
    read through interleave as well). The files are read on the device the
    pipeline runs on; a corrupt record is a DataLossError.
    """

    def __init__(self, filenames, compression_type=None, buffer_size=None, num_parallel_reads=None, name=None):
        compression = tfrecord.compression_type(compression_type)
        if isinstance(filenames, Dataset):
            if filenames.element_spec != TensorSpec([], dtypes.string):
                raise TypeError("The `filenames` argument must contain `tf.string` elements. Got a dataset of "
                                f"`{filenames.element_spec}` elements.")
            files = filenames
        else:
            names = convert_to_tensor(filenames, dtype_hint=dtypes.string)
            if names.dtype is not dtypes.string:
                raise TypeError(f"The `filenames` argument must contain `tf.string` elements. Got "
                                f"`{names.dtype!r}` elements.")
            if names.shape.ndims not in (None, 0, 1):
                raise TypeError(f"The `filenames` argument must be a string scalar or vector, got shape "
                                f"{names.shape}.")
            if num_parallel_reads is None:
                Dataset.__init__(self, _one_pass(names, compression, buffer_size, name), _RECORD)
                return
            files = Dataset.from_tensor_slices(array_ops.reshape(names, [-1]))
        one = lambda f: Dataset(_one_pass(f, compression, buffer_size), _RECORD)  # noqa: E731
        if num_parallel_reads is None:
            ds = files.flat_map(one)
        else:
            ds = files.interleave(one, cycle_length=num_parallel_reads, block_length=1,
                                  num_parallel_calls=None if num_parallel_reads == AUTOTUNE else num_parallel_reads)
        Dataset.__init__(self, ds._variant_tensor, _RECORD, ds._options_attr)



class CsvDataset(Dataset):
    """The rows of CSV files as tuples of scalars (tf.data.experimental.CsvDataset).

    `record_defaults`: one per column read, a dtype (the column is required) or a value (its dtype, and
    the value an empty field takes); `select_cols` the increasing indices of the columns read (default: all,
    one per record default); `header` skips each file's first line; `na_value` reads as empty. Fields are
    quoted with `"` unless use_quote_delim=False. Not supported: compression, exclude_cols.
    """

    def __init__(self, filenames, record_defaults, compression_type=None, buffer_size=None, header=False,
                 field_delim=",", use_quote_delim=True, na_value="", select_cols=None, exclude_cols=None, name=None):
        names = convert_to_tensor(filenames, dtype_hint=dtypes.string)
        if names.dtype is not dtypes.string:
            raise TypeError(f"The `filenames` argument must contain `tf.string` elements. Got `{names.dtype!r}`.")
        if exclude_cols is not None:
            raise NotImplementedError("CsvDataset: exclude_cols is not supported by tensorgrid; use select_cols")
        defaults = []
        for d in record_defaults:
            if isinstance(d, dtypes.DType) or (isinstance(d, type) and d in (int, float, str, bytes)):
                dt = dtypes.as_dtype(d)
                defaults.append(array_ops.constant([], dtype=dt))
            else:
                t = convert_to_tensor(d)
                defaults.append(array_ops.reshape(t, [-1]))
        for d in defaults:
            if d.dtype not in (dtypes.int32, dtypes.int64, dtypes.float32, dtypes.float64, dtypes.string):
                raise TypeError(f"CsvDataset: record_defaults must be int32, int64, float32, float64 or string, "
                                f"got {d.dtype.name}")
        s = Structure.from_element_spec(tuple(TensorSpec([], d.dtype) for d in defaults))
        inputs = [array_ops.reshape(names, [-1]), convert_to_tensor(compression_type or "", dtype=dtypes.string),
                  _int64(-1 if buffer_size is None else buffer_size, "buffer_size"),
                  convert_to_tensor(bool(header)), convert_to_tensor(field_delim, dtype=dtypes.string),
                  convert_to_tensor(bool(use_quote_delim)), convert_to_tensor(na_value, dtype=dtypes.string),
                  _int64([] if select_cols is None else list(select_cols), "select_cols"), *defaults,
                  _int64([], "exclude_cols")]
        Dataset.__init__(self, dataset_variant("CsvDatasetV2", inputs, s, None, name or "CsvDatasetV2"), s)

def list_files(file_pattern, shuffle=None, seed=None, name=None):
    """Dataset.list_files: the file names a glob pattern (or a list of them) matches, shuffled unless
    shuffle=False; InvalidArgumentError when nothing matches."""
    names = matching_files(file_pattern)
    count = array_ops.size(names, out_type=dtypes.int64)
    check = misc_ops.assert_positive(count, message=f"No files matched pattern: {_pattern_text(file_pattern)}")
    if check is not None:  # a graph: the names wait for the check
        with control_dependencies([check]):
            names = array_ops.identity(names)
    ds = Dataset.from_tensor_slices(names, name=name)
    if shuffle is None or shuffle:
        ds = ds.shuffle(count, seed=seed)
    return ds


def _pattern_text(p):
    if isinstance(p, (list, tuple)):
        return ", ".join(_pattern_text(x) for x in p)
    return p.decode() if isinstance(p, bytes) else str(p)
