"""ObservabilityService (proto/observability.proto): every thread's stack and a process's telemetry,
served by masters and workers on their gRPC server, behind the cluster's token like every RPC.

A master answers GetStacks(cluster=True) with its own stacks and those of
every live worker, asking each one itself (`PeerChannels`), so
`tensorgrid status --stacks` needs to reach only the master.
"""

import os
import sys
import threading
import time
import traceback

import grpc

from tensorgrid import metrics, security
from tensorgrid.proto import observability_pb2 as pb
from tensorgrid.proto import observability_pb2_grpc

PEER_TIMEOUT_S = 5.0
SERVICE = "ObservabilityService"


def process_stacks(process):
    """A ProcessStacks of every thread of this process, the thread asking last."""
    threads = {t.ident: t for t in threading.enumerate()}
    out = pb.ProcessStacks(process=process, pid=os.getpid())
    me = threading.get_ident()
    frames = sorted(sys._current_frames().items(), key=lambda kv: (kv[0] == me, getattr(threads.get(kv[0]), "name", "")))
    for ident, frame in frames:
        t = threads.get(ident)
        out.thread.add(name=t.name if t is not None else f"thread {ident}", ident=ident,
                       daemon=bool(t is not None and t.daemon), stack="".join(traceback.format_stack(frame)))
    return out


def telemetry(worker=None):
    """This process's GetTelemetryResponse; with `worker`, its variables, steps and traffic too."""
    from tensorgrid.observability import worker_metrics
    usage = metrics.process_usage()
    response = pb.GetTelemetryResponse(pid=usage.pid, cpu_seconds=usage.cpu_seconds, rss_bytes=usage.rss_bytes,
                                       uptime_s=time.time() - usage.start_time, threads=usage.threads)
    if worker is None:
        return response
    status = worker.status()
    variables = worker_metrics.variable_usage(worker).values()
    response.variables = sum(n for n, _ in variables)
    response.variable_bytes = sum(b for _, b in variables)
    response.registered_graphs = status["registered_graphs"]
    response.active_steps = status["active_steps"]
    response.run_graphs = int(worker.metrics.run_graphs.value)
    for key, value in status["transport"].items():
        if key.startswith("bytes_received_"):
            response.bytes_received[key[len("bytes_received_"):]] = int(value)
    if worker.plane is not None:
        for (peer, path), (nbytes, tensors) in sorted(worker.plane.peer_stats().items()):
            response.peer.add(peer=peer, path=path, bytes_sent=nbytes, tensors_sent=tensors)
    return response


class PeerChannels:
    """Channels from a master to its workers' ObservabilityService, one per address, kept open."""

    def __init__(self, token=None, tls=None):
        self._metadata = security.call_metadata(token)
        self._tls = tls
        self._stubs = {}
        self._lock = threading.Lock()

    def _stub(self, address):
        with self._lock:
            entry = self._stubs.get(address)
            if entry is None:
                channel = security.open_channel(address, self._tls)
                entry = self._stubs[address] = (channel, observability_pb2_grpc.ObservabilityServiceStub(channel))
            return entry[1]

    def call_all(self, addresses, method, request, timeout=PEER_TIMEOUT_S):
        """{address: response or the OpError it failed with}, every address asked at once."""
        futures = {a: getattr(self._stub(a), method).future(request, timeout=timeout, metadata=self._metadata)
                   for a in addresses}
        out = {}
        for address, fut in futures.items():
            try:
                out[address] = fut.result()
            except grpc.RpcError as e:
                out[address] = security.error_from_rpc(e, f"cannot reach {address}")
        return out

    def close(self):
        with self._lock:
            for channel, _ in self._stubs.values():
                channel.close()
            self._stubs.clear()


class MasterObservability:
    """The master's ObservabilityService."""

    def __init__(self, master, address, token=None, tls=None):
        self.master = master
        self.address = address
        self.peers = PeerChannels(token, tls)

    def GetStacks(self, request):
        response = pb.GetStacksResponse()
        response.process.append(process_stacks(f"master {self.address}"))
        if request.cluster:
            records = sorted((r for r in self.master.workers() if r.alive), key=lambda r: r.key)
            answers = self.peers.call_all([r.address for r in records], "GetStacks", pb.GetStacksRequest())
            for rec in records:
                answer = answers[rec.address]
                if isinstance(answer, Exception):
                    response.process.add(process=f"{rec.name} at {rec.address}", error=answer.message)
                else:
                    response.process.extend(answer.process)
        return response

    def GetTelemetry(self, request):
        return telemetry()

    def close(self):
        self.peers.close()


class WorkerObservability:
    """A worker's ObservabilityService."""

    def __init__(self, worker, address):
        self.worker = worker
        self.address = address

    def GetStacks(self, request):
        return pb.GetStacksResponse(process=[process_stacks(f"{self.worker.task_name} at {self.address}")])

    def GetTelemetry(self, request):
        return telemetry(self.worker)


def handlers(servicer):
    """The generic gRPC handler serving `servicer` as ObservabilityService."""
    return security.service_handlers(pb, SERVICE, servicer)


def cluster_stacks(master_address, token=None, tls=None, timeout=10.0):
    """The stacks of the master at host:port and of every live worker (GetStacksResponse)."""
    channel = security.open_channel(master_address, tls)
    try:
        stub = observability_pb2_grpc.ObservabilityServiceStub(channel)
        return stub.GetStacks(pb.GetStacksRequest(cluster=True), timeout=timeout,
                              metadata=security.call_metadata(token))
    except grpc.RpcError as e:
        raise security.error_from_rpc(e, f"cannot reach the master at {master_address}") from None
    finally:
        channel.close()


def format_stacks(response):
    """The stacks as a person reads them: each process, then each thread with its stack."""
    lines = []
    for proc in response.process:
        if proc.error:
            lines += [f"==== {proc.process}: no stacks: {proc.error}", ""]
            continue
        lines.append(f"==== {proc.process} (pid {proc.pid}): {len(proc.thread)} threads")
        for t in proc.thread:
            lines.append(f"--- thread {t.name!r} (ident {t.ident}{', daemon' if t.daemon else ''})")
            lines.append(t.stack.rstrip("\n"))
        lines.append("")
    return "\n".join(lines)
