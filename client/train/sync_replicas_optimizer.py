"""tf.train.SyncReplicasOptimizer: synchronous between-graph training through gradient accumulators.

Every replica (worker task) builds the same graph. Its train op pushes each
gradient into the variable's ConditionalAccumulator (SparseConditional for an
IndexedSlices gradient) on the variable's ps task, tagged with the replica's
local step, then takes a token from the token queue (a FIFOQueue next to
the global step) and makes the token its next local step. The chief's queue
runner loops over the sync op: take `replicas_to_aggregate` gradients from
every accumulator (waiting for them), apply their means with the wrapped
optimizer (one global step), then put max(total_num_replicas,
replicas_to_aggregate) tokens holding the new global step in the queue. A
gradient tagged with a local step older than the accumulator's global step
is stale and dropped, so each global step applies exactly one update, the
mean of replicas_to_aggregate fresh gradients. All of this is TensorFlow's
design, with TF's names (`sync_replicas/conditional_accumulator`,
`sync_token_q`, `sync_rep_local_step`, shared names `<var>:0/grad_accum`).

Where tensorgrid's hook does more than TF's (measured against TF 2.21 with tests/sync_replicas_program.py):
- A replica that ends (its MonitoredSession closes cleanly: its input ran
  out, it reached its own last step) puts the token it holds back in the
  queue, so the others can make up its gradients and the chief keeps going
  (TF's chief waits forever for the finished replica's next gradient: still
  waiting, silent, 90 s after the other worker ended).
- The chief's end closes the token queue, so replicas waiting for a token
  end at once with OutOfRangeError, which their MonitoredSession takes as the
  end of training (with TF the waiting worker's step was aborted 30 s after the
  chief stopped, and the chief took 150 s to close, its queue-runner thread
  blocked in a take until stop_grace_period_secs ran out; with tensorgrid both
  ended within a second, since MonitoredSession closes the session, which
  cancels that take, before it joins the threads).
A replica that dies (SIGKILL) takes its token with it: with
replicas_to_aggregate == total_num_replicas the others wait until it is
restarted, whose first gradient is fresh, as in TF.

`make_session_run_hook(is_chief, num_tokens=-1)`: the chief puts
`num_tokens` tokens (default replicas_to_aggregate) in the queue when its
session starts, so each replica's first gradients do not wait; with
num_tokens=0 and replicas_to_aggregate == total_num_replicas the replicas
move in lockstep and every update is the mean of exactly one gradient per
replica at the same weights.
"""

import logging

from tensorgrid.client import array_ops, scopes
from tensorgrid.client import variables as variables_lib
from tensorgrid.client.accumulators import ConditionalAccumulator, SparseConditionalAccumulator
from tensorgrid.client.indexed_slices import IndexedSlices
from tensorgrid.client.input import queue_runner
from tensorgrid.client.queues import FIFOQueue
from tensorgrid.client.train.optimizer import Optimizer
from tensorgrid.client.train.session_run_hook import SessionRunHook
from tensorgrid.framework import dtypes, errors

__all__ = ["SyncReplicasOptimizer"]

log = logging.getLogger("tensorgrid.train")

GraphKeys = variables_lib.GraphKeys


class SyncReplicasOptimizer(Optimizer):
    """Wraps an optimizer so that each global step applies the mean of replicas_to_aggregate fresh gradients."""

    def __init__(self, opt, replicas_to_aggregate, total_num_replicas=None, variable_averages=None,
                 variables_to_average=None, use_locking=False, name="sync_replicas"):
        if total_num_replicas is None:
            total_num_replicas = replicas_to_aggregate
        if replicas_to_aggregate < 1 or total_num_replicas < 1:
            raise ValueError(f"replicas_to_aggregate ({replicas_to_aggregate}) and total_num_replicas "
                             f"({total_num_replicas}) must be positive")
        super().__init__(use_locking, name)
        log.info("SyncReplicasV2: replicas_to_aggregate=%s; total_num_replicas=%s", replicas_to_aggregate,
                 total_num_replicas)
        self._opt = opt
        self._replicas_to_aggregate = replicas_to_aggregate
        self._total_num_replicas = total_num_replicas
        self._tokens_per_step = max(total_num_replicas, replicas_to_aggregate)
        self._variable_averages = variable_averages
        self._variables_to_average = variables_to_average
        self._gradients_applied = False
        self._global_step = None
        self._sync_token_queue = None
        self._chief_queue_runner = None
        self._accumulator_list = []
        self._local_step = None
        self.local_step_init_op = None
        self.chief_init_op = None
        self.ready_for_local_init_op = None

    def compute_gradients(self, *args, **kwargs):
        """The wrapped optimizer's compute_gradients."""
        return self._opt.compute_gradients(*args, **kwargs)

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """Builds the replicas' train op (returned) and the chief's sync op (run by get_chief_queue_runner())."""
        grads_and_vars = list(grads_and_vars)
        if not grads_and_vars:
            raise ValueError("Must supply at least one variable")
        if global_step is None:
            raise ValueError("Global step is required to check staleness")
        if self._gradients_applied:
            raise ValueError("apply_gradients() of a SyncReplicasOptimizer can be called only once")
        self._global_step = global_step
        graph = global_step.graph
        # The local step lives on this replica's worker: colocated with an op placed by the device scope.
        local_anchor = array_ops.no_op()
        with scopes.colocate_with(local_anchor):
            self._local_step = variables_lib.Variable(0, trainable=False, name="sync_rep_local_step",
                                                      collections=[GraphKeys.LOCAL_VARIABLES],
                                                      dtype=global_step.dtype)
        self.local_step_init_op = self._local_step.assign(global_step.read_value(), read_value=False)
        chief_init_ops = [self.local_step_init_op]
        self.ready_for_local_init_op = variables_lib.report_uninitialized_variables(
            variables_lib.global_variables())

        train_ops, aggregated, var_list = [], [], []
        with scopes.name_scope(None, self._name):
            for grad, var in grads_and_vars:
                var_list.append(var)
                with scopes.device(var.device):
                    if grad is None:
                        aggregated.append(None)
                        continue
                    shared_name = var.name + "/grad_accum"
                    if isinstance(grad, IndexedSlices):
                        accum = SparseConditionalAccumulator(grad.dtype, shape=(), shared_name=shared_name)
                        train_ops.append(accum.apply_indexed_slices_grad(grad, local_step=self._local_step))
                        aggregated.append(accum.take_indexed_slices_grad(self._replicas_to_aggregate))
                    else:
                        accum = ConditionalAccumulator(grad.dtype, shape=var.shape, shared_name=shared_name)
                        train_ops.append(accum.apply_grad(grad, local_step=self._local_step))
                        aggregated.append(accum.take_grad(self._replicas_to_aggregate))
                    self._accumulator_list.append((accum, var.device))

        # The update, the token queue and the sync op sit with the global step.
        with scopes.device(global_step.device), scopes.name_scope(""):
            update_op = self._opt.apply_gradients(list(zip(aggregated, var_list)), global_step)
            token_dtype = global_step.dtype
            self._sync_token_queue = FIFOQueue(-1, token_dtype, shapes=(), name="sync_token_q",
                                               shared_name="sync_token_q")
            # The queue runner gets a queue of its own to close: closing the token queue from a stopping
            # chief's runner would leave it closed for the chief's next session.
            dummy_queue = FIFOQueue(1, dtypes.int32, shapes=(), name="dummy_queue", shared_name="dummy_queue")
            with scopes.control_dependencies(train_ops):
                token = self._sync_token_queue.dequeue()
            train_op = self._local_step.assign(token)
            with scopes.control_dependencies([update_op]):
                tokens = array_ops.fill([self._tokens_per_step], global_step.read_value())
                sync_op = self._sync_token_queue.enqueue_many((tokens,))
            if self._variable_averages is not None:
                with scopes.control_dependencies([sync_op]):
                    sync_op = self._variable_averages.apply(self._variables_to_average)
            # The chief's end closes the token queue (the hook's end op), maybe while the runner's sync op
            # is enqueuing: its "queue is closed" CancelledError ends the runner as a closed queue does.
            self._chief_queue_runner = queue_runner.QueueRunner(
                dummy_queue, [sync_op], queue_closed_exception_types=(errors.OutOfRangeError, errors.CancelledError))
        for accum, device in self._accumulator_list:
            with scopes.device(device):
                chief_init_ops.append(accum.set_global_step(global_step.read_value(), name="SetGlobalStep"))
        self.chief_init_op = array_ops.group(*chief_init_ops)
        self._gradients_applied = True
        ops = graph.get_collection_ref(GraphKeys.TRAIN_OP)
        if train_op not in ops:
            ops.append(train_op)
        return train_op

    def get_chief_queue_runner(self):
        """The QueueRunner whose thread the chief runs: it loops over the sync op."""
        if not self._gradients_applied:
            raise ValueError("Should be called after apply_gradients().")
        return self._chief_queue_runner

    def get_slot(self, *args, **kwargs):
        return self._opt.get_slot(*args, **kwargs)

    def get_slot_names(self, *args, **kwargs):
        return self._opt.get_slot_names(*args, **kwargs)

    def variables(self):
        """The wrapped optimizer's variables."""
        return self._opt.variables()

    def get_init_tokens_op(self, num_tokens=-1):
        """The op that puts num_tokens tokens (default replicas_to_aggregate) in the token queue."""
        if not self._gradients_applied:
            raise ValueError("get_init_tokens_op() should be called after apply_gradients().")
        tokens_needed = self._replicas_to_aggregate - self._total_num_replicas
        if num_tokens == -1:
            num_tokens = self._replicas_to_aggregate
        elif num_tokens < tokens_needed:
            raise ValueError(f"Too few tokens to finish the first step: {num_tokens} (given) vs {tokens_needed} "
                             "(needed)")
        with scopes.device(self._global_step.device), scopes.name_scope(""):
            if num_tokens > 0:
                tokens = array_ops.fill([num_tokens], self._global_step.read_value())
                return self._sync_token_queue.enqueue_many((tokens,))
            return array_ops.no_op(name="no_init_tokens")

    def make_session_run_hook(self, is_chief, num_tokens=-1):
        """The hook that initializes a replica's session (and, on the chief, starts the sync op's thread)."""
        return _SyncReplicasOptimizerHook(self, is_chief, num_tokens)


class _SyncReplicasOptimizerHook(SessionRunHook):
    """Runs the local (or chief) init op once the model is ready, the chief's tokens and queue runner, and,
    at the end, gives the replica's token back (a replica) or closes the token queue (the chief)."""

    def __init__(self, sync_optimizer, is_chief, num_tokens):
        self._sync_optimizer = sync_optimizer
        self._is_chief = is_chief
        self._num_tokens = num_tokens

    def begin(self):
        opt = self._sync_optimizer
        if not opt._gradients_applied:
            raise ValueError("SyncReplicasOptimizer.apply_gradient should be called before using the hook.")
        self._ready_for_local_init_op = opt.ready_for_local_init_op
        queue = opt._sync_token_queue
        with scopes.device(opt._global_step.device), scopes.name_scope(""):
            if self._is_chief:
                self._local_init_op = opt.chief_init_op
                self._q_runner = opt.get_chief_queue_runner()
                self._init_tokens_op = opt.get_init_tokens_op(self._num_tokens)
                self._end_op = queue.close(name="sync_token_q_Close_at_end")
            else:
                self._local_init_op = opt.local_step_init_op
                self._q_runner = None
                self._init_tokens_op = None
                self._end_op = queue.enqueue(opt._local_step.read_value(), name="sync_token_q_give_back")

    def after_create_session(self, session, coord):
        names = session.run(self._ready_for_local_init_op)
        if len(names):
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
            raise RuntimeError("Init operations did not make model ready for SyncReplicasOptimizer local_init. "
                               f"Init op: {self._local_init_op.name}, error: Variables not initialized: "
                               f"{', '.join(names)}")
        session.run(self._local_init_op)
        if self._init_tokens_op is not None:
            session.run(self._init_tokens_op)
        if self._q_runner is not None:
            self._q_runner.create_threads(session, coord=coord, daemon=True, start=True)

    def end(self, session):
        try:
            session.run(self._end_op)
        except (errors.CancelledError, errors.OutOfRangeError, errors.UnavailableError) as e:
            # the chief closed the queue first, or the ps is gone: nobody is left to wait for this token
            log.debug("SyncReplicasOptimizer hook: %s at the end: %s", self._end_op.name, e)
