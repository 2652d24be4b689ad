"""What `tensorgrid master` and `tensorgrid worker` serve besides their RPCs: ObservabilityService on
their gRPC server, Prometheus text at /metrics on --metrics-port, and on a master the dashboard on
--dashboard-port (tensorgrid/dashboard/), each off unless asked for."""

from tensorgrid import metrics
from tensorgrid.observability import http_server, service


def master_families(master):
    """The master's scrape-time families: workers by health, heartbeat ages, sessions, steps, plans."""
    ages = master.worker_ages()
    records = [r for r, _ in ages]
    sessions = master.sessions()
    health = {"alive": 0, "dead": 0}
    for rec in records:
        health["alive" if rec.alive else "dead"] += 1
    gauge = metrics.gauge_family
    return [
        gauge("tensorgrid_workers", "Workers the master knows, by health.", [({"health": h}, n) for h, n in health.items()]),
        gauge("tensorgrid_worker_heartbeat_age_seconds", "Seconds since each worker's last heartbeat.",
              [({"worker": r.name, "address": r.address}, age) for r, age in ages]),
        gauge("tensorgrid_worker_up", "1 while the master holds the worker alive, 0 once it marked it dead.",
              [({"worker": r.name, "address": r.address}, int(r.alive)) for r in records]),
        gauge("tensorgrid_sessions", "Open sessions.", [({}, len(sessions))]),
        gauge("tensorgrid_master_registered_plans", "Step signatures planned and registered on the workers.",
              [({}, sum(plans for _, _, plans, _ in sessions))]),
        gauge("tensorgrid_steps_running", "Steps the master is running now.", [({}, len(master.observer.running()))]),
    ]


def metrics_routes(registry):
    def scrape(query):
        return http_server.Response(registry.render().encode("utf-8"), metrics.CONTENT_TYPE)
    return {"/metrics": scrape}


class Endpoints:
    """The HTTP servers (and dashboard) one process started; stop() ends them."""

    def __init__(self):
        self.servers = {}
        self._closers = []

    def url(self, name, path="/"):
        server = self.servers.get(name)
        return server.url(path) if server is not None else ""

    def ports(self):
        return {f"{name}_port": s.port for name, s in self.servers.items()}

    def stop(self):
        for server in self.servers.values():
            server.stop()
        for close in self._closers:
            close()


def _serve(endpoints, name, host, port, routes, token, tls):
    """Serves `routes` on port (merged into the server already there when two flags name one port)."""
    for other in endpoints.servers.values():
        if port and other.port == port:
            other.routes.update(routes)
            endpoints.servers[name] = other
            return
    endpoints.servers[name] = http_server.HttpServer(host, port, routes, token, tls, name).start()


def serve_master(master, grpc_server, address, host="127.0.0.1", metrics_port=None, dashboard_port=None,
                 history_dir=None, token=None, tls=None):
    """Adds ObservabilityService to the master's (not yet started) gRPC server and starts the HTTP
    servers asked for; returns their Endpoints."""
    servicer = service.MasterObservability(master, address, token, tls)
    grpc_server.add_generic_rpc_handlers((service.handlers(servicer),))
    endpoints = Endpoints()
    endpoints._closers.append(servicer.close)
    registry = master.observer.registry
    registry.add_collector(lambda: master_families(master))
    registry.add_collector(metrics.process_families)
    try:
        if metrics_port is not None:
            _serve(endpoints, "metrics", host, metrics_port, metrics_routes(registry), token, tls)
        if dashboard_port is not None:
            from tensorgrid.dashboard import live, server
            view = live.LiveView(master, address, servicer.peers, history_dir)
            endpoints._closers.insert(0, view.close)
            _serve(endpoints, "dashboard", host, dashboard_port, server.routes(view), token, tls)
            view.start()
    except BaseException:
        endpoints.stop()
        raise
    return endpoints


def serve_worker(proc, host="127.0.0.1", metrics_port=None, token=None, tls=None):
    """Adds ObservabilityService to a WorkerProcess's (not yet started) gRPC server, and /metrics on
    metrics_port when given; returns the Endpoints."""
    proc.server.add_generic_rpc_handlers((service.handlers(service.WorkerObservability(proc.worker, proc.address)),))
    endpoints = Endpoints()
    if metrics_port is not None:
        _serve(endpoints, "metrics", host, metrics_port, metrics_routes(proc.worker.metrics.registry), token, tls)
    return endpoints
