"""tf.layers (TF1): graph-mode layers over tg.get_variable and tg.nn, with TF1's variable names and scoping.

`tf.layers.dense(x, 10)` makes `dense/kernel:0` and `dense/bias:0`, a second
call `dense_1/...`; `name=` and `reuse=` work as in TF1, regularizers put
their losses in REGULARIZATION_LOSSES and batch normalization its moving
average updates in UPDATE_OPS. (Keras layers are tg.keras's, separately.)
"""

from tensorgrid.client.layers.base import *  # noqa: F401,F403
from tensorgrid.client.layers.convolutional import *  # noqa: F401,F403
from tensorgrid.client.layers.core import *  # noqa: F401,F403
from tensorgrid.client.layers.normalization import *  # noqa: F401,F403
from tensorgrid.client.layers import base, convolutional, core, normalization

__all__ = base.__all__ + convolutional.__all__ + core.__all__ + normalization.__all__
