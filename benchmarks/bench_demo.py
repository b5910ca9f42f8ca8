"""Wall time of the README's main job, `medloss demo`, on this machine.

Run: python benchmarks/bench_demo.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import machine_line, markdown_table, write_section


def main() -> None:
    rows = []
    targets = {"": 30.0, "--quick": 10.0}
    with tempfile.TemporaryDirectory() as tmp:
        for args in ([], ["--quick"]):
            out = Path(tmp) / ("demo" + "".join(args).replace("-", "_"))
            cmd = [sys.executable, "-m", "medloss.cli", "demo", "--out", str(out), "--no-progress", *args]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            seconds = time.perf_counter() - t0
            target = targets[" ".join(args)]
            rows.append(["medloss demo " + " ".join(args), f"{seconds:.1f}",
                         f"<= {target:g} s: {'met' if seconds <= target else 'MISSED'}"])
    table = markdown_table(["command", "wall time (s), process start to report written", "target"],
                           rows)
    print(table)
    write_section("demo", "## `medloss demo` wall time\n\n"
                  f"Command: `python benchmarks/bench_demo.py` ({machine_line()})\n\n" + table
                  + "\n\nTargets: the demo within 30 s and `--quick` within 10 s on 2 idle cores "
                  "(`--quick` is a smoke test: 15 epochs, 30 bootstrap resamples, 80-dpi figures).")


if __name__ == "__main__":
    main()
