"""Per-step rendezvous: where a _Send leaves a tensor and the matching _Recv picks it up.

Keys are 'src_device;dst_device;tensor' (see runtime/partition.py); one
Rendezvous exists per step, so the step id completes the key. A value may
arrive before or after its receiver asks; `abort` fails every waiting and
later receiver with the step's root error.

Inside a loop or branch that spans devices (runtime/control_flow.py), the
same send/recv pair runs once per iteration: a FrameRendezvous appends the
frame and iteration ('|frame:3b', a nested loop's after its outer one's) to
every key, so each iteration's tensors meet under keys of their own, while
the route to another worker is still found by the key as partitioned
(`send_framed`).
"""

import sys
import threading

import numpy as np

from tensorgrid.framework import errors


def make_key(src_device, dst_device, tensor_name):
    return f"{src_device};{dst_device};{tensor_name}"


def parse_key(key):
    src, dst, tensor = key.split(";", 2)
    return src, dst, tensor


class LocalRendezvous:
    """In-memory rendezvous for devices of one process."""

    __slots__ = ("_lock", "_values", "_waiters", "_error", "step_id")

    def __init__(self, step_id=0):
        self._lock = threading.Lock()
        self._values = {}
        self._waiters = {}
        self._error = None
        self.step_id = step_id

    def send(self, key, value):
        with self._lock:
            if self._error is not None:
                return
            cb = self._waiters.pop(key, None)
            if cb is None:
                if key in self._values:
                    raise errors.InternalError(None, None, f"tensor sent twice under rendezvous key {key!r}")
                self._values[key] = value
                return
        cb(value, None)

    def send_framed(self, key, suffix, value):
        """send(key + suffix): a send inside a loop frame."""
        self.send(key + suffix, value)

    def send_buffer(self, key, nbytes):
        """Memory a CPU kernel may write a tensor sent under `key` into: pinned host memory where the
        destination is a GPU of this process (its copy to the GPU then runs at DMA speed, with no
        staging copy), else None (the tensor changes hands in memory anyway)."""
        if "/device:GPU:" not in parse_key(key)[1] or "cupy" not in sys.modules:
            return None
        from tensorgrid.ops.core_ops import pinned_empty
        return pinned_empty((nbytes,), np.uint8)

    def unstage(self, key, buffer):
        """Gives back memory from send_buffer that will not be sent: pinned memory returns to CuPy's
        pool once the array is freed, so nothing is left to do."""

    def recv_async(self, key, callback):
        """Calls callback(value, None) once the value is there, or callback(None, error) on abort."""
        with self._lock:
            if self._error is not None:
                err = self._error
            elif key in self._values:
                value = self._values.pop(key)
                err = None
            else:
                self._waiters[key] = callback
                return
        if err is not None:
            callback(None, err)
        else:
            callback(value, None)

    def recv(self, key, timeout=None):
        """Blocking receive."""
        done = threading.Event()
        box = []

        def cb(value, err):
            box.append((value, err))
            done.set()
        self.recv_async(key, cb)
        if not done.wait(timeout):
            raise errors.DeadlineExceededError(None, None, f"timed out waiting for {key!r}")
        value, err = box[0]
        if err is not None:
            raise err
        return value

    def abort(self, error):
        with self._lock:
            if self._error is not None:
                return
            self._error = errors.CancelledError(None, None, f"step {self.step_id} was cancelled: {error}") \
                if not isinstance(error, errors.OpError) else error
            waiters = list(self._waiters.values())
            self._waiters.clear()
            self._values.clear()
        for cb in waiters:
            cb(None, errors.CancelledError(None, None, f"step {self.step_id} cancelled after an error elsewhere: {error}"))

    @property
    def aborted(self):
        return self._error is not None

    def pending(self):
        """How many values and waiters this rendezvous still holds."""
        with self._lock:
            return len(self._values) + len(self._waiters)


class FrameRendezvous:
    """A step's rendezvous as one iteration of a loop frame (or one call of a branch) sees it:
    every key gets the frame's suffix. `root` is the step's own rendezvous."""

    __slots__ = ("root", "suffix")

    def __init__(self, parent, suffix):
        if isinstance(parent, FrameRendezvous):
            parent, suffix = parent.root, parent.suffix + suffix
        self.root = parent
        self.suffix = suffix

    def send(self, key, value):
        self.root.send_framed(key, self.suffix, value)

    def recv_async(self, key, callback):
        self.root.recv_async(key + self.suffix, callback)

    def abort(self, error):
        self.root.abort(error)

    @property
    def aborted(self):
        return self.root.aborted

    @property
    def step_id(self):
        return self.root.step_id
