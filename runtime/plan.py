"""A step plan: prune, place, rewrite in-graph all-reduces, partition, (optionally) fuse elementwise
chains and rank the sends (partition.prioritize_sends), the same stages for the in-process session and
for the cluster master. Pure: graph and policy in, partitions out."""

import dataclasses

from tensorgrid.runtime import partition as partition_lib
from tensorgrid.runtime import fusion, in_graph_collectives, placement, prune
from tensorgrid.runtime.ir import split_input


@dataclasses.dataclass
class StepPlan:
    """The partitions a step runs and where its feeds and fetches live."""

    partitions: dict            # device -> GraphIR
    feed_devices: dict          # fed tensor name -> devices whose partitions read it
    fetch_devices: dict         # fetched tensor name -> device whose partition produces it
    placed: object              # the placed, unpartitioned GraphIR

    def __repr__(self):
        sizes = {d: len(g) for d, g in self.partitions.items()}
        return f"StepPlan(partitions={sizes}, feeds={sorted(self.feed_devices)}, fetches={sorted(self.fetch_devices)})"


def plan_step(graph, feeds, fetches, targets, devices, default_device=None, allow_soft_placement=False,
              known_ops=None, fuse=False):
    """Prunes `graph` to the step, places it on `devices` and partitions it per device; with `fuse`,
    each partition's elementwise chains become one node each (runtime/fusion.py)."""
    pruned = prune.prune(graph, feeds, fetches, targets)
    pruned.validate(known_ops)
    placed = placement.place(pruned, devices, default_device, allow_soft_placement)
    placed = in_graph_collectives.rewrite(placed)   # all-reduces this step holds every member of
    parts = partition_lib.partition(placed)
    if fuse:
        parts = {dev: fusion.fuse_elementwise(part) for dev, part in parts.items()}
    parts = partition_lib.prioritize_sends(parts)
    feed_devices, fetch_devices = {}, {}
    for dev, part in parts.items():
        for n in part:
            if n.op == "_Feed":
                feed_devices.setdefault(n.attrs["key"], []).append(dev)
            elif n.op == "_Fetch":
                fetch_devices[n.attrs["key"]] = dev
    return StepPlan(parts, feed_devices, fetch_devices, placed)


def tensor_name(ref):
    name, idx = split_input(ref)
    return f"{name}:{idx}"
