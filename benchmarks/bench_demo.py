"""Wall time of the README's main job, `medloss demo`: three runs of each, from process start to report written.

Run: python benchmarks/bench_demo.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import machine_line, markdown_table, write_section

RUNS = 3
TARGETS = {"": 60.0, "--quick": 15.0}


def main() -> None:
    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for args in ([], ["--quick"]):
            times = []
            for run in range(RUNS):
                out = Path(tmp) / f"demo{''.join(args).replace('-', '_')}{run}"
                cmd = [sys.executable, "-m", "medloss.cli", "demo", "--out", str(out), "--no-progress", *args]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                times.append(time.perf_counter() - t0)
            median, target = statistics.median(times), TARGETS[" ".join(args)]
            rows.append(["medloss demo " + " ".join(args), f"{median:.1f}",
                         f"{min(times):.1f}-{max(times):.1f}",
                         f"<= {target:g} s: {'met' if median <= target else 'MISSED'}"])
    table = markdown_table(["command", f"wall s, median of {RUNS}", "range", "target"], rows)
    print(table)
    write_section("demo", "## `medloss demo` wall time\n\n"
                  f"Command: `python benchmarks/bench_demo.py` ({machine_line()}; load average {load:.2f} at the "
                  "start). Wall time from process start to report written.\n\n" + table
                  + "\n\nTargets: the demo within 60 s and `--quick` within 15 s on 2 idle cores (the demo: 7 tabular "
                  "models of up to 200 epochs (early stopping), 300 bootstrap resamples, 3 segmentation CNNs of 16 "
                  "epochs, 7 MLPs of the calibration-loss study; `--quick`, a smoke test: 2 models per task, 15 "
                  "epochs, 30 resamples, 3 CNN epochs, calibration figures only).")


if __name__ == "__main__":
    main()
