"""Calibrators: fit time and iterations on 10^6 x 10 logits, and validation / test NLL and
ECE of each on a class-wise miscalibrated set (fit on validation, evaluated on test).

Run: python benchmarks/bench_calibrators.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import time

import torch

from _harness import machine_line, markdown_table, write_section
from medloss.calibration import (
    BetaCalibrator,
    ClasswiseTemperatureScaler,
    DirichletCalibrator,
    IsotonicCalibrator,
    MatrixScaler,
    TemperatureScaler,
    VectorScaler,
    expected_calibration_error,
    negative_log_likelihood,
)

MULTICLASS = {
    "temperature": TemperatureScaler, "classwise_temperature": ClasswiseTemperatureScaler, "vector": VectorScaler,
    "matrix": MatrixScaler, "dirichlet": DirichletCalibrator,
    "dirichlet (ODIR 1e-2)": lambda: DirichletCalibrator(reg_lambda=1e-2, reg_mu=1e-2), "isotonic": IsotonicCalibrator,
}


def classwise_miscalibrated(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    truth = 1.5 * torch.randn(n, k, generator=g, dtype=torch.float64)
    y = torch.multinomial(truth.softmax(1), 1, generator=g).squeeze(1)
    scale = torch.linspace(0.5, 3.0, k, dtype=torch.float64)
    offset = torch.linspace(-1.0, 1.0, k, dtype=torch.float64)
    return (truth * scale + offset).float(), y


def iterations(cal) -> str:
    for attr in ("n_iter_", "n_passes_"):
        if getattr(cal, attr, None) is not None:
            return str(getattr(cal, attr))
    return "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    z, y = classwise_miscalibrated(args.n, 10, seed=0)
    rows_fit = []
    for name, make in MULTICLASS.items():
        t0 = time.perf_counter()
        cal = make().fit(z, y)
        sec = time.perf_counter() - t0
        grad = getattr(cal, "grad_norm_", getattr(cal, "relative_gradient_", None))
        rows_fit.append([name, f"{sec:.1f}", iterations(cal), "-" if grad is None else f"{grad:.1e}"])
        print(rows_fit[-1], flush=True)
    zb = z[:, 1] - z[:, 0]
    yb = (y == 1).long()
    t0 = time.perf_counter()
    beta = BetaCalibrator().fit(zb, yb)
    sec = time.perf_counter() - t0
    rows_fit.append(["beta (binary margin)", f"{sec:.1f}", iterations(beta), f"{beta.grad_norm_:.1e}"])

    zv, yv = classwise_miscalibrated(5000, 10, seed=1)
    zt, yt = classwise_miscalibrated(20000, 10, seed=2)
    rows_q = [["uncalibrated", f"{negative_log_likelihood(zt.softmax(1), yt):.4f}",
               f"{expected_calibration_error(zt.softmax(1), yt):.4f}"]]
    for name, make in MULTICLASS.items():
        cal = make().fit(zv, yv)
        p = cal.predict_proba(zt)
        rows_q.append([name, f"{negative_log_likelihood(p, yt):.4f}", f"{expected_calibration_error(p, yt):.4f}"])
    t_fit = markdown_table(["calibrator", "fit s", "iterations / passes", "final gradient"], rows_fit)
    t_q = markdown_table(["calibrator", "test NLL", "test ECE"], rows_q)
    print(t_fit)
    print(t_q)
    body = ("## Calibrators: fit time and quality\n\n"
            f"Command: `python benchmarks/bench_calibrators.py` ({machine_line()}). Fit on {args.n:,} x 10 float32 "
            "logits of a class-wise miscalibrated model (each class its own scale 0.5-3 and offset -1..1); "
            "'final gradient' is the largest gradient entry of the NLL at the end (relative gradient for "
            "temperature scaling).\n\n" + t_fit + "\n\nQuality: fitted on 5,000 validation samples of the same "
            "model, evaluated on 20,000 test samples (15-bin top-label ECE).\n\n" + t_q)
    if not args.no_write:
        write_section("calibrators", body)


if __name__ == "__main__":
    main()
