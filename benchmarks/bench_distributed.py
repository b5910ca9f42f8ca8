"""What ``distributed=True`` costs: forward + backward of a loss per rank with and without
it, and the latency of one all-reduce of a few numbers, on 2 CPU processes with the gloo backend.

Run: python benchmarks/bench_distributed.py   (spawns its own 2 ranks; no GPU needed)
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from _harness import machine_line, markdown_table, write_section

SHAPE = (2, 4, 128, 128)  # one rank's shard


def _cases():
    from medloss.losses import AsymmetricUnifiedFocalLoss, DiceLoss, FocalLoss

    return {
        "DiceLoss(batch=True)": lambda d: DiceLoss(batch=True, distributed=d),
        "FocalLoss()": lambda d: FocalLoss(distributed=d),
        "AsymmetricUnifiedFocalLoss(batch=True)": lambda d: AsymmetricUnifiedFocalLoss(batch=True, distributed=d),
    }


def _median(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        dist.barrier()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rank(rank: int, world: int, port: int, repeats: int, queue) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(*SHAPE, generator=g)
    t = torch.randint(0, SHAPE[1], (SHAPE[0], *SHAPE[2:]), generator=g)
    small = torch.zeros(3 * SHAPE[1] + 2)

    def fwd_bwd(loss):
        def run():
            xs = x.clone().requires_grad_(True)
            loss(xs, t).backward()
        return run

    rows = {"all_reduce": _median(lambda: dist.all_reduce(small), 20 * repeats)}
    for name, make in _cases().items():
        rows[name] = (_median(fwd_bwd(make(False)), repeats), _median(fwd_bwd(make(True)), repeats))
    if rank == 0:
        queue.put(rows)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    os.environ["OMP_NUM_THREADS"] = "1"
    mp.spawn(_rank, args=(2, port, args.repeats, queue), nprocs=2, join=True)
    rows = queue.get()
    latency = rows.pop("all_reduce")
    table = markdown_table(
        ["loss (per rank: [2, 4, 128, 128] fp32)", "distributed=False ms", "distributed=True ms", "added ms"],
        [[name, f"{a * 1e3:.2f}", f"{b * 1e3:.2f}", f"{(b - a) * 1e3:.2f}"] for name, (a, b) in rows.items()],
    )
    print(f"one all-reduce of {3 * SHAPE[1] + 2} floats: {latency * 1e6:.0f} us")
    print(table)
    body = ("## `distributed=True` overhead (2 ranks, gloo, CPU)\n\n"
            f"Command: `python benchmarks/bench_distributed.py` (2 spawned processes on one machine, 1 thread each, "
            f"median of {args.repeats}; {machine_line()}). One all-reduce of {3 * SHAPE[1] + 2} floats takes "
            f"{latency * 1e6:.0f} us here (gloo over loopback on 2 shared cores); `distributed=True` adds one "
            "all-reduce to the forward and one to the backward, so its cost is about two such latencies whatever "
            "the image size. NCCL on GPUs has latencies of tens of microseconds (not measured: no GPU here).\n\n"
            + table)
    if not args.no_write:
        write_section("distributed", body)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
