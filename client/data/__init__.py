"""tg.data: input pipelines (TF's tf.data); `compat_v1` lists what tf.compat.v1.data changes.

`Dataset` and its transformations are in dataset_ops.py, iterators in
iterator_ops.py, element structures in structure.py, the device side in
worker/data/.
"""

import types as _types

from tensorgrid.framework import dtypes as _dtypes
from tensorgrid.client.data import iterator_ops
from tensorgrid.client.data.dataset_ops import (  # noqa: F401
    AUTOTUNE, INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, Dataset)
from tensorgrid.client.data.iterator_ops import IteratorBase as Iterator  # noqa: F401
from tensorgrid.client.data.readers import CsvDataset, TFRecordDataset  # noqa: F401
from tensorgrid.client.data.options import (  # noqa: F401
    AutoShardPolicy, AutotuneOptions, DistributeOptions, ExternalStatePolicy, OptimizationOptions, Options,
    ThreadingOptions)


def _cardinality(dataset):
    """tf.data.experimental.cardinality(dataset): dataset.cardinality()."""
    return dataset.cardinality()


experimental = _types.SimpleNamespace(
    AUTOTUNE=AUTOTUNE, INFINITE_CARDINALITY=INFINITE_CARDINALITY, UNKNOWN_CARDINALITY=UNKNOWN_CARDINALITY,
    AutoShardPolicy=AutoShardPolicy, ExternalStatePolicy=ExternalStatePolicy, DistributeOptions=DistributeOptions,
    OptimizationOptions=OptimizationOptions, ThreadingOptions=ThreadingOptions, AutotuneOptions=AutotuneOptions,
    CsvDataset=CsvDataset, cardinality=_cardinality, choose_from_datasets=Dataset.choose_from_datasets,
    sample_from_datasets=Dataset.sample_from_datasets, get_single_element=lambda dataset: dataset.get_single_element(),
    Counter=lambda start=0, step=1, dtype=_dtypes.int64: Dataset.counter(start, step, dtype))

# What tf.compat.v1.data has instead of, or besides, the names in __all__.
compat_v1 = {
    "Iterator": iterator_ops.Iterator,
    "make_one_shot_iterator": iterator_ops.make_one_shot_iterator,
    "make_initializable_iterator": iterator_ops.make_initializable_iterator,
    "get_output_types": iterator_ops.get_output_types,
    "get_output_shapes": iterator_ops.get_output_shapes,
    "get_output_classes": iterator_ops.get_output_classes,
}

__all__ = ["Dataset", "TFRecordDataset", "Iterator", "Options", "AUTOTUNE", "INFINITE_CARDINALITY", "UNKNOWN_CARDINALITY",
           "experimental"]
