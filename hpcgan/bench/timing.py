"""Wall-clock timing of repeated steps, on the CPU or a CUDA device (the benchmark scripts share it)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def timed_steps(step: Callable[[], None], n: int, device: torch.device) -> float:
    """Seconds that ``n`` calls of ``step`` take; on CUDA the queue is drained before and after, so the
    time covers the kernels, not just their launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0
