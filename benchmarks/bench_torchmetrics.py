"""Metric state under torchmetrics / DDP: memory of the state after 10^7 samples (and so
the bytes each rank sends when the states are synchronised) for medloss's CalibrationError and
torchmetrics' MulticlassCalibrationError, and the update time.

Run: python benchmarks/bench_torchmetrics.py   (needs torchmetrics)
"""

from __future__ import annotations

import argparse
import time

import torch

from _harness import machine_line, markdown_table, write_section


def state_bytes(metric) -> int:
    total = 0
    for value in metric.metric_state.values():
        items = value if isinstance(value, list) else [value]
        total += sum(t.numel() * t.element_size() for t in items)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from torchmetrics.classification import MulticlassCalibrationError

    from medloss.integrations.torchmetrics import CalibrationError

    k, batch = 10, 1_000_000
    metrics = {"medloss CalibrationError": CalibrationError(n_bins=15),
               "torchmetrics MulticlassCalibrationError": MulticlassCalibrationError(num_classes=k, n_bins=15)}
    seconds = dict.fromkeys(metrics, 0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(args.n // batch):
        probs = torch.softmax(2 * torch.randn(batch, k, generator=g), 1)
        labels = torch.randint(0, k, (batch,), generator=g)
        for name, metric in metrics.items():
            t0 = time.perf_counter()
            metric.update(probs, labels)
            seconds[name] += time.perf_counter() - t0
    values = {name: float(m.compute()) for name, m in metrics.items()}
    rows = [[name, f"{state_bytes(m):,}", f"{seconds[name]:.2f}", f"{values[name]:.6f}"] for name, m in metrics.items()]
    table = markdown_table(["metric", "state bytes after N samples (= bytes synced per rank)", "update s", "ECE"],
                           rows)
    print(table)
    body = ("## torchmetrics state under DDP\n\n"
            f"Command: `python benchmarks/bench_torchmetrics.py` (N = {args.n:,} samples, 10 classes, 15 bins, updates "
            f"of 10^6; {machine_line()}). torchmetrics' CalibrationError keeps every confidence and correctness "
            "(list states, all-gathered at sync); medloss's keeps 3 x 15 float64 sums (`dist_reduce_fx=\"sum\"`).\n\n"
            + table)
    if not args.no_write:
        write_section("torchmetrics", body)


if __name__ == "__main__":
    main()
