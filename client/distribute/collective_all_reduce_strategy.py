"""tg.distribute.MultiWorkerMirroredStrategy: synchronous data parallelism, one replica per worker process.

Every worker process runs the same program; TF_CONFIG (or the cluster_resolver given) names the
workers (`chief` first, then `worker`, as TF orders them) and this process's task. The strategy's
collective group listens on this task's address (the data plane of worker/collectives.py: shared
memory to workers on this host, TCP to the others), and waits for every other worker to come up.

- Variables made in `scope()` start equal everywhere: each one's value is broadcast from worker 0
  when it is made (eager variables, and those a tg.function makes on its first call).
- `strategy.run(fn)` calls fn as this worker's replica; `get_replica_context().all_reduce` and
  optimizers' gradient aggregation become CollectiveReduceV2 ops (one per dtype for a list of
  tensors: they are packed into one buffer), eager or traced.
- `experimental_distribute_dataset` gives each worker its share of every global batch (rows
  [n*r/N, n*(r+1)/N) of a batch of n, as TF's rebatching does), so N workers together consume
  exactly the batches one process would.
"""

import itertools
import logging

import numpy as np

from tensorgrid.client.distribute import cluster_resolver as resolver_lib
from tensorgrid.client.distribute import distribute_lib
from tensorgrid.client.distribute.distribute_lib import ReduceOp
from tensorgrid.framework import errors

__all__ = ["MultiWorkerMirroredStrategy", "CommunicationOptions", "CommunicationImplementation",
           "CollectiveCommunication"]

log = logging.getLogger("tensorgrid.distribute")

GROUP_KEY = 1
# How long a new strategy waits for the other workers to come up (TF waits as long, then fails).
STARTUP_TIMEOUT_S = 600.0


class CommunicationImplementation:
    """Which collective implementation to use: AUTO picks by size (one-round exchange for small packs,
    ring for large), RING always the ring; NCCL is accepted and means AUTO (there are no GPUs)."""

    AUTO = "AUTO"
    RING = "RING"
    NCCL = "NCCL"


CollectiveCommunication = CommunicationImplementation


class CommunicationOptions:
    """Options of the collectives: bytes_per_pack (0: one pack per dtype), timeout_seconds, implementation."""

    def __init__(self, bytes_per_pack=0, timeout_seconds=None, implementation=CommunicationImplementation.AUTO):
        if bytes_per_pack < 0:
            raise ValueError(f"bytes_per_pack must be non-negative, got {bytes_per_pack}")
        self.bytes_per_pack = bytes_per_pack
        self.timeout_seconds = timeout_seconds
        self.implementation = implementation


def _members(spec, task_type, task_id):
    """(addresses of the workers in rank order, this task's rank) of a ClusterSpec."""
    jobs = spec.as_dict()
    members, rank = [], None
    for job in ("chief", "worker"):
        for i, address in enumerate(spec.job_tasks(job) if job in jobs else []):
            if address is None:
                raise ValueError(f"the cluster's job {job!r} has no task {i}: task indices must run 0..n-1")
            if job == task_type and i == task_id:
                rank = len(members)
            members.append(address)
    if rank is None:
        raise ValueError(f"this task ({task_type!r}, {task_id!r}) is not a chief or worker of the cluster "
                         f"{jobs}: MultiWorkerMirroredStrategy runs on every chief and worker task")
    return members, rank


class _CollectiveExtended(distribute_lib.StrategyExtended):
    def __init__(self, strategy, members, rank, options):
        super().__init__(strategy)
        self._members = members
        self._rank = rank
        self._options = options
        self._instance_keys = itertools.count(1)

    @property
    def experimental_between_graph(self):
        return True

    @property
    def experimental_should_init(self):
        return True

    @property
    def should_checkpoint(self):
        return self._rank == 0

    @property
    def should_save_summary(self):
        return self._rank == 0

    @property
    def _num_workers(self):
        return len(self._members)

    def _timeout(self):
        return self._options.timeout_seconds or 0

    def _hint(self):
        return "ring" if self._options.implementation == CommunicationImplementation.RING else "auto"

    def _batch_all_reduce(self, reduce_op, values):
        from tensorgrid.client import array_ops
        from tensorgrid.client.distribute import collective_ops
        n = self._num_workers
        final = "Div" if reduce_op is ReduceOp.MEAN else "Id"
        out = list(values)
        if n == 1:
            return out
        by_dtype = {}
        for i, v in enumerate(values):
            packable = v.shape.is_fully_defined()
            by_dtype.setdefault((v.dtype, packable), []).append(i)
        for (_, packable), idx in by_dtype.items():
            if not packable or len(idx) == 1:
                for i in idx:
                    out[i] = collective_ops.all_reduce_v2(values[i], n, GROUP_KEY, next(self._instance_keys),
                                                          final_op=final, timeout=self._timeout(),
                                                          communication_hint=self._hint())
                continue
            # one collective for the whole pack: the ring's latency is paid once, not once per tensor
            shapes = [values[i].shape.as_list() for i in idx]
            sizes = [int(np.prod(s)) for s in shapes]
            flat = array_ops.concat([array_ops.reshape(values[i], [-1]) for i in idx], axis=0)
            reduced = collective_ops.all_reduce_v2(flat, n, GROUP_KEY, next(self._instance_keys), final_op=final,
                                                   timeout=self._timeout(), communication_hint=self._hint())
            for i, part, shape in zip(idx, array_ops.split(reduced, sizes), shapes):
                out[i] = array_ops.reshape(part, shape)
        return out

    def _all_gather(self, value, axis):
        from tensorgrid.client import array_ops
        from tensorgrid.client.distribute import collective_ops
        if self._num_workers == 1:
            return value
        rank = value.shape.rank
        if axis < 0:
            axis += rank
        perm = [axis] + [d for d in range(rank) if d != axis]
        moved = array_ops.transpose(value, perm) if axis else value
        gathered = collective_ops.all_gather_v2(moved, self._num_workers, GROUP_KEY, next(self._instance_keys),
                                                timeout=self._timeout())
        if not axis:
            return gathered
        return array_ops.transpose(gathered, [perm.index(d) for d in range(rank)])

    def _variable_created(self, variable):
        """Starts the variable at worker 0's value (eager variables; graph ones are each session's to init)."""
        from tensorgrid.client import eager
        from tensorgrid.ops import registry
        from tensorgrid.worker import collectives
        comm = collectives.current()
        if self._num_workers == 1 or variable._graph is not None or comm is None:
            return
        key = next(self._instance_keys)
        value = eager.execute(registry.get("ReadVariableOp"), [variable._handle],
                              {"dtype": variable._dtype, "shape": variable._shape}).numpy()
        if self._rank == 0:
            comm.broadcast_send(value, self._num_workers, GROUP_KEY, key, timeout=self._timeout() or None)
            return
        value = comm.broadcast_recv(value.shape, value.dtype, self._num_workers, GROUP_KEY, key,
                                    timeout=self._timeout() or None)
        eager.execute(registry.get("AssignVariableOp"), [variable._handle, value], {"dtype": variable._dtype})


class MultiWorkerMirroredStrategy(distribute_lib.Strategy):
    """Synchronous training over worker processes: variables mirrored, gradients all-reduced (a ring)."""

    def __init__(self, cluster_resolver=None, communication_options=None):
        from tensorgrid import security
        from tensorgrid.worker import collectives
        resolver = cluster_resolver if cluster_resolver is not None else resolver_lib.TFConfigClusterResolver()
        options = communication_options if communication_options is not None else CommunicationOptions()
        spec = resolver.cluster_spec()
        if spec:
            members, rank = _members(spec, resolver.task_type, resolver.task_id)
        else:
            members, rank = ["localhost:0"], 0
        self._cluster_resolver = resolver
        super().__init__(_CollectiveExtended(self, members, rank, options), devices=(self._device_of(resolver),))
        if len(members) > 1:
            comm = collectives.Communicator(members, rank, token=security.read_token(),
                                            timeout=options.timeout_seconds)
            try:
                comm.start()
            except OSError as e:
                raise errors.UnavailableError(
                    None, None, f"MultiWorkerMirroredStrategy: cannot listen on this task's address "
                    f"{members[rank]}: {e.strerror or e}") from None
            collectives.set_current(comm)
            log.info("MultiWorkerMirroredStrategy: worker %d of %d at %s, waiting for the others", rank,
                     len(members), members[rank])
            comm.wait_for_peers(STARTUP_TIMEOUT_S, "MultiWorkerMirroredStrategy")
            self._communicator = comm
        else:
            self._communicator = None

    @staticmethod
    def _device_of(resolver):
        if resolver.task_type is None:
            return "/job:localhost/replica:0/task:0/device:CPU:0"
        return f"/job:{resolver.task_type}/replica:0/task:{resolver.task_id}/device:CPU:0"

    @property
    def num_replicas_in_sync(self):
        return self.extended._num_workers

    def _replica_id(self):
        return self.extended._rank

    def experimental_distribute_dataset(self, dataset, options=None):
        n, r = self.extended._num_workers, self.extended._rank
        if n == 1:
            return dataset
        from tensorgrid.client import array_ops

        def share(t):
            rows = array_ops.shape(t)[0]
            return t[(rows * r) // n:(rows * (r + 1)) // n]

        def per_worker(*element):
            return distribute_lib.map_structure(share, element[0] if len(element) == 1 else element)
        return dataset.map(per_worker)

    def distribute_datasets_from_function(self, dataset_fn, options=None):
        n, r = self.extended._num_workers, self.extended._rank
        return dataset_fn(distribute_lib.InputContext(n, r, n))

    experimental_distribute_datasets_from_function = distribute_datasets_from_function

    def close(self):
        """Stops this worker's collective endpoint (the process's exit does too)."""
        from tensorgrid.worker import collectives
        if self._communicator is not None:
            if collectives.current() is self._communicator:
                collectives.set_current(None)
            self._communicator.close()
