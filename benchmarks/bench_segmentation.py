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
#: inductor on the plain PyTorch formula (no medloss op): what torch.compile makes of a loss it can see into
PLAIN_FORMULA = ["DiceLoss", "AsymmetricUnifiedFocalLoss"]

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


def plain_formula(name: str, t: torch.Tensor):
    """The loss written as plain differentiable PyTorch (softmax, one-hot, sums): a baseline for
    inductor to fuse, so the table can say whether the hand-written C kernel still earns its keep."""
    n_classes = None

    def stats(z: torch.Tensor):
        nonlocal n_classes
        n_classes = z.shape[1]
        p = torch.softmax(z, 1)
        onehot = F.one_hot(t, n_classes).movedim(-1, 1).to(z.dtype)
        dims = tuple(range(2, z.ndim))
        tp = (p * onehot).sum(dims)
        return p, onehot, tp, p.sum(dims), onehot.sum(dims)

    if name == "DiceLoss":
        def dice(z):
            _, _, tp, sum_p, sum_y = stats(z)
            return (1.0 - (2.0 * tp + 1e-5) / (sum_p + sum_y + 1e-5)).mean()
        return dice

    def unified(z):  # AsymmetricUnifiedFocalLoss(lambda_ 0.5, delta 0.6, gamma 0.5)
        p, onehot, tp, sum_p, sum_y = stats(z)
        logp_t = (torch.log_softmax(z, 1) * onehot).sum(1)
        delta = torch.full((z.shape[1],), 0.6, dtype=z.dtype)
        delta[0] = 0.4
        w_t = (onehot * delta.view(1, -1, *([1] * (z.ndim - 2)))).sum(1)
        bg = onehot[:, 0]
        focal = -(w_t * torch.where(bg > 0, (1 - logp_t.exp()) ** 0.5, torch.ones_like(logp_t)) * logp_t).mean()
        fp, fn = sum_p - tp, sum_y - tp
        mti = (tp + 1e-7) / (tp + 0.6 * fn + 0.4 * fp + 1e-7)
        d = 1.0 - mti
        ft = torch.cat([d[:, :1], d[:, 1:].clamp_min(1e-12) ** 0.5], 1).mean()
        return 0.5 * focal + 0.5 * ft
    return unified


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

            def without_kernel(z, loss=loss, t=t):  # what runs on a GPU, or where no C compiler was found
                with medloss.implementation("pytorch"):
                    return loss(z, t)

            fns[name + " (PyTorch path)"] = without_kernel
            compiled = torch.compile(loss, fullgraph=True)

            def compiled_without_kernel(z, compiled=compiled, t=t):
                with medloss.implementation("pytorch"):
                    return compiled(z, t)

            fns[name + " (compiled)"] = compiled_without_kernel
            if name in PLAIN_FORMULA:
                fns[name + " (inductor, plain formula)"] = torch.compile(plain_formula(name, t), fullgraph=True)
        for name, loss in monai.items():
            fns["MONAI " + name] = lambda z, loss=loss, t1=t1: loss(z, t1)
        times = median_seconds({k: forward_backward(f, x) for k, f in fns.items()}, repeats=args.repeats)
        mem = {k: saved_bytes(f, x) / 2**20 for k, f in fns.items() if "compiled" not in k and "inductor" not in k}
        ce = times["F.cross_entropy"]
        for name, sec in times.items():
            saved = f"{mem[name]:.1f}" if name in mem else "-"
            rows.append([str(list(shape)), name, f"{sec * 1e3:.1f}", f"{sec / ce:.2f}x", saved])
        for name, (_, base) in OURS.items():
            if name not in times:
                continue
            ours = times[name]
            line = f"{list(shape)} {name}: / CE = {ours / ce:.2f} ({'met' if ours <= 1.5 * ce else 'MISSED'})"
            if "MONAI " + base in times:
                r = times["MONAI " + base] / ours
                line += f"; MONAI {base} / ours = {r:.2f} ({'met' if r >= 2 else 'MISSED'})"
            if name + " (PyTorch path)" in times:
                r = times[name + " (PyTorch path)"] / ce
                line += f"; PyTorch path / CE = {r:.2f}"
                extra = mem[name + " (PyTorch path)"] - x.numel() * 4 / 2**20 - t.numel() * 8 / 2**20
                budget = (t.numel() + 2**16) / 2**20  # a byte of label per pixel, and small [B, C] counts
                line += f", saved beyond logits and target {extra:.1f} MB ({'met' if extra <= budget else 'MISSED'})"
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
        "to_onehot_y=True`), as medloss does. Three rows per medloss loss: the default (the compiled C kernel "
        "on CPU), \"(PyTorch path)\" (kernel off, forward and backward: the ops' device-generic PyTorch "
        "implementation, what MPS, CUDA without Triton and CPUs without a C compiler run; written for clarity, "
        "its CPU speed is not a target), "
        "\"(compiled)\" (`torch.compile(loss, fullgraph=True)` with the kernel off; the "
        "medloss ops are opaque to inductor, which compiles what surrounds them). \"(inductor, plain formula)\" "
        "is the same loss written as plain PyTorch (softmax, one-hot, sums) compiled by inductor: what "
        "torch.compile achieves on CPU without medloss's ops. \"saved for bwd\" is the memory the autograd "
        "graph keeps between forward and backward (for medloss: the logits and target themselves and one byte "
        "of label per pixel, on either implementation), the part of peak memory a loss controls.\n\n"
        + table + "\n\n" + "\n".join(verdicts)
        + "\n\nTargets: every loss (the C kernel) within 1.5x of `F.cross_entropy` and at least 2x faster than "
        "the nearest MONAI loss (DiceLoss, TverskyLoss, DiceCELoss, FocalLoss, DiceFocalLoss for the unified "
        "losses); on the PyTorch path, autograd keeps one byte per pixel beyond the logits and target (and a "
        "few counts per image and class)."
    )
    if not args.no_write and not args.only:
        write_section("segmentation", body)


if __name__ == "__main__":
    main()
