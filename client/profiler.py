"""tg.profiler: Chrome trace JSON of a traced step (open it in Perfetto or chrome://tracing)."""

from tensorgrid.runtime.tracing import chrome_trace  # noqa: F401
