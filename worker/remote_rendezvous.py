"""A step's rendezvous on a worker: tensors for local devices change hands in memory, tensors for
other workers leave through the data plane (worker/transport.py), and tensors from other workers
arrive through `deliver`.

Routes (rendezvous key -> the destination worker's data address) come from
the graph registration, so a send costs one dict lookup before it either
hands the value over in memory or calls the data plane.
"""

import numpy as np

from tensorgrid.framework import errors
from tensorgrid.framework.device_spec import DeviceSpec
from tensorgrid.observability import stages
from tensorgrid.worker.rendezvous import LocalRendezvous, parse_key


# What a control edge (a _Send with no data input) carries across workers: nothing reads its value.
_CONTROL_TOKEN = np.empty(0, dtype=np.uint8)


class RemoteRendezvous:
    """One step's rendezvous on one worker."""

    __slots__ = ("step_id", "local", "routes", "plane")

    def __init__(self, step_id, plane):
        self.step_id = step_id
        self.local = LocalRendezvous(step_id)
        self.routes = {}  # key -> data address of the worker that owns the key's destination device
        self.plane = plane

    def send(self, key, value):
        address = self.routes.get(key)
        if address is None:
            self.local.send(key, value)
            return
        self._send_to(address, key, value)

    def send_buffer(self, key, nbytes):
        """Memory a kernel may write the tensor to be sent under `key` into, so the send copies nothing:
        a shared-memory segment of a same-host destination (DataPlane.send_buffer); for a device of this
        worker, what LocalRendezvous.send_buffer offers; None where neither has any."""
        address = self.routes.get(key)
        if address is None:
            return self.local.send_buffer(key, nbytes)  # pinned memory for a GPU of this worker, else None
        return self.plane.send_buffer(address, self.step_id, nbytes)

    def unstage(self, key, buffer):
        """Gives back memory from send_buffer that will not be sent (its kernel failed)."""
        address = self.routes.get(key)
        if address is None:
            self.local.unstage(key, buffer)
        else:
            self.plane.unstage(address, buffer)

    def _send_to(self, address, key, value):
        if self.local.aborted:
            return  # a staged output buffer goes back at the step's end (DataPlane.release_step)
        if stages.ON:
            stages.mark("w.send")
        try:
            self.plane.send(address, self.step_id, key, _CONTROL_TOKEN if value is None else value)
            if stages.ON:
                stages.mark("w.sent")
        except errors.OpError as e:
            raise type(e)(None, None, f"cannot send tensor to {_task_of(key)} at {address}: {e.message}") from None
        except (OSError, ValueError) as e:
            raise errors.UnavailableError(
                None, None, f"cannot send tensor to {_task_of(key)} at {address}: {e}") from None

    def send_framed(self, key, suffix, value):
        """Sends under key + suffix (a loop frame's iteration), routed as `key` was partitioned."""
        address = self.routes.get(key)
        if address is None:
            self.local.send(key + suffix, value)
            return
        self._send_to(address, key + suffix, value)

    def deliver(self, key, value):
        """A tensor another worker sent for this step."""
        self.local.send(key, value)

    def recv_async(self, key, callback):
        self.local.recv_async(key, callback)

    def recv(self, key, timeout=None):
        return self.local.recv(key, timeout)

    def abort(self, error):
        self.local.abort(error)

    @property
    def aborted(self):
        return self.local.aborted

    def pending(self):
        return self.local.pending()


def _task_of(key):
    """'/job:worker/task:1' for a key whose destination is a device of that task."""
    spec = DeviceSpec.from_string(parse_key(key)[1])
    return DeviceSpec(job=spec.job, task=spec.task).to_string()
