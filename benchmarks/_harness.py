"""Timing helpers shared by the benchmark scripts: medians in one process, and BENCHMARKS.md sections."""

from __future__ import annotations

import ctypes
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _steady_allocator() -> str:
    """Keep freed memory in the process (glibc's default returns every large block to the OS, so
    each fresh tensor page-faults again and timings swing by +-50% with the order of calls).
    Applies to every contender alike; returns a note for the benchmark tables."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 31)
        return "glibc mallopt(M_MMAP_THRESHOLD=1 GiB, M_TRIM_THRESHOLD=2 GiB)" if ok else "default allocator"
    except OSError:
        return "default allocator"


ALLOCATOR = _steady_allocator()
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def median_seconds(fns: dict[str, Callable[[], object]], *, repeats: int = 15, warmup: int = 2) -> dict[str, float]:
    """Median wall time of each ``fn()``, measured in interleaved rounds (one call of each per round),
    so that drift in machine state (allocator, caches, other load) hits every contender alike.

    The order is shuffled every round (fixed seed): a call pays for what the previous one left
    behind (e.g. writing back a 32 MB gradient still dirty in the cache, ~0.5 ms here), so a fixed
    order would always charge the same contender for the same neighbour."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            fn = fns[name]
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def forward_backward(loss_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    """A closure that runs loss forward + backward on a fresh leaf copy of ``x``."""

    def run() -> None:
        leaf = x.detach().requires_grad_(True)
        loss_fn(leaf).backward()

    return run


def saved_bytes(loss_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    """Bytes the autograd graph keeps for backward (tensors packed by saved-tensor hooks, deduplicated)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    leaf = x.detach().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(leaf)
    loss.backward()
    return sum(seen.values())


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), or the platform's processor string."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """Date, machine and software of a measurement, for the line under each section's heading."""
    return (
        f"{time.strftime('%Y-%m-%d')}; {cpu_name()}, {os.cpu_count()} cores, {platform.machine()}; "
        f"Python {sys.version.split()[0]}, torch {torch.__version__}, {torch.get_num_threads()} threads, {ALLOCATOR}"
    )


def write_section(name: str, body: str) -> None:
    """Replace the ``name`` section of BENCHMARKS.md (between its markers), or append it."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = BENCHMARKS_MD.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(BENCHMARKS_MD)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
