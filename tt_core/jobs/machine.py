"""What the benchmarks compare against: the device's own matrix-multiply speed and the
peak memory a measured run took."""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

import torch

MATMUL_SIZE = 1024  # square products: large enough to run at the device's matrix speed


def sync(dev: torch.device) -> None:
    """Wait for the device's queued work (a timing ends when the work is done)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def matmul_gflops(dev: torch.device, dtype: torch.dtype, seconds: float = 0.5) -> float:
    """The median GFLOP/s of MATMUL_SIZE^3 matrix products in `dtype` on `dev`, timed
    for about `seconds` after a warm-up: the "machine" of a benchmark's % column."""
    n = MATMUL_SIZE
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dev, dtype)
    b = torch.randn(n, n, generator=g).to(dev, dtype)
    for _ in range(2):
        a @ b
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < 3 or time.perf_counter() < end:
        sync(dev)
        t0 = time.perf_counter()
        a @ b
        sync(dev)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


class PeakMemory:
    """Peak memory between `reset()` and `read()`: the most bytes allocated on a CUDA
    device; on the CPU the process's peak resident set (Linux: VmHWM, which writing 5 to
    /proc/self/clear_refs resets; elsewhere the peak since the process started)."""

    def __init__(self, dev: torch.device) -> None:
        self.dev = dev

    def reset(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.dev)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def read(self) -> int:
        if self.dev.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.dev))
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
