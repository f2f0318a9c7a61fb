"""The peak resident memory of this process, as the run report and the benchmarks print it."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_memory_bytes() -> int:
    """The most memory this process has held resident, DuckDB's own allocations included.

    Read from ``VmHWM`` in ``/proc/self/status`` where there is one (Linux), not from ``ru_maxrss``:
    Linux keeps ``ru_maxrss`` across ``exec``, so a process started from a bigger one (a benchmark
    that generated its city first, a worker) reported its parent's peak as its own.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
