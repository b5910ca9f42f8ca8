"""FocalLoss (multiclass, gamma 2) forward + backward vs F.cross_entropy and MONAI's FocalLoss.

Run: python benchmarks/bench_focal.py   (needs the `bench` extra for MONAI)
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from _harness import forward_backward, machine_line, markdown_table, median_seconds, saved_bytes, write_section
from medloss.losses import FocalLoss

SHAPES = [(8, 4, 256, 256), (65536, 10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.manual_seed(0)
    try:
        from monai.losses import FocalLoss as MonaiFocal

        monai = MonaiFocal(use_softmax=True, gamma=2.0, to_onehot_y=True)
    except ImportError:
        monai = None
    ours = FocalLoss(mode="multiclass", gamma=2.0)
    rows, verdicts = [], []
    for shape in SHAPES:
        x = torch.randn(*shape)
        t = torch.randint(0, shape[1], (shape[0], *shape[2:]))
        fns = {
            "F.cross_entropy": lambda z, t=t: F.cross_entropy(z, t),
            "medloss FocalLoss": lambda z, t=t: ours(z, t),
        }
        if monai is not None:
            fns["MONAI FocalLoss(use_softmax)"] = lambda z, t=t: monai(z, t.unsqueeze(1))
        times = median_seconds({k: forward_backward(f, x) for k, f in fns.items()}, repeats=args.repeats)
        mem = {k: saved_bytes(f, x) / 2**20 for k, f in fns.items()}
        ce, fl = times["F.cross_entropy"], times["medloss FocalLoss"]
        for name, sec in times.items():
            rows.append([str(list(shape)), name, f"{sec * 1e3:.2f}", f"{sec / ce:.2f}x", f"{mem[name]:.1f}"])
        verdict_ce = "met" if fl <= 1.5 * ce else "MISSED"
        line = f"{list(shape)}: FocalLoss / CE = {fl / ce:.2f} (target <= 1.5, {verdict_ce})"
        if monai is not None:
            mo = times["MONAI FocalLoss(use_softmax)"]
            line += f"; MONAI / FocalLoss = {mo / fl:.2f} (target >= 2, {'met' if mo >= 2 * fl else 'MISSED'})"
        verdicts.append(f"- {line}")
        print(line)
    table = markdown_table(["logits", "loss", "fwd+bwd ms (median)", "vs CE", "saved for bwd MB"], rows)
    body = (
        "## FocalLoss (multiclass, gamma = 2), forward + backward, fp32 CPU\n\n"
        f"Command: `python benchmarks/bench_focal.py` ({args.repeats} runs, median; {machine_line()})\n\n"
        + table
        + "\n\n"
        + "\n".join(verdicts)
        + "\n\nTargets: within 1.5x of `F.cross_entropy`, at least 2x faster than MONAI's FocalLoss."
    )
    print(table)
    if not args.no_write:
        write_section("focal", body)


if __name__ == "__main__":
    main()
