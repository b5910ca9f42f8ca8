"""Segmentation losses on a GPU: forward + backward time and peak memory against `F.cross_entropy`, MONAI's
nearest loss and the plain formula compiled by inductor (SPEC section 13), and the cumulative link loss against
`F.cross_entropy` on as many samples, in one process.

Run on a machine with a GPU:  python benchmarks/bench_gpu.py [--json out.json] [--no-write]
Smoke test anywhere (tiny shapes, CPU):  python benchmarks/bench_gpu.py --device cpu --quick --no-write

Designed to finish within ~3 minutes on one GPU: every loss eagerly on the three shapes in fp32 and
bf16 autocast, and compiled (``torch.compile``) on the 2-D shape in fp32. Times are medians of CUDA-event
timed repeats after warm-up; the implementation each loss ran ("triton" on CUDA when Triton imports) is
reported beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import date

import torch
import torch.nn.functional as F

import medloss
from medloss import losses as L

SHAPES = {"2-D [8, 4, 256, 256]": (8, 4, 256, 256), "3-D [2, 4, 128, 128, 128]": (2, 4, 128, 128, 128),
          "TotalSegmentator [1, 118, 64, 128, 128]": (1, 118, 64, 128, 128)}
QUICK_SHAPES = {"2-D [2, 4, 32, 32]": (2, 4, 32, 32), "3-D [1, 4, 8, 16, 16]": (1, 4, 8, 16, 16)}

LOSSES: dict[str, Callable[[], torch.nn.Module]] = {
    "Dice": L.DiceLoss, "Jaccard": L.JaccardLoss, "Tversky": L.TverskyLoss, "FocalTversky": L.FocalTverskyLoss,
    "GeneralizedDice": L.GeneralizedDiceLoss, "MCC": L.MCCLoss, "Combo": L.ComboLoss,
    "SymmetricFocal": L.SymmetricFocalLoss, "AsymmetricFocal": L.AsymmetricFocalLoss,
    "SymmetricUnified": L.SymmetricUnifiedFocalLoss, "AsymmetricUnified": L.AsymmetricUnifiedFocalLoss,
    "Hybrid": L.HybridFocalLoss, "Focal": L.FocalLoss,
}


def _monai(name: str):
    """MONAI's nearest loss (None where MONAI is not installed or has none)."""
    try:
        import monai.losses as M
    except ImportError:
        return None
    nearest = {"Dice": lambda: M.DiceLoss(softmax=True, to_onehot_y=True),
               "Combo": lambda: M.DiceCELoss(softmax=True, to_onehot_y=True),
               "Tversky": lambda: M.TverskyLoss(softmax=True, to_onehot_y=True),
               "GeneralizedDice": lambda: M.GeneralizedDiceLoss(softmax=True, to_onehot_y=True),
               "Focal": lambda: M.FocalLoss(use_softmax=True, to_onehot_y=True)}
    if name not in nearest:
        return None
    loss = nearest[name]()
    return lambda x, t: loss(x, t.unsqueeze(1))


def _plain_dice(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The Dice formula in plain operations (what inductor fuses by itself)."""
    p = x.float().softmax(1)
    y = F.one_hot(t, x.shape[1]).movedim(-1, 1).to(p.dtype)
    dims = tuple(range(2, x.ndim))
    tp = (p * y).sum(dims)
    return (1 - (2 * tp + 1e-5) / (p.sum(dims) + y.sum(dims) + 1e-5)).mean()


def _timed(fn: Callable[[], None], device: str, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn`` and its peak memory (MiB, CUDA only)."""
    for _ in range(3):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
    return statistics.median(times), peak


def _step(loss_fn, x: torch.Tensor, t: torch.Tensor, bf16: bool, device: str) -> Callable[[], None]:
    def run() -> None:
        leaf = x.detach().requires_grad_(True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            out = loss_fn(leaf, t)
        out.backward()

    return run


def _ordinal_rows(device: str, repeats: int, n: int) -> list[dict]:
    """``CumulativeLinkLoss`` (5 grades, learned cutpoints) on ``n`` scores against ``F.cross_entropy`` on
    ``[n, 5]`` logits, fp32 eager."""
    g = torch.Generator(device=device).manual_seed(1)
    scores = torch.randn(n, 1, device=device, generator=g)
    logits = torch.randn(n, 5, device=device, generator=g)
    y = torch.randint(0, 5, (n,), device=device, generator=g)
    ce, _ = _timed(_step(F.cross_entropy, logits, y, False, device), device, repeats)
    loss = L.CumulativeLinkLoss(num_classes=5).to(device)
    seconds, mem = _timed(_step(loss, scores, y, False, device), device, repeats)
    row = {"shape": f"[{n}] scores, 5 grades", "dtype": "fp32", "mode": "eager", "loss": "CumulativeLink",
           "implementation": medloss.ops.resolve(scores), "ms": 1e3 * seconds, "vs_ce": seconds / ce, "peak_mib": mem}
    print(row, flush=True)
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repeats (a smoke test)")
    parser.add_argument("--json", help="also write every row to this JSON file")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    args = parser.parse_args()
    device, repeats = args.device, 3 if args.quick else 20
    shapes = QUICK_SHAPES if args.quick else SHAPES
    rows = []
    for shape_name, shape in shapes.items():
        g = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(*shape, device=device, generator=g)
        t = torch.randint(0, shape[1], (shape[0], *shape[2:]), device=device, generator=g)
        ce_fp32 = None
        for bf16 in (False, True):
            ce, ce_mem = _timed(_step(F.cross_entropy, x, t, bf16, device), device, repeats)
            ce_fp32 = ce if not bf16 else ce_fp32
            for name, make in LOSSES.items():
                loss = make().to(device)
                implementation = medloss.ops.resolve(x)
                seconds, mem = _timed(_step(loss, x, t, bf16, device), device, repeats)
                row = {"shape": shape_name, "dtype": "bf16 autocast" if bf16 else "fp32", "mode": "eager",
                       "loss": name, "implementation": implementation, "ms": 1e3 * seconds, "vs_ce": seconds / ce,
                       "peak_mib": mem, "ce_peak_mib": ce_mem}
                monai = _monai(name)
                if monai is not None:
                    m_seconds, m_mem = _timed(_step(monai, x, t, bf16, device), device, repeats)
                    row.update(monai_ms=1e3 * m_seconds, monai_speedup=m_seconds / seconds, monai_peak_mib=m_mem)
                rows.append(row)
                print(row, flush=True)
        first = shape_name == next(iter(shapes))
        if first:  # compiled, 2-D fp32 only (each compilation costs seconds)
            plain, _ = _timed(_step(torch.compile(_plain_dice), x, t, False, device), device, repeats)
            for name, make in LOSSES.items():
                compiled = torch.compile(make().to(device))
                seconds, mem = _timed(_step(compiled, x, t, False, device), device, repeats)
                rows.append({"shape": shape_name, "dtype": "fp32", "mode": "compiled", "loss": name,
                             "implementation": medloss.ops.resolve(x), "ms": 1e3 * seconds, "vs_ce": seconds / ce_fp32,
                             "peak_mib": mem, "plain_dice_compiled_ms": 1e3 * plain})
                print(rows[-1], flush=True)
    rows += _ordinal_rows(device, repeats, 2**10 if args.quick else 2**20)
    device_name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": device_name, "torch": torch.__version__, "date": date.today().isoformat(),
                       "rows": rows}, fh, indent=1)
    if args.no_write:
        return
    from _harness import markdown_table, write_section

    table = markdown_table(
        ["shape", "dtype", "mode", "loss", "impl.", "ms", "x F.cross_entropy", "peak MiB", "MONAI speed-up"],
        [[r["shape"], r["dtype"], r["mode"], r["loss"], r["implementation"], f"{r['ms']:.2f}", f"{r['vs_ce']:.2f}",
          f"{r['peak_mib']:.0f}", f"{r['monai_speedup']:.2f}" if "monai_speedup" in r else ""] for r in rows])
    write_section("gpu", "## Segmentation losses on a GPU\n\nCommand: `python benchmarks/bench_gpu.py` "
                  f"({device_name}, torch {torch.__version__}, {date.today().isoformat()}). Forward + backward, "
                  f"medians of {repeats} CUDA-event timed repeats. Targets (SPEC section 13): every segmentation "
                  "loss <= 1.0x `F.cross_entropy` eager on the 2-D shape, >= 3x faster than MONAI's nearest loss, "
                  "peak memory <= MONAI's.\n\n" + table)


if __name__ == "__main__":
    main()
