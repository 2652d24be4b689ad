"""Step tracing: turns the executor's per-node timings into TF-style StepStats,
and StepStats into Chrome trace JSON (tg.profiler.chrome_trace)."""

import json

import numpy as np


def step_stats(traces, partitions=None):
    """{device: [NodeStats]} -> a StepStats proto with one DeviceStepStats per device."""
    from tensorgrid.proto import config_pb2
    stats = config_pb2.StepStats()
    for dev, records in traces.items():
        fill_device_stats(stats.dev_stats.add(), dev, records)
    return stats


def fill_device_stats(dev_stats, device, records):
    from tensorgrid.framework import dtypes
    dev_stats.device = device
    for r in records:
        ns = dev_stats.node_stats.add()
        ns.node_name = r.node_name
        ns.timeline_label = f"{r.node_name} = {r.op}()"
        ns.all_start_micros = r.start_us
        ns.op_start_rel_micros = 0
        ns.op_end_rel_micros = r.end_us - r.start_us
        ns.all_end_rel_micros = r.end_us - r.start_us
        for slot, (nbytes, shape, dt) in enumerate(zip(r.output_bytes, r.output_shapes, r.output_dtypes)):
            out = ns.output.add()
            out.slot = slot
            desc = out.tensor_description
            try:
                desc.dtype = dtypes.as_dtype(np.dtype(dt)).as_datatype_enum
            except TypeError:
                pass
            for d in shape:
                desc.shape.dim.add().size = int(d)
            desc.allocation_description.requested_bytes = nbytes
            desc.allocation_description.allocated_bytes = nbytes
    return dev_stats


def chrome_trace(run_metadata_or_stats):
    """Chrome trace JSON (a string) of a traced step: one process per device, all on one timeline."""
    stats = getattr(run_metadata_or_stats, "step_stats", run_metadata_or_stats)
    events = []
    for pid, dev in enumerate(stats.dev_stats):
        events.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": dev.device}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": pid}})
        for ns in dev.node_stats:
            op = ns.timeline_label.split("= ", 1)[-1].rstrip("()") if ns.timeline_label else ""
            args = {"name": ns.node_name, "op": op}
            if ns.output:
                args["output_bytes"] = [o.tensor_description.allocation_description.requested_bytes for o in ns.output]
            events.append({
                "name": op or ns.node_name, "cat": "Op", "ph": "X", "pid": pid, "tid": 0,
                "ts": ns.all_start_micros, "dur": max(ns.all_end_rel_micros, 0), "args": args,
            })
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ms"})
