"""TF1's summary ops: tf.summary.scalar / histogram / image / text / merge / merge_all.

Each is a graph op whose value, fetched in a session, is a serialized
`Summary` (bytes) to hand to `FileWriter.add_summary`; it runs wherever its
inputs are, on any worker. The op is named after the summary (under the
current name scope, made unique) and its tag is that name, prefixed by
`family/` when a family is given, as in TF. Each is added to the graph
collections `collections` (default `tf.GraphKeys.SUMMARIES`) that
`merge_all` merges.
"""

import contextlib
import re

from tensorgrid.client import array_ops, scopes
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.graph import apply_op, convert_to_tensor
from tensorgrid.framework import dtypes

__all__ = ["scalar", "histogram", "image", "text", "tensor_summary", "merge", "merge_all"]

_INVALID_TAG_CHARACTERS = re.compile(r"[^-/\w\.]")


def clean_tag(name):
    """`name` with characters TensorBoard does not allow in tags replaced by '_', and no leading '/'."""
    if name is None:
        return None
    cleaned = _INVALID_TAG_CHARACTERS.sub("_", name).lstrip("/")
    return cleaned


@contextlib.contextmanager
def summary_scope(name, family=None, default_name=None):
    """Opens the summary's name scope; yields (tag, scope)."""
    name, family = clean_tag(name), clean_tag(family)
    base = name if family is None else f"{family}/{name}"
    with scopes.name_scope(base, default_name) as scope:
        stripped = scope.rstrip("/")
        yield (stripped if family is None else f"{family}/{stripped}"), scope


def _collect(op, collections):
    for key in [variables_lib.GraphKeys.SUMMARIES] if collections is None else collections:
        variables_lib.add_to_collection(key, op)
    return op


def _string(value, name):
    return array_ops.constant(value, dtype=dtypes.string, name=name)


def scalar(name, tensor, collections=None, family=None):
    """A summary of one real number; the tensor must be a scalar."""
    with summary_scope(name, family) as (tag, scope):
        tensor = convert_to_tensor(tensor)
        if tensor.shape.ndims not in (None, 0):
            raise ValueError(f"tf.summary.scalar '{tag}' takes a scalar tensor, got shape {tensor.shape}")
        if not (tensor.dtype.is_floating or tensor.dtype.is_integer):
            raise TypeError(f"tf.summary.scalar '{tag}' takes a real number, got {tensor.dtype.name}")
        return _collect(apply_op("ScalarSummary", [_string(tag, "tags"), tensor], name=scope), collections)


def histogram(name, values, collections=None, family=None):
    """A summary of the distribution of every element of `values` (TF1's histogram buckets)."""
    with summary_scope(name, family) as (tag, scope):
        values = convert_to_tensor(values)
        return _collect(apply_op("HistogramSummary", [_string(tag, "tag"), values], name=scope), collections)


def image(name, tensor, max_outputs=3, collections=None, family=None):
    """A summary of up to max_outputs images of `tensor` [batch, height, width, 1|3|4] (uint8 or float)."""
    with summary_scope(name, family) as (tag, scope):
        tensor = convert_to_tensor(tensor)
        if tensor.shape.ndims not in (None, 4):
            raise ValueError(f"tf.summary.image '{tag}' takes a 4-D [batch, height, width, channels] tensor, "
                             f"got shape {tensor.shape}")
        return _collect(apply_op("ImageSummary", [_string(tag, "tag"), tensor], {"max_images": int(max_outputs)},
                                 name=scope), collections)


def tensor_summary(name, tensor, summary_description=None, collections=None, summary_metadata=None,
                   family=None, display_name=None):
    """A summary holding `tensor` itself, with its SummaryMetadata (TF1's tensor_summary)."""
    from tensorgrid.ops import summary_ops
    if summary_metadata is None:
        summary_metadata = summary_ops.plugin_metadata("", display_name or "", summary_description or "")
    with summary_scope(name, family) as (tag, scope):
        tensor = convert_to_tensor(tensor)
        metadata = _string(summary_metadata.SerializeToString(), "serialized_summary_metadata")
        return _collect(apply_op("TensorSummaryV2", [_string(tag, "tag"), tensor, metadata], name=scope),
                        collections)


def text(name, tensor, collections=None):
    """A summary of a string tensor that TensorBoard's Text tab shows."""
    from tensorgrid.ops import summary_ops
    tensor = convert_to_tensor(tensor)
    if tensor.dtype != dtypes.string:
        raise ValueError(f"Expected tensor {tensor.name} to have dtype string, got {tensor.dtype.name}")
    return tensor_summary(name, tensor, collections=collections,
                          summary_metadata=summary_ops.plugin_metadata("text"))


def merge(inputs, collections=None, name=None):
    """One summary with the values of every summary in `inputs`; a tag in two of them fails the step."""
    inputs = [convert_to_tensor(t) for t in inputs]
    with scopes.name_scope(name, "Merge"):
        merged = apply_op("MergeSummary", inputs, {"N": len(inputs)}, name=name or "MergeSummary")
    for key in collections or []:
        variables_lib.add_to_collection(key, merged)
    return merged


def merge_all(key=variables_lib.GraphKeys.SUMMARIES, scope=None, name=None):
    """merge() of the summaries in collection `key` (those whose name matches `scope`), or None if none."""
    summaries = variables_lib.get_collection(key, scope)
    return merge(summaries, name=name) if summaries else None
