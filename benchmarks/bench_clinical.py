"""Clinical calibration benchmarks: `clinical_calibration` on 10^6 samples (and R's rms::val.prob on the
same data when Rscript with rms is installed: `apt-get install r-cran-rms`), and bootstrap intervals of the
calibration slope with 1000 resamples.

Run: python benchmarks/bench_clinical.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from _harness import machine_line, markdown_table, write_section
from medloss.calibration import bootstrap_ci, bootstrap_clinical, clinical_calibration

R_KEYS = {"Intercept": "intercept", "Slope": "slope", "Eavg": "e_avg", "E90": "e_90", "Emax": "e_max",
          "S:z": "spiegelhalter_z", "Brier": "brier", "C (ROC)": "c_statistic"}
R_SCRIPT = """suppressMessages(library(rms))
d <- read.csv("{path}")
t <- system.time(v <- val.prob(d$p, d$y, pl = FALSE))[["elapsed"]]
cat(t, "\\n")
cat(sprintf("%s=%.15g", names(v), v), sep = "\\n")
"""


def miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An over-confident model: the truth has slope 0.6 and intercept -0.2 on the model's logit."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.0, 2.0, n)
    return 1.0 / (1.0 + np.exp(-z)), rng.binomial(1, 1.0 / (1.0 + np.exp(-(-0.2 + 0.6 * z))))


def r_val_prob(p: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float]] | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        np.savetxt(csv, np.column_stack([p, y]), delimiter=",", header="p,y", comments="", fmt=["%.17g", "%d"])
        script = Path(tmp) / "v.R"
        script.write_text(R_SCRIPT.format(path=csv))
        out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    lines = out.stdout.split("\n")
    values = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    return float(lines[0]), {k: float(v) for k, v in values.items() if v != "NA"}  # D:p is NA in rms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    p, y = miscalibrated(1_000_000, 0)
    t0 = time.perf_counter()
    ours = clinical_calibration(p, y)
    t_ours = time.perf_counter() - t0
    rows = [["medloss clinical_calibration", f"{t_ours:.2f}", f"{ours['slope']:.6f}", f"{ours['e_avg']:.6f}",
             f"{ours['c_statistic']:.6f}"]]
    verdicts = []
    r = r_val_prob(p, y)
    if r is not None:
        t_r, rv = r
        rows.append(["R rms::val.prob (system.time inside R)", f"{t_r:.2f}", f"{rv['Slope']:.6f}", f"{rv['Eavg']:.6f}",
                     f"{rv['C (ROC)']:.6f}"])
        gap = max(abs(ours[k] - rv[rk]) for rk, k in R_KEYS.items())
        verdicts.append(f"- 10^6 samples: max |medloss - val.prob| over Intercept, Slope, Eavg, E90, Emax, S:z, Brier, "
                        f"C = {gap:.1e} (target <= 1e-6: {'met' if gap <= 1e-6 else 'MISSED'})")
    else:
        verdicts.append("- R with rms not found: val.prob row skipped")
    table = markdown_table(["10^6 binary predictions", "seconds", "slope", "ICI (Eavg)", "C"], rows)
    boot_rows = []
    for n in (10_000, 100_000):
        pn, yn = miscalibrated(n, 1)
        t0 = time.perf_counter()
        ci = bootstrap_ci("calibration_slope", pn, yn, n_boot=1000, seed=0, progress=False)
        boot_rows.append(["calibration_slope (bootstrap_ci)", f"{n:,}", "1000", f"{time.perf_counter() - t0:.2f}",
                          str(ci)])
    pn, yn = miscalibrated(10_000, 2)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cis = bootstrap_clinical(pn, yn, n_boot=1000, seed=0, progress=False)
    boot_rows.append(["whole hierarchy (bootstrap_clinical)", "10,000", "1000", f"{time.perf_counter() - t0:.2f}",
                      f"slope {cis['slope']}, ICI {cis['e_avg']}"])
    boot = markdown_table(["bootstrap", "samples", "resamples", "seconds", "estimate [95% CI]"], boot_rows)
    body = (
        "## Clinical calibration: val.prob's hierarchy on 10^6 samples, bootstrap of the slope\n\n"
        f"Command: `python benchmarks/bench_clinical.py` ({machine_line()})\n\n"
        "Over-confident model (true slope 0.6, intercept -0.2 on the model's logit).\n\n"
        + table + "\n\n" + boot + "\n\n" + "\n".join(verdicts)
    )
    print(body)
    if not args.no_write:
        write_section("clinical", body)


if __name__ == "__main__":
    main()
