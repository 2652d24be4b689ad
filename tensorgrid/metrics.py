"""Prometheus metrics: counters, gauges and histograms, and their text exposition format (version 0.0.4).

Written here rather than taken from prometheus_client because the part a
server needs is small (three kinds of metric, labels, one text format) and
the run-time dependencies stay grpcio, protobuf, numpy and cloudpickle.
Every process keeps one `Registry`; the step path only increments (one lock
per metric family, well under a microsecond), and what already has a count
elsewhere (the data plane's bytes, a worker's variables, heartbeat ages) is
read at scrape time by collectors instead of being counted twice.

Names follow Prometheus's conventions: `tensorgrid_` prefix, `_total` for
counters, base units in the name (`_seconds`, `_bytes`); the process metrics
use the standard `process_` names every exporter uses.
"""

import bisect
import dataclasses
import math
import os
import threading
import time

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Step and RunGraph latencies: 100 us (a warm local step) to 60 s (a long training step).
LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)


def _process_start_time():
    """When this process started (seconds since the epoch): from /proc where there is one, else now."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


_START_TIME = _process_start_time()


@dataclasses.dataclass
class Family:
    """One metric family as rendered: name, kind ("counter", "gauge", "histogram"), help and samples
    [(name suffix, {label: value}, number)]."""

    name: str
    kind: str
    help: str
    samples: list


class _Metric:
    kind = ""

    def __init__(self, name, help, labelnames=()):
        _check_name(name)
        if self.kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter {name!r}: counter names end in _total")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._children = {}
        self._lock = threading.Lock()
        if not self.labelnames:
            self._default = self._children[()] = self._new_child()

    def labels(self, *values):
        """The child for these label values (made on first use)."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        child = self._children.get(values)
        if child is None:
            with self._lock:
                child = self._children.setdefault(tuple(str(v) for v in values), self._new_child())
        return child

    def _labelled(self):
        with self._lock:
            return [(dict(zip(self.labelnames, k)), c) for k, c in self._children.items()]


class _Value:
    __slots__ = ("value", "_lock")

    def __init__(self, lock):
        self.value = 0.0
        self._lock = lock

    def inc(self, amount=1.0):
        with self._lock:
            self.value += amount

    def set(self, value):
        self.value = value


class Counter(_Metric):
    """A count that only goes up: `c.inc()`, or `c.labels("a").inc(n)`."""

    kind = "counter"

    def _new_child(self):
        return _Value(self._lock)

    def inc(self, amount=1.0):
        self._default.inc(amount)

    @property
    def value(self):
        """The unlabelled metric's value."""
        return self._default.value

    def family(self):
        return Family(self.name, self.kind, self.help, [("", labels, c.value) for labels, c in self._labelled()])


class Gauge(Counter):
    """A value that goes up and down: `g.set(v)`, `g.inc(-1)`."""

    kind = "gauge"

    def set(self, value):
        self._default.set(value)


class _Buckets:
    __slots__ = ("counts", "sum", "_bounds", "_lock")

    def __init__(self, bounds, lock):
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self._lock = lock

    def observe(self, value):
        i = bisect.bisect_left(self._bounds, value)
        with self._lock:
            self.counts[i] += 1
            self.sum += value


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count (`h.observe(seconds)`)."""

    kind = "histogram"

    def __init__(self, name, help, labelnames=(), buckets=LATENCY_BUCKETS):
        self.buckets = tuple(sorted(buckets))
        super().__init__(name, help, labelnames)

    def _new_child(self):
        return _Buckets(self.buckets, self._lock)

    def observe(self, value):
        self._default.observe(value)

    def family(self):
        samples = []
        with self._lock:
            children = [(dict(zip(self.labelnames, k)), list(c.counts), c.sum) for k, c in self._children.items()]
        for labels, counts, total in children:
            running = 0
            for bound, n in zip(self.buckets + (math.inf,), counts):
                running += n
                samples.append(("_bucket", {**labels, "le": _number(bound)}, running))
            samples.append(("_sum", labels, total))
            samples.append(("_count", labels, running))
        return Family(self.name, self.kind, self.help, samples)


class Registry:
    """The metrics of one process, and the collectors that read the others at scrape time."""

    def __init__(self):
        self._metrics = []
        self._collectors = []
        self._lock = threading.Lock()

    def _add(self, metric):
        with self._lock:
            if any(m.name == metric.name for m in self._metrics):
                raise ValueError(f"metric {metric.name!r} is registered twice")
            self._metrics.append(metric)
        return metric

    def counter(self, name, help, labelnames=()):
        return self._add(Counter(name, help, labelnames))

    def gauge(self, name, help, labelnames=()):
        return self._add(Gauge(name, help, labelnames))

    def histogram(self, name, help, labelnames=(), buckets=LATENCY_BUCKETS):
        return self._add(Histogram(name, help, labelnames, buckets))

    def add_collector(self, collect):
        """`collect()` returns [Family] at each scrape (values kept elsewhere: read, not counted twice)."""
        with self._lock:
            self._collectors.append(collect)

    def families(self):
        with self._lock:
            metrics, collectors = list(self._metrics), list(self._collectors)
        out = [m.family() for m in metrics]
        for collect in collectors:
            out.extend(collect())
        return out

    def render(self):
        """Every family in Prometheus's text exposition format."""
        lines = []
        for fam in self.families():
            lines.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
            lines.append(f"# TYPE {fam.name} {fam.kind}")
            for suffix, labels, value in fam.samples:
                lines.append(f"{fam.name}{suffix}{_labels(labels)} {_number(value)}")
        return "\n".join(lines) + "\n"


def gauge_family(name, help, samples):
    """A gauge Family from [(labels dict, value)]."""
    return Family(name, "gauge", help, [("", labels, value) for labels, value in samples])


def counter_family(name, help, samples):
    """A counter Family from [(labels dict, value)] (a count kept elsewhere, read at scrape time)."""
    return Family(name, "counter", help, [("", labels, value) for labels, value in samples])


@dataclasses.dataclass(frozen=True)
class ProcessUsage:
    """This process's resource use right now."""

    pid: int
    cpu_seconds: float
    rss_bytes: int
    virtual_bytes: int
    threads: int
    open_fds: int
    start_time: float


def process_usage():
    """CPU seconds (user + system), resident and virtual memory, threads and open files of this process."""
    t = os.times()
    rss = virtual = 0
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            size, resident = (int(v) for v in f.read().split()[:2])
        page = os.sysconf("SC_PAGE_SIZE")
        rss, virtual = resident * page, size * page
    except (OSError, ValueError):
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, where /proc is missing
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = 0
    return ProcessUsage(os.getpid(), t.user + t.system, rss, virtual, threading.active_count(), fds, _START_TIME)


def process_families():
    """The standard process_* families (what every Prometheus exporter offers)."""
    u = process_usage()
    return [
        counter_family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                       [({}, u.cpu_seconds)]),
        gauge_family("process_resident_memory_bytes", "Resident memory size in bytes.", [({}, u.rss_bytes)]),
        gauge_family("process_virtual_memory_bytes", "Virtual memory size in bytes.", [({}, u.virtual_bytes)]),
        gauge_family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
                     [({}, u.start_time)]),
        gauge_family("process_open_fds", "Number of open file descriptors.", [({}, u.open_fds)]),
        gauge_family("tensorgrid_process_threads", "Python threads alive in the process.", [({}, u.threads)]),
    ]


def _check_name(name):
    if not name or not (name[0].isalpha() or name[0] in "_:") or \
            not all(c.isalnum() or c in "_:" for c in name) or not name.isascii():
        raise ValueError(f"bad metric name {name!r}")


def _number(value):
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    if float(value).is_integer() and abs(value) < 1 << 53:
        return str(int(value))
    return repr(float(value))


def _escape_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels):
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
    return "{" + body + "}"


def _escape_label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
