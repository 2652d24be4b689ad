"""A worker's Prometheus metrics: its RunGraph latency (counted on the step path), and at scrape time
its step table, registered graphs, variables and their bytes, the data plane's bytes per path and
peer, and the process's CPU and memory (read from where they are kept, not counted twice)."""

from tensorgrid import metrics

_RECEIVED = "bytes_received_"


def variable_usage(worker):
    """{device: (initialized variables, their bytes)} of a worker's devices."""
    out = {}
    for name, ctx in list(worker.contexts.items()):
        values = [v.value for v in ctx.resources.variables() if v.value is not None]
        out[name] = (len(values), sum(int(getattr(v, "nbytes", 0)) for v in values))
    return out


class WorkerMetrics:
    """The metrics of one Worker (worker/worker.py calls run_graph_done after every RunGraph)."""

    def __init__(self, worker, registry=None):
        self.worker = worker
        self.registry = registry if registry is not None else metrics.Registry()
        r = self.registry
        self.run_graph = r.histogram("tensorgrid_worker_run_graph_duration_seconds",
                                     "RunGraph on this worker: every partition of the step, receives included.")
        self.run_graphs = r.counter("tensorgrid_worker_run_graphs_total", "RunGraph calls this worker ran.")
        self.failed = r.counter("tensorgrid_worker_run_graphs_failed_total",
                                "RunGraph calls that ended with an error, by its class.", ["error"])
        r.add_collector(self._collect)
        r.add_collector(metrics.process_families)

    def run_graph_done(self, seconds, failure=None):
        self.run_graphs.inc()
        if failure is None:
            self.run_graph.observe(seconds)
        else:
            self.failed.labels(type(failure).__name__).inc()

    def _collect(self):
        w = self.worker
        status = w.status()
        transport = status["transport"]
        gauge, counter = metrics.gauge_family, metrics.counter_family
        usage = variable_usage(w)
        peers = w.plane.peer_stats() if w.plane is not None else {}
        paths = sorted(k[len(_RECEIVED):] for k in transport if k.startswith(_RECEIVED))
        return [
            gauge("tensorgrid_worker_info", "This worker's task and incarnation (always 1).",
                  [({"job": w.job or "", "task": "" if w.task is None else str(w.task),
                     "incarnation": f"{w.incarnation:x}"}, 1)]),
            gauge("tensorgrid_worker_active_steps", "Steps with state on this worker (running or early tensors).",
                  [({}, status["active_steps"])]),
            gauge("tensorgrid_worker_rendezvous_entries", "Tensors and waiters held in the steps' rendezvous.",
                  [({}, status["rendezvous_entries"])]),
            gauge("tensorgrid_worker_registered_graphs", "Partition graphs registered on this worker.",
                  [({}, status["registered_graphs"])]),
            gauge("tensorgrid_worker_resources", "Resources (variables, queues, ...) in the devices' stores.",
                  [({}, status["resources"])]),
            gauge("tensorgrid_worker_variables", "Initialized variables per device.",
                  [({"device": d}, n) for d, (n, _) in usage.items()]),
            gauge("tensorgrid_worker_variable_bytes", "Bytes of the initialized variables per device.",
                  [({"device": d}, b) for d, (_, b) in usage.items()]),
            counter("tensorgrid_worker_late_tensors_dropped_total",
                    "Tensors that arrived for a step already over here, and were dropped.",
                    [({}, status["dropped_late_tensors"])]),
            counter("tensorgrid_transport_sent_bytes_total", "Tensor bytes sent to other workers, per path and peer.",
                    [({"path": path, "peer": peer}, n) for (peer, path), (n, _) in sorted(peers.items())]),
            counter("tensorgrid_transport_sent_tensors_total", "Tensors sent to other workers, per path and peer.",
                    [({"path": path, "peer": peer}, t) for (peer, path), (_, t) in sorted(peers.items())]),
            counter("tensorgrid_transport_received_bytes_total", "Tensor bytes received from other workers, per path.",
                    [({"path": p}, transport[f"bytes_received_{p}"]) for p in paths]),
            counter("tensorgrid_transport_received_tensors_total", "Tensors received from other workers, per path.",
                    [({"path": p}, transport.get(f"tensors_received_{p}", 0)) for p in paths]),
        ]
