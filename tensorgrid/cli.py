"""The `tensorgrid` command: master, worker, local, status, health, dashboard and demo (SPEC section 6).

Every command has --help, exits non-zero with a one-line reason on bad
arguments or an unreachable master (no traceback), and stops cleanly on
SIGINT and SIGTERM; SIGUSR1 prints every thread's stack to stderr. Logs go
to stderr, quiet by default (--log-level); each line names the process and,
inside a request, the request id.
"""

import argparse
import faulthandler
import json
import logging
import os
import signal
import sys
import threading

from tensorgrid import security
from tensorgrid.worker import file_access

DEFAULT_MASTER = "127.0.0.1:7070"
# Where a container or a pod mounts its secret, --token-file's default comes from here.
TOKEN_FILE_ENV = "TENSORGRID_TOKEN_FILE"
CLIENT_TOKEN_FILE_ENV = "TENSORGRID_CLIENT_TOKEN_FILE"
TOKEN_FILE_HELP = f"file holding the cluster's shared token (default: ${TOKEN_FILE_ENV}, else $TENSORGRID_TOKEN)"


class _OneLineError(Exception):
    """An error reported as a single line and exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = security.request_id.get()
        return True


def _setup_logging(level):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s pid=%(process)d req=%(request_id)s: %(message)s"))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger("tensorgrid")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _address(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _port(text):
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return int(text)


def _task(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a task index >= 0, got {text!r}")
    return int(text)


def _add_common(p, server=True):
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="how much to log to stderr (default: warning)")
    p.add_argument("--token-file", default=os.environ.get(TOKEN_FILE_ENV) or None, help=TOKEN_FILE_HELP)
    p.add_argument("--tls-ca", help="PEM certificate authority that signs the cluster's certificates")
    if server:
        p.add_argument("--tls-cert", help="PEM certificate of this server (turns on TLS, with --tls-key)")
        p.add_argument("--tls-key", help="PEM private key of --tls-cert")
        p.add_argument("--port-file", help="write {port, address, ...} as JSON to this file once listening")
    else:
        p.add_argument("--tls-cert", help="PEM client certificate, when the servers ask for one")
        p.add_argument("--tls-key", help="PEM private key of --tls-cert")


def _add_observability(p, dashboard=False):
    p.add_argument("--metrics-port", type=_port,
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (0 picks a port; default: off); "
                        "with a token, scrapers send 'Authorization: Bearer <token>'")
    if dashboard:
        p.add_argument("--dashboard-port", type=_port,
                       help="serve the web dashboard at http://HOST:PORT/ (8265 is customary; 0 picks a port; "
                            "default: off); with a token, open /?token=<token> once")
        p.add_argument("--history-dir",
                       help="keep the dashboard's last steps, errors, graphs and traces in this folder, for "
                            "`tensorgrid dashboard --from DIR` after the cluster is gone")


def build_parser():
    parser = _Parser(prog="tensorgrid", description="tensorgrid: a distributed dataflow-graph runtime.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("master", help="run the master", description="Run a tensorgrid master until Ctrl-C.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=7070, help="port to listen on; 0 picks one (default: 7070)")
    p.add_argument("--heartbeat-timeout", type=_positive(float), default=10.0,
                   help="seconds without a heartbeat before a worker is marked dead (default: 10)")
    p.add_argument("--session-gc-seconds", type=float, default=86400.0,
                   help="close a session no client call used for this long, e.g. its client was killed "
                        "(0: never; default: 86400); a live client creates it again on its next step")
    p.add_argument("--client-token-file", default=os.environ.get(CLIENT_TOKEN_FILE_ENV) or None,
                   help="file holding the clients' token, which reaches only the client RPCs (sessions, steps, "
                        f"status, reset); needs --token-file (default: ${CLIENT_TOKEN_FILE_ENV}, else "
                        f"${security.CLIENT_TOKEN_ENV}, else clients use the cluster token)")
    _add_observability(p, dashboard=True)
    _add_common(p)

    p = sub.add_parser("worker", help="run a worker", description="Run a tensorgrid worker until Ctrl-C.")
    p.add_argument("--master", type=_address, default=_default_master(),
                   help=f"the master's HOST:PORT (default: $TENSORGRID_MASTER or {DEFAULT_MASTER})")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=0, help="port to listen on; 0 picks one (default: 0)")
    p.add_argument("--advertise", type=_address, help="HOST:PORT other processes reach this worker at")
    p.add_argument("--job", default="worker", help="job name (default: worker)")
    p.add_argument("--task", type=_task, help="task index (default: the master assigns one)")
    p.add_argument("--devices", default="cpu", choices=["cpu", "gpu", "all"], help="devices to serve (default: cpu)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="run py_func payloads (cloudpickle runs arbitrary code: trusted clients only)")
    p.add_argument(file_access.FLAG, action="append", default=None, metavar="DIR",
                   help="let graphs read and write files under DIR (tg.print to a file, Dataset.cache, "
                        f"tg.io); repeatable; default: ${file_access.ENV} ({os.pathsep}-separated), else none")
    p.add_argument("--heartbeat-interval", type=_positive(float), default=1.0,
                   help="seconds between heartbeats (default: 1)")
    p.add_argument("--replicas", type=int, choices=[0, 1], default=0,
                   help="keep a replica of this task's variables on another task of its job, updated every step, "
                        "so its death loses no update (default: 0)")
    p.add_argument("--master-wait", type=float, default=10.0,
                   help="seconds to keep trying to reach the master at start (default: 10)")
    _add_observability(p)
    _add_common(p)

    p = sub.add_parser("local", help="run a master and workers on this machine",
                       description="Run a master and N workers on this machine until Ctrl-C; prints the target.")
    p.add_argument("--workers", type=_positive(int), default=2, help="number of workers (default: 2)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=7070, help="the master's port; 0 picks one (default: 7070)")
    p.add_argument("--allow-pickle", action="store_true", help="let the workers run py_func payloads")
    p.add_argument(file_access.FLAG, action="append", default=None, metavar="DIR",
                   help="let the workers' graphs read and write files under DIR; repeatable "
                        "(default: the directory this command runs in)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="how much the master and workers log into their log files (default: warning)")
    p.add_argument("--token-file", default=os.environ.get(TOKEN_FILE_ENV) or None, help=TOKEN_FILE_HELP)
    p.add_argument("--dashboard-port", type=_port, default=8265,
                   help="the master's web dashboard port; 0 picks one (default: 8265)")
    p.add_argument("--history-dir", help="keep the dashboard's history here (see tensorgrid master --help)")

    p = sub.add_parser("status", help="show the cluster's workers, devices, health and sessions",
                       description="Print what the master knows about its cluster.")
    p.add_argument("--master", type=_address, default=_default_master(),
                   help=f"the master's HOST:PORT (default: $TENSORGRID_MASTER or {DEFAULT_MASTER})")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument("--cluster-spec", action="store_true",
                   help="print the live workers as a ClusterSpec in JSON ({job: [host:port, ...]}), for "
                        "tg.train.ClusterSpec(json.loads(...)) and tg.train.Server")
    p.add_argument("--watch", nargs="?", type=_positive(float), const=2.0, metavar="SECONDS",
                   help="refresh the status in place every SECONDS (default 2) until Ctrl-C")
    p.add_argument("--stacks", action="store_true",
                   help="print the Python stack of every thread of the master and of every live worker")
    p.add_argument("--timeout", type=_positive(float), default=10.0, help="seconds to wait for the master")
    _add_common(p, server=False)

    p = sub.add_parser("dashboard", help="open a finished or crashed cluster's dashboard history",
                       description="Serve the dashboard of a cluster that is gone, from the folder its master "
                                   "kept with --history-dir: its last steps, errors, graphs and traces.")
    p.add_argument("--from", dest="history", required=True, metavar="DIR", help="the master's --history-dir")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8265, help="port to listen on; 0 picks one (default: 8265)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="how much to log to stderr (default: warning)")
    p.add_argument("--token-file", default=None, help="ask browsers for this token (default: none)")

    p = sub.add_parser("health", help="ask a master or a worker whether it serves (for probes)",
                       description="Ask one master or worker process whether it serves; exit 0 when it answers "
                                   "(a worker: and, with --ready, is registered with its master), else 1 "
                                   "with a one-line reason. For container health checks and Kubernetes probes.")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--master", type=_address,
                     help=f"a master's HOST:PORT (the default: $TENSORGRID_MASTER or {DEFAULT_MASTER})")
    who.add_argument("--worker", type=_address, help="a worker's HOST:PORT")
    p.add_argument("--ready", action="store_true", help="a worker also has to be registered with its master")
    p.add_argument("--json", action="store_true", help="print the process's answer as JSON (a worker's GetStatus)")
    p.add_argument("--timeout", type=_positive(float), default=5.0, help="seconds to wait for the answer (default: 5)")
    _add_common(p, server=False)

    p = sub.add_parser("demo", help="train the demo model on a cluster", add_help=False,
                       description="Train the demo model (SPEC section 8).")
    p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _default_master():
    target = os.environ.get("TENSORGRID_MASTER", "")
    return target[len("grpc://"):] if target.startswith("grpc://") else (target or DEFAULT_MASTER)


def _token(args):
    try:
        return security.read_token(args.token_file)
    except ValueError as e:
        raise _OneLineError(str(e)) from None


def _tls(args):
    tls = security.TlsFiles(getattr(args, "tls_cert", None), getattr(args, "tls_key", None),
                            getattr(args, "tls_ca", None))
    if bool(tls.cert) != bool(tls.key):
        raise _OneLineError("--tls-cert and --tls-key go together")
    for path in (tls.cert, tls.key, tls.ca):
        if path and not os.path.isfile(path):
            raise _OneLineError(f"no such file: {path}")
    return tls


def write_port_file(path, info):
    """Writes `info` as JSON to `path` atomically, so a reader never sees half of it."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def _stop_on_signal():
    """An event SIGINT and SIGTERM set. Installed before a server says it is ready, so a signal
    sent as soon as it is ready still stops it cleanly."""
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _wait_for(stop):
    """Blocks until `stop` is set."""
    while not stop.wait(3600):
        pass


def _exit_now(code):
    """Exits once the servers are stopped, without waiting on threads a kernel may still hold (a py_func
    sleeping, say): a server process must end when told to."""
    from tensorgrid.observability import stages
    stages.write()  # os._exit skips atexit
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_master(args):
    from tensorgrid.runtime import master_service
    file_access.restrict(())  # the master runs no kernels of a client's graph; nor may it open files for one
    try:
        client_token = security.read_token(args.client_token_file, security.CLIENT_TOKEN_ENV)
        server, port = master_service.create_server(f"{args.host}:{args.port}", token=_token(args), tls=_tls(args),
                                                    heartbeat_timeout=args.heartbeat_timeout,
                                                    client_token=client_token,
                                                    session_gc_seconds=args.session_gc_seconds)
    except (OSError, ValueError) as e:
        raise _OneLineError(str(e)) from None
    address = f"{args.host}:{port}"
    from tensorgrid.observability import endpoints
    try:
        web = endpoints.serve_master(server.master, server.grpc_server, address, args.host, args.metrics_port,
                                     args.dashboard_port, args.history_dir, _token(args), _tls(args))
    except (OSError, ValueError) as e:
        server.stop(None)
        raise _OneLineError(str(e)) from None
    server.start()
    stop = _stop_on_signal()
    if args.port_file:
        step_port = server.fast_server.port if server.fast_server is not None else 0
        write_port_file(args.port_file, {"port": port, "address": address, "step_port": step_port,
                                         "pid": os.getpid(), **web.ports()})
    print(f"tensorgrid master listening on {address} (target grpc://{address})", flush=True)
    for name in web.servers:
        print(f"tensorgrid master {name}: {web.url(name, '/metrics' if name == 'metrics' else '/')}", flush=True)
    _wait_for(stop)
    web.stop()
    server.stop(1.0).wait(3)
    _exit_now(0)


def _run_worker(args):
    from tensorgrid.framework import errors
    from tensorgrid.observability import endpoints
    from tensorgrid.worker import worker as worker_lib
    from tensorgrid.worker import worker_service
    try:
        file_access.restrict(args.allow_file_access if args.allow_file_access is not None
                             else file_access.directories_from_env())
        devices = worker_lib.local_devices(args.devices)
        proc = worker_service.WorkerProcess(
            args.master, host=args.host, port=args.port, advertise=args.advertise, job=args.job, task=args.task,
            devices=devices, allow_pickle=args.allow_pickle, token=_token(args), tls=_tls(args),
            heartbeat_interval=args.heartbeat_interval, replicas=args.replicas)
        web = endpoints.serve_worker(proc, args.host, args.metrics_port, _token(args), _tls(args))
    except (OSError, ValueError) as e:
        raise _OneLineError(str(e)) from None
    try:
        proc.start(wait_s=args.master_wait)
    except errors.OpError as e:
        web.stop()
        raise _OneLineError(e.message) from None
    name = proc.worker.task_name
    stop = _stop_on_signal()
    if args.port_file:
        write_port_file(args.port_file, {"port": proc.port, "address": proc.address, "data_address": proc.data_address,
                                         "step_address": proc.link.step_address, "job": proc.worker.job,
                                         "task": proc.worker.task, "pid": os.getpid(),
                                         "incarnation": proc.worker.incarnation, **web.ports()})
    print(f"tensorgrid worker {name} listening on {proc.address} (data {proc.data_address}), "
          f"master {args.master}", flush=True)
    _wait_for(stop)
    web.stop()
    proc.stop()
    _exit_now(0)


def _run_local(args):
    from tensorgrid.runtime.cluster import ClusterError, LocalCluster
    try:
        token = _token(args)
        extra = ["--allow-pickle"] if args.allow_pickle else []
        for d in args.allow_file_access or [os.getcwd()]:
            extra += [file_access.FLAG, os.path.abspath(d)]
        dashboard = ["--dashboard-port", str(args.dashboard_port)]
        if args.history_dir:
            dashboard += ["--history-dir", os.path.abspath(args.history_dir)]
        cluster = LocalCluster(num_workers=args.workers, token=token, host=args.host, master_port=args.port,
                               extra_worker_args=extra, log_level=args.log_level, extra_master_args=dashboard)
    except ClusterError as e:
        raise _OneLineError(str(e)) from None
    with cluster:
        stop = _stop_on_signal()
        print(f"tensorgrid local cluster: master and {args.workers} workers; target {cluster.target}", flush=True)
        print(f"dashboard: {cluster.dashboard_url}", flush=True)
        print(f"logs in {cluster.log_dir}; press Ctrl-C to stop", flush=True)
        _wait_for(stop)
    return 0


def _run_status(args):
    from tensorgrid.client import remote
    from tensorgrid.framework import errors
    from tensorgrid.proto import config_pb2
    tls = _tls(args)
    config = config_pb2.ConfigProto(token=_token(args) or "")
    if args.stacks:
        from tensorgrid.observability import service
        try:
            stacks = service.cluster_stacks(args.master, _token(args), tls if tls.enabled else None, args.timeout)
        except errors.OpError as e:
            raise _OneLineError(e.message.splitlines()[0]) from None
        print(service.format_stacks(stacks))
        return 0
    if args.watch:
        from tensorgrid.observability import watch
        return watch.watch(lambda: remote.cluster_status(f"grpc://{args.master}", config, timeout=args.timeout,
                                                         tls=tls if tls.enabled else None),
                           lambda status: format_status(status, args.master), args.watch, _stop_on_signal())
    try:
        status = remote.cluster_status(f"grpc://{args.master}", config, timeout=args.timeout,
                                       tls=tls if tls.enabled else None)
    except errors.OpError as e:
        raise _OneLineError(e.message.splitlines()[0]) from None
    if args.cluster_spec:
        print(json.dumps(cluster_spec_of(status)))
        return 0
    if args.json:
        from google.protobuf import json_format
        print(json_format.MessageToJson(status, preserving_proto_field_name=True,
                                        always_print_fields_with_no_presence=True))
        return 0
    print(format_status(status, args.master))
    return 0


def cluster_spec_of(status):
    """{job: [address by task]} (a {task: address} dict where indices have gaps) of the live workers."""
    from tensorgrid.client.train.cluster_spec import ClusterSpec
    jobs = {}
    for w in status.worker:
        if w.health == "alive":
            jobs.setdefault(w.job, {})[w.task] = w.address
    return ClusterSpec(jobs).as_dict()


def format_status(status, master):
    """A human-readable table of a ClusterStatusResponse."""
    alive = sum(w.health == "alive" for w in status.worker)
    lines = [f"master {master}: {_count(len(status.worker), 'worker')} ({alive} alive), "
             f"{_count(len(status.session), 'session')}, {_count(status.active_steps, 'step')} running"]
    rows = [("WORKER", "ADDRESS", "HEALTH", "HEARTBEAT", "DEVICES", "STEPS", "RENDEZVOUS", "GRAPHS", "VARIABLES")]
    for w in status.worker:
        devices = ",".join(d.name.rsplit("/device:", 1)[-1] for d in w.device)
        rows.append((f"/job:{w.job}/task:{w.task}", w.address, w.health if w.reachable or w.health != "alive"
                     else "alive (unreachable)", f"{w.last_heartbeat_age_s:.1f}s ago", devices,
                     str(w.active_steps), str(w.rendezvous_entries), str(w.registered_graphs), str(w.resources)))
    lines += _table(rows)
    lines += [f"/job:{w.job}/task:{w.task} is dead: {w.dead_reason}" for w in status.worker if w.dead_reason]
    if status.session:
        rows = [("SESSION", "GRAPH VERSION", "NODES", "PLANS", "STEPS")]
        for s in status.session:
            rows.append((s.session_handle, str(s.graph_version), str(s.graph_nodes), str(s.cached_plans),
                         str(s.steps_run)))
        lines += [""] + _table(rows)
    return "\n".join(lines)


def _count(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _run_health(args):
    import grpc
    from google.protobuf import json_format
    from tensorgrid.proto import master_pb2, master_pb2_grpc, worker_pb2, worker_pb2_grpc
    tls = _tls(args)
    role, address = ("worker", args.worker) if args.worker else ("master", args.master or _default_master())
    channel = security.open_channel(address, tls if tls.enabled else security.TlsFiles.from_env())
    metadata = security.call_metadata(_token(args))
    try:
        if role == "worker":
            reply = worker_pb2_grpc.WorkerServiceStub(channel).GetStatus(
                worker_pb2.GetStatusRequest(), timeout=args.timeout, metadata=metadata)
        else:
            reply = master_pb2_grpc.MasterServiceStub(channel).ListDevices(
                master_pb2.ListDevicesRequest(), timeout=args.timeout, metadata=metadata)
    except grpc.RpcError as e:
        error = security.error_from_rpc(e, f"cannot reach the {role} at {address}")
        raise _OneLineError(error.message.splitlines()[0]) from None
    finally:
        channel.close()
    registered = role == "master" or reply.task >= 0
    if args.ready and not registered:
        raise _OneLineError(f"the worker at {address} serves but is not registered with a master")
    if args.json:
        print(json_format.MessageToJson(reply, preserving_proto_field_name=True,
                                        always_print_fields_with_no_presence=True))
    elif role == "master":
        print(f"master {address} serves: {_count(len(reply.device), 'device')}")
    else:
        name = f"/job:{reply.job}/task:{reply.task}" if registered else "(not registered)"
        print(f"worker {name} at {address} serves: {_count(reply.active_steps, 'step')} running, "
              f"{_count(reply.registered_graphs, 'graph')} registered")
    return 0


def _run_dashboard(args):
    from tensorgrid.dashboard import history, server
    from tensorgrid.framework import errors
    from tensorgrid.observability import http_server
    try:
        view = history.RecordedView(args.history)
        web = http_server.HttpServer(args.host, args.port, server.routes(view), _token(args), name="dashboard")
    except errors.OpError as e:
        raise _OneLineError(e.message) from None
    except OSError as e:
        raise _OneLineError(str(e)) from None
    stop = _stop_on_signal()
    web.start()
    token = f"?token={_token(args)}" if args.token_file else ""
    print(f"dashboard of {args.history} (recorded, not live): {web.url()}{token}; press Ctrl-C to stop", flush=True)
    _wait_for(stop)
    web.stop()
    return 0


def _run_demo(args):
    from tensorgrid import demo
    return demo.main(args.args)


COMMANDS = {"master": _run_master, "worker": _run_worker, "local": _run_local, "status": _run_status,
            "health": _run_health, "dashboard": _run_dashboard, "demo": _run_demo}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "demo":
        # argparse's REMAINDER drops leading options (--out ...), so the demo parses its own.
        return _run_demo(argparse.Namespace(args=argv[1:]))
    args = build_parser().parse_args(argv)
    if args.command != "demo":
        _setup_logging(args.log_level)
        # `kill -USR1 <pid>` prints every thread's stack to stderr: how to see where a process waits.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        return COMMANDS[args.command](args) or 0
    except _OneLineError as e:
        sys.stderr.write(f"tensorgrid {args.command}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
