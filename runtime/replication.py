"""Replicated ps variables: a ps task's variables kept on another task, so its death loses no update.

A worker started with `--replicas 1` (a *primary*) gets a replica on the next live task of its job.
After every step that wrote variables of the primary and succeeded on every worker, and before the
client hears of it, the master copies them: a read step on the primary fetches the written
variables, then a write step on the replica assigns them all together (its assigns wait for every
value). A step is reported successful only once its writes are on the replica, or the replica was
given up (it died: its variables are rebuilt, every variable the primary ever had written through
this master, after the next step that succeeds).

When the primary dies with its replica in sync, the master promotes the replica: from then on a
node pinned to the primary runs on the replica (its variables are there under the same shared
names), so the next step runs without a restore. The step in flight fails with UnavailableError
saying so; none of its updates reached the replica (a step's writes are copied only after it
succeeded everywhere, and the copy of a step whose primary died during the read is never
written), so running it again applies it exactly once. With several clients stepping at once the
copy of one client's step can carry another's update whose own copy had not finished: that update
is then on the replica even though its step failed (at least once, not exactly once).

Pure functions over GraphIRs and a small state object driven by runtime/master.py.
"""

import dataclasses
import logging
import threading

from tensorgrid.framework import device_spec, errors
from tensorgrid.runtime.ir import GraphIR, Node, split_input

log = logging.getLogger("tensorgrid.master")

_WRITES = {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp", "ResourceScatterAdd",
           "ResourceScatterSub", "ResourceScatterUpdate"}


def is_write(op):
    """True for an op that changes the variable whose handle is its first input."""
    return op in _WRITES or op.startswith(("ResourceApply", "ResourceSparseApply"))


@dataclasses.dataclass(frozen=True)
class Var:
    """A variable as the resource store keys it: container, shared name, dtype, shape (the VarHandleOp attrs)."""

    container: str
    shared_name: str
    dtype: object
    shape: object

    @classmethod
    def of(cls, node):
        a = node.attrs
        return cls(a.get("container", ""), a["shared_name"], a["dtype"], a["shape"])

    def handle_attrs(self):
        attrs = {"shared_name": self.shared_name, "dtype": self.dtype, "shape": self.shape}
        if self.container:
            attrs["container"] = self.container
        return attrs


def written_variables(partitions):
    """{device: set of Var} that the step's partitions write (a write's handle from a VarHandleOp there)."""
    out = {}
    for device, graph in partitions.items():
        for node in graph.nodes.values():
            if not is_write(node.op) or not node.inputs:
                continue
            handle = graph.nodes.get(split_input(node.inputs[0])[0])
            if handle is not None and handle.op == "VarHandleOp":
                out.setdefault(device, set()).add(Var.of(handle))
    return out


def read_graph(device, variables):
    """(GraphIR reading `variables` on `device`, fetch names in the order of `variables`)."""
    g = GraphIR()
    fetches = []
    for i, v in enumerate(variables):
        g.add(Node(f"replica/h{i}", "VarHandleOp", device=device, attrs=v.handle_attrs()))
        g.add(Node(f"replica/read{i}", "ReadVariableOp", [f"replica/h{i}:0"], device=device,
                   attrs={"dtype": v.dtype, "shape": v.shape}))
        fetches.append(f"replica/read{i}:0")
    return g, fetches


def write_graph(device, variables):
    """(GraphIR assigning fed values to `variables` on `device`, feed names, target name); every assign
    waits for every value, so the replica takes all of a step's writes or none."""
    g = GraphIR()
    feeds = []
    for i, v in enumerate(variables):
        g.add(Node(f"replica/value{i}", "Placeholder", device=device, attrs={"dtype": v.dtype, "shape": v.shape}))
        # a fed tensor's consumers read the feed; a control edge on the Placeholder would run it
        g.add(Node(f"replica/arrived{i}", "Identity", [f"replica/value{i}:0"], device=device))
        feeds.append(f"replica/value{i}:0")
    g.add(Node("replica/all_values", "NoOp", control_inputs=[f"replica/arrived{i}" for i in range(len(variables))],
               device=device))
    for i, v in enumerate(variables):
        g.add(Node(f"replica/h{i}", "VarHandleOp", device=device, attrs=v.handle_attrs()))
        g.add(Node(f"replica/assign{i}", "AssignVariableOp", [f"replica/h{i}:0", f"replica/value{i}:0"],
                   ["replica/all_values"], device=device, attrs={"dtype": v.dtype, "validate_shape": False}))
    g.add(Node("replica/commit", "NoOp", control_inputs=[f"replica/assign{i}" for i in range(len(variables))],
               device=device))
    return g, feeds, "replica/commit"


def retarget(graph, aliases):
    """`graph` with every device spec naming a task of `aliases` ({(job, task): (job, task)}) moved to
    its alias; `graph` itself when nothing changes. (Devices inside function bodies follow their node.)"""
    if not aliases:
        return graph

    def moved(dev):
        if not dev:
            return dev
        spec = device_spec.DeviceSpec.from_string(dev)
        to = aliases.get((spec.job, spec.task))
        if to is None:
            return dev
        return device_spec.DeviceSpec(job=to[0], replica=spec.replica, task=to[1], device_type=spec.device_type,
                                      device_index=spec.device_index).to_string()
    out = GraphIR()
    changed = False
    for node in graph.nodes.values():
        dev = moved(node.device)
        if dev != node.device:
            changed = True
            node = node.copy(device=dev)
        out.nodes[node.name] = node
    return out if changed else graph


class _Primary:
    """One replicated ps task: its replica, what it ever wrote, whether the replica holds all of it."""

    def __init__(self, key):
        self.key = key
        self.replica = None
        self.known = {}        # Var -> None, in first-write order
        self.in_sync = True
        self.lock = threading.Lock()


class Replication:
    """The master's replicated-variables state: primaries, their replicas, promotions."""

    def __init__(self):
        self._primaries = {}   # (job, task) -> _Primary
        self.aliases = {}      # promoted primary (job, task) -> the replica now serving it
        self._sessions = {}    # ("read"/"write", device, variables) -> (internal session handle, fetches/feeds)
        self._internal = set()
        self._lock = threading.Lock()

    def add_primary(self, key):
        with self._lock:
            self._primaries.setdefault(key, _Primary(key))

    def primaries(self):
        with self._lock:
            return dict(self._primaries)

    def choose_replica(self, primary, live_tasks):
        """The replica of `primary`: the next live task of its job after it (None when it has none)."""
        job, task = primary
        same = sorted(t for j, t in live_tasks if j == job and t != task)
        later = [t for t in same if t > task] or same
        return (job, later[0]) if later else None

    def promote(self, dead_key):
        """Called when a task died: the alias it gets ((job, task) of its replica), or None."""
        with self._lock:
            p = self._primaries.get(dead_key)
            if p is None or p.replica is None or not p.in_sync or dead_key in self.aliases:
                return None
            self.aliases[dead_key] = p.replica
            # the promoted task has no replica of its own until it is started with --replicas
            del self._primaries[dead_key]
            return p.replica

    # ---- driven by the master -----------------------------------------------------------------------------
    def internal(self, handle):
        """True for the sessions this object runs its copies in (their steps are not copied again)."""
        return handle in self._internal

    def after_step(self, master, entry):
        """Copies what the step (planned as `entry`, successful on every worker) wrote on each primary to
        its replica. Raises UnavailableError when the primary could not be read (it died after the step:
        the replica holds the state before it, and the step must run again)."""
        if not self._primaries:
            return
        written = getattr(entry, "replica_writes", None)
        if written is None:
            written = entry.replica_writes = written_variables(entry.plan.partitions)
        with self._lock:
            primaries = self._primaries
            targets = [(primaries[_task(d)], d, vs) for d, vs in written.items() if _task(d) in primaries]
        for p, device, variables in targets:
            with p.lock:
                for v in sorted(variables, key=_order):
                    p.known.setdefault(v)
                self._copy(master, p, device, sorted(variables, key=_order))

    def _copy(self, master, p, device, variables):
        live = {r.key for r in master.workers() if r.alive}
        if p.replica not in live:
            replica = self.choose_replica(p.key, live)
            if replica is None:
                if p.replica is not None or p.in_sync:
                    log.warning("/job:%s/task:%d has --replicas but no other live task of its job to keep its "
                                "replica: its variables are not replicated", *p.key)
                p.replica, p.in_sync = None, False
                return
            log.log(logging.INFO if p.replica is None else logging.WARNING,
                    "replica of /job:%s/task:%d: /job:%s/task:%d (copying its %d variables)", *p.key, *replica,
                    len(p.known))
            p.replica, p.in_sync = replica, False
        if not p.in_sync:
            variables = list(p.known)   # a new or lost replica is rebuilt with everything
        replica_device = device_spec.full_name(p.replica[0], p.replica[1], "CPU", 0)
        read, fetches = self._internal_session(master, ("read", device, tuple(variables)),
                                               lambda: read_graph(device, variables))
        try:
            values, _, _ = master.run_step(read, [], fetches, [])
        except errors.OpError as e:
            if not isinstance(e, errors.UnavailableError):
                p.in_sync = False
            raise errors.UnavailableError(
                None, None, f"the step ran, but its writes on /job:{p.key[0]}/task:{p.key[1]} could not be read "
                f"for its replica: {e.message}") from None
        write, (feeds, target) = self._internal_session(master, ("write", replica_device, tuple(variables)),
                                                        lambda: _split(write_graph(replica_device, variables)))
        try:
            master.run_step(write, [(f, t) for f, (_, t) in zip(feeds, values)], [], [target])
        except errors.OpError as e:
            p.in_sync = False
            log.warning("the replica /job:%s/task:%d of /job:%s/task:%d missed a step (%s: %s); it is rebuilt "
                        "after the next step", *p.replica, *p.key, type(e).__name__, e.message)
            return
        p.in_sync = True

    def _internal_session(self, master, key, build):
        with self._lock:
            found = self._sessions.get(key)
        if found is not None:
            return found
        graph, extra = build()
        handle, _ = master.create_session(graph)
        with self._lock:
            self._internal.add(handle)
            self._sessions[key] = (handle, extra)
        return handle, extra


def _split(built):
    graph, feeds, target = built
    return graph, (feeds, target)


def _task(device):
    spec = device_spec.DeviceSpec.from_string(device)
    return (spec.job, spec.task)


def _order(v):
    return (v.container, v.shared_name)
