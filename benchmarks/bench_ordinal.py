"""Cumulative link loss forward + backward on 10^6 scores, K = 5, against spacecutter's
OrdinalLogisticHead + CumulativeLinkLoss and F.cross_entropy on [10^6, 5] logits, in one process.

Run: python benchmarks/bench_ordinal.py   (needs the `bench` extra for spacecutter)
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from _harness import forward_backward, machine_line, markdown_table, median_seconds, saved_bytes, write_section
from medloss.losses import CumulativeLinkLoss

N, K = 1_000_000, 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(N, generator=g) * 3
    logits = torch.randn(N, K, generator=g)
    y = torch.randint(0, K, (N,), generator=g)
    fixed = CumulativeLinkLoss(K)
    learned = CumulativeLinkLoss(K, learn_cutpoints=True)
    fns = {
        "F.cross_entropy on [10^6, 5] logits": (lambda z: F.cross_entropy(z, y), logits),
        "medloss CumulativeLinkLoss (fixed cutpoints)": (lambda s: fixed(s, y), scores),
        "medloss CumulativeLinkLoss (learned cutpoints)": (lambda s: learned(s, y), scores),
    }
    try:
        from spacecutter.losses import CumulativeLinkLoss as SCLoss
        from spacecutter.models import OrdinalLogisticHead

        head, sc_loss = OrdinalLogisticHead(K), SCLoss()
        y_col = y.unsqueeze(1)
        fns["spacecutter OrdinalLogisticHead + CumulativeLinkLoss"] = (
            lambda s: sc_loss(head(s.unsqueeze(1)), y_col),
            scores,
        )
    except ImportError:
        pass
    times = median_seconds({k: forward_backward(f, x) for k, (f, x) in fns.items()}, repeats=args.repeats)
    mem = {k: saved_bytes(f, x) / 2**20 for k, (f, x) in fns.items()}
    ce = times["F.cross_entropy on [10^6, 5] logits"]
    ours = times["medloss CumulativeLinkLoss (learned cutpoints)"]
    rows = [[k, f"{t * 1e3:.1f}", f"{t / ce:.2f}x", f"{mem[k]:.0f}"] for k, t in times.items()]
    verdicts = [f"- learned-cutpoint loss / F.cross_entropy = {ours / ce:.2f} (target <= 1: "
                f"{'met' if ours <= ce else 'MISSED'})"]
    sc = times.get("spacecutter OrdinalLogisticHead + CumulativeLinkLoss")
    if sc is not None:
        verdict = "met" if sc >= 2 * ours else "MISSED"
        verdicts.append(f"- spacecutter / medloss = {sc / ours:.2f} (target >= 2: {verdict})")
    table = markdown_table(["loss, 10^6 samples, K = 5", "fwd+bwd ms (median)", "vs CE", "saved for bwd MB"], rows)
    print(table, *verdicts, sep="\n")
    body = (
        "## Ordinal: cumulative link loss, forward + backward, fp32 CPU\n\n"
        f"Command: `python benchmarks/bench_ordinal.py` ({args.repeats} runs, median; {machine_line()})\n\n"
        + table + "\n\n" + "\n".join(verdicts)
        + "\n\nTargets: no slower than `F.cross_entropy` on the same number of samples, at least 2x "
        "faster than spacecutter."
    )
    if not args.no_write:
        write_section("ordinal", body)


if __name__ == "__main__":
    main()
