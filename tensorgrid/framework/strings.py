"""String tensor values: numpy object arrays of bytes, as TF's string tensors hold bytes.

Every value entering a string tensor (a constant, a feed, a py_func result,
an eager kernel's output) goes through string_array, so str elements become
their UTF-8 bytes and `.numpy()`, `Session.run` and the wire all give bytes.
"""

import numpy as np


def as_bytes(x):
    """One string element as bytes (a str is UTF-8 encoded); TypeError for anything else."""
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, np.bytes_):
        return bytes(x)
    raise TypeError(f"a string tensor holds bytes or str elements, not {type(x).__name__} ({x!r:.50})")


def string_array(values):
    """A numpy object array of bytes holding `values` (a nest of str/bytes, or a numpy array of them)."""
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if arr.dtype == object and all(type(x) is bytes for x in arr.reshape(-1).tolist()):
        return arr
    out = np.empty(arr.shape, dtype=object)
    out.reshape(-1)[:] = [as_bytes(x) for x in arr.reshape(-1).tolist()]
    return out
