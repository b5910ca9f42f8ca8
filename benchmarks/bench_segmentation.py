"""Segmentation losses, forward + backward on [8, 4, 256, 256] and [2, 3, 96, 96, 96] fp32 logits,
against F.cross_entropy and the nearest MONAI loss, in one process.

Run: python benchmarks/bench_segmentation.py   (needs the `bench` extra for MONAI)
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import medloss
from _harness import forward_backward, machine_line, markdown_table, median_seconds, saved_bytes, write_section
from medloss import losses as L

SHAPES = [(8, 4, 256, 256), (2, 3, 96, 96, 96)]
PYTORCH_PATH = ["DiceLoss", "ComboLoss", "AsymmetricUnifiedFocalLoss"]

# medloss loss -> (constructor, MONAI baseline name)
OURS = {
    "DiceLoss": (lambda: L.DiceLoss(), "DiceLoss"),
    "TverskyLoss": (lambda: L.TverskyLoss(), "TverskyLoss"),
    "FocalTverskyLoss": (lambda: L.FocalTverskyLoss(), "TverskyLoss"),
    "ComboLoss": (lambda: L.ComboLoss(), "DiceCELoss"),
    "SymmetricFocalLoss": (lambda: L.SymmetricFocalLoss(), "FocalLoss"),
    "AsymmetricFocalLoss": (lambda: L.AsymmetricFocalLoss(), "FocalLoss"),
    "SymmetricFocalTverskyLoss": (lambda: L.SymmetricFocalTverskyLoss(), "TverskyLoss"),
    "AsymmetricFocalTverskyLoss": (lambda: L.AsymmetricFocalTverskyLoss(), "TverskyLoss"),
    "SymmetricUnifiedFocalLoss": (lambda: L.SymmetricUnifiedFocalLoss(), "DiceFocalLoss"),
    "AsymmetricUnifiedFocalLoss": (lambda: L.AsymmetricUnifiedFocalLoss(), "DiceFocalLoss"),
    "HybridFocalLoss": (lambda: L.HybridFocalLoss(), "DiceFocalLoss"),
}


def monai_losses() -> dict:
    try:
        import monai.losses as M
    except ImportError:
        return {}
    kw = {"softmax": True, "to_onehot_y": True}
    return {
        "DiceLoss": M.DiceLoss(**kw),
        "TverskyLoss": M.TverskyLoss(alpha=0.3, beta=0.7, **kw),
        "DiceCELoss": M.DiceCELoss(**kw),
        "FocalLoss": M.FocalLoss(use_softmax=True, to_onehot_y=True),
        "DiceFocalLoss": M.DiceFocalLoss(**kw),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--only", nargs="*", help="medloss loss names to run (default: all)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    monai = monai_losses()
    rows, verdicts = [], []
    for shape in SHAPES:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(*shape, generator=g)
        t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
        t1 = t.unsqueeze(1)
        fns = {"F.cross_entropy": lambda z, t=t: F.cross_entropy(z, t)}
        for name, (make, _) in OURS.items():
            if args.only and name not in args.only:
                continue
            loss = make()
            fns[name] = lambda z, loss=loss, t=t: loss(z, t)
        for name in PYTORCH_PATH:  # what runs where the compiled kernel does not (GPU, no compiler)
            if args.only and name not in args.only:
                continue
            loss = OURS[name][0]()

            def without_kernel(z, loss=loss, t=t):
                with medloss.native_kernels(False):
                    return loss(z, t)

            fns[name + " (PyTorch path)"] = without_kernel
        for name, loss in monai.items():
            fns["MONAI " + name] = lambda z, loss=loss, t1=t1: loss(z, t1)
        times = median_seconds({k: forward_backward(f, x) for k, f in fns.items()}, repeats=args.repeats)
        mem = {k: saved_bytes(f, x) / 2**20 for k, f in fns.items()}
        ce = times["F.cross_entropy"]
        for name, sec in times.items():
            rows.append([str(list(shape)), name, f"{sec * 1e3:.1f}", f"{sec / ce:.2f}x", f"{mem[name]:.0f}"])
        for name, (_, base) in OURS.items():
            if name not in times:
                continue
            ours = times[name]
            line = f"{list(shape)} {name}: / CE = {ours / ce:.2f} ({'met' if ours <= 1.5 * ce else 'MISSED'})"
            if "MONAI " + base in times:
                r = times["MONAI " + base] / ours
                line += f"; MONAI {base} / ours = {r:.2f} ({'met' if r >= 2 else 'MISSED'})"
            verdicts.append("- " + line)
            print(line, flush=True)
    table = markdown_table(["logits", "loss", "fwd+bwd ms (median)", "vs CE", "saved for bwd MB"], rows)
    print(table)
    body = (
        "## Segmentation losses, forward + backward, fp32 CPU\n\n"
        f"Command: `python benchmarks/bench_segmentation.py` ({args.repeats} rounds, median; {machine_line()}; "
        f"compiled kernels: {'on' if medloss.native_kernels_available() else 'OFF'}). "
        "Each round calls every contender once, in a shuffled order (a call pays for the cache state its "
        "predecessor leaves). MONAI baselines take one-hot conversion and softmax inside (`softmax=True, "
        "to_onehot_y=True`), as medloss does. \"(PyTorch path)\" rows run medloss without its compiled kernel, "
        "as on a GPU or where no C compiler was found at install. \"saved for bwd\" is the memory the autograd "
        "graph keeps between forward and backward (for medloss: the logits themselves and one byte of label "
        "per pixel), the part of peak memory a loss controls.\n\n"
        + table + "\n\n" + "\n".join(verdicts)
        + "\n\nTargets (issue 3): every loss within 1.5x of `F.cross_entropy` and at least 2x faster than the "
        "nearest MONAI loss (DiceLoss, TverskyLoss, DiceCELoss, FocalLoss, DiceFocalLoss for the unified losses)."
    )
    if not args.no_write and not args.only:
        write_section("segmentation", body)


if __name__ == "__main__":
    main()
