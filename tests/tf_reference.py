"""TensorFlow itself, for differential tests, without changing its global mode for later tests.

TensorFlow's programs are built in a Graph of their own (eager stays on for every other test), with
v2 control flow told to output every intermediate while they are built: without it TF 2.21 cannot
differentiate a while_loop holding a TensorArray in graph mode.
"""

import contextlib

import pytest


@contextlib.contextmanager
def tensorflow_v1():
    """tensorflow.compat.v1 (the test is skipped without TensorFlow) for building graph programs."""
    tf = pytest.importorskip("tensorflow").compat.v1
    tf.experimental.output_all_intermediates(True)
    try:
        yield tf
    finally:
        tf.experimental.output_all_intermediates(None)
