"""Timestamps of a step's stages in every process, for benchmarks/w1_stages.py; off unless asked for.

With TENSORGRID_STAGES set to a directory, `mark(name)` appends
(CLOCK_MONOTONIC nanoseconds, name) to this process's list, and the list is
written to <directory>/<pid>.stages at exit (`write`; one "ns name" line each).
CLOCK_MONOTONIC is one clock for every process of a host, so the client's,
the master's and the workers' marks line up. Call sites test `ON` first, so
with the variable unset a mark costs one attribute read. Meant for benchmark
runs: the list keeps every mark until the process ends.
"""

import atexit
import os
import time

ENV = "TENSORGRID_STAGES"
DIRECTORY = os.environ.get(ENV) or None
ON = DIRECTORY is not None
_marks = []
_now = time.monotonic_ns


def mark(name):
    """Records that this process reached `name` now."""
    _marks.append((_now(), name))


def write():
    """Writes this process's marks (a server calls it before os._exit, which skips atexit); a no-op when off."""
    if not ON:
        return
    with open(os.path.join(DIRECTORY, f"{os.getpid()}.stages"), "w") as f:
        f.writelines(f"{t} {name}\n" for t, name in _marks)


if ON:
    atexit.register(write)
